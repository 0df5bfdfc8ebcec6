//! Named volumes (`-v NAME:/data`, `--mount type=volume,source=NAME,…`): directories the store
//! keeps for containers, at `ROOT/volumes/NAME/_data` (docker's layout), made on first use and
//! kept until `img volume rm`. A new volume is filled with what the image has at the mount
//! point, as docker fills it (init copies it, through the container's root, before the mount:
//! [`copy_up`]).

use std::path::{Path, PathBuf};

use crate::state::ContainerState;
use crate::{Error, Result};

/// The annotation listing the sources of a container's named volumes (`_data` paths): init
/// fills each that does not exist yet.
pub const ANNOTATION: &str = "io.img.volumes";

/// Whether `name` is a volume's name (docker's rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`).
///
/// ```
/// use img_run::volumes::is_name;
/// assert!(is_name("redis-data") && is_name("db.1"));
/// assert!(!is_name("/srv") && !is_name("-x") && !is_name("a") && !is_name("a/b"));
/// ```
pub fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() > 1
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// `ROOT/volumes/NAME`.
pub fn dir(root: &Path, name: &str) -> PathBuf {
    root.join("volumes").join(name)
}

/// Where a volume's files are: `ROOT/volumes/NAME/_data`.
pub fn data(root: &Path, name: &str) -> PathBuf {
    dir(root, name).join("_data")
}

/// Make volume `name` (its directory; `_data` comes with the first container, filled from its
/// image, or now when `empty`). Returns whether it is new.
pub fn create(root: &Path, name: &str, empty: bool) -> Result<bool> {
    if !is_name(name) {
        return Err(Error::Config(format!(
            "invalid volume name {name:?}: letters, digits, '_', '.', '-', starting with a \
             letter or digit, at least two characters"
        )));
    }
    let volumes = root.join("volumes");
    std::fs::create_dir_all(&volumes).map_err(crate::error::sys(volumes.display()))?;
    let dir = dir(root, name);
    let new = match std::fs::create_dir(&dir) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(crate::error::sys(dir.display())(e)),
    };
    if empty {
        let data = data(root, name);
        match std::fs::create_dir(&data) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(crate::error::sys(data.display())(e)),
        }
    }
    Ok(new)
}

/// The volumes under `root`, by name.
pub fn list(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("volumes"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| is_name(n))
        .collect();
    names.sort();
    names
}

/// The ids of the containers (any state) whose spec mounts volume `name`.
pub fn users(root: &Path, name: &str) -> Vec<String> {
    let data = data(root, name);
    // Compared as files, not as text: the root may be spelled otherwise in a spec.
    let same = |source: &Path| {
        source == data
            || std::fs::canonicalize(source)
                .ok()
                .zip(std::fs::canonicalize(&data).ok())
                .is_some_and(|(a, b)| a == b)
    };
    ContainerState::list(root)
        .into_iter()
        .filter(|(dir, _)| {
            let Ok(bytes) = std::fs::read(dir.join("config.json")) else {
                return false;
            };
            let spec: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            spec["mounts"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["source"].as_str().map(Path::new).is_some_and(same))
        })
        .map(|(_, s)| s.id)
        .collect()
}

/// Remove volume `name`, refused while a container (running or not) uses it.
pub fn remove(root: &Path, name: &str) -> Result<()> {
    let dir = dir(root, name);
    if !is_name(name) || !dir.is_dir() {
        return Err(Error::Config(format!("no such volume: {name}")));
    }
    let users = users(root, name);
    if !users.is_empty() {
        let short: Vec<&str> = users.iter().map(|id| &id[..12.min(id.len())]).collect();
        return Err(Error::Config(format!(
            "volume {name} is in use by container {} (remove it first)",
            short.join(", ")
        )));
    }
    crate::userns::remove_tree(&dir)
}

/// In init, before the mounts: fill each named volume of the spec that has no `_data` yet
/// with what the image has at its mount point (owners kept), read through `root` (the
/// container's root, not yet pivoted into) so that no symlink of the image leads out; an
/// image without that directory gives an empty one.
pub(crate) fn copy_up(root: &Path, spec: &oci_spec::runtime::Spec) -> Result<()> {
    let Some(listed) = spec.annotations().as_ref().and_then(|a| a.get(ANNOTATION)) else {
        return Ok(());
    };
    let sources: Vec<PathBuf> = serde_json::from_str(listed)
        .map_err(|e| Error::Config(format!("annotation {ANNOTATION}: {e}")))?;
    for m in spec.mounts().iter().flatten() {
        let Some(source) = m.source().as_ref().filter(|s| sources.contains(s)) else {
            continue;
        };
        if source.exists() {
            continue;
        }
        let dest = m.destination();
        // Filled beside its name and renamed into place: a fill cut short (init killed, a
        // full disk) never passes for a filled volume, and of two containers filling a new
        // volume at once one wins and the other discards its copy.
        let name = source
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = source.with_file_name(format!(".{name}.fill-{}", std::process::id()));
        let _ = crate::userns::remove_tree(&temp);
        match crate::copy::copy_out(root, dest, &temp, true) {
            // A directory, not a symlink to one (on the host, it would point at the host's).
            Ok(()) if std::fs::symlink_metadata(&temp).is_ok_and(|m| m.is_dir()) => {}
            // A file or a symlink there in the image: the volume is an empty directory.
            Ok(()) => {
                std::fs::remove_file(&temp).map_err(crate::error::sys(temp.display()))?;
                std::fs::create_dir(&temp).map_err(crate::error::sys(temp.display()))?;
            }
            // Nothing there in the image: an empty volume.
            Err(Error::Sys { cause, .. }) if cause.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&temp).map_err(crate::error::sys(temp.display()))?;
            }
            Err(e) => {
                let _ = crate::userns::remove_tree(&temp);
                return Err(Error::Config(format!(
                    "filling volume {} from the image's {}: {e}",
                    source.display(),
                    dest.display()
                )));
            }
        }
        // With --userns=remap (init is still the host's root here), the container's root
        // owns an empty one (a filled one keeps the image's owners, already shifted).
        if let Some((uids, gids)) = crate::userns::spec_maps(spec)?
            && crate::userns::is_root()
            && std::fs::read_dir(&temp).is_ok_and(|mut d| d.next().is_none())
        {
            let (uid, gid) = (
                crate::idmap::outside(&uids, 0),
                crate::idmap::outside(&gids, 0),
            );
            std::os::unix::fs::chown(&temp, Some(uid), Some(gid))
                .map_err(crate::error::sys(temp.display()))?;
        }
        let placed = rustix::fs::renameat_with(
            rustix::fs::CWD,
            &temp,
            rustix::fs::CWD,
            source,
            rustix::fs::RenameFlags::NOREPLACE,
        );
        if placed.is_err() {
            // Another container filled it first: theirs is the volume.
            let _ = crate::userns::remove_tree(&temp);
            if !source.is_dir() {
                return Err(Error::Config(format!(
                    "filling volume {}: it could not be put in place",
                    source.display()
                )));
            }
        }
    }
    Ok(())
}
