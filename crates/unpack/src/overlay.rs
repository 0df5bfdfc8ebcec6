//! Stacking an image's snapshots with overlayfs: read-only lower layers (the snapshots, shared
//! by every mount of the image) under a fresh writable upper layer, in
//! `ROOT/mounts/<id>/{upper,work,merged}` with a `meta.json` that keeps gc off the snapshots.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use img_store::{Image, Store};
use rustix::mount::{MountFlags, UnmountFlags};

use crate::error::io_at;
use crate::{Error, Result};

/// An overlay mount of an image.
#[derive(Debug, Clone)]
pub struct OverlayMount {
    /// Its id (the name of its directory under `ROOT/mounts`).
    pub id: String,
    /// `ROOT/mounts/<id>`.
    pub dir: PathBuf,
    /// The merged view.
    pub merged: PathBuf,
}

/// Prepare the image's snapshots and mount them read-only under a fresh writable layer.
pub fn mount_image(store: &Store, image: &Image) -> Result<OverlayMount> {
    let lowers = crate::prepare_snapshots(store, image)?;
    let id = new_id();
    let dir = store.root().join("mounts").join(&id);
    let (upper, work, merged) = (dir.join("upper"), dir.join("work"), dir.join("merged"));
    for d in [&upper, &work, &merged] {
        std::fs::create_dir_all(d).map_err(io_at(d.display()))?;
    }
    let chain_ids = img_store::chain_ids(&image.diff_ids()?);
    let meta = serde_json::json!({
        "image": image.name,
        "chainIDs": chain_ids.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
    });
    let meta_path = dir.join("meta.json");
    std::fs::write(&meta_path, meta.to_string()).map_err(io_at(meta_path.display()))?;
    let result = mount_overlay(&lowers, &upper, &work, &merged);
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    Ok(OverlayMount { id, dir, merged })
}

/// Mount `lowers` (base first) under `upper` at `merged`.
pub fn mount_overlay(lowers: &[PathBuf], upper: &Path, work: &Path, merged: &Path) -> Result<()> {
    if lowers.is_empty() {
        // An image without layers: an empty lower directory beside the upper one.
        let empty = upper.with_file_name("empty");
        std::fs::create_dir_all(&empty).map_err(io_at(empty.display()))?;
        return mount_overlay(&[empty], upper, work, merged);
    }
    let lowerdir: Vec<String> = lowers
        .iter()
        .rev()
        .map(|p| escape(&p.display().to_string()))
        .collect();
    let mut data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowerdir.join(":"),
        escape(&upper.display().to_string()),
        escape(&work.display().to_string())
    );
    if !in_initial_user_namespace() {
        // A rootless container's root: overlayfs keeps its attributes in `user.overlay.*`
        // (where an unprivileged unpack put the opaque markers; kernel 5.11 and later).
        data.push_str(",userxattr");
    }
    let data = CString::new(data).map_err(|_| Error::Io {
        path: merged.display().to_string(),
        cause: std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in a path"),
    })?;
    rustix::mount::mount(
        "overlay",
        merged,
        "overlay",
        MountFlags::empty(),
        Some(data.as_c_str()),
    )
    .map_err(|e| Error::Io {
        path: format!("mounting overlay at {}", merged.display()),
        cause: e.into(),
    })
}

/// Whether this process is in the host's user namespace (its uid map is the identity over
/// every id), not in one a rootless container made.
pub fn in_initial_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map").map_or(true, |map| {
        map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"]
    })
}

/// Unmount what [`mount_overlay`] mounted at `merged` (lazily: a process still in it keeps
/// it until it leaves).
pub fn unmount_path(merged: &Path) -> Result<()> {
    rustix::mount::unmount(merged, rustix::mount::UnmountFlags::DETACH).map_err(|e| Error::Io {
        path: format!("unmounting {}", merged.display()),
        cause: e.into(),
    })
}

/// Unmount a mount made by [`mount_image`], named by id, its directory, or its merged path,
/// and remove its directory (the writable layer with it). Returns the directory removed.
pub fn unmount(store: &Store, what: &str) -> Result<PathBuf> {
    let mounts = store.root().join("mounts");
    let candidate = Path::new(what);
    let dir = if candidate.is_absolute() || what.contains('/') {
        let p = std::fs::canonicalize(candidate).map_err(io_at(what))?;
        let p = if p.file_name().is_some_and(|n| n == "merged") {
            p.parent().map(Path::to_path_buf).unwrap_or(p)
        } else {
            p
        };
        let mounts = std::fs::canonicalize(&mounts).unwrap_or(mounts);
        if p.parent() != Some(mounts.as_path()) {
            return Err(not_ours(what));
        }
        p
    } else {
        mounts.join(what)
    };
    if !dir.join("meta.json").is_file() {
        return Err(not_ours(what));
    }
    let merged = dir.join("merged");
    match rustix::mount::unmount(&merged, UnmountFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::INVAL) => {}
        Err(e) => {
            return Err(Error::Io {
                path: format!("unmounting {}", merged.display()),
                cause: e.into(),
            });
        }
    }
    std::fs::remove_dir_all(&dir).map_err(io_at(dir.display()))?;
    Ok(dir)
}

fn not_ours(what: &str) -> Error {
    Error::Io {
        path: what.to_string(),
        cause: std::io::Error::new(std::io::ErrorKind::NotFound, "not a mount made by img"),
    }
}

/// overlayfs splits its options at `,` and lower directories at `:`.
fn escape(path: &str) -> String {
    path.replace('\\', "\\\\")
        .replace(':', "\\:")
        .replace(',', "\\,")
}

fn new_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seed = format!("{nanos}-{}", std::process::id());
    img_store::digest::sha256(seed.as_bytes()).digest()[..12].to_string()
}
