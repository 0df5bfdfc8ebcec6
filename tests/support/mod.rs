//! Shared harness of the end-to-end tests: the local registry test bed (`tools/testbed`), a
//! fresh store root per test, a runner for the `img` binary, and observers that do not go
//! through img (skopeo, sha256sum, curl, the registry's access log, the files on disk).
//!
//! Every test binary includes this file; not all of them use every helper.
#![allow(dead_code)]

pub mod proxy;
pub mod tree;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// The OCI image manifest media type (what img records for a manifest without `mediaType`).
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The image-spec annotation that names a reference in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// img's annotation on an `index.json` entry stored in another form than the registry serves
/// (a Docker manifest or list kept as OCI): the registry's digest.
pub const REGISTRY_DIGEST: &str = "io.img.digest";

/// The digest the registry serves for an `index.json` entry: its `io.img.digest` annotation
/// when img converted the document, else its own digest.
pub fn registry_digest_of(entry: &Value) -> String {
    entry["annotations"][REGISTRY_DIGEST]
        .as_str()
        .or(entry["digest"].as_str())
        .expect("an index.json entry has a digest")
        .to_string()
}

/// The OCI media type img stores for a registry's config or layer media type (Docker types
/// are mapped to their OCI equivalents; OCI types stay).
pub fn oci_blob_type(media_type: &str) -> &str {
    match media_type {
        "application/vnd.docker.container.image.v1+json" => {
            "application/vnd.oci.image.config.v1+json"
        }
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.v1.tar+gzip"
        }
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        }
        other => other,
    }
}

/// What `tools/testbed up` wrote to its env file.
#[derive(Debug, Clone)]
pub struct Testbed {
    /// The test bed's state directory.
    pub dir: PathBuf,
    /// The plain http registry, no auth (`127.0.0.1:5000`).
    pub plain: String,
    /// The https registry with Basic auth (`127.0.0.1:5001`).
    pub tls: String,
    /// The TLS registry's user.
    pub user: String,
    /// The TLS registry's password.
    pub pass: String,
    /// The CA certificate of the TLS registry.
    pub ca: PathBuf,
    /// The plain registry's access log.
    pub plain_log: PathBuf,
    /// The TLS registry's access log.
    pub tls_log: PathBuf,
    /// The OCI layouts the fixtures were built in.
    pub oci: PathBuf,
    /// An ordinary account with subordinate ids, for the rootless tests.
    pub rootless_user: String,
}

impl Testbed {
    /// `127.0.0.1:5000/<image>`.
    pub fn plain_ref(&self, image: &str) -> String {
        format!("{}/{image}", self.plain)
    }

    /// Whether `multi:v2s2` exists (the test bed skips it when skopeo cannot push it).
    pub fn has_multi_v2s2(&self) -> bool {
        !self.dir.join("multi-v2s2.skipped").exists()
    }

    /// Every fixture of the plain registry except `large:latest` (benchmarks only).
    pub fn fixtures(&self) -> Vec<&'static str> {
        let mut all = vec![
            "busybox:latest",
            "busybox:v2s2",
            "redis:7",
            "redis:7-zstd",
            "multi:latest",
            "edge:latest",
        ];
        if self.has_multi_v2s2() {
            all.push("multi:v2s2");
        }
        all
    }

    /// The `--policy` arguments for skopeo copy (the test bed's accept-anything policy).
    fn skopeo_policy(&self) -> Vec<String> {
        let policy = self.dir.join("policy.json");
        if policy.exists() {
            vec!["--policy".into(), policy.display().to_string()]
        } else {
            Vec::new()
        }
    }

    /// Copy a fixture of the plain registry to a repository no other test uses, and return
    /// the new repository path (`t-…/busybox`) and full reference (`127.0.0.1:5000/t-…/busybox:latest`).
    pub fn unique_copy(&self, image: &str) -> (String, String) {
        let (repo, tag) = image.split_once(':').expect("fixture as repo:tag");
        let unique_repo = format!("t-{}/{repo}", unique());
        let dest = format!("{}/{unique_repo}:{tag}", self.plain);
        let mut args = self.skopeo_policy();
        args.extend([
            "copy".into(),
            "--quiet".into(),
            "--src-tls-verify=false".into(),
            "--dest-tls-verify=false".into(),
            format!("docker://{}", self.plain_ref(image)),
            format!("docker://{dest}"),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_tool("skopeo", &args);
        (unique_repo, dest)
    }
}

/// Bring the test bed up once per test binary and read its env file. Panics with the test
/// bed's stderr if it cannot come up.
pub fn testbed() -> &'static Testbed {
    static TESTBED: OnceLock<Testbed> = OnceLock::new();
    TESTBED.get_or_init(|| {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = Command::new(repo.join("tools/testbed"))
            .arg("up")
            .current_dir(repo)
            .stdin(Stdio::null())
            .output()
            .expect("cannot run tools/testbed");
        if !out.status.success() {
            panic!(
                "tools/testbed up failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let dir = std::env::var_os("IMG_TESTBED_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/tmp/img-testbed"));
        let env_file = dir.join("env");
        let text =
            fs::read_to_string(&env_file).unwrap_or_else(|e| panic!("{}: {e}", env_file.display()));
        let vars: BTreeMap<&str, &str> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        let var = |k: &str| -> String {
            vars.get(k)
                .unwrap_or_else(|| panic!("{} has no {k}", env_file.display()))
                .to_string()
        };
        Testbed {
            dir: PathBuf::from(var("IMG_TB_DIR")),
            plain: var("IMG_TB_PLAIN"),
            tls: var("IMG_TB_TLS"),
            user: var("IMG_TB_USER"),
            pass: var("IMG_TB_PASS"),
            ca: PathBuf::from(var("IMG_TB_CA")),
            plain_log: PathBuf::from(var("IMG_TB_PLAIN_LOG")),
            tls_log: PathBuf::from(var("IMG_TB_TLS_LOG")),
            oci: PathBuf::from(var("IMG_TB_OCI")),
            rootless_user: var("IMG_TB_ROOTLESS_USER"),
        }
    })
}

/// A value unique across tests and test runs, usable in paths and repository names.
pub fn unique() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() % 1_000_000_000_000);
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// What one run of a command produced.
#[derive(Debug)]
pub struct Run {
    /// The command line, for messages.
    pub cmdline: String,
    /// The exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// What a finished command left, under the name `cmdline`.
    pub fn from_output(cmdline: String, out: Output) -> Run {
        Run {
            cmdline,
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panic (showing everything) unless the command exited 0.
    pub fn assert_ok(&self) -> &Run {
        assert!(self.code == 0, "expected success: {self}");
        self
    }

    /// Panic (showing everything) unless the command failed.
    pub fn assert_failed(&self) -> &Run {
        assert!(self.code != 0, "expected a failure: {self}");
        self
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` exited {}\n--- stdout:\n{}--- stderr:\n{}---",
            self.cmdline, self.code, self.stdout, self.stderr
        )
    }
}

/// A fresh store root for one test, under `target/test-roots/`, with a runner for img. The
/// directory is removed when the test passes and kept (for a look) when it fails.
#[derive(Debug)]
pub struct TestRoot {
    /// The store root.
    pub path: PathBuf,
}

impl TestRoot {
    /// A new, not yet existing root named after the test.
    pub fn new(test: &str) -> TestRoot {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-roots");
        fs::create_dir_all(&base).unwrap_or_else(|e| panic!("{}: {e}", base.display()));
        let path = base.join(format!("{test}-{}", unique()));
        if path.exists() {
            fs::remove_dir_all(&path).unwrap();
        }
        TestRoot { path }
    }

    /// A command running img on this root (`img --root ROOT ARGS…`), IMG_ROOT cleared.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_img"));
        cmd.arg("--root")
            .arg(&self.path)
            .args(args)
            .env_remove("IMG_ROOT")
            .stdin(Stdio::null());
        cmd
    }

    /// A command running img under another program: `PROGRAM PRE… img --root ROOT ARGS…`
    /// (strace, /usr/bin/time), IMG_ROOT cleared.
    pub fn command_under(&self, program: &str, pre: &[&std::ffi::OsStr], args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(pre)
            .arg(env!("CARGO_BIN_EXE_img"))
            .arg("--root")
            .arg(&self.path)
            .args(args)
            .env_remove("IMG_ROOT")
            .stdin(Stdio::null());
        cmd
    }

    /// Run `img --root ROOT ARGS…`.
    pub fn run(&self, args: &[&str]) -> Run {
        let out = self
            .command(args)
            .output()
            .expect("cannot run the img binary");
        Run::from_output(
            format!("img --root {} {}", self.path.display(), args.join(" ")),
            out,
        )
    }

    /// Run img with exactly these arguments (no `--root` added) and extra environment.
    pub fn run_raw(&self, args: &[&str], env: &[(&str, &Path)]) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_img"));
        cmd.args(args).env_remove("IMG_ROOT").stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("cannot run the img binary");
        let env: Vec<String> = env
            .iter()
            .map(|(k, v)| format!("{k}={}", v.display()))
            .collect();
        Run::from_output(format!("{} img {}", env.join(" "), args.join(" ")), out)
    }

    /// Run img, assert it exited 0, return its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args);
        run.assert_ok();
        run.stdout
    }

    /// Run img, assert it exited 0, parse its stdout as JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("img {args:?}: not JSON ({e}): {out}"))
    }

    /// Run img, assert it failed, return its exit code and stderr.
    pub fn fails(&self, args: &[&str]) -> (i32, String) {
        let run = self.run(args);
        run.assert_failed();
        (run.code, run.stderr)
    }

    /// `index.json`, parsed (an empty index when the store was never created).
    pub fn index(&self) -> Value {
        match fs::read(self.path.join("index.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).expect("index.json is JSON"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                serde_json::json!({"schemaVersion": 2, "manifests": []})
            }
            Err(e) => panic!("index.json: {e}"),
        }
    }

    /// The `ref.name` annotations of `index.json`, in file order.
    pub fn ref_names(&self) -> Vec<String> {
        self.index()["manifests"]
            .as_array()
            .expect("index.json has manifests")
            .iter()
            .filter_map(|d| d["annotations"][REF_NAME].as_str().map(str::to_string))
            .collect()
    }

    /// The `index.json` entries named `name`.
    pub fn entries_named(&self, name: &str) -> Vec<Value> {
        self.index()["manifests"]
            .as_array()
            .expect("index.json has manifests")
            .iter()
            .filter(|d| d["annotations"][REF_NAME].as_str() == Some(name))
            .cloned()
            .collect()
    }

    /// Every file under `blobs/` as (`alg:hex` from its path, path).
    pub fn blob_files(&self) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        let blobs = self.path.join("blobs");
        let Ok(algs) = fs::read_dir(&blobs) else {
            return out;
        };
        for alg in algs {
            let alg = alg.unwrap();
            if !alg.file_type().unwrap().is_dir() {
                out.push((
                    format!("?:{}", alg.file_name().to_string_lossy()),
                    alg.path(),
                ));
                continue;
            }
            for blob in fs::read_dir(alg.path()).unwrap() {
                let blob = blob.unwrap();
                out.push((
                    format!(
                        "{}:{}",
                        alg.file_name().to_string_lossy(),
                        blob.file_name().to_string_lossy()
                    ),
                    blob.path(),
                ));
            }
        }
        out.sort();
        out
    }

    /// The digests (`sha256:…`) of every blob file.
    pub fn blob_digests(&self) -> Vec<String> {
        self.blob_files().into_iter().map(|(d, _)| d).collect()
    }

    /// Where the blob `digest` lives.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let (alg, hex) = digest.split_once(':').expect("alg:hex");
        self.path.join("blobs").join(alg).join(hex)
    }

    /// Files left in `ingest/` (temp files of unfinished writes).
    pub fn ingest_files(&self) -> Vec<PathBuf> {
        match fs::read_dir(self.path.join("ingest")) {
            Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Assert every file under `blobs/sha256/` hashes (with sha256sum) to its own name.
    pub fn assert_blobs_hash_to_their_names(&self) {
        let files = self.blob_files();
        assert!(!files.is_empty(), "no blobs under {}", self.path.display());
        for (digest, _) in &files {
            assert!(digest.starts_with("sha256:"), "unexpected blob {digest}");
        }
        let paths: Vec<&str> = files.iter().map(|(_, p)| p.to_str().unwrap()).collect();
        let out = run_tool("sha256sum", &paths);
        let mut checked = 0;
        for line in out.lines() {
            let (hex, path) = line.split_once("  ").expect("sha256sum output");
            let name = Path::new(path).file_name().unwrap().to_string_lossy();
            assert_eq!(hex, name, "blob {path} hashes to {hex}");
            checked += 1;
        }
        assert_eq!(checked, files.len());
    }

    /// Assert `img fsck` exits 0 and reports no problem.
    pub fn assert_fsck_clean(&self) {
        let run = self.run(&["fsck", "--json"]);
        run.assert_ok();
        let report: Value = serde_json::from_str(&run.stdout).expect("fsck --json is JSON");
        assert_eq!(report["problems"], serde_json::json!([]), "{run}");
        assert_eq!(
            report["blobs"].as_u64().unwrap() as usize,
            self.blob_files().len(),
            "fsck checked a different number of blobs than blobs/ holds: {run}"
        );
    }
}

impl Drop for TestRoot {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("store root kept for inspection: {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Run a tool, assert it exited 0, return its stdout.
pub fn run_tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let run = Run::from_output(format!("{program} {}", args.join(" ")), out);
    run.assert_ok();
    run.stdout
}

/// Run a tool and return what it did, whatever its exit code.
pub fn try_tool(program: &str, args: &[&str]) -> Run {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    Run::from_output(format!("{program} {}", args.join(" ")), out)
}

/// The lower-case hex sha256 of `bytes`, computed by sha256sum.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cannot run sha256sum");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// The manifest (or index) exactly as the registry serves it: `skopeo inspect --raw`.
pub fn registry_raw(reference: &str) -> Vec<u8> {
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{reference}"))
        .stdin(Stdio::null())
        .output()
        .expect("cannot run skopeo");
    assert!(
        out.status.success(),
        "skopeo inspect --raw {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The registry's manifest, parsed.
pub fn registry_manifest(reference: &str) -> Value {
    serde_json::from_slice(&registry_raw(reference)).expect("manifest is JSON")
}

/// The digest (`sha256:…`) of what the registry serves for `reference`.
pub fn registry_digest(reference: &str) -> String {
    format!("sha256:{}", sha256_hex(&registry_raw(reference)))
}

/// The image config as skopeo reads it from the registry (`skopeo inspect --config`).
pub fn registry_config(reference: &str, extra: &[&str]) -> Value {
    let mut args = vec!["inspect", "--tls-verify=false", "--config"];
    args.extend(extra);
    let image = format!("docker://{reference}");
    args.push(&image);
    serde_json::from_str(&run_tool("skopeo", &args)).expect("config is JSON")
}

/// The digests of everything an image manifest references: its config, then its layers.
pub fn manifest_blobs(manifest: &Value) -> Vec<(String, u64)> {
    let mut out = vec![(
        manifest["config"]["digest"].as_str().unwrap().to_string(),
        manifest["config"]["size"].as_u64().unwrap(),
    )];
    for l in manifest["layers"].as_array().expect("manifest has layers") {
        out.push((
            l["digest"].as_str().unwrap().to_string(),
            l["size"].as_u64().unwrap(),
        ));
    }
    out
}

/// How many lines of an access log contain `needle`.
pub fn count_log_lines(log: &Path, needle: &str) -> usize {
    let text = fs::read(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    String::from_utf8_lossy(&text)
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// Wait until every request made before this call is in the plain registry's access log: send
/// one request with a unique marker and wait for its line to appear (requests are logged when
/// they complete, so a finished client's requests are logged by then).
pub fn plain_log_barrier(tb: &Testbed, repo: &str) {
    let marker = format!("img-test-barrier={}", unique());
    let url = format!("http://{}/v2/{repo}/tags/list?{marker}", tb.plain);
    run_tool("curl", &["-s", "-o", "/dev/null", &url]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while count_log_lines(&tb.plain_log, &marker) == 0 {
        assert!(
            Instant::now() < deadline,
            "{} never logged {url}",
            tb.plain_log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Output of img with the parts that change as time passes removed: the CREATED column of a
/// table (its last column) and the `Created:` line of `img inspect`, so that two runs a minute
/// apart compare equal.
pub fn without_ages(text: &str) -> String {
    let mut lines = text.lines().peekable();
    let table = lines
        .peek()
        .is_some_and(|h| h.trim_end().ends_with("CREATED"));
    let mut out = String::new();
    for line in lines {
        if line.starts_with("Created:") {
            continue;
        }
        if table {
            let cells: Vec<&str> = line.split_whitespace().take(4).collect();
            out.push_str(&cells.join(" "));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// The one line of an error message: asserts `stderr` is exactly one line starting `img:` and
/// that nothing panicked.
pub fn assert_one_error_line(stderr: &str) -> &str {
    assert!(!stderr.contains("panicked"), "img panicked:\n{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one line on stderr, got:\n{stderr}"
    );
    assert!(lines[0].starts_with("img: "), "not an img error: {stderr}");
    lines[0]
}

/// Whether this process runs as root (the `Uid:` line of `/proc/self/status`, effective uid).
pub fn is_root() -> bool {
    let status = fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .is_some_and(|euid| euid == "0")
}

/// `$IMG_TB_DIR/hostile.json` (what the hostile/* fixtures are and what a safe unpacker must
/// do with them), parsed; waits up to two minutes for it to appear.
pub fn hostile_json(tb: &Testbed) -> Value {
    let path = tb.dir.join("hostile.json");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(bytes) = fs::read(&path)
            && let Ok(value) = serde_json::from_slice::<Value>(&bytes)
        {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not appear (is tools/testbed up to date?)",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Every place a cgroup of container `id` could be: `/sys/fs/cgroup/<controller>/img/<id>`
/// for each v1 hierarchy, and `/sys/fs/cgroup/img/<id>` (v2).
pub fn cgroup_dirs(id: &str) -> Vec<std::path::PathBuf> {
    let base = std::path::Path::new("/sys/fs/cgroup");
    let mut out = vec![base.join("img").join(id)];
    if let Ok(entries) = std::fs::read_dir(base) {
        for e in entries {
            out.push(e.unwrap().path().join("img").join(id));
        }
    }
    out
}

/// The container ids under `ROOT/containers/` now.
pub fn container_ids(root: &Path) -> std::collections::BTreeSet<String> {
    match fs::read_dir(root.join("containers")) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => std::collections::BTreeSet::new(),
    }
}

/// Run an img command, watching `ROOT/containers/` meanwhile to learn the ids of the
/// containers it makes (even those `--rm` removes again); asserts img did not panic.
pub fn run_watching(
    root: &Path,
    mut cmd: Command,
    cmdline: String,
) -> (Run, std::collections::BTreeSet<String>) {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let waiter = std::thread::spawn(move || cmd.output().expect("cannot run the img binary"));
    let mut seen = std::collections::BTreeSet::new();
    loop {
        let done = waiter.is_finished();
        seen.extend(container_ids(root));
        if done {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let out = waiter.join().expect("the img runner thread panicked");
    let run = Run::from_output(cmdline, out);
    assert!(!run.stderr.contains("panicked"), "img panicked: {run}");
    (run, seen)
}
