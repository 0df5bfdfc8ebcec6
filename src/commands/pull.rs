//! `img pull`: fetch an image into the store.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use img_registry::auth::AuthFiles;
use img_registry::{
    Client, ClientOptions, Credentials, Log, Platform, PullOptions, RegistriesConf,
};
use img_store::{Image, Store, is_full_image_id};

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
    /// Also prepare the layer snapshots `img run` and `img mount` use
    #[arg(long)]
    pub unpack: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Where an image comes from when the store does not have it: shared by `unpack`, `mount`
/// and `run`.
#[derive(Debug, Args, Clone)]
pub struct ImageSource {
    /// Platform to choose from a multi-platform image (`os/arch[/variant]`)
    #[arg(long)]
    pub platform: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

impl ImageSource {
    /// The stored image named `input`, pulled first when needed. Looked up as docker does: a
    /// stored reference, then an image ID or unique ID prefix (see [`super::find_stored`]), then a
    /// digest prefix of a stored manifest; only a name that none of these finds is pulled. An
    /// image ID is never pulled: a whole one that is not stored is an error, and so is a
    /// stored image by ID for another platform than `--platform`.
    pub fn image(&self, global: &Global, input: &str) -> Result<(Store, Image)> {
        self.image_saying(global, input, false)
    }

    /// [`ImageSource::image`], saying what docker's `run` says on stderr when it pulls
    /// (`Unable to find image … locally`, the digest, `Status: Downloaded newer image …`).
    pub fn image_announced(&self, global: &Global, input: &str) -> Result<(Store, Image)> {
        self.image_saying(global, input, true)
    }

    fn image_saying(&self, global: &Global, input: &str, say: bool) -> Result<(Store, Image)> {
        let store = super::store(global)?;
        let by_id = match super::find_stored(&store, input)? {
            Some(found) if found.id.is_some() => Some(found),
            None if is_full_image_id(input) => Some(super::stored_names(&store, input)?),
            _ => None,
        };
        let Some(found) = by_id else {
            return super::image_or_pull(
                global,
                &self.registry,
                input,
                self.platform.as_deref(),
                say,
            );
        };
        let image = found.image(&store)?;
        if let Some(wanted) = self.platform.as_deref() {
            let wanted: Platform = wanted.parse()?;
            let have = Platform {
                os: image.config.os().to_string(),
                architecture: image.config.architecture().to_string(),
                variant: image.config.variant().clone(),
            };
            if !wanted.matches(&have) {
                bail!("image {input:?} is for {have}, not {wanted} (an image ID is never pulled)");
            }
        }
        Ok((store, image))
    }
}

/// How to reach registries: shared by every command that contacts one.
#[derive(Debug, Args, Clone)]
pub struct RegistryArgs {
    /// Credentials for the registry, as USER:PASS (credential files are then not read)
    #[arg(long, value_name = "USER:PASS")]
    pub creds: Option<String>,
    /// The credentials file to use instead of auth.json and docker's config.json
    #[arg(long, env = "REGISTRY_AUTH_FILE", value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// registries.conf to use [default: $XDG_CONFIG_HOME/containers/registries.conf, else
    /// /etc/containers/registries.conf and registries.conf.d/]
    #[arg(long, env = "IMG_REGISTRIES_CONF", value_name = "FILE")]
    pub registries_conf: Option<PathBuf>,
    /// A directory of HOST:PORT/*.crt CA files, searched before /etc/containers/certs.d and
    /// /etc/docker/certs.d
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Attempts per request (and per blob download without progress) before giving up
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub retry: u32,
    /// Seconds a download may receive nothing before it counts as cut and is resumed
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub stall_timeout: u64,
    /// How many blobs to download at once
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub jobs: usize,
}

impl RegistryArgs {
    /// The client these flags ask for; notes (retries, mirrors) go to stderr at `-v`.
    pub fn client(&self, global: &Global) -> Result<Client> {
        let mut options = ClientOptions {
            registries: RegistriesConf::load(self.registries_conf.as_deref())?,
            auth_files: AuthFiles {
                authfile: self.authfile.clone(),
            },
            stall_timeout: Duration::from_secs(self.stall_timeout.max(1)),
            ..ClientOptions::default()
        };
        options.retry.tries = self.retry.max(1);
        if let Some(c) = &self.creds {
            options.credentials = Some(
                Credentials::parse(c).context("--creds must be USER:PASS with a non-empty user")?,
            );
        }
        if let Some(dir) = &self.cert_dir {
            options.cert_dirs.insert(0, dir.clone());
        }
        if global.verbose > 0 {
            options.log = Log::new(|m| eprintln!("img: {m}"));
        }
        Ok(Client::new(options))
    }
}

/// Pull `input` (trying each search registry for an unqualified name) with progress bars
/// on a terminal.
pub fn pull_image(
    global: &Global,
    registry: &RegistryArgs,
    input: &str,
    platform: Option<&str>,
) -> Result<img_registry::Pulled> {
    pull_with(global, registry, input, platform, false)
}

/// [`pull_image`], preparing snapshots as layers arrive when `unpack` is set.
pub fn pull_with(
    global: &Global,
    registry: &RegistryArgs,
    input: &str,
    platform: Option<&str>,
    unpack: bool,
) -> Result<img_registry::Pulled> {
    let client = registry.client(global)?;
    let candidates = client.candidates(input)?;
    let platform = platform.map(str::parse::<Platform>).transpose()?;
    let store = super::store(global)?;
    let options = PullOptions {
        platform,
        concurrency: registry.jobs.max(1),
    };
    let visible = !global.quiet && !global.json && std::io::stderr().is_terminal();
    let bars = Arc::new(Bars::new(visible));
    let unpacking = unpack
        .then(|| crate::streaming::Unpacking::new(&store, bars.clone()))
        .transpose()?;
    let progress: Arc<dyn img_registry::Progress> = match &unpacking {
        Some(u) => u.clone(),
        None => bars.clone(),
    };
    let runtime = super::runtime()?;
    // An unqualified name is tried in each search registry in turn, as podman does.
    let mut result = Err(anyhow::anyhow!("nothing to pull"));
    for (i, reference) in candidates.iter().enumerate() {
        result = runtime
            .block_on(img_registry::pull(
                &client,
                &store,
                reference,
                &options,
                progress.clone(),
            ))
            .with_context(|| format!("pulling {reference}"));
        match &result {
            Err(e) if i + 1 < candidates.len() => {
                if global.verbose > 0 {
                    eprintln!("img: {e:#}; trying the next search registry");
                }
            }
            _ => break,
        }
    }
    bars.clear();
    if let Some(u) = unpacking
        && let Some(e) = u.finish()
        && result.is_ok()
    {
        return Err(e).context("preparing snapshots");
    }
    result
}

/// Run `img pull`.
pub fn run(global: &Global, args: PullArgs) -> Result<ExitCode> {
    let pulled = pull_with(
        global,
        &args.registry,
        &args.reference,
        args.platform.as_deref(),
        args.unpack,
    )?;
    if args.unpack {
        // Whatever the streaming workers did not get to (an index child pulled earlier, a
        // layer whose blob was already stored before the config arrived) is prepared here.
        let store = super::store(global)?;
        let image = store.image(&pulled.reference.to_string())?;
        img_unpack::prepare_snapshots(&store, &image)
            .with_context(|| format!("preparing the snapshots of {}", pulled.reference))?;
    }
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
