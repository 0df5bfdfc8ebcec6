//! `img copy`: an image from one place to another, in skopeo's spelling of places.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use img_registry::{CopyOptions, Platform, PushOptions, Pushed, Reference};

use crate::Global;
use crate::commands::pull::RegistryArgs;
use crate::progress::Bars;

/// Arguments of `img copy`.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Where the image is: `docker://REF`, `oci:DIR[:REF]`, `oci-archive:FILE[:REF]`,
    /// `docker-archive:FILE[:REF]`, or a stored image (a reference or image ID)
    pub source: String,
    /// Where it goes, in the same spellings
    pub destination: String,
    /// From a multi-platform image, copy every platform and the index (registry to registry)
    #[arg(long)]
    pub all: bool,
    /// Platform to choose from a multi-platform image (`os/arch[/variant]`)
    #[arg(long)]
    pub platform: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// A place an image can be, as skopeo names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// `docker://REF`: a registry.
    Registry(Reference),
    /// A bare reference or image ID: img's store.
    Store(String),
    /// `oci:DIR[:REF]`: an OCI image layout directory.
    Oci(PathBuf, Option<String>),
    /// `oci-archive:FILE[:REF]`: an OCI image layout in a tar.
    OciArchive(PathBuf, Option<String>),
    /// `docker-archive:FILE[:REF]`: `docker save`'s format.
    DockerArchive(PathBuf, Option<String>),
}

impl Place {
    /// Read a place as skopeo spells it.
    pub fn parse(input: &str) -> Result<Place> {
        if let Some(r) = input.strip_prefix("docker://") {
            let r = Reference::parse(r).with_context(|| format!("{input:?}"))?;
            return Ok(Place::Registry(r));
        }
        for (prefix, make) in [
            ("oci:", Place::Oci as fn(PathBuf, Option<String>) -> Place),
            ("oci-archive:", Place::OciArchive),
            ("docker-archive:", Place::DockerArchive),
        ] {
            if let Some(rest) = input.strip_prefix(prefix) {
                let (path, name) = match rest.split_once(':') {
                    Some((p, n)) if !n.is_empty() => (p, Some(n.to_string())),
                    Some((p, _)) => (p, None),
                    None => (rest, None),
                };
                if path.is_empty() {
                    bail!("{input:?}: no path after {prefix}");
                }
                return Ok(make(PathBuf::from(path), name));
            }
        }
        if let Some((transport, _)) = input.split_once(':')
            && !transport.contains(['/', '.'])
            && matches!(
                transport,
                "containers-storage" | "dir" | "docker-daemon" | "ostree" | "sif"
            )
        {
            bail!("{input:?}: img does not read or write {transport}: places");
        }
        Ok(Place::Store(input.to_string()))
    }
}

/// Run `img copy`.
pub fn run(global: &Global, args: CopyArgs) -> Result<ExitCode> {
    let from = Place::parse(&args.source)?;
    let to = Place::parse(&args.destination)?;
    let platform = args
        .platform
        .as_deref()
        .map(str::parse::<Platform>)
        .transpose()?;
    let digest = match (&from, &to) {
        (Place::Registry(src), Place::Registry(dst)) => {
            let client = args.registry.client(global)?;
            let options = CopyOptions {
                all: args.all,
                platform,
                push: PushOptions {
                    concurrency: args.registry.jobs.max(1),
                    ..PushOptions::default()
                },
            };
            let copied = with_bars(global, |bars| {
                super::runtime()?
                    .block_on(img_registry::copy(&client, src, dst, &options, bars))
                    .with_context(|| format!("copying {src} to {dst}"))
            })?;
            say(global, &copied);
            copied.digest.to_string()
        }
        (Place::Registry(src), Place::Store(name)) => {
            let pulled = super::pull::pull_image(
                global,
                &args.registry,
                &src.to_string(),
                args.platform.as_deref(),
            )?;
            let store = super::store(global)?;
            super::tag::tag(&store, &pulled.reference.to_string(), name)?;
            pulled.digest.to_string()
        }
        (Place::Store(name), Place::Registry(dst)) => {
            let store = super::store(global)?;
            let name = super::stored_names(&store, name)?.names[0].clone();
            let client = args.registry.client(global)?;
            let options = PushOptions {
                concurrency: args.registry.jobs.max(1),
                ..PushOptions::default()
            };
            let pushed = with_bars(global, |bars| {
                super::runtime()?
                    .block_on(img_registry::push(
                        &client, &store, &name, dst, &options, bars,
                    ))
                    .with_context(|| format!("pushing {name} to {dst}"))
            })?;
            say(global, &pushed);
            pushed.digest.to_string()
        }
        (Place::Store(name), Place::Store(new)) => {
            let store = super::store(global)?;
            super::tag::tag(&store, name, new)?.digest().to_string()
        }
        _ => bail!(
            "copying from {} to {} is not supported yet",
            args.source,
            args.destination
        ),
    };
    if global.json {
        crate::output::json(&serde_json::json!({ "digest": digest }))?;
    } else {
        println!("{digest}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Run `f` with progress bars on a terminal (hidden otherwise), cleared after.
fn with_bars<T>(
    global: &Global,
    f: impl FnOnce(Arc<dyn img_registry::Progress>) -> Result<T>,
) -> Result<T> {
    let visible = !global.quiet && !global.json && std::io::stderr().is_terminal();
    let bars = Arc::new(Bars::new(visible));
    let out = f(bars.clone());
    bars.clear();
    out
}

fn say(global: &Global, done: &Pushed) {
    if global.verbose > 0 {
        eprintln!(
            "{}: uploaded {} blob(s) ({}), mounted {}, already there {}{}",
            done.reference,
            done.uploaded,
            crate::output::size(done.uploaded_bytes),
            done.mounted,
            done.present,
            done.platform_only
                .as_ref()
                .map_or_else(String::new, |p| format!(" (platform {p} only)"))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_places_as_skopeo_spells_them() {
        assert!(matches!(
            Place::parse("docker://127.0.0.1:5000/a:1").unwrap(),
            Place::Registry(r) if r.to_string() == "127.0.0.1:5000/a:1"
        ));
        assert_eq!(
            Place::parse("oci:./lay:redis").unwrap(),
            Place::Oci("./lay".into(), Some("redis".into()))
        );
        assert_eq!(
            Place::parse("oci-archive:/x.tar").unwrap(),
            Place::OciArchive("/x.tar".into(), None)
        );
        assert_eq!(
            Place::parse("docker-archive:x.tar:redis:7").unwrap(),
            Place::DockerArchive("x.tar".into(), Some("redis:7".into()))
        );
        assert_eq!(
            Place::parse("redis:7").unwrap(),
            Place::Store("redis:7".into())
        );
        assert!(Place::parse("oci:").is_err());
        assert!(Place::parse("containers-storage:redis").is_err());
        assert!(Place::parse("docker://docker.io/UPPER/x").is_err());
    }
}
