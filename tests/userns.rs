//! `img run --userns=remap`: the container's root is an unprivileged id of img-remap's
//! subordinate range on the host (the test bed adds the account and its range). Checked from
//! the host (/proc, stat of the writable layer, /proc/mounts) and by trying what root could do
//! and the remapped root must not: read a root-only host file and write a root-owned host
//! directory bound into the container — each first shown to work without the namespace.

mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::{TestRoot, assert_one_error_line, testbed, try_tool, unique};

/// img-remap's first subordinate uid and gid, as /etc/subuid and /etc/subgid give them.
fn remap_base() -> (u32, u32) {
    let first = |file: &str| -> u32 {
        fs::read_to_string(file)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("img-remap:"))
            .and_then(|rest| rest.split(':').next()?.parse().ok())
            .unwrap_or_else(|| {
                panic!("{file} has no range for img-remap (tools/testbed up adds it)")
            })
    };
    (first("/etc/subuid"), first("/etc/subgid"))
}

/// A host directory holding a root-only file, for the container to try.
fn secret_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("img-userns-secret-{}", unique()));
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let key = dir.join("key");
    fs::write(&key, "root only\n").unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    dir
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, idmapped mounts, cgroups): run as root, as tools/test does"
)]
fn a_remapped_containers_root_is_an_unprivileged_id_on_the_host() {
    let tb = testbed();
    let root = TestRoot::new("userns-remap");
    let busybox = tb.plain_ref("busybox:latest");
    let (uid, gid) = remap_base();
    let secret = secret_dir();
    let bind = format!("{}:/s", secret.display());

    // the control: without the namespace, the container's root reads and writes the bind
    let plain = root.ok(&[
        "run",
        "--rm",
        "-v",
        &bind,
        &busybox,
        "sh",
        "-c",
        "cat /s/key && touch /s/by-root && echo wrote",
    ]);
    assert_eq!(plain, "root only\nwrote\n");
    fs::remove_file(secret.join("by-root")).unwrap();

    // remapped: root inside (the image's owners as the image gave them, its own files
    // writable), nobody outside
    let inside = root.run(&[
        "run",
        "--rm",
        "--userns=remap",
        "-v",
        &bind,
        &busybox,
        "sh",
        "-c",
        "id -u; stat -c %u:%g /bin/busybox /etc; head -n1 /proc/self/uid_map; \
         touch /etc/new && echo etc-writable; echo 1.2.3.4 x >> /etc/hosts && echo hosts-writable; \
         cat /s/key || echo secret-refused; touch /s/by-container || echo bind-refused",
    ]);
    inside.assert_ok();
    let lines: Vec<&str> = inside.stdout.lines().collect();
    assert_eq!(lines[0], "0", "{inside}");
    assert_eq!(&lines[1..3], ["0:0", "0:0"], "{inside}");
    let map: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(map, ["0", &uid.to_string(), "65536"], "{inside}");
    assert_eq!(
        &lines[4..],
        [
            "etc-writable",
            "hosts-writable",
            "secret-refused",
            "bind-refused"
        ],
        "{inside}"
    );
    assert!(inside.stderr.contains("Permission denied"), "{inside}");
    assert!(!secret.join("by-container").exists());

    // detached: its process and what it writes are the range's on the host; its mounts go
    // with it
    let run = root.run(&[
        "run",
        "-d",
        "--userns=remap",
        &busybox,
        "sh",
        "-c",
        "touch /made; echo ready; exec sleep 600",
    ]);
    run.assert_ok();
    let id = run.stdout.trim().to_string();
    let dir = root.path.join("containers").join(&id);
    wait_until("the container to say it is ready", || {
        fs::read_to_string(dir.join("log")).is_ok_and(|l| l.contains("ready"))
    });
    let state: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("state.json")).unwrap()).unwrap();
    let pid = state["pid"].as_u64().expect("a pid");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let ids = |key: &str| -> Vec<String> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(ids("Uid:"), vec![uid.to_string(); 4], "{status}");
    assert_eq!(ids("Gid:"), vec![gid.to_string(); 4], "{status}");
    let made = fs::metadata(dir.join("upper/made")).unwrap();
    assert_eq!((made.uid(), made.gid()), (uid, gid));
    let mounted = |dir: &Path| {
        fs::read_to_string("/proc/mounts")
            .unwrap()
            .lines()
            .filter(|l| l.contains(dir.to_str().unwrap()))
            .count()
    };
    assert!(mounted(&dir) >= 2, "the overlay and its idmapped layers");
    root.ok(&["stop", "-t", "1", &id]);
    assert_eq!(mounted(&dir), 0, "mounts left after stop");
    root.ok(&["rm", &id]);
    assert!(!dir.exists());
    fs::remove_dir_all(&secret).unwrap();

    // --privileged gives what a user namespace takes away: refused, as docker does
    let (code, err) = root.fails(&[
        "run",
        "--rm",
        "--userns=remap",
        "--privileged",
        &busybox,
        "true",
    ]);
    assert_eq!(code, 125);
    assert!(
        assert_one_error_line(&err).contains("--privileged cannot be combined"),
        "{err}"
    );
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (runc, chown into the range): run as root, as tools/test does"
)]
fn a_remapped_bundle_carries_the_namespace_and_runc_runs_it() {
    let tb = testbed();
    let root = TestRoot::new("userns-bundle");
    let busybox = tb.plain_ref("busybox:latest");
    let (uid, gid) = remap_base();
    // Outside the store root (0710): runc mounts the rootfs from inside the namespace, as
    // the range's root, which must reach it.
    let bundle = std::env::temp_dir().join(format!("img-userns-bundle-{}", unique()));
    root.ok(&[
        "run",
        "--userns=remap",
        "--bundle",
        bundle.to_str().unwrap(),
        &busybox,
        "sh",
        "-c",
        "id -u; stat -c %u /bin/busybox; head -n1 /proc/self/uid_map; touch /x && echo wrote",
    ]);
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert!(
        config["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "user"),
        "{config}"
    );
    assert_eq!(config["linux"]["uidMappings"][0]["hostID"], uid);
    assert_eq!(config["linux"]["gidMappings"][0]["hostID"], gid);
    // the bundle's rootfs is its own copy, moved into the range
    let busybox_bin = fs::metadata(bundle.join("rootfs/bin/busybox")).unwrap();
    assert_eq!((busybox_bin.uid(), busybox_bin.gid()), (uid, gid));
    let id = format!("img-userns-{}", unique());
    let runc = try_tool(
        "runc",
        &[
            "--root",
            root.path.join("runc").to_str().unwrap(),
            "run",
            "-b",
            bundle.to_str().unwrap(),
            &id,
        ],
    );
    runc.assert_ok();
    let lines: Vec<&str> = runc.stdout.lines().collect();
    assert_eq!(lines[..2], ["0", "0"], "{runc}");
    let map: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(map, ["0", &uid.to_string(), "65536"], "{runc}");
    assert_eq!(lines[3], "wrote", "{runc}");
    fs::remove_dir_all(&bundle).unwrap();
}
