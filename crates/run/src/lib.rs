//! A small OCI runtime: it takes an assembled rootfs (an overlay of snapshots, or a bundle's
//! directory) and a runtime [`Spec`](oci_spec::runtime::Spec), and runs the spec's process in
//! new namespaces with cgroup limits, on cgroup v1, v2 or the hybrid layout.
//!
//! The parent ([`runtime::start`]) re-executes our own binary as `__init` ([`init::main`]) in
//! the new namespaces; init mounts, pivots and execs, becoming PID 1.
#![warn(missing_docs)]

pub mod attach;
pub mod capabilities;
pub mod cgroup;
pub mod copy;
pub mod devices;
mod error;
pub mod exec;
pub mod health;
pub mod idmap;
pub mod init;
pub mod lifecycle;
pub mod names;
pub mod ports;
mod process;
pub mod recorded;
pub mod restart;
mod rootfs;
pub mod runtime;
pub mod seccomp;
pub mod spawn;
pub mod spec;
pub mod state;
pub mod supervise;
mod syscall;
pub mod tty;
pub mod user;
pub mod userns;
pub mod volumes;

pub use error::{Error, Result};
pub use init::Rootfs;
pub use runtime::{Container, Launch, start};
pub use spec::{EtcFiles, Network, RunOptions, Volume, build_spec};
pub use state::{ContainerState, ContainerStatus, Port};
pub use supervise::{Io, reap, supervise};
