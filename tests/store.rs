//! End-to-end tests of the store: `img rmi` and `img gc`, `img fsck` against corruption, and the
//! root's OCI image layout, checked on disk and against the registry of `tools/testbed`.

mod support;

use std::collections::BTreeSet;
use std::fs;

use serde_json::Value;
use support::{
    OCI_INDEX, OCI_MANIFEST, REF_NAME, TestRoot, assert_one_error_line, manifest_blobs,
    registry_digest, registry_manifest, sha256_hex, testbed,
};

/// Every blob an image of the registry reaches: its manifest, config and layers.
fn registry_blobs(reference: &str) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = manifest_blobs(&registry_manifest(reference))
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    out.insert(registry_digest(reference));
    out
}

/// The blobs of the store, as a set.
fn stored(root: &TestRoot) -> BTreeSet<String> {
    root.blob_digests().into_iter().collect()
}

#[test]
fn rmi_then_gc_keeps_shared_layers_and_empties_at_the_end() {
    let tb = testbed();
    let root = TestRoot::new("rmi-gc");
    let busybox = tb.plain_ref("busybox:latest");
    let redis = tb.plain_ref("redis:7");
    let multi = tb.plain_ref("multi:latest");
    for image in [&busybox, &redis, &multi] {
        root.ok(&["pull", "-q", image]);
    }
    let busybox_blobs = registry_blobs(&busybox);
    let redis_blobs = registry_blobs(&redis);
    let multi_blobs: BTreeSet<String> = {
        let stored_before = stored(&root);
        stored_before
            .iter()
            .filter(|d| !busybox_blobs.contains(*d) && !redis_blobs.contains(*d))
            .cloned()
            .collect()
    };
    let shared: BTreeSet<&String> = busybox_blobs.intersection(&redis_blobs).collect();
    assert!(
        !shared.is_empty(),
        "test bed: busybox and redis:7 share a layer"
    );

    // a nothing-to-do gc removes nothing
    let report = root.json(&["gc", "--json"]);
    assert_eq!(report["removed"], serde_json::json!([]), "{report}");

    // rmi drops the name only; blobs stay until gc
    let before = stored(&root);
    let out = root.ok(&["rmi", &redis]);
    assert_eq!(out.trim(), format!("Untagged: {redis}"));
    let mut names = root.ref_names();
    names.sort();
    let mut want = vec![busybox.clone(), multi.clone()];
    want.sort();
    assert_eq!(names, want);
    assert_eq!(stored(&root), before, "rmi removed blobs");

    // a stray temp file of an interrupted write goes too
    fs::write(root.path.join("ingest/stray-temp-file"), b"partial").unwrap();
    let report = root.json(&["gc", "--json"]);
    let removed: BTreeSet<String> = report["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["digest"].as_str().unwrap().to_string())
        .collect();
    let redis_only: BTreeSet<String> = redis_blobs.difference(&busybox_blobs).cloned().collect();
    assert_eq!(removed, redis_only, "{report}");
    assert_eq!(report["tempFiles"], 1, "{report}");
    assert!(root.ingest_files().is_empty());
    let left = stored(&root);
    for s in &shared {
        assert!(left.contains(*s), "gc removed the shared layer {s}");
    }
    let mut expected = busybox_blobs.clone();
    expected.extend(multi_blobs.iter().cloned());
    assert_eq!(left, expected);
    assert_eq!(report["kept"].as_u64().unwrap() as usize, expected.len());
    root.assert_fsck_clean();
    root.assert_blobs_hash_to_their_names();
    // what is left still reads
    root.ok(&["inspect", &busybox]);
    root.ok(&["layers", &multi]);

    // remove the rest: gc empties blobs/
    let out = root.ok(&["rmi", &busybox, &multi]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(root.ref_names().is_empty(), "{}", root.index());
    let report = root.json(&["gc", "--json"]);
    assert_eq!(
        report["removed"].as_array().unwrap().len(),
        expected.len(),
        "{report}"
    );
    assert_eq!(report["kept"], 0);
    assert_eq!(root.blob_files(), Vec::new(), "blobs/ is not empty");
    let fsck = root.json(&["fsck", "--json"]);
    assert_eq!(fsck["blobs"], 0);
    assert_eq!(fsck["problems"], serde_json::json!([]));
    let listed = root.json(&["images", "--json"]);
    assert_eq!(listed, serde_json::json!([]));
}

#[test]
fn rmi_of_an_absent_image_fails_and_keeps_the_rest() {
    let tb = testbed();
    let root = TestRoot::new("rmi-absent");
    let busybox = tb.plain_ref("busybox:latest");
    root.ok(&["pull", "-q", &busybox]);
    let run = root.run(&["rmi", "absent-image:1"]);
    run.assert_failed();
    let line = assert_one_error_line(&run.stderr);
    assert!(line.contains("absent-image:1"), "{line}");
    assert_eq!(root.ref_names(), vec![busybox]);
}

#[test]
fn fsck_catches_a_corrupt_blob() {
    let tb = testbed();
    let root = TestRoot::new("fsck-corrupt");
    let redis = tb.plain_ref("redis:7");
    root.ok(&["pull", "-q", &redis]);
    root.assert_fsck_clean();

    let manifest = registry_manifest(&redis);
    let layer = manifest["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let path = root.blob_path(&layer);
    let mut bytes = fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let actual = format!("sha256:{}", sha256_hex(&bytes));

    let run = root.run(&["fsck"]);
    run.assert_failed();
    assert!(!run.stderr.contains("panicked"), "{run}");
    let problem: Vec<&str> = run.stdout.lines().filter(|l| l.contains(&layer)).collect();
    assert_eq!(problem.len(), 1, "fsck should name {layer} once: {run}");
    assert!(problem[0].contains(&actual), "{run}");
    // only that blob is named
    for (digest, _) in root.blob_files() {
        if digest != layer {
            assert!(!run.stdout.contains(&digest), "{digest} named: {run}");
        }
    }
    let report = root.run(&["fsck", "--json"]);
    report.assert_failed();
    let report: Value = serde_json::from_str(&report.stdout).unwrap();
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{report}");
    assert!(problems[0].as_str().unwrap().contains(&layer));
}

#[test]
fn fsck_catches_a_missing_blob() {
    let tb = testbed();
    let root = TestRoot::new("fsck-missing");
    let busybox = tb.plain_ref("busybox:latest");
    root.ok(&["pull", "-q", &busybox]);
    let config = registry_manifest(&busybox)["config"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    fs::remove_file(root.blob_path(&config)).unwrap();
    let run = root.run(&["fsck"]);
    run.assert_failed();
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains(&config))
        .unwrap_or_else(|| panic!("fsck should name {config}: {run}"));
    assert!(line.contains(&busybox), "{line} should name the image");
}

#[test]
fn the_store_root_is_an_oci_layout() {
    let tb = testbed();
    let root = TestRoot::new("layout");
    let busybox_digest = registry_digest(&tb.plain_ref("busybox:latest"));
    // what the user types -> the name the store gives it
    let pulls = [
        (
            tb.plain_ref("busybox"),
            tb.plain_ref("busybox:latest"),
            tb.plain_ref("busybox:latest"),
        ),
        (
            tb.plain_ref("redis:7"),
            tb.plain_ref("redis:7"),
            tb.plain_ref("redis:7"),
        ),
        (
            format!("{}@{busybox_digest}", tb.plain_ref("busybox")),
            format!("{}@{busybox_digest}", tb.plain_ref("busybox")),
            tb.plain_ref("busybox:latest"),
        ),
        (
            tb.plain_ref("multi:latest"),
            tb.plain_ref("multi:latest"),
            tb.plain_ref("multi:latest"),
        ),
        (
            tb.plain_ref("busybox:v2s2"),
            tb.plain_ref("busybox:v2s2"),
            tb.plain_ref("busybox:v2s2"),
        ),
    ];
    for (typed, _, _) in &pulls {
        root.ok(&["pull", "-q", typed]);
    }

    let layout: Value =
        serde_json::from_slice(&fs::read(root.path.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout, serde_json::json!({"imageLayoutVersion": "1.0.0"}));

    let index = root.index();
    assert_eq!(index["schemaVersion"], 2, "{index}");
    if let Some(mt) = index.get("mediaType") {
        assert_eq!(mt, OCI_INDEX);
    }
    let entries = index["manifests"].as_array().unwrap();
    let names: Vec<&str> = entries
        .iter()
        .map(|e| {
            e["annotations"][REF_NAME]
                .as_str()
                .expect("every entry is named")
        })
        .collect();
    let want: Vec<&str> = pulls.iter().map(|(_, name, _)| name.as_str()).collect();
    assert_eq!(names, want, "{index}");

    for (entry, (_, name, registry_ref)) in entries.iter().zip(&pulls) {
        assert_eq!(
            support::registry_digest_of(entry),
            registry_digest(registry_ref),
            "{name}"
        );
        // the entry describes a blob that is there, of that size and type, hashing to its name
        let digest = entry["digest"].as_str().unwrap();
        let bytes = fs::read(root.blob_path(digest)).unwrap();
        assert_eq!(
            entry["size"].as_u64().unwrap(),
            bytes.len() as u64,
            "{name}"
        );
        assert_eq!(format!("sha256:{}", sha256_hex(&bytes)), digest, "{name}");
        let media_type = entry["mediaType"].as_str().unwrap();
        assert!(
            [OCI_MANIFEST, OCI_INDEX].contains(&media_type),
            "{name}: {media_type} in an OCI layout"
        );
        let doc: Value = serde_json::from_slice(&bytes).unwrap();
        if let Some(own) = doc.get("mediaType") {
            assert_eq!(own, media_type, "{name}");
        }
        assert_eq!(
            doc["manifests"].is_array(),
            media_type == OCI_INDEX,
            "{name}"
        );
    }

    // blobs/ holds only digest-named files
    for (digest, path) in root.blob_files() {
        let (alg, hex) = digest.split_once(':').unwrap();
        assert!(["sha256", "sha512"].contains(&alg), "{}", path.display());
        assert!(
            hex.len() == 64 && hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')),
            "{}",
            path.display()
        );
    }
    root.assert_blobs_hash_to_their_names();
    root.assert_fsck_clean();
}
