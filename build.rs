//! Tells the tests whether they are built by root: those that need root (namespaces, overlay
//! mounts, cgroups, device nodes) are then marked ignored, with the reason, when built by
//! another user, so that `cargo test` reports them as skipped instead of passed.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(img_root)");
    println!("cargo::rerun-if-changed=build.rs");
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        println!("cargo::rustc-cfg=img_root");
    }
}
