//! A content-addressed image store whose root is an [OCI image layout].
//!
//! ```text
//! ROOT/oci-layout          {"imageLayoutVersion": "1.0.0"}
//! ROOT/index.json          one descriptor per reference, annotated with its name
//! ROOT/blobs/sha256/HEX    verified blobs, never partial
//! ROOT/ingest/             temp files of blobs being written (same filesystem as blobs/)
//! ROOT/locks/              index.lock (index.json updates), gc.lock (pulls share it, gc owns it)
//! ROOT/snapshots/sha256/CHAIN-ID/{fs,meta.json}   unpacked layers, ready for overlayfs
//! ROOT/mounts/ID/          overlay mounts of images (upper, work, merged, meta.json)
//! ROOT/containers/ID/      containers (img-run): spec, state, writable layer
//! ```
//!
//! The root and `containers/` are 0710 and `snapshots/`, `mounts/` 0700 (docker's modes):
//! a setuid file in an image or in a container's writable layer is out of other users'
//! reach. [`Store::open`] sets these modes on a store made before they were the rule.
//!
//! Invariants:
//! - a file appears under `blobs/` only after its digest and size matched (see [`Ingest`]);
//! - `index.json` is replaced only by an atomic rename, under the exclusive index lock, so
//!   concurrent processes never lose each other's references;
//! - a reference is only written once every blob it reaches is present;
//! - gc runs under the exclusive gc lock; pulls hold it shared, so gc never removes a blob a
//!   pull in flight has fetched but not yet referenced.
//!
//! Other tools read the root as they read any OCI layout: `skopeo inspect oci:ROOT:REF`,
//! `umoci stat --image ROOT:REF`.
//!
//! [OCI image layout]: https://github.com/opencontainers/image-spec/blob/main/image-layout.md
#![warn(missing_docs)]

pub mod archive;
pub mod digest;
mod error;
mod gc;
mod image;
mod ingest;
pub mod manifest;
pub mod snapshot;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub use error::{Error, Result};
pub use gc::{FsckReport, GcReport, Problem};
pub use image::{IdMatch, Image, Served, is_full_image_id, parse_image_id};
pub use ingest::{Ingest, WRITE_BEHIND, start_writeback};
pub use oci_spec::image::{
    Descriptor, Digest, DigestAlgorithm, ImageConfiguration, ImageIndex, ImageManifest,
};
pub use snapshot::{SnapshotTemp, chain_ids};

use error::IoContext;
use oci_spec::image::{ImageIndexBuilder, MediaType};

/// The annotation that names a reference in `index.json` (from the image-spec).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Our annotation on an index's entry: the digest of the platform manifest that was pulled.
pub const MANIFEST_ANNOTATION: &str = "io.img.manifest";
/// Our annotation on an index's entry: the platform that was chosen (`os/arch[/variant]`).
pub const PLATFORM_ANNOTATION: &str = "io.img.platform";

/// Our annotation, when the stored document is not the one the registry serves (a Docker
/// manifest or list kept in its OCI form): the registry's digest for the reference.
pub const REGISTRY_DIGEST_ANNOTATION: &str = "io.img.digest";

/// Our annotation on an `index.json` entry: where the image came from, `REGISTRY/REPOSITORY`
/// (the source actually pulled from, a mirror's when a mirror served it). A push to the same
/// registry mounts blobs from there instead of uploading them.
pub const SOURCE_ANNOTATION: &str = "io.img.source";

/// The largest manifest or config the store reads into memory.
pub const MAX_JSON_BLOB: u64 = 16 * 1024 * 1024;

const LAYOUT_VERSION: &str = "1.0.0";

/// The directories other users must not reach, with their modes (docker's: 0710 for its root
/// and `containers/`, 0700 for layer data).
const PRIVATE_DIRS: [(&str, u32); 4] = [
    ("", 0o710),
    ("containers", 0o710),
    ("snapshots", 0o700),
    ("mounts", 0o700),
];

/// A store rooted at a directory. Cheap to create; holds no open files between calls.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Open the store at `root`, creating an empty OCI layout there if it does not exist yet.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let store = Store { root: root.into() };
        for dir in [
            store.root.clone(),
            store.root.join("blobs/sha256"),
            store.root.join("blobs/sha512"),
            store.ingest_dir(),
            store.root.join("locks"),
        ] {
            fs::create_dir_all(&dir).at(&dir)?;
        }
        store.restrict()?;
        let layout = store.root.join("oci-layout");
        match fs::read(&layout) {
            Ok(bytes) => check_layout(&layout, &bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let _lock = store.lock_index()?;
                if !layout.exists() {
                    let body = format!("{{\"imageLayoutVersion\":\"{LAYOUT_VERSION}\"}}");
                    write_atomic(&layout, body.as_bytes())?;
                }
            }
            Err(e) => {
                return Err(Error::Io {
                    path: layout,
                    cause: e,
                });
            }
        }
        if !store.index_path().exists() {
            let _lock = store.lock_index()?;
            if !store.index_path().exists() {
                store.write_index(&empty_index())?;
            }
        }
        Ok(store)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob with this digest lives (whether or not it is there).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().as_ref())
            .join(digest.digest())
    }

    /// Whether the blob is present (and, when `size` is given, has that size).
    pub fn has_blob(&self, digest: &Digest, size: Option<u64>) -> bool {
        match fs::metadata(self.blob_path(digest)) {
            Ok(m) => m.is_file() && size.is_none_or(|s| s == m.len()),
            Err(_) => false,
        }
    }

    /// Start writing a blob. `size`, when known, bounds what may be written.
    pub fn ingest(&self, digest: &Digest, size: Option<u64>) -> Result<Ingest> {
        Ingest::begin(self, Some(digest), digest.algorithm().clone(), size)
    }

    /// Start writing a blob whose digest is not known in advance (content made here); it is
    /// learned, with `algorithm`, at [`Ingest::commit`].
    pub fn ingest_new(&self, algorithm: DigestAlgorithm) -> Result<Ingest> {
        Ingest::begin(self, None, algorithm, None)
    }

    /// Store a small blob held in memory (a manifest or config), verified like any other.
    pub fn put_blob(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        if self.has_blob(digest, Some(bytes.len() as u64)) {
            return Ok(());
        }
        let mut ingest = self.ingest(digest, Some(bytes.len() as u64))?;
        ingest.append(bytes)?;
        ingest.commit().map(drop)
    }

    /// Open a blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::BlobMissing(digest.clone()),
            _ => Error::Io { path, cause: e },
        })
    }

    /// Create the private directories with their modes, and take group and other access away
    /// from any that has more (a store made by an older img was 0755 throughout).
    fn restrict(&self) -> Result<()> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        for (name, mode) in PRIVATE_DIRS {
            let dir = self.root.join(name);
            match fs::DirBuilder::new().mode(mode).create(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).at(&dir),
            }
            let meta = fs::symlink_metadata(&dir).at(&dir)?;
            if !meta.is_dir() {
                return Err(Error::Io {
                    path: dir,
                    cause: std::io::Error::other("not a directory"),
                });
            }
            // Only ever take bits away: a stricter mode chosen by the owner stays.
            let current = meta.permissions().mode() & 0o7777;
            if current & !mode != 0 {
                fs::set_permissions(&dir, fs::Permissions::from_mode(current & mode)).at(&dir)?;
            }
        }
        Ok(())
    }

    /// Read a small blob (at most [`MAX_JSON_BLOB`] bytes), checking it against its digest.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let file = self.open_blob(digest)?;
        let path = self.blob_path(digest);
        let size = file.metadata().at(&path)?.len();
        if size > MAX_JSON_BLOB {
            return Err(Error::TooLarge {
                digest: digest.clone(),
                size,
                limit: MAX_JSON_BLOB,
            });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        file.take(MAX_JSON_BLOB + 1)
            .read_to_end(&mut bytes)
            .at(&path)?;
        let actual = digest::of_bytes_like(digest, &bytes)?;
        if &actual != digest {
            return Err(Error::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Every descriptor in `index.json`, named or not, in file order.
    pub fn refs(&self) -> Result<Vec<Descriptor>> {
        Ok(self.read_index()?.manifests().clone())
    }

    /// The descriptor named `name`, if any.
    pub fn find_ref(&self, name: &str) -> Result<Option<Descriptor>> {
        Ok(self.refs()?.into_iter().find(|d| ref_name(d) == Some(name)))
    }

    /// Point `name` at `descriptor`, replacing any earlier entry of that name. The blob must be
    /// in the store already. The read-modify-write of `index.json` happens under the exclusive
    /// index lock, so concurrent callers never lose each other's updates.
    pub fn set_ref(&self, name: &str, mut descriptor: Descriptor) -> Result<()> {
        if !self.has_blob(descriptor.digest(), Some(descriptor.size())) {
            return Err(Error::BlobMissing(descriptor.digest().clone()));
        }
        let mut annotations = descriptor.annotations().clone().unwrap_or_default();
        annotations.insert(REF_NAME.to_string(), name.to_string());
        descriptor.set_annotations(Some(annotations));
        self.sync()?;
        self.update_index(|manifests| {
            manifests.retain(|d| ref_name(d) != Some(name));
            manifests.push(descriptor);
            Ok(())
        })
    }

    /// Make every blob committed so far durable (fsync `blobs/`). [`Store::set_ref`] does
    /// this before it names anything.
    pub fn sync(&self) -> Result<()> {
        for alg in ["sha256", "sha512"] {
            ingest::sync_dir(&self.root.join("blobs").join(alg))?;
        }
        Ok(())
    }

    /// Remove the reference `name` and return what it pointed at. Blobs stay until [`Store::gc`].
    pub fn remove_ref(&self, name: &str) -> Result<Descriptor> {
        self.update_index(|manifests| {
            let pos = manifests
                .iter()
                .position(|d| ref_name(d) == Some(name))
                .ok_or_else(|| Error::RefNotFound(name.to_string()))?;
            let removed = manifests.remove(pos);
            manifests.retain(|d| ref_name(d) != Some(name));
            Ok(removed)
        })
    }

    /// Hold this while fetching blobs for a reference not yet written: gc waits for it.
    pub fn pull_guard(&self) -> Result<PullGuard> {
        let path = self.root.join("locks/gc.lock");
        let file = open_lock(&path)?;
        file.lock_shared().at(&path)?;
        Ok(PullGuard { _file: file })
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    fn ingest_dir(&self) -> PathBuf {
        self.root.join("ingest")
    }

    fn lock_index(&self) -> Result<File> {
        let path = self.root.join("locks/index.lock");
        let file = open_lock(&path)?;
        file.lock().at(&path)?;
        Ok(file)
    }

    fn read_index(&self) -> Result<ImageIndex> {
        let path = self.index_path();
        let bytes = fs::read(&path).at(&path)?;
        serde_json::from_slice(&bytes).map_err(|cause| Error::Json {
            what: path.display().to_string(),
            cause,
        })
    }

    fn write_index(&self, index: &ImageIndex) -> Result<()> {
        let bytes = serde_json::to_vec(index).map_err(|cause| Error::Json {
            what: self.index_path().display().to_string(),
            cause,
        })?;
        write_atomic(&self.index_path(), &bytes)
    }

    fn update_index<T>(&self, f: impl FnOnce(&mut Vec<Descriptor>) -> Result<T>) -> Result<T> {
        let _lock = self.lock_index()?;
        let mut index = self.read_index()?;
        let mut manifests = index.manifests().clone();
        let out = f(&mut manifests)?;
        index.set_manifests(manifests);
        self.write_index(&index)?;
        Ok(out)
    }
}

/// A shared hold on the store's gc lock; see [`Store::pull_guard`].
#[derive(Debug)]
pub struct PullGuard {
    _file: File,
}

/// The reference name a descriptor carries, if any.
pub fn ref_name(descriptor: &Descriptor) -> Option<&str> {
    descriptor
        .annotations()
        .as_ref()
        .and_then(|a| a.get(REF_NAME))
        .map(String::as_str)
}

fn empty_index() -> ImageIndex {
    ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(Vec::new())
        .build()
        .expect("an empty index has every required field")
}

fn check_layout(path: &Path, bytes: &[u8]) -> Result<()> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|cause| Error::Json {
        what: path.display().to_string(),
        cause,
    })?;
    match value.get("imageLayoutVersion").and_then(|v| v.as_str()) {
        Some(v) if v.starts_with("1.") => Ok(()),
        Some(v) => Err(Error::NotLayout {
            path: path.to_path_buf(),
            reason: format!("unsupported imageLayoutVersion {v:?}"),
        }),
        None => Err(Error::NotLayout {
            path: path.to_path_buf(),
            reason: "no imageLayoutVersion".into(),
        }),
    }
}

fn open_lock(path: &Path) -> Result<File> {
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .at(path)
}

/// Write a small file so that readers see either the old or the new content, never a mix.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let temp = dir.join(format!(
        ".{name}.{}-{}",
        std::process::id(),
        ingest::unique()
    ));
    let result = (|| {
        let mut f = File::create(&temp).at(&temp)?;
        f.write_all(bytes).at(&temp)?;
        f.sync_all().at(&temp)?;
        fs::rename(&temp, path).at(path)?;
        ingest::sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}
