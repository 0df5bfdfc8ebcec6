//! Crafted layer tars, applied to real directories: nothing may land outside the target, and
//! whiteouts, hardlinks and metadata come out as the image spec says.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use img_unpack::{Error, Mode, apply_tar};

/// One raw tar member: the name and link name go in as given (no sanitizing).
struct Member<'a> {
    name: &'a str,
    kind: u8,
    data: &'a [u8],
    link: &'a str,
    mode: u32,
    uid: u64,
    declared_size: Option<u64>,
}

fn member<'a>(name: &'a str, kind: u8) -> Member<'a> {
    Member {
        name,
        kind,
        data: b"",
        link: "",
        mode: if kind == b'5' { 0o755 } else { 0o644 },
        uid: 0,
        declared_size: None,
    }
}

fn file<'a>(name: &'a str, data: &'a [u8]) -> Member<'a> {
    Member {
        data,
        ..member(name, b'0')
    }
}

fn link<'a>(name: &'a str, kind: u8, target: &'a str) -> Member<'a> {
    Member {
        link: target,
        ..member(name, kind)
    }
}

fn tar(members: &[Member<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in members {
        let mut h = tar::Header::new_ustar();
        {
            let old = h.as_old_mut();
            old.name[..m.name.len()].copy_from_slice(m.name.as_bytes());
            old.linkname[..m.link.len()].copy_from_slice(m.link.as_bytes());
        }
        h.set_mode(m.mode);
        h.set_uid(m.uid);
        h.set_gid(m.uid);
        h.set_mtime(1_700_000_000);
        h.set_size(m.declared_size.unwrap_or(m.data.len() as u64));
        h.set_entry_type(tar::EntryType::new(m.kind));
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(m.data);
        if m.declared_size.is_none() {
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
    }
    if members.iter().all(|m| m.declared_size.is_none()) {
        out.resize(out.len() + 1024, 0);
    }
    out
}

/// A fresh `sandbox/target` pair: escapes would land in `sandbox`.
fn sandbox(name: &str) -> (PathBuf, PathBuf) {
    let sandbox = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("unpack-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&sandbox);
    let target = sandbox.join("target");
    std::fs::create_dir_all(&target).unwrap();
    (sandbox, target)
}

fn root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn only_target_in(sandbox: &Path) {
    let names: Vec<_> = std::fs::read_dir(sandbox)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("target")],
        "something escaped into {sandbox:?}"
    );
}

#[test]
fn dotdot_is_refused() {
    let (sandbox, target) = sandbox("dotdot");
    let err = apply_tar(
        &tar(&[file("../escaped", b"x")])[..],
        &target,
        Mode::Flatten,
    )
    .unwrap_err();
    assert!(matches!(err, Error::Escape { .. }), "{err}");
    assert!(err.to_string().contains("../escaped"), "{err}");
    let err = apply_tar(
        &tar(&[file("a/../../escaped", b"x")])[..],
        &target,
        Mode::Flatten,
    )
    .unwrap_err();
    assert!(matches!(err, Error::Escape { .. }), "{err}");
    only_target_in(&sandbox);
}

#[test]
fn absolute_names_land_inside() {
    let (sandbox, target) = sandbox("absolute");
    let name = format!("/tmp/img-escaped-absolute-{}", std::process::id());
    apply_tar(&tar(&[file(&name, b"x")])[..], &target, Mode::Flatten).unwrap();
    assert!(target.join(name.trim_start_matches('/')).is_file());
    assert!(!Path::new(&name).exists());
    only_target_in(&sandbox);
}

#[test]
fn symlinks_resolve_inside_the_target() {
    let (sandbox, target) = sandbox("symlink");
    let outside = sandbox.display().to_string();
    let layer1 = tar(&[
        link("abs", b'2', &outside),
        link("rel", b'2', "../../../../../../../.."),
    ]);
    apply_tar(&layer1[..], &target, Mode::Flatten).unwrap();
    // A later layer writes through the planted links: it must stay inside.
    let layer2 = tar(&[file("abs/escaped-abs", b"x"), file("rel/escaped-rel", b"y")]);
    apply_tar(&layer2[..], &target, Mode::Flatten).unwrap();
    assert!(
        target
            .join(outside.trim_start_matches('/'))
            .join("escaped-abs")
            .is_file()
    );
    assert!(target.join("escaped-rel").is_file());
    only_target_in(&sandbox);
    // The links themselves are kept as the layer said.
    assert_eq!(
        std::fs::read_link(target.join("abs")).unwrap(),
        PathBuf::from(&outside)
    );
}

#[test]
fn hardlinks_to_outside_paths_are_refused() {
    let (sandbox, target) = sandbox("hardlink");
    let err = apply_tar(
        &tar(&[link("passwd", b'1', "/etc/passwd")])[..],
        &target,
        Mode::Flatten,
    )
    .unwrap_err();
    assert!(matches!(err, Error::HardlinkTarget { .. }), "{err}");
    let err = apply_tar(
        &tar(&[link("shadow", b'1', "../../etc/shadow")])[..],
        &target,
        Mode::Flatten,
    )
    .unwrap_err();
    assert!(matches!(err, Error::Escape { .. }), "{err}");
    assert!(!target.join("passwd").exists() && !target.join("shadow").exists());
    only_target_in(&sandbox);
}

#[test]
fn symlink_loops_end_in_an_error() {
    let (sandbox, target) = sandbox("loop");
    let layer = tar(&[
        link("a", b'2', "b"),
        link("b", b'2', "a"),
        file("a/x", b"x"),
    ]);
    let err = apply_tar(&layer[..], &target, Mode::Flatten).unwrap_err();
    assert!(err.to_string().contains("a/x"), "{err}");
    only_target_in(&sandbox);
}

#[test]
fn a_huge_declared_size_ends_in_an_error() {
    let (sandbox, target) = sandbox("huge");
    let layer = tar(&[Member {
        declared_size: Some(1 << 40),
        data: &[7u8; 4096],
        ..file("big", b"")
    }]);
    let err = apply_tar(&layer[..], &target, Mode::Flatten).unwrap_err();
    assert!(matches!(err, Error::Read(_)), "{err}");
    assert!(err.to_string().contains("big"), "{err}");
    only_target_in(&sandbox);
}

#[test]
fn whiteouts_and_opaque_dirs_flatten() {
    let (_, target) = sandbox("whiteouts");
    let lower = tar(&[
        member("keep/", b'5'),
        file("keep/a", b"a"),
        file("keep/gone", b"g"),
        member("opq/", b'5'),
        file("opq/old", b"o"),
        member("tree/", b'5'),
        file("tree/deep", b"d"),
    ]);
    apply_tar(&lower[..], &target, Mode::Flatten).unwrap();
    let upper = tar(&[
        file("keep/.wh.gone", b""),
        file("opq/new", b"n"),
        file("opq/.wh..wh..opq", b""),
        file(".wh.tree", b""),
    ]);
    apply_tar(&upper[..], &target, Mode::Flatten).unwrap();
    assert!(target.join("keep/a").is_file());
    assert!(!target.join("keep/gone").exists());
    assert!(!target.join("keep/.wh.gone").exists());
    assert!(
        !target.join("opq/old").exists(),
        "opaque removes what lower layers put there"
    );
    assert_eq!(
        std::fs::read(target.join("opq/new")).unwrap(),
        b"n",
        "but not this layer's own"
    );
    assert!(!target.join("tree").exists());
    let err = apply_tar(&tar(&[file("x/.wh..", b"")])[..], &target, Mode::Flatten).unwrap_err();
    assert!(matches!(err, Error::Escape { .. }), "{err}");
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (overlay whiteouts are character devices)"
)]
fn overlay_form_of_whiteouts() {
    let (_, target) = sandbox("overlay");
    let layer = tar(&[
        member("d/", b'5'),
        file("d/.wh..wh..opq", b""),
        file(".wh.gone", b""),
    ]);
    apply_tar(&layer[..], &target, Mode::Overlay).unwrap();
    let meta = std::fs::symlink_metadata(target.join("gone")).unwrap();
    assert!(meta.file_type().is_char_device());
    assert_eq!(meta.rdev(), 0);
    let opaque = std::process::Command::new("getfattr")
        .args(["--only-values", "-n", "trusted.overlay.opaque"])
        .arg(target.join("d"))
        .output();
    if let Ok(out) = opaque
        && out.status.success()
    {
        assert_eq!(out.stdout, b"y");
    }
}

#[test]
fn metadata_and_hardlinks_survive() {
    let (_, target) = sandbox("meta");
    let layer = tar(&[
        Member {
            mode: 0o4755,
            uid: 1000,
            ..file("suid", b"#!/bin/sh\n")
        },
        file("orig", b"same inode"),
        link("copy", b'1', "orig"),
        Member {
            mode: 0o1777,
            ..member("sticky/", b'5')
        },
        member("fifo", b'6'),
    ]);
    apply_tar(&layer[..], &target, Mode::Flatten).unwrap();
    let suid = std::fs::metadata(target.join("suid")).unwrap();
    assert_eq!(suid.permissions().mode() & 0o7777, 0o4755);
    if root() {
        assert_eq!((suid.uid(), suid.gid()), (1000, 1000));
    }
    let (a, b) = (
        std::fs::metadata(target.join("orig")).unwrap(),
        std::fs::metadata(target.join("copy")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino());
    assert_eq!(a.mtime(), 1_700_000_000);
    let sticky = std::fs::metadata(target.join("sticky")).unwrap();
    assert_eq!(sticky.permissions().mode() & 0o7777, 0o1777);
    assert_eq!(
        sticky.mtime(),
        1_700_000_000,
        "directory mtimes are set last"
    );
    assert!(
        std::fs::symlink_metadata(target.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
}

#[test]
fn a_file_replaces_a_directory_and_back() {
    let (_, target) = sandbox("replace");
    apply_tar(
        &tar(&[member("x/", b'5'), file("x/inner", b"i"), file("y", b"y")])[..],
        &target,
        Mode::Flatten,
    )
    .unwrap();
    apply_tar(
        &tar(&[
            file("x", b"now a file"),
            member("y/", b'5'),
            file("y/z", b"z"),
        ])[..],
        &target,
        Mode::Flatten,
    )
    .unwrap();
    assert_eq!(std::fs::read(target.join("x")).unwrap(), b"now a file");
    assert!(target.join("y/z").is_file());
}
