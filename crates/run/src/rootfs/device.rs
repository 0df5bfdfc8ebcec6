//! Device nodes and the usual `/dev` symlinks, made through a descriptor of the container's
//! `/dev` (never through a host path), plus the spec's `linux.devices` (`--device`).

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};
use rustix::fs::{AtFlags, Mode, OFlags};

use super::{Create, Links, Root};
use crate::error::errno;
use crate::syscall::{NodeKind, Syscall};
use crate::{Error, Result};

/// The nodes every container gets (runc's and docker's defaults): name, major, minor.
const DEFAULT_NODES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

const DEFAULT_LINKS: [(&str, &str); 6] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
    ("core", "/proc/kcore"),
];

/// A real (not `O_PATH`) descriptor of a directory inside the root.
fn open_dir(root: &Root, dest: &Path) -> Result<OwnedFd> {
    let path_fd = root.ensure(dest, Create::Dir, Links::Refuse)?;
    rustix::fs::openat(
        &path_fd,
        ".",
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno(dest.display()))
}

/// Remove `name` from `dir` if it is there (a file, a node or a symlink; not followed).
fn remove(dir: &OwnedFd, name: &str, shown: &str) -> Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(errno(format!("replacing {shown}"))(e)),
    }
}

/// Make a node `name` in `dir`, owned by `uid:gid`, with exactly `mode`.
#[allow(clippy::too_many_arguments)]
fn node(
    sys: &dyn Syscall,
    dir: &OwnedFd,
    name: &str,
    shown: &str,
    kind: NodeKind,
    (major, minor): (u32, u32),
    mode: u32,
    owner: (u32, u32),
) -> Result<()> {
    remove(dir, name, shown)?;
    sys.mknodat(dir.as_fd(), name, kind, mode, major, minor)?;
    // The umask took bits off; the node was made just now by us and is not a symlink.
    rustix::fs::chmodat(dir, name, Mode::from_raw_mode(mode), AtFlags::empty())
        .map_err(errno(format!("chmod {shown}")))?;
    if owner != (0, 0) {
        rustix::fs::chownat(
            dir,
            name,
            Some(rustix::fs::Uid::from_raw(owner.0)),
            Some(rustix::fs::Gid::from_raw(owner.1)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(errno(format!("chown {shown}")))?;
    }
    Ok(())
}

/// The default nodes and links in `/dev`, then the spec's devices.
pub(crate) fn create(sys: &dyn Syscall, root: &Root, devices: &[LinuxDevice]) -> Result<()> {
    let dev = open_dir(root, Path::new("/dev"))?;
    for (name, major, minor) in DEFAULT_NODES {
        let shown = format!("/dev/{name}");
        node(
            sys,
            &dev,
            name,
            &shown,
            NodeKind::Char,
            (major, minor),
            0o666,
            (0, 0),
        )?;
    }
    links(&dev)?;
    for d in devices {
        let path = d.path();
        let (Some(parent), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
        else {
            return Err(Error::Config(format!(
                "device path {} has no name",
                path.display()
            )));
        };
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => NodeKind::Char,
            LinuxDeviceType::B => NodeKind::Block,
            LinuxDeviceType::P => NodeKind::Fifo,
            other => {
                return Err(Error::Config(format!(
                    "device {}: type {other:?} cannot be made",
                    path.display()
                )));
            }
        };
        let dir = open_dir(root, parent)?;
        let major = u32::try_from(d.major()).map_err(|_| bad_number(path))?;
        let minor = u32::try_from(d.minor()).map_err(|_| bad_number(path))?;
        node(
            sys,
            &dir,
            name,
            &path.display().to_string(),
            kind,
            (major, minor),
            d.file_mode().unwrap_or(0o666) & 0o7777,
            (d.uid().unwrap_or(0), d.gid().unwrap_or(0)),
        )?;
    }
    Ok(())
}

/// A rootless container's `/dev`: the default nodes are the host's, each bound onto an empty
/// file (a user namespace may not make device nodes; rootless runc does the same), and the
/// usual links. `--device` needs root.
pub(crate) fn bind_defaults(sys: &dyn Syscall, root: &Root, devices: &[LinuxDevice]) -> Result<()> {
    if let Some(d) = devices.first() {
        return Err(Error::Config(format!(
            "--device {} needs root: a rootless container only has the host's default nodes",
            d.path().display()
        )));
    }
    let dev = open_dir(root, Path::new("/dev"))?;
    for (name, _, _) in DEFAULT_NODES {
        let shown = format!("/dev/{name}");
        remove(&dev, name, &shown)?;
        // An empty file to bind onto, made here (O_EXCL: nothing planted is followed), then
        // named by a descriptor for the mount.
        rustix::fs::openat(
            &dev,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        )
        .map_err(errno(&shown))?;
        let file = rustix::fs::openat(
            &dev,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno(&shown))?;
        let host = Path::new("/dev").join(name);
        sys.mount(
            &super::fd_path(&file),
            crate::syscall::Mount::Bind {
                source: &host,
                recursive: false,
            },
        )?;
    }
    links(&dev)
}

/// The usual `/dev` symlinks.
fn links(dev: &OwnedFd) -> Result<()> {
    for (name, target) in DEFAULT_LINKS {
        remove(dev, name, &format!("/dev/{name}"))?;
        rustix::fs::symlinkat(target, dev, name).map_err(errno(format!("/dev/{name}")))?;
    }
    Ok(())
}

fn bad_number(path: &Path) -> Error {
    Error::Config(format!(
        "device {}: a negative major or minor",
        path.display()
    ))
}
