//! `img unpack`, `img mount`, `img umount`: an image's layers as filesystems.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use super::pull::ImageSource;
use crate::Global;

/// Arguments of `img unpack`.
#[derive(Debug, Args)]
pub struct UnpackArgs {
    /// The image (pulled first if the store does not have it)
    pub image: String,
    /// The directory to create (must not exist, or be empty)
    pub target: PathBuf,
    #[command(flatten)]
    pub source: ImageSource,
}

/// Arguments of `img mount`.
#[derive(Debug, Args)]
pub struct MountArgs {
    /// The image (pulled first if the store does not have it)
    pub image: String,
    #[command(flatten)]
    pub source: ImageSource,
}

/// Arguments of `img umount`.
#[derive(Debug, Args)]
pub struct UmountArgs {
    /// The mount: its id, or the directory `img mount` printed
    pub mount: String,
}

/// Run `img unpack`: a flattened rootfs, whiteouts applied.
pub fn run_unpack(global: &Global, args: UnpackArgs) -> Result<ExitCode> {
    let (store, image) = args.source.image(global, &args.image)?;
    let stats = img_unpack::unpack_image(&store, &image, &args.target)
        .with_context(|| format!("unpacking {} into {}", image.name, args.target.display()))?;
    if global.json {
        crate::output::json(&serde_json::json!({
            "image": image.name,
            "target": args.target,
            "entries": stats.entries,
            "bytes": stats.bytes,
            "skipped": stats.skipped,
        }))?;
    } else if !global.quiet {
        println!(
            "{}: {} entries, {} of files{}",
            args.target.display(),
            stats.entries,
            crate::output::size(stats.bytes),
            if stats.skipped > 0 {
                format!(" ({} skipped: devices or xattrs need root)", stats.skipped)
            } else {
                String::new()
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Run `img mount`: print the merged directory.
pub fn run_mount(global: &Global, args: MountArgs) -> Result<ExitCode> {
    let (store, image) = args.source.image(global, &args.image)?;
    let mount = img_unpack::mount_image(&store, &image)
        .with_context(|| format!("mounting {}", image.name))?;
    if global.json {
        crate::output::json(&serde_json::json!({
            "id": mount.id,
            "image": image.name,
            "merged": mount.merged,
            "dir": mount.dir,
        }))?;
    } else {
        println!("{}", mount.merged.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Run `img umount`.
pub fn run_umount(global: &Global, args: UmountArgs) -> Result<ExitCode> {
    let store = super::store(global)?;
    let dir = img_unpack::unmount(&store, &args.mount)
        .with_context(|| format!("unmounting {}", args.mount))?;
    if global.verbose > 0 {
        eprintln!("img: removed {}", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}
