//! A mount is exactly the image: layers whose paths go through what lower layers left
//! (a directory reached through a lower symlink, a chain of them, an absolute one, an opaque
//! whiteout under one, a whiteout of a symlink, a hardlink to a lower file, a directory
//! replaced by a file and back) are written as tars by the `tar` crate, stored as an image
//! with img-store, then `img unpack` and `img mount` of it must show the same tree (read with
//! lstat/readlink/getxattr/sha256sum, hardlink groups included).

mod support;

use std::path::{Path, PathBuf};

use support::tree::{Tree, assert_same};
use support::{TestRoot, try_tool};

/// One member of a crafted layer.
enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

fn layer(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match e {
            E::Dir(name) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, name, &[][..]).unwrap();
            }
            E::File(name, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o640);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, name, *data).unwrap();
            }
            E::Symlink(name, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, name, target).unwrap();
            }
            E::Hardlink(name, target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o640);
                h.set_size(0);
                b.append_link(&mut h, name, target).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// Store uncompressed `layers` as the image `name` (OCI manifest; diff_id = layer digest).
fn store_image(root: &Path, name: &str, layers: &[Vec<u8>]) {
    let store = img_store::Store::open(root).unwrap();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for l in layers {
        let d = img_store::digest::sha256(l);
        store.put_blob(&d, l).unwrap();
        descs.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": d.to_string(), "size": l.len(),
        }));
        diff_ids.push(d.to_string());
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let cd = img_store::digest::sha256(&config);
    store.put_blob(&cd, &config).unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": cd.to_string(), "size": config.len()},
        "layers": descs,
    }))
    .unwrap();
    let md = img_store::digest::sha256(&manifest);
    store.put_blob(&md, &manifest).unwrap();
    let desc = img_store::Descriptor::new(
        "application/vnd.oci.image.manifest.v1+json".into(),
        manifest.len() as u64,
        md,
    );
    store.set_ref(name, desc).unwrap();
}

/// Unmounts what it holds, even when the test fails.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = try_tool("umount", &["-l", self.0.to_str().unwrap()]);
    }
}

fn assert_mount_equals_unpack(test: &str, layers: &[Vec<u8>], check: impl Fn(&Path)) {
    let root = TestRoot::new(test);
    let name = "localhost/crafted/view:1";
    store_image(&root.path, name, layers);
    let flat = root.path.join("flat");
    root.ok(&["unpack", name, flat.to_str().unwrap()]);
    check(&flat);
    let merged = PathBuf::from(root.ok(&["mount", name]).trim());
    let _guard = Mounted(merged.clone());
    check(&merged);
    assert_same(
        &Tree::read(&flat).without_root(),
        &Tree::read(&merged).without_root(),
        &format!("{test}: the mount against the unpack"),
    );
    root.ok(&["umount", merged.to_str().unwrap()]);
    root.assert_fsck_clean();
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn through_a_lower_symlinked_directory() {
    let layers = [
        layer(&[
            E::Dir("data/"),
            E::Dir("data/realdir/"),
            E::File("data/realdir/old", b"old"),
            E::Symlink("data/dirlink", "realdir"),
        ]),
        layer(&[E::File("data/dirlink/through-link", b"new")]),
    ];
    assert_mount_equals_unpack("view-symlinked-dir", &layers, |root| {
        assert_eq!(
            std::fs::read(root.join("data/realdir/through-link")).unwrap(),
            b"new"
        );
        assert!(root.join("data/dirlink").is_symlink());
    });
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn through_a_chain_and_an_absolute_symlink() {
    let layers = [
        layer(&[
            E::Dir("a/"),
            E::Dir("a/real/"),
            E::Symlink("a/l1", "l2"),
            E::Symlink("a/l2", "real"),
            E::Dir("opt/"),
            E::Dir("opt/x/"),
            E::Symlink("abs", "/opt/x"),
            E::Symlink("nowhere-link", "nowhere/deep"),
        ]),
        layer(&[
            E::File("a/l1/f", b"chain"),
            E::File("abs/g", b"absolute"),
            E::File("nowhere-link/h", b"dangling"),
        ]),
    ];
    assert_mount_equals_unpack("view-symlink-chain", &layers, |root| {
        assert_eq!(std::fs::read(root.join("a/real/f")).unwrap(), b"chain");
        assert_eq!(std::fs::read(root.join("opt/x/g")).unwrap(), b"absolute");
        assert_eq!(
            std::fs::read(root.join("nowhere/deep/h")).unwrap(),
            b"dangling"
        );
    });
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn whiteouts_through_and_of_symlinks() {
    let layers = [
        layer(&[
            E::Dir("d/"),
            E::Dir("d/real/"),
            E::File("d/real/a", b"a"),
            E::File("d/real/b", b"b"),
            E::Symlink("d/link", "real"),
            E::Dir("t/"),
            E::Symlink("s", "t"),
        ]),
        layer(&[
            E::File("d/link/.wh..wh..opq", b""),
            E::File("d/link/c", b"c"),
            E::File(".wh.s", b""),
        ]),
    ];
    assert_mount_equals_unpack("view-whiteouts", &layers, |root| {
        assert!(!root.join("d/real/a").exists());
        assert!(root.join("d/real/c").is_file());
        assert!(root.join("s").symlink_metadata().is_err());
        assert!(root.join("t").is_dir());
    });
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn a_hardlink_to_a_lower_file_and_a_directory_replaced_and_back() {
    let layers = [
        layer(&[
            E::Dir("bin/"),
            E::File("bin/tool", b"#!/bin/sh\necho tool\n"),
            E::Dir("x/"),
            E::Dir("x/y/"),
            E::File("x/y/f", b"f"),
        ]),
        layer(&[
            E::Hardlink("bin/tool2", "bin/tool"),
            E::File("x", b"a file now"),
        ]),
        layer(&[E::Dir("x/"), E::File("x/z", b"a directory again")]),
    ];
    assert_mount_equals_unpack("view-hardlink", &layers, |root| {
        use std::os::unix::fs::MetadataExt;
        let (a, b) = (
            root.join("bin/tool").metadata().unwrap(),
            root.join("bin/tool2").metadata().unwrap(),
        );
        assert_eq!((a.ino(), a.nlink()), (b.ino(), 2), "one file, two names");
        assert!(root.join("x/z").is_file());
        assert!(!root.join("x/y").exists());
    });
}

/// Every image of the test bed, hostile ones included: where `img unpack` succeeds, the mount
/// shows the same tree; where it refuses the image, preparing the snapshots refuses it too.
#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn every_fixture_mounts_as_it_unpacks() {
    let tb = support::testbed();
    let hostile = support::hostile_json(tb);
    let mut refs: Vec<String> = tb.fixtures().iter().map(|f| tb.plain_ref(f)).collect();
    for group in ["images", "benign"] {
        for image in hostile[group].as_array().into_iter().flatten() {
            if let Some(r) = image["ref"].as_str() {
                refs.push(r.to_string());
            }
        }
    }
    let root = TestRoot::new("view-fixtures");
    let (mut compared, mut refused) = (0, 0);
    for (i, image) in refs.iter().enumerate() {
        root.ok(&["pull", "-q", image]);
        let flat = root.path.join(format!("flat-{i}"));
        let unpacked = root.run(&["unpack", image, flat.to_str().unwrap()]);
        let mounted = root.run(&["mount", image]);
        if unpacked.code != 0 {
            assert!(
                mounted.code != 0,
                "{image}: unpack refused it ({}) but the mount was made",
                unpacked.stderr.trim()
            );
            refused += 1;
            continue;
        }
        assert!(
            mounted.code == 0,
            "{image}: unpacked, but the mount failed: {}",
            mounted.stderr.trim()
        );
        let merged = PathBuf::from(mounted.stdout.trim());
        let _guard = Mounted(merged.clone());
        assert_same(
            &Tree::read(&flat).without_root(),
            &Tree::read(&merged).without_root(),
            &format!("{image}: the mount against the unpack"),
        );
        root.ok(&["umount", merged.to_str().unwrap()]);
        compared += 1;
    }
    assert!(compared >= tb.fixtures().len(), "{compared} compared");
    eprintln!("{compared} images mounted as they unpack; {refused} refused by both");
}
