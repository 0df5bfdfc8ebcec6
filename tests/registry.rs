//! End-to-end tests of img against a registry that behaves like the real ones: rate limits,
//! server errors, cut, stalled and corrupted downloads, token auth with a CDN that refuses
//! Authorization, credential files and helpers, mirrors, and `img login`/`logout`. The faults
//! come from `tools/faultproxy.py` in front of the plain test registry; every outcome is checked
//! on disk (files, sha256sum, `img fsck`), in exit codes and in the proxy's own counters.
//!
//! Every img run here gets a private environment (no credential file, no registries.conf but
//! the ones a test writes) and is checked for leaked secrets and panics.

mod support;

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{Value, json};
use support::proxy::{Proxy, count};
use support::{
    Run, TestRoot, assert_one_error_line, manifest_blobs, registry_digest, registry_manifest,
    testbed,
};

/// The user the fault proxy (and the TLS test registry) accepts.
const USER: &str = "tester";
/// Its password: must never appear in any output.
const PASS: &str = "img-test-pass";

/// Standard base64 (what docker's `auth` field holds).
fn base64(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `base64(tester:img-test-pass)`, as an `auth` field or a Basic header holds it.
fn basic_auth() -> String {
    base64(format!("{USER}:{PASS}").as_bytes())
}

/// Panic if a run printed the password, its base64 form, or panicked.
fn assert_no_secret(run: &Run) {
    for secret in [PASS.to_string(), basic_auth()] {
        assert!(
            !run.stdout.contains(&secret) && !run.stderr.contains(&secret),
            "a secret leaked into the output: {run}"
        );
    }
    assert!(!run.stderr.contains("panicked"), "img panicked: {run}");
}

/// A store root plus a private scratch directory that holds an empty `DOCKER_CONFIG`, an
/// empty registries.conf, and whatever files a test writes. img never sees the user's own
/// credentials or registries.conf.
struct Sandbox {
    root: TestRoot,
    home: PathBuf,
}

impl Sandbox {
    fn new(test: &str) -> Sandbox {
        let root = TestRoot::new(test);
        let mut name = root.path.file_name().unwrap().to_os_string();
        name.push("-home");
        let home = root.path.with_file_name(name);
        fs::create_dir_all(home.join("docker")).unwrap();
        fs::write(home.join("registries.conf"), "").unwrap();
        Sandbox { root, home }
    }

    /// Write `contents` to `name` under the scratch directory (parents created).
    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.home.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, contents).unwrap();
        path
    }

    /// Run `img --root ROOT ARGS…` in the private environment.
    fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[], None)
    }

    /// Run img with extra environment and, when given, `stdin` on its standard input. The
    /// output is checked for secrets and panics.
    fn run_with(&self, args: &[&str], env: &[(&str, OsString)], stdin: Option<&str>) -> Run {
        let mut cmd = self.root.command(args);
        cmd.env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("XDG_CONFIG_HOME")
            .env("HOME", &self.home)
            .env("DOCKER_CONFIG", self.home.join("docker"))
            .env("IMG_REGISTRIES_CONF", self.home.join("registries.conf"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().expect("cannot run the img binary");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let env: Vec<String> = env
            .iter()
            .map(|(k, v)| format!("{k}={}", v.to_string_lossy()))
            .collect();
        let run = Run {
            cmdline: format!("{} img {}", env.join(" "), args.join(" ")),
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert_no_secret(&run);
        run
    }

    /// Assert `reference` is stored and the store is whole: fsck clean, every blob hashing
    /// (sha256sum) to its name, nothing left in ingest/.
    fn assert_complete(&self, reference: &str) {
        let names = self.root.ref_names();
        assert!(
            names.iter().any(|n| n == reference),
            "{reference} is not in index.json: {names:?}"
        );
        self.root.assert_fsck_clean();
        self.root.assert_blobs_hash_to_their_names();
        assert_eq!(self.root.ingest_files(), Vec::<PathBuf>::new(), "ingest/");
        let index = fs::read_to_string(self.root.path.join("index.json")).unwrap();
        assert!(!index.contains(PASS) && !index.contains(&basic_auth()));
    }

    /// Assert a failed pull stored nothing: no reference, no blob, nothing in ingest/.
    fn assert_nothing_stored(&self) {
        assert_eq!(self.root.ref_names(), Vec::<String>::new(), "references");
        assert_eq!(self.root.blob_digests(), Vec::<String>::new(), "blobs");
        assert_eq!(self.root.ingest_files(), Vec::<PathBuf>::new(), "ingest/");
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("scratch directory kept: {}", self.home.display());
        } else {
            let _ = fs::remove_dir_all(&self.home);
        }
    }
}

/// The config and layers (digest, size) of a fixture, as the plain registry serves it.
fn fixture_blobs(image: &str) -> Vec<(String, u64)> {
    manifest_blobs(&registry_manifest(&testbed().plain_ref(image)))
}

/// The digest the plain registry serves for a fixture.
fn fixture_digest(image: &str) -> String {
    registry_digest(&testbed().plain_ref(image))
}

/// Parse a `pull --json` answer.
fn pulled(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {run}"))
}

/// Lines of stderr containing `needle`.
fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

/// The offsets of the `Range: bytes=N-` requests the proxy saw for `digest`.
fn resume_offsets(stats: &Value, digest: &str) -> Vec<u64> {
    stats["ranges"][digest]
        .as_array()
        .map(|ranges| {
            ranges
                .iter()
                .map(|r| {
                    let r = r.as_str().unwrap();
                    r.strip_prefix("bytes=")
                        .and_then(|r| r.strip_suffix('-'))
                        .and_then(|n| n.parse().ok())
                        .unwrap_or_else(|| panic!("not a bytes=N- range: {r}"))
                })
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// 429 and 503

/// Pull busybox through a proxy answering the first request of the manifest and of each blob
/// with `status`; img waits and tries again, and the image arrives whole.
fn transient_status_is_retried(test: &str, status: &str, extra: &[&str]) {
    let blobs = fixture_blobs("busybox:latest");
    let mut args = vec!["--fault", status];
    args.extend(extra);
    let proxy = Proxy::start(&args);
    let sb = Sandbox::new(test);
    let reference = proxy.reference("busybox:latest");
    let run = sb.run(&["-v", "pull", "--json", &reference]);
    run.assert_ok();
    let pulled = pulled(&run);
    assert_eq!(pulled["digest"], fixture_digest("busybox:latest"), "{run}");
    assert_eq!(pulled["reference"], reference.as_str());
    sb.assert_complete(&reference);

    let st = proxy.stats();
    let n = blobs.len() as u64;
    // the manifest and every blob were refused once, then asked for again
    assert_eq!(count(&st["faults_fired"][status]), 1 + n, "{st}");
    assert_eq!(count(&st["status_by_kind"]["manifest"][status]), 1, "{st}");
    assert_eq!(count(&st["status_by_kind"]["manifest"]["200"]), 1, "{st}");
    assert_eq!(count(&st["requests"]["manifest"]), 2, "{st}");
    assert_eq!(count(&st["status_by_kind"]["cdn"][status]), n, "{st}");
    assert_eq!(count(&st["status_by_kind"]["cdn"]["200"]), n, "{st}");
    assert_eq!(count(&st["requests"]["cdn"]), 2 * n, "{st}");
    assert_eq!(count(&st["requests"]["blob"]), 2 * n, "{st}");
    for (digest, size) in &blobs {
        assert_eq!(
            count(&st["blob_bytes_sent"][digest]),
            *size,
            "{digest}: {st}"
        );
    }
    // -v says so, once per refused request
    let retries = lines_with(&run.stderr, "trying again");
    assert_eq!(retries.len() as u64, 1 + n, "{run}");
    for line in retries {
        assert!(line.starts_with("img: ") && line.contains(status), "{line}");
    }
}

#[test]
fn rate_limit_429_with_retry_after_seconds_is_retried() {
    transient_status_is_retried("429-seconds", "429", &[]);
}

#[test]
fn rate_limit_429_with_retry_after_date_is_retried() {
    transient_status_is_retried("429-date", "429", &["--retry-after-date"]);
}

#[test]
fn a_503_is_retried() {
    transient_status_is_retried("503-once", "503", &[]);
}

#[test]
fn a_lasting_503_fails_after_the_retries_and_stores_nothing() {
    let proxy = Proxy::start(&["--fault", "503", "--fault-count", "10"]);
    let sb = Sandbox::new("503-lasting");
    let reference = proxy.reference("busybox:latest");
    let run = sb.run(&["pull", "--retry", "2", &reference]);
    run.assert_failed();
    let line = assert_one_error_line(&run.stderr);
    assert!(line.contains("503"), "{line}");
    assert!(line.contains(&proxy.registry_addr()), "{line}");
    assert_eq!(run.stdout, "", "{run}");
    sb.assert_nothing_stored();
    let st = proxy.stats();
    // --retry 2: two attempts in all, then nothing more
    assert_eq!(count(&st["requests"]["manifest"]), 2, "{st}");
    assert_eq!(count(&st["status_by_kind"]["manifest"]["503"]), 2, "{st}");
    assert_eq!(count(&st["requests"]["blob"]), 0, "{st}");
}

// ---------------------------------------------------------------------------------------------
// cut, stalled, range-ignoring and corrupting downloads

#[test]
fn a_cut_download_resumes_where_it_stopped() {
    let blobs = fixture_blobs("redis:7");
    let proxy = Proxy::start(&["--fault", "cut"]);
    let sb = Sandbox::new("cut");
    let reference = proxy.reference("redis:7");
    let run = sb.run(&["-v", "pull", "--json", &reference]);
    run.assert_ok();
    assert_eq!(pulled(&run)["digest"], fixture_digest("redis:7"), "{run}");
    sb.assert_complete(&reference);
    for (digest, size) in &blobs {
        let meta = fs::metadata(sb.root.blob_path(digest)).unwrap();
        assert_eq!(meta.len(), *size, "{digest}");
    }

    let st = proxy.stats();
    assert_eq!(
        count(&st["faults_fired"]["cut"]),
        blobs.len() as u64,
        "{st}"
    );
    for (digest, size) in &blobs {
        // each blob was cut once and resumed from inside the blob, never from 0
        let offsets = resume_offsets(&st, digest);
        assert!(!offsets.is_empty(), "{digest} was not resumed: {st}");
        for offset in &offsets {
            assert!(*offset > 0 && offset < size, "{digest}: bytes={offset}-");
        }
        // half went out before the cut and the resume sent the other half: the blob went
        // out about once, not once and a half as a restart would have it
        let sent = count(&st["blob_bytes_sent"][digest]);
        assert!(sent >= *size, "{digest}: {sent} of {size} bytes sent");
        assert!(
            sent * 10 < size * 11 + 10,
            "{digest}: {sent} bytes sent for a {size}-byte blob: the resume re-downloaded"
        );
    }
    let (big, big_size) = blobs.iter().max_by_key(|(_, s)| *s).unwrap();
    assert!(*big_size > 5_000_000, "test bed: redis:7's big layer");
    assert_eq!(
        resume_offsets(&st, big),
        vec![big_size / 2],
        "the big layer resumed exactly where the cut stopped"
    );
    assert_eq!(count(&st["blob_bytes_sent"][big]), *big_size);
    let resumes = lines_with(&run.stderr, "resuming");
    assert_eq!(resumes.len(), blobs.len(), "{run}");
}

#[test]
fn a_stalled_download_times_out_and_resumes() {
    let blobs = fixture_blobs("busybox:latest");
    let proxy = Proxy::start(&["--fault", "stall", "--stall-seconds", "30"]);
    let sb = Sandbox::new("stall");
    let reference = proxy.reference("busybox:latest");
    let run = sb.run(&["-v", "pull", "--stall-timeout", "2", &reference]);
    run.assert_ok();
    assert_eq!(run.stdout.trim(), fixture_digest("busybox:latest"), "{run}");
    sb.assert_complete(&reference);
    let stalled: Vec<&str> = lines_with(&run.stderr, "stalled");
    assert!(
        !stalled.is_empty(),
        "-v should say a download stalled: {run}"
    );
    assert!(
        stalled.iter().all(|l| l.contains("resuming")),
        "the stalled downloads should resume: {run}"
    );
    let st = proxy.stats();
    assert_eq!(
        count(&st["faults_fired"]["stall"]),
        blobs.len() as u64,
        "{st}"
    );
    for (digest, size) in &blobs {
        assert_eq!(
            resume_offsets(&st, digest),
            vec![size / 2],
            "{digest}: {st}"
        );
    }
}

#[test]
fn a_server_ignoring_range_restarts_the_blob() {
    let blobs = fixture_blobs("busybox:latest");
    let proxy = Proxy::start(&["--fault", "norange", "--fault", "cut"]);
    let sb = Sandbox::new("norange");
    let reference = proxy.reference("busybox:latest");
    let run = sb.run(&["-v", "pull", "--json", &reference]);
    run.assert_ok();
    assert_eq!(pulled(&run)["digest"], fixture_digest("busybox:latest"));
    sb.assert_complete(&reference);
    assert!(
        !lines_with(&run.stderr, "starting over").is_empty(),
        "-v should say the blob started over: {run}"
    );
    let st = proxy.stats();
    for (digest, size) in &blobs {
        // img asked to resume, got the whole blob with a 200, and kept it from byte 0
        assert_eq!(
            resume_offsets(&st, digest),
            vec![size / 2],
            "{digest}: {st}"
        );
        assert_eq!(
            count(&st["blob_bytes_sent"][digest]),
            size / 2 + size,
            "{digest}: {st}"
        );
    }
    assert_eq!(count(&st["faults_fired"]["norange"]), blobs.len() as u64);
}

#[test]
fn a_corrupted_blob_is_refused_and_not_kept() {
    let blobs = fixture_blobs("busybox:latest");
    let proxy = Proxy::start(&["--fault", "flip"]);
    let sb = Sandbox::new("flip");
    let reference = proxy.reference("busybox:latest");
    let run = sb.run(&["pull", "--retry", "2", &reference]);
    run.assert_failed();
    let line = assert_one_error_line(&run.stderr);
    assert!(line.contains("digest mismatch"), "{line}");
    // every blob is corrupted; the error names the one that failed first
    let named: Vec<&String> = blobs
        .iter()
        .map(|(d, _)| d)
        .filter(|d| line.contains(d.as_str()))
        .collect();
    assert_eq!(named.len(), 1, "{line} should name one of {blobs:?}");
    assert!(!sb.root.blob_path(named[0]).exists(), "{} kept", named[0]);
    assert!(
        sb.root.blob_files().iter().all(|(d, _)| d != named[0]),
        "{:?}",
        sb.root.blob_files()
    );
    sb.assert_nothing_stored();
    assert!(count(&proxy.stats()["faults_fired"]["flip"]) >= 1);
}

// ---------------------------------------------------------------------------------------------
// TLS: a certificate nobody vouches for

/// A TLS registry answering `/v2/` (and 404 for everything else) with a certificate for
/// 127.0.0.1 signed by a CA made for the test, which no system store trusts; killed on drop.
struct TlsRegistry {
    child: std::process::Child,
    port: u16,
    /// The CA that signed its certificate.
    ca: PathBuf,
}

impl TlsRegistry {
    fn start(dir: &Path) -> TlsRegistry {
        let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
        let (ca_key, ca, key, csr, crt, ext) = (
            path("ca.key"),
            path("ca.crt"),
            path("leaf.key"),
            path("leaf.csr"),
            path("leaf.crt"),
            path("leaf.ext"),
        );
        fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        #[rustfmt::skip]
        let steps: [&[&str]; 3] = [
            &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
              "-subj", "/CN=img-test-ca", "-keyout", &ca_key, "-out", &ca],
            &["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
              "-keyout", &key, "-out", &csr],
            &["x509", "-req", "-days", "2", "-CAcreateserial", "-in", &csr, "-CA", &ca,
              "-CAkey", &ca_key, "-out", &crt, "-extfile", &ext],
        ];
        for args in steps {
            support::run_tool("openssl", args);
        }
        let server = r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path == "/v2/"
        body = b"{}" if ok else b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_HEAD = do_GET
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;
        let mut child = std::process::Command::new("python3")
            .args(["-c", server, &crt, &key])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot run python3");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("the TLS test registry did not start: {line:?}")
        });
        TlsRegistry {
            child,
            port,
            ca: dir.join("ca.crt"),
        }
    }
}

impl Drop for TlsRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The attack: a registry whose certificate no trusted CA signed (a man in the middle) is
/// refused at the handshake, saying so; the same registry with its CA given for it
/// (`--cert-dir`, docker's certs.d layout) is spoken to — so the refusal was the certificate's.
#[test]
fn a_registry_certificate_no_trusted_ca_signed_is_refused() {
    let sb = Sandbox::new("tls-untrusted");
    let registry = TlsRegistry::start(&sb.home);
    let reference = format!("127.0.0.1:{}/busybox:latest", registry.port);

    let run = sb.run(&["pull", &reference]);
    run.assert_failed();
    let line = assert_one_error_line(&run.stderr);
    assert!(
        line.contains("invalid peer certificate: UnknownIssuer"),
        "{line}"
    );
    assert!(
        line.contains(&format!("127.0.0.1:{}", registry.port)),
        "{line}"
    );
    sb.assert_nothing_stored();

    let certs = sb.home.join("certs.d");
    let dir = certs.join(format!("127.0.0.1:{}", registry.port));
    fs::create_dir_all(&dir).unwrap();
    fs::copy(&registry.ca, dir.join("ca.crt")).unwrap();
    let run = sb.run(&["pull", "--cert-dir", certs.to_str().unwrap(), &reference]);
    run.assert_failed();
    let line = assert_one_error_line(&run.stderr);
    assert!(
        line.contains("404") && line.contains("MANIFEST_UNKNOWN"),
        "{line}"
    );
    assert!(!line.contains("certificate"), "{line}");
}

// ---------------------------------------------------------------------------------------------
// token auth, the CDN, credentials

#[test]
fn token_auth_is_cached_and_never_sent_to_the_cdn() {
    let blobs = fixture_blobs("busybox:latest");
    let proxy = Proxy::start(&["--token-auth"]);
    let sb = Sandbox::new("token");
    let reference = proxy.reference("library/busybox:latest");
    let run = sb.run(&["-v", "pull", "--json", &reference]);
    run.assert_ok();
    assert_eq!(pulled(&run)["digest"], fixture_digest("busybox:latest"));
    sb.assert_complete(&reference);
    let st = proxy.stats();
    // one anonymous token for repository:library/busybox:pull, reused for every blob
    assert_eq!(count(&st["requests"]["token"]), 1, "{st}");
    assert_eq!(count(&st["tokens_issued"]), 1, "{st}");
    // the blobs came from the CDN, which never saw an Authorization header
    assert_eq!(count(&st["cdn_auth_rejected"]), 0, "{st}");
    assert_eq!(
        count(&st["status_by_kind"]["cdn"]["200"]),
        blobs.len() as u64,
        "{st}"
    );
    assert_eq!(
        count(&st["status_by_kind"]["blob"]["307"]),
        blobs.len() as u64,
        "{st}"
    );
    for (digest, size) in &blobs {
        assert_eq!(count(&st["blob_bytes_sent"][digest]), *size, "{digest}");
    }
}

#[test]
fn a_private_repository_needs_credentials() {
    let proxy = Proxy::start(&["--token-auth", "--private", "busybox"]);
    let reference = proxy.reference("library/busybox:latest");

    let sb = Sandbox::new("private-anonymous");
    let run = sb.run(&["-v", "pull", "--retry", "2", &reference]);
    run.assert_failed();
    let line = assert_one_error_line(&run.stderr);
    assert!(line.contains("unauthorized"), "{line}");
    assert!(line.contains(&proxy.registry_addr()), "{line}");
    sb.assert_nothing_stored();

    let sb = Sandbox::new("private-wrong");
    let run = sb.run(&["pull", "--creds", "tester:not-the-password", &reference]);
    run.assert_failed();
    let line = assert_one_error_line(&run.stderr);
    assert!(line.contains("unauthorized"), "{line}");
    assert!(!line.contains("not-the-password"), "{line}");
    sb.assert_nothing_stored();

    let sb = Sandbox::new("private-creds");
    let creds = format!("{USER}:{PASS}");
    let run = sb.run(&["-v", "pull", "--json", "--creds", &creds, &reference]);
    run.assert_ok();
    assert_eq!(pulled(&run)["digest"], fixture_digest("busybox:latest"));
    sb.assert_complete(&reference);
    assert_eq!(count(&proxy.stats()["cdn_auth_rejected"]), 0);
}

#[test]
fn basic_credentials_are_not_sent_to_the_cdn() {
    let blobs = fixture_blobs("busybox:latest");
    let proxy = Proxy::start(&["--basic-auth"]);
    let sb = Sandbox::new("basic-cdn");
    let reference = proxy.reference("busybox:latest");
    let creds = format!("{USER}:{PASS}");
    let run = sb.run(&["-v", "pull", "--json", "--creds", &creds, &reference]);
    run.assert_ok();
    sb.assert_complete(&reference);
    let st = proxy.stats();
    assert_eq!(count(&st["cdn_auth_rejected"]), 0, "{st}");
    assert_eq!(
        count(&st["status_by_kind"]["cdn"]["200"]),
        blobs.len() as u64,
        "{st}"
    );
    // one 401 taught img the scheme; Basic is then sent up front
    assert_eq!(count(&st["status_by_kind"]["manifest"]["401"]), 1, "{st}");
    assert_eq!(count(&st["status_by_kind"]["blob"]["401"]), 0, "{st}");
}

#[test]
fn a_hub_like_registry_with_every_transient_fault_at_once() {
    // token auth for a private repository, blobs on a CDN, a 429 on every manifest and blob,
    // and every blob cut midway: the resumes reuse the token and never send it to the CDN
    let blobs = fixture_blobs("redis:7");
    let proxy = Proxy::start(&[
        "--token-auth",
        "--private",
        "redis",
        "--fault",
        "429",
        "--fault",
        "cut",
    ]);
    let sb = Sandbox::new("hub-like");
    let reference = proxy.reference("library/redis:7");
    let creds = format!("{USER}:{PASS}");
    let run = sb.run(&["-v", "pull", "--json", "--creds", &creds, &reference]);
    run.assert_ok();
    assert_eq!(pulled(&run)["digest"], fixture_digest("redis:7"), "{run}");
    sb.assert_complete(&reference);
    let st = proxy.stats();
    assert_eq!(count(&st["requests"]["token"]), 1, "{st}");
    assert_eq!(count(&st["cdn_auth_rejected"]), 0, "{st}");
    let n = blobs.len() as u64;
    assert_eq!(count(&st["faults_fired"]["429"]), 1 + n, "{st}");
    assert_eq!(count(&st["faults_fired"]["cut"]), n, "{st}");
    for (digest, size) in &blobs {
        assert_eq!(
            resume_offsets(&st, digest),
            vec![size / 2],
            "{digest}: {st}"
        );
        assert_eq!(
            count(&st["blob_bytes_sent"][digest]),
            *size,
            "{digest}: {st}"
        );
    }
}

#[test]
fn a_token_expiring_during_a_retry_wait_is_renewed() {
    // tokens live 1 s (img drops them after 0.9 s); the 429's Retry-After is 1 s, so the
    // retried manifest request finds the token expired and must fetch a new one
    let proxy = Proxy::start(&["--token-auth", "--token-ttl", "1", "--fault", "429"]);
    let sb = Sandbox::new("token-expiry");
    let reference = proxy.reference("library/busybox:latest");
    let run = sb.run(&["-v", "pull", "--json", &reference]);
    run.assert_ok();
    sb.assert_complete(&reference);
    let st = proxy.stats();
    assert!(count(&st["requests"]["token"]) >= 2, "{st}");
}

/// The credential helper `docker-credential-imgtest`: answers `get` for `host` only, and
/// logs every call to `calls.log` beside itself. Returns its directory (for PATH).
fn credential_helper(sb: &Sandbox, host: &str) -> PathBuf {
    let bin = sb.home.join("bin");
    let log = bin.join("calls.log");
    let script = format!(
        r#"#!/bin/sh
input=$(cat)
echo "$1 $input" >> '{log}'
if [ "$1" = get ] && [ "$input" = '{host}' ]; then
    printf '{{"ServerURL":"%s","Username":"{USER}","Secret":"{PASS}"}}\n' "$input"
    exit 0
fi
echo "credentials not found in native keychain"
exit 1
"#,
        log = log.display()
    );
    let path = sb.file("bin/docker-credential-imgtest", &script);
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// PATH with `dir` first.
fn path_with(dir: &Path) -> OsString {
    let mut path = dir.as_os_str().to_os_string();
    if let Some(old) = std::env::var_os("PATH") {
        path.push(":");
        path.push(old);
    }
    path
}

#[test]
fn credentials_come_from_files_and_helpers() {
    let proxy = Proxy::start(&["--token-auth", "--private", "busybox"]);
    let host = proxy.registry_addr();
    let reference = proxy.reference("library/busybox:latest");
    let auth_entry = json!({ "auths": { &host: { "auth": basic_auth() } } }).to_string();

    // (a) --authfile with docker's base64 "auth"
    let sb = Sandbox::new("creds-authfile");
    let file = sb.file("auth.json", &auth_entry);
    let run = sb.run(&[
        "-v",
        "pull",
        "--json",
        "--authfile",
        file.to_str().unwrap(),
        &reference,
    ]);
    run.assert_ok();
    sb.assert_complete(&reference);

    // (b) DOCKER_CONFIG/config.json with username and password
    let sb = Sandbox::new("creds-docker-config");
    let config = json!({ "auths": { &host: { "username": USER, "password": PASS } } });
    let dir = sb.file("dockercfg/config.json", &config.to_string());
    let dir = dir.parent().unwrap().as_os_str().to_os_string();
    let run = sb.run_with(
        &["-v", "pull", "--json", &reference],
        &[("DOCKER_CONFIG", dir)],
        None,
    );
    run.assert_ok();
    sb.assert_complete(&reference);

    // (c) REGISTRY_AUTH_FILE
    let sb = Sandbox::new("creds-registry-auth-file");
    let file = sb.file("containers-auth.json", &auth_entry);
    let run = sb.run_with(
        &["-v", "pull", "--json", &reference],
        &[("REGISTRY_AUTH_FILE", file.into_os_string())],
        None,
    );
    run.assert_ok();
    sb.assert_complete(&reference);

    // (c') $XDG_RUNTIME_DIR/containers/auth.json, podman's default
    let sb = Sandbox::new("creds-xdg-runtime");
    let file = sb.file("run/containers/auth.json", &auth_entry);
    let run_dir = file
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .as_os_str()
        .to_owned();
    let run = sb.run_with(
        &["-v", "pull", "--json", &reference],
        &[("XDG_RUNTIME_DIR", run_dir)],
        None,
    );
    run.assert_ok();
    sb.assert_complete(&reference);

    // (d) credHelpers and (e) credsStore naming docker-credential-imgtest
    let helper_configs = [
        (
            "creds-cred-helpers",
            json!({ "credHelpers": { &host: "imgtest" } }),
        ),
        ("creds-creds-store", json!({ "credsStore": "imgtest" })),
    ];
    for (test, config) in helper_configs {
        let sb = Sandbox::new(test);
        let bin = credential_helper(&sb, &host);
        sb.file("docker/config.json", &config.to_string());
        let run = sb.run_with(
            &["-v", "pull", "--json", &reference],
            &[("PATH", path_with(&bin))],
            None,
        );
        run.assert_ok();
        sb.assert_complete(&reference);
        let calls = fs::read_to_string(bin.join("calls.log")).unwrap();
        assert!(
            calls.lines().any(|l| l == format!("get {host}")),
            "{test}: the helper was not asked for {host}: {calls:?}"
        );
        assert!(
            calls.lines().all(|l| l.starts_with("get ")),
            "{test}: a pull only reads credentials: {calls:?}"
        );
    }

    // and without any of them the same pull is refused: the files did the work
    let sb = Sandbox::new("creds-none");
    let run = sb.run(&["pull", "--retry", "2", &reference]);
    run.assert_failed();
    assert!(assert_one_error_line(&run.stderr).contains("unauthorized"));
    assert_eq!(count(&proxy.stats()["cdn_auth_rejected"]), 0);
}

// ---------------------------------------------------------------------------------------------
// mirrors

/// registries.conf sending docker.io to `mirrors`, in order, then to `location`.
fn mirror_conf(location: &str, mirrors: &[String]) -> String {
    let mut conf = format!("[[registry]]\nprefix = \"docker.io\"\nlocation = \"{location}\"\n");
    for m in mirrors {
        conf.push_str(&format!("\n[[registry.mirror]]\nlocation = \"{m}\"\n"));
    }
    conf
}

/// Pull `redis:7` (docker.io/library/redis:7) through `mirrors`. Each case runs first with a
/// dead loopback address as the registry's own location, so that should every mirror fail the
/// pull fails here instead of reaching the real Docker Hub; only then with `docker.io`.
fn pull_through_mirrors(test: &str, proxy: &Proxy, mirrors: &[String]) -> Vec<Run> {
    let mut runs = Vec::new();
    for location in ["127.0.0.1:1", "docker.io"] {
        let sb = Sandbox::new(test);
        let conf = sb.file("mirrors.conf", &mirror_conf(location, mirrors));
        let run = sb.run(&[
            "-v",
            "pull",
            "--json",
            "--retry",
            "2",
            "--registries-conf",
            conf.to_str().unwrap(),
            "redis:7",
        ]);
        // a failure here stops the test before the docker.io round
        run.assert_ok();
        let pulled = pulled(&run);
        assert_eq!(pulled["reference"], "docker.io/library/redis:7", "{run}");
        assert_eq!(pulled["digest"], fixture_digest("redis:7"), "{run}");
        assert_eq!(
            sb.root.ref_names(),
            vec!["docker.io/library/redis:7".to_string()]
        );
        sb.assert_complete("docker.io/library/redis:7");
        runs.push(run);
    }
    // the proxy was asked for library/redis (the Docker Hub name), and for nothing else
    let log = proxy.log();
    let api: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("/manifests/") || l.contains("/blobs/"))
        .collect();
    assert!(
        api.iter()
            .any(|l| l.contains("GET /v2/library/redis/manifests/7 ")),
        "{log}"
    );
    assert!(
        api.iter().all(|l| l.contains("/v2/library/redis/")),
        "{log}"
    );
    let st = proxy.stats();
    assert_eq!(count(&st["status_by_kind"]["manifest"]["200"]), 2, "{st}");
    runs
}

#[test]
fn a_mirror_serves_docker_hub_names() {
    let proxy = Proxy::start(&["--verbose"]);
    let runs = pull_through_mirrors("mirror", &proxy, &[proxy.registry_addr()]);
    for run in runs {
        assert!(lines_with(&run.stderr, "mirror").is_empty(), "{run}");
    }
}

#[test]
fn a_dead_mirror_falls_through_to_the_next() {
    let proxy = Proxy::start(&["--verbose"]);
    let mirrors = ["127.0.0.1:1".to_string(), proxy.registry_addr()];
    for run in pull_through_mirrors("dead-mirror", &proxy, &mirrors) {
        let failed = lines_with(&run.stderr, "mirror 127.0.0.1:1/library/redis failed");
        assert_eq!(failed.len(), 1, "{run}");
        assert!(failed[0].starts_with("img: "), "{run}");
        assert!(
            lines_with(&run.stderr, &format!("mirror {}", proxy.registry_addr())).is_empty(),
            "{run}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// login and logout

#[test]
fn login_keeps_credentials_that_logout_removes() {
    use std::os::unix::fs::PermissionsExt;
    let tb = testbed();
    assert_eq!((tb.user.as_str(), tb.pass.as_str()), (USER, PASS));
    let sb = Sandbox::new("login");
    let authfile = sb.home.join("auth/auth.json");
    let authfile_arg = authfile.to_str().unwrap();
    let reference = format!("{}/private/busybox:latest", tb.tls);

    let run = sb.run_with(
        &[
            "login",
            &tb.tls,
            "-u",
            USER,
            "--password-stdin",
            "--authfile",
            authfile_arg,
        ],
        &[],
        Some(&format!("{PASS}\n")),
    );
    run.assert_ok();
    assert!(run.stdout.contains("Login Succeeded"), "{run}");
    let mode = fs::metadata(&authfile).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", authfile.display());
    let saved: Value = serde_json::from_slice(&fs::read(&authfile).unwrap()).unwrap();
    assert_eq!(
        saved,
        json!({ "auths": { &tb.tls: { "auth": basic_auth() } } })
    );

    let run = sb.run(&[
        "-v",
        "pull",
        "--json",
        "--authfile",
        authfile_arg,
        &reference,
    ]);
    run.assert_ok();
    sb.assert_complete(&reference);

    let run = sb.run(&["logout", &tb.tls, "--authfile", authfile_arg]);
    run.assert_ok();
    let saved: Value = serde_json::from_slice(&fs::read(&authfile).unwrap()).unwrap();
    assert!(saved["auths"].get(&tb.tls).is_none(), "{saved}");
    let mode = fs::metadata(&authfile).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let run = sb.run(&["pull", "--authfile", authfile_arg, &reference]);
    run.assert_failed();
    let line = assert_one_error_line(&run.stderr);
    assert!(line.contains("unauthorized"), "{line}");
    // a second logout has nothing to remove
    let run = sb.run(&["logout", &tb.tls, "--authfile", authfile_arg]);
    run.assert_failed();
    assert_one_error_line(&run.stderr);

    // a wrong password: refused, and no file written
    let wrong = sb.home.join("wrong/auth.json");
    let run = sb.run_with(
        &[
            "login",
            &tb.tls,
            "-u",
            USER,
            "--password-stdin",
            "--authfile",
            wrong.to_str().unwrap(),
        ],
        &[],
        Some("not-the-password\n"),
    );
    run.assert_failed();
    let line = assert_one_error_line(&run.stderr);
    assert!(line.contains("unauthorized"), "{line}");
    assert!(!line.contains("not-the-password"), "{line}");
    assert!(!wrong.exists(), "{} was written", wrong.display());

    // without --authfile, login writes docker's config.json (here $DOCKER_CONFIG)
    let run = sb.run_with(
        &["login", &tb.tls, "-u", USER, "--password-stdin"],
        &[],
        Some(PASS),
    );
    run.assert_ok();
    let config = sb.home.join("docker/config.json");
    let mode = fs::metadata(&config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let saved: Value = serde_json::from_slice(&fs::read(&config).unwrap()).unwrap();
    assert_eq!(saved["auths"][&tb.tls]["auth"], basic_auth());
    let other = Sandbox::new("login-docker-config");
    let run = other.run_with(
        &["pull", &reference],
        &[("DOCKER_CONFIG", sb.home.join("docker").into_os_string())],
        None,
    );
    run.assert_ok();
    other.assert_complete(&reference);
}
