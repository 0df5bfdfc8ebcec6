//! The store's invariants, checked on a real directory.

use std::path::PathBuf;

use img_store::{Descriptor, Error, Store, digest};

fn temp_root(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn manifest_json(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    let desc = |media: &str, bytes: &[u8]| serde_json::json!({"mediaType": media, "digest": digest::sha256(bytes).to_string(), "size": bytes.len()});
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": desc("application/vnd.oci.image.config.v1+json", config),
        "layers": layers.iter().map(|l| desc("application/vnd.oci.image.layer.v1.tar", l)).collect::<Vec<_>>(),
    }))
    .unwrap()
}

/// Store an image made of `config` and `layers` under `name`.
fn put_image(store: &Store, name: &str, config: &[u8], layers: &[&[u8]]) -> Descriptor {
    for blob in layers.iter().chain([&config]) {
        store.put_blob(&digest::sha256(blob), blob).unwrap();
    }
    let manifest = manifest_json(config, layers);
    let d = digest::sha256(&manifest);
    store.put_blob(&d, &manifest).unwrap();
    let desc = Descriptor::new(
        "application/vnd.oci.image.manifest.v1+json".into(),
        manifest.len() as u64,
        d,
    );
    store.set_ref(name, desc.clone()).unwrap();
    desc
}

#[test]
fn a_new_root_is_an_oci_layout() {
    let root = temp_root("layout");
    Store::open(&root).unwrap();
    let layout: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["manifests"], serde_json::json!([]));
    // Opening again keeps what is there.
    Store::open(&root).unwrap();
    std::fs::write(
        root.join("oci-layout"),
        br#"{"imageLayoutVersion":"2.0.0"}"#,
    )
    .unwrap();
    let err = Store::open(&root).unwrap_err().to_string();
    assert!(err.contains("2.0.0") && err.contains("oci-layout"), "{err}");
}

#[test]
fn a_blob_enters_only_when_digest_and_size_match() {
    let root = temp_root("ingest");
    let store = Store::open(&root).unwrap();
    let good = b"hello layer";
    let d = digest::sha256(good);

    // Wrong content: the commit fails, naming the digest, and nothing stays.
    let mut ingest = store.ingest(&d, Some(good.len() as u64)).unwrap();
    ingest.append(b"hello LAYER").unwrap();
    let err = ingest.commit().unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&d.to_string()));
    assert!(!store.has_blob(&d, None));
    assert!(files_in(&root.join("ingest")).is_empty());

    // More bytes than announced are refused at once.
    let mut ingest = store.ingest(&d, Some(4)).unwrap();
    assert!(matches!(
        ingest.append(good),
        Err(Error::SizeMismatch { expected: 4, .. })
    ));
    drop(ingest);

    // Too few bytes.
    let mut ingest = store.ingest(&d, Some(good.len() as u64 + 1)).unwrap();
    ingest.append(good).unwrap();
    assert!(matches!(ingest.commit(), Err(Error::SizeMismatch { .. })));

    // An abandoned write leaves nothing.
    let mut ingest = store.ingest(&d, None).unwrap();
    ingest.append(b"hel").unwrap();
    drop(ingest);
    assert!(files_in(&root.join("ingest")).is_empty());

    // A restart discards what was written.
    let mut ingest = store.ingest(&d, Some(good.len() as u64)).unwrap();
    ingest.append(b"garbage").unwrap();
    ingest.restart().unwrap();
    ingest.append(good).unwrap();
    ingest.commit().unwrap();
    assert_eq!(std::fs::read(store.blob_path(&d)).unwrap(), good);
    assert_eq!(store.read_blob(&d).unwrap(), good);
    assert!(files_in(&root.join("ingest")).is_empty());
}

#[test]
fn sha512_blobs_are_verified_too() {
    let root = temp_root("sha512");
    let store = Store::open(&root).unwrap();
    let like = digest::parse(&format!("sha512:{}", "0".repeat(128))).unwrap();
    let d = digest::of_bytes_like(&like, b"five-twelve").unwrap();
    store.put_blob(&d, b"five-twelve").unwrap();
    assert!(root.join("blobs/sha512").join(d.digest()).is_file());
    assert!(store.put_blob(&d, b"other").is_err());
}

#[test]
fn a_ref_to_a_missing_blob_is_refused() {
    let root = temp_root("missing");
    let store = Store::open(&root).unwrap();
    let d = digest::sha256(b"never stored");
    let desc = Descriptor::new("application/vnd.oci.image.manifest.v1+json".into(), 12, d);
    assert!(matches!(
        store.set_ref("x/y:1", desc),
        Err(Error::BlobMissing(_))
    ));
    assert!(store.refs().unwrap().is_empty());
}

#[test]
fn concurrent_writers_keep_every_ref() {
    let root = temp_root("concurrent");
    let store = Store::open(&root).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = Store::open(&root).unwrap();
            std::thread::spawn(move || {
                for i in 0..10 {
                    let config = format!("config {t} {i}");
                    put_image(
                        &store,
                        &format!("host/img{t}:{i}"),
                        config.as_bytes(),
                        &[b"shared"],
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let names: std::collections::HashSet<String> = store
        .refs()
        .unwrap()
        .iter()
        .filter_map(|d| img_store::ref_name(d).map(str::to_string))
        .collect();
    assert_eq!(names.len(), 80);
    let report = store.fsck().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    // 80 configs + 80 manifests + one shared layer.
    assert_eq!(report.blobs, 161);
}

#[test]
fn gc_sweeps_what_no_ref_reaches() {
    let root = temp_root("gc");
    let store = Store::open(&root).unwrap();
    put_image(&store, "h/a:1", b"config a", &[b"base", b"only a"]);
    put_image(&store, "h/b:1", b"config b", &[b"base"]);
    store.put_blob(&digest::sha256(b"stray"), b"stray").unwrap();
    let report = store.gc().unwrap();
    assert_eq!(report.removed.len(), 1);
    assert_eq!(report.removed[0].0, digest::sha256(b"stray"));

    store.remove_ref("h/a:1").unwrap();
    let report = store.gc().unwrap();
    let removed: std::collections::HashSet<_> =
        report.removed.iter().map(|(d, _)| d.clone()).collect();
    assert!(removed.contains(&digest::sha256(b"only a")));
    assert!(removed.contains(&digest::sha256(b"config a")));
    assert!(!removed.contains(&digest::sha256(b"base")));
    assert!(store.has_blob(&digest::sha256(b"base"), None));
    assert!(store.fsck().unwrap().problems.is_empty());

    assert!(matches!(
        store.remove_ref("h/a:1"),
        Err(Error::RefNotFound(_))
    ));
    store.remove_ref("h/b:1").unwrap();
    store.gc().unwrap();
    assert!(files_in(&root.join("blobs/sha256")).is_empty());
}

#[test]
fn fsck_names_corrupt_and_missing_blobs() {
    let root = temp_root("fsck");
    let store = Store::open(&root).unwrap();
    put_image(&store, "h/a:1", b"config", &[b"layer one", b"layer two"]);
    let one = digest::sha256(b"layer one");
    std::fs::write(store.blob_path(&one), b"layer ONE").unwrap();
    let two = digest::sha256(b"layer two");
    std::fs::remove_file(store.blob_path(&two)).unwrap();
    let problems: Vec<String> = store
        .fsck()
        .unwrap()
        .problems
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems
            .iter()
            .any(|p| p.contains(&one.to_string()) && p.contains("corrupt"))
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains(&two.to_string()) && p.contains("missing") && p.contains("h/a:1"))
    );
}
