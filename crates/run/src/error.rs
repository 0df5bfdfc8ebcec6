//! The runtime's error type.

/// Everything that can go wrong setting up or running a container. Messages name the path,
/// the user, the command or the cgroup involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call on a path failed.
    #[error("{what}: {cause}")]
    Sys {
        /// What was being done, with the path.
        what: String,
        /// The underlying error.
        cause: std::io::Error,
    },
    /// The image or the flags do not make a runnable process.
    #[error("{0}")]
    Config(String),
    /// A user or group name is not in the image.
    #[error("unable to find user {user}: no matching entries in passwd file")]
    NoUser {
        /// The user as given.
        user: String,
    },
    /// The container's init failed before the command ran, with docker's exit code (125,
    /// 126 or 127) and its own message.
    #[error("{message}")]
    Init {
        /// The exit code to report.
        code: i32,
        /// What init said.
        message: String,
    },
    /// The command could not be executed.
    #[error("exec {command:?}: {reason}")]
    Exec {
        /// The command.
        command: String,
        /// Why: not found, permission denied, ….
        reason: String,
        /// docker's exit code for it: 126 or 127.
        code: i32,
    },
    /// A seccomp profile is invalid, or cannot be compiled to BPF; the message names the
    /// profile's file when there is one.
    #[error("{0}")]
    Seccomp(String),
}

/// The runtime's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn sys(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Error {
    move |cause| Error::Sys {
        what: what.to_string(),
        cause,
    }
}

pub(crate) fn errno(what: impl std::fmt::Display) -> impl FnOnce(rustix::io::Errno) -> Error {
    move |e| Error::Sys {
        what: what.to_string(),
        cause: e.into(),
    }
}
