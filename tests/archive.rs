//! End-to-end tests of archives and layouts (issue 9): `img save` read by podman and skopeo,
//! `img load` of what skopeo writes and of a legacy `docker save` tar built here by python,
//! `img copy` to and from `oci:`/`oci-archive:`/`docker-archive:` read by umoci and skopeo, a
//! save → rmi → load round trip, and bad archives refused with one line and nothing named.
//! Every archive is made at test time under `target/test-roots/` (never in git).

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use support::{
    TestRoot, assert_one_error_line, registry_config, registry_digest, run_tool, sha256_hex,
    testbed, try_tool,
};

/// A scratch directory beside the test's store root, removed when the test passes.
struct Scratch(PathBuf);

impl Scratch {
    fn new(root: &TestRoot) -> Scratch {
        let dir = root.path.with_extension("files");
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    fn s(&self, name: &str) -> String {
        self.join(name).display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// skopeo with the test bed's policy and no TLS checks (the plain registry).
fn skopeo(args: &[&str]) -> String {
    let policy = testbed().dir.join("policy.json");
    let mut all: Vec<String> = Vec::new();
    if policy.exists() {
        all.extend(["--policy".into(), policy.display().to_string()]);
    }
    all.extend(args.iter().map(|s| s.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    run_tool("skopeo", &all)
}

/// `img images --json`, by name.
fn images(root: &TestRoot) -> Vec<Value> {
    root.json(&["images", "--json"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn image(root: &TestRoot, name: &str) -> Value {
    images(root)
        .into_iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in img images"))
}

/// The manifest digest of the one entry of an OCI layout's index.json named `ref_name`.
fn layout_entry(dir: &Path, ref_name: &str) -> Value {
    let index: Value = serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == ref_name)
        .cloned()
        .unwrap_or_else(|| panic!("no {ref_name} in {index}"))
}

/// A blob of an OCI layout, parsed.
fn layout_json(dir: &Path, digest: &str) -> Value {
    let hex = digest.strip_prefix("sha256:").unwrap();
    serde_json::from_slice(&fs::read(dir.join("blobs/sha256").join(hex)).unwrap()).unwrap()
}

/// The config digest (image ID) of a single-platform image of the registry.
fn config_digest(reference: &str) -> Value {
    support::registry_manifest(reference)["config"]["digest"].clone()
}

/// Run a python3 program with arguments.
fn python(program: &str, args: &[&str]) {
    let mut all = vec!["-c", program];
    all.extend(args);
    run_tool("python3", &all);
}

/// Assert a failed load left nothing: no name, a clean fsck, no temp file.
fn assert_nothing_left(root: &TestRoot) {
    assert_eq!(root.ref_names(), Vec::<String>::new(), "a name was set");
    if !root.blob_files().is_empty() {
        root.assert_fsck_clean();
    }
    assert_eq!(
        root.ingest_files(),
        Vec::<PathBuf>::new(),
        "temp files left"
    );
}

#[test]
fn save_is_read_by_podman_and_skopeo_with_the_same_digests() {
    let tb = testbed();
    let root = TestRoot::new("save-read");
    let files = Scratch::new(&root);
    let busybox = tb.plain_ref("busybox:latest");
    let redis = tb.plain_ref("redis:7");
    root.ok(&["pull", "-q", &busybox]);
    root.ok(&["pull", "-q", &redis]);
    let archive = files.s("both.tar");
    root.ok(&["save", "-o", &archive, &busybox, &redis]);

    // The same images give the same bytes; stdout (a pipe) gives them too.
    let again = root
        .command(&["save", &busybox, &redis])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(again.status.success());
    assert_eq!(
        sha256_hex(&again.stdout),
        sha256_hex(&fs::read(&archive).unwrap()),
        "save is not deterministic"
    );

    // podman load: its image IDs are the configs img has. (podman wants a short runroot.)
    let runroot = PathBuf::from(format!("/tmp/img-pm-{}", std::process::id()));
    let podman = |args: &[&str]| {
        let mut all = vec![
            "--root".to_string(),
            files.s("podman-root"),
            "--runroot".into(),
            runroot.display().to_string(),
            "--storage-driver".into(),
            "vfs".into(),
        ];
        all.extend(args.iter().map(|s| s.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        run_tool("podman", &all)
    };
    let out = podman(&["load", "-i", &archive]);
    assert!(out.contains(&format!("Loaded image: {busybox}")), "{out}");
    assert!(out.contains(&format!("Loaded image: {redis}")), "{out}");
    let listed = podman(&[
        "images",
        "--no-trunc",
        "--format",
        "{{.Repository}}:{{.Tag}} {{.ID}}",
    ]);
    for name in [&busybox, &redis] {
        let config = image(&root, name)["config"].as_str().unwrap().to_string();
        assert!(
            listed.contains(&format!("{name} {config}")),
            "podman has {name} as another image:\n{listed}"
        );
    }
    let _ = fs::remove_dir_all(files.join("podman-root")); // vfs copies are large
    let _ = fs::remove_dir_all(&runroot);

    // skopeo reads it as a docker-archive: the config (the image ID) agrees, and a copy out
    // of it works.
    for name in [&busybox, &redis] {
        let raw = Command::new("skopeo")
            .args(["inspect", "--config", "--raw"])
            .arg(format!("docker-archive:{archive}:{name}"))
            .output()
            .unwrap();
        assert!(
            raw.status.success(),
            "{}",
            String::from_utf8_lossy(&raw.stderr)
        );
        assert_eq!(
            format!("sha256:{}", sha256_hex(&raw.stdout)),
            image(&root, name)["config"].as_str().unwrap(),
            "{name}"
        );
    }
    let dir = files.join("from-docker");
    skopeo(&[
        "copy",
        "--quiet",
        &format!("docker-archive:{archive}:{redis}"),
        &format!("oci:{}:r", dir.display()),
    ]);
    let entry = layout_entry(&dir, "r");
    let manifest = layout_json(&dir, entry["digest"].as_str().unwrap());
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 4);

    // ... and as an oci-archive (the manifest itself agrees: digests equal the store's).
    let dir = files.join("from-oci");
    for (r, name) in [("latest", &busybox), ("7", &redis)] {
        skopeo(&[
            "copy",
            "--quiet",
            &format!("oci-archive:{archive}:{r}"),
            &format!("oci:{}:{r}", dir.display()),
        ]);
        assert_eq!(
            layout_entry(&dir, r)["digest"],
            image(&root, name)["manifest"],
            "{name}"
        );
    }
    let inspect: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        &format!("oci-archive:{archive}:latest"),
    ]))
    .unwrap();
    assert_eq!(inspect["Digest"], image(&root, &busybox)["manifest"]);
}

#[test]
fn refuses_to_save_to_a_terminal_and_names_a_missing_image() {
    let root = TestRoot::new("save-errors");
    let (_, stderr) = root.fails(&["save", "-o", "/dev/null", "nope:1"]);
    let line = assert_one_error_line(&stderr);
    assert!(line.contains("nope"), "{line}");
    // `script` gives img a terminal as stdout.
    let cmd = format!(
        "{} --root {} save busybox",
        env!("CARGO_BIN_EXE_img"),
        root.path.display()
    );
    let run = try_tool("script", &["-qec", &cmd, "/dev/null"]);
    assert_ne!(run.code, 0, "{run}");
    assert!(run.stdout.contains("terminal"), "{run}");
}

#[test]
fn loads_what_skopeo_writes_plain_and_gzipped() {
    let tb = testbed();
    let root = TestRoot::new("load-skopeo");
    let files = Scratch::new(&root);
    let redis = tb.plain_ref("redis:7");
    let config = registry_config(&redis, &[]);
    let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();

    // docker-archive: legacy layout plus manifest.json, uncompressed layers.
    let docker = files.s("redis-docker.tar");
    skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{redis}"),
        &format!("docker-archive:{docker}:x/redis:7"),
    ]);
    let out = root.ok(&["load", "-i", &docker]);
    assert_eq!(out.trim(), "Loaded image: docker.io/x/redis:7");
    let layers = root.json(&["layers", "--json", "x/redis:7"]);
    let stored: Vec<String> = layers
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stored, diff_ids, "uncompressed layers: digest = diff_id");
    let registry_config_digest = config_digest(&redis);
    assert_eq!(
        image(&root, "docker.io/x/redis:7")["config"],
        registry_config_digest
    );
    root.assert_fsck_clean();

    // The same gzip'd, with --compress: gzip layers, same image ID.
    let gz = files.join("redis-docker.tar.gz");
    let bytes = fs::read(&docker).unwrap();
    let gz_bytes = {
        let mut child = Command::new("gzip")
            .arg("-c")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            stdin.write_all(&bytes).unwrap();
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out.stdout
    };
    fs::write(&gz, gz_bytes).unwrap();
    let other = TestRoot::new("load-skopeo-gz");
    let out = other.ok(&[
        "load",
        "--compress",
        "--tag",
        "y/redis:gz",
        "-i",
        gz.to_str().unwrap(),
    ]);
    assert_eq!(out.trim(), "Loaded image: docker.io/y/redis:gz");
    let layers = other.json(&["layers", "--json", "y/redis:gz"]);
    for (layer, diff_id) in layers.as_array().unwrap().iter().zip(&diff_ids) {
        assert_eq!(
            layer["mediaType"].as_str(),
            Some("application/vnd.oci.image.layer.v1.tar+gzip"),
            "{layer}"
        );
        assert_eq!(layer["diffID"].as_str(), Some(diff_id.as_str()), "{layer}");
    }
    assert_eq!(
        image(&other, "docker.io/y/redis:gz")["config"],
        registry_config_digest
    );
    other.assert_fsck_clean();

    // zstd-compressed, from stdin.
    let zst = files.join("redis-docker.tar.zst");
    run_tool("zstd", &["-q", "-o", zst.to_str().unwrap(), &docker]);
    let third = TestRoot::new("load-skopeo-zstd");
    let out = third
        .command(&["load"])
        .stdin(fs::File::open(&zst).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Loaded image: docker.io/x/redis:7"
    );
    assert_eq!(
        image(&third, "docker.io/x/redis:7")["config"],
        registry_config_digest
    );

    // oci-archive: the registry's manifest kept byte for byte.
    let oci = files.s("redis-oci.tar");
    skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{redis}"),
        &format!("oci-archive:{oci}:redis-ref"),
    ]);
    let out = root.ok(&["load", "--tag", "z/redis:oci", "-i", &oci]);
    assert_eq!(out.trim(), "Loaded image: docker.io/z/redis:oci");
    assert_eq!(
        image(&root, "docker.io/z/redis:oci")["digest"],
        registry_digest(&redis)
    );
    // Without --tag, the ref.name is the name.
    let fourth = TestRoot::new("load-skopeo-ref");
    let out = fourth.ok(&["load", "-i", &oci]);
    assert_eq!(
        out.trim(),
        "Loaded image: docker.io/library/redis-ref:latest"
    );
    root.assert_fsck_clean();
}

/// Turns skopeo's docker-archive (ARGV[1]) into the legacy `docker save` form (ARGV[2]):
/// layer directories with a real `layer.tar`, `json` and `VERSION`, the config as `HEX.json`,
/// `repositories`; manifest.json last. A second mode (ARGV[3]) makes it bad on purpose.
const LEGACY: &str = r#"
import hashlib, io, json, sys, tarfile
src, dst = sys.argv[1], sys.argv[2]
mode = sys.argv[3] if len(sys.argv) > 3 else "good"
t = tarfile.open(src)
m = json.load(t.extractfile("manifest.json"))[0]
config = t.extractfile(m["Config"]).read()
chex = hashlib.sha256(config).hexdigest()
out = tarfile.open(dst, "w", format=tarfile.USTAR_FORMAT)
def add(name, data, kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.mode = 0o644
    out.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
layers = []
for i, l in enumerate(m["Layers"]):
    data = t.extractfile(l).read()
    lid = hashlib.sha256(("layer%d" % i).encode() + data[:64]).hexdigest()
    add(lid + "/VERSION", b"1.0")
    add(lid + "/json", json.dumps({"id": lid}).encode())
    if mode == "symlink" and i == 0:
        add("real.tar", data)
        add(lid + "/layer.tar", b"", tarfile.SYMTYPE, "../real.tar")
    else:
        add(lid + "/layer.tar", data)
    layers.append(lid + "/layer.tar")
if mode == "dotdot":
    add("../escape", b"x")
cname = chex + ".json"
if mode == "wrong-config":
    cname = ("0" * 64) + ".json"
add(cname, config)
add("repositories", json.dumps({"legacy/busybox": {"1": layers[-1].split("/")[0]}}).encode())
manifest = [{"Config": cname, "RepoTags": ["legacy/busybox:1"], "Layers": layers}]
add("manifest.json", json.dumps(manifest).encode())
out.close()
"#;

/// skopeo's docker-archive of busybox:latest, made once per test into `files`.
fn busybox_docker_archive(files: &Scratch) -> String {
    let path = files.s("busybox-docker.tar");
    if !Path::new(&path).exists() {
        skopeo(&[
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{}", testbed().plain_ref("busybox:latest")),
            &format!("docker-archive:{path}:busybox:latest"),
        ]);
    }
    path
}

#[test]
fn loads_a_legacy_docker_save_tar() {
    let tb = testbed();
    let root = TestRoot::new("load-legacy");
    let files = Scratch::new(&root);
    let src = busybox_docker_archive(&files);
    let legacy = files.s("legacy.tar");
    python(LEGACY, &[&src, &legacy]);
    let out = root.ok(&["load", "-i", &legacy]);
    assert_eq!(out.trim(), "Loaded image: docker.io/legacy/busybox:1");
    let want = config_digest(&tb.plain_ref("busybox:latest"));
    assert_eq!(image(&root, "docker.io/legacy/busybox:1")["config"], want);
    root.assert_fsck_clean();
    // It unpacks: the diff_ids matched.
    let rootfs = files.join("rootfs");
    root.ok(&["unpack", "legacy/busybox:1", rootfs.to_str().unwrap()]);
    assert!(rootfs.join("bin/busybox").exists());
}

#[test]
fn bad_archives_fail_with_one_line_and_name_nothing() {
    let tb = testbed();
    let root = TestRoot::new("load-bad");
    let files = Scratch::new(&root);
    let src = busybox_docker_archive(&files);
    for (mode, expect) in [
        ("symlink", "is a symlink"),
        ("dotdot", "'..'"),
        ("wrong-config", "wrong digest"),
    ] {
        let bad = files.s(&format!("{mode}.tar"));
        python(LEGACY, &[&src, &bad, mode]);
        let (_, stderr) = root.fails(&["load", "-i", &bad]);
        let line = assert_one_error_line(&stderr);
        assert!(line.contains(expect), "{mode}: {line}");
        assert_nothing_left(&root);
    }

    // img's own archive, with manifest.json's Config naming a digest that is not there.
    let other = TestRoot::new("load-bad-src");
    let busybox = tb.plain_ref("busybox:latest");
    other.ok(&["pull", "-q", &busybox]);
    let good = files.s("good.tar");
    other.ok(&["save", "-o", &good, &busybox]);
    let wrong = files.s("wrong-digest.tar");
    python(
        r#"
import io, json, sys, tarfile
t = tarfile.open(sys.argv[1]); out = tarfile.open(sys.argv[2], "w", format=tarfile.USTAR_FORMAT)
for m in t.getmembers():
    data = t.extractfile(m).read() if m.isfile() else None
    if m.name == "manifest.json":
        doc = json.loads(data); doc[0]["Config"] = "blobs/sha256/" + "1" * 64
        data = json.dumps(doc).encode(); m.size = len(data)
    if m.name == "index.json":
        continue
    out.addfile(m, io.BytesIO(data) if data is not None else None)
out.close()
"#,
        &[&good, &wrong],
    );
    let (_, stderr) = root.fails(&["load", "-i", &wrong]);
    let line = assert_one_error_line(&stderr);
    assert!(line.contains(&"1".repeat(64)), "{line}");
    assert_nothing_left(&root);

    // Cut short, in the middle of a blob and at a member boundary.
    let bytes = fs::read(&good).unwrap();
    for cut in [bytes.len() / 2, 3 * 512] {
        let cut_path = files.join(&format!("cut-{cut}.tar"));
        fs::write(&cut_path, &bytes[..cut]).unwrap();
        let (_, stderr) = root.fails(&["load", "-i", cut_path.to_str().unwrap()]);
        let line = assert_one_error_line(&stderr);
        assert!(
            line.contains("cut short") || line.contains("not in the archive"),
            "{cut}: {line}"
        );
        assert_nothing_left(&root);
    }
    // Not an archive at all.
    let junk = files.join("junk");
    fs::write(&junk, b"hello, not a tar").unwrap();
    let (_, stderr) = root.fails(&["load", "-i", junk.to_str().unwrap()]);
    assert_one_error_line(&stderr);
    assert_nothing_left(&root);
}

#[test]
fn copy_to_layouts_and_archives_is_read_by_umoci_and_skopeo() {
    let tb = testbed();
    let root = TestRoot::new("copy-layout");
    let files = Scratch::new(&root);
    let busybox = tb.plain_ref("busybox:latest");
    let redis = tb.plain_ref("redis:7");
    let layout = files.join("layout");
    let l = layout.display().to_string();

    // registry → layout (a temporary pull: the store names nothing after).
    root.ok(&[
        "copy",
        &format!("docker://{busybox}"),
        &format!("oci:{l}:bb"),
    ]);
    assert_eq!(root.ref_names(), Vec::<String>::new());
    let inspect: Value =
        serde_json::from_str(&skopeo(&["inspect", &format!("oci:{l}:bb")])).unwrap();
    assert_eq!(inspect["Digest"], registry_digest(&busybox));
    run_tool(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{l}:bb"),
            files.join("bundle").to_str().unwrap(),
        ],
    );
    assert!(files.join("bundle/rootfs/bin/busybox").exists());

    // store → the same layout under another name; both entries stay.
    root.ok(&["pull", "-q", &redis]);
    root.ok(&["copy", &redis, &format!("oci:{l}:redis")]);
    assert_eq!(
        layout_entry(&layout, "redis")["digest"],
        image(&root, &redis)["manifest"]
    );
    layout_entry(&layout, "bb");
    // Replacing a name keeps one entry of that name.
    root.ok(&["copy", &redis, &format!("oci:{l}:bb")]);
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "{index}");

    // layout → store, → archives, → registry; each read back by skopeo.
    root.ok(&["copy", &format!("oci:{l}:redis"), "from-layout:1"]);
    assert_eq!(
        image(&root, "docker.io/library/from-layout:1")["manifest"],
        image(&root, &redis)["manifest"]
    );
    let da = files.s("copy-docker.tar");
    root.ok(&[
        "copy",
        &format!("oci:{l}:redis"),
        &format!("docker-archive:{da}:team/redis:9"),
    ]);
    let inspect: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--config",
        &format!("docker-archive:{da}"),
    ]))
    .unwrap();
    assert_eq!(
        inspect["rootfs"],
        registry_config(&redis, &[])["rootfs"],
        "{inspect}"
    );
    // skopeo's @N picks an archive's image by position.
    root.ok(&["copy", &format!("docker-archive:{da}:@0"), "at-zero:1"]);
    assert_eq!(
        image(&root, "docker.io/library/at-zero:1")["manifest"],
        image(&root, &redis)["manifest"]
    );
    let oa = files.s("copy-oci.tar");
    root.ok(&[
        "copy",
        &format!("docker-archive:{da}"),
        &format!("oci-archive:{oa}:r"),
    ]);
    let inspect: Value =
        serde_json::from_str(&skopeo(&["inspect", &format!("oci-archive:{oa}:r")])).unwrap();
    assert_eq!(inspect["Digest"], image(&root, &redis)["manifest"]);
    let (_, dest) = tb.unique_copy("busybox:latest");
    root.ok(&[
        "copy",
        &format!("oci-archive:{oa}:r"),
        &format!("docker://{dest}"),
    ]);
    assert_eq!(registry_digest(&dest), registry_digest(&redis));
    let names = root.ref_names();
    assert!(
        names.iter().all(|n| !n.contains("img-copy")),
        "a temporary name stayed: {names:?}"
    );
    root.assert_fsck_clean();

    // A layout whose layer blob is a symlink (to a file with the right bytes) is refused.
    let fresh = TestRoot::new("copy-layout-symlink");
    let entry = layout_entry(&layout, "redis");
    let manifest = layout_json(&layout, entry["digest"].as_str().unwrap());
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let blob = layout
        .join("blobs/sha256")
        .join(layer.strip_prefix("sha256:").unwrap());
    let moved = files.join("moved-layer");
    fs::rename(&blob, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &blob).unwrap();
    let (_, stderr) = fresh.fails(&["copy", &format!("oci:{l}:redis"), "sym:1"]);
    let line = assert_one_error_line(&stderr);
    assert!(
        line.contains("symlink") && line.contains(layer.strip_prefix("sha256:").unwrap()),
        "{line}"
    );
    assert_eq!(fresh.ref_names(), Vec::<String>::new());
}

#[test]
fn save_rmi_load_round_trip_keeps_every_digest() {
    let tb = testbed();
    let root = TestRoot::new("round-trip");
    let files = Scratch::new(&root);
    let names = [
        tb.plain_ref("busybox:latest"),
        tb.plain_ref("multi:latest"),
        tb.plain_ref("busybox:v2s2"),
    ];
    for n in &names {
        root.ok(&["pull", "-q", n]);
    }
    let before: Vec<Value> = names.iter().map(|n| image(&root, n)).collect();
    let archive = files.s("rt.tar");
    root.ok(&["save", "-o", &archive, &names[0], &names[1], &names[2]]);
    root.ok(&["rmi", &names[0], &names[1], &names[2]]);
    root.ok(&["gc"]);
    assert!(root.blob_files().is_empty());
    let out = root.ok(&["load", "-i", &archive]);
    for n in &names {
        assert!(out.contains(&format!("Loaded image: {n}")), "{out}");
    }
    for (n, b) in names.iter().zip(&before) {
        let after = image(&root, n);
        assert_eq!(after["manifest"], b["manifest"], "{n}");
        assert_eq!(after["config"], b["config"], "{n}");
        // A multi-platform image is saved as its stored platform's manifest (the index lists
        // platforms the store does not hold), so only single-platform images keep the top digest.
        if b["platform"].is_null() {
            assert_eq!(after["digest"], b["digest"], "{n}");
        }
    }
    root.assert_fsck_clean();
    // The Docker manifest's served bytes came along: a push reproduces the registry's digest.
    let (_, dest) = tb.unique_copy("busybox:latest");
    root.ok(&["push", &names[2], &dest]);
    assert_eq!(registry_digest(&dest), registry_digest(&names[2]));
    // A second save of the loaded images is the same archive.
    let again = files.s("rt2.tar");
    root.ok(&["save", "-o", &again, &names[0], &names[1], &names[2]]);
    assert_eq!(
        sha256_hex(&fs::read(&archive).unwrap()),
        sha256_hex(&fs::read(&again).unwrap())
    );
}

#[test]
#[cfg_attr(not(img_root), ignore = "needs root (img run)")]
fn a_loaded_image_runs() {
    let tb = testbed();
    let root = TestRoot::new("load-run");
    let files = Scratch::new(&root);
    let busybox = tb.plain_ref("busybox:latest");
    root.ok(&["pull", "-q", &busybox]);
    let archive = files.s("run.tar");
    root.ok(&["save", "-o", &archive, &busybox]);
    root.ok(&["rmi", &busybox]);
    root.ok(&["gc"]);
    root.ok(&["load", "-q", "-i", &archive]);
    let out = root.ok(&["run", "--rm", &busybox, "echo", "loaded and running"]);
    assert_eq!(out.trim(), "loaded and running");
}
