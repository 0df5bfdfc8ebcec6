//! Records the commit and compiler for `img version`, and tells the tests whether root builds
//! them: those that need root (namespaces, overlay mounts, cgroups, device nodes) are marked
//! ignored, with the reason, when another user builds them, so that `cargo test` reports them
//! as skipped instead of passed; likewise whether cgroup v2 has the controllers a delegated
//! subtree needs (`img_cgroup2`).
use std::os::unix::fs::MetadataExt;

fn main() {
    // For `img version`: the commit built and the compiler that built it.
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo::rustc-env=IMG_GIT_COMMIT={commit}");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = std::process::Command::new(rustc)
        .arg("-V")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo::rustc-env=IMG_RUSTC_VERSION={version}");
    println!("cargo::rustc-check-cfg=cfg(img_root)");
    println!("cargo::rustc-check-cfg=cfg(img_cgroup2)");
    // Whether cgroup v2 holds the memory and pids controllers here (not on the hybrid layout,
    // where they are on v1): the test of a delegated subtree needs them.
    let controllers =
        std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
    let words: Vec<&str> = controllers.split_whitespace().collect();
    if words.contains(&"memory") && words.contains(&"pids") {
        println!("cargo::rustc-cfg=img_cgroup2");
    }
    // /proc/self belongs to the process's effective user.
    if std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
        println!("cargo::rustc-cfg=img_root");
    }
}
