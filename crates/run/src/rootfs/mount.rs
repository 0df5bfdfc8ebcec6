//! The spec's mounts, masked paths and read-only paths.

use std::path::Path;

use rustix::fs::StatVfsMountFlags;

use super::{Create, Links, Root, fd_path};
use crate::error::errno;
use crate::syscall::{Mount, MountFlags, Syscall};
use crate::{Error, Result};

/// What a spec mount's options say.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Options {
    /// ro, nosuid, nodev, noexec, atime flags.
    pub flags: MountFlags,
    /// The rest, passed to the filesystem (`mode=755`).
    pub data: Option<String>,
    /// `bind` or `rbind`.
    pub bind: bool,
    /// `rbind`.
    pub recursive: bool,
}

/// Mount options to flags and the rest as filesystem data. Propagation options are dropped:
/// every mount of a container is private.
pub(crate) fn mount_flags(options: &[String]) -> Options {
    let mut o = Options {
        flags: MountFlags::empty(),
        data: None,
        bind: false,
        recursive: false,
    };
    let mut data = Vec::new();
    for opt in options {
        match opt.as_str() {
            "ro" => o.flags |= MountFlags::RDONLY,
            "rw" => o.flags -= MountFlags::RDONLY,
            "nosuid" => o.flags |= MountFlags::NOSUID,
            "nodev" => o.flags |= MountFlags::NODEV,
            "noexec" => o.flags |= MountFlags::NOEXEC,
            "suid" => o.flags -= MountFlags::NOSUID,
            "dev" => o.flags -= MountFlags::NODEV,
            "exec" => o.flags -= MountFlags::NOEXEC,
            "relatime" => o.flags |= MountFlags::RELATIME,
            "strictatime" => o.flags |= MountFlags::STRICTATIME,
            "noatime" => o.flags |= MountFlags::NOATIME,
            "bind" => o.bind = true,
            "rbind" => {
                o.bind = true;
                o.recursive = true;
            }
            "private" | "rprivate" | "slave" | "rslave" | "shared" | "rshared" => {}
            other => data.push(other),
        }
    }
    o.data = (!data.is_empty()).then(|| data.join(","));
    o
}

/// The per-mount flags (ro, nosuid, nodev, noexec) of the mount `fd` is on: a bind remount
/// replaces them all, so what is not being changed must be passed again.
pub(crate) fn remount_flags(fd: &rustix::fd::OwnedFd) -> Result<MountFlags> {
    let st = rustix::fs::fstatvfs(fd).map_err(errno("statvfs of a mount"))?;
    let mut flags = MountFlags::empty();
    for (from, to) in [
        (StatVfsMountFlags::RDONLY, MountFlags::RDONLY),
        (StatVfsMountFlags::NOSUID, MountFlags::NOSUID),
        (StatVfsMountFlags::NODEV, MountFlags::NODEV),
        (StatVfsMountFlags::NOEXEC, MountFlags::NOEXEC),
    ] {
        if st.f_flag.contains(from) {
            flags |= to;
        }
    }
    Ok(flags)
}

/// One of the spec's mounts.
pub(crate) fn mount(sys: &dyn Syscall, root: &Root, m: &oci_spec::runtime::Mount) -> Result<()> {
    let typ = m.typ().clone().unwrap_or_else(|| "bind".into());
    let o = mount_flags(m.options().as_deref().unwrap_or_default());
    let dest = m.destination();
    if o.bind || typ == "bind" {
        let source = m.source().clone().ok_or_else(|| {
            Error::Config(format!("bind mount on {} without a source", dest.display()))
        })?;
        let file = std::fs::metadata(&source)
            .map_err(crate::error::sys(format!(
                "bind mount source {}",
                source.display()
            )))?
            .is_file();
        let last = if file { Create::File } else { Create::Dir };
        let target = root.ensure(dest, last, Links::Follow)?;
        sys.mount(
            &fd_path(&target),
            Mount::Bind {
                source: &source,
                recursive: o.recursive,
            },
        )?;
        let wanted = o.flags
            & (MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC);
        if !wanted.is_empty() {
            // The old descriptor names the directory under the new mount: look again.
            let mounted = root.ensure(dest, last, Links::Follow)?;
            let flags = remount_flags(&mounted)? | wanted;
            sys.mount(&fd_path(&mounted), Mount::Remount { flags })?;
        }
        return Ok(());
    }
    // The kernel's filesystems go only where the image has real directories.
    let target = root.ensure(dest, Create::Dir, Links::Refuse)?;
    let source = m
        .source()
        .as_ref()
        .map(|s| s.display().to_string())
        .unwrap_or_else(|| typ.clone());
    let result = sys.mount(
        &fd_path(&target),
        Mount::Fs {
            fstype: &typ,
            source: &source,
            flags: o.flags,
            data: o.data.as_deref(),
        },
    );
    match result {
        Ok(()) => Ok(()),
        // Without a network namespace of its own an unprivileged process may not mount a new
        // sysfs: the host's, alone (not its submounts: cgroups, debugfs, …), read-only.
        Err(e) if typ == "sysfs" && is_errno(&e, libc::EPERM) => {
            sys.mount(
                &fd_path(&target),
                Mount::Bind {
                    source: Path::new("/sys"),
                    recursive: false,
                },
            )?;
            let mounted = root.ensure(dest, Create::Dir, Links::Refuse)?;
            sys.mount(
                &fd_path(&mounted),
                Mount::Remount {
                    flags: MountFlags::RDONLY
                        | MountFlags::NOSUID
                        | MountFlags::NODEV
                        | MountFlags::NOEXEC,
                },
            )
        }
        // A kernel without POSIX message queues has none to give.
        Err(e) if typ == "mqueue" && is_errno(&e, libc::ENODEV) => Ok(()),
        Err(e) => Err(e),
    }
}

fn is_errno(e: &Error, code: i32) -> bool {
    matches!(e, Error::Sys { cause, .. } if cause.raw_os_error() == Some(code))
}

/// Hide `path`: an empty read-only tmpfs over a directory, `/dev/null` over a file. A path
/// that does not exist is skipped; any other failure stops the container.
pub(crate) fn mask(sys: &dyn Syscall, root: &Root, path: &str) -> Result<()> {
    let fd = match root.resolve(Path::new(path), Links::Refuse) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(errno(format!("masking {path}"))(e)),
    };
    let is_dir = rustix::fs::fstat(&fd)
        .map_err(errno(format!("masking {path}")))?
        .st_mode
        & libc::S_IFMT
        == libc::S_IFDIR;
    let op = if is_dir {
        Mount::Fs {
            fstype: "tmpfs",
            source: "tmpfs",
            flags: MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            data: None,
        }
    } else {
        Mount::Bind {
            source: Path::new("/dev/null"),
            recursive: false,
        }
    };
    sys.mount(&fd_path(&fd), op)
        .map_err(|e| Error::Config(format!("masking {path}: {e}")))
}

/// Make `path` read-only (with what is mounted under it). A path that does not exist is
/// skipped; any other failure stops the container.
pub(crate) fn readonly(sys: &dyn Syscall, root: &Root, path: &str) -> Result<()> {
    let fd = match root.resolve(Path::new(path), Links::Refuse) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(errno(format!("making {path} read-only"))(e)),
    };
    let what = |e: Error| Error::Config(format!("making {path} read-only: {e}"));
    let target = fd_path(&fd);
    sys.mount(
        &target,
        Mount::Bind {
            source: &target,
            recursive: true,
        },
    )
    .map_err(what)?;
    // Remount the new mount, which the old descriptor does not name.
    let mounted = root
        .resolve(Path::new(path), Links::Refuse)
        .map_err(|e| what(errno(path)(e)))?;
    let flags = remount_flags(&mounted).map_err(what)? | MountFlags::RDONLY;
    sys.mount(&fd_path(&mounted), Mount::Remount { flags })
        .map_err(what)
}
