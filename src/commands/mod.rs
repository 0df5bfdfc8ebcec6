//! One module per subcommand. Each parses nothing itself beyond its `Args` struct and calls
//! the library crates; the helpers here are what several of them share.

pub mod commit;
pub mod container;
pub mod copy;
pub mod fsck;
pub mod gc;
pub mod images;
pub mod inspect;
pub mod layers;
pub mod load;
pub mod login;
pub mod prune;
pub mod pull;
pub mod push;
pub mod rmi;
pub mod run;
pub mod save;
pub mod tag;
pub mod unpack;
pub mod version;
pub mod volume;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use img_registry::Reference;
use img_store::{Digest, IdMatch, Image, Store, is_full_image_id};

use crate::Global;

/// The store root: `--root`/`IMG_ROOT`, else `/var/lib/img` for root, else the XDG data dir.
pub fn root(global: &Global) -> PathBuf {
    if let Some(root) = &global.root {
        return root.clone();
    }
    if effective_uid() == 0 {
        return PathBuf::from("/var/lib/img");
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("img")
}

/// Without root, the commands that write or remove snapshots run again, whole, as root of a
/// user namespace mapping the user's ids (its subordinate ranges from 1, as a rootless
/// container sees them), on the same store: there the image's owners are set as the image
/// gives them, and what a container's ids own can be removed. Returns the exit code of that
/// run, or `None` when this process goes on (root, or in that namespace already).
pub fn rootless_reexec(
    global: &Global,
    command: &crate::Command,
    args: &[std::ffi::OsString],
) -> Option<std::process::ExitCode> {
    use crate::{Command, ImageCommand, SystemCommand};
    let snapshots = match command {
        Command::Pull(a) | Command::Image(ImageCommand::Pull(a)) => a.unpack,
        Command::Gc
        | Command::Image(ImageCommand::Prune(_))
        | Command::System(SystemCommand::Prune(_)) => true,
        _ => false,
    };
    if !snapshots || effective_uid() == 0 {
        return None;
    }
    let args: Vec<&std::ffi::OsStr> = args.iter().skip(1).map(|a| a.as_os_str()).collect();
    let inherit = || {
        [
            img_run::spawn::Stdio::Inherit,
            img_run::spawn::Stdio::Inherit,
            img_run::spawn::Stdio::Inherit,
        ]
    };
    let code = user_namespace_args(global)
        .and_then(|(exe, root)| {
            // The store's root made explicit (uid 0 there would pick root's), unless the
            // user gave it (`--root` in the arguments, or IMG_ROOT, which the child inherits):
            // clap refuses `--root` twice.
            let mut all: Vec<&std::ffi::OsStr> = Vec::new();
            if global.root.is_none() {
                all.extend(["--root".as_ref(), root.as_os_str()]);
            }
            all.extend(args);
            Ok(img_run::userns::run_mapped(&exe, &all, inherit(), 0)?)
        })
        .unwrap_or_else(|e| {
            eprintln!("img: {e:#}");
            125
        });
    Some(std::process::ExitCode::from(
        u8::try_from(code).unwrap_or(125),
    ))
}

/// Our binary and the store root, for running img again in a user namespace (the root given
/// explicitly: there we are uid 0, whose default store is another).
fn user_namespace_args(global: &Global) -> Result<(PathBuf, PathBuf)> {
    let exe = std::env::current_exe().context("finding our own binary")?;
    Ok((exe, root(global)))
}

/// Prepare `image`'s snapshots (or, with `into`, its flattened rootfs there) in a user
/// namespace mapping the user's ids (`img __snapshots`, rootless `run`); its error, when it
/// fails, is the one line it printed.
pub fn snapshots_in_user_namespace(
    global: &Global,
    image: &str,
    into: Option<&std::path::Path>,
) -> Result<()> {
    let (exe, root) = user_namespace_args(global)?;
    let (r, w) = std::io::pipe().context("pipe")?;
    let mut args = vec![
        "--root".as_ref(),
        root.as_os_str(),
        "__snapshots".as_ref(),
        image.as_ref(),
    ];
    if let Some(dir) = into {
        args.extend(["--into".as_ref(), dir.as_os_str()]);
    }
    let stdio = [
        img_run::spawn::Stdio::Null,
        img_run::spawn::Stdio::Null,
        img_run::spawn::Stdio::Fd(w.into()),
    ];
    // Read while it runs (a pipe holds 64 KiB; a chattier child would block on it).
    let reader = std::thread::spawn(move || {
        let mut said = String::new();
        std::io::Read::read_to_string(&mut { r }, &mut said).ok();
        said
    });
    let code = img_run::userns::run_mapped(&exe, &args, stdio, 0)?;
    let said = reader.join().unwrap_or_default();
    if code != 0 {
        let said = said.trim().trim_start_matches("img: ");
        bail!("{}", if said.is_empty() { "failed" } else { said });
    }
    Ok(())
}

/// `img __snapshots IMAGE [--into DIR]`: prepare the stored image's snapshots, or unpack it
/// flattened into DIR.
pub fn prepare_snapshots(
    global: &Global,
    image: &str,
    into: Option<&std::path::Path>,
) -> Result<std::process::ExitCode> {
    let store = store(global)?;
    let image = store.image(image)?;
    match into {
        Some(dir) => {
            img_unpack::unpack_image(&store, &image, dir)?;
        }
        None => {
            img_unpack::prepare_snapshots(&store, &image)?;
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Whether a rootless container's root can be an overlay here (see
/// `img_run::userns::overlay_works`), tried once per kernel and kept in
/// `ROOT/rootless-overlay`; `IMG_ROOTLESS_OVERLAY=0` (or `1`) decides instead. Without it,
/// a rootless container gets a flattened copy of its image (podman's `vfs` driver's way).
pub fn rootless_overlay(global: &Global) -> Result<bool> {
    match std::env::var("IMG_ROOTLESS_OVERLAY").as_deref() {
        Ok("0") => return Ok(false),
        Ok("1") => return Ok(true),
        _ => {}
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let cache = root(global).join("rootless-overlay");
    if let Ok(text) = std::fs::read_to_string(&cache)
        && let Some((kernel, answer)) = text.trim().rsplit_once(' ')
        && kernel == release
    {
        return Ok(answer == "yes");
    }
    let scratch = root(global).join(format!(".overlay-probe-{}", std::process::id()));
    let works = img_run::userns::overlay_works(&scratch)?;
    let answer = if works { "yes" } else { "no" };
    std::fs::write(&cache, format!("{release} {answer}\n"))
        .with_context(|| format!("writing {}", cache.display()))?;
    Ok(works)
}

/// Our effective uid (in our user namespace): /proc/self belongs to it.
fn effective_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0)
}

/// Open (creating if needed) the store.
pub fn store(global: &Global) -> Result<Store> {
    let root = root(global);
    Store::open(&root).context("opening the store")
}

/// The store's name for what the user typed: its normalized reference when one is stored,
/// else the text itself as a stored name, else a unique digest prefix (`sha256:` optional).
fn resolve_name(store: &Store, input: &str) -> Result<String> {
    let normalized = Reference::parse(input).map(|r| r.to_string());
    let refs = store.refs()?;
    let names: Vec<&str> = refs.iter().filter_map(img_store::ref_name).collect();
    if let Ok(n) = &normalized
        && names.contains(&n.as_str())
    {
        return Ok(n.clone());
    }
    if names.contains(&input) {
        return Ok(input.to_string());
    }
    let prefix = input.strip_prefix("sha256:").unwrap_or(input);
    if prefix.len() >= 4 && prefix.chars().all(|c| c.is_ascii_hexdigit()) {
        let hits: Vec<&str> = refs
            .iter()
            .filter(|d| d.digest().digest().starts_with(prefix))
            .filter_map(img_store::ref_name)
            .collect();
        match hits[..] {
            [one] => return Ok(one.to_string()),
            [] => {}
            _ => bail!(
                "digest prefix {input:?} matches several images: {}",
                hits.join(", ")
            ),
        }
    }
    match normalized {
        Ok(n) if n != input => bail!("no image {input:?} in the store (looked for {n})"),
        Ok(_) => bail!("no image {input:?} in the store"),
        Err(e) => bail!("no image {input:?} in the store ({e})"),
    }
}

/// Stored references found for what the user typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The image ID (the config's digest), when `input` was an ID or a prefix of one.
    pub id: Option<Digest>,
    /// The reference named, or every reference to the image with that ID, in `index.json`
    /// order; never empty.
    pub names: Vec<String>,
}

impl Stored {
    /// The image behind the first name.
    pub fn image(&self, store: &Store) -> Result<Image> {
        let name = self.names.first().context("no stored reference")?;
        store
            .image(name)
            .with_context(|| format!("reading image {name}"))
    }
}

/// How many IDs an ambiguous-prefix error lists.
const LISTED_IDS: usize = 5;

/// Look `input` up in the store as docker does, before any registry: a stored reference (as
/// typed or normalized) first, then an image ID (`HEX`, `sha256:HEX`) or a prefix of one that
/// fits one image ID only, whatever its length. `Ok(None)` when neither fits; an error naming
/// `input` when the prefix fits several IDs.
pub fn find_stored(store: &Store, input: &str) -> Result<Option<Stored>> {
    let normalized = Reference::parse(input).ok().map(|r| r.to_string());
    for name in normalized.as_deref().into_iter().chain([input]) {
        if store.find_ref(name)?.is_some() {
            return Ok(Some(Stored {
                id: None,
                names: vec![name.to_string()],
            }));
        }
    }
    match store.find_image_id(input)? {
        IdMatch::None => Ok(None),
        IdMatch::One { id, names } => Ok(Some(Stored {
            id: Some(id),
            names,
        })),
        IdMatch::Ambiguous(ids) => {
            let mut listed: Vec<String> = ids
                .iter()
                .take(LISTED_IDS)
                .map(|d| img_store::digest::short(d).to_string())
                .collect();
            if ids.len() > LISTED_IDS {
                listed.push(format!("and {} more", ids.len() - LISTED_IDS));
            }
            bail!(
                "image ID prefix {input:?} is ambiguous: {} images have IDs starting so ({}); give more digits",
                ids.len(),
                listed.join(", ")
            )
        }
    }
}

/// The stored references `input` names, without any registry: [`find_stored`], then img's
/// lookup by a digest prefix of a stored manifest. An error naming `input` when nothing fits.
pub fn stored_names(store: &Store, input: &str) -> Result<Stored> {
    if let Some(found) = find_stored(store, input)? {
        return Ok(found);
    }
    match resolve_name(store, input) {
        Ok(name) => Ok(Stored {
            id: None,
            names: vec![name],
        }),
        Err(_) if is_full_image_id(input) => bail!("no image with ID {input:?} in the store"),
        Err(e) => Err(e),
    }
}

/// Read the stored image the user named.
pub fn image(store: &Store, input: &str) -> Result<Image> {
    stored_names(store, input)?.image(store)
}

/// The stored image the user named, pulled first when the store does not have it (or has it
/// for another platform than `--platform` asks).
pub fn image_or_pull(
    global: &Global,
    registry: &pull::RegistryArgs,
    input: &str,
    platform: Option<&str>,
    say: bool,
) -> Result<(Store, Image)> {
    let store = store(global)?;
    if let Ok(name) = resolve_name(&store, input) {
        let image = store
            .image(&name)
            .with_context(|| format!("reading image {name}"))?;
        let wanted = platform
            .map(str::parse::<img_registry::Platform>)
            .transpose()?;
        let have = img_registry::Platform {
            os: image.config.os().to_string(),
            architecture: image.config.architecture().to_string(),
            variant: image.config.variant().clone(),
        };
        if wanted.is_none_or(|w| w.matches(&have)) {
            return Ok((store, image));
        }
    }
    // docker's lines for an image run before it was pulled, on stderr: on a terminal the
    // first before the bars; otherwise all once the pull succeeded (a failure is one line).
    let say = say && !global.quiet;
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let shown = Reference::parse(input)
        .map(|r| save::familiar(&r.to_string()))
        .unwrap_or_else(|_| input.to_string());
    let unable = format!("Unable to find image '{shown}' locally");
    if terminal && say {
        eprintln!("{unable}");
    }
    let pulled = pull::pull_image(global, registry, input, platform)?;
    if say {
        if !terminal {
            eprintln!("{unable}");
        }
        eprintln!("Digest: {}", pulled.digest);
        eprintln!("Status: Downloaded newer image for {shown}");
    }
    let name = pulled.reference.to_string();
    let image = store
        .image(&name)
        .with_context(|| format!("reading image {name}"))?;
    Ok((store, image))
}

/// The async runtime commands that talk to registries run on.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get().min(4)))
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Split a stored name into (repository, tag) for display.
pub fn repo_and_tag(name: &str) -> (String, String) {
    match Reference::parse(name) {
        Ok(r) => (
            r.name(),
            r.tag().map_or_else(|| "<none>".to_string(), str::to_string),
        ),
        Err(_) => (name.to_string(), "<none>".to_string()),
    }
}
