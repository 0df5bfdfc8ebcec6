//! Per-layer snapshots: a layer's files, ready for overlayfs, kept under
//! `ROOT/snapshots/sha256/<chain-id-hex>/` (`fs/` and `meta.json`). A snapshot is prepared in
//! `ROOT/snapshots/tmp/` and renamed into place complete, so one that exists is whole.
//! Keyed by chain ID, images that share base layers share their snapshots.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::image::Digest;

use crate::error::IoContext;
use crate::{Error, Result, Store, digest};

/// The chain IDs of a stack of layers, base first (image-spec: `ChainID(L0) = DiffID(L0)`,
/// `ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))`).
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match out.last() {
            None => diff_id.clone(),
            Some(parent) => digest::sha256(format!("{parent} {diff_id}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// A snapshot being prepared. Dropping it without [`SnapshotTemp::commit`] removes it.
#[derive(Debug)]
pub struct SnapshotTemp {
    dir: PathBuf,
    /// Where it goes; `None` until a snapshot begun before its chain ID was known is named.
    target: Option<PathBuf>,
    done: bool,
}

impl SnapshotTemp {
    /// The directory to unpack the layer into.
    pub fn fs(&self) -> PathBuf {
        self.dir.join("fs")
    }

    /// Name a snapshot begun with [`Store::begin_unnamed_snapshot`] (or rename one): it will be
    /// committed as the snapshot of `chain_id`.
    pub fn name(&mut self, store: &Store, chain_id: &Digest) -> Result<()> {
        let target = store.snapshot_path(chain_id);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).at(parent)?;
        }
        self.target = Some(target);
        Ok(())
    }

    /// Record `meta` and move the snapshot into place. If another process finished the same
    /// snapshot first, this one is discarded and theirs is kept.
    pub fn commit(mut self, meta: &serde_json::Value) -> Result<PathBuf> {
        let Some(target) = self.target.clone() else {
            return Err(Error::Io {
                path: self.dir.clone(),
                cause: std::io::Error::other("a snapshot without a chain ID cannot be committed"),
            });
        };
        let meta_path = self.dir.join("meta.json");
        fs::write(
            &meta_path,
            serde_json::to_vec_pretty(meta).unwrap_or_default(),
        )
        .at(&meta_path)?;
        // The files reach the disk before the name does, so a snapshot that has its name is
        // whole after a crash too. One syncfs flushes this snapshot (and whatever else is
        // pending on the filesystem) without a per-file fsync.
        let dir = fs::File::open(&self.dir).at(&self.dir)?;
        rustix::fs::syncfs(&dir).map_err(|e| Error::Io {
            path: self.dir.clone(),
            cause: e.into(),
        })?;
        let exists = |e: &std::io::Error| {
            e.raw_os_error() == Some(libc::ENOTEMPTY) || e.raw_os_error() == Some(libc::EEXIST)
        };
        match fs::rename(&self.dir, &target) {
            Ok(()) => {}
            // Another process finished the same snapshot first: keep theirs.
            Err(e) if exists(&e) && target.join("meta.json").is_file() => {}
            // What is there is incomplete (no meta.json): replace it with ours.
            Err(e) if exists(&e) => {
                fs::remove_dir_all(&target).at(&target)?;
                fs::rename(&self.dir, &target).at(&target)?;
            }
            Err(e) => {
                return Err(Error::Io {
                    path: target.clone(),
                    cause: e,
                });
            }
        }
        self.done = true;
        if self.dir.exists() {
            let _ = fs::remove_dir_all(&self.dir);
        }
        Ok(target)
    }
}

impl Drop for SnapshotTemp {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

impl Store {
    /// Where the snapshot of this chain ID lives (whether or not it is there).
    pub fn snapshot_path(&self, chain_id: &Digest) -> PathBuf {
        self.root
            .join("snapshots")
            .join(chain_id.algorithm().as_ref())
            .join(chain_id.digest())
    }

    /// Whether a complete snapshot of this chain ID is present.
    pub fn has_snapshot(&self, chain_id: &Digest) -> bool {
        let dir = self.snapshot_path(chain_id);
        dir.join("fs").is_dir() && dir.join("meta.json").is_file()
    }

    /// Start preparing the snapshot of `chain_id`.
    pub fn begin_snapshot(&self, chain_id: &Digest) -> Result<SnapshotTemp> {
        let mut temp = self.begin_unnamed_snapshot(chain_id)?;
        temp.name(self, chain_id)?;
        Ok(temp)
    }

    /// Start preparing a snapshot whose chain ID is not known yet (a layer unpacked while its
    /// blob downloads, before its diff_id is checked); `hint` (the layer's digest) names the
    /// temp directory. [`SnapshotTemp::name`] it before committing.
    pub fn begin_unnamed_snapshot(&self, hint: &Digest) -> Result<SnapshotTemp> {
        let tmp = self.root.join("snapshots/tmp");
        fs::create_dir_all(&tmp).at(&tmp)?;
        let dir = tmp.join(format!(
            "{}-{}-{}",
            digest::short(hint),
            std::process::id(),
            crate::ingest::unique()
        ));
        fs::create_dir(&dir).at(&dir)?;
        // From here the guard removes `dir` on any failure (a full disk can refuse `fs/`).
        let temp = SnapshotTemp {
            dir,
            target: None,
            done: false,
        };
        let fs_dir = temp.dir.join("fs");
        fs::create_dir(&fs_dir).at(&fs_dir)?;
        Ok(temp)
    }

    /// Every complete or partial snapshot directory present, by chain ID.
    pub(crate) fn snapshots(&self) -> Result<Vec<(Digest, PathBuf)>> {
        let dir = self.root.join("snapshots/sha256");
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(Error::Io {
                    path: dir,
                    cause: e,
                });
            }
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.at(&dir)?;
            if let Some(d) = entry
                .file_name()
                .to_str()
                .and_then(|n| digest::parse(&format!("sha256:{n}")).ok())
            {
                out.push((d, entry.path()));
            }
        }
        Ok(out)
    }

    /// The chain IDs every named image, every mount and every container needs (a container's
    /// `state.json` lists its snapshots' `fs/` directories as `lowers`, whatever became of
    /// its image).
    pub(crate) fn needed_snapshots(&self) -> Result<std::collections::HashSet<Digest>> {
        let mut needed = std::collections::HashSet::new();
        for (_, image) in self.images()? {
            if let Ok(diff_ids) = image.and_then(|i| i.diff_ids()) {
                needed.extend(chain_ids(&diff_ids));
            }
        }
        let mounts = self.root.join("mounts");
        if let Ok(entries) = fs::read_dir(&mounts) {
            for entry in entries.flatten() {
                let meta = entry.path().join("meta.json");
                let Ok(bytes) = fs::read(&meta) else { continue };
                let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                    continue;
                };
                for id in value["chainIDs"].as_array().into_iter().flatten() {
                    if let Some(d) = id.as_str().and_then(|s| digest::parse(s).ok()) {
                        needed.insert(d);
                    }
                }
            }
        }
        let containers = self.root.join("containers");
        for entry in fs::read_dir(&containers).into_iter().flatten().flatten() {
            let Ok(bytes) = fs::read(entry.path().join("state.json")) else {
                continue;
            };
            let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                continue;
            };
            for lower in value["lowers"].as_array().into_iter().flatten() {
                let chain = lower
                    .as_str()
                    .map(Path::new)
                    .and_then(Path::parent)
                    .and_then(Path::file_name)
                    .and_then(|n| n.to_str())
                    .and_then(|hex| digest::parse(&format!("sha256:{hex}")).ok());
                needed.extend(chain);
            }
        }
        Ok(needed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = digest::sha256(b"a");
        let b = digest::sha256(b"b");
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], digest::sha256(format!("{a} {b}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }
}
