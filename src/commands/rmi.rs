//! `img rmi`: drop references. Blobs stay until `img gc`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::Global;

/// Arguments of `img rmi`.
#[derive(Debug, Args)]
pub struct RmiArgs {
    /// The images to remove
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// Run `img rmi`: every name is tried; the exit code is non-zero if any failed.
pub fn run(global: &Global, args: RmiArgs) -> Result<ExitCode> {
    let store = super::store(global)?;
    let mut failed = false;
    for input in &args.images {
        let removed = super::resolve_name(&store, input)
            .and_then(|name| Ok(store.remove_ref(&name).map(|_| name)?));
        match removed {
            Ok(name) if !global.quiet => println!("Untagged: {name}"),
            Ok(_) => {}
            Err(e) => {
                crate::output::error(&e);
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
