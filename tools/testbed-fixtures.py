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
"""

import hashlib
import io
import json
import os
import random
import stat
import struct
import sys
import tarfile

MTIME = 1700000000  # fixed, so the python-written layers are reproducible

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
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


def main(argv):
    if len(argv) < 2:
        die(__doc__)
    cmd, args = argv[1], argv[2:]
    table = {
        "edge-layer2": (edge_layer2, 1),
        "edge-layer3": (edge_layer3, 1),
        "large-layer": (large_layer, 3),
        "set-variant": (set_variant, 3),
        "verify-edge": (verify_edge, 1),
        "check-zstd": (check_zstd, 2),
        "check-served-zstd": (check_served_zstd, 2),
        "layout-info": (layout_info, 2),
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
