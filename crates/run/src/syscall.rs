//! The privileged system calls init makes, behind a small trait (youki's `Syscall` seam): the
//! real implementation for containers, and a recorder so the order and the targets of mounts,
//! capability and seccomp steps are unit-tested without root.
//!
//! Only what needs privilege goes through here. Path resolution (`openat2` inside the root),
//! directory and file creation are real in tests too: they work on any temp directory.

use std::ffi::CString;
#[cfg(test)]
use std::os::fd::AsRawFd;
use std::os::fd::BorrowedFd;
use std::path::Path;

pub use rustix::mount::MountFlags;
pub use rustix::thread::{CapabilitySet, CapabilitySets, UnshareFlags};

use crate::error::{errno, sys};
use crate::{Error, Result};

/// What a device node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A character device.
    Char,
    /// A block device.
    Block,
    /// A FIFO.
    Fifo,
}

/// One mount operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mount<'a> {
    /// A new filesystem of `fstype` (`source` is what /proc/self/mountinfo shows for it).
    Fs {
        /// proc, sysfs, tmpfs, devpts, mqueue, …
        fstype: &'a str,
        /// The source name.
        source: &'a str,
        /// ro, nosuid, nodev, noexec, atime flags.
        flags: MountFlags,
        /// Filesystem options (`mode=755,size=65536k`).
        data: Option<&'a str>,
    },
    /// A bind mount of `source` (with its submounts when `recursive`).
    Bind {
        /// The host path.
        source: &'a Path,
        /// `rbind`.
        recursive: bool,
    },
    /// Change the flags of a bind mount (ro, nosuid, nodev, noexec).
    Remount {
        /// The new flags.
        flags: MountFlags,
    },
    /// Make the mount and everything under it private (no propagation to or from the host).
    Private,
}

/// The privileged calls of a container's init.
pub trait Syscall {
    /// Mount on `target`, usually `/proc/self/fd/N` of a descriptor resolved inside the root.
    fn mount(&self, target: &Path, op: Mount<'_>) -> Result<()>;
    /// mknodat(2) of `name` in the directory `dir`.
    fn mknodat(
        &self,
        dir: BorrowedFd<'_>,
        name: &str,
        kind: NodeKind,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<()>;
    /// Make the current directory the root (pivot_root(".", ".")) and detach the old one.
    fn pivot_root(&self) -> Result<()>;
    /// sethostname(2).
    fn sethostname(&self, name: &str) -> Result<()>;
    /// unshare(2) of namespaces.
    fn unshare(&self, flags: UnshareFlags) -> Result<()>;
    /// Join a new, anonymous session keyring (runc does this for every container), so the
    /// container does not share the caller's keys.
    fn join_session_keyring(&self) -> Result<()>;
    /// Drop from the bounding set every capability not in `keep`.
    fn drop_bounding(&self, keep: CapabilitySet) -> Result<()>;
    /// Set `no_new_privs`.
    fn set_no_new_privs(&self) -> Result<()>;
    /// setgroups, setgid, setuid, in that order.
    fn set_ids(&self, uid: u32, gid: u32, groups: &[u32]) -> Result<()>;
    /// capset(2): effective, permitted and inheritable sets; the ambient set is cleared.
    fn set_caps(&self, caps: &CapabilitySets) -> Result<()>;
    /// Install a compiled seccomp filter on this process.
    fn install_seccomp(&self, filter: &crate::seccomp::Filter) -> Result<()>;
    /// Mark every descriptor from `first` up close-on-exec.
    fn cloexec_from(&self, first: u32) -> Result<()>;
}

/// The kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct Linux;

impl Syscall for Linux {
    fn mount(&self, target: &Path, op: Mount<'_>) -> Result<()> {
        use rustix::mount as m;
        let r = match op {
            Mount::Fs {
                fstype,
                source,
                flags,
                data,
            } => {
                let data = data
                    .map(|d| {
                        CString::new(d)
                            .map_err(|_| Error::Config(format!("a NUL in mount options {d:?}")))
                    })
                    .transpose()?;
                m::mount(source, target, fstype, flags, data.as_deref())
            }
            Mount::Bind {
                source,
                recursive: true,
            } => m::mount_bind_recursive(source, target),
            Mount::Bind {
                source,
                recursive: false,
            } => m::mount_bind(source, target),
            Mount::Remount { flags } => m::mount_remount(target, MountFlags::BIND | flags, ""),
            Mount::Private => m::mount_change(
                target,
                m::MountPropagationFlags::PRIVATE | m::MountPropagationFlags::REC,
            ),
        };
        r.map_err(errno(format!("{} on {}", describe(&op), target.display())))
    }

    fn mknodat(
        &self,
        dir: BorrowedFd<'_>,
        name: &str,
        kind: NodeKind,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<()> {
        let file_type = match kind {
            NodeKind::Char => rustix::fs::FileType::CharacterDevice,
            NodeKind::Block => rustix::fs::FileType::BlockDevice,
            NodeKind::Fifo => rustix::fs::FileType::Fifo,
        };
        rustix::fs::mknodat(
            dir,
            name,
            file_type,
            rustix::fs::Mode::from_raw_mode(mode),
            rustix::fs::makedev(major, minor),
        )
        .map_err(errno(format!("mknod {name}")))
    }

    fn pivot_root(&self) -> Result<()> {
        rustix::process::pivot_root(".", ".").map_err(errno("pivot_root"))?;
        rustix::mount::unmount(".", rustix::mount::UnmountFlags::DETACH)
            .map_err(errno("detaching the old root"))?;
        rustix::process::chdir("/").map_err(errno("/"))
    }

    fn sethostname(&self, name: &str) -> Result<()> {
        rustix::system::sethostname(name.as_bytes()).map_err(errno(format!("sethostname {name}")))
    }

    fn unshare(&self, flags: UnshareFlags) -> Result<()> {
        // SAFETY: init is single-threaded, so no other thread's view of the namespaces or
        // the file table can be surprised by the change.
        unsafe { rustix::thread::unshare_unsafe(flags) }
            .map_err(errno(format!("unshare {flags:?}")))
    }

    fn join_session_keyring(&self) -> Result<()> {
        const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
        // SAFETY: keyctl with a null name asks for a new anonymous session keyring; no
        // memory is passed.
        let r = unsafe {
            libc::syscall(
                libc::SYS_keyctl,
                KEYCTL_JOIN_SESSION_KEYRING,
                std::ptr::null::<libc::c_char>(),
            )
        };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            // A kernel built without keys has no keyring to share.
            if e.raw_os_error() != Some(libc::ENOSYS) {
                return Err(sys("joining a new session keyring")(e));
            }
        }
        Ok(())
    }

    fn drop_bounding(&self, keep: CapabilitySet) -> Result<()> {
        for bit in 0..64u32 {
            let cap = CapabilitySet::from_bits_retain(1 << bit);
            if keep.contains(cap) {
                continue;
            }
            match rustix::thread::remove_capability_from_bounding_set(cap) {
                Ok(()) => {}
                // Past the last capability this kernel knows.
                Err(rustix::io::Errno::INVAL) => break,
                Err(e) => {
                    return Err(errno(format!(
                        "dropping {} from the bounding set",
                        crate::capabilities::name(bit)
                    ))(e));
                }
            }
        }
        Ok(())
    }

    fn set_no_new_privs(&self) -> Result<()> {
        rustix::thread::set_no_new_privs(true).map_err(errno("no_new_privs"))
    }

    fn set_ids(&self, uid: u32, gid: u32, groups: &[u32]) -> Result<()> {
        use rustix::process::{Gid, Uid};
        let groups: Vec<Gid> = groups.iter().map(|g| Gid::from_raw(*g)).collect();
        let what = || format!("switching to user {uid}:{gid}");
        // Per-thread calls are enough: init is single-threaded.
        rustix::thread::set_thread_groups(&groups).map_err(errno(what()))?;
        rustix::thread::set_thread_gid(Gid::from_raw(gid)).map_err(errno(what()))?;
        rustix::thread::set_thread_uid(Uid::from_raw(uid)).map_err(errno(what()))
    }

    fn set_caps(&self, caps: &CapabilitySets) -> Result<()> {
        rustix::thread::set_capabilities(None, *caps).map_err(errno("setting capabilities"))?;
        rustix::thread::clear_ambient_capability_set().map_err(errno("clearing ambient caps"))
    }

    fn install_seccomp(&self, filter: &crate::seccomp::Filter) -> Result<()> {
        filter.install()
    }

    fn cloexec_from(&self, first: u32) -> Result<()> {
        // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on our own
        // descriptors; no memory is passed.
        let r = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                first,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        };
        if r != 0 {
            return Err(sys("close_range")(std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

fn describe(op: &Mount<'_>) -> String {
    match op {
        Mount::Fs { fstype, .. } => format!("mounting {fstype}"),
        Mount::Bind { source, .. } => format!("bind-mounting {}", source.display()),
        Mount::Remount { flags } => format!("remounting {flags:?}"),
        Mount::Private => "making mounts private".into(),
    }
}

/// One recorded call, for tests.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// A mount: the path the target names, and the operation (sources as strings).
    Mount(String, String),
    /// `mknodat` of a name in a directory (recorded by path).
    Mknod(String, NodeKind, u32, u32),
    /// pivot_root.
    PivotRoot,
    /// sethostname.
    Hostname(String),
    /// unshare.
    Unshare(UnshareFlags),
    /// A new session keyring.
    Keyring,
    /// The bounding set kept.
    Bounding(CapabilitySet),
    /// no_new_privs.
    NoNewPrivs,
    /// uid, gid, groups.
    Ids(u32, u32, Vec<u32>),
    /// capset.
    Caps(CapabilitySets),
    /// A seccomp filter.
    Seccomp,
    /// close-on-exec from.
    Cloexec(u32),
}

/// A [`Syscall`] that records instead of calling, for tests without root.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct Recorder {
    /// The calls, in order.
    pub calls: std::cell::RefCell<Vec<Call>>,
}

#[cfg(test)]
impl Recorder {
    fn push(&self, c: Call) -> Result<()> {
        self.calls.borrow_mut().push(c);
        Ok(())
    }

    /// The recorded mounts: (target path, operation).
    pub fn mounts(&self) -> Vec<(String, String)> {
        self.calls
            .borrow()
            .iter()
            .filter_map(|c| match c {
                Call::Mount(t, op) => Some((t.clone(), op.clone())),
                _ => None,
            })
            .collect()
    }
}

/// The path a `/proc/self/fd/N` names (other paths as they are).
#[cfg(test)]
fn named(path: &Path) -> String {
    std::fs::read_link(path)
        .ok()
        .filter(|_| path.starts_with("/proc/self/fd"))
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

#[cfg(test)]
impl Syscall for Recorder {
    fn mount(&self, target: &Path, op: Mount<'_>) -> Result<()> {
        let op = match op {
            Mount::Fs { fstype, flags, .. } => format!("{fstype} {flags:?}"),
            Mount::Bind { source, recursive } => {
                format!("bind {} rec={recursive}", source.display())
            }
            Mount::Remount { flags } => format!("remount {flags:?}"),
            Mount::Private => "private".into(),
        };
        self.push(Call::Mount(named(target), op))
    }
    fn mknodat(
        &self,
        dir: BorrowedFd<'_>,
        name: &str,
        kind: NodeKind,
        _mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<()> {
        // A plain file stands in for the node, so that what follows (chmod) finds it.
        rustix::fs::openat(
            dir,
            name,
            rustix::fs::OFlags::CREATE | rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .map_err(errno(name))?;
        let dir = named(Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())));
        self.push(Call::Mknod(format!("{dir}/{name}"), kind, major, minor))
    }
    fn pivot_root(&self) -> Result<()> {
        self.push(Call::PivotRoot)
    }
    fn sethostname(&self, name: &str) -> Result<()> {
        self.push(Call::Hostname(name.into()))
    }
    fn unshare(&self, flags: UnshareFlags) -> Result<()> {
        self.push(Call::Unshare(flags))
    }
    fn join_session_keyring(&self) -> Result<()> {
        self.push(Call::Keyring)
    }
    fn drop_bounding(&self, keep: CapabilitySet) -> Result<()> {
        self.push(Call::Bounding(keep))
    }
    fn set_no_new_privs(&self) -> Result<()> {
        self.push(Call::NoNewPrivs)
    }
    fn set_ids(&self, uid: u32, gid: u32, groups: &[u32]) -> Result<()> {
        self.push(Call::Ids(uid, gid, groups.to_vec()))
    }
    fn set_caps(&self, caps: &CapabilitySets) -> Result<()> {
        self.push(Call::Caps(*caps))
    }
    fn install_seccomp(&self, _filter: &crate::seccomp::Filter) -> Result<()> {
        self.push(Call::Seccomp)
    }
    fn cloexec_from(&self, first: u32) -> Result<()> {
        self.push(Call::Cloexec(first))
    }
}
