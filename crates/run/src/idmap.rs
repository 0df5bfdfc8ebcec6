//! The root filesystem of a container in a user namespace (`--userns=remap`): the snapshots,
//! owned by the image's ids on the host, are mounted idmapped (read-only) through the
//! container's mappings, so that inside the namespace every file has the owner the image
//! gave it while on the host it belongs to the subordinate range; the overlay over them is
//! mounted by us (host root) in the host's mount namespace, under the container's directory,
//! and init binds it as a plain directory. The writable layer's root belongs to the
//! container's root, so what the container writes is the range's on the host.
//!
//! Idmapped mounts need a user namespace carrying the mappings: a short-lived child makes
//! one, we write its maps, keep a descriptor of it and let the child go.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::sys;
use crate::userns::IdMap;
use crate::{Error, Result};

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// The `uid_map`/`gid_map` text of `maps`.
pub fn map_text(maps: &[IdMap]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container, m.host, m.size))
        .collect()
}

/// Write `uids` and `gids` as the maps of process `pid`'s user namespace (we are root in its
/// parent namespace, so no helper is needed and `setgroups` stays allowed).
pub fn write_maps(pid: u32, uids: &[IdMap], gids: &[IdMap]) -> Result<()> {
    for (file, maps) in [("uid_map", uids), ("gid_map", gids)] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, map_text(maps)).map_err(sys(&path))?;
    }
    Ok(())
}

/// A descriptor of a new user namespace with these mappings.
fn userns_with(uids: &[IdMap], gids: &[IdMap]) -> Result<OwnedFd> {
    let (ready_r, ready_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(crate::error::errno("pipe"))?;
    let (done_r, done_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(crate::error::errno("pipe"))?;
    let (rr, rw) = (ready_r.as_raw_fd(), ready_w.as_raw_fd());
    let (dr, dw) = (done_r.as_raw_fd(), done_w.as_raw_fd());
    // SAFETY: the child only makes async-signal-safe system calls (unshare, write, read,
    // _exit) before it exits; it touches no memory the parent's threads may hold locked.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(sys("fork")(std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: as above; in the child.
        unsafe {
            // Our copy of the write end would keep our read below from ever ending.
            libc::close(rr);
            libc::close(dw);
            let byte = [u8::from(libc::unshare(libc::CLONE_NEWUSER) == 0)];
            libc::write(rw, byte.as_ptr().cast(), 1);
            let mut buf = [0u8; 1];
            libc::read(dr, buf.as_mut_ptr().cast(), 1);
            libc::_exit(0);
        }
    }
    drop(ready_w);
    drop(done_r);
    let result = (|| {
        let mut byte = [0u8; 1];
        let n = rustix::io::read(&ready_r, &mut byte).map_err(crate::error::errno("pipe"))?;
        if n != 1 || byte[0] != 1 {
            return Err(Error::Config(
                "cannot make a user namespace for the idmapped layers".into(),
            ));
        }
        write_maps(pid as u32, uids, gids)?;
        let path = format!("/proc/{pid}/ns/user");
        std::fs::File::open(&path)
            .map(OwnedFd::from)
            .map_err(sys(&path))
    })();
    drop(done_w);
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    result
}

fn cstring(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::Config(format!("{}: a NUL in the path", path.display())))
}

/// Mount `source` at `target` (an existing directory), read-only and idmapped through the
/// user namespace `userns`.
fn idmapped_bind(source: &Path, target: &Path, userns: &OwnedFd) -> Result<()> {
    let src = cstring(source)?;
    // SAFETY: open_tree with a valid path; returns a new descriptor we own.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            src.as_ptr(),
            libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC,
        )
    };
    if tree < 0 {
        return Err(sys(format!("open_tree {}", source.display()))(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: a fresh descriptor from open_tree.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as i32) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    let empty = c"";
    // SAFETY: mount_setattr on our detached tree, with a valid mount_attr of its size.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        return Err(sys(format!("idmapping {}", source.display()))(
            std::io::Error::last_os_error(),
        ));
    }
    let dst = cstring(target)?;
    // SAFETY: move_mount of our detached tree onto a path.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            dst.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(sys(format!("mounting {}", target.display()))(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Where a remapped container's idmapped layers are mounted: `DIR/layers/N`.
fn layers_dir(dir: &Path) -> PathBuf {
    dir.join("layers")
}

/// Mount a remapped container's root filesystem at `DIR/merged`: `lowers` (base first)
/// idmapped read-only under `DIR/layers/`, `DIR/upper` (its root given to the container's
/// root) over them. Undone by [`unmount_rootfs`], also when it fails half way.
pub fn mount_rootfs(dir: &Path, lowers: &[PathBuf], uids: &[IdMap], gids: &[IdMap]) -> Result<()> {
    let result = (|| {
        let userns = userns_with(uids, gids)?;
        let layers = layers_dir(dir);
        let mut mapped = Vec::new();
        for (i, lower) in lowers.iter().enumerate() {
            let target = layers.join(i.to_string());
            std::fs::create_dir_all(&target).map_err(sys(target.display()))?;
            idmapped_bind(lower, &target, &userns)?;
            mapped.push(target);
        }
        let (upper, work, merged) = (dir.join("upper"), dir.join("work"), dir.join("merged"));
        for d in [&upper, &work, &merged] {
            std::fs::create_dir_all(d).map_err(sys(d.display()))?;
        }
        let root = (outside(uids, 0), outside(gids, 0));
        std::os::unix::fs::chown(&upper, Some(root.0), Some(root.1))
            .map_err(sys(upper.display()))?;
        img_unpack::overlay::mount_overlay(&mapped, &upper, &work, &merged)
            .map_err(|e| Error::Config(e.to_string()))
    })();
    if result.is_err() {
        unmount_rootfs(dir);
    }
    result
}

/// The host id that `id` inside is (the id itself when no mapping holds it).
pub fn outside(maps: &[IdMap], id: u32) -> u32 {
    maps.iter()
        .find(|m| id >= m.container && id - m.container < m.size)
        .map_or(id, |m| m.host + (id - m.container))
}

/// Undo [`mount_rootfs`] (what of it is there): the overlay, then the layers. Returns
/// whether something was unmounted.
pub fn unmount_rootfs(dir: &Path) -> bool {
    let mut any = false;
    let detach = |p: &Path| rustix::mount::unmount(p, rustix::mount::UnmountFlags::DETACH).is_ok();
    any |= detach(&dir.join("merged"));
    if let Ok(entries) = std::fs::read_dir(layers_dir(dir)) {
        for e in entries.flatten() {
            any |= detach(&e.path());
            let _ = std::fs::remove_dir(e.path());
        }
    }
    let _ = std::fs::remove_dir(layers_dir(dir));
    any
}

/// Move the owners of every file under `root` (itself included, symlinks not followed) from
/// the ids inside to the ids outside, keeping set-user-ID and set-group-ID bits (which
/// `chown` clears). For a tree the container owns alone (a bundle's rootfs), where an
/// idmapped mount is not needed.
pub fn shift_tree(root: &Path, uids: &[IdMap], gids: &[IdMap]) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut todo = vec![root.to_path_buf()];
    while let Some(path) = todo.pop() {
        let meta = std::fs::symlink_metadata(&path).map_err(sys(path.display()))?;
        std::os::unix::fs::lchown(
            &path,
            Some(outside(uids, meta.uid())),
            Some(outside(gids, meta.gid())),
        )
        .map_err(sys(path.display()))?;
        if meta.file_type().is_symlink() {
            continue;
        }
        if meta.mode() & 0o6000 != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
                .map_err(sys(path.display()))?;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).map_err(sys(path.display()))? {
                todo.push(entry.map_err(sys(path.display()))?.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_move_into_the_range_and_maps_are_written_as_the_kernel_reads_them() {
        let maps = [
            IdMap {
                container: 0,
                host: 400000,
                size: 1000,
            },
            IdMap {
                container: 1000,
                host: 1000,
                size: 1,
            },
        ];
        assert_eq!(outside(&maps, 0), 400000);
        assert_eq!(outside(&maps, 999), 400999);
        assert_eq!(outside(&maps, 1000), 1000);
        // outside every range: unchanged (the kernel shows it as the overflow id)
        assert_eq!(outside(&maps, 5000), 5000);
        assert_eq!(map_text(&maps), "0 400000 1000\n1000 1000 1\n");
    }
}
