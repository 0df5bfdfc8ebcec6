//! The layers the builder writes, read back with the tar crate through `img_unpack::open_layer`:
//! order, owners, modes, links, clamped mtimes, whiteouts from an overlayfs upper directory,
//! and the same digest for the same input.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use img_build::{Builder, Compression};
use img_store::Store;

struct Tmp(PathBuf);

impl Tmp {
    fn new(name: &str) -> Tmp {
        let dir = std::env::temp_dir().join(format!("img-build-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Tmp(dir)
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// (name, type, mode, uid, mtime, link target, size) of each entry of the image's last layer.
fn entries(store: &Store, reference: &str) -> Vec<(String, char, u32, u64, u64, String, u64)> {
    let image = store.image(reference).unwrap();
    let layer = image.manifest.layers().last().unwrap().clone();
    let mut reader = img_unpack::open_layer(store, &layer).unwrap();
    let mut out = Vec::new();
    {
        let mut archive = tar::Archive::new(&mut reader);
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            out.push((
                e.path().unwrap().display().to_string(),
                match h.entry_type() {
                    tar::EntryType::Directory => 'd',
                    tar::EntryType::Symlink => 'l',
                    tar::EntryType::Link => 'h',
                    tar::EntryType::Char => 'c',
                    tar::EntryType::Fifo => 'p',
                    _ => 'f',
                },
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.mtime().unwrap(),
                e.link_name()
                    .unwrap()
                    .map(|l| l.display().to_string())
                    .unwrap_or_default(),
                h.size().unwrap(),
            ));
        }
    }
    let (diff_id, _) = reader.finish().unwrap();
    assert_eq!(
        image.diff_ids().unwrap().last().unwrap(),
        &diff_id,
        "the config's diff_id is the uncompressed layer's sha256"
    );
    out
}

fn sample(dir: &Path) {
    fs::create_dir_all(dir.join("b/sub")).unwrap();
    fs::write(dir.join("b/sub/z"), "zz").unwrap();
    fs::write(dir.join("a"), "aaa").unwrap();
    fs::set_permissions(dir.join("a"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::hard_link(dir.join("a"), dir.join("c-link")).unwrap();
    symlink("a", dir.join("s")).unwrap();
}

fn scratch() -> Builder {
    Builder::scratch(&img_registry::Platform::host()).unwrap()
}

#[test]
fn a_directory_becomes_a_sorted_layer_with_modes_links_and_clamped_mtimes() {
    let tmp = Tmp::new("dir");
    let src = tmp.0.join("src");
    sample(&src);
    let store = Store::open(tmp.0.join("store")).unwrap();
    let mut b = scratch();
    b.append_dir(&src).source_date_epoch(Some(1_000_000));
    let written = b.write(&store, "example.com/dir:1").unwrap();
    assert_eq!(
        written.layers[0].descriptor.media_type().to_string(),
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let e = entries(&store, "example.com/dir:1");
    let names: Vec<(&str, char)> = e.iter().map(|e| (e.0.as_str(), e.1)).collect();
    assert_eq!(
        names,
        [
            ("a", 'f'),
            ("b", 'd'),
            ("b/sub", 'd'),
            ("b/sub/z", 'f'),
            ("c-link", 'h'),
            ("s", 'l')
        ]
    );
    assert_eq!(e[0].2, 0o4755, "setuid kept");
    assert_eq!(e[0].6, 3);
    assert_eq!(
        e[4].5, "a",
        "the second name of a file is a hardlink to the first"
    );
    assert_eq!(e[5].5, "a");
    assert!(e.iter().all(|e| e.4 == 1_000_000), "mtimes clamped: {e:?}");
    let config = store.image("example.com/dir:1").unwrap().config;
    assert_eq!(config.created().as_deref(), Some("1970-01-12T13:46:40Z"));
}

#[test]
fn the_same_input_gives_the_same_digests() {
    let tmp = Tmp::new("repro");
    let src = tmp.0.join("src");
    sample(&src);
    let store = Store::open(tmp.0.join("store")).unwrap();
    let mut digests = Vec::new();
    for (i, compression) in [
        Compression::Gzip,
        Compression::Gzip,
        Compression::Zstd,
        Compression::Zstd,
    ]
    .into_iter()
    .enumerate()
    {
        let mut b = scratch();
        b.append_dir(&src)
            .compression(compression)
            .source_date_epoch(Some(1_700_000_000))
            .label("k", "v")
            .label("k2", "v2");
        let w = b.write(&store, &format!("example.com/repro:{i}")).unwrap();
        digests.push((w.manifest.digest().clone(), w.layers[0].diff_id.clone()));
    }
    assert_eq!(digests[0], digests[1]);
    assert_eq!(digests[2], digests[3]);
    assert_ne!(digests[0].0, digests[2].0, "zstd is another blob");
    assert_eq!(digests[0].1, digests[2].1, "of the same tar");
}

#[test]
fn a_tar_is_taken_byte_for_byte() {
    let tmp = Tmp::new("tar");
    let store = Store::open(tmp.0.join("store")).unwrap();
    let mut t = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(2);
    h.set_mode(0o600);
    h.set_cksum();
    t.append_data(&mut h, "x", &b"hi"[..]).unwrap();
    let bytes = t.into_inner().unwrap();
    let mut b = scratch();
    b.append_tar(std::io::Cursor::new(bytes.clone()))
        .compression(Compression::None);
    let w = b.write(&store, "example.com/tar:1").unwrap();
    assert_eq!(w.layers[0].diff_id, img_store::digest::sha256(&bytes));
    assert_eq!(w.layers[0].descriptor.digest(), &w.layers[0].diff_id);
    assert_eq!(
        fs::read(store.blob_path(&w.layers[0].diff_id)).unwrap(),
        bytes
    );
}

#[test]
fn errors_name_what_was_wrong() {
    let tmp = Tmp::new("errors");
    let store = Store::open(tmp.0.join("store")).unwrap();
    let e = Builder::from_image(&store, "nothing:here").unwrap_err();
    assert_eq!(e.to_string(), "no image \"nothing:here\" in the store");
    let mut b = scratch();
    b.append_dir(tmp.0.join("missing"));
    let e = b.write(&store, "example.com/x:1").unwrap_err();
    assert!(e.to_string().contains("missing"), "{e}");
    assert!(store.find_ref("example.com/x:1").unwrap().is_none());
    let e = scratch().write(&store, "Bad Name").unwrap_err();
    assert!(e.to_string().starts_with("reference \"Bad Name\""), "{e}");
    let e = scratch().apply_change("COPY a b").map(drop).unwrap_err();
    assert!(e.to_string().contains("COPY cannot be applied"), "{e}");
    assert!(
        fs::read_dir(tmp.0.join("store/ingest"))
            .unwrap()
            .next()
            .is_none()
    );
}

#[test]
fn a_change_list_as_docker_applies_it() {
    let mut b = scratch();
    b.cmd(["old"]);
    for c in [
        r#"CMD ["redis-server", "--port", "7000"]"#,
        "ENTRYPOINT /entry.sh",
        "ENV A=1 B=\"two words\"",
        "ENV A 3",
        "LABEL version=1.0",
        "EXPOSE 7000 53/udp",
        "USER 1000:1000",
        "WORKDIR /srv",
        "WORKDIR app",
        "VOLUME [\"/data\"]",
    ] {
        b.apply_change(c).unwrap();
    }
    let c = b.config().config().clone().unwrap();
    assert_eq!(c.cmd().clone().unwrap(), ["redis-server", "--port", "7000"]);
    assert_eq!(
        c.entrypoint().clone().unwrap(),
        ["/bin/sh", "-c", "/entry.sh"]
    );
    assert_eq!(c.env().clone().unwrap(), ["A=3", "B=two words"]);
    assert_eq!(c.labels().clone().unwrap()["version"], "1.0");
    assert_eq!(c.exposed_ports().clone().unwrap(), ["53/udp", "7000/tcp"]);
    assert_eq!(c.user().as_deref(), Some("1000:1000"));
    assert_eq!(c.working_dir().as_deref(), Some("/srv/app"));
    assert_eq!(c.volumes().clone().unwrap(), ["/data"]);
    // ENTRYPOINT without a CMD change drops the inherited CMD.
    let mut b = scratch();
    b.cmd(["sh"])
        .apply_change("ENTRYPOINT [\"/bin/true\"]")
        .unwrap();
    assert_eq!(b.config().config().clone().unwrap().cmd(), &None);
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root: whiteouts are 0:0 character devices and trusted.* xattrs"
)]
fn an_overlay_upper_dir_becomes_docker_whiteouts() {
    let tmp = Tmp::new("upper");
    let upper = tmp.0.join("upper");
    fs::create_dir_all(upper.join("etc/opaque")).unwrap();
    fs::write(upper.join("etc/opaque/new"), "n").unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        upper.join("etc/gone"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    for (path, name, value) in [
        ("etc/opaque", "trusted.overlay.opaque", &b"y"[..]),
        ("etc", "trusted.overlay.origin", b"x"),
        ("etc", "user.kept", b"1"),
    ] {
        rustix::fs::setxattr(
            upper.join(path),
            name,
            value,
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
    }
    let store = Store::open(tmp.0.join("store")).unwrap();
    let mut b = scratch();
    b.append_overlay_upper(&upper);
    b.write(&store, "example.com/upper:1").unwrap();
    let e = entries(&store, "example.com/upper:1");
    let names: Vec<(&str, char, u32, u64)> =
        e.iter().map(|e| (e.0.as_str(), e.1, e.2, e.6)).collect();
    assert_eq!(
        names,
        [
            ("etc", 'd', 0o755, 0),
            ("etc/.wh.gone", 'f', 0o600, 0),
            ("etc/opaque", 'd', 0o755, 0),
            ("etc/opaque/.wh..wh..opq", 'f', 0o755, 0),
            ("etc/opaque/new", 'f', 0o644, 1),
        ]
    );
    // xattrs: the user one kept, overlay's dropped.
    let image = store.image("example.com/upper:1").unwrap();
    let layer = image.manifest.layers()[0].clone();
    let mut archive = tar::Archive::new(img_unpack::open_layer(&store, &layer).unwrap());
    let mut xattrs = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if let Some(ext) = entry.pax_extensions().unwrap() {
            for x in ext {
                xattrs.push(x.unwrap().key().unwrap().to_string());
            }
        }
    }
    assert_eq!(xattrs, ["SCHILY.xattr.user.kept"]);

    // A metacopy upper file cannot be a layer entry: refused, naming it.
    rustix::fs::setxattr(
        upper.join("etc/opaque/new"),
        "trusted.overlay.metacopy",
        b"",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let mut b = scratch();
    b.append_overlay_upper(&upper);
    let err = b.write(&store, "example.com/upper:2").unwrap_err();
    assert!(err.to_string().contains("etc/opaque/new"), "{err}");
}

#[test]
fn long_names_and_link_targets_survive_as_gnu_tar_reads_them() {
    let tmp = Tmp::new("long");
    let src = tmp.0.join("src");
    let long = "d".repeat(120);
    fs::create_dir_all(src.join(&long)).unwrap();
    fs::write(src.join(&long).join("f"), "x").unwrap();
    let target = format!("/{}", "t".repeat(150));
    symlink(&target, src.join("link")).unwrap();
    let store = Store::open(tmp.0.join("store")).unwrap();
    let mut b = scratch();
    b.append_dir(&src);
    let w = b.write(&store, "example.com/long:1").unwrap();
    // GNU tar, not the tar crate, reads the blob.
    let out = std::process::Command::new("tar")
        .arg("-tvzf")
        .arg(store.blob_path(w.layers[0].descriptor.digest()))
        .output()
        .unwrap();
    assert!(out.status.success());
    let listing = String::from_utf8(out.stdout).unwrap();
    assert!(listing.contains(&format!("{long}/f")), "{listing}");
    assert!(listing.contains(&format!("link -> {target}")), "{listing}");
}
