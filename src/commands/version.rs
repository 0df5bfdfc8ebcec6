//! `img version`: what was built (version, commit, compiler) and what this machine's kernel
//! gives the runtime (docker's `version` prints the client and the engine; img has no
//! engine, so the second half is the runtime's view of the host).

use std::process::ExitCode;

use anyhow::Result;

use crate::{Global, output};

/// Whether `/proc/filesystems` lists `name`.
fn filesystem(name: &str) -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().last() == Some(name))
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Run `img version`.
pub fn run(global: &Global) -> Result<ExitCode> {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let seccomp = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Seccomp:"));
    let userns = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|n| n.trim().parse::<u64>().ok())
        .is_some_and(|n| n > 0);
    let fields = [
        ("Version", env!("CARGO_PKG_VERSION").to_string()),
        ("Git commit", env!("IMG_GIT_COMMIT").to_string()),
        ("Rust version", env!("IMG_RUSTC_VERSION").to_string()),
        (
            "OS/Arch",
            format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
        ),
        ("Kernel", kernel.trim().to_string()),
        ("Cgroups", img_run::cgroup::layout()),
        ("Overlayfs", yes_no(filesystem("overlay")).into()),
        ("Seccomp", yes_no(seccomp).into()),
        ("User namespaces", yes_no(userns).into()),
        ("Running as root", yes_no(img_run::userns::is_root()).into()),
    ];
    if global.json {
        let map: serde_json::Map<String, serde_json::Value> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone().into()))
            .collect();
        output::json(&map)?;
        return Ok(ExitCode::SUCCESS);
    }
    for (key, value) in fields {
        println!("{:<16} {value}", format!("{key}:"));
    }
    Ok(ExitCode::SUCCESS)
}
