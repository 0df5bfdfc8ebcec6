//! `img load`: images from an archive (`docker save`'s, legacy or docker ≥ 25, skopeo's
//! `docker-archive:`/`oci-archive:`, img's own; plain, gzip or zstd) into the store.

use std::fs::File;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use img_registry::Reference;
use img_store::archive::{self, LoadOptions, Loaded};

use crate::Global;

/// Arguments of `img load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read the archive from FILE (`-` for stdin) [default: stdin]
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Name the image REF instead of the names the archive gives (one image only)
    #[arg(long, value_name = "REF")]
    pub tag: Option<String>,
    /// Store uncompressed layers gzip-compressed (docker archives; an OCI archive's
    /// manifests are kept as they are)
    #[arg(long)]
    pub compress: bool,
}

/// The store's spelling of a name found in an archive, if it is a reference.
pub fn normalize(name: &str) -> Option<String> {
    Reference::parse(name).ok().map(|r| r.to_string())
}

/// Run `img load`.
pub fn run(global: &Global, args: LoadArgs) -> Result<ExitCode> {
    let store = super::store(global)?;
    if let Some(tag) = &args.tag {
        Reference::parse(tag).with_context(|| format!("--tag {tag:?}"))?;
    }
    let options = LoadOptions {
        tag: args.tag.as_deref(),
        compress: args.compress,
        normalize: Some(&normalize),
        ..LoadOptions::default()
    };
    let from_stdin = args.input.as_deref().is_none_or(|p| p == Path::new("-"));
    let loaded = if from_stdin {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            bail!("no archive on stdin (a terminal): give -i FILE or redirect stdin");
        }
        archive::load(&store, stdin.lock(), &options).context("loading from stdin")?
    } else {
        let path = args.input.as_deref().unwrap_or(Path::new("-"));
        load_file(&store, path, &options)?
    };
    report(global, &loaded)?;
    Ok(ExitCode::SUCCESS)
}

/// Load the archive at `path`.
pub fn load_file(
    store: &img_store::Store,
    path: &Path,
    options: &LoadOptions,
) -> Result<Vec<Loaded>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader: Box<dyn Read> = Box::new(file);
    archive::load(store, reader, options).with_context(|| format!("loading {}", path.display()))
}

fn report(global: &Global, loaded: &[Loaded]) -> Result<()> {
    if global.json {
        let list: Vec<_> = loaded
            .iter()
            .map(|l| {
                serde_json::json!({
                    "name": l.name,
                    "digest": l.descriptor.digest().to_string(),
                    "manifest": l.manifest.to_string(),
                    "id": l.config.to_string(),
                })
            })
            .collect();
        return crate::output::json(&list);
    }
    for l in loaded {
        if global.quiet {
            println!("{}", l.name);
        } else {
            println!("Loaded image: {}", l.name);
        }
    }
    Ok(())
}
