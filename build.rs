//! Tells the tests whether root builds them: those that need root (namespaces, overlay mounts,
//! cgroups, device nodes) are marked ignored, with the reason, when another user builds them,
//! so that `cargo test` reports them as skipped instead of passed.
use std::os::unix::fs::MetadataExt;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(img_root)");
    // /proc/self belongs to the process's effective user.
    if std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
        println!("cargo::rustc-cfg=img_root");
    }
}
