#!/usr/bin/env python3
"""faultproxy: a fault-injecting proxy in front of the local test registry.

It makes the plain test registry (tools/testbed, 127.0.0.1:5000) look like a
real public registry (Docker Hub and its S3 CDN) and injects faults, so that
img's end-to-end tests can reproduce what happens in the wild. Standard library
only; only ever contacts 127.0.0.1.

    tools/faultproxy.py --upstream 127.0.0.1:5000 [--token-auth | --basic-auth]
        [--private GLOB]... [--no-redirect] [--fault KIND]... [--fault-count N]
        [--fault-repo GLOB]... [--retry-after-date] [--stall-seconds S]
        [--max-seconds S] [--verbose]
    tools/faultproxy.py --self-test [--upstream 127.0.0.1:5000]

Three listeners on 127.0.0.1 (ephemeral ports unless --*-port is given). After
binding, exactly one JSON line is printed on stdout and flushed:

    {"registry": 41234, "token": 41235, "cdn": 41236}

then it serves until SIGTERM/SIGINT or --max-seconds (default 300) elapse.

Registry port
  GET/HEAD /v2/, /v2/<name>/manifests/<ref>, /v2/<name>/blobs/<digest>
  (and /v2/<name>/tags/list) are proxied to the upstream; status,
  Content-Type, Content-Length, Docker-Content-Digest and the body pass through.
  A name "library/X" maps to upstream "X" (Docker Hub mirror style).
  --token-auth  Bearer tokens from the token port are required (401 with a
                WWW-Authenticate Bearer challenge otherwise).
  --basic-auth  Basic tester:img-test-pass is required instead.
  Blob GETs are answered 307 to the CDN port unless --no-redirect.
  GET /_proxy/stats returns the counters as JSON (never counted, never
  authenticated).
Token port
  GET /token?service=faultproxy&scope=repository:<name>:pull (scope repeatable
  or space separated; POST with an OAuth2 form works too). Repositories that
  match a --private GLOB need Basic tester:img-test-pass; wrong credentials are
  always refused. Tokens live --token-ttl seconds (default 300).
CDN port
  GET/HEAD /blob/<name>/<digest>?sig=<sig>: serves the blob (Range: bytes=N-
  and bytes=N-M give 206). Any Authorization header gives 400 "Only one auth
  mechanism allowed" like S3. Unknown sig gives 403.

Faults (--fault, repeatable), each fires --fault-count times (default 1) per
manifest (name+reference) or blob (digest), only for repositories matching a
--fault-repo GLOB when any is given. Blob faults act where the blob body is
served: the CDN, or the registry with --no-redirect.
  429      first N GET/HEAD of each manifest and first N GET of each blob: 429,
           Retry-After: 1 (an HTTP-date 1-2 s ahead with --retry-after-date).
  503      the same with 503 (after the 429s when both are given).
  cut      first N 200/206 blob responses: full headers, half of the body,
           then the socket is shut down.
  stall    like cut, but the connection stays open, silent, --stall-seconds
           (default 60), then closes.
  flip     every blob body has the byte at offset size//2 XORed with 0xff.
  norange  Range headers on blobs are ignored: always 200 with the full blob.
"""

import argparse
import base64
import email.utils
import fnmatch
import hashlib
import http.client
import http.server
import json
import re
import secrets
import signal
import socket
import sys
import threading
import time
import urllib.parse
from collections import defaultdict

USER = "tester"
PASSWORD = "img-test-pass"
SERVICE = "faultproxy"
FAULTS = ("429", "503", "cut", "stall", "flip", "norange")
CHUNK = 64 * 1024
UPSTREAM_TIMEOUT = 60

RE_V2 = re.compile(r"^/v2/(?P<name>.+)/(?P<kind>manifests|blobs)/(?P<ref>[^/]+)$")
RE_TAGS = re.compile(r"^/v2/(?P<name>.+)/tags/list$")
RE_CDN = re.compile(r"^/blob/(?P<name>.+)/(?P<digest>[^/]+)$")
RE_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")


def upstream_name(name):
    return name[len("library/"):] if name.startswith("library/") else name


def parse_range(value):
    """bytes=N-, bytes=N-M or bytes=-K (suffix) -> (start, end|None, suffix|None)."""
    m = RE_RANGE.match(value or "")
    if not m or (m.group(1) == "" and m.group(2) == ""):
        return None  # unparseable or multi-range: ignored, as RFC 9110 allows
    if m.group(1) == "":
        return (None, None, int(m.group(2)))
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else None
    if end is not None and end < start:
        return None
    return (start, end, None)


def resolve_range(rng, total):
    """Absolute (start, end_inclusive) within total, or None when unsatisfiable."""
    start, end, suffix = rng
    if suffix is not None:
        if suffix == 0 or total == 0:
            return None
        return (max(0, total - suffix), total - 1)
    if start >= total:
        return None
    return (start, total - 1 if end is None or end >= total else end)


class Proxy:
    """Shared state, counters and the three listeners."""

    def __init__(self, args):
        self.args = args
        host, _, port = args.upstream.rpartition(":")
        self.up_host, self.up_port = host or "127.0.0.1", int(port)
        if self.up_host not in ("127.0.0.1", "localhost"):
            raise SystemExit("faultproxy: only 127.0.0.1 may be used as upstream")
        self.up_host = "127.0.0.1"
        self.faults = set(args.fault or ())
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.tokens = {}  # token -> (set of repos, expiry)
        self.sigs = set()
        self.fault_counts = defaultdict(int)  # (kind, key) -> times fired
        self.requests = defaultdict(int)
        self.requests_by_method = defaultdict(int)
        self.blob_bytes_sent = defaultdict(int)
        self.ranges = defaultdict(list)
        self.cdn_auth_rejected = 0
        self.faults_fired = {k: 0 for k in FAULTS}
        self.status_counts = defaultdict(int)
        self.status_by_kind = defaultdict(lambda: defaultdict(int))
        self.servers = {}
        self.ports = {}

    # -- lifecycle ---------------------------------------------------------
    def start(self):
        for role, handler, port in (
            ("registry", RegistryHandler, self.args.registry_port),
            ("token", TokenHandler, self.args.token_port),
            ("cdn", CdnHandler, self.args.cdn_port),
        ):
            cls = type(handler.__name__, (handler,), {"proxy": self})
            srv = Server(("127.0.0.1", port), cls)
            self.servers[role] = srv
            self.ports[role] = srv.server_address[1]
        for role, srv in self.servers.items():
            t = threading.Thread(target=srv.serve_forever, name="serve-" + role, daemon=True)
            t.start()
        return self.ports

    def shutdown(self):
        self.stop.set()
        for srv in self.servers.values():
            srv.shutdown()
            srv.server_close()

    # -- counters ----------------------------------------------------------
    def count_request(self, kind, method):
        with self.lock:
            self.requests[kind] += 1
            self.requests_by_method["%s %s" % (kind, method)] += 1

    def count_status(self, kind, status):
        with self.lock:
            self.status_counts[str(status)] += 1
            self.status_by_kind[kind][str(status)] += 1

    def fault_applies(self, kind, names):
        if kind not in self.faults:
            return False
        globs = self.args.fault_repo
        if not globs:
            return True
        return any(fnmatch.fnmatchcase(n, g) for n in names for g in globs)

    def take_fault(self, kind, key, names):
        """True if fault `kind` fires now for `key` (counts it when it does)."""
        if not self.fault_applies(kind, names):
            return False
        with self.lock:
            if self.fault_counts[(kind, key)] >= self.args.fault_count:
                return False
            self.fault_counts[(kind, key)] += 1
            self.faults_fired[kind] += 1
            return True

    def fired(self, kind):
        with self.lock:
            self.faults_fired[kind] += 1

    def add_bytes(self, digest, n):
        with self.lock:
            self.blob_bytes_sent[digest] += n

    def stats(self):
        with self.lock:
            return {
                "ports": dict(self.ports),
                "requests": {k: self.requests.get(k, 0) for k in ("manifest", "blob", "token", "cdn", "other")},
                "requests_by_method": dict(self.requests_by_method),
                "blob_bytes_sent": dict(self.blob_bytes_sent),
                "ranges": {k: list(v) for k, v in self.ranges.items()},
                "cdn_auth_rejected": self.cdn_auth_rejected,
                "faults_fired": dict(self.faults_fired),
                "status_counts": dict(self.status_counts),
                "status_by_kind": {k: dict(v) for k, v in self.status_by_kind.items()},
                "tokens_issued": len(self.tokens),
            }

    # -- tokens ------------------------------------------------------------
    def issue_token(self, repos):
        tok = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[tok] = (set(repos), time.time() + self.args.token_ttl)
        return tok

    def token_valid(self, tok, repo):
        with self.lock:
            entry = self.tokens.get(tok)
        if not entry or entry[1] < time.time():
            return False
        return repo is None or repo in entry[0]

    def new_sig(self):
        sig = secrets.token_hex(16)
        with self.lock:
            self.sigs.add(sig)
        return sig

    def sig_valid(self, sig):
        with self.lock:
            return sig in self.sigs

    def upstream(self):
        return http.client.HTTPConnection(self.up_host, self.up_port, timeout=UPSTREAM_TIMEOUT)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # Clients hanging up mid-response are expected here; keep stderr quiet.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, socket.timeout, TimeoutError)):
            return
        super().handle_error(request, client_address)


def basic_ok(header):
    if not header or not header.lower().startswith("basic "):
        return False
    try:
        user, _, pw = base64.b64decode(header[6:].strip()).decode("utf-8").partition(":")
    except Exception:
        return False
    return user == USER and pw == PASSWORD


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "faultproxy/1"
    timeout = 120  # idle keep-alive connections
    proxy = None  # set per listener
    kind = "other"

    def log_message(self, fmt, *a):
        if self.proxy.args.verbose:
            sys.stderr.write("faultproxy %s: %s\n" % (self.server.server_address[1], fmt % a))

    def respond(self, status, body=b"", ctype="application/json", headers=(), kind=None):
        if isinstance(body, str):
            body = body.encode()
        # Counted before the client can see the answer: a test that reads the stats right
        # after its client got it finds it counted.
        self.proxy.count_status(kind or self.kind, status)
        self.send_response(status)
        if body or ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def error_json(self, status, code, message, headers=(), kind=None):
        body = json.dumps({"errors": [{"code": code, "message": message}]})
        hdrs = [("Docker-Distribution-Api-Version", "registry/2.0")] + list(headers)
        self.respond(status, body, "application/json; charset=utf-8", hdrs, kind)

    def retry_after(self):
        if self.proxy.args.retry_after_date:
            return email.utils.formatdate(int(time.time()) + 2, usegmt=True)
        return "1"

    def throttle(self, key, names, kind):
        """Apply the 429/503 faults; True when a fault answered the request."""
        p = self.proxy
        if p.take_fault("429", key, names):
            self.error_json(429, "TOOMANYREQUESTS", "rate limited",
                            [("Retry-After", self.retry_after())], kind)
            return True
        if p.take_fault("503", key, names):
            self.error_json(503, "UNAVAILABLE", "service unavailable", [("Retry-After", "1")], kind)
            return True
        return False

    def abort(self):
        """Shut the socket down abruptly and stop serving this connection."""
        self.close_connection = True
        try:
            self.wfile.flush()
        except OSError:
            pass
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- blob serving, shared by the CDN and the registry (--no-redirect) ---
    def serve_blob(self, name, digest, kind):
        p = self.proxy
        names = (name, upstream_name(name))
        head = self.command == "HEAD"
        rng_header = self.headers.get("Range")
        if rng_header is not None:
            with p.lock:
                p.ranges[digest].append(rng_header)
        if not head and self.throttle(digest, names, kind):
            return
        norange = p.fault_applies("norange", names)
        rng = None
        if rng_header is not None:
            if norange:
                p.fired("norange")
            else:
                rng = parse_range(rng_header)

        conn = p.upstream()
        try:
            hdrs = {}
            if rng is not None and rng[2] is None:
                hdrs["Range"] = "bytes=%d-%s" % (rng[0], "" if rng[1] is None else rng[1])
            conn.request("HEAD" if head else "GET",
                         "/v2/%s/blobs/%s" % (upstream_name(name), digest), headers=hdrs)
            up = conn.getresponse()
            if up.status not in (200, 206, 416):
                body = up.read()
                self.respond(up.status, body, up.getheader("Content-Type", "application/json"),
                             [("Docker-Distribution-Api-Version", "registry/2.0")], kind)
                return
            # total size of the blob
            cr = up.getheader("Content-Range", "")
            m = re.match(r"bytes (?:\d+-\d+|\*)/(\d+)", cr)
            if m:
                total = int(m.group(1))
            else:
                total = int(up.getheader("Content-Length", "0"))
            if up.status == 416:
                up.close()  # distribution sends a wrong Content-Length with 416
                self.respond(416, "invalid range: failed to overlap\n", "text/plain; charset=utf-8",
                             [("Content-Range", "bytes */%d" % total)], kind)
                return
            skip = 0
            if rng is None:
                start, end = 0, total - 1
                if up.status == 206:  # cannot happen without a Range; be safe
                    up.close()
                    self.respond(502, "unexpected 206 from upstream\n", "text/plain", (), kind)
                    return
            else:
                want = resolve_range(rng, total)
                if want is None:
                    up.close()
                    self.respond(416, "invalid range: failed to overlap\n", "text/plain; charset=utf-8",
                                 [("Content-Range", "bytes */%d" % total)], kind)
                    return
                start, end = want
                if up.status == 206:
                    m = re.match(r"bytes (\d+)-(\d+)/", cr)
                    up_start = int(m.group(1)) if m else 0
                    if up_start > start:
                        up.close()
                        self.respond(502, "bad upstream range\n", "text/plain", (), kind)
                        return
                    skip = start - up_start
                else:
                    skip = start
            length = end - start + 1 if total else 0
            status = 206 if rng is not None else 200

            self.send_response(status)
            self.send_header("Content-Type", up.getheader("Content-Type", "application/octet-stream"))
            self.send_header("Content-Length", str(length))
            self.send_header("Docker-Content-Digest", up.getheader("Docker-Content-Digest", digest))
            if kind == "blob":
                self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
            self.send_header("ETag", '"%s"' % digest)
            if not norange:
                self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, total))
            self.end_headers()
            p.count_status(kind, status)
            if head:
                return

            limit, after = length, None
            if p.take_fault("cut", digest, names):
                limit, after = length // 2, "cut"
            elif p.take_fault("stall", digest, names):
                limit, after = length // 2, "stall"
            flip_at = None
            if p.fault_applies("flip", names) and total and start <= total // 2 <= end:
                flip_at = total // 2 - start

            # skip what upstream sent before the wanted start
            while skip > 0:
                chunk = up.read(min(CHUNK, skip))
                if not chunk:
                    raise ConnectionError("upstream ended early")
                skip -= len(chunk)
            pos = 0
            while pos < limit:
                chunk = up.read(min(CHUNK, limit - pos))
                if not chunk:
                    break
                if flip_at is not None and pos <= flip_at < pos + len(chunk):
                    b = bytearray(chunk)
                    b[flip_at - pos] ^= 0xFF
                    chunk = bytes(b)
                try:
                    self.wfile.write(chunk)
                except OSError:
                    self.close_connection = True
                    return
                p.add_bytes(digest, len(chunk))
                if flip_at is not None and pos <= flip_at < pos + len(chunk):
                    p.fired("flip")
                pos += len(chunk)
            if pos < length:
                if after == "stall":
                    try:
                        self.wfile.flush()
                    except OSError:
                        pass
                    p.stop.wait(p.args.stall_seconds)
                self.abort()
        finally:
            conn.close()


class RegistryHandler(Handler):
    def do_GET(self):
        self.handle_registry()

    def do_HEAD(self):
        self.handle_registry()

    def other_method(self):
        self.kind = "other"
        self.proxy.count_request("other", self.command)
        self.error_json(405, "UNSUPPORTED", "the operation is unsupported")

    do_POST = do_PUT = do_PATCH = do_DELETE = other_method

    def check_auth(self, repo):
        """True when authorised; otherwise answers 401 and returns False."""
        p = self.proxy
        auth = self.headers.get("Authorization", "")
        if p.args.basic_auth:
            if basic_ok(auth):
                return True
            self.error_json(401, "UNAUTHORIZED", "authentication required",
                            [("WWW-Authenticate", 'Basic realm="faultproxy"')])
            return False
        if p.args.token_auth:
            if auth.lower().startswith("bearer ") and p.token_valid(auth[7:].strip(), repo):
                return True
            chal = 'Bearer realm="http://127.0.0.1:%d/token",service="%s"' % (p.ports["token"], SERVICE)
            if repo is not None:
                chal += ',scope="repository:%s:pull"' % repo
            self.error_json(401, "UNAUTHORIZED", "authentication required",
                            [("WWW-Authenticate", chal)])
            return False
        return True

    def handle_registry(self):
        p = self.proxy
        path = urllib.parse.urlsplit(self.path).path
        if path == "/_proxy/stats":
            body = json.dumps(p.stats(), indent=1, sort_keys=True)
            self.respond(200, body, "application/json")
            return
        if path in ("/v2", "/v2/"):
            self.kind = "other"
            p.count_request("other", self.command)
            if self.check_auth(None):
                self.passthrough("/v2/")
            return
        m = RE_V2.match(path)
        if m:
            name, ref = m.group("name"), m.group("ref")
            self.kind = "manifest" if m.group("kind") == "manifests" else "blob"
            p.count_request(self.kind, self.command)
            if not self.check_auth(name):
                return
            up = upstream_name(name)
            if self.kind == "manifest":
                if self.throttle("%s@%s" % (up, ref), (name, up), "manifest"):
                    return
                self.passthrough("/v2/%s/manifests/%s" % (up, ref), ("Accept",))
                return
            if self.command == "GET" and not p.args.no_redirect:
                loc = "http://127.0.0.1:%d/blob/%s/%s?sig=%s" % (p.ports["cdn"], name, ref, p.new_sig())
                self.respond(307, b"", None, [("Location", loc),
                                              ("Docker-Distribution-Api-Version", "registry/2.0")])
                return
            if self.command == "HEAD" and not p.args.no_redirect:
                # HEAD is answered by the registry itself; faults act on bodies
                self.passthrough("/v2/%s/blobs/%s" % (up, ref))
                return
            self.serve_blob(name, ref, "blob")
            return
        m = RE_TAGS.match(path)
        if m:
            self.kind = "other"
            p.count_request("other", self.command)
            if self.check_auth(m.group("name")):
                q = urllib.parse.urlsplit(self.path).query
                self.passthrough("/v2/%s/tags/list%s" % (upstream_name(m.group("name")), "?" + q if q else ""))
            return
        self.kind = "other"
        p.count_request("other", self.command)
        self.error_json(404, "NOT_FOUND", "not found")

    def passthrough(self, upath, forward=()):
        """Small responses (manifests, /v2/, blob HEAD): read whole and relay."""
        conn = self.proxy.upstream()
        try:
            hdrs = {h: self.headers[h] for h in forward if self.headers.get(h)}
            conn.request(self.command, upath, headers=hdrs)
            up = conn.getresponse()
            body = up.read()
            self.proxy.count_status(self.kind, up.status)
            self.send_response(up.status)
            for h in ("Content-Type", "Docker-Content-Digest", "Docker-Distribution-Api-Version", "Etag"):
                v = up.getheader(h)
                if v is not None:
                    self.send_header(h, v)
            if self.command == "HEAD":
                self.send_header("Content-Length", up.getheader("Content-Length", "0"))
            else:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        finally:
            conn.close()


class TokenHandler(Handler):
    kind = "token"

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        self.proxy.count_request("token", "GET")
        if u.path != "/token":
            self.error_json(404, "NOT_FOUND", "not found")
            return
        q = urllib.parse.parse_qs(u.query)
        self.issue(q.get("scope", []), self.headers.get("Authorization", ""), None)

    def do_POST(self):
        u = urllib.parse.urlsplit(self.path)
        self.proxy.count_request("token", "POST")
        n = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(n).decode("utf-8", "replace")) if n else {}
        if u.path != "/token":
            self.error_json(404, "NOT_FOUND", "not found")
            return
        creds = None
        if form.get("grant_type", [""])[0] == "password":
            creds = (form.get("username", [""])[0], form.get("password", [""])[0])
        self.issue(form.get("scope", []), self.headers.get("Authorization", ""), creds)

    def issue(self, scopes, auth, creds):
        p = self.proxy
        repos = []
        for s in scopes:
            for one in s.split():
                parts = one.split(":")
                if len(parts) >= 3 and parts[0].startswith("repository"):
                    repos.append(":".join(parts[1:-1]))
        if creds is not None:
            authed = creds == (USER, PASSWORD)
            presented = True
        else:
            authed = basic_ok(auth)
            presented = bool(auth)
        private = any(fnmatch.fnmatchcase(r, g) or fnmatch.fnmatchcase(upstream_name(r), g)
                      for r in repos for g in (p.args.private or ()))
        if (presented and not authed) or (private and not authed):
            self.error_json(401, "UNAUTHORIZED", "incorrect username or password",
                            [("WWW-Authenticate", 'Basic realm="faultproxy"')])
            return
        tok = p.issue_token(repos)
        body = {"token": tok, "access_token": tok, "expires_in": p.args.token_ttl,
                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self.respond(200, json.dumps(body), "application/json")


class CdnHandler(Handler):
    kind = "cdn"

    def do_GET(self):
        self.handle_cdn()

    def do_HEAD(self):
        self.handle_cdn()

    def s3_error(self, status, code, message, extra=""):
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message>%s'
                '<RequestId>%s</RequestId></Error>' % (code, message, extra, secrets.token_hex(8).upper()))
        self.respond(status, body, "application/xml")

    def handle_cdn(self):
        p = self.proxy
        p.count_request("cdn", self.command)
        u = urllib.parse.urlsplit(self.path)
        m = RE_CDN.match(u.path)
        if not m:
            self.s3_error(404, "NoSuchKey", "The specified key does not exist.")
            return
        if self.headers.get("Authorization") is not None:
            with p.lock:
                p.cdn_auth_rejected += 1
            self.s3_error(400, "InvalidArgument",
                          "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
                          "Signature query string parameter or the Authorization header should be specified",
                          "<ArgumentName>Authorization</ArgumentName>")
            return
        sig = urllib.parse.parse_qs(u.query).get("sig", [""])[0]
        if not p.sig_valid(sig):
            self.s3_error(403, "SignatureDoesNotMatch",
                          "The request signature we calculated does not match the signature you provided.")
            return
        self.serve_blob(m.group("name"), m.group("digest"), "cdn")


# ---------------------------------------------------------------------------

def parser():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--upstream", default="127.0.0.1:5000", help="upstream registry host:port (127.0.0.1 only)")
    auth = ap.add_mutually_exclusive_group()
    auth.add_argument("--token-auth", action="store_true", help="require Bearer tokens from the token port")
    auth.add_argument("--basic-auth", action="store_true", help="require Basic tester:img-test-pass")
    ap.add_argument("--private", action="append", metavar="GLOB",
                    help="repositories needing credentials at the token port (repeatable)")
    ap.add_argument("--token-ttl", type=int, default=300, metavar="S", help="token lifetime (default 300)")
    ap.add_argument("--no-redirect", action="store_true", help="serve blobs from the registry port, no 307")
    ap.add_argument("--fault", action="append", choices=FAULTS, metavar="KIND",
                    help="inject a fault: %s (repeatable)" % ", ".join(FAULTS))
    ap.add_argument("--fault-count", type=int, default=1, metavar="N",
                    help="times each fault fires per blob/manifest (default 1)")
    ap.add_argument("--fault-repo", action="append", metavar="GLOB",
                    help="only inject faults for these repositories (repeatable)")
    ap.add_argument("--retry-after-date", action="store_true", help="Retry-After as an HTTP-date")
    ap.add_argument("--stall-seconds", type=float, default=60, metavar="S", help="stall duration (default 60)")
    ap.add_argument("--max-seconds", type=float, default=300, metavar="S", help="exit after S seconds (default 300)")
    ap.add_argument("--registry-port", type=int, default=0, metavar="P")
    ap.add_argument("--token-port", type=int, default=0, metavar="P")
    ap.add_argument("--cdn-port", type=int, default=0, metavar="P")
    ap.add_argument("--verbose", action="store_true", help="log requests to stderr")
    ap.add_argument("--self-test", action="store_true", help="run the built-in checks against --upstream")
    return ap


def main(argv=None):
    args = parser().parse_args(argv)
    if args.self_test:
        return self_test(args.upstream)
    proxy = Proxy(args)
    ports = proxy.start()
    sys.stdout.write(json.dumps(ports) + "\n")
    sys.stdout.flush()

    def on_signal(signum, frame):
        proxy.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    proxy.stop.wait(args.max_seconds)
    proxy.shutdown()
    return 0


# ---------------------------------------------------------------------------
# self-test

def self_test(upstream):
    import urllib.error
    import urllib.request

    ok = [0]
    failed = []

    def check(cond, what):
        if cond:
            ok[0] += 1
            print("  ok   %s" % what)
        else:
            failed.append(what)
            print("  FAIL %s" % what)

    def start(*extra):
        p = Proxy(parser().parse_args(["--upstream", upstream] + list(extra)))
        p.start()
        return p

    def req(port, path, method="GET", headers=None, timeout=20):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        try:
            body = r.read()
        except http.client.IncompleteRead as e:
            body = e.partial
            r.incomplete = True
        c.close()
        return r, body

    basic = "Basic " + base64.b64encode(("%s:%s" % (USER, PASSWORD)).encode()).decode()
    accept = ("application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.v2+json,"
              "application/vnd.oci.image.index.v1+json,application/vnd.docker.distribution.manifest.list.v2+json")

    # the fixture: busybox:latest and its (only) layer, straight from upstream
    host, _, port = upstream.rpartition(":")
    r, mbody = req(int(port), "/v2/busybox/manifests/latest", headers={"Accept": accept})
    if r.status != 200:
        print("faultproxy self-test: upstream %s has no busybox:latest (%d); run tools/testbed up"
              % (upstream, r.status))
        return 2
    mdigest = r.getheader("Docker-Content-Digest")
    man = json.loads(mbody)
    layer = max(man["layers"], key=lambda l: l["size"])
    digest, size = layer["digest"], layer["size"]
    r, blob = req(int(port), "/v2/busybox/blobs/" + digest)
    sha = "sha256:" + hashlib.sha256(blob).hexdigest()
    print("fixture busybox:latest %s, layer %s (%d bytes)" % (mdigest, digest, size))

    procs = []
    try:
        print("token auth, private repositories, 307 to the CDN, ranges")
        p = start("--token-auth", "--private", "private/*")
        procs.append(p)
        R, T, C = p.ports["registry"], p.ports["token"], p.ports["cdn"]
        r, body = req(R, "/v2/")
        check(r.status == 401 and "scope=" not in r.getheader("WWW-Authenticate", "")
              and 'realm="http://127.0.0.1:%d/token"' % T in r.getheader("WWW-Authenticate", ""),
              "/v2/ without a token: 401, Bearer challenge without scope")
        r, body = req(R, "/v2/library/busybox/manifests/latest", headers={"Accept": accept})
        chal = r.getheader("WWW-Authenticate", "")
        check(r.status == 401 and 'scope="repository:library/busybox:pull"' in chal
              and json.loads(body)["errors"][0]["code"] == "UNAUTHORIZED",
              "manifest without a token: 401 with scope and UNAUTHORIZED body")
        r, body = req(T, "/token?service=faultproxy&scope=repository:library/busybox:pull")
        tj = json.loads(body)
        check(r.status == 200 and tj["token"] == tj["access_token"] and tj["expires_in"] == 300,
              "anonymous token for a public repository")
        bearer = {"Authorization": "Bearer " + tj["token"], "Accept": accept}
        r, body = req(R, "/v2/library/busybox/manifests/latest", headers=bearer)
        check(r.status == 200 and body == mbody and r.getheader("Docker-Content-Digest") == mdigest
              and r.getheader("Content-Type") == man.get("mediaType", "application/vnd.oci.image.manifest.v1+json"),
              "library/busybox manifest via token (mapped to busybox)")
        r, body = req(R, "/v2/library/busybox/manifests/latest", "HEAD", headers=bearer)
        check(r.status == 200 and int(r.getheader("Content-Length")) == len(mbody) and body == b"",
              "manifest HEAD keeps Content-Length, no body")
        r, body = req(R, "/v2/redis/manifests/7", headers=bearer)
        check(r.status == 401, "token for busybox refused for redis")
        r, body = req(T, "/token?service=faultproxy&scope=repository:private/busybox:pull")
        check(r.status == 401 and b"incorrect username or password" in body,
              "private repository without credentials: 401")
        r, body = req(T, "/token?service=faultproxy&scope=repository:private/busybox:pull",
                      headers={"Authorization": basic})
        check(r.status == 200 and json.loads(body)["token"], "private repository with credentials: token")
        r, body = req(T, "/token?service=faultproxy&scope=repository:busybox:pull",
                      headers={"Authorization": "Basic " + base64.b64encode(b"tester:wrong").decode()})
        check(r.status == 401, "wrong credentials refused even for a public repository")

        r, body = req(R, "/v2/library/busybox/blobs/" + digest, headers=bearer)
        loc = r.getheader("Location", "")
        check(r.status == 307 and loc.startswith("http://127.0.0.1:%d/blob/library/busybox/%s?sig=" % (C, digest)),
              "blob GET: 307 to the CDN")
        cpath = loc.split(str(C), 1)[1]
        r, body = req(R, "/v2/library/busybox/blobs/" + digest, "HEAD", headers=bearer)
        check(r.status == 200 and int(r.getheader("Content-Length")) == size, "blob HEAD answered by the registry")
        r, body = req(C, cpath, headers={"Authorization": "Bearer " + tj["token"]})
        check(r.status == 400 and b"Only one auth mechanism allowed" in body, "CDN rejects Authorization: 400")
        r, body = req(C, cpath)
        check(r.status == 200 and len(body) == size and "sha256:" + hashlib.sha256(body).hexdigest() == digest
              and r.getheader("Docker-Content-Digest") == digest,
              "CDN serves the blob, sha256 matches")
        r, body = req(C, cpath, headers={"Range": "bytes=100-199"})
        check(r.status == 206 and body == blob[100:200]
              and r.getheader("Content-Range") == "bytes 100-199/%d" % size,
              "CDN Range bytes=100-199: 206 and Content-Range")
        r, body = req(C, cpath, headers={"Range": "bytes=%d-" % (size - 1000)})
        check(r.status == 206 and body == blob[-1000:]
              and r.getheader("Content-Range") == "bytes %d-%d/%d" % (size - 1000, size - 1, size),
              "CDN Range bytes=N-: 206, tail of the blob")
        r, body = req(C, cpath, headers={"Range": "bytes=%d-" % (size + 10)})
        check(r.status == 416 and r.getheader("Content-Range") == "bytes */%d" % size,
              "CDN Range beyond the end: 416")
        r, body = req(C, cpath.split("?")[0] + "?sig=forged")
        check(r.status == 403, "CDN refuses an unknown signature: 403")
        # a naive client that keeps Authorization across the redirect (urllib does)
        try:
            with urllib.request.urlopen(urllib.request.Request(
                    "http://127.0.0.1:%d/v2/library/busybox/blobs/%s" % (R, digest),
                    headers={"Authorization": "Bearer " + tj["token"]}), timeout=20) as resp:
                code = resp.status
        except urllib.error.HTTPError as e:
            code = e.code
        check(code == 400, "urllib follows the 307 keeping Authorization: the CDN says 400 (%d)" % code)
        st = p.stats()
        check(st["cdn_auth_rejected"] == 2, "stats: cdn_auth_rejected == 2 (%d)" % st["cdn_auth_rejected"])
        check(st["requests"]["token"] == 4, "stats: 4 token requests (%d)" % st["requests"]["token"])
        check(st["blob_bytes_sent"].get(digest) == size + 100 + 1000,
              "stats: blob_bytes_sent == size+100+1000 (%s)" % st["blob_bytes_sent"].get(digest))
        check(st["ranges"].get(digest) == ["bytes=100-199", "bytes=%d-" % (size - 1000), "bytes=%d-" % (size + 10)],
              "stats: ranges recorded")
        r, body = req(R, "/_proxy/stats")
        check(r.status == 200 and json.loads(body)["requests"]["cdn"] == st["requests"]["cdn"],
              "GET /_proxy/stats over HTTP")

        print("basic auth")
        p = start("--basic-auth")
        procs.append(p)
        r, body = req(p.ports["registry"], "/v2/busybox/manifests/latest", headers={"Accept": accept})
        check(r.status == 401 and r.getheader("WWW-Authenticate") == 'Basic realm="faultproxy"',
              "no credentials: 401 Basic challenge")
        r, body = req(p.ports["registry"], "/v2/busybox/manifests/latest",
                      headers={"Accept": accept, "Authorization": basic})
        check(r.status == 200 and body == mbody, "with credentials: 200")

        def cdn_url(p, name="busybox"):
            r, _ = req(p.ports["registry"], "/v2/%s/blobs/%s" % (name, digest))
            return r.getheader("Location").split(str(p.ports["cdn"]), 1)[1]

        print("fault 429 (--fault-count 2, --retry-after-date)")
        p = start("--fault", "429", "--fault-count", "2", "--retry-after-date")
        procs.append(p)
        R, C = p.ports["registry"], p.ports["cdn"]
        codes = [req(R, "/v2/busybox/manifests/latest", headers={"Accept": accept})[0].status for _ in range(3)]
        check(codes == [429, 429, 200], "manifest: 429, 429, 200 (%s)" % codes)
        u = cdn_url(p)
        r, body = req(C, u)
        ra = r.getheader("Retry-After", "")
        when = email.utils.parsedate_to_datetime(ra).timestamp() if ra else 0
        check(r.status == 429 and 0 < when - time.time() <= 2.01 and b"TOOMANYREQUESTS" in body,
              "blob: 429 with an HTTP-date Retry-After (%s)" % ra)
        req(C, u)
        r, body = req(C, u)
        check(r.status == 200 and len(body) == size, "blob: third request 200")
        check(p.stats()["faults_fired"]["429"] == 4, "stats: faults_fired 429 == 4")
        p = start("--fault", "429")
        procs.append(p)
        r, body = req(p.ports["registry"], "/v2/busybox/manifests/latest", headers={"Accept": accept})
        check(r.status == 429 and r.getheader("Retry-After") == "1", "Retry-After: 1 by default")

        print("fault 503, limited with --fault-repo")
        p = start("--fault", "503", "--fault-repo", "busy*")
        procs.append(p)
        R = p.ports["registry"]
        codes = [req(R, "/v2/busybox/manifests/latest", headers={"Accept": accept})[0].status for _ in range(2)]
        check(codes == [503, 200], "busybox manifest: 503, 200 (%s)" % codes)
        r, _ = req(R, "/v2/redis/manifests/7", headers={"Accept": accept})
        check(r.status == 200, "redis (not matching --fault-repo): 200")

        print("fault cut")
        p = start("--fault", "cut")
        procs.append(p)
        u = cdn_url(p)
        r, body = req(p.ports["cdn"], u)
        check(r.status == 200 and int(r.getheader("Content-Length")) == size and len(body) == size // 2
              and getattr(r, "incomplete", False),
              "first response cut: %d of %d bytes, connection closed" % (len(body), size))
        r, body2 = req(p.ports["cdn"], u, headers={"Range": "bytes=%d-" % len(body)})
        check(r.status == 206 and body + body2 == blob, "resume with Range after the cut: complete blob")
        st = p.stats()
        check(st["blob_bytes_sent"][digest] == size and st["faults_fired"]["cut"] == 1,
              "stats: blob_bytes_sent == size over both responses, cut fired once")

        print("fault stall (--stall-seconds 2)")
        p = start("--fault", "stall", "--stall-seconds", "2")
        procs.append(p)
        u = cdn_url(p)
        t0 = time.time()
        r, body = req(p.ports["cdn"], u, timeout=10)
        dt = time.time() - t0
        check(len(body) == size // 2 and 1.5 < dt < 8, "stalled after %d bytes for %.1fs, then closed" % (len(body), dt))
        c = http.client.HTTPConnection("127.0.0.1", p.ports["cdn"], timeout=10)
        c.request("GET", u)
        r = c.getresponse()
        check(len(r.read()) == size, "second response complete")
        c.close()

        print("fault flip")
        p = start("--fault", "flip")
        procs.append(p)
        u = cdn_url(p)
        r, body = req(p.ports["cdn"], u)
        check(r.status == 200 and len(body) == size and hashlib.sha256(body).hexdigest() != sha[7:]
              and body[size // 2] == blob[size // 2] ^ 0xFF, "sha256 differs, length kept, middle byte flipped")
        r, body = req(p.ports["cdn"], u, headers={"Range": "bytes=%d-" % (size // 2 - 10)})
        check(r.status == 206 and body[10] == blob[size // 2] ^ 0xFF, "flip also in a ranged response")

        print("fault norange")
        p = start("--fault", "norange")
        procs.append(p)
        u = cdn_url(p)
        r, body = req(p.ports["cdn"], u, headers={"Range": "bytes=100-"})
        check(r.status == 200 and body == blob and r.getheader("Content-Range") is None,
              "Range ignored: 200 with the full blob")

        print("--no-redirect with cut")
        p = start("--no-redirect", "--fault", "cut", "--token-auth")
        procs.append(p)
        R, T = p.ports["registry"], p.ports["token"]
        tok = json.loads(req(T, "/token?scope=repository:library/busybox:pull")[1])["token"]
        r, body = req(R, "/v2/library/busybox/blobs/" + digest, headers={"Authorization": "Bearer " + tok})
        check(r.status == 200 and len(body) == size // 2, "registry serves the blob itself, cut at half")
        r, body = req(R, "/v2/library/busybox/blobs/" + digest,
                      headers={"Authorization": "Bearer " + tok, "Range": "bytes=10-19"})
        check(r.status == 206 and body == blob[10:20], "registry Range 206")
        r, body = req(R, "/v2/library/busybox/blobs/sha256:" + "0" * 64, headers={"Authorization": "Bearer " + tok})
        check(r.status == 404, "unknown blob: 404 passed through")
        print(json.dumps(p.stats(), indent=1, sort_keys=True))
    finally:
        for p in procs:
            p.shutdown()
    print("faultproxy self-test: %d ok, %d failed" % (ok[0], len(failed)))
    for f in failed:
        print("  failed: " + f)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
