//! `img fsck`: re-hash every blob and check every image is complete.

use std::process::ExitCode;

use anyhow::Result;

use crate::{Global, output};

/// Run `img fsck`; exits non-zero when anything is wrong.
pub fn run(global: &Global) -> Result<ExitCode> {
    let store = super::store(global)?;
    let report = store.fsck()?;
    let problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
    if global.json {
        output::json(&serde_json::json!({
            "blobs": report.blobs,
            "bytes": report.bytes,
            "problems": problems,
        }))?;
    } else {
        for p in &problems {
            println!("{p}");
        }
        if !global.quiet {
            println!(
                "checked {} blob(s), {}: {}",
                report.blobs,
                output::size(report.bytes),
                if problems.is_empty() {
                    "ok".to_string()
                } else {
                    format!("{} problem(s)", problems.len())
                }
            );
        }
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
