//! `img tag`: another name for a stored image.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use img_registry::Reference;
use img_store::{Descriptor, Store};

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
    tag(&store, &args.source, &args.target)?;
    Ok(ExitCode::SUCCESS)
}

/// Name the stored image `source` (a reference or image ID) also `target`; returns what the
/// name points at.
pub fn tag(store: &Store, source: &str, target: &str) -> Result<Descriptor> {
    let found = super::stored_names(store, source)?;
    let name = &found.names[0];
    let target = Reference::parse(target).with_context(|| format!("new name {target:?}"))?;
    let descriptor = store
        .find_ref(name)?
        .with_context(|| format!("no image {name:?} in the store"))?;
    store
        .set_ref(&target.to_string(), descriptor.clone())
        .with_context(|| format!("naming {name} {target}"))?;
    Ok(descriptor)
}
