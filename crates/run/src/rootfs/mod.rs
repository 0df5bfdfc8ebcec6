//! The container's root filesystem, made ready inside init's own mount namespace: the spec's
//! mounts, the device nodes, masked and read-only paths. Every path is resolved inside the
//! root from a descriptor of it (`openat2` with `RESOLVE_IN_ROOT`), and everything created or
//! mounted goes through that descriptor, never through a host path: an image's symlinks (a
//! `/dev` pointing at a host directory, say) resolve inside the root or stop the container.

mod device;
mod mount;

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::Result;
use crate::error::errno;
use crate::syscall::Syscall;

pub(crate) use mount::remount_flags;

/// A container's root directory, open.
#[derive(Debug)]
pub(crate) struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// What [`Root::ensure`] creates when the path is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Create {
    /// A directory.
    Dir,
    /// An empty file (a mount point for a file bind).
    File,
}

/// How symlinks in a path inside the root are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Links {
    /// Followed, as if the root were `/` (bind mounts, `/etc/hosts`).
    Follow,
    /// Refused: the kernel's own filesystems (`/proc`, `/sys`, `/dev`, …) and device nodes
    /// are mounted or made only where the image has real directories.
    Refuse,
}

impl Root {
    /// Open `path` as the root.
    pub(crate) fn open(path: &Path) -> Result<Root> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno(path.display()))?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The host path of the root.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// An `O_PATH` descriptor of `dest` (absolute inside the container), resolved inside the
    /// root.
    pub(crate) fn resolve(&self, dest: &Path, links: Links) -> rustix::io::Result<OwnedFd> {
        self.open_at(dest.strip_prefix("/").unwrap_or(dest), links)
    }

    fn open_at(&self, rel: &Path, links: Links) -> rustix::io::Result<OwnedFd> {
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let mut how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        if links == Links::Refuse {
            how |= ResolveFlags::NO_SYMLINKS;
        }
        rustix::fs::openat2(
            &self.fd,
            rel,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            how,
        )
    }

    /// Resolve `dest` inside the root, creating what is missing (directories, and the last
    /// component as `last`); returns an `O_PATH` descriptor of it. A symlink met on the way
    /// is followed inside the root or refused, as `links` says; a dangling one that is
    /// followed has its target made, inside the root (docker does the same for an image whose
    /// `/etc/resolv.conf` points at a file it lacks).
    pub(crate) fn ensure(&self, dest: &Path, last: Create, links: Links) -> Result<OwnedFd> {
        let mut path = dest.to_path_buf();
        // As many hops as the kernel follows in one look-up.
        for _ in 0..40 {
            match self.ensure_once(dest, &path, last, links)? {
                Step::Found(fd) => return Ok(fd),
                Step::Dangling(next) => path = next,
            }
        }
        Err(errno(format!("{} in the container", dest.display()))(
            rustix::io::Errno::LOOP,
        ))
    }

    fn ensure_once(&self, dest: &Path, path: &Path, last: Create, links: Links) -> Result<Step> {
        let what = || format!("{} in the container", dest.display());
        let refused = |e: rustix::io::Errno| {
            if e == rustix::io::Errno::LOOP && links == Links::Refuse {
                crate::Error::Config(format!(
                    "{}: the image has a symlink on the way, which is refused here",
                    what()
                ))
            } else {
                errno(what())(e)
            }
        };
        let rel = path.strip_prefix("/").unwrap_or(path);
        match self.open_at(rel, links) {
            Ok(fd) => return Ok(Step::Found(fd)),
            Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(refused(e)),
        }
        let comps: Vec<&OsStr> = rel.iter().collect();
        let mut sofar = PathBuf::new();
        for (i, c) in comps.iter().enumerate() {
            let parent = self.open_at(&sofar, links).map_err(refused)?;
            sofar.push(c);
            match self.open_at(&sofar, links) {
                Ok(_) => continue,
                Err(rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(refused(e)),
            }
            // `parent` is an O_PATH descriptor: create through a real one of the directory.
            let dir = rustix::fs::openat(
                &parent,
                ".",
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(errno(what()))?;
            let r = if i + 1 == comps.len() && last == Create::File {
                rustix::fs::openat(
                    &dir,
                    *c,
                    OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o644),
                )
                .map(drop)
            } else {
                rustix::fs::mkdirat(&dir, *c, Mode::from_raw_mode(0o755))
            };
            match r {
                Ok(()) => {}
                // A dangling symlink: go on from its target, inside the root.
                Err(rustix::io::Errno::EXIST) if links == Links::Follow => {
                    let target =
                        rustix::fs::readlinkat(&dir, *c, Vec::new()).map_err(errno(what()))?;
                    let target = PathBuf::from(std::ffi::OsStr::from_bytes(target.as_bytes()));
                    let base = if target.is_absolute() {
                        PathBuf::from("/")
                    } else {
                        self.inside(&dir)?
                    };
                    let mut next = base.join(target);
                    next.extend(&comps[i + 1..]);
                    return Ok(Step::Dangling(next));
                }
                Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(errno(what())(e)),
            }
        }
        self.open_at(rel, links).map(Step::Found).map_err(refused)
    }

    /// The path, as the container sees it, of a directory open inside the root.
    fn inside(&self, dir: &OwnedFd) -> Result<PathBuf> {
        let real = |fd: &OwnedFd| {
            std::fs::read_link(fd_path(fd)).map_err(crate::error::sys("reading /proc/self/fd"))
        };
        let (dir, root) = (real(dir)?, real(&self.fd)?);
        Ok(Path::new("/").join(dir.strip_prefix(&root).unwrap_or(Path::new(""))))
    }
}

/// One look-up of [`Root::ensure`].
enum Step {
    Found(OwnedFd),
    /// A dangling symlink was met; look up this path instead.
    Dangling(PathBuf),
}

/// The path through which a mount or a call reaches what `fd` names.
pub(crate) fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Mount the spec's mounts, make the device nodes (bind the host's when `rootless`: a user
/// namespace may not make any), mask and protect paths, all inside `root`.
pub(crate) fn prepare(sys: &dyn Syscall, root: &Root, spec: &Spec, rootless: bool) -> Result<()> {
    let linux = spec.linux().clone().unwrap_or_default();
    for m in spec.mounts().iter().flatten() {
        mount::mount(sys, root, m)?;
    }
    let devices = linux.devices().as_deref().unwrap_or_default();
    if rootless {
        device::bind_defaults(sys, root, devices)?;
    } else {
        device::create(sys, root, devices)?;
    }
    for p in linux.masked_paths().iter().flatten() {
        mount::mask(sys, root, p)?;
    }
    for p in linux.readonly_paths().iter().flatten() {
        mount::readonly(sys, root, p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
