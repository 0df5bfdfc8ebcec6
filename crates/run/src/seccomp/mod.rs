//! docker's seccomp profiles, compiled to BPF with [seccompiler] and installed by init.
//!
//! One path for every profile: docker's JSON ([`Profile`], the embedded
//! [`Profile::docker_default`] or `--security-opt seccomp=PROFILE.json`) is resolved against
//! the container's bounding set, the host's architecture and the running kernel into the OCI
//! [`LinuxSeccomp`](oci_spec::runtime::LinuxSeccomp) of the runtime spec
//! ([`Profile::resolve`], exactly as moby does it), which is what runc runs from a bundle and
//! what [`compile`] turns into BPF for our own init ([`Filter::install`]).
//!
//! ```
//! use img_run::seccomp::{Profile, compile};
//! let caps: Vec<String> = img_run::capabilities::DEFAULT.map(String::from).to_vec();
//! let seccomp = Profile::docker_default().resolve(&caps).unwrap();
//! // keyctl is not in docker's list: it falls to the default action, EPERM.
//! let names = serde_json::to_string(&seccomp).unwrap();
//! assert!(names.contains("\"execve\"") && !names.contains("\"keyctl\""));
//! let filter = compile(&seccomp).unwrap(); // BPF, ready for `Filter::install`
//! # drop(filter);
//! ```
//!
//! # Semantics (runc's and libseccomp's)
//!
//! * The default action applies to every syscall no entry matches. `SCMP_ACT_ERRNO` and
//!   `SCMP_ACT_TRACE` return `defaultErrnoRet` as the default action, an entry's `errnoRet`
//!   as its action, EPERM when absent. `SCMP_ACT_KILL` kills the thread, as in runc.
//! * An entry whose action (with its errno) is the default action is dropped, as runc does.
//! * The args of one entry are ANDed, except when two of them share an index: then each arg
//!   is a rule of its own, so they are ORed (runc's behaviour). Several entries for one
//!   syscall are ORed. Args are compared as 64-bit values; `SCMP_CMP_MASKED_EQ` is
//!   `(arg & value) == (valueTwo & value)` (libseccomp masks the datum too).
//! * A name the architecture does not have (`chown32` on x86_64, a syscall newer than our
//!   table) is skipped, as runc does; an unknown action, `SCMP_ACT_NOTIFY`, an arg index above
//!   5 or an errno above 4095 is an error: nothing is installed rather than less.
//! * runc's -ENOSYS stub: unless the default action lets the call through (`ALLOW`, `LOG`,
//!   `TRACE`), syscall numbers above the largest one the profile names return ENOSYS, so
//!   that libcs fall back from syscalls newer than the profile instead of failing with EPERM.
//!
//! # Several filters, one answer
//!
//! A seccompiler filter has one action for the syscalls it matches and one for the rest, and
//! a profile mixes actions, so [`compile`] makes a list of filters:
//!
//! 1. the main filter: every rule of the profile, whatever its action, returns ALLOW;
//!    anything else returns the default action. Before its rules it checks the ABI (below)
//!    and holds the -ENOSYS stub;
//! 2. one filter per other action (action and errno, e.g. `ERRNO(ENOSYS)` for docker's
//!    `clone3`): the rules with that action return it; anything else returns ALLOW.
//!
//! The kernel runs every installed filter and keeps the most severe result, in this order:
//! KILL_PROCESS, KILL_THREAD, TRAP, ERRNO, TRACE, LOG, ALLOW; between two results of the same
//! kind (two ERRNOs with different errnos) the filter installed last wins. Hence:
//!
//! * no rule matches: the main filter gives the default action and every other filter
//!   ALLOW, so the default action wins (when it is ALLOW, all of them allow);
//! * a rule with action A matches: the main filter gives ALLOW, A's filter gives A and the
//!   others ALLOW, so A wins — every action but ALLOW is more severe than ALLOW, and ALLOW
//!   rules live in the main filter only;
//! * a call above the largest named syscall: the stub's ENOSYS from the main filter, ALLOW
//!   from the others (no rule can match it);
//! * docker's `clone3` without CAP_SYS_ADMIN: ALLOW from the main filter, `ERRNO(ENOSYS)`
//!   from its own, so ENOSYS — there is no tie with the default EPERM because the main filter
//!   allows `clone3`; filters are installed main filter first anyway, so even a tie would go
//!   to ENOSYS;
//! * rules with different actions matching the same call (docker's profiles have none): the
//!   most severe wins, and between two of the same kind (`ERRNO(13)` and `ERRNO(5)`) the one
//!   whose first entry comes later in the profile, as filters of other actions are installed
//!   in the order of their first entry. libseccomp refuses or merges such overlaps its own
//!   way; this is where we may differ, always towards the more severe action.
//!
//! # Architectures
//!
//! seccompiler filters the native ABI only (x86_64, aarch64, riscv64). A call made through
//! another ABI fails closed: each filter kills the process when the audit architecture is not
//! the native one (32-bit x86 through `int 0x80`, 32-bit ARM), and on x86_64 the main filter
//! also kills x32 calls (numbers with bit 30 set; -1, which tracers use to skip a call, goes
//! on to the -ENOSYS stub or the default action, as libseccomp lets it). docker's x86_64
//! profile lists the x86 and x32 sub-architectures, so 32-bit programs that run under docker
//! are killed with SIGSYS here. [`Profile::resolve`] still lists them, as docker does, for
//! runc and bundles.
//!
//! # Cost
//!
//! Compiling docker's default profile takes 0.1–0.2 ms (release build; about 1,600 BPF
//! instructions in the main filter, 10 in clone3's), so init compiles it itself. The filters
//! are linear, but since Linux 5.11 the kernel caches, per syscall number, "every filter allows
//! this whatever the args", so syscalls allowed without arg checks skip the filters entirely;
//! the others (`socket`, `clone`, `personality`, refusals) cost a few hundred nanoseconds more.
//!
//! # Layout
//!
//! `profile`: docker's format and moby's resolution rules; `bpf`: the filters and their
//! installation; `syscalls`: the native syscall table.

use std::fmt;

use crate::error::Error;

mod bpf;
mod profile;
mod syscalls;

pub use bpf::{Filter, compile};
pub use profile::{ArchMap, Arg, Condition, KernelVersion, Profile, Syscall};

fn invalid(message: impl fmt::Display) -> Error {
    Error::Seccomp(message.to_string())
}
