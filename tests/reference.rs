//! End-to-end tests of how img reads what the user typed as an image (issue 10): a 64-hex
//! name is an image ID, never a repository; `inspect`, `rmi` and `run` find a stored image by
//! its ID (the config digest, `sha256:` optional) or by a unique ID prefix of any length, as
//! docker does; an ambiguous prefix is a clear error; and none of this reaches a registry.

mod support;

use std::fs;
use std::path::PathBuf;

use serde_json::{Value, json};
use support::{
    REF_NAME, TestRoot, assert_one_error_line, count_log_lines, plain_log_barrier, sha256_hex,
    testbed, unique,
};

/// The image ID (config digest, `sha256:…`) of the stored image named `name`, read from the
/// store's files (`index.json`, then the manifest), not through img.
fn config_digest(root: &TestRoot, name: &str) -> String {
    let manifest = stored_manifest(root, name);
    manifest["config"]["digest"]
        .as_str()
        .expect("the manifest names its config")
        .to_string()
}

/// The platform manifest of the stored image `name`, parsed from its blob.
fn stored_manifest(root: &TestRoot, name: &str) -> Value {
    let entries = root.entries_named(name);
    assert_eq!(entries.len(), 1, "{name} in index.json");
    let entry = &entries[0];
    // an index's entry carries the chosen platform manifest in io.img.manifest
    let digest = entry["annotations"]["io.img.manifest"]
        .as_str()
        .or(entry["digest"].as_str())
        .expect("an index.json entry has a digest");
    let bytes = fs::read(root.blob_path(digest)).expect("the manifest blob");
    serde_json::from_slice(&bytes).expect("the manifest is JSON")
}

/// Write `bytes` as a blob of the store and return its digest.
fn put_blob(root: &TestRoot, bytes: &[u8]) -> String {
    let digest = format!("sha256:{}", sha256_hex(bytes));
    let path: PathBuf = root.blob_path(&digest);
    fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    digest
}

/// Add to the store, by hand, a copy of the image `name` whose config has a label added so
/// that its ID starts with the same hex digit as `name`'s (and is otherwise different), named
/// `new_name`. Returns the new image ID.
fn add_colliding_copy(root: &TestRoot, name: &str, new_name: &str) -> String {
    let manifest = stored_manifest(root, name);
    let id = config_digest(root, name);
    let hex = id.strip_prefix("sha256:").unwrap();
    let config_bytes = fs::read(root.blob_path(&id)).unwrap();
    let config: Value = serde_json::from_slice(&config_bytes).unwrap();
    // on average 16 tries
    let (new_config, new_hex) = (0..2000)
        .map(|n| {
            let mut c = config.clone();
            c["config"]["Labels"]["io.img.test.collide"] = json!(n.to_string());
            let bytes = serde_json::to_vec(&c).unwrap();
            let h = sha256_hex(&bytes);
            (bytes, h)
        })
        .find(|(_, h)| h[..1] == hex[..1] && h != hex)
        .expect("a label value that makes the config digest start like the original");
    let new_id = put_blob(root, &new_config);
    assert_eq!(new_id, format!("sha256:{new_hex}"));
    let mut new_manifest = manifest.clone();
    new_manifest["config"]["digest"] = json!(new_id);
    new_manifest["config"]["size"] = json!(new_config.len());
    new_manifest["mediaType"] = json!("application/vnd.oci.image.manifest.v1+json");
    let manifest_bytes = serde_json::to_vec(&new_manifest).unwrap();
    let manifest_digest = put_blob(root, &manifest_bytes);
    let mut index = root.index();
    index["manifests"].as_array_mut().unwrap().push(json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest_digest,
        "size": manifest_bytes.len(),
        "annotations": { REF_NAME: new_name },
    }));
    fs::write(
        root.path.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    new_id
}

/// A registries.conf whose unqualified-search registry is the plain test bed registry: were a
/// hex ID taken for a name, `run` would ask the test bed for it, and the access log would show.
/// Written inside the store root (after the first pull made it), so it goes when the root does.
fn search_conf(root: &TestRoot, plain: &str) -> PathBuf {
    let path = root.path.join("test-registries.conf");
    fs::write(
        &path,
        format!("unqualified-search-registries = [\"{plain}\"]\n"),
    )
    .unwrap();
    path
}

/// Requests that treat `hex` as a repository or tag name (never a blob digest, which other
/// tests pulling the same image legitimately ask for). A tag ends at the space before
/// `HTTP/1.1`: a one-digit prefix such as `7` must not count other tests' `redis:7`.
fn name_requests(log: &std::path::Path, hex: &str) -> usize {
    [
        format!("/v2/{hex}/"),
        format!("/library/{hex}/"),
        format!("/manifests/{hex} "),
        format!("/v2/sha256/manifests/{hex} "),
    ]
    .iter()
    .map(|needle| count_log_lines(log, needle))
    .sum()
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (img run: namespaces, overlay mounts, cgroups): run as root, as tools/test does"
)]
fn an_image_id_finds_the_local_image_and_is_never_pulled() {
    let tb = testbed();
    let root = TestRoot::new("reference-id");
    let busybox = tb.plain_ref("busybox:latest");
    root.ok(&["pull", "-q", &busybox]);
    let id = config_digest(&root, &busybox);
    let hex = id
        .strip_prefix("sha256:")
        .expect("a sha256 image ID")
        .to_string();
    assert_eq!(hex.len(), 64);
    let short = &hex[..12];
    let conf = search_conf(&root, &tb.plain);
    let conf = conf.to_str().unwrap();

    // img's own view agrees: `images --json` has it as "config", `inspect` as the Id
    let records = root.json(&["images", "--json"]);
    assert_eq!(records[0]["config"], id.as_str());
    let by_name = root.json(&["inspect", &busybox]);
    assert_eq!(by_name[0]["Id"], id.as_str(), "{by_name}");

    // inspect by full ID (bare and with sha256:), by 12-digit prefix, by a shorter one
    for form in [
        hex.clone(),
        id.clone(),
        short.to_string(),
        format!("sha256:{short}"),
        hex[..5].to_string(),
    ] {
        assert_eq!(root.json(&["inspect", &form]), by_name, "inspect {form}");
        let config = root.json(&["inspect", "--json", &form]);
        assert_eq!(config, root.json(&["inspect", "--json", &busybox]));
    }

    // an ID the store does not have: one clear line, whatever the command
    let unknown = sha256_hex(unique().as_bytes());
    for args in [
        vec!["inspect", unknown.as_str()],
        vec!["rmi", unknown.as_str()],
    ] {
        let (_, stderr) = root.fails(&args);
        let line = assert_one_error_line(&stderr);
        assert!(
            line.contains(&format!("no image with ID {unknown:?}")),
            "{args:?}: {line}"
        );
    }
    let unknown_id = format!("sha256:{unknown}");
    let (_, stderr) = root.fails(&["inspect", &unknown_id]);
    let line = assert_one_error_line(&stderr);
    assert!(line.contains("no image with ID"), "{line}");
    // pull refuses a bare ID as a name, at parse time
    let (_, stderr) = root.fails(&["pull", "--registries-conf", conf, &unknown]);
    let line = assert_one_error_line(&stderr);
    assert!(
        line.contains("64 hex digits are an image ID, not a repository name"),
        "{line}"
    );

    {
        for form in [hex.as_str(), short] {
            let run = root.run(&[
                "run",
                "--rm",
                "--registries-conf",
                conf,
                form,
                "sh",
                "-c",
                "echo ran",
            ]);
            run.assert_ok();
            assert_eq!(run.stdout.trim(), "ran", "{run}");
        }
        for form in [unknown.as_str(), unknown_id.as_str()] {
            let run = root.run(&["run", "--rm", "--registries-conf", conf, form, "true"]);
            run.assert_failed();
            let line = assert_one_error_line(&run.stderr);
            assert!(line.contains("no image with ID"), "{run}");
        }
        // an ID never turns into another platform's pull either
        let run = root.run(&[
            "run",
            "--rm",
            "--platform",
            "linux/s390x",
            "--registries-conf",
            conf,
            &hex,
            "true",
        ]);
        run.assert_failed();
        let line = assert_one_error_line(&run.stderr);
        assert!(line.contains("is for linux/"), "{run}");
        assert!(line.contains("not linux/s390x"), "{run}");
    }

    // rmi by ID removes the reference; the ID then names nothing
    let out = root.ok(&["rmi", &hex]);
    assert_eq!(out, format!("Untagged: {busybox}\n"));
    assert!(root.ref_names().is_empty());
    let (_, stderr) = root.fails(&["inspect", &hex]);
    assert!(assert_one_error_line(&stderr).contains("no image with ID"));

    // none of it asked a registry for the hex as a name
    plain_log_barrier(tb, "busybox");
    for h in [hex.as_str(), short, unknown.as_str()] {
        assert_eq!(
            name_requests(&tb.plain_log, h),
            0,
            "{} has a request for {h} as a name",
            tb.plain_log.display()
        );
    }
    assert_eq!(count_log_lines(&tb.plain_log, &unknown), 0);
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (img run: namespaces, overlay mounts, cgroups): run as root, as tools/test does"
)]
fn an_ambiguous_id_prefix_is_an_error() {
    let tb = testbed();
    let root = TestRoot::new("reference-ambiguous");
    let busybox = tb.plain_ref("busybox:latest");
    root.ok(&["pull", "-q", &busybox]);
    let id = config_digest(&root, &busybox);
    let other = "example.test/collide:1";
    let other_id = add_colliding_copy(&root, &busybox, other);
    let (a, b) = (&id["sha256:".len()..], &other_id["sha256:".len()..]);
    let common = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    assert!(common >= 1);
    let conf = search_conf(&root, &tb.plain);
    let conf = conf.to_str().unwrap();

    // the shared prefix names two images: an error naming the prefix, on one line
    let prefix = &a[..common];
    for args in [
        vec!["inspect", prefix],
        vec!["rmi", prefix],
        vec!["inspect", &format!("sha256:{prefix}")],
    ] {
        let (_, stderr) = root.fails(&args);
        let line = assert_one_error_line(&stderr);
        assert!(line.contains("is ambiguous"), "{args:?}: {line}");
        assert!(line.contains(&a[..12]) && line.contains(&b[..12]), "{line}");
    }
    assert_eq!(
        root.ref_names().len(),
        2,
        "an ambiguous rmi removed something"
    );
    {
        let run = root.run(&["run", "--rm", "--registries-conf", conf, prefix, "true"]);
        run.assert_failed();
        assert!(
            assert_one_error_line(&run.stderr).contains("is ambiguous"),
            "{run}"
        );
    }

    // one more digit tells them apart, however short
    let name_of = |prefix: &str| {
        root.ok(&["inspect", "-f", "{{.Name}}", prefix])
            .trim()
            .to_string()
    };
    assert_eq!(name_of(&a[..common + 1]), busybox);
    assert_eq!(name_of(&b[..common + 1]), other);

    // a stored name wins over an ID prefix (docker looks names up first)
    assert_eq!(name_of(other), other);

    plain_log_barrier(tb, "busybox");
    assert_eq!(name_requests(&tb.plain_log, prefix), 0);
}

#[test]
fn rmi_by_id_follows_dockers_rule_for_several_references() {
    let tb = testbed();
    let root = TestRoot::new("reference-rmi");
    let busybox = tb.plain_ref("busybox:latest");
    // the same image in another repository: one ID, two repositories
    let (_, copy) = tb.unique_copy("busybox:latest");
    root.ok(&["pull", "-q", &busybox]);
    root.ok(&["pull", "-q", &copy]);
    let id = config_digest(&root, &busybox);
    assert_eq!(
        config_digest(&root, &copy),
        id,
        "the copy has another config"
    );
    let short = &id["sha256:".len()..][..12];

    // both references, one image: not ambiguous for inspect
    root.ok(&["inspect", short]);
    // rmi refuses to untag two repositories at once unless forced, as docker does
    let (_, stderr) = root.fails(&["rmi", short]);
    let line = assert_one_error_line(&stderr);
    assert!(line.contains("referenced in 2 repositories"), "{line}");
    assert!(line.contains("--force"), "{line}");
    assert_eq!(root.ref_names().len(), 2);
    let out = root.ok(&["rmi", "--force", short]);
    assert_eq!(out, format!("Untagged: {busybox}\nUntagged: {copy}\n"));
    assert!(root.ref_names().is_empty());
}
