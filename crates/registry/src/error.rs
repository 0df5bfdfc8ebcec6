//! The registry client's error type.

use std::path::PathBuf;

use reqwest::StatusCode;

/// Everything that can go wrong talking to a registry. Each message names the reference,
/// registry, digest or file involved, and the registry's own error code when it gave one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A reference that does not parse.
    #[error("invalid reference {input:?}: {reason}")]
    InvalidReference {
        /// What was given.
        input: String,
        /// The bad part.
        reason: String,
    },
    /// A platform string that does not parse.
    #[error("invalid platform {input:?}: {reason}")]
    InvalidPlatform {
        /// What was given.
        input: String,
        /// The bad part.
        reason: String,
    },
    /// The registry could not be reached at all.
    #[error("cannot reach registry {registry}: {reason}")]
    Unreachable {
        /// The registry (`host:port`).
        registry: String,
        /// The innermost cause (`connection refused`, a TLS failure, …).
        reason: String,
    },
    /// The registry answered with an error status.
    #[error("{what}: registry answered {status}{}", registry_said(code, message))]
    Status {
        /// What was being fetched (`manifest 127.0.0.1:5000/redis:7`).
        what: String,
        /// The HTTP status.
        status: StatusCode,
        /// The registry's error code (`MANIFEST_UNKNOWN`), if its body had one.
        code: Option<String>,
        /// The registry's error message, if its body had one.
        message: Option<String>,
    },
    /// Credentials were refused or missing.
    #[error(
        "{what}: unauthorized: {registry} refused {refused}{}",
        registry_said(code, message)
    )]
    Unauthorized {
        /// What was being fetched.
        what: String,
        /// The registry.
        registry: String,
        /// What was refused: `the credentials` or `anonymous access`.
        refused: &'static str,
        /// The registry's error code, if any.
        code: Option<String>,
        /// The registry's error message, if any.
        message: Option<String>,
    },
    /// An index has no manifest for the wanted platform.
    #[error("{reference}: no manifest for platform {wanted} (the index has: {})", available.join(", "))]
    NoPlatform {
        /// The reference.
        reference: String,
        /// The platform asked for.
        wanted: String,
        /// The platforms the index lists.
        available: Vec<String>,
    },
    /// A registry that answered before failed on this request (the connection was reset or
    /// timed out) every time it was tried.
    #[error("{what}: connection to {registry} failed: {reason}")]
    Connection {
        /// What was being done (`blob sha256:… of 127.0.0.1:5000/redis`).
        what: String,
        /// The registry.
        registry: String,
        /// The innermost cause.
        reason: String,
    },
    /// A response body could not be read to its end.
    #[error("{what}: download interrupted: {reason}")]
    Interrupted {
        /// What was being fetched.
        what: String,
        /// The innermost cause.
        reason: String,
    },
    /// A response was malformed (a token answer without a token, a manifest over the limit).
    #[error("{what}: {reason}")]
    Protocol {
        /// What was being fetched.
        what: String,
        /// What was wrong with the answer.
        reason: String,
    },
    /// A CA certificate file could not be used.
    #[error("{}: cannot load CA certificate: {reason}", path.display())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A configuration file could not be used.
    #[error("{}: {reason}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A `docker-credential-*` helper failed.
    #[error("credential helper {helper} {verb}: {reason}")]
    CredentialHelper {
        /// The helper program.
        helper: String,
        /// `get`, `store` or `erase`.
        verb: String,
        /// What went wrong (its first line of stderr).
        reason: String,
    },
    /// `registries.conf` blocks the registry.
    #[error("{reference}: registry {prefix} is blocked by registries.conf")]
    Blocked {
        /// The reference.
        reference: String,
        /// The blocked prefix.
        prefix: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] img_store::Error),
}

fn registry_said(code: &Option<String>, message: &Option<String>) -> String {
    let one_line = |s: &str| s.replace(['\n', '\r'], " ");
    match (code, message) {
        (Some(c), Some(m)) => format!(" (registry said: {c}: {})", one_line(m)),
        (Some(c), None) => format!(" (registry said: {c})"),
        (None, Some(m)) => format!(" (registry said: {})", one_line(m)),
        (None, None) => String::new(),
    }
}

/// The registry client's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The innermost cause of an error, which is the part a user can act on
/// (`Connection refused (os error 111)` rather than `error sending request for url`).
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
