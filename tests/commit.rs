//! End-to-end tests of making images (issue 9): `img commit` of a container's writable layer,
//! and `examples/build.rs` (img-build + push) against the test bed's registry. Outcomes are
//! checked with tools that are not img: GNU tar's listing of the layer blob, `umoci unpack` of
//! the store (an OCI layout), `skopeo inspect` of the pushed image, the freezer cgroup's state
//! and the container's own output.
//!
//! Tests that run containers need root; they carry the `img_root` cfg as the others do.

mod support;

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::tree::{Tree, assert_same};
use support::{
    Run, TestRoot, assert_one_error_line, cgroup_dirs, is_root, run_tool, testbed, unique,
};

/// One test's store root with busybox from the test bed.
struct Bed {
    root: TestRoot,
    busybox: String,
}

impl Bed {
    fn new(test: &str) -> Bed {
        assert!(is_root(), "{test}: containers need root");
        let bed = Bed {
            root: TestRoot::new(&format!("commit-{test}")),
            busybox: testbed().plain_ref("busybox:latest"),
        };
        bed.ok(&["pull", "-q", &bed.busybox]);
        bed
    }

    fn img(&self, args: &[&str]) -> Run {
        let run = self.root.run(args);
        assert!(!run.stderr.contains("panicked"), "img panicked: {run}");
        run
    }

    fn ok(&self, args: &[&str]) -> String {
        let run = self.img(args);
        run.assert_ok();
        run.stdout
    }

    /// `img run --name NAME IMAGE sh -c SCRIPT` in the foreground, asserted to succeed.
    fn run_script(&self, name: &str, image: &str, script: &str) {
        self.ok(&["run", "--name", name, image, "sh", "-c", script]);
    }

    /// `img commit ARGS…`: asserts it printed one image ID and returns it.
    fn commit(&self, args: &[&str]) -> String {
        let mut all = vec!["commit"];
        all.extend(args);
        let out = self.ok(&all);
        let id = out.trim_end();
        assert!(
            id.starts_with("sha256:") && id.len() == 71 && !id.contains('\n'),
            "commit should print one image ID: {out:?}"
        );
        id.to_string()
    }

    /// `img run --rm IMAGE ARGS…`'s stdout, asserted to succeed.
    fn output(&self, image: &str, args: &[&str]) -> String {
        let mut all = vec!["run", "--rm", image];
        all.extend(args);
        self.ok(&all)
    }

    /// The stored image's manifest (through index.json, read as any OCI layout tool would).
    fn manifest(&self, name: &str) -> Value {
        let entry = self.root.entries_named(name);
        assert_eq!(entry.len(), 1, "one index.json entry named {name}");
        let digest = entry[0]["digest"].as_str().unwrap();
        serde_json::from_slice(&fs::read(self.root.blob_path(digest)).unwrap()).unwrap()
    }

    /// The config of a stored image.
    fn config(&self, name: &str) -> Value {
        let digest = self.manifest(name)["config"]["digest"]
            .as_str()
            .unwrap()
            .to_string();
        serde_json::from_slice(&fs::read(self.root.blob_path(&digest)).unwrap()).unwrap()
    }

    /// GNU tar's listing of the image's last layer (names only).
    fn last_layer_names(&self, name: &str) -> Vec<String> {
        let manifest = self.manifest(name);
        let layer = manifest["layers"].as_array().unwrap().last().unwrap()["digest"]
            .as_str()
            .unwrap()
            .to_string();
        run_tool(
            "tar",
            &["-tzf", self.root.blob_path(&layer).to_str().unwrap()],
        )
        .lines()
        .map(str::to_string)
        .collect()
    }
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups): run as root, as tools/test does"
)]
fn a_commit_keeps_changes_and_deletions_and_runs() {
    let bed = Bed::new("changes");
    // First commit: new files and directories, a deleted file of the image.
    bed.run_script(
        "one",
        &bed.busybox,
        "echo hi > /hello && rm /etc/group && mkdir -p /data/d /opq/sub && echo a > /data/a \
         && echo b > /data/d/b && echo o > /opq/sub/o && echo p > /opq/p",
    );
    let id1 = bed.commit(&["-m", "first", "-a", "tester", "one", "t-commit/one:1"]);
    let names = bed.last_layer_names("docker.io/t-commit/one:1");
    assert!(names.contains(&"etc/.wh.group".to_string()), "{names:?}");
    for mount_point in [
        "etc/hosts",
        "etc/hostname",
        "etc/resolv.conf",
        "proc/",
        "sys/",
    ] {
        assert!(
            !names.contains(&mount_point.to_string()),
            "img's mount point {mount_point} is not part of the image: {names:?}"
        );
    }
    assert_eq!(
        bed.output(
            "t-commit/one:1",
            &[
                "sh",
                "-c",
                "cat /hello /data/a /data/d/b; test -e /etc/group || echo no-group"
            ]
        ),
        "hi\na\nb\nno-group\n"
    );
    let config = bed.config("docker.io/t-commit/one:1");
    let last = config["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["comment"], "first");
    assert_eq!(last["author"], "tester");
    assert!(
        last["created_by"]
            .as_str()
            .unwrap()
            .starts_with("sh -c echo hi")
    );
    assert_eq!(config["author"], "tester");
    assert_eq!(
        format!(
            "sha256:{}",
            support::sha256_hex(
                &fs::read(
                    bed.root.blob_path(
                        bed.manifest("docker.io/t-commit/one:1")["config"]["digest"]
                            .as_str()
                            .unwrap()
                    )
                )
                .unwrap()
            )
        ),
        id1,
        "the printed ID is the config's digest"
    );

    // Second commit on top: a directory emptied file by file, one removed and made again
    // (overlayfs makes it opaque), a deleted file of the first commit.
    bed.run_script(
        "two",
        "t-commit/one:1",
        "rm /data/a && rm -r /data/d && rm -r /opq && mkdir /opq && echo c > /opq/c && rm /hello",
    );
    bed.commit(&["two", "t-commit/two:1"]);
    let names = bed.last_layer_names("docker.io/t-commit/two:1");
    for expected in [
        "data/.wh.a",
        "data/.wh.d",
        "opq/.wh..wh..opq",
        "opq/c",
        ".wh.hello",
    ] {
        assert!(
            names.contains(&expected.to_string()),
            "{expected} in {names:?}"
        );
    }
    assert_eq!(
        bed.output(
            "t-commit/two:1",
            &[
                "sh",
                "-c",
                "ls -A /data; echo --; ls -A /opq; test -e /hello || echo no-hello"
            ]
        ),
        "--\nc\nno-hello\n",
        "an emptied directory stays empty, a replaced one holds only its new content"
    );

    // umoci's unpack of the store (an OCI layout) equals the image img runs (its overlay of
    // snapshots, as `img mount` stacks it for `img run`).
    let bundle = bed.root.path.with_extension("umoci");
    let image = format!("{}:docker.io/t-commit/two:1", bed.root.path.display());
    run_tool(
        "umoci",
        &["unpack", "--image", &image, bundle.to_str().unwrap()],
    );
    let merged = PathBuf::from(bed.ok(&["mount", "t-commit/two:1"]).trim());
    let theirs = Tree::read(&bundle.join("rootfs"));
    let ours = Tree::read(&merged);
    bed.ok(&["umount", merged.to_str().unwrap()]);
    assert_same(
        &theirs,
        &ours,
        "umoci unpack vs img's mount of the committed image",
    );
    let _ = fs::remove_dir_all(&bundle);
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups): run as root, as tools/test does"
)]
fn changes_take_effect() {
    let bed = Bed::new("changes-c");
    bed.run_script("c", &bed.busybox, "echo from-the-layer > /msg");
    bed.commit(&[
        "-c",
        r#"CMD ["cat", "/msg"]"#,
        "-c",
        "ENV GREETING=\"hello there\"",
        "-c",
        "LABEL team=img",
        "-c",
        "WORKDIR /tmp",
        "--compression",
        "zstd",
        "c",
        "t-commit/c:1",
    ]);
    assert_eq!(bed.output("t-commit/c:1", &[]), "from-the-layer\n");
    assert_eq!(
        bed.output("t-commit/c:1", &["sh", "-c", "echo $GREETING; pwd"]),
        "hello there\n/tmp\n"
    );
    let manifest = bed.manifest("docker.io/t-commit/c:1");
    assert_eq!(
        manifest["layers"].as_array().unwrap().last().unwrap()["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_eq!(
        bed.config("docker.io/t-commit/c:1")["config"]["Labels"]["team"],
        "img"
    );
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups): run as root, as tools/test does"
)]
fn the_same_container_committed_twice_under_source_date_epoch_gives_one_digest() {
    let bed = Bed::new("repro");
    bed.run_script(
        "r",
        &bed.busybox,
        "mkdir -p /app && echo 1 > /app/one && rm /etc/passwd",
    );
    let commit = |name: &str| {
        let mut cmd = bed.root.command(&["commit", "r", name]);
        cmd.env("SOURCE_DATE_EPOCH", "1700000000");
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let a = commit("t-commit/r:a");
    let b = commit("t-commit/r:b");
    assert_eq!(a, b, "same container, same epoch: same image ID");
    let da = bed.root.entries_named("docker.io/t-commit/r:a")[0]["digest"].clone();
    let db = bed.root.entries_named("docker.io/t-commit/r:b")[0]["digest"].clone();
    assert_eq!(da, db, "and the same manifest digest");
    assert_eq!(
        bed.config("docker.io/t-commit/r:a")["created"],
        "2023-11-14T22:13:20Z"
    );
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups): run as root, as tools/test does"
)]
fn a_running_container_is_committed_frozen_and_runs_on() {
    let bed = Bed::new("running");
    let id = bed
        .ok(&[
            "run",
            "-d",
            "--name",
            "busy",
            &bed.busybox,
            "sh",
            "-c",
            "echo started > /started; i=0; while :; do i=$((i+1)); echo $i > /tmp/count; done",
        ])
        .trim()
        .to_string();
    let container = bed.root.path.join("containers").join(&id);
    let count = container.join("upper/tmp/count");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !count.exists() {
        assert!(Instant::now() < deadline, "the container never wrote");
        std::thread::yield_now();
    }
    bed.commit(&["busy", "t-commit/busy:1"]);
    assert_eq!(
        bed.output("t-commit/busy:1", &["cat", "/started"]),
        "started\n"
    );
    // Thawed again: the freezer says so, and the container goes on counting.
    let freezer = cgroup_dirs(&id)
        .into_iter()
        .map(|d| d.join("freezer.state"))
        .find(|p| p.exists());
    if let Some(freezer) = freezer {
        assert_eq!(fs::read_to_string(&freezer).unwrap().trim(), "THAWED");
    }
    let seen = fs::read_to_string(&count).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while fs::read_to_string(&count).unwrap_or_default() == seen {
        assert!(Instant::now() < deadline, "the container stopped counting");
        std::thread::yield_now();
    }
    bed.ok(&["rm", "-f", "busy"]);
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups): run as root, as tools/test does"
)]
fn bad_input_fails_with_one_line_and_names_nothing() {
    let bed = Bed::new("bad");
    let before = bed.root.ref_names();
    let (code, stderr) = bed.root.fails(&["commit", "nope", "t-commit/x:1"]);
    assert_ne!(code, 0);
    let line = assert_one_error_line(&stderr);
    assert!(line.contains("no such container: nope"), "{line}");

    bed.run_script("b", &bed.busybox, "true");
    for (change, says) in [
        ("RUN make", "RUN cannot be applied"),
        ("EXPOSE 99999", "invalid port"),
        ("ENV", "ENV needs an argument"),
    ] {
        let (code, stderr) = bed
            .root
            .fails(&["commit", "-c", change, "b", "t-commit/x:1"]);
        assert_ne!(code, 0);
        let line = assert_one_error_line(&stderr);
        assert!(line.contains(says), "{change}: {line}");
    }
    let (_, stderr) = bed.root.fails(&["commit", "b", "Not A Reference"]);
    assert!(assert_one_error_line(&stderr).contains("\"Not A Reference\""));
    assert_eq!(bed.root.ref_names(), before, "nothing new is named");
    assert!(bed.root.ingest_files().is_empty(), "no temp file left");

    // The image's name gone: another name of the same image serves; with none, one line.
    bed.ok(&["tag", &bed.busybox, "t-commit/alias:1"]);
    bed.ok(&["rmi", &bed.busybox]);
    bed.commit(&["b", "t-commit/from-alias:1"]);
    bed.ok(&["rmi", "t-commit/alias:1", "t-commit/from-alias:1"]);
    let (code, stderr) = bed.root.fails(&["commit", "b", "t-commit/x:1"]);
    assert_ne!(code, 0);
    let line = assert_one_error_line(&stderr);
    assert!(line.contains("is no longer in the store"), "{line}");
}

/// Run `examples/build.rs` (built by cargo as the tests are) with `args`.
fn example_build(args: &[&str], epoch: &str) -> Run {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["run", "--quiet", "--example", "build", "--"])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("SOURCE_DATE_EPOCH", epoch)
        .output()
        .expect("cargo run --example build");
    Run {
        cmdline: format!("cargo run --example build -- {}", args.join(" ")),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups): run as root, as tools/test does"
)]
fn the_build_example_pushes_an_image_that_runs_and_builds_reproducibly() {
    let tb = testbed();
    let root = TestRoot::new("commit-example");
    let app = root.path.with_extension("app");
    fs::create_dir_all(app.join("app")).unwrap();
    fs::write(
        app.join("app/run.sh"),
        "#!/bin/sh\necho built by img-build: \"$@\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(app.join("app/run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    let store = root.path.with_extension("store");
    let repo = format!("t-example-{}/app", unique());
    let mut pushed = Vec::new();
    for tag in ["a", "b"] {
        let destination = format!("{}/{repo}:{tag}", tb.plain);
        let run = example_build(
            &[
                &tb.plain_ref("busybox:latest"),
                app.to_str().unwrap(),
                &destination,
                store.to_str().unwrap(),
            ],
            "1700000000",
        );
        run.assert_ok();
        let digest = run.stdout.split_whitespace().nth(1).unwrap().to_string();
        // skopeo, not img, reads what the registry serves.
        let inspect: Value = serde_json::from_str(&run_tool(
            "skopeo",
            &[
                "inspect",
                "--tls-verify=false",
                &format!("docker://{destination}"),
            ],
        ))
        .unwrap();
        assert_eq!(inspect["Digest"], digest.as_str());
        assert_eq!(
            inspect["Labels"]["org.opencontainers.image.source"],
            "examples/build.rs"
        );
        assert_eq!(inspect["Layers"].as_array().unwrap().len(), 2);
        pushed.push((destination, digest));
    }
    assert_eq!(
        pushed[0].1, pushed[1].1,
        "the same directory and SOURCE_DATE_EPOCH give the same digest"
    );
    // img pulls it into another store and runs it: the entrypoint is the script added.
    let out = root.ok(&["run", "--rm", &pushed[0].0, "x", "y"]);
    assert_eq!(out, "built by img-build: x y\n");
    for dir in [app, store] {
        let _ = fs::remove_dir_all(dir);
    }
}
