//! docker's housekeeping: `container prune`, `image prune [-a]`, `system prune [-a]` (each
//! saying what it removed and what it freed) and `system df`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use img_run::{ContainerState, ContainerStatus};

use crate::{Global, output};

/// Arguments of the prune commands.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not ask first
    #[arg(short, long)]
    pub force: bool,
    /// Images: every one no container uses, not only unreferenced blobs
    #[arg(short, long)]
    pub all: bool,
}

/// Bytes of the files under `dir` (not following symlinks).
pub(super) fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => todo.push(entry.path()),
                Ok(t) if t.is_file() => total += entry.metadata().map_or(0, |m| m.len()),
                _ => {}
            }
        }
    }
    total
}

/// docker's question; only `y`/`yes` goes on. Without a terminal (and without `-f`) nothing
/// is removed.
pub(super) fn confirm(what: &str) -> bool {
    eprint!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
    let _ = std::io::stderr().flush();
    if !std::io::stdin().is_terminal() {
        eprintln!();
        return false;
    }
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    matches!(line.trim(), "y" | "Y" | "yes")
}

/// Remove stopped containers; their ids and the bytes their directories held.
fn prune_containers(root: &Path) -> Result<(Vec<String>, u64)> {
    img_run::reap(root);
    let mut removed = Vec::new();
    let mut freed = 0;
    for (dir, state) in ContainerState::list(root) {
        let busy = state.is_running()
            || (state.status == ContainerStatus::Running && state.supervisor_alive());
        if busy || state.status == ContainerStatus::Created && state.supervisor_alive() {
            continue;
        }
        let size = disk_usage(&dir);
        ContainerState::remove_dir(&dir)?;
        removed.push(state.id);
        freed += size;
    }
    Ok((removed, freed))
}

/// With `all`, untag every image no container was made from; then collect unreferenced
/// blobs. The names untagged and the bytes freed.
fn prune_images(global: &Global, all: bool) -> Result<(Vec<String>, u64)> {
    let store = super::store(global)?;
    let mut untagged = Vec::new();
    if all {
        let used: Vec<String> = ContainerState::list(store.root())
            .into_iter()
            .map(|(_, s)| s.image)
            .collect();
        for (name, _) in store.images()? {
            if !used.contains(&name) {
                store.remove_ref(&name)?;
                untagged.push(name);
            }
        }
    }
    let report = store.gc()?;
    Ok((untagged, report.freed()))
}

fn report_containers(ids: &[String]) {
    if !ids.is_empty() {
        println!("Deleted Containers:");
        for id in ids {
            println!("{id}");
        }
        println!();
    }
}

fn report_images(names: &[String]) {
    if !names.is_empty() {
        println!("Deleted Images:");
        for n in names {
            println!("untagged: {n}");
        }
        println!();
    }
}

/// Run `img container prune`.
pub fn run_container_prune(global: &Global, args: PruneArgs) -> Result<ExitCode> {
    if !args.force && !confirm("all stopped containers") {
        return Ok(ExitCode::SUCCESS);
    }
    let root = super::store(global)?.root().to_path_buf();
    let (ids, freed) = prune_containers(&root)?;
    report_containers(&ids);
    println!("Total reclaimed space: {}", output::size(freed));
    Ok(ExitCode::SUCCESS)
}

/// Run `img image prune`.
pub fn run_image_prune(global: &Global, args: PruneArgs) -> Result<ExitCode> {
    let what = if args.all {
        "all images without at least one container associated to them"
    } else {
        "all dangling images"
    };
    if !args.force && !confirm(what) {
        return Ok(ExitCode::SUCCESS);
    }
    let (names, freed) = prune_images(global, args.all)?;
    report_images(&names);
    println!("Total reclaimed space: {}", output::size(freed));
    Ok(ExitCode::SUCCESS)
}

/// Run `img system prune`: stopped containers, then images (`-a`: every unused one).
pub fn run_system_prune(global: &Global, args: PruneArgs) -> Result<ExitCode> {
    let what = if args.all {
        "all stopped containers and all images without at least one container associated to them"
    } else {
        "all stopped containers and all dangling images"
    };
    if !args.force && !confirm(what) {
        return Ok(ExitCode::SUCCESS);
    }
    let root = super::store(global)?.root().to_path_buf();
    let (ids, from_containers) = prune_containers(&root)?;
    let (names, from_images) = prune_images(global, args.all)?;
    report_containers(&ids);
    report_images(&names);
    println!(
        "Total reclaimed space: {}",
        output::size(from_containers + from_images)
    );
    Ok(ExitCode::SUCCESS)
}

/// Run `img system df`: docker's TYPE TOTAL ACTIVE SIZE RECLAIMABLE for images and
/// containers.
pub fn run_df(global: &Global) -> Result<ExitCode> {
    let store = super::store(global)?;
    let containers = ContainerState::list(store.root());
    let used: Vec<&str> = containers.iter().map(|(_, s)| s.image.as_str()).collect();
    let images: Vec<(String, u64)> = store
        .images()?
        .into_iter()
        .filter_map(|(name, image)| image.ok().map(|i| (name, i.size())))
        .collect();
    let active_images = images
        .iter()
        .filter(|(n, _)| used.contains(&n.as_str()))
        .count();
    let image_bytes: u64 = disk_usage(&store.root().join("blobs"));
    let unused_bytes: u64 = images
        .iter()
        .filter(|(n, _)| !used.contains(&n.as_str()))
        .map(|(_, s)| s)
        .sum();
    let mut container_bytes = 0;
    let mut stopped_bytes = 0;
    let mut running = 0;
    for (dir, s) in &containers {
        let size = disk_usage(&dir.join("upper"));
        container_bytes += size;
        if s.is_running() {
            running += 1;
        } else {
            stopped_bytes += size;
        }
    }
    let percent = |part: u64, whole: u64| match (part.min(whole) * 100).checked_div(whole) {
        None => "0B".to_string(),
        Some(p) => format!("{} ({p}%)", output::size(part)),
    };
    output::table(
        &["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
        &[
            vec![
                "Images".into(),
                images.len().to_string(),
                active_images.to_string(),
                output::size(image_bytes),
                percent(unused_bytes, image_bytes),
            ],
            vec![
                "Containers".into(),
                containers.len().to_string(),
                running.to_string(),
                output::size(container_bytes),
                percent(stopped_bytes, container_bytes),
            ],
        ],
    );
    Ok(ExitCode::SUCCESS)
}
