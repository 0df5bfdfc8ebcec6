//! The unpacker's error type.

use std::io;

use img_store::Digest;

/// Everything that can go wrong applying a layer. Messages name the layer, the tar entry or
/// the path involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A filesystem operation on the target failed.
    #[error("{path}: {cause}")]
    Io {
        /// The path (inside the target) or file involved.
        path: String,
        /// The underlying error.
        cause: io::Error,
    },
    /// A tar entry would land outside the target directory.
    #[error("entry {entry:?} points outside the target directory")]
    Escape {
        /// The entry's name as the tar gives it.
        entry: String,
    },
    /// A hardlink's target is not in the target directory.
    #[error("hardlink {entry:?}: its target {target:?} is not in the layer or below it")]
    HardlinkTarget {
        /// The hardlink entry.
        entry: String,
        /// Its target.
        target: String,
    },
    /// The layer stream could not be read (truncated, corrupt compression, bad tar).
    #[error("reading the layer: {0}")]
    Read(String),
    /// The uncompressed layer does not hash to the config's diff_id.
    #[error(
        "uncompressed content hashes to {actual}, the config says {expected} (diff_id mismatch)"
    )]
    DiffId {
        /// The diff_id from the image config.
        expected: Digest,
        /// What the content hashes to.
        actual: Digest,
    },
    /// Something wrong in one layer: the layer's digest and what went wrong.
    #[error("layer {layer}: {cause}")]
    Layer {
        /// The layer blob's digest.
        layer: Digest,
        /// What went wrong.
        cause: Box<Error>,
    },
    /// A snapshot needs the layers below it to be applied (a hardlink to a file of a lower
    /// layer); the caller applies it again once they are there.
    #[error("the layer links to a file of a lower layer: it needs the snapshots below it")]
    NeedsLowers,
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] img_store::Error),
}

/// The unpacker's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_at(path: impl std::fmt::Display) -> impl FnOnce(io::Error) -> Error {
    move |cause| Error::Io {
        path: path.to_string(),
        cause,
    }
}

impl Error {
    pub(crate) fn in_layer(self, layer: &Digest) -> Error {
        match self {
            e @ Error::Layer { .. } => e,
            e => Error::Layer {
                layer: layer.clone(),
                cause: Box::new(e),
            },
        }
    }
}
