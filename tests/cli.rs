//! End-to-end tests of img's command line: where global flags go, the docker-style aliases,
//! quiet output and errors about images the store does not have.

mod support;

use std::path::Path;

use support::{TestRoot, assert_one_error_line, registry_digest, testbed, without_ages};

#[test]
fn global_flags_go_before_or_after_the_subcommand() {
    let tb = testbed();
    let root = TestRoot::new("global-flags");
    let other = TestRoot::new("global-flags-other");
    let busybox = tb.plain_ref("busybox:latest");
    root.ok(&["pull", "-q", &busybox]);
    let r = root.path.to_str().unwrap();

    let listings = [
        root.run_raw(&["--root", r, "images"], &[]),
        root.run_raw(&["images", "--root", r], &[]),
        root.run_raw(&["images"], &[("IMG_ROOT", &root.path)]),
        root.run_raw(&["image", "ls", "--root", r], &[]),
        root.run_raw(&["image", "list"], &[("IMG_ROOT", &root.path)]),
        // --root wins over IMG_ROOT
        root.run_raw(&["images", "--root", r], &[("IMG_ROOT", &other.path)]),
    ];
    let repository = format!("{}/busybox", tb.plain);
    for run in &listings {
        run.assert_ok();
        assert_eq!(run.stdout.lines().count(), 2, "{run}");
        let row: Vec<&str> = run
            .stdout
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .collect();
        assert_eq!(&row[..2], [repository.as_str(), "latest"], "{run}");
        assert_eq!(
            without_ages(&run.stdout),
            without_ages(&listings[0].stdout),
            "{run}"
        );
    }
    // the other root was only named in IMG_ROOT, never used: it stays empty
    assert!(other.ref_names().is_empty());

    // --json and -q after or before
    let a = root.run_raw(&["--json", "images", "--root", r], &[]);
    let b = root.run_raw(&["images", "--json", "--root", r], &[]);
    a.assert_ok();
    b.assert_ok();
    assert_eq!(a.stdout, b.stdout);
    let records: serde_json::Value = serde_json::from_str(&a.stdout).unwrap();
    assert_eq!(records[0]["name"], busybox.as_str());
    // docker's -q: image IDs (the config digest, 12 digits)
    let q = root.run_raw(&["-q", "images", "--root", r], &[]);
    q.assert_ok();
    let config = records[0]["config"].as_str().unwrap();
    assert_eq!(q.stdout, format!("{}\n", &config["sha256:".len()..][..12]));
}

#[test]
fn image_subcommand_aliases() {
    let tb = testbed();
    let root = TestRoot::new("aliases");
    let busybox = tb.plain_ref("busybox:latest");
    // `img image pull` is `img pull`
    let digest = root.ok(&["image", "pull", "-q", &busybox]);
    assert_eq!(digest.trim(), registry_digest(&busybox));

    assert_eq!(
        without_ages(&root.ok(&["image", "ls"])),
        without_ages(&root.ok(&["images"]))
    );
    assert_eq!(
        without_ages(&root.ok(&["image", "inspect", &busybox])),
        without_ages(&root.ok(&["inspect", &busybox]))
    );
    assert_eq!(
        root.json(&["image", "inspect", "--json", &busybox]),
        root.json(&["inspect", "--json", &busybox])
    );
    assert_eq!(
        root.ok(&["image", "layers", &busybox]),
        root.ok(&["layers", &busybox])
    );
    // by a digest prefix, too
    let hex = &digest.trim()["sha256:".len()..];
    assert_eq!(
        without_ages(&root.ok(&["image", "inspect", &hex[..12]])),
        without_ages(&root.ok(&["inspect", &busybox]))
    );
    root.ok(&["image", "rm", &busybox]);
    assert!(root.ref_names().is_empty());
}

#[test]
fn quiet_pull_prints_only_the_digest() {
    let tb = testbed();
    let root = TestRoot::new("quiet-pull");
    for image in ["busybox:latest", "multi:latest"] {
        let reference = tb.plain_ref(image);
        let run = root.run(&["pull", "-q", &reference]);
        run.assert_ok();
        assert_eq!(
            run.stdout,
            format!("{}\n", registry_digest(&reference)),
            "{run}"
        );
        assert_eq!(run.stderr, "", "{run}");
    }
    // -q before the subcommand is the same flag
    let reference = tb.plain_ref("busybox:latest");
    let run = root.run(&["-q", "pull", &reference]);
    run.assert_ok();
    assert_eq!(
        run.stdout,
        format!("{}\n", registry_digest(&reference)),
        "{run}"
    );
}

#[test]
fn inspecting_an_absent_image_names_it() {
    let tb = testbed();
    let root = TestRoot::new("absent");
    root.ok(&["pull", "-q", &tb.plain_ref("busybox:latest")]);
    for (command, image) in [
        ("inspect", "not-pulled:1".to_string()),
        ("inspect", tb.plain_ref("busybox:v2s2")),
        ("layers", tb.plain_ref("redis:7")),
    ] {
        let (_, stderr) = root.fails(&[command, &image]);
        let line = assert_one_error_line(&stderr);
        assert!(line.contains(&image), "{line} should name {image}");
    }
    let (_, stderr) = root.fails(&["image", "inspect", "--json", "not-pulled:1"]);
    assert_one_error_line(&stderr);
}

#[test]
fn an_unknown_subcommand_or_flag_is_refused() {
    let root = TestRoot::new("usage");
    for args in [
        &["frobnicate"][..],
        &["images", "--no-such-flag"][..],
        &["pull"][..],
    ] {
        let run = root.run(args);
        assert_eq!(run.code, 2, "usage errors exit 2: {run}");
        assert!(run.stdout.is_empty(), "{run}");
        assert!(!run.stderr.contains("panicked"), "{run}");
    }
    // nothing was created for a usage error
    assert!(!Path::new(&root.path).exists());
}

#[test]

fn a_root_that_is_a_file_fails_with_one_clear_line() {
    let root = TestRoot::new("root-is-a-file");
    std::fs::write(&root.path, b"not a directory").unwrap();
    let (_, stderr) = root.fails(&["images"]);
    let line = assert_one_error_line(&stderr);
    assert!(line.contains(root.path.to_str().unwrap()), "{line}");
    let cause = "File exists (os error 17)";
    assert_eq!(line.matches(cause).count(), 1, "{line}");
    std::fs::remove_file(&root.path).unwrap();
}

#[test]
fn version_names_the_build_and_the_machine() {
    let root = TestRoot::new("version");
    let out = root.ok(&["version"]);
    let field = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}:")))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {key} in:\n{out}"))
    };
    assert_eq!(field("Version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(
        field("OS/Arch"),
        format!("linux/{}", std::env::consts::ARCH)
    );
    let uname = support::try_tool("uname", &["-r"]);
    assert_eq!(field("Kernel"), uname.assert_ok().stdout.trim());
    let rustc = support::try_tool("rustc", &["-V"]);
    assert!(field("Rust version").starts_with("rustc "), "{out}");
    assert!(!rustc.stdout.is_empty());
    assert!(field("Git commit").len() >= 7, "{out}");
    // the machine's own answers, read here without img
    let overlay = std::fs::read_to_string("/proc/filesystems")
        .unwrap()
        .lines()
        .any(|l| l.ends_with("\toverlay"));
    assert_eq!(field("Overlayfs"), if overlay { "yes" } else { "no" });
    let cgroups = field("Cgroups");
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        assert!(cgroups.starts_with("v2"), "{cgroups}");
    } else {
        assert!(
            cgroups.contains("v1 (") && cgroups.contains("memory"),
            "{cgroups}"
        );
    }
    let json = root.json(&["version", "--json"]);
    assert_eq!(json["Version"], env!("CARGO_PKG_VERSION"), "{json}");
}
