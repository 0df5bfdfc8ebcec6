//! `img push`: put a stored image into a registry.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use img_registry::{PushOptions, Reference};

use crate::Global;
use crate::commands::pull::RegistryArgs;
use crate::progress::Bars;

/// Arguments of `img push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The stored image (a reference or an image ID)
    pub image: String,
    /// Where to push it (`[docker://]HOST/REPO:TAG`) [default: the image's own reference]
    pub destination: Option<String>,
    /// Blobs larger than this many MiB go up in chunks of this size, each a point an
    /// interrupted upload resumes from
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub chunk_size: u64,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Run `img push`.
pub fn run(global: &Global, args: PushArgs) -> Result<ExitCode> {
    let store = super::store(global)?;
    let found = super::stored_names(&store, &args.image)?;
    let name = found.names[0].clone();
    let to = args.destination.as_deref().unwrap_or(&name);
    let to = to.strip_prefix("docker://").unwrap_or(to);
    let destination = Reference::parse(to).with_context(|| format!("destination {to:?}"))?;
    let client = args.registry.client(global)?;
    let options = PushOptions {
        concurrency: args.registry.jobs.max(1),
        chunk_size: args.chunk_size.max(1) * 1024 * 1024,
    };
    let visible = !global.quiet && !global.json && std::io::stderr().is_terminal();
    let bars = Arc::new(Bars::new(visible));
    let pushed = super::runtime()?
        .block_on(img_registry::push(
            &client,
            &store,
            &name,
            &destination,
            &options,
            bars.clone(),
        ))
        .with_context(|| format!("pushing {name} to {destination}"));
    bars.clear();
    let pushed = pushed?;
    if global.verbose > 0 {
        eprintln!(
            "{}: uploaded {} blob(s) ({}), mounted {}, already there {}",
            pushed.reference,
            pushed.uploaded,
            crate::output::size(pushed.uploaded_bytes),
            pushed.mounted,
            pushed.present
        );
    }
    if global.json {
        crate::output::json(&serde_json::json!({
            "reference": pushed.reference.to_string(),
            "digest": pushed.digest.to_string(),
            "mediaType": pushed.media_type,
            "uploadedBlobs": pushed.uploaded,
            "uploadedBytes": pushed.uploaded_bytes,
            "mountedBlobs": pushed.mounted,
            "presentBlobs": pushed.present,
            "platformOnly": pushed.platform_only,
        }))?;
    } else if global.quiet {
        println!("{}", pushed.digest);
    } else {
        println!("{}: digest: {}", pushed.reference, pushed.digest);
    }
    Ok(ExitCode::SUCCESS)
}
