//! End-to-end tests of `img pull` against the local registries of `tools/testbed`, checked
//! with tools that do not go through img: skopeo, umoci, sha256sum, the registry's access log
//! and the files of the store.

mod support;

use std::collections::BTreeSet;

use serde_json::Value;
use support::{
    OCI_INDEX, OCI_MANIFEST, TestRoot, assert_one_error_line, count_log_lines, manifest_blobs,
    oci_blob_type, plain_log_barrier, registry_config, registry_digest, registry_digest_of,
    registry_manifest, run_tool, testbed,
};

/// Whether a manifest document is an index (OCI index or Docker manifest list).
fn is_index(manifest: &Value) -> bool {
    manifest["manifests"].is_array()
}

/// The index entry of `manifest` for `arch` (and `variant`, when given).
fn index_entry<'a>(index: &'a Value, arch: &str, variant: Option<&str>) -> &'a Value {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["platform"]["os"] == "linux"
                && m["platform"]["architecture"] == arch
                && variant.is_none_or(|v| m["platform"]["variant"] == v)
        })
        .unwrap_or_else(|| panic!("the index has no linux/{arch} entry: {index}"))
}

/// The platforms an index lists, as `os/arch[/variant]`.
fn index_platforms(index: &Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut s = format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            );
            if let Some(v) = p["variant"].as_str() {
                s = format!("{s}/{v}");
            }
            s
        })
        .collect()
}

#[test]
fn every_fixture_pulls_verified_and_matches_the_registry() {
    let tb = testbed();
    let root = TestRoot::new("every-fixture");
    for fixture in tb.fixtures() {
        let reference = tb.plain_ref(fixture);
        let pulled = root.json(&["pull", "--json", &reference]);
        let top = registry_manifest(&reference);
        let registry = registry_digest(&reference);
        assert_eq!(pulled["digest"], registry.as_str(), "{fixture}");
        assert_eq!(pulled["reference"], reference.as_str(), "{fixture}");
        if !is_index(&top) {
            // skopeo's own idea of the digest, for single-manifest images
            let inspect: Value = serde_json::from_str(&run_tool(
                "skopeo",
                &[
                    "inspect",
                    "--tls-verify=false",
                    &format!("docker://{reference}"),
                ],
            ))
            .unwrap();
            assert_eq!(inspect["Digest"], registry.as_str(), "{fixture}");
            assert_eq!(pulled["manifest"], registry.as_str(), "{fixture}");
        }
        // the reference names what the registry serves (Docker documents are stored in their
        // OCI form, with the registry's digest in an annotation)
        let entries = root.entries_named(&reference);
        assert_eq!(entries.len(), 1, "{fixture}: {}", root.index());
        assert_eq!(registry_digest_of(&entries[0]), registry, "{fixture}");
        let stored_type = entries[0]["mediaType"].as_str().unwrap();
        if is_index(&top) {
            assert_eq!(stored_type, OCI_INDEX, "{fixture}");
        } else {
            assert_eq!(stored_type, OCI_MANIFEST, "{fixture}");
        }
        let stored = entries[0]["digest"].as_str().unwrap();
        assert!(root.blob_path(stored).is_file(), "{fixture}: {stored}");
        // everything the pulled manifest reaches is stored, with the registry's sizes
        let manifest = if is_index(&top) {
            let child = pulled["manifest"].as_str().unwrap();
            let repo = reference.rsplit_once(':').unwrap().0;
            let child_ref = format!("{repo}@{child}");
            assert_eq!(registry_digest(&child_ref), child, "{fixture}");
            registry_manifest(&child_ref)
        } else {
            top
        };
        for (digest, size) in manifest_blobs(&manifest) {
            let path = root.blob_path(&digest);
            let meta = std::fs::metadata(&path)
                .unwrap_or_else(|e| panic!("{fixture}: {}: {e}", path.display()));
            assert_eq!(meta.len(), size, "{fixture}: {digest}");
        }
        let pulled_layers: Vec<&str> = pulled["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        let manifest_layers: Vec<&str> = manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap())
            .collect();
        assert_eq!(pulled_layers, manifest_layers, "{fixture}");
        assert_eq!(pulled["config"], manifest["config"]["digest"], "{fixture}");
    }
    assert_eq!(root.ref_names().len(), tb.fixtures().len());
    root.assert_fsck_clean();
    root.assert_blobs_hash_to_their_names();
    assert_eq!(root.ingest_files(), Vec::<std::path::PathBuf>::new());
}

#[test]
fn images_sharing_a_layer_store_it_once() {
    let tb = testbed();
    let root = TestRoot::new("shared-layer");
    let busybox = tb.plain_ref("busybox:latest");
    let redis = tb.plain_ref("redis:7");
    let busybox_manifest = registry_manifest(&busybox);
    let redis_manifest = registry_manifest(&redis);
    let shared = busybox_manifest["layers"][0]["digest"].as_str().unwrap();
    assert_eq!(
        redis_manifest["layers"][0]["digest"], shared,
        "test bed: redis:7's first layer should be busybox's"
    );

    let first = root.json(&["pull", "--json", &busybox]);
    assert_eq!(
        first["fetchedBlobs"].as_u64().unwrap() as usize,
        manifest_blobs(&busybox_manifest).len(),
        "config and layers: {first}"
    );
    let second = root.json(&["pull", "--json", &redis]);
    let redis_blobs = manifest_blobs(&redis_manifest);
    let busybox_blobs: BTreeSet<String> = manifest_blobs(&busybox_manifest)
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    let expected_fetch: Vec<&(String, u64)> = redis_blobs
        .iter()
        .filter(|(d, _)| !busybox_blobs.contains(d))
        .collect();
    let fetched = second["fetchedBlobs"].as_u64().unwrap() as usize;
    assert!(fetched < redis_blobs.len(), "{second}");
    assert_eq!(fetched, expected_fetch.len(), "{second}");
    assert_eq!(
        second["fetchedBytes"].as_u64().unwrap(),
        expected_fetch.iter().map(|(_, s)| s).sum::<u64>(),
        "{second}"
    );

    // one file for the shared layer, and exactly the union of both images' blobs
    let shared_hex = shared.strip_prefix("sha256:").unwrap();
    let copies = walk_files(&root.path.join("blobs"))
        .into_iter()
        .filter(|p| p.file_name().unwrap() == shared_hex)
        .count();
    assert_eq!(copies, 1);
    let mut expected: BTreeSet<String> = busybox_blobs;
    expected.extend(redis_blobs.into_iter().map(|(d, _)| d));
    expected.insert(registry_digest(&busybox));
    expected.insert(registry_digest(&redis));
    let stored: BTreeSet<String> = root.blob_digests().into_iter().collect();
    assert_eq!(stored, expected);
    root.assert_fsck_clean();
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            out.extend(walk_files(&entry.path()));
        } else {
            out.push(entry.path());
        }
    }
    out
}

#[test]
fn a_second_pull_downloads_no_blob() {
    let tb = testbed();
    let root = TestRoot::new("second-pull");
    let (repo, reference) = tb.unique_copy("busybox:latest");
    let blob_gets = format!("\"GET /v2/{repo}/blobs/");
    let blobs = manifest_blobs(&registry_manifest(&reference)).len();

    plain_log_barrier(tb, &repo);
    let before = count_log_lines(&tb.plain_log, &blob_gets);
    let first = root.json(&["pull", "--json", &reference]);
    assert_eq!(first["fetchedBlobs"].as_u64().unwrap() as usize, blobs);
    plain_log_barrier(tb, &repo);
    let after_first = count_log_lines(&tb.plain_log, &blob_gets);
    assert_eq!(
        after_first - before,
        blobs,
        "the first pull should GET each blob once"
    );

    let second = root.json(&["pull", "--json", &reference]);
    assert_eq!(second["fetchedBlobs"], 0, "{second}");
    assert_eq!(second["fetchedBytes"], 0, "{second}");
    assert_eq!(second["digest"], first["digest"]);
    plain_log_barrier(tb, &repo);
    assert_eq!(
        count_log_lines(&tb.plain_log, &blob_gets),
        after_first,
        "the second pull fetched blobs"
    );
    // the manifest was asked for again (so the log did see the second pull)
    assert!(
        count_log_lines(
            &tb.plain_log,
            &format!("\"GET /v2/{repo}/manifests/latest ")
        ) >= 2
    );
    assert_eq!(root.entries_named(&reference).len(), 1, "{}", root.index());
    assert_eq!(root.ref_names(), vec![reference]);
    root.assert_fsck_clean();
}

#[test]
fn platform_flag_picks_the_right_child() {
    let tb = testbed();
    let root = TestRoot::new("platform");
    let multi = tb.plain_ref("multi:latest");
    let index = registry_manifest(&multi);
    assert!(is_index(&index), "multi:latest should be an index: {index}");

    // a platform the index lacks: one line naming the platforms it has, nothing stored
    let (_, stderr) = root.fails(&["pull", "--platform", "linux/s390x", &multi]);
    let line = assert_one_error_line(&stderr);
    assert!(line.contains("linux/s390x"), "{line}");
    let platforms = index_platforms(&index);
    assert!(platforms.len() >= 2);
    for p in &platforms {
        assert!(line.contains(p.as_str()), "{line} should list {p}");
    }
    assert!(root.ref_names().is_empty());

    for (platform, arch, variant) in [
        ("linux/arm64/v8", "arm64", Some("v8")),
        ("linux/amd64", "amd64", None),
    ] {
        let want = index_entry(&index, arch, variant)["digest"]
            .as_str()
            .unwrap();
        let pulled = root.json(&["pull", "--json", "--platform", platform, &multi]);
        assert_eq!(pulled["manifest"], want, "{platform}: {pulled}");
        assert_eq!(pulled["digest"], registry_digest(&multi).as_str());
        assert_eq!(pulled["platform"], platform, "{pulled}");
        let child = registry_manifest(&format!("{}/multi@{want}", tb.plain));
        assert_eq!(pulled["config"], child["config"]["digest"], "{platform}");

        let config = root.json(&["inspect", "--json", &multi]);
        assert_eq!(config["os"], "linux", "{platform}: {config}");
        assert_eq!(config["architecture"], arch, "{platform}: {config}");
        match variant {
            Some(v) => assert_eq!(config["variant"], v, "{platform}: {config}"),
            None => assert!(config.get("variant").is_none(), "{config}"),
        }
        // the config is the child's, byte for byte what the registry has
        let mut overrides = vec!["--override-os", "linux", "--override-arch", arch];
        if let Some(v) = variant {
            overrides.extend(["--override-variant", v]);
        }
        let registry = registry_config(&multi, &overrides);
        assert_eq!(config, registry, "{platform}");
        let platform_shown = root.ok(&["inspect", "-f", "{{.Platform}}", &multi]);
        assert!(
            platform_shown.trim().ends_with(platform),
            "{platform_shown}"
        );
        assert_eq!(root.entries_named(&multi).len(), 1);
    }
    root.assert_fsck_clean();
}

#[test]
fn tls_registry_with_basic_auth() {
    let tb = testbed();
    let root = TestRoot::new("tls-auth");
    let certs_d = std::path::Path::new("/etc/containers/certs.d")
        .join(&tb.tls)
        .join("ca.crt");
    assert!(certs_d.is_file(), "test bed: no {}", certs_d.display());
    let reference = format!("{}/private/busybox:latest", tb.tls);
    let creds = format!("{}:{}", tb.user, tb.pass);
    let run = root.run(&["pull", "--creds", &creds, &reference]);
    run.assert_ok();
    assert!(!run.stdout.contains(&tb.pass) && !run.stderr.contains(&tb.pass));
    let raw = run_tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--creds",
            &creds,
            &format!("docker://{reference}"),
        ],
    );
    let digest = format!("sha256:{}", support::sha256_hex(raw.as_bytes()));
    assert_eq!(run.stdout.trim(), digest);
    assert_eq!(root.ref_names(), vec![reference.clone()]);
    root.assert_fsck_clean();
    root.assert_blobs_hash_to_their_names();
    let index = std::fs::read_to_string(root.path.join("index.json")).unwrap();
    assert!(!index.contains(&tb.pass));
}

#[test]
fn a_wrong_password_fails_cleanly() {
    let tb = testbed();
    let root = TestRoot::new("tls-wrong-pass");
    let reference = format!("{}/private/busybox:latest", tb.tls);
    let wrong = format!("not-{}-{}", tb.pass, support::unique());
    let run = root.run(&[
        "pull",
        "--creds",
        &format!("{}:{wrong}", tb.user),
        &reference,
    ]);
    run.assert_failed();
    let line = assert_one_error_line(&run.stderr);
    assert!(line.to_lowercase().contains("unauthorized"), "{line}");
    assert!(line.contains(&tb.tls), "{line} should name the registry");
    assert!(
        !run.stdout.contains(&wrong) && !run.stderr.contains(&wrong),
        "the password leaked: {run}"
    );
    assert!(root.ref_names().is_empty(), "{}", root.index());
    assert!(root.ingest_files().is_empty());

    // no credentials at all: refused the same way
    let run = root.run(&["pull", &reference]);
    run.assert_failed();
    let line = assert_one_error_line(&run.stderr);
    assert!(line.to_lowercase().contains("unauthorized"), "{line}");
    assert!(root.ref_names().is_empty());
}

#[test]
fn concurrent_pulls_into_one_root() {
    let tb = testbed();
    let root = TestRoot::new("concurrent");
    // create the store first so the four start from the same empty layout
    root.ok(&["images"]);
    let images: Vec<String> = ["busybox:latest", "redis:7", "busybox:v2s2", "multi:latest"]
        .iter()
        .map(|i| tb.plain_ref(i))
        .collect();
    let children: Vec<_> = images
        .iter()
        .map(|i| {
            root.command(&["pull", "-q", i])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("cannot start img")
        })
        .collect();
    for (image, child) in images.iter().zip(children) {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "pull {image}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            registry_digest(image)
        );
    }
    let names: BTreeSet<String> = root.ref_names().into_iter().collect();
    assert_eq!(names, images.iter().cloned().collect::<BTreeSet<_>>());
    assert_eq!(root.ref_names().len(), 4, "{}", root.index());
    let listed = root.json(&["images", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 4, "{listed}");
    let table = root.ok(&["images"]);
    assert_eq!(table.lines().count(), 1 + 4, "{table}");
    root.assert_fsck_clean();
    root.assert_blobs_hash_to_their_names();
    assert!(root.ingest_files().is_empty());
}

#[test]
fn other_tools_read_the_store() {
    let tb = testbed();
    let root = TestRoot::new("other-tools");
    for fixture in ["busybox:latest", "redis:7", "edge:latest"] {
        let reference = tb.plain_ref(fixture);
        let digest = root.ok(&["pull", "-q", &reference]);
        let manifest = registry_manifest(&reference);
        let layers: Vec<&Value> = manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| &l["digest"])
            .collect();

        let oci = format!("oci:{}:{reference}", root.path.display());
        let inspect: Value = serde_json::from_str(&run_tool("skopeo", &["inspect", &oci]))
            .unwrap_or_else(|e| panic!("skopeo inspect {oci}: {e}"));
        assert_eq!(inspect["Digest"], digest.trim(), "{fixture}");
        let seen: Vec<&Value> = inspect["Layers"].as_array().unwrap().iter().collect();
        assert_eq!(seen, layers, "{fixture}");
        let config: Value =
            serde_json::from_str(&run_tool("skopeo", &["inspect", "--config", &oci])).unwrap();
        assert_eq!(config, registry_config(&reference, &[]), "{fixture}");

        let image = format!("{}:{reference}", root.path.display());
        let stat = run_tool("umoci", &["stat", "--json", "--image", &image]);
        let stat: Value = serde_json::from_str(&stat).expect("umoci stat --json is JSON");
        let stat_layers: Vec<&Value> = stat["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| !h["layer"].is_null())
            .map(|h| &h["layer"]["digest"])
            .collect();
        assert_eq!(stat_layers, layers, "{fixture}");
    }
    // an index pulled for this machine reads too (skopeo picks this machine's platform)
    let multi = tb.plain_ref("multi:latest");
    let pulled = root.json(&["pull", "--json", &multi]);
    let oci = format!("oci:{}:{multi}", root.path.display());
    let inspect: Value = serde_json::from_str(&run_tool("skopeo", &["inspect", &oci])).unwrap();
    let child = registry_manifest(&format!(
        "{}/multi@{}",
        tb.plain,
        pulled["manifest"].as_str().unwrap()
    ));
    let child_layers: Vec<&Value> = child["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["digest"])
        .collect();
    let seen: Vec<&Value> = inspect["Layers"].as_array().unwrap().iter().collect();
    assert_eq!(seen, child_layers);
}

#[test]
fn images_inspect_and_layers_show_what_the_registry_serves() {
    let tb = testbed();
    let root = TestRoot::new("show");
    for fixture in ["busybox:latest", "redis:7", "busybox:v2s2", "edge:latest"] {
        let reference = tb.plain_ref(fixture);
        root.ok(&["pull", "-q", &reference]);

        let config = root.json(&["inspect", "--json", &reference]);
        let registry = registry_config(&reference, &[]);
        assert_eq!(config, registry, "{fixture}");

        let manifest = registry_manifest(&reference);
        let layers = root.json(&["layers", "--json", &reference]);
        let layers = layers.as_array().unwrap();
        let want = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), want.len(), "{fixture}");
        let diff_ids = registry["rootfs"]["diff_ids"].as_array().unwrap();
        assert_eq!(diff_ids.len(), want.len(), "{fixture}");
        for (i, (got, want)) in layers.iter().zip(want).enumerate() {
            assert_eq!(got["index"], i, "{fixture}");
            assert_eq!(got["digest"], want["digest"], "{fixture} layer {i}");
            assert_eq!(got["size"], want["size"], "{fixture} layer {i}");
            // the store keeps Docker manifests in their OCI form: Docker layer types show as
            // their OCI equivalents (OCI types are shown as served)
            let served = want["mediaType"].as_str().unwrap();
            assert_eq!(
                got["mediaType"],
                oci_blob_type(served),
                "{fixture} layer {i}"
            );
            assert_eq!(got["diffID"], diff_ids[i], "{fixture} layer {i}");
        }

        // docker's document: the image ID is the config's digest, RepoDigests the digest
        // the registry served (Docker documents too, though stored in their OCI form)
        let doc = &root.json(&["inspect", &reference])[0];
        let digest = registry_digest(&reference);
        assert_eq!(doc["Name"], reference.as_str(), "{doc}");
        assert_eq!(doc["Id"], manifest["config"]["digest"], "{doc}");
        assert!(
            doc["RepoDigests"][0]
                .as_str()
                .is_some_and(|d| d.ends_with(&format!("@{digest}"))),
            "{doc}"
        );
        assert_eq!(
            doc["RootFS"]["Layers"], registry["rootfs"]["diff_ids"],
            "{doc}"
        );
        assert_eq!(doc["Config"], registry["config"], "{doc}");
    }

    // images: docker's columns, one row per reference
    let plain = root.ok(&["images"]);
    let header: Vec<&str> = plain.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"],
        "{plain}"
    );
    // --digests: the digest each was pulled by, before the image ID (the config's)
    let table = root.ok(&["images", "--digests"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "REPOSITORY",
            "TAG",
            "DIGEST",
            "IMAGE",
            "ID",
            "CREATED",
            "SIZE"
        ],
        "{table}"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 4, "{table}");
    for fixture in ["busybox:latest", "redis:7", "busybox:v2s2", "edge:latest"] {
        let (repo, tag) = fixture.split_once(':').unwrap();
        let repository = format!("{}/{repo}", tb.plain);
        let digest = registry_digest(&tb.plain_ref(fixture));
        let manifest = registry_manifest(&tb.plain_ref(fixture));
        let config = manifest["config"]["digest"].as_str().unwrap();
        let id = &config["sha256:".len()..][..12];
        assert!(
            rows.iter()
                .any(|r| r[0] == repository && r[1] == tag && r[2] == digest && r[3] == id),
            "no row {repository} {tag} {digest} {id} in\n{table}"
        );
    }
    let records = root.json(&["images", "--json"]);
    for r in records.as_array().unwrap() {
        let name = r["name"].as_str().unwrap();
        assert_eq!(
            format!(
                "{}:{}",
                r["repository"].as_str().unwrap(),
                r["tag"].as_str().unwrap()
            ),
            name
        );
        assert_eq!(r["digest"], registry_digest(name).as_str(), "{name}");
    }
    // a repository filter keeps only its rows
    let filtered = root.ok(&["images", &format!("{}/busybox", tb.plain)]);
    assert_eq!(filtered.lines().count(), 1 + 2, "{filtered}");
    assert!(filtered.lines().skip(1).all(|l| l.contains("/busybox ")));
}

/// Assert a failed pull left nothing behind: no reference, no temp file.
fn assert_nothing_stored(root: &TestRoot) {
    assert!(root.ref_names().is_empty(), "{}", root.index());
    assert!(
        root.ingest_files().is_empty(),
        "left in ingest/: {:?}",
        root.ingest_files()
    );
}

#[test]
fn a_bad_reference_fails_with_one_line() {
    let root = TestRoot::new("bad-ref");
    let (code, stderr) = root.fails(&["pull", "Bad:Ref"]);
    assert_ne!(code, 0);
    let line = assert_one_error_line(&stderr);
    assert!(line.contains("Bad:Ref"), "{line}");
    assert_nothing_stored(&root);
}

#[test]
fn an_unknown_tag_fails_with_the_registry_code() {
    let tb = testbed();
    let root = TestRoot::new("unknown-tag");
    let reference = tb.plain_ref(&format!("busybox:no-such-tag-{}", support::unique()));
    let (_, stderr) = root.fails(&["pull", &reference]);
    let line = assert_one_error_line(&stderr);
    assert!(line.contains("MANIFEST_UNKNOWN"), "{line}");
    assert!(line.contains("404"), "{line}");
    assert!(line.contains(&reference), "{line}");
    assert_nothing_stored(&root);
}

#[test]
fn an_unreachable_registry_fails_with_one_line() {
    let root = TestRoot::new("unreachable");
    let (_, stderr) = root.fails(&["pull", "127.0.0.1:1/x:1"]);
    let line = assert_one_error_line(&stderr);
    assert!(line.contains("127.0.0.1:1"), "{line}");
    assert_nothing_stored(&root);
}

#[test]

fn the_manifest_digest_shown_is_the_registrys_for_docker_images() {
    let tb = testbed();
    let root = TestRoot::new("docker-manifest-digest");
    let mut fixtures = vec!["busybox:v2s2"];
    if tb.has_multi_v2s2() {
        fixtures.push("multi:v2s2");
    }
    for fixture in fixtures {
        let reference = tb.plain_ref(fixture);
        let pulled = root.json(&["pull", "--json", &reference]);
        let listed = root.json(&["images", "--json", &reference]);
        let record = &listed.as_array().unwrap()[0];
        assert_eq!(record["digest"], pulled["digest"], "{fixture}");
        // the platform manifest the registry serves, which `pull --json` reports
        assert_eq!(
            record["manifest"], pulled["manifest"],
            "{fixture}: {record}"
        );
        let manifest = pulled["manifest"].as_str().unwrap();
        let text = root.ok(&["inspect", &reference]);
        let stored = record["stored"].as_str().unwrap_or_default();
        for line in text.lines().filter(|l| l.starts_with("Manifest:")) {
            assert!(line.ends_with(manifest), "{fixture}: {line}\n{text}");
        }
        assert!(
            text.contains(manifest) || manifest == pulled["digest"],
            "{fixture}: inspect never names {manifest} (stored as {stored}):\n{text}"
        );
    }
}
