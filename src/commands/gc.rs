//! `img gc`: remove blobs no reference reaches.

use std::process::ExitCode;

use anyhow::Result;

use crate::{Global, output};

/// Run `img gc`.
pub fn run(global: &Global) -> Result<ExitCode> {
    let store = super::store(global)?;
    let report = store.gc()?;
    if global.json {
        output::json(&serde_json::json!({
            "removed": report.removed.iter().map(|(d, s)| serde_json::json!({"digest": d.to_string(), "size": s})).collect::<Vec<_>>(),
            "freed": report.freed(),
            "kept": report.kept,
            "tempFiles": report.temp_files,
            "snapshots": report.snapshots,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if global.verbose > 0 {
        for (digest, size) in &report.removed {
            println!("removed {digest} ({})", output::size(*size));
        }
    }
    if !global.quiet {
        println!(
            "removed {} blob(s), freed {} ({} kept); removed {} snapshot(s)",
            report.removed.len(),
            output::size(report.freed()),
            report.kept,
            report.snapshots
        );
    }
    Ok(ExitCode::SUCCESS)
}
