#!/usr/bin/env python3
"""Helpers for tools/testbed: layer tars and OCI-layout surgery that umoci and
skopeo cannot do by themselves. Standard library only.

Subcommands (all paths are plain filesystem paths):
  edge-layer2 OUT.tar             whiteout + opaque-dir layer for edge:latest
  edge-layer3 OUT.tar             special-files layer for edge:latest
  large-layer N SIZE OUT.tar      layer N of large:latest, SIZE bytes of seeded
                                  pseudo-random data split over a few files
  set-variant LAYOUT REF VARIANT  add "variant" to the config of LAYOUT:REF,
                                  rewriting config, manifest and index.json
  make-index LAYOUT REF CHILD...  write an OCI image index referencing the
                                  manifests tagged CHILD..., tag it REF
  verify-edge ROOTFS              check an unpacked edge:latest rootfs
  check-zstd LAYOUT REF           check that every layer of LAYOUT:REF is
                                  +zstd and starts with the zstd magic
  check-served-zstd MANIFEST BLOBDIR
                                  same for a manifest as served by a registry,
                                  reading blobs from the registry's storage
  layout-info LAYOUT REF          print "mediatype digest layers" of a ref
  hostile-tars OUTDIR             write the layer tars of the hostile/* images
                                  and layers/hardlinks to OUTDIR; print one
                                  line "REPO TAR..." per image
  hostile-check OCIDIR TARDIR REGISTRY OUT.json
                                  check that REGISTRY serves those images as
                                  built in OCIDIR/<repo prefix> with the layer
                                  tars of TARDIR byte for byte, then write the
                                  manifest tests loop over (hostile.json); also
                                  builds and pushes the runtime-hostile images
                                  (RUNTIME, listed under "runtime")
  runtime-images OCIDIR TARDIR REGISTRY
                                  only build and push those (on OCIDIR/busybox),
                                  printing their hostile.json entries
"""

import gzip
import hashlib
import io
import json
import os
import random
import stat
import struct
import sys
import tarfile
import urllib.error
import urllib.request
import zlib

MTIME = 1700000000  # fixed, so the python-written layers are reproducible

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ZSTD_LAYER = "application/vnd.oci.image.layer.v1.tar+zstd"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

LONG_DIR = "long/" + "d" * 60 + "/" + "e" * 60
LONG_FILE = LONG_DIR + "/a-file-whose-full-path-is-longer-than-one-hundred-characters.txt"

# security.capability v2: magic_etc = VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE,
# then permitted/inheritable for cap words 0 and 1. cap_net_bind_service = 10.
CAP_NET_BIND_SERVICE = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)


def die(msg):
    print("testbed-fixtures: " + msg, file=sys.stderr)
    sys.exit(1)


# --------------------------------------------------------------------------
# tar writing helpers


class Tar:
    def __init__(self, path):
        self.tf = tarfile.open(path, "w", format=tarfile.PAX_FORMAT)

    def _info(self, name, typ, mode, uid=0, gid=0):
        ti = tarfile.TarInfo(name)
        ti.type = typ
        ti.mode = mode
        ti.uid, ti.gid = uid, gid
        ti.uname = ti.gname = ""
        ti.mtime = MTIME
        return ti

    def dir(self, name, mode=0o755, uid=0, gid=0):
        self.tf.addfile(self._info(name.rstrip("/") + "/", tarfile.DIRTYPE, mode, uid, gid))

    def file(self, name, data, mode=0o644, uid=0, gid=0, xattrs=None):
        if isinstance(data, str):
            data = data.encode()
        ti = self._info(name, tarfile.REGTYPE, mode, uid, gid)
        ti.size = len(data)
        if xattrs:
            # PAX "SCHILY.xattr.<name>" records; binary values go through
            # surrogateescape so tarfile writes them verbatim (hdrcharset=BINARY).
            ti.pax_headers = {
                "SCHILY.xattr." + k: v.decode("utf-8", "surrogateescape")
                for k, v in xattrs.items()
            }
        self.tf.addfile(ti, io.BytesIO(data))

    def stream(self, name, size, reader, mode=0o644):
        ti = self._info(name, tarfile.REGTYPE, mode)
        ti.size = size
        self.tf.addfile(ti, reader)

    def symlink(self, name, target):
        ti = self._info(name, tarfile.SYMTYPE, 0o777)
        ti.linkname = target
        self.tf.addfile(ti)

    def hardlink(self, name, target):
        ti = self._info(name, tarfile.LNKTYPE, 0o644)
        ti.linkname = target
        self.tf.addfile(ti)

    def fifo(self, name, mode=0o644):
        self.tf.addfile(self._info(name, tarfile.FIFOTYPE, mode))

    def close(self):
        self.tf.close()


def edge_layer2(out):
    """Layer 2 of edge:latest: delete /data/gone and /data/replaced (a directory
    in layer 1), make /opq opaque and add /opq/c."""
    t = Tar(out)
    t.dir("data")
    t.file("data/.wh.gone", b"")
    t.file("data/.wh.replaced", b"")
    t.dir("opq")
    t.file("opq/.wh..wh..opq", b"")
    t.file("opq/c", "c from layer 2\n")
    t.close()


def edge_layer3(out):
    """Layer 3 of edge:latest: special files of every kind."""
    t = Tar(out)
    # re-add /data/replaced, now as a regular file (was a directory in layer 1,
    # whited out in layer 2); /data/becomes-dir was a file in layer 1 and is
    # now a directory (no whiteout: the new entry replaces it)
    t.dir("data")
    t.file("data/replaced", "replaced is a file now\n")
    t.dir("data/becomes-dir")
    t.file("data/becomes-dir/child", "child\n")
    # hard link pair and symlinks
    t.dir("links")
    t.file("links/target", "hardlinked content\n")
    t.hardlink("links/hardlink", "links/target")
    t.symlink("links/rel-symlink", "target")
    t.symlink("links/rel-up-symlink", "../data/keep")
    t.symlink("links/abs-symlink", "/data/keep")
    t.symlink("links/dangling-symlink", "/does/not/exist")
    # setuid-root executable
    t.dir("usr")
    t.dir("usr/local")
    t.dir("usr/local/bin")
    t.file("usr/local/bin/suid-tool", "#!/bin/sh\necho suid\n", mode=0o4755)
    # extended attributes
    t.dir("xattr")
    t.file("xattr/user-xattr", "has user.testbed xattr\n",
           xattrs={"user.testbed": b"hello-xattr"})
    t.file("xattr/capability", "#!/bin/sh\necho cap\n", mode=0o755,
           xattrs={"security.capability": CAP_NET_BIND_SERVICE})
    # FIFO
    t.dir("special")
    t.fifo("special/fifo")
    # long names (> 100 chars need PAX path / linkpath records)
    t.dir("long")
    t.dir("long/" + "d" * 60)
    t.dir(LONG_DIR)
    t.file(LONG_FILE, "long name\n")
    t.symlink("long/long-symlink", "/" + LONG_FILE)
    # non-root ownership
    t.dir("home", mode=0o755)
    t.dir("home/user", mode=0o750, uid=1000, gid=1000)
    t.file("home/user/owned.txt", "owned by 1000:1000\n", mode=0o640, uid=1000, gid=1000)
    t.file("home/user/mixed.txt", "owned by 1000:0\n", mode=0o600, uid=1000, gid=0)
    # sticky world-writable directory
    t.dir("tmp", mode=0o1777)
    t.file("tmp/.keep", b"")
    # file whose parent directories have no entries of their own
    t.file("implicit/parent/file", "parents not in the tar\n")
    t.close()


class RandReader:
    """File-like object yielding SIZE bytes from a seeded PRNG."""

    def __init__(self, seed, size):
        self.rng = random.Random(seed)
        self.left = size

    def read(self, n=-1):
        if n < 0 or n > self.left:
            n = self.left
        self.left -= n
        return self.rng.randbytes(n)


def large_layer(n, size, out):
    n, size = int(n), int(size)
    parts = [size // 2, size // 3]
    parts.append(size - sum(parts))
    t = Tar(out)
    t.dir("large")
    t.dir("large/layer%d" % n)
    for i, sz in enumerate(parts):
        t.stream("large/layer%d/blob-%d.bin" % (n, i), sz, RandReader("img-large-%d-%d" % (n, i), sz))
    t.close()


class RepeatReader:
    """File-like object yielding SIZE bytes: a seeded 16 KiB random block, repeated (so gzip,
    whose window is 32 KiB, shrinks it; the unpacked file is still SIZE bytes)."""

    def __init__(self, seed, size):
        self.block = random.Random(seed).randbytes(16384)
        self.left = size

    def read(self, n=-1):
        if n < 0 or n > self.left:
            n = self.left
        self.left -= n
        whole, part = divmod(n, len(self.block))
        return self.block * whole + self.block[:part]


def big_layer(size, out):
    """One layer holding one file of SIZE bytes (big/blob.bin); sha256 of it printed."""
    size = int(size)
    t = Tar(out)
    t.dir("big")
    t.stream("big/blob.bin", size, RepeatReader("img-big", size))
    t.close()
    h, r = hashlib.sha256(), RepeatReader("img-big", size)
    while r.left:
        h.update(r.read(1 << 20))
    print(h.hexdigest())


def many_files(count, out):
    """One layer of COUNT small files, 1000 to a directory: many/dNNN/fNNNNNN holds its own
    name and a newline."""
    count = int(count)
    t = Tar(out)
    t.dir("many")
    for i in range(count):
        d = "many/d%03d" % (i // 1000)
        if i % 1000 == 0:
            t.dir(d)
        t.file("%s/f%06d" % (d, i), "f%06d\n" % i)
    t.close()


# --------------------------------------------------------------------------
# OCI layout helpers


def blob_path(layout, digest):
    algo, hexd = digest.split(":", 1)
    return os.path.join(layout, "blobs", algo, hexd)


def read_blob(layout, digest):
    with open(blob_path(layout, digest), "rb") as f:
        data = f.read()
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        die("blob %s in %s does not match its digest" % (digest, layout))
    return data


def write_blob(layout, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    p = blob_path(layout, digest)
    if not os.path.exists(p):
        tmp = p + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, p)
    return digest, len(data)


def load_index(layout):
    with open(os.path.join(layout, "index.json")) as f:
        return json.load(f)


def save_index(layout, idx):
    tmp = os.path.join(layout, "index.json.tmp")
    with open(tmp, "w") as f:
        json.dump(idx, f, separators=(",", ":"))
    os.rename(tmp, os.path.join(layout, "index.json"))


def find_ref(idx, ref):
    for d in idx.get("manifests", []):
        if d.get("annotations", {}).get("org.opencontainers.image.ref.name") == ref:
            return d
    die("ref %r not found" % ref)


def dumps(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def set_variant(layout, ref, variant):
    idx = load_index(layout)
    desc = find_ref(idx, ref)
    manifest = json.loads(read_blob(layout, desc["digest"]))
    config = json.loads(read_blob(layout, manifest["config"]["digest"]))
    # keep key order sensible: variant right after architecture
    newcfg = {}
    for k, v in config.items():
        if k == "variant":
            continue
        newcfg[k] = v
        if k == "architecture":
            newcfg["variant"] = variant
    if "variant" not in newcfg:
        newcfg["variant"] = variant
    cdig, csize = write_blob(layout, dumps(newcfg))
    manifest["config"]["digest"] = cdig
    manifest["config"]["size"] = csize
    mdig, msize = write_blob(layout, dumps(manifest))
    desc["digest"] = mdig
    desc["size"] = msize
    save_index(layout, idx)


def make_index(layout, ref, children):
    idx = load_index(layout)
    entries = []
    for child in children:
        desc = find_ref(idx, child)
        manifest = json.loads(read_blob(layout, desc["digest"]))
        config = json.loads(read_blob(layout, manifest["config"]["digest"]))
        platform = {"architecture": config["architecture"], "os": config["os"]}
        if config.get("variant"):
            platform["variant"] = config["variant"]
        entries.append({
            "mediaType": OCI_MANIFEST,
            "digest": desc["digest"],
            "size": desc["size"],
            "platform": platform,
        })
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    dig, size = write_blob(layout, dumps(index))
    idx["manifests"] = [d for d in idx["manifests"]
                        if d.get("annotations", {}).get("org.opencontainers.image.ref.name") != ref]
    idx["manifests"].append({
        "mediaType": OCI_INDEX,
        "digest": dig,
        "size": size,
        "annotations": {"org.opencontainers.image.ref.name": ref},
    })
    save_index(layout, idx)


def layout_info(layout, ref):
    desc = find_ref(load_index(layout), ref)
    data = json.loads(read_blob(layout, desc["digest"]))
    n = len(data.get("layers", data.get("manifests", [])))
    print(desc.get("mediaType", "?"), desc["digest"], n)


def check_zstd_layers(layers, opener, what):
    if not layers:
        die("%s: no layers" % what)
    for l in layers:
        if l.get("mediaType") != ZSTD_LAYER:
            die("%s: layer %s has media type %s" % (what, l["digest"], l.get("mediaType")))
        with opener(l["digest"]) as f:
            head = f.read(4)
        if head != ZSTD_MAGIC:
            die("%s: layer %s starts with %s, not zstd magic" % (what, l["digest"], head.hex()))


def check_zstd(layout, ref):
    desc = find_ref(load_index(layout), ref)
    manifest = json.loads(read_blob(layout, desc["digest"]))
    check_zstd_layers(manifest["layers"], lambda d: open(blob_path(layout, d), "rb"),
                      "%s:%s" % (layout, ref))


def check_served_zstd(manifest_file, blobdir):
    with open(manifest_file, "rb") as f:
        manifest = json.loads(f.read())
    if manifest.get("mediaType", OCI_MANIFEST) != OCI_MANIFEST:
        die("served manifest has media type %s" % manifest.get("mediaType"))

    def opener(digest):
        hexd = digest.split(":", 1)[1]
        return open(os.path.join(blobdir, "sha256", hexd[:2], hexd, "data"), "rb")

    check_zstd_layers(manifest["layers"], opener, "served redis:7-zstd")


# --------------------------------------------------------------------------
# verification of an unpacked edge:latest rootfs


def verify_edge(root):
    errors = []

    def p(rel):
        return os.path.join(root, rel)

    def check(cond, msg):
        if not cond:
            errors.append(msg)

    def lst(rel):
        try:
            return os.lstat(p(rel))
        except FileNotFoundError:
            return None

    def read(rel):
        with open(p(rel), "rb") as f:
            return f.read()

    check(lst("data/keep") is not None, "data/keep missing")
    check(lst("data/gone") is None, "data/gone still present (whiteout not applied)")
    check(not os.path.lexists(p("data/.wh.gone")), "whiteout file data/.wh.gone leaked")
    check(sorted(os.listdir(p("opq"))) == ["c"], "opq is %r, want ['c']" % sorted(os.listdir(p("opq"))))
    check(lst("tree/a/b/c/deep.txt") is not None, "tree/a/b/c/deep.txt missing")
    check(lst("tree/empty") is not None and stat.S_ISDIR(lst("tree/empty").st_mode), "tree/empty missing")
    st = lst("data/replaced")
    check(st is not None and stat.S_ISREG(st.st_mode), "data/replaced is not a regular file")
    st = lst("data/becomes-dir")
    check(st is not None and stat.S_ISDIR(st.st_mode), "data/becomes-dir is not a directory")
    a, b = lst("links/target"), lst("links/hardlink")
    check(a is not None and b is not None and a.st_ino == b.st_ino, "links/hardlink is not a hard link of links/target")
    check(os.path.islink(p("links/rel-symlink")) and os.readlink(p("links/rel-symlink")) == "target", "links/rel-symlink wrong")
    check(os.path.islink(p("links/abs-symlink")) and os.readlink(p("links/abs-symlink")) == "/data/keep", "links/abs-symlink wrong")
    check(os.path.islink(p("links/dangling-symlink")), "links/dangling-symlink missing")
    st = lst("usr/local/bin/suid-tool")
    check(st is not None and stat.S_IMODE(st.st_mode) == 0o4755 and st.st_uid == 0, "suid-tool mode/owner wrong")
    try:
        check(os.getxattr(p("xattr/user-xattr"), "user.testbed") == b"hello-xattr", "user.testbed xattr wrong")
    except OSError as e:
        errors.append("user.testbed xattr: %s" % e)
    try:
        check(os.getxattr(p("xattr/capability"), "security.capability") == CAP_NET_BIND_SERVICE,
              "security.capability xattr wrong")
    except OSError as e:
        errors.append("security.capability xattr: %s" % e)
    st = lst("special/fifo")
    check(st is not None and stat.S_ISFIFO(st.st_mode), "special/fifo is not a FIFO")
    check(len("/" + LONG_FILE) > 100 and lst(LONG_FILE) is not None, "long path missing")
    check(os.path.islink(p("long/long-symlink")) and os.readlink(p("long/long-symlink")) == "/" + LONG_FILE,
          "long symlink wrong")
    st = lst("home/user/owned.txt")
    check(st is not None and (st.st_uid, st.st_gid) == (1000, 1000) and stat.S_IMODE(st.st_mode) == 0o640,
          "home/user/owned.txt owner/mode wrong")
    st = lst("home/user")
    check(st is not None and (st.st_uid, st.st_gid) == (1000, 1000) and stat.S_IMODE(st.st_mode) == 0o750,
          "home/user owner/mode wrong")
    st = lst("tmp")
    check(st is not None and stat.S_IMODE(st.st_mode) == 0o1777, "tmp is not 1777")
    check(lst("implicit/parent/file") is not None, "implicit/parent/file missing")
    if errors:
        die("edge:latest unpacked wrongly:\n  " + "\n  ".join(errors))


# --------------------------------------------------------------------------
# hostile/* images (layers crafted to make a careless unpacker write outside
# its target directory) and the benign layers/hardlinks image.
#
# Each image is a list of layers, each layer a list of members:
#   ("file", NAME, DATA)   ("dir", NAME)   ("symlink", NAME, TARGET)
#   ("hardlink", NAME, TARGET)   ("huge", NAME, DECLARED_SIZE, DATA_BYTES)
# Names are written into the tar exactly as given (tarfile does not sanitize
# when writing). A "huge" member is written by hand: a GNU header whose size
# field (base-256) declares DECLARED_SIZE, then DATA_BYTES of data, then the
# stream simply ends (no padding, no end-of-archive blocks).
#
# What tests check, per image (the same keys end up in hostile.json):
#   expect       "error": unpacking must fail; "ok": must succeed
#   also_ok      safe but lenient outcomes a test may accept instead of expect:
#                "contained" = success, the entry lands inside the target at the
#                paths in "contained" ('/' and '..' stripped, symlinks resolved
#                as if the target were '/'); "skipped" = success, entry ignored
#   outside      paths that must not exist after the attempt; relative ones are
#                relative to the target directory (the kernel resolves the
#                '..'), absolute ones are host paths
#   not_linked_to  {path in target: host file}: if the path exists it must not
#                be the same inode as the host file
#   sentinels    paths (relative to the target) the test creates as regular
#                files before unpacking; they must all still exist afterwards
#   max_bytes    {path in target: n}: if the path exists, its size must be <= n

PWNED = b"pwned"
HUGE_SIZE = 1 << 40
HUGE_DATA = 6000

HOSTILE = [
    {
        "repo": "hostile/dotdot",
        "description": "regular file member named ../escaped-dotdot",
        "layers": [[("file", "../escaped-dotdot", PWNED)]],
        "expect": "error",
        "also_ok": ["contained"],
        "contained": ["escaped-dotdot"],
        "outside": ["../escaped-dotdot"],
    },
    {
        "repo": "hostile/absolute",
        "description": "regular file member with the absolute name /tmp/escaped-absolute",
        "layers": [[("file", "/tmp/escaped-absolute", PWNED)]],
        "expect": "error",
        "also_ok": ["contained"],
        "contained": ["tmp/escaped-absolute"],
        "outside": ["/tmp/escaped-absolute"],
    },
    {
        "repo": "hostile/symlink",
        "description": "symlink escape -> /tmp, then regular file escape/escaped-symlink in the same layer",
        "layers": [[("symlink", "escape", "/tmp"),
                    ("file", "escape/escaped-symlink", PWNED)]],
        "expect": "error",
        "also_ok": ["contained"],
        "contained": ["tmp/escaped-symlink"],
        "outside": ["/tmp/escaped-symlink"],
    },
    {
        "repo": "hostile/symlink-layers",
        "description": "layer 1: symlink escape -> /tmp (harmless alone); "
                       "layer 2: regular file escape/escaped-symlink-layers",
        "layers": [[("symlink", "escape", "/tmp")],
                   [("file", "escape/escaped-symlink-layers", PWNED)]],
        "expect": "error",
        "also_ok": ["contained"],
        "contained": ["tmp/escaped-symlink-layers"],
        "outside": ["/tmp/escaped-symlink-layers"],
    },
    {
        "repo": "hostile/symlink-relative",
        "description": "symlink up -> ../../../../../../tmp, then regular file up/escaped-relative",
        "layers": [[("symlink", "up", "../../../../../../tmp"),
                    ("file", "up/escaped-relative", PWNED)]],
        "expect": "error",
        "also_ok": ["contained"],
        "contained": ["tmp/escaped-relative"],
        "outside": ["../../../../../../tmp/escaped-relative", "/tmp/escaped-relative",
                    "../escaped-relative"],
    },
    {
        "repo": "hostile/hardlink",
        "description": "hardlink member passwd-link whose link target is /etc/passwd (nothing else in the layer)",
        "layers": [[("hardlink", "passwd-link", "/etc/passwd")]],
        "expect": "error",
        "not_linked_to": {"passwd-link": "/etc/passwd"},
        "note": "resolved inside the target, etc/passwd does not exist, so there is nothing to link to",
    },
    {
        "repo": "hostile/hardlink-dotdot",
        "description": "hardlink member shadow-link whose link target is ../../../../etc/shadow",
        "layers": [[("hardlink", "shadow-link", "../../../../etc/shadow")]],
        "expect": "error",
        "not_linked_to": {"shadow-link": "/etc/shadow"},
        "note": "resolved inside the target, etc/shadow does not exist, so there is nothing to link to",
    },
    {
        "repo": "hostile/symlink-loop",
        "description": "symlinks a -> b and b -> a, then regular file a/x",
        "layers": [[("symlink", "a", "b"), ("symlink", "b", "a"), ("file", "a/x", PWNED)]],
        "expect": "error",
        "note": "resolving a/x must stop (ELOOP or a hop limit) rather than hang",
    },
    {
        "repo": "hostile/huge",
        "description": "regular file huge.bin whose GNU header declares %d bytes (1 TiB, base-256 size "
                       "field); the tar stream ends after %d bytes of its data (no padding, no "
                       "end-of-archive blocks) while the gzip stream around it is complete"
                       % (HUGE_SIZE, HUGE_DATA),
        "layers": [[("huge", "huge.bin", HUGE_SIZE, HUGE_DATA)]],
        "expect": "error",
        "max_bytes": {"huge.bin": HUGE_DATA},
        "note": "must fail with an unexpected end of the tar, without reserving or writing 1 TiB",
    },
    {
        "repo": "hostile/whiteout-escape",
        "description": "whiteout members ../.wh.escaped (would delete ../escaped) and .wh... "
                       "(would delete '..', the target's parent)",
        "layers": [[("file", "../.wh.escaped", b""), ("file", ".wh...", b"")]],
        "expect": "error",
        "also_ok": ["skipped"],
        "sentinels": ["../escaped"],
        "note": "the target directory and its parent must survive too",
    },
]

BENIGN = [
    {
        "repo": "layers/hardlinks",
        "description": "layer 1: /data/orig, hardlink /data/link1 -> data/orig, /data/sub/f; "
                       "layer 2: replaces /data/sub/f, whiteout /data/.wh.link1, adds /data/new",
        "layers": [
            [("dir", "data"), ("file", "data/orig", b"one"),
             ("hardlink", "data/link1", "data/orig"),
             ("dir", "data/sub"), ("file", "data/sub/f", b"f1")],
            [("dir", "data"), ("dir", "data/sub"), ("file", "data/sub/f", b"f2"),
             ("file", "data/.wh.link1", b""), ("file", "data/new", b"new")],
        ],
        "expect": "ok",
        "after": [
            {"files": {"data/orig": "one", "data/link1": "one", "data/sub/f": "f1"},
             "dirs": ["data", "data/sub"], "absent": [],
             "hardlinks": [["data/link1", "data/orig"]], "nlink": {"data/orig": 2}},
            {"files": {"data/orig": "one", "data/sub/f": "f2", "data/new": "new"},
             "dirs": ["data", "data/sub"], "absent": ["data/link1", "data/.wh.link1"],
             "hardlinks": []},
        ],
        "note": "after[i] is the tree with layers 1..i+1 applied; in an overlay mount "
                "data/orig still reports nlink 2 (its lower inode), flattened it is 1",
    },
]

OUTCOME_KEYS = ("expect", "also_ok", "contained", "outside", "not_linked_to", "sentinels",
                "max_bytes", "after", "note")


def hostile_images():
    return HOSTILE + BENIGN


def tar_name(tardir, repo, n):
    return os.path.join(tardir, "%s-%d.tar" % (repo.replace("/", "_"), n))


def write_huge_tar(out, name, declared, present):
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.REGTYPE
    ti.mode = 0o644
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.mtime = MTIME
    ti.size = declared  # > 8 GiB: GNU format stores it base-256 in the header itself
    hdr = ti.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    if len(hdr) != tarfile.BLOCKSIZE:
        die("huge header is %d bytes, want one block" % len(hdr))
    chunk = b"huge-truncated-member\n"
    data = (chunk * (present // len(chunk) + 1))[:present]
    with open(out, "wb") as f:
        f.write(hdr + data)


def write_layer_tar(out, members):
    if members[0][0] == "huge":
        if len(members) != 1:
            die("a huge member must be alone in its layer")
        write_huge_tar(out, *members[0][1:])
        return
    t = Tar(out)
    for m in members:
        kind = m[0]
        if kind == "file":
            t.file(m[1], m[2])
        elif kind == "dir":
            t.dir(m[1])
        elif kind == "symlink":
            t.symlink(m[1], m[2])
        elif kind == "hardlink":
            t.hardlink(m[1], m[2])
        else:
            die("unknown member kind %r" % kind)
    t.close()


def hostile_tars(outdir):
    os.makedirs(outdir, exist_ok=True)
    for img in hostile_images():
        tars = []
        for n, members in enumerate(img["layers"], 1):
            out = tar_name(outdir, img["repo"], n)
            write_layer_tar(out, members)
            tars.append(out)
        print(img["repo"], *tars)


def expected_members(members):
    """(name, type, linkname, size) as tarfile reports them when reading."""
    out = []
    for m in members:
        kind = m[0]
        if kind == "file":
            out.append((m[1], "file", "", len(m[2])))
        elif kind == "dir":
            out.append((m[1].rstrip("/"), "dir", "", 0))
        elif kind in ("symlink", "hardlink"):
            out.append((m[1], kind, m[2], 0))
        elif kind == "huge":
            out.append((m[1], "file", "", m[2]))
    return out


TAR_KINDS = {tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.DIRTYPE: "dir",
             tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink"}


def list_tar(raw):
    """Members of the tar RAW and whether it ends early (a truncated member)."""
    members, truncated = [], False
    tf = tarfile.open(fileobj=io.BytesIO(raw), mode="r:")
    try:
        for ti in tf:
            members.append((ti.name, TAR_KINDS.get(ti.type, repr(ti.type)), ti.linkname, ti.size))
    except tarfile.ReadError:
        truncated = True
    return members, truncated


def hostile_check(ocidir, tardir, registry, out):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    base = "http://%s/v2/" % registry

    def get(repo, kind, ref, accept=None):
        req = urllib.request.Request(base + "%s/%s/%s" % (repo, kind, ref))
        if accept:
            req.add_header("Accept", accept)
        with opener.open(req, timeout=30) as resp:
            return resp.read(), resp.headers

    def blob(repo, digest, size=None):
        data, _ = get(repo, "blobs", digest)
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            die("%s: blob %s as served does not match its digest" % (repo, digest))
        if size is not None and len(data) != size:
            die("%s: blob %s is %d bytes, manifest says %d" % (repo, digest, len(data), size))
        return data

    entries, benign = [], []
    for img in hostile_images():
        repo = img["repo"]
        layout = os.path.join(ocidir, repo.split("/")[0])
        ref = repo.split("/", 1)[1]
        want = find_ref(load_index(layout), ref)["digest"]
        body, headers = get(repo, "manifests", "latest", OCI_MANIFEST)
        got = "sha256:" + hashlib.sha256(body).hexdigest()
        if got != want or headers.get("Docker-Content-Digest") != want:
            die("%s:latest is served as %s (header %s), layout has %s"
                % (repo, got, headers.get("Docker-Content-Digest"), want))
        manifest = json.loads(body)
        if manifest.get("mediaType", OCI_MANIFEST) != OCI_MANIFEST or \
                OCI_MANIFEST not in headers.get("Content-Type", ""):
            die("%s: served manifest has media type %s (%s)"
                % (repo, manifest.get("mediaType"), headers.get("Content-Type")))
        config = json.loads(blob(repo, manifest["config"]["digest"], manifest["config"]["size"]))
        if (config.get("os"), config.get("architecture")) != ("linux", "amd64"):
            die("%s: platform is %s/%s" % (repo, config.get("os"), config.get("architecture")))
        diff_ids = config["rootfs"]["diff_ids"]
        if len(manifest["layers"]) != len(img["layers"]) or len(diff_ids) != len(img["layers"]):
            die("%s: %d layers / %d diff_ids served, want %d"
                % (repo, len(manifest["layers"]), len(diff_ids), len(img["layers"])))
        layers = []
        for n, (desc, diff_id, members) in enumerate(zip(manifest["layers"], diff_ids, img["layers"]), 1):
            if desc["mediaType"] != GZIP_LAYER:
                die("%s: layer %d has media type %s" % (repo, n, desc["mediaType"]))
            gz = blob(repo, desc["digest"], desc["size"])
            if gz != read_blob(layout, desc["digest"]):
                die("%s: layer %d differs from the layout's blob" % (repo, n))
            d = zlib.decompressobj(wbits=31)
            raw = d.decompress(gz) + d.flush()
            if not d.eof or d.unused_data:
                die("%s: layer %d is not exactly one complete gzip stream" % (repo, n))
            with open(tar_name(tardir, repo, n), "rb") as f:
                if raw != f.read():
                    die("%s: layer %d does not decompress to the tar that was written" % (repo, n))
            if "sha256:" + hashlib.sha256(raw).hexdigest() != diff_id:
                die("%s: diff_id of layer %d is %s, the tar hashes to sha256:%s"
                    % (repo, n, diff_id, hashlib.sha256(raw).hexdigest()))
            got_members, truncated = list_tar(raw)
            want_members = expected_members(members)
            is_huge = members[0][0] == "huge"
            if got_members != want_members or truncated != is_huge:
                die("%s: layer %d lists %r (truncated %s), want %r (truncated %s)"
                    % (repo, n, got_members, truncated, want_members, is_huge))
            layers.append({
                "digest": desc["digest"],
                "size": desc["size"],
                "diff_id": diff_id,
                "tar_size": len(raw),
                "truncated": truncated,
                "members": [dict(zip(("name", "type", "linkname", "size"), m)) for m in want_members],
            })
        entry = {
            "repo": repo,
            "tag": "latest",
            "ref": "%s/%s:latest" % (registry, repo),
            "digest": want,
            "platform": "linux/amd64",
            "description": img["description"],
        }
        for k in OUTCOME_KEYS:
            if k in img:
                entry[k] = img[k]
            elif k in ("also_ok", "contained", "outside", "sentinels"):
                entry[k] = []
            elif k in ("not_linked_to", "max_bytes"):
                entry[k] = {}
        entry["layers"] = layers
        (entries if img in HOSTILE else benign).append(entry)
    doc = {
        "registry": registry,
        "about": "hostile/* images built by tools/testbed: each entry says what a safe "
                 "unpacker must do; see tools/testbed-fixtures.py (HOSTILE) for the keys",
        "keys": {
            "expect": "'error': unpacking must fail; 'ok': it must succeed",
            "also_ok": "safe lenient outcomes: 'contained' = success with the entry inside the "
                       "target at the 'contained' paths; 'skipped' = success, entry ignored",
            "outside": "must not exist afterwards; relative to the target dir (kernel resolves "
                       "'..') or absolute host paths",
            "not_linked_to": "{path in target: host file}: must not share the host file's inode",
            "sentinels": "create these (relative to the target) before unpacking; they must survive",
            "max_bytes": "{path in target: n}: if present, at most n bytes",
            "after": "benign images: the tree after each layer",
            "runtime": "images img run must contain (busybox + symlinks to /var/tmp/img-victim): "
                       "expect 'refused' (exit 125 naming path), 'runs' (resolved inside the "
                       "root) or 'either'; the host's /var/tmp/img-victim must stay untouched",
        },
        "images": entries,
        "benign": benign,
        "runtime": runtime_images(ocidir, tardir, registry),
    }
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    os.rename(tmp, out)


# --------------------------------------------------------------------------
# runtime-hostile images: what `img run` (and runc on `img run --bundle`) must
# keep inside the container's root. Each is busybox:latest's layer plus one
# python-written layer planting symlinks that point at VICTIM, a host path the
# tests fill with canary files before running the image and check afterwards
# (same inodes, contents, mtimes, no new entries), whatever the outcome. The
# image carries its own decoys at the same paths, so a runtime that resolves
# inside the root finds something there (or creates it there).
#
# Built and pushed by runtime_images() straight through the registry API (no
# OCI layout), from hostile-check: tools/testbed needs no list of its own, and
# the fixture stamp (a hash of this file) rebuilds them with everything else.
# hostile.json lists them under "runtime", apart from "images" (which the
# unpack tests loop over):
#   expect   "refused": img run exits 125, one error line naming "path";
#            "runs": the command runs, everything resolved inside the root;
#            "either": refused (125, naming "path") or runs, host untouched
#   path     the path inside the container the error names / the test uses
#   workdir  (optional) the image config's WorkingDir

VICTIM = "var/tmp/img-victim"
VICTIM_DIRS = [("dir", "var"), ("dir", "var/tmp"), ("dir", VICTIM)]

RUNTIME = [
    {
        "repo": "hostile/dev-symlink",
        "description": "busybox + /dev -> /%s/dev (a directory inside the image too)" % VICTIM,
        "members": VICTIM_DIRS + [("dir", VICTIM + "/dev"), ("symlink", "dev", "/%s/dev" % VICTIM)],
        "expect": "refused",
        "path": "/dev",
    },
    {
        "repo": "hostile/proc-symlink",
        "description": "busybox + /proc -> /%s/proc (a directory inside the image too)" % VICTIM,
        "members": VICTIM_DIRS + [("dir", VICTIM + "/proc"), ("symlink", "proc", "/%s/proc" % VICTIM)],
        "expect": "refused",
        "path": "/proc",
    },
    {
        "repo": "hostile/sys-symlink",
        "description": "busybox + /sys -> /%s/sys (a directory inside the image too)" % VICTIM,
        "members": VICTIM_DIRS + [("dir", VICTIM + "/sys"), ("symlink", "sys", "/%s/sys" % VICTIM)],
        "expect": "refused",
        "path": "/sys",
    },
    {
        "repo": "hostile/devpts-symlink",
        "description": "busybox + a real /dev whose pts and shm are symlinks to /%s/pts and "
                       "/%s/shm (directories inside the image too)" % (VICTIM, VICTIM),
        "members": VICTIM_DIRS + [("dir", VICTIM + "/pts"), ("dir", VICTIM + "/shm"), ("dir", "dev"),
                                  ("symlink", "dev/pts", "/%s/pts" % VICTIM),
                                  ("symlink", "dev/shm", "/%s/shm" % VICTIM)],
        "expect": "either",
        "path": "/dev/pts",
    },
    {
        "repo": "hostile/hosts-symlink",
        "description": "busybox + /etc/hosts -> /%s/hosts and /etc/hostname -> /%s/hostname, "
                       "both regular files inside the image too" % (VICTIM, VICTIM),
        "members": VICTIM_DIRS + [("file", VICTIM + "/hosts", "127.0.0.1 image-decoy\n"),
                                  ("file", VICTIM + "/hostname", "image-decoy\n"),
                                  ("dir", "etc"),
                                  ("symlink", "etc/hosts", "/%s/hosts" % VICTIM),
                                  ("symlink", "etc/hostname", "/%s/hostname" % VICTIM)],
        "expect": "runs",
        "path": "/etc/hosts",
    },
    {
        "repo": "hostile/resolv-symlink",
        "description": "busybox + /etc/resolv.conf -> /%s/resolv.conf, dangling inside the "
                       "image (its directory exists)" % VICTIM,
        "members": VICTIM_DIRS + [("dir", "etc"),
                                  ("symlink", "etc/resolv.conf", "/%s/resolv.conf" % VICTIM)],
        "expect": "runs",
        "path": "/etc/resolv.conf",
    },
    {
        "repo": "hostile/volume-symlink",
        "description": "busybox + /data -> /%s/data, dangling inside the image: the "
                       "destination of a -v bind" % VICTIM,
        "members": VICTIM_DIRS + [("symlink", "data", "/%s/data" % VICTIM)],
        "expect": "runs",
        "path": "/data",
    },
    {
        "repo": "hostile/workdir-symlink",
        "description": "busybox + /wd -> /%s/wd, dangling inside the image; WorkingDir "
                       "/wd/sub (created by the runtime)" % VICTIM,
        "members": VICTIM_DIRS + [("symlink", "wd", "/%s/wd" % VICTIM)],
        "expect": "runs",
        "path": "/wd/sub",
        "workdir": "/wd/sub",
    },
    {
        "repo": "hostile/passwd-symlink",
        "description": "busybox + /etc/passwd -> /%s/passwd and /etc/group -> /%s/group, "
                       "regular files inside the image naming user and group 'victim' "
                       "1111:1111" % (VICTIM, VICTIM),
        "members": VICTIM_DIRS + [
            ("file", VICTIM + "/passwd",
             "root:x:0:0:root:/root:/bin/sh\nvictim:x:1111:1111:victim:/:/bin/sh\n"
             "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
            ("file", VICTIM + "/group", "root:x:0:\nvictim:x:1111:\nnobody:x:65534:\n"),
            ("dir", "etc"),
            ("symlink", "etc/passwd", "/%s/passwd" % VICTIM),
            ("symlink", "etc/group", "/%s/group" % VICTIM)],
        "expect": "runs",
        "path": "/etc/passwd",
    },
]


class Registry:
    """Just enough of the distribution API to push blobs and a manifest."""

    def __init__(self, registry):
        self.base = "http://%s" % registry
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self, method, url, data=None, headers=None):
        if url.startswith("/"):
            url = self.base + url
        req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        try:
            with self.opener.open(req, timeout=60) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def push_blob(self, repo, data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        status, _, _ = self.call("HEAD", "/v2/%s/blobs/%s" % (repo, digest))
        if status == 200:
            return digest, len(data)
        status, headers, body = self.call("POST", "/v2/%s/blobs/uploads/" % repo)
        if status != 202 or not headers.get("Location"):
            die("%s: starting a blob upload answered %d: %s" % (repo, status, body[:200]))
        loc = headers["Location"]
        loc += ("&" if "?" in loc else "?") + "digest=" + digest
        status, _, body = self.call("PUT", loc, data,
                                    {"Content-Type": "application/octet-stream"})
        if status != 201:
            die("%s: uploading blob %s answered %d: %s" % (repo, digest, status, body[:200]))
        return digest, len(data)

    def push_manifest(self, repo, tag, data):
        status, headers, body = self.call("PUT", "/v2/%s/manifests/%s" % (repo, tag), data,
                                          {"Content-Type": OCI_MANIFEST})
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if status != 201 or headers.get("Docker-Content-Digest") != digest:
            die("%s:%s: manifest PUT answered %d (%s): %s"
                % (repo, tag, status, headers.get("Docker-Content-Digest"), body[:200]))
        return digest


def runtime_images(ocidir, tardir, registry):
    """Build and push the RUNTIME images on busybox:latest's layer; their hostile.json
    entries."""
    bb = os.path.join(ocidir, "busybox")
    bb_manifest = json.loads(read_blob(bb, find_ref(load_index(bb), "latest")["digest"]))
    bb_config = json.loads(read_blob(bb, bb_manifest["config"]["digest"]))
    if len(bb_manifest["layers"]) != 1:
        die("busybox:latest has %d layers, want 1" % len(bb_manifest["layers"]))
    bb_layer = bb_manifest["layers"][0]
    bb_gz = read_blob(bb, bb_layer["digest"])
    reg = Registry(registry)
    entries = []
    for img in RUNTIME:
        repo = img["repo"]
        tar = tar_name(tardir, repo, 2)
        write_layer_tar(tar, img["members"])
        with open(tar, "rb") as f:
            raw = f.read()
        gz = gzip.compress(raw, mtime=0)
        reg.push_blob(repo, bb_gz)
        layer_digest, layer_size = reg.push_blob(repo, gz)
        config = {
            "created": "2023-11-14T22:13:20Z",
            "architecture": "amd64",
            "os": "linux",
            "config": dict(bb_config.get("config", {}),
                           Labels={"io.img.testbed.fixture": repo}),
            "rootfs": {"type": "layers",
                       "diff_ids": [bb_config["rootfs"]["diff_ids"][0],
                                    "sha256:" + hashlib.sha256(raw).hexdigest()]},
            "history": [
                {"created_by": "testbed: busybox:latest's layer"},
                {"created_by": "testbed: %s layer 2 (python-written tar, see hostile.json "
                               "runtime)" % repo},
            ],
        }
        if img.get("workdir"):
            config["config"]["WorkingDir"] = img["workdir"]
        config_digest, config_size = reg.push_blob(repo, dumps(config))
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
            "layers": [
                {"mediaType": bb_layer["mediaType"], "digest": bb_layer["digest"],
                 "size": bb_layer["size"]},
                {"mediaType": GZIP_LAYER, "digest": layer_digest, "size": layer_size},
            ],
        }
        digest = reg.push_manifest(repo, "latest", dumps(manifest))
        served, _, _ = reg.call("GET", "/v2/%s/manifests/latest" % repo,
                                headers={"Accept": OCI_MANIFEST})
        if served != 200:
            die("%s:latest is not served after the push (HTTP %d)" % (repo, served))
        entry = {
            "repo": repo,
            "tag": "latest",
            "ref": "%s/%s:latest" % (registry, repo),
            "digest": digest,
            "description": img["description"],
            "expect": img["expect"],
            "path": img["path"],
            "members": [dict(zip(("name", "type", "linkname", "size"), m))
                        for m in expected_members(img["members"])],
        }
        if img.get("workdir"):
            entry["workdir"] = img["workdir"]
        entries.append(entry)
    return entries


def main(argv):
    if len(argv) < 2:
        die(__doc__)
    cmd, args = argv[1], argv[2:]
    table = {
        "edge-layer2": (edge_layer2, 1),
        "edge-layer3": (edge_layer3, 1),
        "large-layer": (large_layer, 3),
        "big-layer": (big_layer, 2),
        "many-files": (many_files, 2),
        "set-variant": (set_variant, 3),
        "verify-edge": (verify_edge, 1),
        "check-zstd": (check_zstd, 2),
        "check-served-zstd": (check_served_zstd, 2),
        "layout-info": (layout_info, 2),
        "hostile-tars": (hostile_tars, 1),
        "hostile-check": (hostile_check, 4),
        "runtime-images": (lambda *a: print(json.dumps(runtime_images(*a), indent=2)), 3),
    }
    if cmd == "make-index":
        if len(args) < 3:
            die("usage: make-index LAYOUT REF CHILD...")
        make_index(args[0], args[1], args[2:])
        return
    if cmd not in table or len(args) != table[cmd][1]:
        die(__doc__)
    table[cmd][0](*args)


if __name__ == "__main__":
    main(sys.argv)
