//! The mount sequence on a real temporary root, with the privileged calls recorded: where each
//! mount lands, and that an image's symlinks never take it outside the root.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde_json::json;

use super::{Root, prepare};
use crate::syscall::{Call, NodeKind, Recorder};

/// A fresh directory holding `root/` (the container's) and `host/` (stands for the host).
struct Dirs {
    base: PathBuf,
}

impl Dirs {
    fn new(name: &str) -> Dirs {
        let base = std::env::temp_dir().join(format!(
            "img-rootfs-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        fs::create_dir_all(base.join("root")).unwrap();
        fs::create_dir_all(base.join("host")).unwrap();
        Dirs { base }
    }
    fn root(&self) -> PathBuf {
        self.base.join("root")
    }
    fn host(&self) -> PathBuf {
        self.base.join("host")
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.base);
    }
}

fn spec(hosts: &Path, volume: &Path) -> Spec {
    serde_json::from_value(json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs"},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/etc/hosts", "type": "bind", "source": hosts,
             "options": ["rbind", "rprivate"]},
            {"destination": "/data", "type": "bind", "source": volume,
             "options": ["rbind", "ro"]},
        ],
        "linux": {
            "maskedPaths": ["/proc/kcore", "/proc/acpi", "/proc/absent"],
            "readonlyPaths": ["/proc/sys"],
            "devices": [{"path": "/dev/myzero", "type": "c", "major": 1, "minor": 5,
                         "fileMode": 0o640}],
        },
    }))
    .unwrap()
}

fn host_files(d: &Dirs) -> (PathBuf, PathBuf) {
    let hosts = d.host().join("hosts");
    fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    let volume = d.host().join("volume");
    fs::create_dir_all(&volume).unwrap();
    (hosts, volume)
}

fn shown(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn mounts_and_nodes_land_inside_the_root() {
    let d = Dirs::new("inside");
    let (hosts, volume) = host_files(&d);
    let root = d.root();
    // The image's /etc/hosts is an absolute symlink: it resolves inside the root.
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(root.join("var/victim")).unwrap();
    fs::write(root.join("var/victim/hosts"), "").unwrap();
    symlink("/var/victim/hosts", root.join("etc/hosts")).unwrap();
    // What the masks and read-only paths find (no real procfs is mounted here).
    fs::create_dir_all(root.join("proc/acpi")).unwrap();
    fs::create_dir_all(root.join("proc/sys")).unwrap();
    fs::write(root.join("proc/kcore"), "").unwrap();

    let rec = Recorder::default();
    let r = Root::open(&root).unwrap();
    prepare(&rec, &r, &spec(&hosts, &volume), false).unwrap();
    let mounts = rec.mounts();
    let at = |p: &str| shown(&root.join(p));
    let targets: Vec<&str> = mounts.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        targets,
        [
            at("proc"),
            at("dev"),
            at("var/victim/hosts"),
            at("data"),
            at("data"),
            at("proc/kcore"),
            at("proc/acpi"),
            at("proc/sys"),
            at("proc/sys"),
        ]
    );
    assert!(mounts[0].1.starts_with("proc") && mounts[0].1.contains("NOSUID"));
    assert!(
        mounts[2]
            .1
            .starts_with(&format!("bind {}", hosts.display()))
    );
    assert!(mounts[4].1.starts_with("remount") && mounts[4].1.contains("RDONLY"));
    assert!(mounts[5].1.starts_with("bind /dev/null"), "{:?}", mounts[5]);
    assert!(mounts[6].1.starts_with("tmpfs") && mounts[6].1.contains("RDONLY"));
    assert!(mounts[8].1.starts_with("remount") && mounts[8].1.contains("RDONLY"));
    assert!(
        root.join("data").is_dir(),
        "a missing mount point is made inside"
    );

    let calls = rec.calls.borrow();
    let nodes: Vec<(String, NodeKind, u32, u32)> = calls
        .iter()
        .filter_map(|c| match c {
            Call::Mknod(p, k, a, b) => Some((p.clone(), *k, *a, *b)),
            _ => None,
        })
        .collect();
    assert_eq!(nodes.len(), 7);
    assert!(nodes.contains(&(at("dev/null"), NodeKind::Char, 1, 3)));
    assert!(nodes.contains(&(at("dev/myzero"), NodeKind::Char, 1, 5)));
    assert_eq!(
        fs::read_link(root.join("dev/ptmx")).unwrap(),
        Path::new("pts/ptmx")
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(root.join("dev/myzero"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o640);
}

/// An image whose `/dev` (or `/proc`) is a symlink to a host directory: before, device nodes
/// were made through the host path. Now the container does not start, and the host directory
/// is untouched.
#[test]
fn a_symlinked_dev_or_proc_is_refused_and_the_host_untouched() {
    for dir in ["dev", "proc"] {
        let d = Dirs::new(dir);
        let (hosts, volume) = host_files(&d);
        let victim = d.host().join("victim");
        fs::create_dir_all(&victim).unwrap();
        fs::write(victim.join("canary"), "x").unwrap();
        let root = d.root();
        // The same path exists inside, so resolution in the root finds a real directory.
        fs::create_dir_all(root.join(victim.strip_prefix("/").unwrap())).unwrap();
        symlink(&victim, root.join(dir)).unwrap();

        let rec = Recorder::default();
        let r = Root::open(&root).unwrap();
        let err = prepare(&rec, &r, &spec(&hosts, &volume), false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("/{dir}")) && err.contains("symlink"),
            "{err}"
        );
        let entries: Vec<_> = fs::read_dir(&victim).unwrap().flatten().collect();
        assert_eq!(entries.len(), 1, "only the canary: {entries:?}");
        assert!(
            rec.calls
                .borrow()
                .iter()
                .all(|c| !matches!(c, Call::Mknod(..))),
            "no node is made"
        );
        for (target, _) in rec.mounts() {
            assert!(
                target.starts_with(&shown(&root)),
                "{target} is outside the root"
            );
        }
    }
}

/// A symlink on the way to a bind mount's destination is followed inside the root, even when
/// it climbs with `..` or points at an absolute host path.
#[test]
fn bind_destinations_resolve_inside_the_root() {
    let d = Dirs::new("bind");
    let (hosts, volume) = host_files(&d);
    let root = d.root();
    fs::create_dir_all(root.join("etc")).unwrap();
    symlink("../../../../../../tmp", root.join("data")).unwrap();
    symlink(d.host().join("hosts"), root.join("etc/hosts")).unwrap();
    fs::create_dir_all(root.join("proc")).unwrap();

    let rec = Recorder::default();
    let r = Root::open(&root).unwrap();
    prepare(&rec, &r, &spec(&hosts, &volume), false).unwrap();
    for (target, _) in rec.mounts() {
        assert!(
            target.starts_with(&shown(&root)),
            "{target} is outside the root"
        );
    }
    assert!(
        root.join("tmp").is_dir(),
        "`data -> ../../tmp` lands on the root's /tmp"
    );
    assert!(
        root.join(d.host().join("hosts").strip_prefix("/").unwrap())
            .is_file(),
        "the host path named by the symlink is made inside the root"
    );
    assert_eq!(fs::read_to_string(&hosts).unwrap(), "127.0.0.1 localhost\n");
}
