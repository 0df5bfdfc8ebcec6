//! `img rmi`: drop references. Blobs stay until `img gc`.

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use img_store::Store;

use crate::Global;

/// Arguments of `img rmi`.
#[derive(Debug, Args)]
pub struct RmiArgs {
    /// The images to remove: as pulled (`redis:7`), or by ID or unique ID prefix (every
    /// reference to that image is removed)
    #[arg(required = true)]
    pub images: Vec<String>,
    /// With an image ID whose references are in several repositories, remove them all
    /// (without it, docker's rule: name the one to remove)
    #[arg(short, long)]
    pub force: bool,
}

/// Run `img rmi`: every name is tried; the exit code is non-zero if any failed.
pub fn run(global: &Global, args: RmiArgs) -> Result<ExitCode> {
    let store = super::store(global)?;
    let mut failed = false;
    for input in &args.images {
        if let Err(e) = remove(global, &store, input, args.force) {
            crate::output::error(&e);
            failed = true;
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Remove what `input` names: one reference, or every reference to an image named by ID.
fn remove(global: &Global, store: &Store, input: &str, force: bool) -> Result<()> {
    let found = super::stored_names(store, input)?;
    if let Some(id) = &found.id {
        let repositories: BTreeSet<String> = found
            .names
            .iter()
            .map(|n| super::repo_and_tag(n).0)
            .collect();
        if repositories.len() > 1 && !force {
            bail!(
                "image {input:?} ({id}) is referenced in {} repositories ({}): remove them by name, or all with --force",
                repositories.len(),
                found.names.join(", ")
            );
        }
    }
    for name in &found.names {
        store.remove_ref(name)?;
        if !global.quiet {
            println!("Untagged: {name}");
        }
    }
    Ok(())
}
