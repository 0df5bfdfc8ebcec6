//! `img copy`: an image from one place to another, in skopeo's spelling of places.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use img_registry::{CopyOptions, Platform, PushOptions, Pushed, Reference};
use img_store::archive::{self, LoadOptions, SaveImage};

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
        _ => via_store(global, &args, &from, &to, platform.as_ref())?,
    };
    if global.json {
        crate::output::json(&serde_json::json!({ "digest": digest }))?;
    } else {
        println!("{digest}");
    }
    Ok(ExitCode::SUCCESS)
}

/// A copy that involves a layout or an archive: through the store. The source is brought in
/// (read from a layout or archive, pulled, or found there), then sent out (written, pushed,
/// or named). What was brought in only for the copy is named temporarily and unnamed after
/// (its blobs stay until `img gc`, like any pull's).
fn via_store(
    global: &Global,
    args: &CopyArgs,
    from: &Place,
    to: &Place,
    platform: Option<&Platform>,
) -> Result<String> {
    let store = super::store(global)?;
    let wanted = platform.map(to_oci_platform).transpose()?;
    // The name the source is kept under while it is copied.
    let (name, temporary, names) = match from {
        Place::Store(input) => {
            let save = super::save::to_save(&store, input)?;
            (save.name.clone(), false, save.repo_tags)
        }
        Place::Registry(src) => {
            let existed = store.find_ref(&src.to_string())?.is_some();
            let pulled = super::pull::pull_image(
                global,
                &args.registry,
                &src.to_string(),
                args.platform.as_deref(),
            )?;
            let name = pulled.reference.to_string();
            (name.clone(), !existed, vec![super::save::familiar(&name)])
        }
        Place::Oci(..) | Place::OciArchive(..) | Place::DockerArchive(..) => {
            let (tag, temporary) = match to {
                Place::Store(new) => (
                    Reference::parse(new)
                        .with_context(|| format!("destination {new:?}"))?
                        .to_string(),
                    false,
                ),
                _ => (
                    format!(
                        "localhost/img-copy-{}-{}:latest",
                        std::process::id(),
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_nanos())
                    ),
                    true,
                ),
            };
            let (path, select) = match from {
                Place::Oci(p, r) | Place::OciArchive(p, r) | Place::DockerArchive(p, r) => {
                    (p, r.as_deref())
                }
                _ => unreachable!("matched above"),
            };
            let options = LoadOptions {
                tag: Some(&tag),
                select,
                normalize: Some(&super::load::normalize),
                platform: wanted.as_ref(),
                ..LoadOptions::default()
            };
            let loaded = match from {
                Place::Oci(..) => archive::read_layout(&store, path, &options)
                    .with_context(|| format!("reading {}", args.source))?,
                _ => super::load::load_file(&store, path, &options)?,
            };
            let name = loaded
                .first()
                .map(|l| l.name.clone())
                .context("nothing was loaded")?;
            (name, temporary, Vec::new())
        }
    };
    let result = send(global, args, &store, &name, &names, to);
    if temporary {
        let _ = store.remove_ref(&name);
    }
    result
}

/// Send the stored image `name` (whose source names are `names`) to `to`; its digest.
fn send(
    global: &Global,
    args: &CopyArgs,
    store: &img_store::Store,
    name: &str,
    names: &[String],
    to: &Place,
) -> Result<String> {
    let image = store
        .image(name)
        .with_context(|| format!("reading image {name}"))?;
    let manifest = image.manifest_digest.to_string();
    match to {
        Place::Store(new) => {
            let new = Reference::parse(new).with_context(|| format!("destination {new:?}"))?;
            if new.to_string() != name {
                super::tag::tag(store, name, &new.to_string())?;
            }
            Ok(manifest)
        }
        Place::Registry(dst) => {
            let client = args.registry.client(global)?;
            let options = PushOptions {
                concurrency: args.registry.jobs.max(1),
                ..PushOptions::default()
            };
            let pushed = with_bars(global, |bars| {
                super::runtime()?
                    .block_on(img_registry::push(
                        &client, store, name, dst, &options, bars,
                    ))
                    .with_context(|| format!("pushing {name} to {dst}"))
            })?;
            say(global, &pushed);
            Ok(pushed.digest.to_string())
        }
        Place::Oci(dir, r) => {
            let save = SaveImage {
                name: name.to_string(),
                repo_tags: Vec::new(),
                ref_name: r.clone(),
                full_name: None,
            };
            archive::write_layout(store, dir, &save, r.as_deref())
                .with_context(|| format!("writing {}", args.destination))?;
            Ok(manifest)
        }
        Place::OciArchive(file, r) | Place::DockerArchive(file, r) => {
            let docker = matches!(to, Place::DockerArchive(..));
            let repo_tags = match r {
                Some(r) if docker => vec![r.clone()],
                None if docker => names.to_vec(),
                _ => Vec::new(),
            };
            let full_name = match (docker, r) {
                (true, Some(r)) => super::load::normalize(r),
                (true, None) => names.first().and_then(|n| super::load::normalize(n)),
                (false, _) => None,
            };
            let ref_name = match (docker, r) {
                (false, r) => r.clone(),
                (true, _) => full_name
                    .as_deref()
                    .and_then(|f| f.rsplit_once(':'))
                    .filter(|(_, t)| !t.contains('/'))
                    .map(|(_, t)| t.to_string()),
            };
            let save = SaveImage {
                name: name.to_string(),
                repo_tags,
                ref_name,
                full_name,
            };
            super::save::write_file(store, &[save], file)?;
            Ok(manifest)
        }
    }
}

/// An `os/arch[/variant]` as oci-spec's platform.
fn to_oci_platform(p: &Platform) -> Result<img_store::archive::OciPlatform> {
    let mut v = serde_json::json!({ "os": p.os, "architecture": p.architecture });
    if let Some(variant) = &p.variant {
        v["variant"] = variant.clone().into();
    }
    serde_json::from_value(v).context("platform")
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
