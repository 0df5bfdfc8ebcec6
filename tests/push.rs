//! End-to-end tests of `img push`, `img tag` and registry `img copy` against the two registries
//! of `tools/testbed` (plain on :5000, TLS with Basic auth on :5001). Every result is checked
//! with tools that are not img: `skopeo inspect --raw` and `skopeo copy` (which verifies every
//! blob it reads), the registry's own `Docker-Content-Digest` (curl), and the registry's access
//! log, which shows what went over the wire (mounts instead of uploads, HEADs only on a re-push,
//! nothing at all before a refusal).
//!
//! Each test writes to repositories no other test uses (`t-<unique>/…`), so the access log's
//! lines for them are this test's own. img runs in a private environment (no credential file,
//! an empty registries.conf) and its output is checked for the password and for panics.

mod support;

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::proxy::Proxy;
use support::{
    Run, TestRoot, assert_one_error_line, is_root, manifest_blobs, run_tool, sha256_hex, testbed,
    try_tool, unique,
};

/// The Accept header skopeo and img send for manifests (every type the fixtures use).
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json,application/vnd.oci.image.index.v1+json,application/vnd.docker.distribution.manifest.v2+json,application/vnd.docker.distribution.manifest.list.v2+json";

/// Which test bed registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reg {
    /// 127.0.0.1:5000, http, anonymous.
    Plain,
    /// 127.0.0.1:5001, https (the test bed's CA), Basic auth.
    Tls,
}

impl Reg {
    fn addr(self) -> &'static str {
        let tb = testbed();
        match self {
            Reg::Plain => &tb.plain,
            Reg::Tls => &tb.tls,
        }
    }

    fn log(self) -> &'static Path {
        let tb = testbed();
        match self {
            Reg::Plain => &tb.plain_log,
            Reg::Tls => &tb.tls_log,
        }
    }

    /// `http://HOST` or `https://HOST`.
    fn url(self) -> String {
        match self {
            Reg::Plain => format!("http://{}", self.addr()),
            Reg::Tls => format!("https://{}", self.addr()),
        }
    }

    /// curl's arguments to reach it (CA and credentials for the TLS one).
    fn curl_args(self) -> Vec<String> {
        let tb = testbed();
        match self {
            Reg::Plain => Vec::new(),
            Reg::Tls => vec![
                "--cacert".into(),
                tb.ca.display().to_string(),
                "-u".into(),
                format!("{}:{}", tb.user, tb.pass),
            ],
        }
    }

    /// skopeo's arguments to read from it.
    fn skopeo_src_args(self) -> Vec<String> {
        let tb = testbed();
        match self {
            Reg::Plain => vec!["--src-tls-verify=false".into()],
            // the test bed installs its CA in /etc/containers/certs.d
            Reg::Tls => vec!["--src-creds".into(), format!("{}:{}", tb.user, tb.pass)],
        }
    }

    /// A repository path no other test uses, e.g. `t-123-456-0/busybox`.
    fn fresh_repo(name: &str) -> String {
        format!("t-{}/{name}", unique())
    }
}

/// A store root plus a private HOME: no credential file, an empty registries.conf, and
/// whatever files a test writes. img never sees the user's own credentials.
struct Sandbox {
    root: TestRoot,
    home: PathBuf,
}

impl Sandbox {
    fn new(test: &str) -> Sandbox {
        let root = TestRoot::new(test);
        let mut name = root.path.file_name().unwrap().to_os_string();
        name.push("-home");
        let home = root.path.with_file_name(name);
        fs::create_dir_all(home.join("docker")).unwrap();
        fs::write(home.join("registries.conf"), "").unwrap();
        Sandbox { root, home }
    }

    /// `img --root ROOT ARGS…` in the private environment, not yet started.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.root.command(args);
        cmd.env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("XDG_CONFIG_HOME")
            .env("HOME", &self.home)
            .env("DOCKER_CONFIG", self.home.join("docker"))
            .env("IMG_REGISTRIES_CONF", self.home.join("registries.conf"));
        cmd
    }

    /// Run img; the output is checked for the password and for panics.
    fn run(&self, args: &[&str]) -> Run {
        let out = self
            .command(args)
            .output()
            .expect("cannot run the img binary");
        let run = Run {
            cmdline: format!("img {}", args.join(" ")),
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert_no_secret(&run);
        run
    }

    /// Run img, assert it exited 0, return its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args);
        run.assert_ok();
        run.stdout
    }

    /// Run img, assert it failed with one line on stderr, return that line.
    fn fails(&self, args: &[&str]) -> String {
        let run = self.run(args);
        run.assert_failed();
        assert_one_error_line(&run.stderr).to_string()
    }

    /// A docker `config.json` with the TLS registry's credentials (`auth` field), for
    /// `--authfile`.
    fn authfile(&self) -> String {
        let tb = testbed();
        let auth = base64(format!("{}:{}", tb.user, tb.pass).as_bytes());
        let path = self.home.join("auth.json");
        fs::write(
            &path,
            format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, tb.tls),
        )
        .unwrap();
        path.display().to_string()
    }

    /// Pull `reference` (every platform of an index when `all_platforms`, the host's last so
    /// that it is the one the name points at); returns the digest img printed.
    fn pull(&self, reference: &str, all_platforms: bool) -> String {
        if all_platforms {
            self.ok(&["pull", "-q", "--platform", "linux/arm64/v8", reference]);
        }
        self.ok(&["pull", "-q", reference]).trim().to_string()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("scratch directory kept: {}", self.home.display());
        } else {
            let _ = fs::remove_dir_all(&self.home);
        }
    }
}

/// Standard base64 (what docker's `auth` field holds).
fn base64(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Panic if a run printed the password (plain or base64) or panicked.
fn assert_no_secret(run: &Run) {
    let tb = testbed();
    let basic = base64(format!("{}:{}", tb.user, tb.pass).as_bytes());
    for secret in [tb.pass.as_str(), basic.as_str(), "wrong-secret"] {
        assert!(
            !run.stdout.contains(secret) && !run.stderr.contains(secret),
            "a secret leaked into the output: {run}"
        );
    }
    assert!(!run.stderr.contains("panicked"), "img panicked: {run}");
}

/// The `--creds` argument for the TLS registry.
fn creds() -> String {
    let tb = testbed();
    format!("{}:{}", tb.user, tb.pass)
}

/// The manifest exactly as the registry serves it (`skopeo inspect --raw`).
fn served_raw(reg: Reg, reference: &str) -> Vec<u8> {
    let tb = testbed();
    let mut args = vec!["inspect".to_string(), "--raw".to_string()];
    match reg {
        Reg::Plain => args.push("--tls-verify=false".into()),
        Reg::Tls => args.extend(["--creds".into(), creds()]),
    }
    args.push(format!("docker://{reference}"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _ = tb;
    run_tool("skopeo", &args).into_bytes()
}

/// The `Docker-Content-Digest` the registry answers a HEAD of `reference` with (curl).
fn served_digest_header(reg: Reg, repo: &str, tag_or_digest: &str) -> String {
    let url = format!("{}/v2/{repo}/manifests/{tag_or_digest}", reg.url());
    let mut args = vec![
        "-sS".to_string(),
        "--fail".into(),
        "-I".into(),
        "-H".into(),
        format!("Accept: {ACCEPT}"),
    ];
    args.extend(reg.curl_args());
    args.push(url);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let head = run_tool("curl", &args);
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("docker-content-digest")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no Docker-Content-Digest in:\n{head}"))
}

/// Assert the registry serves `repo:tag` as exactly `bytes`, and that `skopeo inspect --raw`,
/// the registry's `Docker-Content-Digest` and `digest` (what img printed) all agree.
fn assert_served(reg: Reg, repo: &str, tag: &str, digest: &str, bytes: &[u8]) {
    let reference = format!("{}/{repo}:{tag}", reg.addr());
    let raw = served_raw(reg, &reference);
    assert!(
        raw == bytes,
        "{reference} serves other bytes than the source:\n{}\nvs\n{}",
        String::from_utf8_lossy(&raw),
        String::from_utf8_lossy(bytes)
    );
    assert_eq!(
        format!("sha256:{}", sha256_hex(&raw)),
        digest,
        "skopeo inspect --raw {reference}"
    );
    assert_eq!(
        served_digest_header(reg, repo, tag),
        digest,
        "Docker-Content-Digest of {reference}"
    );
}

/// One request of an access log.
#[derive(Debug, Clone)]
struct Logged {
    method: String,
    uri: String,
    status: u16,
}

impl std::fmt::Display for Logged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.method, self.uri, self.status)
    }
}

/// Every request for `/v2/<repo>/…` in the registry's access log (combined format:
/// `… "METHOD URI PROTO" STATUS SIZE …`), in order.
fn logged(reg: Reg, repo: &str) -> Vec<Logged> {
    let prefix = format!("/v2/{repo}/");
    let file = fs::File::open(reg.log()).unwrap();
    BufReader::new(file)
        .lines()
        .map_while(std::result::Result::ok)
        .filter_map(|line| {
            let mut parts = line.split('"');
            let request = parts.nth(1)?;
            let after = parts.next()?;
            let mut words = request.split_whitespace();
            let method = words.next()?.to_string();
            let uri = words.next()?.to_string();
            if !uri.starts_with(&prefix) {
                return None;
            }
            let status = after.split_whitespace().next()?.parse().ok()?;
            Some(Logged {
                method,
                uri,
                status,
            })
        })
        .collect()
}

/// Wait until every request made before this call is in the registry's access log: one
/// request with a unique marker, then wait for its line (requests are logged as they complete,
/// in order of completion, so a finished client's requests are logged by then).
fn barrier(reg: Reg, repo: &str) {
    let marker = format!("img-test-barrier={}", unique());
    let url = format!("{}/v2/{repo}/tags/list?{marker}", reg.url());
    let mut args = vec!["-s".to_string(), "-o".into(), "/dev/null".into()];
    args.extend(reg.curl_args());
    args.push(url.clone());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_tool("curl", &args);
    wait_for(&format!("{} to log {url}", reg.log().display()), || {
        logged(reg, repo).iter().any(|l| l.uri.contains(&marker))
    });
}

/// The requests for `repo` once everything sent so far is logged, barrier requests left out.
fn settled_log(reg: Reg, repo: &str) -> Vec<Logged> {
    barrier(reg, repo);
    logged(reg, repo)
        .into_iter()
        .filter(|l| !l.uri.contains("img-test-barrier="))
        .collect()
}

/// Poll `done` every 10 ms until it holds; panic naming `what` after two minutes.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Requests that carry blob bytes to the registry: a PATCH or PUT of an upload session.
fn blob_writes(requests: &[Logged]) -> Vec<&Logged> {
    requests
        .iter()
        .filter(|l| (l.method == "PATCH" || l.method == "PUT") && l.uri.contains("/blobs/uploads/"))
        .collect()
}

/// The digest the plain registry serves for a fixture, and its bytes.
fn fixture(image: &str) -> (String, Vec<u8>) {
    let raw = served_raw(Reg::Plain, &testbed().plain_ref(image));
    (format!("sha256:{}", sha256_hex(&raw)), raw)
}

/// A port on 127.0.0.1 where nothing listens (bound, then let go).
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `skopeo copy` of `reference` into a new OCI layout (skopeo verifies every blob against its
/// digest as it copies); returns the layout's manifest digest and its config and layer digests.
fn skopeo_pull(reg: Reg, reference: &str, layout: &Path) -> (String, Vec<String>) {
    let tb = testbed();
    let mut args = vec![
        "--policy".to_string(),
        tb.dir.join("policy.json").display().to_string(),
        "copy".into(),
        "--quiet".into(),
        "--preserve-digests".into(),
    ];
    args.extend(reg.skopeo_src_args());
    args.push(format!("docker://{reference}"));
    args.push(format!("oci:{}:x", layout.display()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_tool("skopeo", &args);
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let (alg, hex) = digest.split_once(':').unwrap();
    let manifest: Value =
        serde_json::from_slice(&fs::read(layout.join("blobs").join(alg).join(hex)).unwrap())
            .unwrap();
    let blobs = manifest_blobs(&manifest)
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    (digest, blobs)
}

// ---------------------------------------------------------------------------------------------
// push: digests kept

/// Push `image` (a plain fixture) to a fresh repository of `reg` and check what is served.
fn push_keeps_the_digest(image: &str, reg: Reg, all_platforms: bool, auth: &[&str]) {
    let sb = Sandbox::new("push-digest");
    let source = testbed().plain_ref(image);
    let (digest, bytes) = fixture(image);
    assert_eq!(sb.pull(&source, all_platforms), digest, "img pull {source}");
    let (name, tag) = image.split_once(':').unwrap();
    let repo = Reg::fresh_repo(name);
    let dest = format!("{}/{repo}:{tag}", reg.addr());
    let mut args = vec!["push", "-q"];
    args.extend(auth);
    args.extend([source.as_str(), dest.as_str()]);
    let out = sb.ok(&args);
    assert_eq!(out.trim(), digest, "img push -q {dest}");
    assert_served(reg, &repo, tag, &digest, &bytes);
    if all_platforms {
        // the children went up before the index, each as served by the source
        let index: Value = serde_json::from_slice(&bytes).unwrap();
        for child in index["manifests"].as_array().unwrap() {
            let d = child["digest"].as_str().unwrap();
            let at = format!("{}/{repo}@{d}", reg.addr());
            assert_eq!(format!("sha256:{}", sha256_hex(&served_raw(reg, &at))), d);
        }
    }
}

#[test]
fn an_oci_image_pushed_to_the_plain_registry_keeps_its_digest() {
    push_keeps_the_digest("busybox:latest", Reg::Plain, false, &[]);
}

#[test]
fn a_docker_v2s2_image_pushed_to_the_plain_registry_keeps_its_digest() {
    push_keeps_the_digest("busybox:v2s2", Reg::Plain, false, &[]);
}

#[test]
fn an_oci_image_pushed_with_creds_to_the_tls_registry_keeps_its_digest() {
    push_keeps_the_digest("redis:7", Reg::Tls, false, &["--creds", &creds()]);
}

#[test]
fn a_docker_v2s2_image_pushed_with_an_authfile_to_the_tls_registry_keeps_its_digest() {
    let sb = Sandbox::new("authfile");
    let authfile = sb.authfile();
    push_keeps_the_digest("busybox:v2s2", Reg::Tls, false, &["--authfile", &authfile]);
}

#[test]
fn a_multi_platform_oci_index_is_pushed_whole_to_both_registries() {
    push_keeps_the_digest("multi:latest", Reg::Plain, true, &[]);
    push_keeps_the_digest("multi:latest", Reg::Tls, true, &["--creds", &creds()]);
}

#[test]
fn a_multi_platform_docker_list_is_pushed_whole_to_both_registries() {
    if !testbed().has_multi_v2s2() {
        eprintln!("skipped: the test bed has no multi:v2s2 (skopeo could not push it)");
        return;
    }
    push_keeps_the_digest("multi:v2s2", Reg::Plain, true, &[]);
    push_keeps_the_digest("multi:v2s2", Reg::Tls, true, &["--creds", &creds()]);
}

#[test]
fn one_stored_platform_of_an_index_is_pushed_as_that_platforms_manifest() {
    let sb = Sandbox::new("push-one-platform");
    let source = testbed().plain_ref("multi:latest");
    let (_, index) = fixture("multi:latest");
    let index: Value = serde_json::from_slice(&index).unwrap();
    sb.pull(&source, false);
    let amd64 = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == "amd64")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let repo = Reg::fresh_repo("multi");
    let dest = format!("{}/{repo}:one", testbed().plain);
    let out = sb.ok(&["push", "-q", &source, &dest]);
    assert_eq!(out.trim(), amd64);
    assert_eq!(served_digest_header(Reg::Plain, &repo, "one"), amd64);
}

#[test]
fn quiet_push_prints_only_the_digest() {
    let sb = Sandbox::new("push-quiet");
    let source = testbed().plain_ref("busybox:latest");
    let (digest, _) = fixture("busybox:latest");
    sb.pull(&source, false);
    let dest = format!("{}/{}:q", testbed().plain, Reg::fresh_repo("busybox"));
    let run = sb.run(&["push", "-q", &source, &dest]);
    run.assert_ok();
    assert_eq!(run.stdout, format!("{digest}\n"), "{run}");
    assert_eq!(run.stderr, "", "{run}");
}

// ---------------------------------------------------------------------------------------------
// push: what goes over the wire

#[test]
fn a_pushed_image_pulled_back_by_img_and_by_skopeo_is_identical() {
    let sb = Sandbox::new("push-pull-back");
    let source = testbed().plain_ref("redis:7");
    let (digest, bytes) = fixture("redis:7");
    let want_blobs: Vec<String> = manifest_blobs(&serde_json::from_slice(&bytes).unwrap())
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    sb.pull(&source, false);
    let repo = Reg::fresh_repo("redis");
    let dest = format!("{}/{repo}:7", testbed().tls);
    sb.ok(&["push", "--creds", &creds(), &source, &dest]);

    let layout = sb.home.join("skopeo-layout");
    let (sk_digest, sk_blobs) = skopeo_pull(Reg::Tls, &dest, &layout);
    assert_eq!(sk_digest, digest, "skopeo copy of {dest}");
    assert_eq!(sk_blobs, want_blobs, "skopeo copy of {dest}");

    let back = Sandbox::new("push-pull-back-img");
    let pulled = back.ok(&["pull", "-q", "--creds", &creds(), &dest]);
    assert_eq!(pulled.trim(), digest, "img pull {dest}");
    for blob in &want_blobs {
        let mine = back.root.blob_path(blob);
        let theirs = layout.join("blobs").join(blob.replacen(':', "/", 1));
        assert!(
            fs::read(&mine).unwrap() == fs::read(&theirs).unwrap(),
            "blob {blob} differs between img's store and skopeo's layout"
        );
    }
    back.root.assert_fsck_clean();
    back.root.assert_blobs_hash_to_their_names();
}

#[test]
fn a_push_within_one_registry_mounts_every_blob_and_uploads_no_bytes() {
    let sb = Sandbox::new("push-mount");
    let source = testbed().plain_ref("redis:7");
    let (digest, bytes) = fixture("redis:7");
    let blobs = manifest_blobs(&serde_json::from_slice(&bytes).unwrap());
    sb.pull(&source, false);
    let repo = Reg::fresh_repo("redis");
    let dest = format!("{}/{repo}:7", testbed().plain);
    let pushed: Value = serde_json::from_str(&sb.ok(&["push", "--json", &source, &dest]))
        .expect("push --json is JSON");
    assert_eq!(pushed["digest"], digest.as_str(), "{pushed}");
    assert_eq!(pushed["mountedBlobs"], blobs.len(), "{pushed}");
    assert_eq!(pushed["uploadedBlobs"], 0, "{pushed}");
    assert_eq!(pushed["uploadedBytes"], 0, "{pushed}");
    assert_served(Reg::Plain, &repo, "7", &digest, &bytes);

    let log = settled_log(Reg::Plain, &repo);
    let shown: Vec<String> = log.iter().map(ToString::to_string).collect();
    assert_eq!(
        blob_writes(&log).len(),
        0,
        "blob bytes were sent: {shown:#?}"
    );
    let mounts: Vec<&Logged> = log
        .iter()
        .filter(|l| l.method == "POST" && l.uri.contains("mount=") && l.uri.contains("from=redis"))
        .collect();
    assert_eq!(mounts.len(), blobs.len(), "one mount per blob: {shown:#?}");
    assert!(mounts.iter().all(|l| l.status == 201), "{shown:#?}");
    for (blob, _) in &blobs {
        assert!(
            mounts
                .iter()
                .any(|l| l.uri.contains(&format!("mount={blob}"))),
            "{blob} was not mounted: {shown:#?}"
        );
    }
}

#[test]
fn a_repush_of_what_the_registry_has_is_heads_only() {
    let sb = Sandbox::new("push-repush");
    let source = testbed().plain_ref("redis:7");
    let (digest, bytes) = fixture("redis:7");
    let blobs = manifest_blobs(&serde_json::from_slice(&bytes).unwrap());
    sb.pull(&source, false);
    let repo = Reg::fresh_repo("redis");
    let dest = format!("{}/{repo}:7", testbed().tls);
    sb.ok(&["push", "--creds", &creds(), &source, &dest]);
    let before = settled_log(Reg::Tls, &repo).len();

    let pushed: Value =
        serde_json::from_str(&sb.ok(&["push", "--json", "--creds", &creds(), &source, &dest]))
            .expect("push --json is JSON");
    assert_eq!(pushed["digest"], digest.as_str(), "{pushed}");
    assert_eq!(pushed["presentBlobs"], blobs.len(), "{pushed}");
    assert_eq!(pushed["uploadedBlobs"], 0, "{pushed}");
    let log = settled_log(Reg::Tls, &repo);
    let again: Vec<&Logged> = log[before..].iter().filter(|l| l.status != 401).collect();
    let shown: Vec<String> = again.iter().map(ToString::to_string).collect();
    // one request meets the registry's challenge, not each of the concurrent blob HEADs
    let challenged = log[before..].iter().filter(|l| l.status == 401).count();
    assert!(
        challenged <= 1,
        "{challenged} requests answered 401: {shown:#?}"
    );
    assert!(
        again.iter().all(|l| l.method == "HEAD" && l.status == 200),
        "a re-push did more than HEADs: {shown:#?}"
    );
    for (blob, _) in &blobs {
        assert!(
            again
                .iter()
                .any(|l| l.uri.ends_with(&format!("/blobs/{blob}"))),
            "no HEAD of {blob}: {shown:#?}"
        );
    }
    assert_served(Reg::Tls, &repo, "7", &digest, &bytes);
}

#[test]
fn a_push_killed_halfway_completes_when_run_again() {
    let sb = Sandbox::new("push-killed");
    let source = testbed().plain_ref("large:latest");
    let (digest, bytes) = fixture("large:latest");
    sb.pull(&source, false);
    let repo = Reg::fresh_repo("large");
    let dest = format!("{}/{repo}:latest", testbed().tls);
    let args = [
        "push",
        "--chunk-size",
        "4",
        "--creds",
        &creds(),
        &source,
        &dest,
    ];

    // killed once the registry has taken the first chunk of some blob (an upload in progress)
    let mut child = sb
        .command(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("a chunk of the push to be logged", || {
        logged(Reg::Tls, &repo)
            .iter()
            .any(|l| l.method == "PATCH" && l.status == 202)
    });
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the push finished before it was killed");
    let reference = format!("{}/{repo}:latest", testbed().tls);
    let inspect = try_tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--creds",
            &creds(),
            &format!("docker://{reference}"),
        ],
    );
    assert_ne!(
        inspect.code, 0,
        "the manifest is there after the kill: {inspect}"
    );
    let first = settled_log(Reg::Tls, &repo);
    let before = first.len();
    // the blobs whose upload the first run finished (the session's PUT naming the digest)
    let finished: Vec<String> = first
        .iter()
        .filter(|l| l.method == "PUT" && l.status == 201 && l.uri.contains("/blobs/uploads/"))
        .filter_map(|l| l.uri.split("digest=").nth(1))
        .map(|d| d.split('&').next().unwrap().replace("%3A", ":"))
        .collect();

    assert_eq!(
        sb.ok(&[
            "push",
            "-q",
            "--chunk-size",
            "4",
            "--creds",
            &creds(),
            &source,
            &dest
        ])
        .trim(),
        digest
    );
    assert_served(Reg::Tls, &repo, "latest", &digest, &bytes);
    let layout = sb.home.join("skopeo-layout");
    let (sk_digest, _) = skopeo_pull(Reg::Tls, &reference, &layout);
    assert_eq!(sk_digest, digest);
    // the second run found what the first finished (HEAD 200) and sent it no more
    let log = settled_log(Reg::Tls, &repo);
    let second = &log[before..];
    let shown: Vec<String> = second.iter().map(ToString::to_string).collect();
    for blob in &finished {
        assert!(
            second
                .iter()
                .any(|l| l.method == "HEAD" && l.status == 200 && l.uri.ends_with(blob.as_str())),
            "{blob}, uploaded before the kill, was not found by the second run: {shown:#?}"
        );
        assert!(
            !second
                .iter()
                .any(|l| l.method != "HEAD" && l.method != "GET" && l.uri.contains(&blob[7..])),
            "{blob}, uploaded before the kill, was sent again: {shown:#?}"
        );
    }
    let finishing = second
        .iter()
        .filter(|l| l.method == "PUT" && l.uri.contains("/blobs/uploads/"))
        .count();
    assert_eq!(
        finishing + finished.len(),
        manifest_blobs(&serde_json::from_slice(&bytes).unwrap()).len(),
        "every blob is uploaded once in all: {shown:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// push: refusals

#[test]
fn a_push_with_wrong_creds_fails_with_one_line_and_no_secret() {
    let sb = Sandbox::new("push-wrong-creds");
    let source = testbed().plain_ref("busybox:latest");
    sb.pull(&source, false);
    let dest = format!("{}/{}:1", testbed().tls, Reg::fresh_repo("busybox"));
    let line = sb.fails(&["push", "--creds", "tester:wrong-secret", &source, &dest]);
    assert!(line.contains(&dest), "{line}");
    assert!(line.contains("refused the credentials"), "{line}");
    let line = sb.fails(&["push", &source, &dest]);
    assert!(line.contains(&dest) && line.contains("anonymous"), "{line}");
}

#[test]
fn a_push_to_a_port_where_nothing_listens_fails_with_one_line() {
    let sb = Sandbox::new("push-closed-port");
    let source = testbed().plain_ref("busybox:latest");
    sb.pull(&source, false);
    let dest = format!("127.0.0.1:{}/a/busybox:1", closed_port());
    let line = sb.fails(&["push", "--retry", "1", &source, &dest]);
    assert!(line.contains(&dest), "{line}");
}

#[test]
fn a_digest_pinned_destination_that_differs_is_refused_before_any_request() {
    let sb = Sandbox::new("push-pinned");
    let source = testbed().plain_ref("busybox:latest");
    let (digest, bytes) = fixture("busybox:latest");
    sb.pull(&source, false);
    let repo = Reg::fresh_repo("busybox");
    let wrong = format!("sha256:{}", "0".repeat(64));
    let dest = format!("{}/{repo}@{wrong}", testbed().plain);
    let line = sb.fails(&["push", &source, &dest]);
    assert!(line.contains(&dest) && line.contains(&digest), "{line}");
    let log = settled_log(Reg::Plain, &repo);
    assert!(log.is_empty(), "requests before the refusal: {log:#?}");

    // pinned by its own digest, it goes up (under that digest)
    let dest = format!("{}/{repo}@{digest}", testbed().plain);
    assert_eq!(sb.ok(&["push", "-q", &source, &dest]).trim(), digest);
    let raw = served_raw(Reg::Plain, &dest);
    assert!(raw == bytes);
}

// ---------------------------------------------------------------------------------------------
// tag

#[test]
fn a_tagged_image_pushes_under_its_new_name() {
    let sb = Sandbox::new("tag-push");
    let source = testbed().plain_ref("busybox:v2s2");
    let (digest, bytes) = fixture("busybox:v2s2");
    sb.pull(&source, false);
    let repo = Reg::fresh_repo("team/busybox");
    let new = format!("{}/{repo}:1", testbed().tls);
    sb.ok(&["tag", &source, &new]);
    let authfile = sb.authfile();
    let out = sb.ok(&["push", "-q", "--authfile", &authfile, &new]);
    assert_eq!(out.trim(), digest);
    assert_served(Reg::Tls, &repo, "1", &digest, &bytes);
    // a bad new name is one line naming it
    let line = sb.fails(&["tag", &source, "127.0.0.1:5000/Upper:1"]);
    assert!(line.contains("Upper"), "{line}");
}

// ---------------------------------------------------------------------------------------------
// copy, registry to registry

#[test]
fn copy_across_registries_with_auth_on_the_destination() {
    let sb = Sandbox::new("copy-across");
    let (digest, bytes) = fixture("redis:7");
    let repo = Reg::fresh_repo("mirror/redis");
    let src = format!("docker://{}", testbed().plain_ref("redis:7"));
    let dst = format!("docker://{}/{repo}:7", testbed().tls);
    let line = sb.fails(&["copy", &src, &dst]);
    assert!(line.contains("anonymous"), "{line}");
    let out = sb.ok(&["copy", "--creds", &creds(), &src, &dst]);
    assert_eq!(out.trim(), digest);
    assert_served(Reg::Tls, &repo, "7", &digest, &bytes);
    let layout = sb.home.join("layout");
    let (d, _) = skopeo_pull(Reg::Tls, &format!("{}/{repo}:7", testbed().tls), &layout);
    assert_eq!(d, digest);
    assert!(
        !sb.root.path.join("blobs").exists(),
        "copy wrote to the store"
    );
}

#[test]
fn copy_within_one_registry_mounts_and_uploads_no_bytes() {
    let sb = Sandbox::new("copy-mount");
    let (digest, bytes) = fixture("redis:7");
    let blobs = manifest_blobs(&serde_json::from_slice(&bytes).unwrap());
    let repo = Reg::fresh_repo("redis");
    let src = format!("docker://{}", testbed().plain_ref("redis:7"));
    let dst = format!("docker://{}/{repo}:7", testbed().plain);
    assert_eq!(sb.ok(&["copy", &src, &dst]).trim(), digest);
    assert_served(Reg::Plain, &repo, "7", &digest, &bytes);
    let log = settled_log(Reg::Plain, &repo);
    let shown: Vec<String> = log.iter().map(ToString::to_string).collect();
    assert_eq!(
        blob_writes(&log).len(),
        0,
        "blob bytes were sent: {shown:#?}"
    );
    let mounts = log
        .iter()
        .filter(|l| l.method == "POST" && l.uri.contains("mount=") && l.status == 201)
        .count();
    assert_eq!(mounts, blobs.len(), "{shown:#?}");
}

#[test]
fn copy_all_keeps_the_index_digest() {
    let sb = Sandbox::new("copy-all");
    for image in ["multi:latest", "multi:v2s2"] {
        if image == "multi:v2s2" && !testbed().has_multi_v2s2() {
            continue;
        }
        let (digest, bytes) = fixture(image);
        let repo = Reg::fresh_repo("multi");
        let src = format!("docker://{}", testbed().plain_ref(image));
        let dst = format!("docker://{}/{repo}:all", testbed().tls);
        let out = sb.ok(&["copy", "--all", "--creds", &creds(), &src, &dst]);
        assert_eq!(out.trim(), digest, "{image}");
        assert_served(Reg::Tls, &repo, "all", &digest, &bytes);
        let index: Value = serde_json::from_slice(&bytes).unwrap();
        for child in index["manifests"].as_array().unwrap() {
            let d = child["digest"].as_str().unwrap();
            assert_eq!(served_digest_header(Reg::Tls, &repo, d), d);
        }
    }
}

#[test]
fn copy_of_one_platform_puts_that_platforms_manifest() {
    let sb = Sandbox::new("copy-platform");
    let (_, bytes) = fixture("multi:latest");
    let index: Value = serde_json::from_slice(&bytes).unwrap();
    let child = |arch: &str| {
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["platform"]["architecture"] == arch)
            .unwrap()["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let src = format!("docker://{}", testbed().plain_ref("multi:latest"));
    let repo = Reg::fresh_repo("multi");
    for (platform, tag, want) in [
        (Some("linux/arm64/v8"), "arm", child("arm64")),
        (None, "host", child("amd64")),
    ] {
        let dst = format!("docker://{}/{repo}:{tag}", testbed().plain);
        let mut args = vec!["copy"];
        if let Some(p) = platform {
            args.extend(["--platform", p]);
        }
        args.extend([src.as_str(), dst.as_str()]);
        assert_eq!(sb.ok(&args).trim(), want, "{platform:?}");
        assert_eq!(served_digest_header(Reg::Plain, &repo, tag), want);
    }
    let dst = format!("docker://{}/{repo}:win", testbed().plain);
    let line = sb.fails(&["copy", "--platform", "windows/amd64", &src, &dst]);
    assert!(
        line.contains("windows/amd64") && line.contains("multi:latest"),
        "{line}"
    );
}

#[test]
fn copy_from_a_source_that_corrupts_a_blob_fails_at_once_and_puts_nothing() {
    let proxy = Proxy::start(&["--fault", "flip", "--no-redirect"]);
    let sb = Sandbox::new("copy-flip");
    let (_, bytes) = fixture("redis:7");
    let blobs = manifest_blobs(&serde_json::from_slice(&bytes).unwrap());
    let repo = Reg::fresh_repo("redis");
    let src = format!("docker://{}", proxy.reference("redis:7"));
    let dst = format!("docker://{}/{repo}:7", testbed().plain);
    let line = sb.fails(&["copy", &src, &dst]);
    assert!(line.contains("digest mismatch"), "{line}");
    assert!(
        blobs.iter().any(|(d, _)| line.contains(d.as_str())),
        "{line}"
    );
    let log = settled_log(Reg::Plain, &repo);
    let shown: Vec<String> = log.iter().map(ToString::to_string).collect();
    // no blob and no manifest went in, and a blob that cannot verify is not tried again
    assert!(
        !log.iter().any(|l| l.method == "PUT" && l.status == 201),
        "{shown:#?}"
    );
    let puts = blob_writes(&log).len();
    assert!(puts <= blobs.len(), "{puts} blob PUTs: {shown:#?}");
    let head = try_tool(
        "curl",
        &[
            "-sS",
            "--fail",
            "-I",
            &format!("http://{}/v2/{repo}/manifests/7", testbed().plain),
        ],
    );
    assert_ne!(head.code, 0, "the manifest is there: {head}");
}

#[test]
fn copy_from_a_source_that_cuts_downloads_completes_verified() {
    let proxy = Proxy::start(&["--fault", "cut", "--no-redirect"]);
    let sb = Sandbox::new("copy-cut");
    let (digest, bytes) = fixture("redis:7");
    let repo = Reg::fresh_repo("redis");
    let src = format!("docker://{}", proxy.reference("redis:7"));
    let dst = format!("docker://{}/{repo}:7", testbed().plain);
    assert_eq!(sb.ok(&["copy", &src, &dst]).trim(), digest);
    assert_served(Reg::Plain, &repo, "7", &digest, &bytes);
    let layout = sb.home.join("layout");
    let reference = format!("{}/{repo}:7", testbed().plain);
    assert_eq!(skopeo_pull(Reg::Plain, &reference, &layout).0, digest);
    // each cut blob started over in a fresh session, none was PUT again into a dead one
    let log = settled_log(Reg::Plain, &repo);
    let shown: Vec<String> = log.iter().map(ToString::to_string).collect();
    assert!(
        !log.iter().any(|l| l.method == "PUT" && l.status == 404),
        "a PUT into a closed upload session: {shown:#?}"
    );
    let stats = proxy.stats();
    let blobs = manifest_blobs(&serde_json::from_slice(&bytes).unwrap()).len() as u64;
    assert_eq!(
        stats["faults_fired"]["cut"].as_u64(),
        Some(blobs),
        "every blob's first download is cut: {stats}"
    );
}

#[test]
fn copy_from_the_store_to_a_registry_keeps_the_digest() {
    let sb = Sandbox::new("copy-from-store");
    let source = testbed().plain_ref("busybox:v2s2");
    let (digest, bytes) = fixture("busybox:v2s2");
    sb.pull(&source, false);
    let repo = Reg::fresh_repo("busybox");
    let dst = format!("docker://{}/{repo}:1", testbed().tls);
    let out = sb.ok(&["copy", "--creds", &creds(), &source, &dst]);
    assert_eq!(out.trim(), digest);
    assert_served(Reg::Tls, &repo, "1", &digest, &bytes);
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups): run as root, as tools/test does"
)]
fn copy_from_a_registry_to_the_store_then_run_and_inspect() {
    assert!(is_root(), "img run needs root");
    let sb = Sandbox::new("copy-to-store");
    let (digest, _) = fixture("busybox:latest");
    let src = format!("docker://{}", testbed().plain_ref("busybox:latest"));
    assert_eq!(sb.ok(&["copy", &src, "local/bb:1"]).trim(), digest);
    let inspect = sb.ok(&["inspect", "-f", "{{index .RepoDigests 0}}", "local/bb:1"]);
    assert!(inspect.trim().ends_with(&format!("@{digest}")), "{inspect}");
    let config: Value = serde_json::from_str(&sb.ok(&["inspect", "--json", "local/bb:1"]))
        .expect("inspect --json is JSON");
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["sh"]),
        "{config}"
    );
    let out = sb.ok(&["run", "--rm", "local/bb:1", "echo", "hello from the copy"]);
    assert_eq!(out, "hello from the copy\n");
}

#[test]
fn copy_from_or_to_a_bad_place_fails_with_one_line() {
    let sb = Sandbox::new("copy-bad");
    let ok = format!("docker://{}", testbed().plain_ref("busybox:latest"));
    let fresh = format!(
        "docker://{}/{}:1",
        testbed().plain,
        Reg::fresh_repo("busybox")
    );
    let absent = format!(
        "docker://{}/{}:1",
        testbed().plain,
        Reg::fresh_repo("absent")
    );
    let closed = format!("docker://127.0.0.1:{}/a/b:1", closed_port());
    for (from, to, needle) in [
        (absent.as_str(), fresh.as_str(), "manifest unknown"),
        (closed.as_str(), fresh.as_str(), "cannot reach"),
        (ok.as_str(), closed.as_str(), "cannot reach"),
        (ok.as_str(), "docker://127.0.0.1:5000/Upper:1", "Upper"),
        (ok.as_str(), "containers-storage:x", "containers-storage"),
    ] {
        let line = sb.fails(&["copy", "--retry", "1", from, to]);
        assert!(line.contains(needle), "img copy {from} {to}: {line}");
    }
    assert!(
        !sb.root.path.join("blobs").exists(),
        "a failed copy wrote to the store"
    );
}
