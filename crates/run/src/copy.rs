//! `img cp`: files between the host and a container's root, never through a symlink out of
//! it. Every path inside the container is resolved from a descriptor of its root with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` (an absolute or `..` symlink stays
//! inside, as the unpacker resolves a layer's), the tree under it is walked through
//! descriptors (`O_NOFOLLOW`: a symlink is copied as a symlink, never followed), and what
//! arrives anywhere is written by the layer applier (`img_unpack::apply_tar`), which keeps
//! every entry under its target. Owners are the caller's unless `archive` (docker's `-a`)
//! keeps the source's.

use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};

use crate::error::errno;
use crate::{Error, Result};

/// Open `path` inside the root `root` (a directory descriptor), symlinks resolved in it.
fn open_in(root: &OwnedFd, path: &Path, flags: OFlags) -> Result<OwnedFd> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    rustix::fs::openat2(
        root,
        rel,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(errno(format!("{} in the container", path.display())))
}

/// The directory `dir` names, for opening: a root's descriptor.
pub fn open_root(dir: &Path) -> Result<OwnedFd> {
    rustix::fs::open(
        dir,
        OFlags::DIRECTORY | OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno(dir.display()))
}

/// A tar of what `fd` (named `name` in the archive) is: a file, a symlink (not followed), or
/// a directory walked through descriptors. Devices, sockets and fifos are skipped.
fn archive(
    builder: &mut tar::Builder<impl std::io::Write>,
    parent: &OwnedFd,
    entry: &OsStr,
    name: &Path,
    keep_owners: bool,
) -> Result<()> {
    let shown = || name.display().to_string();
    let st =
        rustix::fs::statat(parent, entry, AtFlags::SYMLINK_NOFOLLOW).map_err(errno(shown()))?;
    let mut header = tar::Header::new_gnu();
    header.set_mode(st.st_mode & 0o7777);
    header.set_mtime(st.st_mtime.max(0) as u64);
    let (uid, gid) = if keep_owners {
        (st.st_uid, st.st_gid)
    } else {
        (0, 0)
    };
    header.set_uid(uid.into());
    header.set_gid(gid.into());
    let io = |e: std::io::Error| Error::Sys {
        what: format!("archiving {}", shown()),
        cause: e,
    };
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => {
            let fd = rustix::fs::openat(
                parent,
                entry,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(errno(shown()))?;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(st.st_size as u64);
            let file = std::fs::File::from(fd).take(st.st_size as u64);
            builder.append_data(&mut header, name, file).map_err(io)?;
        }
        FileType::Symlink => {
            let target =
                rustix::fs::readlinkat(parent, entry, Vec::new()).map_err(errno(shown()))?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            builder
                .append_link(&mut header, name, OsStr::from_bytes(target.as_bytes()))
                .map_err(io)?;
        }
        FileType::Directory => {
            let dir = rustix::fs::openat(
                parent,
                entry,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(errno(shown()))?;
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            builder
                .append_data(&mut header, name, std::io::empty())
                .map_err(io)?;
            let mut names = Vec::new();
            let it = rustix::fs::Dir::read_from(&dir).map_err(errno(shown()))?;
            for e in it {
                let e = e.map_err(errno(shown()))?;
                let n = e.file_name().to_bytes();
                if n != b"." && n != b".." {
                    names.push(OsStr::from_bytes(n).to_os_string());
                }
            }
            names.sort();
            for n in names {
                if n.as_bytes().starts_with(b".wh.") {
                    return Err(Error::Config(format!(
                        "{}: a name starting with .wh. is an overlay whiteout to the applier: not copied",
                        name.join(&n).display()
                    )));
                }
                archive(builder, &dir, &n, &name.join(&n), keep_owners)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Stream a tar of `entry` in `parent` (named `name`) into the applier writing under
/// `target` (a path whose last component the caller resolved safely).
fn transfer(
    parent: OwnedFd,
    entry: std::ffi::OsString,
    name: PathBuf,
    target: &Path,
    keep_owners: bool,
) -> Result<()> {
    let (reader, writer) = std::io::pipe().map_err(|e| Error::Sys {
        what: "pipe".into(),
        cause: e,
    })?;
    let producer = std::thread::spawn(move || {
        let mut builder = tar::Builder::new(writer);
        let result = archive(&mut builder, &parent, &entry, &name, keep_owners);
        let finished = builder.finish().map_err(|e| Error::Sys {
            what: "ending the archive".into(),
            cause: e,
        });
        result.and(finished)
    });
    let applied = img_unpack::apply_tar(reader, target, img_unpack::Mode::Flatten)
        .map_err(|e| Error::Config(e.to_string()));
    let produced = producer
        .join()
        .unwrap_or_else(|_| Err(Error::Config("the archiving thread panicked".into())));
    produced.and(applied.map(|_| ()))
}

/// Where a copy lands, docker's rule: into `dest` (as `src`'s name) when `dest` is an
/// existing directory, else as `dest` itself (its parent must exist).
fn landing(dest_is_dir: bool, src: &Path, dest_name: Option<&OsStr>) -> Result<std::ffi::OsString> {
    if dest_is_dir {
        return src
            .file_name()
            .map(OsStr::to_os_string)
            .ok_or_else(|| Error::Config(format!("{} has no name to copy under", src.display())));
    }
    dest_name
        .map(OsStr::to_os_string)
        .ok_or_else(|| Error::Config("the destination has no name".into()))
}

/// Copy `src` (inside the container whose root is `root`) to `dest` on the host.
pub fn copy_out(root: &Path, src: &Path, dest: &Path, keep_owners: bool) -> Result<()> {
    let root_fd = open_root(root)?;
    let src_parent = src.parent().unwrap_or(Path::new("/"));
    let entry = src.file_name().ok_or_else(|| {
        Error::Config(format!("{}: copy a named file or directory", src.display()))
    })?;
    let parent = open_in(&root_fd, src_parent, OFlags::DIRECTORY | OFlags::RDONLY)?;
    // It must be there (a dangling symlink is copied as itself).
    rustix::fs::statat(&parent, entry, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(errno(format!("{} in the container", src.display())))?;
    let dest_is_dir = dest.is_dir();
    let name = landing(dest_is_dir, src, dest.file_name())?;
    let target = if dest_is_dir {
        dest.to_path_buf()
    } else {
        dest.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf()
    };
    transfer(
        parent,
        entry.to_os_string(),
        PathBuf::from(name),
        &target,
        keep_owners,
    )
}

/// Copy `src` on the host to `dest` inside the container whose root is `root`.
pub fn copy_in(src: &Path, root: &Path, dest: &Path, keep_owners: bool) -> Result<()> {
    let root_fd = open_root(root)?;
    let src_parent = src
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let entry = src.file_name().ok_or_else(|| {
        Error::Config(format!("{}: copy a named file or directory", src.display()))
    })?;
    let parent = rustix::fs::open(
        src_parent,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno(src_parent.display()))?;
    rustix::fs::statat(&parent, entry, AtFlags::SYMLINK_NOFOLLOW).map_err(errno(src.display()))?;
    // The destination, resolved inside the container: a directory to copy into, or the
    // name to copy as in a directory that is there.
    let (dir, name) = match open_in(&root_fd, dest, OFlags::DIRECTORY | OFlags::RDONLY) {
        Ok(dir) => (dir, landing(true, src, None)?),
        Err(_) => {
            let parent_dest = dest.parent().unwrap_or(Path::new("/"));
            let dir = open_in(&root_fd, parent_dest, OFlags::DIRECTORY | OFlags::RDONLY)?;
            (dir, landing(false, src, dest.file_name())?)
        }
    };
    // The applier opens its target by path: this one names exactly the directory resolved.
    let target = PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&dir.as_fd())
    ));
    transfer(
        parent,
        entry.to_os_string(),
        PathBuf::from(name),
        &target,
        keep_owners,
    )?;
    drop(dir);
    Ok(())
}
