//! The builder's error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong making an image. Messages are lower-case and name the path,
/// reference or change involved; the underlying error is the `source()`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading the input (a file of a directory being appended) failed.
    #[error("reading {}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Writing a layer into the store failed.
    #[error("writing a layer from {what}")]
    Write {
        /// Where the layer came from (a directory, a tar).
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A file of an overlayfs upper directory uses an overlay feature a layer cannot express.
    #[error("{}: {reason}", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What it uses.
        reason: String,
    },
    /// The base image named is not in the store.
    #[error("no image {0:?} in the store")]
    NoImage(String),
    /// An image ID prefix fits several images.
    #[error("image ID prefix {0:?} fits several images: give more digits")]
    Ambiguous(String),
    /// A reference to write could not be parsed.
    #[error("reference {reference:?}")]
    Reference {
        /// What was given.
        reference: String,
        /// Why it was refused.
        #[source]
        source: Box<img_registry::Error>,
    },
    /// A `commit -c` change could not be applied.
    #[error("change {change:?}: {reason}")]
    Change {
        /// The change as given.
        change: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `SOURCE_DATE_EPOCH` is not a number of seconds.
    #[error("SOURCE_DATE_EPOCH={0:?} is not a number of seconds since 1970")]
    SourceDateEpoch(String),
    /// A JSON document (config, manifest) could not be made.
    #[error("encoding the image {what}")]
    Json {
        /// Which document.
        what: &'static str,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] img_store::Error),
}

/// The builder's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
