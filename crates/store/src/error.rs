//! The store's error type.

use std::io;
use std::path::PathBuf;

use oci_spec::image::Digest;

/// Everything that can go wrong in the store. Each variant names the path or digest involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A filesystem operation failed.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error (part of the message, so not also a `source()`).
        cause: io::Error,
    },
    /// A string is not a valid digest.
    #[error("invalid digest {input:?}: {reason}")]
    InvalidDigest {
        /// What was given.
        input: String,
        /// Why it was refused.
        reason: String,
    },
    /// The digest uses an algorithm the store cannot verify.
    #[error("digest {0}: unsupported algorithm (sha256 and sha512 are supported)")]
    UnsupportedAlgorithm(Digest),
    /// A blob's content does not hash to its digest.
    #[error("blob {expected}: content hashes to {actual} (digest mismatch)")]
    DigestMismatch {
        /// The digest the blob was announced with.
        expected: Digest,
        /// What the content actually hashes to.
        actual: Digest,
    },
    /// A blob's length differs from its descriptor's size.
    #[error("blob {digest}: expected {expected} bytes, got {actual} (size mismatch)")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The size the descriptor gave.
        expected: u64,
        /// The bytes seen (at least this many).
        actual: u64,
    },
    /// A blob that should be in the store is not.
    #[error("blob {0} is not in the store")]
    BlobMissing(Digest),
    /// A blob read into memory is larger than the caller allows.
    #[error("blob {digest} is {size} bytes, more than the {limit} allowed for a JSON document")]
    TooLarge {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A JSON document in the store could not be parsed.
    #[error("{what}: invalid JSON: {cause}")]
    Json {
        /// The file or blob involved.
        what: String,
        /// The parser's error.
        cause: serde_json::Error,
    },
    /// The root exists but is not an OCI image layout this store can use.
    #[error("{}: not an OCI image layout: {reason}", path.display())]
    NotLayout {
        /// The root.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No reference of that name is in the store.
    #[error("no image {0:?} in the store")]
    RefNotFound(String),
    /// A stored manifest does not have the shape of an image manifest or index.
    #[error("manifest {digest}: {reason}")]
    BadManifest {
        /// The manifest blob.
        digest: Digest,
        /// What is wrong with it.
        reason: String,
    },
}

/// The store's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach a path to an I/O error.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|cause| Error::Io {
            path: path.into(),
            cause,
        })
    }
}
