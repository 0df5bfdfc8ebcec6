//! `img tag`: another name for a stored image.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use img_registry::Reference;

use crate::Global;

/// Arguments of `img tag`.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// The stored image (a reference or an image ID)
    pub source: String,
    /// The new name (`HOST/REPO:TAG`; a missing tag is `latest`)
    pub target: String,
}

/// Run `img tag`: the new name points at the same stored document, with the same annotations
/// (where it came from, which platform), as docker's tags do.
pub fn run(global: &Global, args: TagArgs) -> Result<ExitCode> {
    let store = super::store(global)?;
    let found = super::stored_names(&store, &args.source)?;
    let name = &found.names[0];
    let target =
        Reference::parse(&args.target).with_context(|| format!("new name {:?}", args.target))?;
    let descriptor = store
        .find_ref(name)?
        .with_context(|| format!("no image {name:?} in the store"))?;
    store
        .set_ref(&target.to_string(), descriptor)
        .with_context(|| format!("naming {name} {target}"))?;
    Ok(ExitCode::SUCCESS)
}
