//! `img pull`: fetch an image into the store.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use img_registry::{ClientOptions, Credentials, Platform, PullOptions, Reference, Registry};

use crate::Global;
use crate::progress::Bars;

/// Arguments of `img pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// The image (`redis:7`, `127.0.0.1:5000/app@sha256:…`)
    pub reference: String,
    /// Platform to choose from a multi-platform image (`os/arch[/variant]`) [default: this machine's]
    #[arg(long)]
    pub platform: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// How to reach registries: shared by every command that contacts one.
#[derive(Debug, Args, Clone)]
pub struct RegistryArgs {
    /// Credentials for the registry, as USER:PASS
    #[arg(long, value_name = "USER:PASS")]
    pub creds: Option<String>,
    /// A directory of HOST:PORT/*.crt CA files, searched before /etc/containers/certs.d and
    /// /etc/docker/certs.d
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// How many blobs to download at once
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub jobs: usize,
}

impl RegistryArgs {
    /// The client options these flags ask for.
    pub fn client_options(&self) -> Result<ClientOptions> {
        let mut options = ClientOptions::default();
        if let Some(c) = &self.creds {
            options.credentials = Some(
                Credentials::parse(c).context("--creds must be USER:PASS with a non-empty user")?,
            );
        }
        if let Some(dir) = &self.cert_dir {
            options.cert_dirs.insert(0, dir.clone());
        }
        Ok(options)
    }
}

/// Run `img pull`.
pub fn run(global: &Global, args: PullArgs) -> Result<ExitCode> {
    let reference = Reference::parse(&args.reference)?;
    let platform = args
        .platform
        .as_deref()
        .map(str::parse::<Platform>)
        .transpose()?;
    let store = super::store(global)?;
    let registry = Arc::new(Registry::new(
        reference.registry(),
        &args.registry.client_options()?,
    )?);
    let options = PullOptions {
        platform,
        concurrency: args.registry.jobs.max(1),
    };
    let visible = !global.quiet && !global.json && std::io::stderr().is_terminal();
    let bars = Arc::new(Bars::new(visible));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get().min(4)))
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let pulled = runtime
        .block_on(img_registry::pull(
            &registry,
            &store,
            &reference,
            &options,
            bars.clone(),
        ))
        .with_context(|| format!("pulling {reference}"));
    bars.clear();
    let pulled = pulled?;
    if global.verbose > 0 {
        let platform = pulled
            .platform
            .as_ref()
            .map_or_else(String::new, |p| format!(" (platform {p})"));
        eprintln!(
            "{}: {}{platform}; fetched {} blob(s), {}",
            pulled.reference,
            pulled.media_type,
            pulled.fetched,
            crate::output::size(pulled.fetched_bytes)
        );
    }
    if global.json {
        crate::output::json(&serde_json::json!({
            "reference": pulled.reference.to_string(),
            "digest": pulled.digest.to_string(),
            "mediaType": pulled.media_type,
            "manifest": pulled.manifest_digest.to_string(),
            "platform": pulled.platform.as_ref().map(|p| p.to_string()),
            "config": pulled.config.digest().to_string(),
            "layers": pulled.layers.iter().map(|l| l.digest().to_string()).collect::<Vec<_>>(),
            "fetchedBlobs": pulled.fetched,
            "fetchedBytes": pulled.fetched_bytes,
        }))?;
    } else {
        println!("{}", pulled.digest);
    }
    Ok(ExitCode::SUCCESS)
}
