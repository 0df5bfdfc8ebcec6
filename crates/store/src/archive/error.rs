//! The archive module's error type.

use std::io;
use std::path::PathBuf;

/// What can go wrong saving or loading an archive or layout. Each variant names the member,
/// file or image involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store refused or failed (a blob's digest or size did not match, a disk error, …).
    #[error(transparent)]
    Store(#[from] crate::Error),
    /// A member of the archive failed to go into the store.
    #[error("member {member:?}")]
    MemberBlob {
        /// The member's name.
        member: String,
        /// What the store said.
        #[source]
        source: crate::Error,
    },
    /// A member of the archive is refused (its name, its type, its length, its digest).
    #[error("member {member:?}: {reason}")]
    Member {
        /// The member's name, as the archive spells it.
        member: String,
        /// Why.
        reason: String,
    },
    /// A member's content could not be read (the archive is cut short, its compression is
    /// broken).
    #[error("reading member {member:?}")]
    MemberRead {
        /// The member's name.
        member: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The archive could not be read (cut short, bad compression, not a tar).
    #[error("reading the archive")]
    Read {
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The input is not a tar archive (nor a gzip or zstd stream of one).
    #[error("not a tar archive (nor gzip or zstd of one)")]
    NotArchive {
        /// What the tar reader said.
        #[source]
        source: io::Error,
    },
    /// The archive could not be written.
    #[error("writing the archive")]
    Write {
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A file of a layout directory could not be read or written.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A JSON document of the archive or layout does not parse.
    #[error("{what}: invalid JSON")]
    Json {
        /// The member or file.
        what: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A document of the archive or layout is well-formed but wrong (it names a member that is
    /// not there, a digest that does not match, …).
    #[error("{what}: {reason}")]
    Invalid {
        /// The member, file or image.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// The archive names no image the store could take.
    #[error("no image in the archive: {0}")]
    NoImage(String),
}

/// The archive module's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Invalid {
        what: what.into(),
        reason: reason.into(),
    }
}

pub(crate) fn member(member: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Member {
        member: member.into(),
        reason: reason.into(),
    }
}
