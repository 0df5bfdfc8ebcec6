//! Garbage collection (mark from `index.json`, sweep `blobs/`) and fsck (re-hash everything).

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io::Read;

use oci_spec::image::Digest;

use crate::digest::{self, Hasher};
use crate::error::IoContext;
use crate::manifest::Manifest;
use crate::{Error, Result, Store, ref_name};

/// What [`Store::gc`] removed.
#[derive(Debug, Default, Clone)]
pub struct GcReport {
    /// Blobs removed, with their sizes.
    pub removed: Vec<(Digest, u64)>,
    /// Blobs kept because a reference reaches them.
    pub kept: usize,
    /// Leftover temp files of interrupted writes that were removed.
    pub temp_files: usize,
    /// Snapshots removed (no image or mount needs them), and unfinished ones.
    pub snapshots: usize,
}

impl GcReport {
    /// Total bytes freed.
    pub fn freed(&self) -> u64 {
        self.removed.iter().map(|(_, s)| s).sum()
    }
}

/// One thing [`Store::fsck`] found wrong.
#[derive(Debug, Clone)]
pub enum Problem {
    /// A blob's content does not hash to its name.
    Corrupt {
        /// The blob's name.
        digest: Digest,
        /// What its content hashes to.
        actual: Digest,
    },
    /// A blob that a reference reaches is missing.
    Missing {
        /// The missing blob.
        digest: Digest,
        /// The reference that reaches it.
        reference: String,
    },
    /// A blob is present but its size differs from the descriptor that reaches it.
    WrongSize {
        /// The blob.
        digest: Digest,
        /// The size the descriptor gives.
        expected: u64,
        /// The size on disk.
        actual: u64,
    },
    /// A snapshot directory is incomplete or not what its name says.
    Snapshot {
        /// The snapshot's chain ID.
        chain_id: Digest,
        /// What is wrong.
        reason: String,
    },
    /// A manifest or index reached from a reference could not be read.
    Unreadable {
        /// The reference.
        reference: String,
        /// Why.
        reason: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Corrupt { digest, actual } => {
                write!(f, "blob {digest}: content hashes to {actual} (corrupt)")
            }
            Problem::Missing { digest, reference } => {
                write!(f, "blob {digest}: missing (needed by {reference})")
            }
            Problem::WrongSize {
                digest,
                expected,
                actual,
            } => write!(
                f,
                "blob {digest}: {actual} bytes on disk, descriptor says {expected}"
            ),
            Problem::Unreadable { reference, reason } => write!(f, "image {reference}: {reason}"),
            Problem::Snapshot { chain_id, reason } => write!(f, "snapshot {chain_id}: {reason}"),
        }
    }
}

/// What [`Store::fsck`] checked and found.
#[derive(Debug, Default, Clone)]
pub struct FsckReport {
    /// Blobs re-hashed.
    pub blobs: usize,
    /// Bytes re-hashed.
    pub bytes: u64,
    /// Everything found wrong; empty when the store is sound.
    pub problems: Vec<Problem>,
}

impl Store {
    /// Remove every blob that no reference reaches, and leftover temp files. Waits for pulls in
    /// flight to finish first (they hold the gc lock shared).
    pub fn gc(&self) -> Result<GcReport> {
        let path = self.root.join("locks/gc.lock");
        let lock = crate::open_lock(&path)?;
        lock.lock().at(&path)?;
        let (reachable, _) = self.mark()?;
        let mut report = GcReport::default();
        for (digest, size) in self.blobs()? {
            if reachable.contains(&digest) {
                report.kept += 1;
                continue;
            }
            let path = self.blob_path(&digest);
            fs::remove_file(&path).at(&path)?;
            report.removed.push((digest, size));
        }
        let ingest = self.ingest_dir();
        for entry in fs::read_dir(&ingest).at(&ingest)? {
            let entry = entry.at(&ingest)?;
            fs::remove_file(entry.path()).at(entry.path())?;
            report.temp_files += 1;
        }
        report.temp_files += self.sweep_index_temps()?;
        let needed = self.needed_snapshots()?;
        let tmp = self.root.join("snapshots/tmp");
        for (chain_id, path) in self.snapshots()? {
            if !needed.contains(&chain_id) {
                // Out of its name first (one rename), then removed: a gc killed half way
                // through leaves an unfinished snapshot in tmp/, never a partial one that
                // passes for whole under its chain ID.
                fs::create_dir_all(&tmp).at(&tmp)?;
                let doomed = tmp.join(format!(
                    "{}-gc-{}-{}",
                    digest::short(&chain_id),
                    std::process::id(),
                    crate::ingest::unique()
                ));
                fs::rename(&path, &doomed).at(&path)?;
                fs::remove_dir_all(&doomed).at(&doomed)?;
                report.snapshots += 1;
            }
        }
        if let Ok(entries) = fs::read_dir(&tmp) {
            for entry in entries.flatten() {
                fs::remove_dir_all(entry.path()).at(entry.path())?;
                report.snapshots += 1;
            }
        }
        Ok(report)
    }

    /// Remove the temp files of `index.json` and `oci-layout` that a writer killed before its
    /// rename left in the root. Every writer holds the index lock, so under it any is stale.
    fn sweep_index_temps(&self) -> Result<usize> {
        let _lock = self.lock_index()?;
        let mut removed = 0;
        for entry in fs::read_dir(&self.root).at(&self.root)? {
            let entry = entry.at(&self.root)?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".index.json.") || name.starts_with(".oci-layout.") {
                fs::remove_file(entry.path()).at(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Re-hash every blob and check that every reference reaches only present blobs of the
    /// right size.
    pub fn fsck(&self) -> Result<FsckReport> {
        let _guard = self.pull_guard()?;
        let (_, mut problems) = self.mark()?;
        let mut report = FsckReport::default();
        let mut buf = vec![0u8; 256 * 1024];
        for (digest, size) in self.blobs()? {
            let path = self.blob_path(&digest);
            let mut file = fs::File::open(&path).at(&path)?;
            let mut hasher = Hasher::for_digest(&digest)?;
            loop {
                let n = file.read(&mut buf).at(&path)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            let actual = hasher.finish();
            if actual != digest {
                problems.push(Problem::Corrupt { digest, actual });
            }
            report.blobs += 1;
            report.bytes += size;
        }
        for (chain_id, path) in self.snapshots()? {
            let meta = fs::read(path.join("meta.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
            let reason = if !path.join("fs").is_dir() {
                Some("no fs/ directory (incomplete)".to_string())
            } else {
                match meta.as_ref().and_then(|m| m["chainID"].as_str()) {
                    None => Some("no readable meta.json (incomplete)".to_string()),
                    Some(id) if id != chain_id.to_string() => {
                        Some(format!("meta.json says it is {id}"))
                    }
                    Some(_) => None,
                }
            };
            if let Some(reason) = reason {
                problems.push(Problem::Snapshot { chain_id, reason });
            }
        }
        report.problems = problems;
        Ok(report)
    }

    /// Every blob present, with its size. Files whose names are not digests are skipped.
    fn blobs(&self) -> Result<Vec<(Digest, u64)>> {
        let mut out = Vec::new();
        for alg in ["sha256", "sha512"] {
            let dir = self.root.join("blobs").join(alg);
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(Error::Io {
                        path: dir,
                        cause: e,
                    });
                }
            };
            for entry in entries {
                let entry = entry.at(&dir)?;
                let name = entry.file_name();
                let Some(digest) = name
                    .to_str()
                    .and_then(|n| digest::parse(&format!("{alg}:{n}")).ok())
                else {
                    continue;
                };
                let size = entry.metadata().at(entry.path())?.len();
                out.push((digest, size));
            }
        }
        Ok(out)
    }

    /// The blobs reachable from `index.json`, and what is missing or unreadable on the way.
    /// An index's children that were never pulled (other platforms) are not required.
    fn mark(&self) -> Result<(HashSet<Digest>, Vec<Problem>)> {
        let mut reachable = HashSet::new();
        let mut problems = Vec::new();
        for top in self.refs()? {
            let reference = ref_name(&top).unwrap_or("(unnamed)").to_string();
            let mut queue = vec![(top, Node::Top)];
            while let Some((desc, node)) = queue.pop() {
                let digest = desc.digest().clone();
                match fs::metadata(self.blob_path(&digest)).map(|m| m.len()) {
                    Err(_) if node == Node::Platform => continue,
                    Err(_) => {
                        problems.push(Problem::Missing {
                            digest,
                            reference: reference.clone(),
                        });
                        continue;
                    }
                    Ok(actual) if actual != desc.size() => problems.push(Problem::WrongSize {
                        digest: digest.clone(),
                        expected: desc.size(),
                        actual,
                    }),
                    Ok(_) => {}
                }
                if !reachable.insert(digest) || node == Node::Leaf {
                    continue;
                }
                // The registry's own bytes of a document kept in OCI form (absent in a store
                // made by an older img, so optional).
                let parsed = self.parse_manifest(&desc).map(|p| p.manifest);
                let own = match &parsed {
                    Ok(Manifest::Index(index)) => index.annotations().as_ref(),
                    Ok(Manifest::Image(m)) => m.annotations().as_ref(),
                    Err(_) => None,
                };
                for annotations in [desc.annotations().as_ref(), own].into_iter().flatten() {
                    if let Some(served) = served_digest(annotations)
                        && self.has_blob(&served, None)
                    {
                        reachable.insert(served);
                    }
                }
                match parsed {
                    Ok(Manifest::Index(index)) => {
                        queue.extend(
                            index
                                .manifests()
                                .iter()
                                .map(|d| (d.clone(), Node::Platform)),
                        );
                    }
                    Ok(Manifest::Image(m)) => {
                        queue.push((m.config().clone(), Node::Leaf));
                        queue.extend(m.layers().iter().map(|d| (d.clone(), Node::Leaf)));
                    }
                    Err(e) => problems.push(Problem::Unreadable {
                        reference: reference.clone(),
                        reason: e.to_string(),
                    }),
                }
            }
        }
        Ok((reachable, problems))
    }
}

/// The registry's digest an `io.img.digest` annotation names.
pub(crate) fn served_digest(
    annotations: &std::collections::HashMap<String, String>,
) -> Option<Digest> {
    annotations
        .get(crate::REGISTRY_DIGEST_ANNOTATION)
        .and_then(|d| digest::parse(d).ok())
}

/// How a descriptor is reached while marking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    /// An `index.json` entry: required, and a manifest or index.
    Top,
    /// A child of an index: a manifest, needed only for the platform that was pulled.
    Platform,
    /// A config or layer: required, never parsed.
    Leaf,
}
