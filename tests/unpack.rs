//! End-to-end tests of `img unpack`, `img pull --unpack`, `img mount` and `img umount` against
//! the fixtures of `tools/testbed`, checked without going through img: umoci's unpack of the
//! same OCI layouts, `chroot`, `/proc/mounts`, `tar`, and the files on disk (see
//! `support/tree.rs`).
//!
//! Most of these need root (owners, devices, `trusted.*` xattrs, overlayfs): they say so and
//! return early otherwise.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::tree::{Kind, Tree, assert_same};
use support::{
    OCI_MANIFEST, REF_NAME, Run, TestRoot, Testbed, assert_one_error_line, hostile_json, is_root,
    run_tool, sha256_hex, testbed, try_tool, unique,
};

// ---------------------------------------------------------------------------------------------
// helpers

/// Checks that a root-only test (marked ignored unless built by root, see build.rs) really
/// runs as root: a binary built by root and run by another user fails instead of passing.
fn need_root(test: &str) -> bool {
    assert!(
        is_root(),
        "{test} needs root (owners, device nodes, trusted.* xattrs and overlayfs mounts)"
    );
    true
}

/// A fresh scratch directory for one test (unpack targets, umoci bundles), next to the store
/// roots; removed when the test passes, kept when it fails.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn new(test: &str) -> Scratch {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/test-roots")
            .join(format!("{test}-{}.work", unique()));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Scratch { path }
    }

    fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The names in the scratch directory.
    fn names(&self) -> BTreeSet<String> {
        fs::read_dir(&self.path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("scratch kept for inspection: {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Unmounts (lazily) whatever of its mount points is still mounted when dropped, so that a
/// failing test does not leave overlay mounts behind.
struct MountGuard(Vec<PathBuf>);

impl Drop for MountGuard {
    fn drop(&mut self) {
        for m in &self.0 {
            if overlay_options(m).is_some() {
                let _ = try_tool("umount", &["-l", m.to_str().unwrap()]);
            }
        }
    }
}

/// Run `img --root ROOT ARGS…`, killing it after `secs` seconds (a hostile layer must not
/// make img hang).
fn run_with_timeout(root: &TestRoot, args: &[&str], secs: u64) -> Run {
    let mut child = root
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run the img binary");
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("img {args:?} did not finish within {secs}s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    Run {
        cmdline: format!("img --root {} {}", root.path.display(), args.join(" ")),
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

/// `umoci unpack` of `layout:ref` (as root umoci keeps owners) into a bundle in `scratch`;
/// returns the bundle's rootfs.
fn umoci_rootfs(tb: &Testbed, scratch: &Scratch, layout_and_ref: &str) -> PathBuf {
    let bundle = scratch.join(&format!(
        "umoci-{}",
        layout_and_ref.replace([':', '/'], "-")
    ));
    let image = tb.oci.join(layout_and_ref);
    run_tool(
        "umoci",
        &[
            "unpack",
            "--image",
            image.to_str().unwrap(),
            bundle.to_str().unwrap(),
        ],
    );
    bundle.join("rootfs")
}

/// `img unpack IMAGE DIR`, asserted to succeed, leaving no temp sibling.
fn img_unpack(root: &TestRoot, image: &str, dir: &Path) {
    root.run(&["unpack", image, dir.to_str().unwrap()])
        .assert_ok();
    assert!(dir.is_dir(), "{} was not created", dir.display());
    assert_no_temp_sibling(dir);
}

/// No `.NAME.img-*` (the directory img builds the tree in) left beside `dir`.
fn assert_no_temp_sibling(dir: &Path) {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let prefix = format!(".{name}.img-");
    let left: Vec<String> = fs::read_dir(dir.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "temp directories left: {left:?}");
}

/// The options of the overlay mounted at `mountpoint`, from `/proc/mounts` (None when nothing
/// is mounted there).
fn overlay_options(mountpoint: &Path) -> Option<String> {
    let mounts = fs::read_to_string("/proc/mounts").unwrap();
    let want = mountpoint.to_str().unwrap();
    mounts.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.len() > 3 && f[1] == want && f[2] == "overlay").then(|| f[3].to_string())
    })
}

/// The `lowerdir=` directories of the overlay at `mountpoint`, topmost first.
fn lowerdirs(mountpoint: &Path) -> Vec<PathBuf> {
    let options = overlay_options(mountpoint)
        .unwrap_or_else(|| panic!("no overlay mounted at {}", mountpoint.display()));
    let lower = options
        .split(',')
        .find_map(|o| o.strip_prefix("lowerdir="))
        .unwrap_or_else(|| panic!("no lowerdir in {options}"));
    lower.split(':').map(PathBuf::from).collect()
}

/// The names under `ROOT/snapshots/sha256` (chain ID hex digests).
fn snapshot_names(root: &TestRoot) -> BTreeSet<String> {
    match fs::read_dir(root.path.join("snapshots/sha256")) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// Every snapshot is complete (exactly `fs/` and `meta.json`, the latter naming its chain
/// ID) and nothing is left under `snapshots/tmp`.
fn assert_snapshots_complete(root: &TestRoot) {
    for name in snapshot_names(root) {
        let dir = root.path.join("snapshots/sha256").join(&name);
        let inside: BTreeSet<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            inside,
            BTreeSet::from(["fs".to_string(), "meta.json".to_string()]),
            "snapshot {name}"
        );
        assert!(dir.join("fs").is_dir(), "snapshot {name}");
        let meta: Value = serde_json::from_slice(&fs::read(dir.join("meta.json")).unwrap())
            .unwrap_or_else(|e| panic!("snapshot {name}: meta.json: {e}"));
        assert_eq!(meta["chainID"], format!("sha256:{name}"), "snapshot {name}");
    }
    let tmp = root.path.join("snapshots/tmp");
    if let Ok(entries) = fs::read_dir(&tmp) {
        let left: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        assert!(left.is_empty(), "left in {}: {left:?}", tmp.display());
    }
}

/// The chain IDs of a stack of diff_ids (image-spec), computed with sha256sum.
fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => format!("sha256:{}", sha256_hex(format!("{parent} {d}").as_bytes())),
        };
        out.push(next);
    }
    out
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").expect("a sha256 digest")
}

/// A blob of an OCI layout the test bed built.
fn layout_blob(layout: &Path, digest: &str) -> PathBuf {
    layout.join("blobs/sha256").join(hex(digest))
}

/// The manifest and config of `refname` in an OCI layout the test bed built.
fn layout_image(layout: &Path, refname: &str) -> (Value, Value) {
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).expect("index.json");
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"][REF_NAME] == refname)
        .unwrap_or_else(|| panic!("{} has no ref {refname}", layout.display()));
    let read = |d: &Value| -> Value {
        serde_json::from_slice(&fs::read(layout_blob(layout, d.as_str().unwrap())).unwrap())
            .unwrap()
    };
    let manifest = read(&entry["digest"]);
    let config = read(&manifest["config"]["digest"]);
    (manifest, config)
}

fn diff_ids_of(config: &Value) -> Vec<String> {
    config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect()
}

/// `a` relative to nothing: `..` and `.` applied lexically (the paths used here have no
/// symlinks of their own, so this is where the kernel would resolve them).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 1. a flattened rootfs equals umoci's

fn assert_unpack_equals_umoci(test: &str, fixture: &str, layout_and_ref: &str) -> Tree {
    assert!(is_root(), "callers check need_root");
    let tb = testbed();
    let root = TestRoot::new(test);
    let scratch = Scratch::new(test);
    let ours = scratch.join("rootfs");
    img_unpack(&root, &tb.plain_ref(fixture), &ours);
    let theirs = umoci_rootfs(tb, &scratch, layout_and_ref);
    let ours = Tree::read(&ours);
    assert_same(&Tree::read(&theirs), &ours, fixture);
    ours
}

/// What the edge fixture is there for is in the tree (so that equal means something).
fn assert_edge_features(tree: &Tree) {
    let e = || tree.entries.iter();
    let has = |what: &str, ok: bool| assert!(ok, "edge:latest has no {what}: {tree:#?}");
    has("FIFO", e().any(|(_, x)| x.kind == Kind::Fifo));
    has("symlink", e().any(|(_, x)| x.kind == Kind::Symlink));
    has("setuid file", e().any(|(_, x)| x.mode & 0o4000 != 0));
    has(
        "sticky dir",
        e().any(|(_, x)| x.kind == Kind::Dir && x.mode & 0o1000 != 0),
    );
    has("non-root owner", e().any(|(_, x)| x.uid != 0 || x.gid != 0));
    has("path over 100 bytes", e().any(|(p, _)| p.len() > 100));
    has(
        "security.capability",
        e().any(|(_, x)| x.xattrs.contains_key("security.capability")),
    );
    has(
        "user.* xattr",
        e().any(|(_, x)| x.xattrs.keys().any(|k| k.starts_with("user."))),
    );
    has("hardlink", !tree.hardlinks.is_empty());
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn unpack_busybox_equals_umoci() {
    if !need_root("unpack_busybox_equals_umoci") {
        return;
    }
    let tree = assert_unpack_equals_umoci("unpack-busybox", "busybox:latest", "busybox:latest");
    assert_eq!(tree.get("bin/busybox").map(|e| e.kind), Some(Kind::File));
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn unpack_redis_equals_umoci() {
    if !need_root("unpack_redis_equals_umoci") {
        return;
    }
    let tree = assert_unpack_equals_umoci("unpack-redis", "redis:7", "redis:7");
    let server = tree.get("usr/bin/redis-server").expect("redis-server");
    assert!(
        server.kind == Kind::File && server.mode & 0o111 != 0,
        "{server}"
    );
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn unpack_edge_equals_umoci() {
    if !need_root("unpack_edge_equals_umoci") {
        return;
    }
    let tree = assert_unpack_equals_umoci("unpack-edge", "edge:latest", "edge:latest");
    assert_edge_features(&tree);
}

/// Docker media types (the registry serves the busybox layout converted to schema 2).
#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn unpack_docker_v2s2_equals_umoci() {
    if !need_root("unpack_docker_v2s2_equals_umoci") {
        return;
    }
    let tree = assert_unpack_equals_umoci("unpack-v2s2", "busybox:v2s2", "busybox:latest");
    assert_eq!(tree.get("bin/busybox").map(|e| e.kind), Some(Kind::File));
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn unpack_layers_hardlinks_equals_umoci() {
    if !need_root("unpack_layers_hardlinks_equals_umoci") {
        return;
    }
    let tree = assert_unpack_equals_umoci(
        "unpack-layers-hardlinks",
        "layers/hardlinks:latest",
        "layers:hardlinks",
    );
    // and what hostile.json says the tree is after the last layer
    let spec = hostile_json(testbed())["benign"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["repo"] == "layers/hardlinks")
        .expect("hostile.json lists layers/hardlinks")
        .clone();
    let after = spec["after"].as_array().unwrap().last().unwrap();
    for (path, content) in after["files"].as_object().unwrap() {
        let e = tree.get(path).unwrap_or_else(|| panic!("no {path}"));
        let want = sha256_hex(content.as_str().unwrap().as_bytes());
        assert_eq!(e.sha256.as_deref(), Some(want.as_str()), "{path}");
    }
    for dir in after["dirs"].as_array().unwrap() {
        assert_eq!(
            tree.get(dir.as_str().unwrap()).map(|e| e.kind),
            Some(Kind::Dir)
        );
    }
    for absent in after["absent"].as_array().unwrap() {
        assert!(tree.get(absent.as_str().unwrap()).is_none(), "{absent}");
    }
    let links: BTreeSet<Vec<String>> = serde_json::from_value(after["hardlinks"].clone()).unwrap();
    assert_eq!(tree.hardlinks, links);
}

/// umoci 0.4.7 cannot read zstd layers: the zstd image is compared with img's unpack of its
/// gzip twin and with umoci's unpack of that twin.
#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn unpack_zstd_equals_its_gzip_twin_and_umoci() {
    let test = "unpack-zstd";
    if !need_root(test) {
        return;
    }
    let tb = testbed();
    let root = TestRoot::new(test);
    let scratch = Scratch::new(test);
    let zstd = scratch.join("zstd");
    let gzip = scratch.join("gzip");
    img_unpack(&root, &tb.plain_ref("redis:7-zstd"), &zstd);
    img_unpack(&root, &tb.plain_ref("redis:7"), &gzip);
    let umoci = umoci_rootfs(tb, &scratch, "redis:7");
    let zstd = Tree::read(&zstd);
    assert_same(&Tree::read(&gzip), &zstd, "redis:7-zstd vs redis:7 (img)");
    assert_same(
        &Tree::read(&umoci),
        &zstd,
        "redis:7-zstd (img) vs redis:7 (umoci)",
    );
}

// ---------------------------------------------------------------------------------------------
// 2. the rootfs works

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn unpacked_redis_runs_in_a_chroot() {
    let test = "unpack-chroot";
    if !need_root(test) {
        return;
    }
    let tb = testbed();
    let root = TestRoot::new(test);
    let scratch = Scratch::new(test);
    let dir = scratch.join("rootfs");
    img_unpack(&root, &tb.plain_ref("redis:7"), &dir);
    let run = try_tool(
        "chroot",
        &[dir.to_str().unwrap(), "/usr/bin/redis-server", "--version"],
    );
    run.assert_ok();
    assert!(run.stdout.contains("Redis server v="), "{run}");
}

#[test]
fn unpack_into_a_non_empty_directory_is_refused() {
    let test = "unpack-non-empty";
    let tb = testbed();
    let root = TestRoot::new(test);
    let scratch = Scratch::new(test);
    let dir = scratch.join("rootfs");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("precious"), "keep me").unwrap();
    let (_, stderr) = root.fails(&[
        "unpack",
        &tb.plain_ref("busybox:latest"),
        dir.to_str().unwrap(),
    ]);
    assert_one_error_line(&stderr);
    assert_eq!(fs::read_to_string(dir.join("precious")).unwrap(), "keep me");
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
    assert_no_temp_sibling(&dir);
    // an empty directory is fine
    let empty = scratch.join("empty");
    fs::create_dir(&empty).unwrap();
    img_unpack(&root, &tb.plain_ref("busybox:latest"), &empty);
    assert!(empty.join("bin").exists());
}

/// `img unpack IMAGE .` from an empty directory: the documented contract ("DIR must not exist
/// or be empty") covers it.
#[test]
fn unpack_into_the_empty_current_directory() {
    let test = "unpack-dot";
    let tb = testbed();
    let root = TestRoot::new(test);
    let scratch = Scratch::new(test);
    let cwd = scratch.join("cwd");
    fs::create_dir(&cwd).unwrap();
    let out = root
        .command(&["unpack", &tb.plain_ref("busybox:latest"), "."])
        .current_dir(&cwd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "img unpack IMAGE . failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(cwd.join("bin/busybox").is_file());
    let left: Vec<String> = scratch.names().into_iter().filter(|n| n != "cwd").collect();
    assert!(left.is_empty(), "{left:?}");
}

// ---------------------------------------------------------------------------------------------
// 3. overlay mounts

/// `img mount IMAGE`: the merged directory it prints, checked to be `ROOT/mounts/<id>/merged`
/// and an overlay mount; returns (id, merged).
fn mount(root: &TestRoot, image: &str) -> (String, PathBuf) {
    let out = root.ok(&["mount", image]);
    let merged = PathBuf::from(out.trim());
    assert_eq!(merged.file_name().unwrap(), "merged", "{out}");
    let dir = merged.parent().unwrap();
    assert_eq!(
        fs::canonicalize(dir.parent().unwrap()).unwrap(),
        fs::canonicalize(root.path.join("mounts")).unwrap(),
        "{out}"
    );
    assert!(overlay_options(&merged).is_some(), "{out} is not mounted");
    let id = dir.file_name().unwrap().to_string_lossy().into_owned();
    (id, merged)
}

/// The tree of a merged view and of a flattened rootfs, both without their root directory:
/// overlayfs takes a directory's own owner and mode from its topmost layer, and for the root
/// of the mount that is always the fresh upper directory img creates (root-owned 0755), not
/// the image's `./` entry, which only the flattened rootfs applies.
fn assert_merged_equals_flattened(merged: &Path, flat: &Path, what: &str) {
    assert_same(
        &Tree::read(flat).without_root(),
        &Tree::read(merged).without_root(),
        what,
    );
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn mount_redis_is_copy_on_write_over_shared_snapshots() {
    let test = "mount-redis";
    if !need_root(test) {
        return;
    }
    let tb = testbed();
    let root = TestRoot::new(test);
    let scratch = Scratch::new(test);
    let image = tb.plain_ref("redis:7");
    let flat = scratch.join("flat");
    img_unpack(&root, &image, &flat);

    let (id1, merged1) = mount(&root, &image);
    let mut guard = MountGuard(vec![merged1.clone()]);
    assert_merged_equals_flattened(&merged1, &flat, "redis:7 mounted vs unpacked");
    let lowers1 = lowerdirs(&merged1);
    let snapshots = snapshot_names(&root);
    assert_eq!(lowers1.len(), 4, "redis:7 has 4 layers: {lowers1:?}");
    assert_eq!(snapshots.len(), 4, "{snapshots:?}");
    for l in &lowers1 {
        let name = l.parent().unwrap().file_name().unwrap().to_string_lossy();
        assert!(
            snapshots.contains(name.as_ref()),
            "{} is not a snapshot",
            l.display()
        );
        assert_eq!(
            l.parent().unwrap().parent().unwrap(),
            root.path.join("snapshots/sha256")
        );
    }
    assert_snapshots_complete(&root);
    let snapshot_tree = || Tree::read(&root.path.join("snapshots"));
    let before = snapshot_tree();

    // change the merged view: delete a file, add one, rewrite one from a lower layer
    fs::remove_file(merged1.join("usr/bin/redis-cli")).unwrap();
    fs::write(
        merged1.join("img-mount-test.txt"),
        "written in the merged view\n",
    )
    .unwrap();
    fs::write(merged1.join("etc/redis.conf"), "# rewritten\n").unwrap();
    assert!(!merged1.join("usr/bin/redis-cli").exists());
    assert_same(
        &before,
        &snapshot_tree(),
        "the snapshots after writing to a mount",
    );
    let upper = root.path.join("mounts").join(&id1).join("upper");
    let upper_tree = Tree::read(&upper);
    let whiteout = upper_tree
        .get("usr/bin/redis-cli")
        .unwrap_or_else(|| panic!("no whiteout in {}", upper.display()));
    assert_eq!(whiteout.kind, Kind::Char, "{whiteout}");
    assert_eq!(whiteout.device, Some((0, 0)), "{whiteout}");
    assert_eq!(
        fs::read_to_string(upper.join("img-mount-test.txt")).unwrap(),
        "written in the merged view\n"
    );
    assert_eq!(
        fs::read_to_string(upper.join("etc/redis.conf")).unwrap(),
        "# rewritten\n"
    );

    // a second mount: its own view over the same snapshots
    let (id2, merged2) = mount(&root, &image);
    guard.0.push(merged2.clone());
    assert_ne!(id1, id2);
    assert_ne!(merged1, merged2);
    assert_merged_equals_flattened(&merged2, &flat, "second mount of redis:7 vs unpacked");
    assert!(merged2.join("usr/bin/redis-cli").is_file());
    assert!(!merged2.join("img-mount-test.txt").exists());
    assert_eq!(lowerdirs(&merged2), lowers1);
    assert_eq!(snapshot_names(&root), snapshots);
    assert_same(
        &before,
        &snapshot_tree(),
        "the snapshots after a second mount",
    );
    root.assert_fsck_clean();

    // umount by id, and by merged directory
    root.ok(&["umount", &id1]);
    root.ok(&["umount", merged2.to_str().unwrap()]);
    for (id, merged) in [(&id1, &merged1), (&id2, &merged2)] {
        assert!(
            overlay_options(merged).is_none(),
            "{} still mounted",
            merged.display()
        );
        assert!(
            !root.path.join("mounts").join(id).exists(),
            "mounts/{id} left"
        );
    }
    assert_same(&before, &snapshot_tree(), "the snapshots after umount");
    root.assert_fsck_clean();
}

fn assert_mount_equals_unpack(test: &str, fixture: &str) {
    if !need_root(test) {
        return;
    }
    let tb = testbed();
    let root = TestRoot::new(test);
    let scratch = Scratch::new(test);
    let image = tb.plain_ref(fixture);
    let flat = scratch.join("flat");
    img_unpack(&root, &image, &flat);
    let (id, merged) = mount(&root, &image);
    let _guard = MountGuard(vec![merged.clone()]);
    assert_merged_equals_flattened(&merged, &flat, &format!("{fixture} mounted vs unpacked"));
    root.ok(&["umount", &id]);
    assert!(overlay_options(&merged).is_none());
    assert!(!root.path.join("mounts").join(&id).exists());
}

/// Whiteouts, opaque directories, dir/file replacements in overlay form.
#[test]
fn mount_edge_equals_its_unpack() {
    assert_mount_equals_unpack("mount-edge", "edge:latest");
}

/// A hardlink whited out in a later layer (overlayfs still reports the lower inode's link
/// count, but no other path shares it).
#[test]
fn mount_layers_hardlinks_equals_its_unpack() {
    assert_mount_equals_unpack("mount-hardlinks", "layers/hardlinks:latest");
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn gc_keeps_the_snapshots_a_mount_needs() {
    let test = "mount-gc";
    if !need_root(test) {
        return;
    }
    let tb = testbed();
    let root = TestRoot::new(test);
    let image = tb.plain_ref("edge:latest");
    let (id, merged) = mount(&root, &image);
    let _guard = MountGuard(vec![merged.clone()]);
    let snapshots = snapshot_names(&root);
    assert_eq!(snapshots.len(), 3);
    root.ok(&["rmi", &image]);
    root.ok(&["gc"]);
    assert_eq!(
        snapshot_names(&root),
        snapshots,
        "gc removed what a mount uses"
    );
    assert!(merged.join("links/target").exists());
    root.ok(&["umount", &id]);
    let report = root.json(&["--json", "gc"]);
    assert_eq!(report["snapshots"], 3, "{report}");
    assert_eq!(snapshot_names(&root), BTreeSet::new());
    root.assert_fsck_clean();
}

// ---------------------------------------------------------------------------------------------
// 4. pull --unpack, gc, rmi, fsck

/// The snapshots `img pull --unpack edge:latest` prepares are keyed by chain ID and in
/// overlayfs' form, checked against the layer tars themselves (`tar -tzf`).
#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn pull_unpack_prepares_overlay_snapshots_that_gc_keeps_until_rmi() {
    let test = "pull-unpack";
    if !need_root(test) {
        return;
    }
    let tb = testbed();
    let root = TestRoot::new(test);
    let image = tb.plain_ref("edge:latest");
    let layout = tb.oci.join("edge");
    let (manifest, config) = layout_image(&layout, "latest");
    let chains = chain_ids(&diff_ids_of(&config));
    let expected: BTreeSet<String> = chains.iter().map(|c| hex(c).to_string()).collect();

    root.ok(&["pull", "--unpack", &image]);
    assert_eq!(snapshot_names(&root), expected);
    assert_snapshots_complete(&root);
    root.assert_fsck_clean();

    let layers = manifest["layers"].as_array().unwrap();
    let mut whiteouts = 0;
    let mut opaques = 0;
    for (layer, chain) in layers.iter().zip(&chains) {
        let digest = layer["digest"].as_str().unwrap();
        let snapshot = root.path.join("snapshots/sha256").join(hex(chain));
        let meta: Value =
            serde_json::from_slice(&fs::read(snapshot.join("meta.json")).unwrap()).unwrap();
        assert_eq!(meta["layer"], digest, "{meta}");
        let fs_tree = Tree::read(&snapshot.join("fs"));
        for path in fs_tree.entries.keys() {
            let base = path.rsplit('/').next().unwrap();
            assert!(!base.starts_with(".wh."), "{chain}: {path} left as a file");
        }
        let blob = layout_blob(&layout, digest);
        let listing = run_tool("tar", &["-tzf", blob.to_str().unwrap()]);
        for member in listing.lines() {
            let name = member.trim_start_matches("./").trim_start_matches('/');
            let name = name.trim_end_matches('/');
            if name.is_empty() {
                continue;
            }
            let (parent, base) = name.rsplit_once('/').unwrap_or(("", name));
            let parent = if parent.is_empty() { "." } else { parent };
            if base == ".wh..wh..opq" {
                let dir = fs_tree
                    .get(parent)
                    .unwrap_or_else(|| panic!("{chain}: no {parent} for {name}"));
                assert_eq!(
                    dir.xattrs.get("trusted.overlay.opaque").map(Vec::as_slice),
                    Some(&b"y"[..]),
                    "{chain}: {parent} is not opaque: {dir}"
                );
                opaques += 1;
            } else if let Some(victim) = base.strip_prefix(".wh.") {
                let path = if parent == "." {
                    victim.to_string()
                } else {
                    format!("{parent}/{victim}")
                };
                let e = fs_tree
                    .get(&path)
                    .unwrap_or_else(|| panic!("{chain}: no whiteout at {path}"));
                assert_eq!(
                    (e.kind, e.device),
                    (Kind::Char, Some((0, 0))),
                    "{path}: {e}"
                );
                whiteouts += 1;
            } else {
                assert!(fs_tree.get(name).is_some(), "{chain}: {name} missing");
            }
        }
    }
    assert!(
        whiteouts > 0 && opaques > 0,
        "edge:latest should have whiteouts ({whiteouts}) and opaque dirs ({opaques})"
    );

    // a second pull --unpack changes nothing; gc keeps what the image needs
    let before = Tree::read(&root.path.join("snapshots/sha256"));
    root.ok(&["pull", "--unpack", &image]);
    let report = root.json(&["--json", "gc"]);
    assert_eq!(report["snapshots"], 0, "{report}");
    assert_same(
        &before,
        &Tree::read(&root.path.join("snapshots/sha256")),
        "snapshots after pull --unpack and gc",
    );
    root.assert_fsck_clean();

    root.ok(&["rmi", &image]);
    root.assert_fsck_clean();
    let report = root.json(&["--json", "gc"]);
    assert_eq!(report["snapshots"], 3, "{report}");
    assert_eq!(snapshot_names(&root), BTreeSet::new());
    root.assert_fsck_clean();
}

/// Run `img --root ROOT ARGS` under strace; its stdout, and which layer blobs (of the
/// `"layers"` its `--json` answer lists) it opened from the store to read them back.
fn pull_reading_back(root: &TestRoot, args: &[&str]) -> (Value, BTreeSet<String>) {
    let log = PathBuf::from(format!("{}.openat.log", root.path.display()));
    let pre = ["-f", "-qq", "-e", "trace=openat", "-o"].map(std::ffi::OsStr::new);
    let out = root
        .command_under("strace", &[&pre[..], &[log.as_os_str()]].concat(), args)
        .output()
        .expect("cannot run strace (tools/test installs it)");
    let run = Run::from_output(format!("strace … img {}", args.join(" ")), out);
    run.assert_ok();
    let pulled: Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {run}"));
    let trace = fs::read_to_string(&log).unwrap();
    let _ = fs::remove_file(&log);
    let read_back = pulled["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .filter(|d| {
            let path = format!("blobs/sha256/{}\"", hex(d));
            trace
                .lines()
                .any(|l| l.contains(&path) && l.contains("O_RDONLY"))
        })
        .collect();
    (pulled, read_back)
}

/// `pull --unpack` makes each snapshot from the downloaded bytes as they arrive (no layer blob
/// is read back from the store), across a cut and resumed download too; a download that
/// starts over (a server ignoring Range) falls back to the stored blob. Every way gives the
/// snapshots a pull followed by a separate unpack of the stored blobs gives.
#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn pull_unpack_makes_snapshots_in_one_pass_from_the_download() {
    let test = "one-pass";
    if !need_root(test) {
        return;
    }
    let tb = testbed();
    for fixture in ["redis:7", "edge:latest"] {
        // The reference: blobs stored first, snapshots made from them afterwards.
        let two_pass = TestRoot::new(&format!("{test}-ref"));
        two_pass.ok(&["pull", "-q", &tb.plain_ref(fixture)]);
        let (_, read) = pull_reading_back(
            &two_pass,
            &["pull", "--json", "--unpack", &tb.plain_ref(fixture)],
        );
        assert!(
            !read.is_empty(),
            "{fixture}: the stored blobs should be read"
        );
        assert_snapshots_complete(&two_pass);
        let expected = Tree::read(&two_pass.path.join("snapshots/sha256"));

        let one_pass = TestRoot::new(test);
        let (pulled, read) = pull_reading_back(
            &one_pass,
            &["pull", "--json", "--unpack", &tb.plain_ref(fixture)],
        );
        assert!(pulled["fetchedBlobs"].as_u64().unwrap() > 1, "{pulled}");
        assert_eq!(read, BTreeSet::new(), "{fixture}: layer blobs read back");
        assert_snapshots_complete(&one_pass);
        one_pass.assert_fsck_clean();
        assert_same(
            &expected,
            &Tree::read(&one_pass.path.join("snapshots/sha256")),
            &format!("{fixture}: snapshots made in one pass"),
        );
    }

    // Every blob cut halfway and resumed: the feeds go on from where the bytes stopped.
    let reference = TestRoot::new(&format!("{test}-ref"));
    reference.ok(&["pull", "-q", "--unpack", &tb.plain_ref("redis:7")]);
    let expected = Tree::read(&reference.path.join("snapshots/sha256"));
    let proxy = support::proxy::Proxy::start(&["--fault", "cut"]);
    let cut = TestRoot::new(&format!("{test}-cut"));
    let (_, read) = pull_reading_back(
        &cut,
        &["pull", "--json", "--unpack", &proxy.reference("redis:7")],
    );
    assert!(support::proxy::count(&proxy.stats()["faults_fired"]["cut"]) > 1);
    assert_eq!(
        read,
        BTreeSet::new(),
        "cut and resumed: layer blobs read back"
    );
    assert_snapshots_complete(&cut);
    assert_same(
        &expected,
        &Tree::read(&cut.path.join("snapshots/sha256")),
        "redis:7: snapshots made across resumed downloads",
    );

    // The whole blob again from byte 0 after a cut: those feeds are abandoned, the snapshots
    // come from the stored blobs, and nothing of the abandoned ones is left.
    let proxy = support::proxy::Proxy::start(&["--fault", "norange", "--fault", "cut"]);
    let restarted = TestRoot::new(&format!("{test}-norange"));
    let (pulled, read) = pull_reading_back(
        &restarted,
        &["pull", "--json", "--unpack", &proxy.reference("redis:7")],
    );
    let layers = pulled["layers"].as_array().unwrap().len();
    assert_eq!(
        read.len(),
        layers,
        "restarted downloads: every layer from the store"
    );
    assert_snapshots_complete(&restarted);
    restarted.assert_fsck_clean();
    assert_same(
        &expected,
        &Tree::read(&restarted.path.join("snapshots/sha256")),
        "redis:7: snapshots after restarted downloads",
    );
}

/// A snapshot without its `meta.json` is reported by fsck, by chain ID.
#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn fsck_names_an_incomplete_snapshot() {
    let test = "fsck-snapshot";
    if !need_root(test) {
        return;
    }
    let tb = testbed();
    let root = TestRoot::new(test);
    root.ok(&["pull", "--unpack", &tb.plain_ref("edge:latest")]);
    root.assert_fsck_clean();
    let victim = snapshot_names(&root).into_iter().nth(1).unwrap();
    fs::remove_file(
        root.path
            .join("snapshots/sha256")
            .join(&victim)
            .join("meta.json"),
    )
    .unwrap();
    let run = root.run(&["fsck"]);
    run.assert_failed();
    assert!(
        run.stdout.contains(&victim) || run.stderr.contains(&victim),
        "fsck does not name snapshot {victim}: {run}"
    );
    let others: Vec<String> = snapshot_names(&root)
        .into_iter()
        .filter(|n| *n != victim)
        .collect();
    for other in others {
        assert!(
            !run.stdout.contains(&other) && !run.stderr.contains(&other),
            "fsck blames the complete snapshot {other}: {run}"
        );
    }
}

/// Once fsck has said a snapshot is incomplete, the ordinary commands must get the store back
/// to a clean fsck: gc (which may drop it) followed by `pull --unpack` (which may rebuild it).
#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn an_incomplete_snapshot_is_repaired_by_gc_and_pull_unpack() {
    let test = "fsck-repair";
    if !need_root(test) {
        return;
    }
    let tb = testbed();
    let root = TestRoot::new(test);
    let image = tb.plain_ref("edge:latest");
    root.ok(&["pull", "--unpack", &image]);
    let victim = snapshot_names(&root).into_iter().next().unwrap();
    fs::remove_file(
        root.path
            .join("snapshots/sha256")
            .join(&victim)
            .join("meta.json"),
    )
    .unwrap();
    root.run(&["fsck"]).assert_failed();
    root.ok(&["gc"]);
    root.ok(&["pull", "--unpack", &image]);
    assert_snapshots_complete(&root);
    root.assert_fsck_clean();
}

// ---------------------------------------------------------------------------------------------
// 5. hostile layers

/// What img does with a hostile image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Refuses it: exit ≠ 0, nothing created.
    Refused,
    /// Unpacks it, everything resolved inside the target (its `contained` paths).
    Contained,
}

/// The hostile.json entry of `repo`, checked to allow `outcome`.
fn hostile_spec(tb: &Testbed, repo: &str, outcome: Outcome) -> Value {
    let all = hostile_json(tb);
    let spec = all["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["repo"] == repo)
        .unwrap_or_else(|| panic!("hostile.json has no {repo}"))
        .clone();
    let allowed = match outcome {
        Outcome::Refused => spec["expect"] == "error",
        Outcome::Contained => {
            spec["expect"] == "ok"
                || spec["also_ok"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|o| o == "contained")
        }
    };
    assert!(
        allowed,
        "hostile.json does not allow {outcome:?} for {repo}: {spec}"
    );
    spec
}

/// A file's device, inode, size and mtime: whether it was created, replaced or written.
type Identity = (u64, u64, u64, i64, i64);

fn identity(p: &Path) -> Option<Identity> {
    fs::symlink_metadata(p)
        .ok()
        .map(|m| (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
}

/// What a hostile image could touch outside its target, recorded before img runs.
struct Watch {
    paths: Vec<(PathBuf, Option<Identity>)>,
    sentinels: Vec<PathBuf>,
    hashes: Vec<(PathBuf, Option<String>)>,
}

impl Watch {
    /// `targets`: where the layers are applied (relative `outside` paths are resolved from
    /// there); `places`: directories an escaped file could land in.
    fn new(spec: &Value, targets: &[PathBuf], places: &[PathBuf]) -> Watch {
        let mut names: BTreeSet<String> = BTreeSet::new();
        let mut paths: BTreeSet<PathBuf> = BTreeSet::new();
        for o in spec["outside"].as_array().unwrap() {
            let o = Path::new(o.as_str().unwrap());
            names.insert(o.file_name().unwrap().to_string_lossy().into_owned());
            if o.is_absolute() {
                paths.insert(o.to_path_buf());
            } else {
                for t in targets {
                    paths.insert(normalize(&t.join(o)));
                }
            }
        }
        for layer in spec["layers"].as_array().unwrap() {
            for m in layer["members"].as_array().unwrap() {
                for key in ["name", "linkname"] {
                    let name = m[key].as_str().unwrap();
                    if let Some(base) = Path::new(name).file_name() {
                        let base = base.to_string_lossy();
                        if base.contains("escaped") {
                            names.insert(base.trim_start_matches(".wh.").to_string());
                            names.insert(base.into_owned());
                        }
                    }
                }
            }
        }
        let mut dirs: Vec<PathBuf> = vec![
            PathBuf::from("/"),
            PathBuf::from("/tmp"),
            PathBuf::from("/var/tmp"),
            std::env::current_dir().unwrap(),
        ];
        for p in places {
            dirs.push(p.clone());
            if let Some(parent) = p.parent() {
                dirs.push(parent.to_path_buf());
            }
        }
        for d in &dirs {
            for n in &names {
                paths.insert(d.join(n));
            }
        }
        let sentinels: Vec<PathBuf> = spec["sentinels"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| {
                let s = s.as_str().unwrap().to_string();
                targets.iter().map(move |t| normalize(&t.join(&s)))
            })
            .filter(|p| !targets.iter().any(|t| p.starts_with(t)))
            .filter(|p| {
                // beside a snapshot's fs/ (made by img during the run) there is nothing to
                // plant; assert_snapshots_complete checks nothing is added there
                let exists = p.parent().is_some_and(Path::is_dir);
                if !exists {
                    eprintln!("note: no sentinel {} (its directory is img's)", p.display());
                }
                exists
            })
            .collect();
        for s in &sentinels {
            fs::write(s, "sentinel\n").unwrap_or_else(|e| panic!("{}: {e}", s.display()));
            paths.remove(s);
        }
        // what lies inside a target is the target's business, not an escape
        paths.retain(|p| !targets.iter().any(|t| p.starts_with(t)));
        let paths: Vec<_> = paths
            .into_iter()
            .map(|p| {
                let id = identity(&p);
                if id.is_some() {
                    eprintln!(
                        "note: {} exists before the test (left by an earlier run?)",
                        p.display()
                    );
                }
                (p, id)
            })
            .collect();
        let hashes = ["/etc/passwd", "/etc/shadow", "/etc/group"]
            .iter()
            .map(|p| (PathBuf::from(p), fs::read(p).ok().map(|b| sha256_hex(&b))))
            .collect();
        Watch {
            paths,
            sentinels,
            hashes,
        }
    }

    /// Nothing watched was created, replaced or changed; every sentinel survived.
    fn check(&self, what: &str) {
        for (p, before) in &self.paths {
            assert_eq!(
                &identity(p),
                before,
                "{what}: {} was created or changed outside the target",
                p.display()
            );
        }
        for s in &self.sentinels {
            assert_eq!(
                fs::read_to_string(s).ok().as_deref(),
                Some("sentinel\n"),
                "{what}: sentinel {} did not survive",
                s.display()
            );
        }
        for (p, before) in &self.hashes {
            let now = fs::read(p).ok().map(|b| sha256_hex(&b));
            assert_eq!(&now, before, "{what}: {} changed", p.display());
        }
    }
}

/// The one error line names a layer of the image or one of its entries.
fn assert_names_layer_or_entry(spec: &Value, stderr: &str) {
    let line = assert_one_error_line(stderr);
    let mut names = Vec::new();
    for layer in spec["layers"].as_array().unwrap() {
        names.push(layer["digest"].as_str().unwrap().to_string());
        for m in layer["members"].as_array().unwrap() {
            names.push(m["name"].as_str().unwrap().to_string());
        }
    }
    assert!(
        names.iter().any(|n| line.contains(n.as_str())),
        "the error names no layer digest or entry of {}: {line}",
        spec["repo"]
    );
}

/// Each prefix of `rel` below `dir` is a real directory (not a symlink) and `rel` itself a
/// regular file.
fn assert_contained_file(dir: &Path, rel: &str) {
    let mut p = dir.to_path_buf();
    let comps: Vec<&str> = rel.split('/').collect();
    for (i, c) in comps.iter().enumerate() {
        p.push(c);
        let meta = fs::symlink_metadata(&p)
            .unwrap_or_else(|e| panic!("{} (contained path {rel}): {e}", p.display()));
        if i + 1 < comps.len() {
            assert!(meta.is_dir(), "{} is not a real directory", p.display());
        } else {
            assert!(meta.is_file(), "{} is not a regular file", p.display());
        }
    }
}

/// Checks on a target that may exist: `not_linked_to` and `max_bytes`.
fn check_target_limits(spec: &Value, target: &Path) {
    for (rel, host) in spec["not_linked_to"].as_object().unwrap() {
        let host = host.as_str().unwrap();
        if let (Ok(m), Ok(h)) = (fs::symlink_metadata(target.join(rel)), fs::metadata(host)) {
            assert!(
                (m.dev(), m.ino()) != (h.dev(), h.ino()),
                "{} is a hardlink to {host:?}",
                target.join(rel).display()
            );
        }
    }
    for (rel, max) in spec["max_bytes"].as_object().unwrap() {
        if let Ok(m) = fs::symlink_metadata(target.join(rel)) {
            assert!(
                m.len() <= max.as_u64().unwrap(),
                "{} has {} bytes",
                target.join(rel).display(),
                m.len()
            );
        }
    }
}

/// `img unpack hostile/X DIR`, DIR inside a fresh scratch directory.
fn hostile_unpack(repo: &str, outcome: Outcome) {
    let tb = testbed();
    let spec = hostile_spec(tb, repo, outcome);
    let test = format!("hostile-unpack-{}", repo.replace('/', "-"));
    let root = TestRoot::new(&test);
    let scratch = Scratch::new(&test);
    let dir = scratch.join("rootfs");
    let watch = Watch::new(
        &spec,
        std::slice::from_ref(&dir),
        &[scratch.path.clone(), root.path.clone()],
    );
    let sentinel_names: BTreeSet<String> = watch
        .sentinels
        .iter()
        .filter(|s| s.parent() == Some(scratch.path.as_path()))
        .map(|s| s.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let run = run_with_timeout(
        &root,
        &[
            "unpack",
            spec["ref"].as_str().unwrap(),
            dir.to_str().unwrap(),
        ],
        60,
    );
    watch.check(&run.cmdline);
    check_target_limits(&spec, &dir);
    let mut expected_names = sentinel_names;
    match outcome {
        Outcome::Refused => {
            run.assert_failed();
            assert_names_layer_or_entry(&spec, &run.stderr);
            assert!(!dir.exists(), "{run}\n{} was created", dir.display());
        }
        Outcome::Contained => {
            run.assert_ok();
            for rel in spec["contained"].as_array().unwrap() {
                assert_contained_file(&dir, rel.as_str().unwrap());
            }
            expected_names.insert("rootfs".into());
        }
    }
    assert_no_temp_sibling(&dir);
    assert_eq!(scratch.names(), expected_names, "{run}");
}

/// `img pull --unpack hostile/X`: per-layer snapshots under the store root.
fn hostile_snapshots(repo: &str, outcome: Outcome) {
    let tb = testbed();
    if !need_root(&format!("hostile snapshots of {repo}")) {
        return;
    }
    let spec = hostile_spec(tb, repo, outcome);
    let test = format!("hostile-snapshots-{}", repo.replace('/', "-"));
    let root = TestRoot::new(&test);
    let snapshots = root.path.join("snapshots");
    // a layer's tree is built in snapshots/tmp/<x>/fs (checked empty afterwards) and moved to
    // snapshots/sha256/<chain-id>/fs
    let diff_ids: Vec<String> = spec["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["diff_id"].as_str().unwrap().to_string())
        .collect();
    let targets: Vec<PathBuf> = chain_ids(&diff_ids)
        .iter()
        .map(|c| snapshots.join("sha256").join(hex(c)).join("fs"))
        .collect();
    fs::create_dir_all(&root.path).unwrap();
    let watch = Watch::new(
        &spec,
        &targets,
        &[
            root.path.clone(),
            snapshots.clone(),
            snapshots.join("sha256"),
            snapshots.join("tmp"),
        ],
    );
    let run = run_with_timeout(
        &root,
        &["pull", "--unpack", spec["ref"].as_str().unwrap()],
        60,
    );
    watch.check(&run.cmdline);
    assert_snapshots_complete(&root);
    root.assert_fsck_clean();
    let complete = snapshot_names(&root);
    for name in &complete {
        check_target_limits(&spec, &snapshots.join("sha256").join(name).join("fs"));
    }
    match outcome {
        Outcome::Refused => {
            run.assert_failed();
            assert_names_layer_or_entry(&spec, &run.stderr);
        }
        Outcome::Contained => {
            run.assert_ok();
            assert_eq!(complete.len(), spec["layers"].as_array().unwrap().len());
            // each contained file is somewhere inside a snapshot (its path there depends on
            // which layer planted the symlink)
            for rel in spec["contained"].as_array().unwrap() {
                let base = Path::new(rel.as_str().unwrap()).file_name().unwrap();
                let found = complete.iter().any(|name| {
                    let fs_dir = snapshots.join("sha256").join(name).join("fs");
                    Tree::read(&fs_dir).entries.iter().any(|(p, e)| {
                        e.kind == Kind::File && Path::new(p).file_name() == Some(base)
                    })
                });
                assert!(found, "{rel} is in no snapshot: {run}");
            }
        }
    }
}

macro_rules! hostile_tests {
    ($($name:ident: $repo:literal => $outcome:ident;)*) => {
        /// Every hostile/* image of hostile.json has a test here.
        #[test]
        fn every_hostile_fixture_has_a_test() {
            let listed: BTreeSet<String> = hostile_json(testbed())["images"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["repo"].as_str().unwrap().to_string())
                .collect();
            let tested: BTreeSet<String> = [$($repo),*].iter().map(|s| s.to_string()).collect();
            assert_eq!(listed, tested);
        }

        /// `img unpack hostile/X DIR`: refused, or resolved inside DIR; nothing outside.
        mod hostile_unpack {
            $(
                #[test]
                fn $name() {
                    super::hostile_unpack($repo, super::Outcome::$outcome);
                }
            )*
        }

        /// `img pull --unpack hostile/X`: the same in snapshot (overlay) form.
        mod hostile_snapshots {
            $(
                #[test]
                #[cfg_attr(not(img_root), ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does")]
                fn $name() {
                    super::hostile_snapshots($repo, super::Outcome::$outcome);
                }
            )*
        }
    };
}

hostile_tests! {
    dotdot: "hostile/dotdot" => Refused;
    absolute: "hostile/absolute" => Contained;
    symlink: "hostile/symlink" => Contained;
    symlink_layers: "hostile/symlink-layers" => Contained;
    symlink_relative: "hostile/symlink-relative" => Contained;
    hardlink: "hostile/hardlink" => Refused;
    hardlink_dotdot: "hostile/hardlink-dotdot" => Refused;
    symlink_loop: "hostile/symlink-loop" => Refused;
    huge: "hostile/huge" => Refused;
    whiteout_escape: "hostile/whiteout-escape" => Refused;
}

// ---------------------------------------------------------------------------------------------
// 6. layers that are not what the config says

/// Store, by hand, a copy of `image` (already pulled) whose config lists a wrong diff_id for
/// layer `k`, under the name `name`; returns that layer's digest.
fn store_with_wrong_diff_id(root: &TestRoot, image: &str, k: usize, name: &str) -> String {
    let entry = &root.entries_named(image)[0];
    let read = |d: &str| -> Value {
        serde_json::from_slice(&fs::read(root.blob_path(d)).unwrap()).unwrap()
    };
    let mut manifest = read(entry["digest"].as_str().unwrap());
    let mut config = read(manifest["config"]["digest"].as_str().unwrap());
    let wrong = format!("sha256:{}", sha256_hex(b"not this layer's content"));
    config["rootfs"]["diff_ids"][k] = json!(wrong);
    let write = |bytes: Vec<u8>| -> (String, usize) {
        let digest = format!("sha256:{}", sha256_hex(&bytes));
        fs::write(root.blob_path(&digest), &bytes).unwrap();
        (digest, bytes.len())
    };
    let (config_digest, config_size) = write(serde_json::to_vec(&config).unwrap());
    manifest["config"]["digest"] = json!(config_digest);
    manifest["config"]["size"] = json!(config_size);
    let (manifest_digest, manifest_size) = write(serde_json::to_vec(&manifest).unwrap());
    let mut index = root.index();
    index["manifests"].as_array_mut().unwrap().push(json!({
        "mediaType": OCI_MANIFEST,
        "digest": manifest_digest,
        "size": manifest_size,
        "annotations": { REF_NAME: name },
    }));
    fs::write(
        root.path.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    manifest["layers"][k]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A config whose diff_id does not match its layer (a store written by hand: blobs, manifest
/// and index all consistent, only the diff_id wrong): unpack and mount fail naming the layer,
/// and leave nothing behind.
#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn a_wrong_diff_id_fails_unpack_and_mount_leaving_nothing() {
    let test = "diff-id";
    let tb = testbed();
    let root = TestRoot::new(test);
    let scratch = Scratch::new(test);
    let image = tb.plain_ref("redis:7");
    root.ok(&["pull", &image]);
    let name = tb.plain_ref(&format!("t-{}/redis:wrong-diff-id", unique()));
    let layer = store_with_wrong_diff_id(&root, &image, 2, &name);
    root.assert_fsck_clean();

    let dir = scratch.join("rootfs");
    let (_, stderr) = root.fails(&["unpack", &name, dir.to_str().unwrap()]);
    let line = assert_one_error_line(&stderr);
    assert!(
        line.contains(&layer),
        "the error does not name layer {layer}: {line}"
    );
    assert!(line.contains("diff_id"), "{line}");
    assert!(!dir.exists());
    assert_no_temp_sibling(&dir);
    assert_eq!(scratch.names(), BTreeSet::new());

    if !need_root("the mount half of a_wrong_diff_id_fails_unpack_and_mount_leaving_nothing") {
        return;
    }
    let (_, stderr) = root.fails(&["mount", &name]);
    let line = assert_one_error_line(&stderr);
    assert!(
        line.contains(&layer),
        "the error does not name layer {layer}: {line}"
    );
    assert_snapshots_complete(&root);
    let manifest: Value = serde_json::from_slice(
        &fs::read(root.blob_path(root.entries_named(&name)[0]["digest"].as_str().unwrap()))
            .unwrap(),
    )
    .unwrap();
    let config: Value = serde_json::from_slice(
        &fs::read(root.blob_path(manifest["config"]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let bad_chain = chain_ids(&diff_ids_of(&config))[2].clone();
    assert!(
        !snapshot_names(&root).contains(hex(&bad_chain)),
        "a snapshot of the mismatching layer was kept"
    );
    let mounts: Vec<PathBuf> = fs::read_dir(root.path.join("mounts"))
        .map(|e| e.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(mounts.is_empty(), "left in mounts/: {mounts:?}");
    root.assert_fsck_clean();
}

/// A stored layer blob with one byte flipped: unpack fails (the gzip checksum or the diff_id
/// does not match) instead of producing a damaged rootfs, and leaves nothing behind.
#[test]
fn a_corrupt_layer_blob_fails_unpack_leaving_nothing() {
    let test = "corrupt-layer";
    let tb = testbed();
    let root = TestRoot::new(test);
    let scratch = Scratch::new(test);
    let image = tb.plain_ref("busybox:latest");
    let pulled = root.json(&["pull", "--json", &image]);
    let layer = pulled["layers"][0].as_str().unwrap().to_string();
    let path = root.blob_path(&layer);
    let mut bytes = fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    let mut perms = fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    fs::set_permissions(&path, perms).unwrap();
    fs::write(&path, &bytes).unwrap();

    let dir = scratch.join("rootfs");
    let (_, stderr) = root.fails(&["unpack", &image, dir.to_str().unwrap()]);
    let line = assert_one_error_line(&stderr);
    assert!(
        line.contains(&layer),
        "the error does not name layer {layer}: {line}"
    );
    assert!(!dir.exists());
    assert_eq!(scratch.names(), BTreeSet::new());
    // and fsck tells
    let run = root.run(&["fsck"]);
    run.assert_failed();
    assert!(
        run.stdout.contains(hex(&layer)) || run.stderr.contains(hex(&layer)),
        "{run}"
    );
}

// ---------------------------------------------------------------------------------------------
// the comparison itself

/// `support::tree` sees each kind of difference it claims to (so that an empty diff above
/// means something), and ignores mtimes.
#[test]
fn tree_diff_sees_every_kind_of_change() {
    let scratch = Scratch::new("tree-diff");
    let a = scratch.join("a");
    fs::create_dir_all(a.join("d")).unwrap();
    fs::write(a.join("f"), "x").unwrap();
    fs::hard_link(a.join("f"), a.join("h")).unwrap();
    std::os::unix::fs::symlink("f", a.join("l")).unwrap();
    run_tool("mkfifo", &[a.join("p").to_str().unwrap()]);
    run_tool(
        "setfattr",
        &["-n", "user.k", "-v", "v", a.join("f").to_str().unwrap()],
    );
    let original = Tree::read(&a);
    assert_eq!(original.entries.len(), 6, "{:?}", original.entries.keys());
    assert_eq!(
        original.hardlinks,
        BTreeSet::from([vec!["f".to_string(), "h".to_string()]])
    );
    assert_eq!(original.get("f").unwrap().xattrs.len(), 1);

    let mutations: Vec<(&str, &str, Vec<Vec<&str>>)> = vec![
        (
            "mode",
            "mode 0644 vs 0600",
            vec![vec!["chmod", "0600", "f"]],
        ),
        ("content", "sha256", vec![vec!["sh", "-c", "printf y > f"]]),
        ("size", "size", vec![vec!["sh", "-c", "printf yy > f"]]),
        (
            "target",
            "symlink target",
            vec![vec!["ln", "-sfn", "d", "l"]],
        ),
        (
            "xattr",
            "xattrs",
            vec![vec!["setfattr", "-n", "user.k", "-v", "w", "f"]],
        ),
        (
            "hardlink",
            "hardlinks",
            vec![vec!["sh", "-c", "rm h && cp f h"]],
        ),
        ("removed", "only in", vec![vec!["rm", "p"]]),
        (
            "type",
            "type Fifo vs Dir",
            vec![vec!["sh", "-c", "rm p && mkdir p"]],
        ),
        (
            "mtime",
            "",
            vec![vec!["touch", "-d", "2001-01-01", "f", "d", "."]],
        ),
    ];
    let mut mutations = mutations;
    if is_root() {
        mutations.push(("owner", "owner 0:0 vs 1:2", vec![vec!["chown", "1:2", "d"]]));
    }
    for (name, expect, commands) in mutations {
        let b = scratch.join(name);
        run_tool("cp", &["-a", a.to_str().unwrap(), b.to_str().unwrap()]);
        for c in commands {
            let out = std::process::Command::new(c[0])
                .args(&c[1..])
                .current_dir(&b)
                .status()
                .unwrap();
            assert!(out.success(), "{c:?}");
        }
        let d = support::tree::diff(&original, &Tree::read(&b));
        if expect.is_empty() {
            assert!(d.is_empty(), "{name}: mtimes are not compared, got {d:?}");
        } else {
            assert!(
                d.iter().any(|l| l.contains(expect)),
                "{name}: expected a difference with {expect:?}, got {d:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// images written by hand into a store (layer tars from python's tarfile)

/// Writes a PAX tar from a JSON list of members: name, type (dir|file), mode (octal string),
/// uid, gid, data.
const MAKE_TAR: &str = r#"
import io, json, sys, tarfile
out, members = sys.argv[1], json.loads(sys.argv[2])
with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:
    for m in members:
        ti = tarfile.TarInfo(m["name"])
        ti.mode = int(m.get("mode", "644"), 8)
        ti.uid, ti.gid, ti.mtime = m.get("uid", 0), m.get("gid", 0), 1700000000
        data = m.get("data", "").encode()
        if m["type"] == "dir":
            ti.type = tarfile.DIRTYPE
            t.addfile(ti)
        else:
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
"#;

/// Store an image made of `layers` (each a JSON list of tar members, see [`MAKE_TAR`]) in
/// `root` under the name `name`, written directly as an OCI layout (no registry, no img).
fn store_hand_made_image(root: &TestRoot, scratch: &Scratch, name: &str, layers: &[Value]) {
    let blobs = root.path.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> (String, usize) {
        let digest = format!("sha256:{}", sha256_hex(bytes));
        fs::write(blobs.join(hex(&digest)), bytes).unwrap();
        (digest, bytes.len())
    };
    let mut diff_ids = Vec::new();
    let mut descriptors = Vec::new();
    for (i, members) in layers.iter().enumerate() {
        let tar = scratch.join(&format!("layer{i}.tar"));
        let tar_str = tar.to_str().unwrap();
        run_tool("python3", &["-c", MAKE_TAR, tar_str, &members.to_string()]);
        diff_ids.push(format!("sha256:{}", sha256_hex(&fs::read(&tar).unwrap())));
        run_tool("gzip", &["-n", "-f", tar_str]);
        let (digest, size) = put(&fs::read(format!("{tar_str}.gz")).unwrap());
        descriptors.push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": digest,
            "size": size,
        }));
    }
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let (config_digest, config_size) = put(&serde_json::to_vec(&config).unwrap());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": descriptors,
    });
    let (manifest_digest, manifest_size) = put(&serde_json::to_vec(&manifest).unwrap());
    let layout = root.path.join("oci-layout");
    if !layout.exists() {
        fs::write(&layout, r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    }
    let mut index = root.index();
    index["manifests"].as_array_mut().unwrap().push(json!({
        "mediaType": OCI_MANIFEST,
        "digest": manifest_digest,
        "size": manifest_size,
        "annotations": { REF_NAME: name },
    }));
    fs::write(
        root.path.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}

/// A hand-made image stored in a fresh root, unpacked flat into a fresh scratch directory:
/// (root, scratch, name, flattened tree).
fn hand_made(test: &str, layers: &[Value]) -> (TestRoot, Scratch, String, PathBuf) {
    let root = TestRoot::new(test);
    let scratch = Scratch::new(test);
    let name = format!("127.0.0.1:5000/t-{}/hand-made:latest", unique());
    store_hand_made_image(&root, &scratch, &name, layers);
    let flat = scratch.join("flat");
    img_unpack(&root, &name, &flat);
    (root, scratch, name, flat)
}

/// Mount a hand-made image and compare the merged view with its flattened unpack; unmounts
/// whatever the comparison says.
fn assert_hand_made_mount_equals_flat(root: &TestRoot, name: &str, flat: &Path, what: &str) {
    let (id, merged) = mount(root, name);
    let _guard = MountGuard(vec![merged.clone()]);
    let result = std::panic::catch_unwind(|| assert_merged_equals_flattened(&merged, flat, what));
    root.ok(&["umount", &id]);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// Layers that add to (or white out in) a directory of a lower layer without a tar entry for
/// the directory itself (common in layers not written by docker: the directory is implied).
fn implicit_parent_layers() -> Vec<Value> {
    vec![
        json!([
            {"name": "private", "type": "dir", "mode": "700", "uid": 1000, "gid": 1000},
            {"name": "private/a", "type": "file", "data": "a"},
            {"name": "shared", "type": "dir", "mode": "2775", "uid": 0, "gid": 1000},
            {"name": "shared/x", "type": "file", "data": "x"},
        ]),
        json!([
            {"name": "private/b", "type": "file", "data": "b"},
            {"name": "shared/.wh.x", "type": "file"},
        ]),
    ]
}

/// An implied directory keeps the owner and mode a lower layer gave it.
#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn implicit_parent_dirs_keep_their_lower_metadata_flattened() {
    let test = "implicit-parents-flat";
    if !need_root(test) {
        return;
    }
    let (_root, _scratch, _name, flat) = hand_made(test, &implicit_parent_layers());
    let tree = Tree::read(&flat);
    let private = tree.get("private").unwrap();
    assert_eq!(
        (private.mode, private.uid, private.gid),
        (0o700, 1000, 1000)
    );
    let shared = tree.get("shared").unwrap();
    assert_eq!((shared.mode, shared.uid, shared.gid), (0o2775, 0, 1000));
    assert!(tree.get("private/a").is_some() && tree.get("private/b").is_some());
    assert!(tree.get("shared/x").is_none());
}

/// The same in a mount: overlayfs shows the topmost layer's copy of a directory, so the
/// snapshot of the second layer must not hold a default (root 0755) one.
#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn implicit_parent_dirs_keep_their_lower_metadata_mounted() {
    let test = "implicit-parents-mount";
    if !need_root(test) {
        return;
    }
    let (root, _scratch, name, flat) = hand_made(test, &implicit_parent_layers());
    assert_hand_made_mount_equals_flat(&root, &name, &flat, "implicit parents, mounted vs flat");
}

/// image-spec: "Files that are present in the same layer as a whiteout file can only be
/// hidden by whiteout files in subsequent layers"; an opaque marker likewise spares its own
/// layer's entries, wherever it comes in the tar.
fn same_layer_whiteout_layers() -> Vec<Value> {
    vec![
        json!([
            {"name": "x", "type": "file", "data": "old"},
            {"name": "d", "type": "dir", "mode": "755"},
            {"name": "d/old", "type": "file", "data": "o"},
        ]),
        json!([
            {"name": "x", "type": "file", "data": "new"},
            {"name": ".wh.x", "type": "file"},
            {"name": "d", "type": "dir", "mode": "755"},
            {"name": "d/new", "type": "file", "data": "n"},
            {"name": "d/.wh..wh..opq", "type": "file"},
        ]),
    ]
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn a_whiteout_spares_its_own_layer_flattened() {
    let test = "same-layer-whiteout-flat";
    if !need_root(test) {
        return;
    }
    let (_root, _scratch, _name, flat) = hand_made(test, &same_layer_whiteout_layers());
    assert_eq!(fs::read_to_string(flat.join("x")).unwrap(), "new");
    assert!(flat.join("d/new").is_file());
    assert!(!flat.join("d/old").exists());
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn a_whiteout_spares_its_own_layer_mounted() {
    let test = "same-layer-whiteout-mount";
    if !need_root(test) {
        return;
    }
    let (root, _scratch, name, flat) = hand_made(test, &same_layer_whiteout_layers());
    assert_hand_made_mount_equals_flat(&root, &name, &flat, "same-layer whiteout, mounted vs flat");
}
