//! Layers to filesystems: a flattened rootfs, or per-layer snapshots for overlayfs.
//!
//! One streaming pass per layer: the blob is decompressed (gzip, zstd or none, told apart by
//! their magic bytes) and hashed in a thread of its own while its tar entries are applied;
//! the uncompressed stream must hash to the config's `rootfs.diff_ids[i]`, else the result is
//! discarded. Nothing is written, linked or followed outside the target (see [`apply`]).
//!
//! ```no_run
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = img_store::Store::open("/var/lib/img")?;
//! let image = store.image("127.0.0.1:5000/redis:7")?;
//! img_unpack::unpack_image(&store, &image, std::path::Path::new("./rootfs"))?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod apply;
mod error;
mod feed;
pub mod overlay;
mod stack;
mod stream;

use std::path::{Path, PathBuf};

use img_store::{Descriptor, Digest, Image, Store};

pub use apply::{Mode, Stats};
pub use error::{Error, Result};
pub use feed::{FedSnapshot, Settled, SnapshotFeed};
pub use overlay::{OverlayMount, mount_image, unmount};
pub use stream::Compression;

use stack::Lowers;
use stream::LayerStream;

/// Apply the layer blob `layer` (from `store`) to `target`, checking its uncompressed bytes
/// against `diff_id`.
pub fn apply_layer(
    store: &Store,
    layer: &Descriptor,
    diff_id: &Digest,
    target: &Path,
    mode: Mode,
) -> Result<Stats> {
    apply_layer_over(store, layer, diff_id, target, mode, None)
}

fn apply_layer_over(
    store: &Store,
    layer: &Descriptor,
    diff_id: &Digest,
    target: &Path,
    mode: Mode,
    lowers: Option<Lowers>,
) -> Result<Stats> {
    let stream = LayerStream::spawn(store.open_blob(layer.digest())?, diff_id)
        .map_err(|e| e.in_layer(layer.digest()))?;
    apply_stream(stream, diff_id, target, mode, lowers).map_err(|e| e.in_layer(layer.digest()))
}

/// A layer blob of the store as its uncompressed tar, an [`std::io::Read`]: gzip, zstd or plain
/// (told apart by their magic bytes, which agree with the media type of any valid layer), read
/// and decompressed in a thread of its own. [`LayerReader::finish`] reads to the end and gives
/// the diff_id (sha256 of the uncompressed bytes) and length, to check against the config.
///
/// ```
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("img-doc-open-layer-{}", std::process::id()));
/// use std::io::Write;
/// let store = img_store::Store::open(&dir)?;
/// // A gzip'd one-file layer, stored as any layer blob is.
/// let mut tar = tar::Builder::new(Vec::new());
/// let mut header = tar::Header::new_gnu();
/// header.set_size(3);
/// header.set_mode(0o644);
/// tar.append_data(&mut header, "hello", &b"hi\n"[..])?;
/// let plain = tar.into_inner()?;
/// let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
/// gz.write_all(&plain)?;
/// let mut ingest = store.ingest_new(img_store::DigestAlgorithm::Sha256)?;
/// ingest.write_all(&gz.finish()?)?;
/// let size = ingest.written();
/// let digest = ingest.commit()?;
/// let layer = img_store::Descriptor::new(
///     "application/vnd.oci.image.layer.v1.tar+gzip".into(), size, digest);
///
/// let mut reader = img_unpack::open_layer(&store, &layer)?;
/// let mut archive = tar::Archive::new(&mut reader);
/// let names: Vec<String> = archive
///     .entries()?
///     .map(|e| Ok(e?.path()?.display().to_string()))
///     .collect::<std::io::Result<_>>()?;
/// assert_eq!(names, ["hello"]);
/// let (diff_id, len) = reader.finish()?;
/// assert_eq!(len, plain.len() as u64);
/// assert_eq!(diff_id, img_store::digest::sha256(&plain));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// # demo().unwrap();
/// ```
pub fn open_layer(store: &Store, layer: &Descriptor) -> Result<LayerReader> {
    let file = store.open_blob(layer.digest())?;
    let hasher = img_store::digest::Hasher::new(&img_store::DigestAlgorithm::Sha256)
        .expect("sha256 is supported");
    let stream = LayerStream::with_hasher(file, hasher).map_err(|e| e.in_layer(layer.digest()))?;
    Ok(LayerReader {
        stream,
        layer: layer.digest().clone(),
    })
}

/// A layer blob's uncompressed tar; see [`open_layer`].
pub struct LayerReader {
    stream: LayerStream,
    layer: Digest,
}

impl LayerReader {
    /// Read what is left and return the sha256 of the whole uncompressed stream (the layer's
    /// diff_id) and its length. A corrupt or truncated blob fails here, naming the layer.
    pub fn finish(self) -> Result<(Digest, u64)> {
        self.stream.finish().map_err(|e| e.in_layer(&self.layer))
    }
}

impl std::io::Read for LayerReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        std::io::Read::read(&mut self.stream, buf)
    }
}

impl std::fmt::Debug for LayerReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerReader")
            .field("layer", &self.layer.to_string())
            .finish()
    }
}

/// Apply an uncompressed layer tar read from `reader` to `target` (no diff_id check: for
/// tars that do not come from the store).
pub fn apply_tar(reader: impl std::io::Read, target: &Path, mode: Mode) -> Result<Stats> {
    apply::Applier::new(target, mode)?.apply(reader)
}

fn apply_stream(
    mut stream: LayerStream,
    diff_id: &Digest,
    target: &Path,
    mode: Mode,
    lowers: Option<Lowers>,
) -> Result<Stats> {
    let mut applier = apply::Applier::new(target, mode)?;
    if let Some(lowers) = lowers {
        applier = applier.with_lowers(lowers);
    }
    let stats = applier.apply(&mut stream)?;
    let (actual, _) = stream.finish()?;
    if &actual != diff_id {
        return Err(Error::DiffId {
            expected: diff_id.clone(),
            actual,
        });
    }
    Ok(stats)
}

/// The image's layers with their diff_ids, checked to be as many.
fn layers(image: &Image) -> Result<Vec<(Descriptor, Digest)>> {
    let layers = image.manifest.layers();
    let diff_ids = image.diff_ids()?;
    if layers.len() != diff_ids.len() {
        return Err(img_store::Error::BadManifest {
            digest: image.manifest_digest.clone(),
            reason: format!(
                "{} layers but the config lists {} diff_ids",
                layers.len(),
                diff_ids.len()
            ),
        }
        .into());
    }
    Ok(layers.iter().cloned().zip(diff_ids).collect())
}

/// Unpack every layer of `image`, in order, into the directory `target` (which must not exist
/// or be empty), applying whiteouts. The tree is built beside `target` and renamed into place
/// only when every layer applied and matched its diff_id; the next layer decompresses while
/// one is applied.
pub fn unpack_image(store: &Store, image: &Image, target: &Path) -> Result<Stats> {
    let layers = layers(image)?;
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if let Ok(mut entries) = std::fs::read_dir(target)
        && entries.next().is_some()
    {
        return Err(Error::Io {
            path: target.display().to_string(),
            cause: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "directory is not empty"),
        });
    }
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rootfs".into());
    // A new directory, or an empty one that a rename can replace, is built beside it and
    // renamed into place (a killed unpack never leaves a partial tree under the target's
    // name). Only an empty directory that cannot be renamed over (`.`, a symlink to one, a
    // mount point) is filled in place, and emptied again on failure.
    let in_place = target.is_dir() && !replaceable(target, &parent);
    remove_dead_temps(&parent, &name);
    let temp = if in_place {
        TempDir::contents_of(target.to_path_buf())
    } else {
        TempDir::new(parent.join(format!(".{name}.img-{}", std::process::id())))?
    };
    let mut total = Stats::default();
    let mut next = match layers.first() {
        Some((l, d)) => Some(spawn(store, l, d)?),
        None => None,
    };
    for (i, (layer, diff_id)) in layers.iter().enumerate() {
        let current = next.take().expect("spawned one ahead");
        if let Some((l, d)) = layers.get(i + 1) {
            next = Some(spawn(store, l, d)?);
        }
        let stats = apply_stream(current, diff_id, &temp.path, Mode::Flatten, None)
            .map_err(|e| e.in_layer(layer.digest()))?;
        total.entries += stats.entries;
        total.bytes += stats.bytes;
        total.skipped += stats.skipped;
        total.implied.extend(stats.implied);
    }
    if !in_place {
        std::fs::rename(&temp.path, target).map_err(error::io_at(target.display()))?;
    }
    temp.keep();
    Ok(total)
}

/// Whether `target`, an existing directory, can be replaced by a rename: not a symlink, not
/// `.` or `..`, not a mount point.
fn replaceable(target: &Path, parent: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let text = target.to_string_lossy();
    let dotted =
        [".", ".."].contains(&text.as_ref()) || text.ends_with("/.") || text.ends_with("/..");
    let named = matches!(
        target.components().next_back(),
        Some(std::path::Component::Normal(_))
    );
    match (std::fs::symlink_metadata(target), std::fs::metadata(parent)) {
        (Ok(t), Ok(p)) => !dotted && named && t.is_dir() && t.dev() == p.dev(),
        _ => false,
    }
}

/// Remove the temp trees (`.NAME.img-PID`) that unpacks into `parent/NAME` killed before
/// their rename left: those whose process is gone.
fn remove_dead_temps(parent: &Path, name: &str) {
    let prefix = format!(".{name}.img-");
    for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = Path::new(&format!("/proc/{pid}")).exists();
        if !alive && entry.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn spawn(store: &Store, layer: &Descriptor, diff_id: &Digest) -> Result<LayerStream> {
    let blob = store.open_blob(layer.digest())?;
    LayerStream::spawn(blob, diff_id).map_err(|e| e.in_layer(layer.digest()))
}

/// Make sure every layer of `image` has a snapshot (in overlay form, keyed by chain ID), and
/// return the snapshot directories' `fs/`, base first. Missing snapshots are prepared in
/// parallel, each in a temp directory renamed into place when complete.
pub fn prepare_snapshots(store: &Store, image: &Image) -> Result<Vec<PathBuf>> {
    let _guard = store.pull_guard()?;
    let layers = layers(image)?;
    let diff_ids: Vec<Digest> = layers.iter().map(|(_, d)| d.clone()).collect();
    let chain_ids = img_store::chain_ids(&diff_ids);
    let missing: Vec<usize> = (0..layers.len())
        .filter(|&i| !store.has_snapshot(&chain_ids[i]))
        .collect();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failure = std::sync::Mutex::new(None);
    // A snapshot that needs the view of the layers below waits for them: layers are handed
    // out base first, so the lowest one in progress never waits, and none waits forever.
    let committed = std::sync::Condvar::new();
    let wait_for_lowers = |i: usize| -> Result<Option<Lowers>> {
        let mut failed = failure.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if failed.is_some() {
                return Err(Error::Read("another layer failed".into()));
            }
            if chain_ids[..i].iter().all(|c| store.has_snapshot(c)) {
                return Ok(Some(lowers_of(store, &chain_ids[..i])));
            }
            failed = committed.wait(failed).unwrap_or_else(|p| p.into_inner());
        }
    };
    std::thread::scope(|scope| {
        for _ in 0..workers.min(missing.len()) {
            scope.spawn(|| {
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&i) = missing.get(k) else { break };
                    let done =
                        prepare_one(store, &layers[i].0, &layers[i].1, &chain_ids[i], &|| {
                            wait_for_lowers(i)
                        });
                    let mut failed = failure.lock().unwrap_or_else(|p| p.into_inner());
                    if let Err(e) = done {
                        failed.get_or_insert(e);
                    }
                    committed.notify_all();
                    if failed.is_some() {
                        break;
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    adopt_lower_metadata(store, &chain_ids)?;
    Ok(chain_ids
        .iter()
        .map(|c| store.snapshot_path(c).join("fs"))
        .collect())
}

/// The view of the snapshots of `chain_ids` (base first), topmost first.
fn lowers_of(store: &Store, chain_ids: &[Digest]) -> Lowers {
    Lowers::new(
        chain_ids
            .iter()
            .rev()
            .map(|c| store.snapshot_path(c).join("fs"))
            .collect(),
    )
}

/// Give every directory a snapshot had to invent (its layer did not list it) the owner, mode
/// and mtime it has in the nearest lower snapshot, so that a mount shows the lower layer's
/// directory, as a flattened unpack does. Done once the whole stack exists; recorded in
/// `meta.json` so it is done once.
fn adopt_lower_metadata(store: &Store, chain_ids: &[Digest]) -> Result<()> {
    use rustix::fs::{Mode as Perm, OFlags, ResolveFlags, Timespec, Timestamps};
    // Lower entries are only looked at (O_PATH: a whiteout device opens too); the upper
    // directory is changed, which needs a real open.
    let open_in = |root: &Path, rel: &Path, how: OFlags| -> Option<std::os::fd::OwnedFd> {
        let root = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Perm::empty(),
        )
        .ok()?;
        rustix::fs::openat2(
            &root,
            rel,
            how | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Perm::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
        .ok()
    };
    for (i, chain_id) in chain_ids.iter().enumerate().skip(1) {
        let dir = store.snapshot_path(chain_id);
        let meta_path = dir.join("meta.json");
        let Ok(bytes) = std::fs::read(&meta_path) else {
            continue;
        };
        let Ok(mut meta) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        let implied: Vec<PathBuf> = meta["implied"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str().map(PathBuf::from))
            .collect();
        if implied.is_empty() {
            continue;
        }
        for rel in &implied {
            let Some(upper) = open_in(&dir.join("fs"), rel, OFlags::RDONLY | OFlags::DIRECTORY)
            else {
                continue;
            };
            for lower_id in chain_ids[..i].iter().rev() {
                let Some(lower) =
                    open_in(&store.snapshot_path(lower_id).join("fs"), rel, OFlags::PATH)
                else {
                    continue;
                };
                let Ok(st) = rustix::fs::fstat(&lower) else {
                    break;
                };
                if rustix::fs::FileType::from_raw_mode(st.st_mode)
                    != rustix::fs::FileType::Directory
                {
                    break; // a file or whiteout below: nothing to adopt
                }
                let what = || rel.display().to_string();
                rustix::fs::fchown(
                    &upper,
                    Some(rustix::fs::Uid::from_raw(st.st_uid)),
                    Some(rustix::fs::Gid::from_raw(st.st_gid)),
                )
                .map_err(|e| Error::Io {
                    path: what(),
                    cause: e.into(),
                })?;
                rustix::fs::fchmod(&upper, Perm::from_raw_mode(st.st_mode & 0o7777)).map_err(
                    |e| Error::Io {
                        path: what(),
                        cause: e.into(),
                    },
                )?;
                let mtime = Timespec {
                    tv_sec: st.st_mtime as _,
                    tv_nsec: st.st_mtime_nsec as _,
                };
                let _ = rustix::fs::futimens(
                    &upper,
                    &Timestamps {
                        last_access: mtime,
                        last_modification: mtime,
                    },
                );
                break;
            }
        }
        meta["implied"] = serde_json::json!([]);
        let tmp = dir.join(".meta.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&meta).unwrap_or_default())
            .map_err(error::io_at(tmp.display()))?;
        std::fs::rename(&tmp, &meta_path).map_err(error::io_at(meta_path.display()))?;
    }
    Ok(())
}

/// Prepare the snapshot of one layer (`chain_id` names it; a no-op when it exists), for
/// callers that learn about layers one at a time, such as a pull that unpacks as blobs arrive.
/// `lower_chain_ids` are the chain IDs of the layers below it, base first. A layer whose paths
/// depend on what the layers below hold (it goes through a directory it does not list, or links
/// to a lower file) is kept only when their snapshots are already there to check it against;
/// otherwise it is left for [`prepare_snapshots`], and `Ok(false)` says so.
pub fn prepare_snapshot(
    store: &Store,
    layer: &Descriptor,
    diff_id: &Digest,
    chain_id: &Digest,
    lower_chain_ids: &[Digest],
) -> Result<bool> {
    if store.has_snapshot(chain_id) {
        return Ok(true);
    }
    prepare_one(store, layer, diff_id, chain_id, &|| {
        Ok(ready_lowers(store, lower_chain_ids))
    })
}

/// The view of the snapshots of `chain_ids` (base first) when they are all there.
fn ready_lowers(store: &Store, chain_ids: &[Digest]) -> Option<Lowers> {
    chain_ids
        .iter()
        .all(|c| store.has_snapshot(c))
        .then(|| lowers_of(store, chain_ids))
}

/// Prepare one snapshot, on its own first (so layers apply in parallel); then [`settle`] it.
/// Returns whether the snapshot was committed.
fn prepare_one(
    store: &Store,
    layer: &Descriptor,
    diff_id: &Digest,
    chain_id: &Digest,
    lowers: &dyn Fn() -> Result<Option<Lowers>>,
) -> Result<bool> {
    let temp = store.begin_snapshot(chain_id)?;
    let applied = apply_layer_over(store, layer, diff_id, &temp.fs(), Mode::Overlay, None);
    settle(store, layer, diff_id, chain_id, temp, applied, lowers)
}

/// Keep a snapshot its layer was applied to on its own (`applied`, into `temp`, named for
/// `chain_id`): when the layer named directories it did not list, or linked to a file it does
/// not hold, check that against the view of the layers below (`lowers`, `None` when they are
/// not ready) and apply it again through that view when it differs. Returns whether the
/// snapshot was committed (`false`: it needs lowers that are not there yet).
fn settle(
    store: &Store,
    layer: &Descriptor,
    diff_id: &Digest,
    chain_id: &Digest,
    temp: img_store::SnapshotTemp,
    applied: Result<Stats>,
    lowers: &dyn Fn() -> Result<Option<Lowers>>,
) -> Result<bool> {
    let (temp, stats) = match applied {
        Ok(stats) if stats.implied.is_empty() => (temp, stats),
        Ok(stats) => {
            let Some(view) = lowers()? else {
                return Ok(false);
            };
            if view.contradicts(&stats.implied) {
                drop(temp);
                again(store, layer, diff_id, chain_id, view)?
            } else {
                (temp, stats)
            }
        }
        Err(Error::Layer { cause, .. }) if matches!(*cause, Error::NeedsLowers) => {
            drop(temp);
            let Some(view) = lowers()? else {
                return Ok(false);
            };
            again(store, layer, diff_id, chain_id, view)?
        }
        Err(e) => return Err(e),
    };
    temp.commit(&serde_json::json!({
        "chainID": chain_id.to_string(),
        "diffID": diff_id.to_string(),
        "layer": layer.digest().to_string(),
        "mediaType": layer.media_type().to_string(),
        "implied": stats.implied,
    }))?;
    Ok(true)
}

/// Apply a layer into a fresh snapshot through the view of the layers below.
fn again(
    store: &Store,
    layer: &Descriptor,
    diff_id: &Digest,
    chain_id: &Digest,
    view: Lowers,
) -> Result<(img_store::SnapshotTemp, Stats)> {
    let temp = store.begin_snapshot(chain_id)?;
    let stats = apply_layer_over(store, layer, diff_id, &temp.fs(), Mode::Overlay, Some(view))?;
    Ok((temp, stats))
}

/// A directory removed on drop unless kept (or, for one that existed, emptied).
struct TempDir {
    path: PathBuf,
    only_contents: bool,
    keep: bool,
}

impl TempDir {
    fn new(path: PathBuf) -> Result<TempDir> {
        if path.exists() {
            let _ = std::fs::remove_dir_all(&path);
        }
        std::fs::create_dir(&path).map_err(error::io_at(path.display()))?;
        Ok(TempDir {
            path,
            only_contents: false,
            keep: false,
        })
    }

    fn contents_of(path: PathBuf) -> TempDir {
        TempDir {
            path,
            only_contents: true,
            keep: false,
        }
    }

    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if !self.only_contents {
            let _ = std::fs::remove_dir_all(&self.path);
            return;
        }
        for entry in std::fs::read_dir(&self.path)
            .into_iter()
            .flatten()
            .flatten()
        {
            let p = entry.path();
            let _ = if entry.file_type().is_ok_and(|t| t.is_dir()) {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}
