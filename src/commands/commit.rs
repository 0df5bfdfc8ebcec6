//! `img commit`: a container's writable layer becomes a new image.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use img_build::{Builder, Compression, HistoryEntry};
use img_run::ContainerState;
use img_run::cgroup::Cgroup;
use img_store::Store;

use crate::Global;

/// Arguments of `img commit`.
#[derive(Debug, Args)]
pub struct CommitArgs {
    /// A change to the config in Dockerfile syntax (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL,
    /// STOPSIGNAL, USER, VOLUME, WORKDIR); repeatable
    #[arg(short = 'c', long = "change", value_name = "CHANGE")]
    pub changes: Vec<String>,
    /// A comment for the new layer's history entry
    #[arg(short, long, value_name = "MSG")]
    pub message: Option<String>,
    /// The author (e.g. "Name <email>")
    #[arg(short, long)]
    pub author: Option<String>,
    /// Freeze a running container while its writable layer is read
    #[arg(short, long, default_value = "true", action = clap::ArgAction::Set)]
    pub pause: bool,
    /// How the new layer is compressed
    #[arg(long, value_enum, default_value_t = Compress::Gzip)]
    pub compression: Compress,
    /// The container (name, id or unique id prefix)
    pub container: String,
    /// The new image's reference (`REPO[:TAG]`)
    pub reference: String,
}

/// Layer compressions `commit` offers.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Compress {
    /// gzip (what every tool reads)
    Gzip,
    /// zstd (smaller and faster; not every tool reads it)
    Zstd,
}

/// Run `img commit`: prints the new image's ID.
pub fn run(global: &Global, args: CommitArgs) -> Result<ExitCode> {
    let store = super::store(global)?;
    let (dir, state) = ContainerState::find(store.root(), &args.container)?;
    let mut builder = base(&store, &state)?;
    builder.compression(match args.compression {
        Compress::Gzip => Compression::Gzip,
        Compress::Zstd => Compression::Zstd,
    });
    for change in &args.changes {
        builder.apply_change(change)?;
    }
    if let Some(author) = &args.author {
        builder.author(author);
    }
    builder.history(HistoryEntry {
        created_by: Some(state.command.join(" ")),
        comment: args.message.clone(),
        author: args.author.clone(),
        empty_layer: false,
    });
    let upper = dir.join("upper");
    if !upper.is_dir() {
        bail!(
            "container {}: no writable layer at {}",
            args.container,
            upper.display()
        );
    }
    builder.append_overlay_upper_except(&upper, mount_points(&dir)?);
    let _paused = if args.pause && state.is_running() {
        Some(Paused::new(&state.id)?)
    } else {
        None
    };
    let written = builder
        .write(&store, &args.reference)
        .with_context(|| format!("committing container {}", args.container))?;
    println!("{}", written.image_id());
    Ok(ExitCode::SUCCESS)
}

/// The container's image: the one its snapshots came from. Its name first; when that name
/// now points at another image (or is gone), any stored name of the image it was made from.
fn base(store: &Store, state: &ContainerState) -> Result<Builder> {
    let made_from = |image: &img_store::Image| -> bool {
        image.diff_ids().is_ok_and(|ids| {
            let lowers: Vec<PathBuf> = img_store::chain_ids(&ids)
                .iter()
                .map(|c| store.snapshot_path(c).join("fs"))
                .collect();
            lowers == state.lowers
        })
    };
    if store.image(&state.image).is_ok_and(|i| made_from(&i)) {
        return Ok(Builder::from_image(store, &state.image)?);
    }
    let other = store
        .images()?
        .into_iter()
        .find(|(_, image)| image.as_ref().is_ok_and(made_from));
    match other {
        Some((name, _)) => Ok(Builder::from_image(store, &name)?),
        None => bail!(
            "the container's image {} is no longer in the store (nor under another name)",
            state.image
        ),
    }
}

/// Where the runtime mounted things into the container (its spec's mount destinations): the
/// placeholders it made for them in the writable layer are not part of the image.
fn mount_points(dir: &Path) -> Result<Vec<PathBuf>> {
    let path = dir.join("config.json");
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let spec: serde_json::Value =
        serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display()))?;
    Ok(spec["mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["destination"].as_str())
        .map(PathBuf::from)
        .collect())
}

/// A running container frozen while its writable layer is read; thawed on drop.
struct Paused(Cgroup);

impl Paused {
    fn new(id: &str) -> Result<Paused> {
        let cgroup = Cgroup::existing(id);
        cgroup
            .freeze()
            .with_context(|| format!("pausing container {id}"))?;
        Ok(Paused(cgroup))
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        if let Err(e) = self.0.thaw() {
            eprintln!("img: warning: thawing the container: {e}");
        }
    }
}
