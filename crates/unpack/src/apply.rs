//! Applying one layer's tar entries to a directory, never outside it.
//!
//! Every path is resolved from a descriptor of the target with `openat2(RESOLVE_IN_ROOT)`, so
//! `..`, absolute symlinks and symlinks planted by earlier entries or earlier layers resolve
//! inside the target as if it were `/`; the final component is always created with `*at` calls
//! relative to the resolved parent, with `O_NOFOLLOW` or `AT_SYMLINK_NOFOLLOW`. A name whose
//! `..` would climb above the target is refused outright, as docker refuses it.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::hash::{BuildHasher, RandomState};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{
    AtFlags, Dev, FileType, Mode as Perm, OFlags, ResolveFlags, Timespec, Timestamps, XattrFlags,
};
use rustix::io::Errno;
use tar::EntryType;

use crate::error::io_at;
use crate::stack::{Found, Lowers};
use crate::{Error, Result};

/// How whiteouts are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Apply them: `.wh.NAME` deletes NAME, `.wh..wh..opq` empties the directory of what lower
    /// layers put there. For a flattened rootfs, layers applied in order to one directory.
    Flatten,
    /// Keep them in overlayfs' own form (a 0:0 character device; `trusted.overlay.opaque=y`,
    /// or `user.overlay.opaque=y` without root: see [`opaque_xattr`]) for a per-layer
    /// snapshot that overlayfs stacks.
    Overlay,
}

/// What applying a layer did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Tar entries applied (whiteouts included).
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Entries skipped because they need privileges we lack (devices as non-root) or a
    /// feature the filesystem lacks (xattrs).
    pub skipped: u64,
    /// Directories the layer needed for its entries but did not list, created 0755 root:
    /// in a snapshot they should look like the lower layer's (see `prepare_snapshots`).
    pub implied: Vec<PathBuf>,
}

/// The overlayfs whiteout prefix and opaque marker (from the OCI image spec).
const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

pub(crate) struct Applier {
    root: Rc<OwnedFd>,
    mode: Mode,
    /// Root of the host's user namespace: device nodes, `trusted.*` attributes.
    privileged: bool,
    /// Root of some user namespace (the host's, or a rootless one mapping the user's
    /// subordinate ids): owners are set, those the namespace maps; others are recorded.
    owners: bool,
    /// Keyed hashes of the paths this layer created, which its own whiteouts and opaque
    /// markers must not remove (flatten mode only: a snapshot holds nothing but its own layer,
    /// so there what exists is what this layer wrote). Hashes, not paths: 8 bytes an entry.
    written: HashSet<u64>,
    hasher: RandomState,
    /// Directories whose mtime is set last (adding children changes it).
    dirs: Vec<(Vec<OsString>, Timestamps)>,
    cache: Option<(Vec<OsString>, Rc<OwnedFd>)>,
    buf: Vec<u8>,
    stats: Stats,
    /// The layers below, for a snapshot: paths resolve through them as a flattened unpack
    /// resolves them through what the lower layers left (`None`: not consulted; a hardlink to
    /// a file not in this layer then asks for them with [`Error::NeedsLowers`]).
    lowers: Option<Lowers>,
}

impl Applier {
    pub(crate) fn new(target: &Path, mode: Mode) -> Result<Applier> {
        let root = rustix::fs::open(
            target,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Perm::empty(),
        )
        .map_err(|e| io_at(target.display())(e.into()))?;
        Ok(Applier {
            root: Rc::new(root),
            mode,
            privileged: rustix::process::geteuid().is_root()
                && crate::overlay::in_initial_user_namespace(),
            owners: rustix::process::geteuid().is_root(),
            written: HashSet::new(),
            hasher: RandomState::new(),
            dirs: Vec::new(),
            cache: None,
            buf: vec![0; 256 * 1024],
            stats: Stats::default(),
            lowers: None,
        })
    }

    /// Resolve paths through the snapshots below (for [`Mode::Overlay`]).
    pub(crate) fn with_lowers(mut self, lowers: Lowers) -> Applier {
        self.lowers = Some(lowers);
        self
    }

    /// Apply every entry of a layer tar.
    pub(crate) fn apply(mut self, reader: impl Read) -> Result<Stats> {
        let mut archive = tar::Archive::new(reader);
        let entries = archive.entries().map_err(|e| Error::Read(e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| Error::Read(e.to_string()))?;
            self.entry(&mut entry)?;
        }
        self.finish_dirs()?;
        Ok(self.stats)
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let label = String::from_utf8_lossy(&raw).into_owned();
        let path = clean(Path::new(OsStr::from_bytes(&raw)), &label)?;
        self.stats.entries += 1;
        let header = entry.header();
        let kind = header.entry_type();
        let Some((name, parent)) = path.split_last() else {
            // The root itself ("./"): its metadata applies to the target.
            if kind == EntryType::Directory {
                let meta = Meta::of(entry)?;
                let dir = self.open_dir(&[], &label)?;
                self.set_meta(&dir, &meta, &label)?;
                self.dirs.push((Vec::new(), meta.times));
            }
            return Ok(());
        };
        let name_bytes = name.as_bytes();
        if name_bytes == OPAQUE.as_bytes() {
            return self.opaque(parent, &label);
        }
        if let Some(victim) = name_bytes.strip_prefix(WHITEOUT.as_bytes()) {
            if victim.starts_with(WHITEOUT.as_bytes()) {
                // Other aufs metadata (.wh..wh.plnk and the like): not content.
                return Ok(());
            }
            if victim.is_empty() || victim == b"." || victim == b".." {
                return Err(Error::Escape { entry: label });
            }
            return self.whiteout(parent, OsStr::from_bytes(victim), &label);
        }
        let meta = Meta::of(entry)?;
        let dir = self.parent(parent, &label)?;
        let full: PathBuf = path.iter().collect();
        match kind {
            EntryType::Directory => {
                self.clear(&dir, name, true, &label)?;
                match rustix::fs::mkdirat(&*dir, name.as_os_str(), Perm::from_raw_mode(0o700)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(io_at(&label)(e.into())),
                }
                let fd = rustix::fs::openat(
                    &*dir,
                    name.as_os_str(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Perm::empty(),
                )
                .map_err(|e| io_at(&label)(e.into()))?;
                self.set_meta(&fd, &meta, &label)?;
                self.dirs.push((path.clone(), meta.times));
                // Listed after all: no longer implied.
                self.stats.implied.retain(|p| p != &full);
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.clear(&dir, name, false, &label)?;
                let fd = rustix::fs::openat(
                    &*dir,
                    name.as_os_str(),
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Perm::from_raw_mode(0o600),
                )
                .map_err(|e| io_at(&label)(e.into()))?;
                let mut file = File::from(fd);
                let declared = entry.size();
                let mut copied = 0u64;
                // A snapshot is synced before it is named: large files start their way to
                // the disk while the rest of the layer is applied (not a flattened tree, which
                // nothing syncs).
                let write_behind = self.mode == Mode::Overlay;
                let mut started = 0u64;
                loop {
                    let n = entry
                        .read(&mut self.buf)
                        .map_err(|e| Error::Read(format!("entry {label:?}: {e}")))?;
                    if n == 0 {
                        break;
                    }
                    file.write_all(&self.buf[..n]).map_err(io_at(&label))?;
                    copied += n as u64;
                    if write_behind && copied - started >= img_store::WRITE_BEHIND {
                        img_store::start_writeback(&file, started, copied - started);
                        started = copied;
                    }
                }
                if write_behind && started > 0 && copied > started {
                    img_store::start_writeback(&file, started, copied - started);
                }
                if copied != declared {
                    return Err(Error::Read(format!(
                        "entry {label:?}: the layer ends after {copied} of its {declared} bytes"
                    )));
                }
                self.stats.bytes += copied;
                self.set_meta(&file, &meta, &label)?;
                rustix::fs::futimens(&file, &meta.times).map_err(|e| io_at(&label)(e.into()))?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| Error::Read(format!("symlink {label:?} has no target")))?
                    .into_owned();
                self.clear(&dir, name, false, &label)?;
                rustix::fs::symlinkat(OsStr::from_bytes(&target), &*dir, name.as_os_str())
                    .map_err(|e| io_at(&label)(e.into()))?;
                self.set_meta_at(&dir, name, &meta, &label, true)?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| Error::Read(format!("hardlink {label:?} has no target")))?
                    .into_owned();
                let target_label = String::from_utf8_lossy(&target).into_owned();
                let target_path = clean(Path::new(OsStr::from_bytes(&target)), &target_label)
                    .map_err(|_| Error::Escape {
                        entry: format!("{label} -> {target_label}"),
                    })?;
                if target_path == path {
                    return Ok(());
                }
                let Some((tname, tparent)) = target_path.split_last() else {
                    return Err(Error::HardlinkTarget {
                        entry: label,
                        target: target_label,
                    });
                };
                let missing = || Error::HardlinkTarget {
                    entry: label.clone(),
                    target: target_label.clone(),
                };
                let tdir = match self.resolve(tparent) {
                    Ok(fd) => Some(fd),
                    Err(Errno::NOENT) | Err(Errno::NOTDIR) => None,
                    Err(e) => return Err(io_at(&target_label)(e.into())),
                };
                let in_layer = tdir.as_ref().is_some_and(|d| {
                    rustix::fs::statat(d, tname.as_os_str(), AtFlags::SYMLINK_NOFOLLOW).is_ok()
                });
                let tdir = match (in_layer, tdir, self.mode) {
                    (true, Some(tdir), _) => tdir,
                    (false, _, Mode::Overlay) => {
                        // A file of a lower layer: copied up into this snapshot, then linked,
                        // as overlayfs itself does when a merged view links a lower file.
                        if self.lowers.is_none() {
                            return Err(Error::NeedsLowers);
                        }
                        self.copy_up(tparent, tname, &target_label)?
                            .ok_or_else(missing)?
                    }
                    _ => return Err(missing()),
                };
                self.clear(&dir, name, false, &label)?;
                match rustix::fs::linkat(
                    &tdir,
                    tname.as_os_str(),
                    &*dir,
                    name.as_os_str(),
                    AtFlags::empty(),
                ) {
                    Ok(()) => {}
                    Err(Errno::NOENT) => return Err(missing()),
                    Err(e) => return Err(io_at(&label)(e.into())),
                }
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let file_type = match kind {
                    EntryType::Char => FileType::CharacterDevice,
                    EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                if file_type != FileType::Fifo && !self.privileged {
                    self.stats.skipped += 1;
                    return Ok(());
                }
                let dev = rustix::fs::makedev(meta.major, meta.minor);
                self.clear(&dir, name, false, &label)?;
                rustix::fs::mknodat(
                    &*dir,
                    name.as_os_str(),
                    file_type,
                    Perm::from_raw_mode(0o600),
                    dev,
                )
                .map_err(|e| io_at(&label)(e.into()))?;
                self.set_meta_at(&dir, name, &meta, &label, false)?;
            }
            _ => {
                // Global PAX headers and the like carry no file.
                self.stats.skipped += 1;
                return Ok(());
            }
        }
        if self.mode == Mode::Flatten {
            self.written.insert(self.hasher.hash_one(&full));
        }
        Ok(())
    }

    /// Whether this layer wrote `name` in `dir` (`full`: its path from the root).
    fn own(&self, dir: &OwnedFd, name: &OsStr, full: &Path) -> bool {
        match self.mode {
            Mode::Flatten => self.written.contains(&self.hasher.hash_one(full)),
            Mode::Overlay => {
                rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).is_ok()
                    && !self.stats.implied.iter().any(|p| p == full)
            }
        }
    }

    /// `.wh.NAME` in `parent`.
    fn whiteout(&mut self, parent: &[OsString], victim: &OsStr, label: &str) -> Result<()> {
        let dir = self.parent(parent, label)?;
        let mut full: PathBuf = parent.iter().collect();
        full.push(victim);
        // A whiteout hides what lower layers have, never its own layer's entries.
        if self.own(&dir, victim, &full) {
            return Ok(());
        }
        match self.mode {
            Mode::Flatten => {
                self.clear(&dir, victim, false, label)?;
            }
            Mode::Overlay => {
                self.clear(&dir, victim, false, label)?;
                rustix::fs::mknodat(
                    &*dir,
                    victim,
                    FileType::CharacterDevice,
                    Perm::empty(),
                    Dev::default(),
                )
                .map_err(|e| io_at(label)(e.into()))?;
            }
        }
        Ok(())
    }

    /// `.wh..wh..opq` in `parent`.
    fn opaque(&mut self, parent: &[OsString], label: &str) -> Result<()> {
        let dir = self.open_dir(parent, label)?;
        match self.mode {
            Mode::Flatten => {
                let base: PathBuf = parent.iter().collect();
                let children = list(&dir).map_err(|e| io_at(label)(e.into()))?;
                for child in children {
                    if !self.own(&dir, &child, &base.join(&child)) {
                        remove_any(&dir, &child).map_err(|e| io_at(label)(e.into()))?;
                        self.cache = None;
                    }
                }
            }
            Mode::Overlay => {
                let name = opaque_xattr(self.privileged);
                rustix::fs::fsetxattr(&dir, name, b"y", XattrFlags::empty())
                    .map_err(|e| io_at(label)(e.into()))?;
            }
        }
        Ok(())
    }

    /// The directory `path` resolved inside the root (`O_PATH`), created (0755) where missing.
    fn parent(&mut self, path: &[OsString], label: &str) -> Result<Rc<OwnedFd>> {
        if path.is_empty() {
            return Ok(self.root.clone());
        }
        if let Some((cached, fd)) = &self.cache
            && cached == path
        {
            return Ok(fd.clone());
        }
        let fd = match self.resolve(path) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => self.create_dirs(path, label)?,
            Err(e) => return Err(io_at(label)(e.into())),
        };
        let fd = Rc::new(fd);
        self.cache = Some((path.to_vec(), fd.clone()));
        Ok(fd)
    }

    fn resolve(&self, path: &[OsString]) -> rustix::io::Result<OwnedFd> {
        if path.is_empty() {
            return rustix::io::dup(&*self.root);
        }
        let joined = join(path);
        rustix::fs::openat2(
            &*self.root,
            joined.as_os_str(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Perm::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
    }

    /// Create the missing directories of `path` where it resolves inside the root: symlinks
    /// on the way are followed by hand with the root as `/` (as `RESOLVE_IN_ROOT` would), so a
    /// link planted to point outside makes the directories inside. Only taken when `openat2`
    /// found something missing.
    fn create_dirs(&mut self, path: &[OsString], label: &str) -> Result<OwnedFd> {
        self.create_dirs_resolved(path, label).map(|(fd, _)| fd)
    }

    /// [`Applier::create_dirs`], also returning the path the directories resolved to. A name
    /// missing here is looked up in the layers below, when known: a lower symlink is followed
    /// (a flattened unpack goes through it), a lower file is not a directory.
    fn create_dirs_resolved(
        &mut self,
        path: &[OsString],
        label: &str,
    ) -> Result<(OwnedFd, Vec<OsString>)> {
        let err = |e: Errno| io_at(label)(e.into());
        let mut todo: std::collections::VecDeque<OsString> = path.iter().cloned().collect();
        let mut resolved: Vec<OsString> = Vec::new();
        let mut hops = 0;
        while let Some(comp) = todo.pop_front() {
            if comp == ".." {
                resolved.pop();
                continue;
            }
            if comp == "." || comp.is_empty() {
                continue;
            }
            // Every component of `resolved` is a real directory, so this cannot leave the root.
            let dir = self.resolve(&resolved).map_err(err)?;
            let below = match rustix::fs::statat(&dir, comp.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
            {
                Err(Errno::NOENT) => self.lowers.as_ref().map(|l| l.lookup(&resolved, &comp)),
                _ => None,
            };
            let here = match below {
                Some(Found::Symlink(target)) => {
                    hops += 1;
                    if hops > 40 {
                        return Err(err(Errno::LOOP));
                    }
                    follow(Path::new(&target), &mut resolved, &mut todo);
                    continue;
                }
                Some(Found::Other { .. }) => return Err(err(Errno::NOTDIR)),
                _ => rustix::fs::statat(&dir, comp.as_os_str(), AtFlags::SYMLINK_NOFOLLOW),
            };
            match here {
                Err(Errno::NOENT) => {
                    match rustix::fs::mkdirat(&dir, comp.as_os_str(), Perm::from_raw_mode(0o755)) {
                        Ok(()) => {
                            let mut implied: PathBuf = resolved.iter().collect();
                            implied.push(&comp);
                            self.stats.implied.push(implied);
                        }
                        Err(Errno::EXIST) => {}
                        Err(e) => return Err(err(e)),
                    }
                    resolved.push(comp);
                }
                Err(e) => return Err(err(e)),
                Ok(st) => match FileType::from_raw_mode(st.st_mode) {
                    FileType::Directory => resolved.push(comp),
                    FileType::Symlink => {
                        hops += 1;
                        if hops > 40 {
                            return Err(err(Errno::LOOP));
                        }
                        let target = rustix::fs::readlinkat(&dir, comp.as_os_str(), Vec::new())
                            .map_err(err)?;
                        let target = Path::new(OsStr::from_bytes(target.as_bytes()));
                        follow(target, &mut resolved, &mut todo);
                    }
                    _ => return Err(err(Errno::NOTDIR)),
                },
            }
        }
        let fd = self.resolve(&resolved).map_err(err)?;
        Ok((fd, resolved))
    }

    /// Bring `parent/name` of a lower layer into this snapshot (content, owner, mode, times,
    /// xattrs), its parent directories created as needed; the directory it is in now, or
    /// `None` when the layers below have no such file.
    fn copy_up(
        &mut self,
        parent: &[OsString],
        name: &OsString,
        label: &str,
    ) -> Result<Option<OwnedFd>> {
        let err = |e: std::io::Error| io_at(label)(e);
        let (dir, resolved) = self.create_dirs_resolved(parent, label)?;
        let lowers = self
            .lowers
            .as_ref()
            .expect("copy_up is only asked with lowers");
        let Found::Other { layer } = lowers.lookup(&resolved, name) else {
            // Missing, or a directory (not a hardlink's target), or a symlink: refused, as
            // the flattened unpack refuses a link through a symlink it cannot follow.
            return Ok(None);
        };
        let mut path = resolved.clone();
        path.push(name.clone());
        let source = lowers.path_in(layer, &path);
        let meta = std::fs::symlink_metadata(&source).map_err(err)?;
        let kind = meta.file_type();
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        if kind.is_file() {
            let mut from = File::open(&source).map_err(err)?;
            let fd = rustix::fs::openat(
                &dir,
                name.as_os_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Perm::from_raw_mode(0o600),
            )
            .map_err(|e| err(e.into()))?;
            let mut to = File::from(fd);
            std::io::copy(&mut from, &mut to).map_err(err)?;
        } else {
            let file_type = if kind.is_char_device() {
                FileType::CharacterDevice
            } else if kind.is_block_device() {
                FileType::BlockDevice
            } else if kind.is_fifo() {
                FileType::Fifo
            } else {
                return Ok(None);
            };
            rustix::fs::mknodat(
                &dir,
                name.as_os_str(),
                file_type,
                Perm::from_raw_mode(0o600),
                meta.rdev(),
            )
            .map_err(|e| err(e.into()))?;
        }
        let mut xattrs = Vec::new();
        for key in xattr_names(&source) {
            let mut value = vec![0u8; 64 * 1024];
            if let Ok(n) = rustix::fs::lgetxattr(&source, key.as_os_str(), &mut value) {
                value.truncate(n);
                xattrs.push((key, value));
            }
        }
        let copied = Meta {
            uid: rustix::fs::Uid::from_raw(meta.uid()),
            gid: rustix::fs::Gid::from_raw(meta.gid()),
            mode: Perm::from_raw_mode(meta.mode() & 0o7777),
            times: {
                let t = Timespec {
                    tv_sec: meta.mtime(),
                    tv_nsec: meta.mtime_nsec() as _,
                };
                Timestamps {
                    last_access: t,
                    last_modification: t,
                }
            },
            major: 0,
            minor: 0,
            xattrs,
        };
        if kind.is_file() {
            let file = rustix::fs::openat(
                &dir,
                name.as_os_str(),
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Perm::empty(),
            )
            .map_err(|e| err(e.into()))?;
            self.set_meta(&file, &copied, label)?;
            rustix::fs::futimens(&file, &copied.times).map_err(|e| err(e.into()))?;
        } else {
            self.set_meta_at(&dir, name.as_os_str(), &copied, label, false)?;
        }
        self.cache = None;
        Ok(Some(dir))
    }

    /// Open `path` (inside the root) as a directory one can read and change.
    fn open_dir(&mut self, path: &[OsString], label: &str) -> Result<OwnedFd> {
        let parent = self.parent(path, label)?;
        rustix::fs::openat(
            &*parent,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Perm::empty(),
        )
        .map_err(|e| io_at(label)(e.into()))
    }

    /// Make room for `name` in `dir`: remove what is there, unless it is a directory and the
    /// new entry is one too (directories merge).
    fn clear(&mut self, dir: &OwnedFd, name: &OsStr, keep_dir: bool, label: &str) -> Result<()> {
        match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(io_at(label)(e.into())),
            Ok(st) => {
                let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
                if is_dir && keep_dir {
                    return Ok(());
                }
                self.cache = None;
                remove_any(dir, name).map_err(|e| io_at(label)(e.into()))
            }
        }
    }

    fn set_meta(&mut self, fd: &impl AsFd, meta: &Meta, label: &str) -> Result<()> {
        let mut owned = false;
        if self.owners {
            match rustix::fs::fchown(fd, Some(meta.uid), Some(meta.gid)) {
                Ok(()) => owned = true,
                // An id a rootless user namespace does not map: recorded below instead.
                Err(Errno::INVAL) if !self.privileged => {}
                Err(e) => return Err(io_at(label)(e.into())),
            }
        }
        // After chown, which clears set-user-ID and set-group-ID bits.
        rustix::fs::fchmod(fd, meta.mode).map_err(|e| io_at(label)(e.into()))?;
        if !owned && (meta.uid.as_raw() != 0 || meta.gid.as_raw() != 0) {
            self.record_owner(fd, meta, label)?;
        }
        for (name, value) in &meta.xattrs {
            match rustix::fs::fsetxattr(fd, name.as_os_str(), value, XattrFlags::empty()) {
                Ok(()) => {}
                Err(Errno::NOTSUP) | Err(Errno::PERM) if !self.privileged => {
                    self.stats.skipped += 1;
                }
                Err(e) => return Err(io_at(format!("{label} (xattr {name:?})"))(e.into())),
            }
        }
        Ok(())
    }

    /// Without root the files are the user's (the image's root, once a user namespace maps
    /// it): another owner the image gives a file or directory is kept where containers/storage
    /// and fuse-overlayfs look for it, `user.containers.override_stat` = `UID:GID:0MODE:TYPE`.
    /// A filesystem without user xattrs loses it (counted as skipped), as the tar's own do.
    fn record_owner(&mut self, fd: &impl AsFd, meta: &Meta, label: &str) -> Result<()> {
        let st = rustix::fs::fstat(fd).map_err(|e| io_at(label)(e.into()))?;
        let kind = if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            "dir"
        } else {
            "file"
        };
        let value = format!(
            "{}:{}:0{:o}:{kind}",
            meta.uid.as_raw(),
            meta.gid.as_raw(),
            meta.mode.bits()
        );
        match rustix::fs::fsetxattr(fd, OVERRIDE_STAT, value.as_bytes(), XattrFlags::empty()) {
            Ok(()) => Ok(()),
            Err(Errno::NOTSUP) | Err(Errno::PERM) => {
                self.stats.skipped += 1;
                Ok(())
            }
            Err(e) => Err(io_at(format!("{label} (xattr {OVERRIDE_STAT})"))(e.into())),
        }
    }

    /// Metadata of a symlink or device node, by name in `dir`.
    fn set_meta_at(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        meta: &Meta,
        label: &str,
        symlink: bool,
    ) -> Result<()> {
        if self.owners {
            let set = rustix::fs::chownat(
                dir,
                name,
                Some(meta.uid),
                Some(meta.gid),
                AtFlags::SYMLINK_NOFOLLOW,
            );
            match set {
                // An id the user namespace does not map (a symlink keeps no xattr to record
                // it in): the namespace's root keeps it.
                Ok(()) | Err(Errno::INVAL) if !self.privileged => {}
                Ok(()) => {}
                Err(e) => return Err(io_at(label)(e.into())),
            }
        }
        if !symlink {
            rustix::fs::chmodat(dir, name, meta.mode, AtFlags::empty())
                .map_err(|e| io_at(label)(e.into()))?;
        }
        rustix::fs::utimensat(dir, name, &meta.times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_at(label)(e.into()))
    }

    /// Directory mtimes, deepest first, once nothing more is added to them.
    fn finish_dirs(&mut self) -> Result<()> {
        let dirs = std::mem::take(&mut self.dirs);
        for (path, times) in dirs.iter().rev() {
            let (fd, name) = match path.split_last() {
                Some((name, parent)) => match self.resolve(parent) {
                    Ok(fd) => (fd, name.as_os_str()),
                    Err(_) => continue,
                },
                None => match self.resolve(&[]) {
                    Ok(fd) => (fd, OsStr::new(".")),
                    Err(_) => continue,
                },
            };
            match rustix::fs::utimensat(&fd, name, times, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(io_at(path.iter().collect::<PathBuf>().display())(e.into())),
            }
        }
        Ok(())
    }
}

/// Push a symlink's target onto the components still to resolve (`/` restarts at the root).
fn follow(
    target: &Path,
    resolved: &mut Vec<OsString>,
    todo: &mut std::collections::VecDeque<OsString>,
) {
    let mut front = Vec::new();
    for c in target.components() {
        match c {
            Component::RootDir => resolved.clear(),
            Component::ParentDir => front.push(OsString::from("..")),
            Component::Normal(n) => front.push(n.to_owned()),
            Component::CurDir | Component::Prefix(_) => {}
        }
    }
    for c in front.into_iter().rev() {
        todo.push_front(c);
    }
}

/// The extended attribute names of a file (not following a symlink), but overlayfs' own.
fn xattr_names(path: &Path) -> Vec<OsString> {
    let mut buf = vec![0u8; 64 * 1024];
    let Ok(n) = rustix::fs::llistxattr(path, &mut buf) else {
        return Vec::new();
    };
    buf[..n]
        .split(|&b| b == 0)
        .filter(|k| !k.is_empty() && !is_overlay_xattr(k))
        .map(|k| OsStr::from_bytes(k).to_owned())
        .collect()
}

/// Whether `name` is one of overlayfs' own attributes: `trusted.overlay.*`, or
/// `user.overlay.*`, which it reads instead when mounted with `userxattr` (in a user namespace).
fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// The opaque-directory marker overlayfs reads: `trusted.overlay.opaque` as root,
/// `user.overlay.opaque` for snapshots an unprivileged user prepares (mounted with `userxattr`
/// inside a user namespace, where `trusted.*` cannot be set).
pub fn opaque_xattr(privileged: bool) -> &'static str {
    if privileged {
        "trusted.overlay.opaque"
    } else {
        "user.overlay.opaque"
    }
}

/// Where an unprivileged unpack keeps the owner a file should have (containers/storage's name).
pub const OVERRIDE_STAT: &str = "user.containers.override_stat";

/// An entry's metadata, read from its header and PAX records.
struct Meta {
    uid: rustix::fs::Uid,
    gid: rustix::fs::Gid,
    mode: Perm,
    times: Timestamps,
    major: u32,
    minor: u32,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

impl Meta {
    fn of<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Meta> {
        let label = || String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let bad = |what: &str, e: std::io::Error| {
            Error::Read(format!("entry {:?}: {what}: {e}", label()))
        };
        let h = entry.header();
        let uid = h.uid().map_err(|e| bad("uid", e))?;
        let gid = h.gid().map_err(|e| bad("gid", e))?;
        let mode = h.mode().map_err(|e| bad("mode", e))? & 0o7777;
        let mut secs = h.mtime().map_err(|e| bad("mtime", e))? as i64;
        let mut nanos = 0i64;
        let major = h.device_major().ok().flatten().unwrap_or(0);
        let minor = h.device_minor().ok().flatten().unwrap_or(0);
        let mut xattrs = Vec::new();
        let mut uid = uid;
        let mut gid = gid;
        if let Ok(Some(pax)) = entry.pax_extensions() {
            for ext in pax.flatten() {
                let key = ext.key_bytes();
                let value = ext.value_bytes();
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    // overlayfs' own attributes are ours to set, never a layer's.
                    if !is_overlay_xattr(name) {
                        xattrs.push((OsStr::from_bytes(name).to_owned(), value.to_vec()));
                    }
                } else if key == b"mtime" {
                    if let Some((s, n)) = parse_pax_time(value) {
                        secs = s;
                        nanos = n;
                    }
                } else if key == b"uid" {
                    if let Some(v) = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()) {
                        uid = v;
                    }
                } else if key == b"gid"
                    && let Some(v) = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok())
                {
                    gid = v;
                }
            }
        }
        let ts = Timespec {
            tv_sec: secs,
            tv_nsec: nanos as _,
        };
        Ok(Meta {
            uid: rustix::fs::Uid::from_raw(owner_id(uid)),
            gid: rustix::fs::Gid::from_raw(owner_id(gid)),
            mode: Perm::from_raw_mode(mode),
            times: Timestamps {
                last_access: ts,
                last_modification: ts,
            },
            major,
            minor,
            xattrs,
        })
    }
}

/// A tar's uid or gid as one the kernel takes: an id beyond 32 bits, and 4294967295 itself
/// (`(uid_t)-1`, which to `chown` means "leave unchanged", and which rustix's `Uid::from_raw`
/// refuses), becomes 4294967294.
fn owner_id(id: u64) -> u32 {
    match u32::try_from(id) {
        Ok(id) if id != u32::MAX => id,
        _ => u32::MAX - 1,
    }
}

/// `1700000000.123456789` → (seconds, nanoseconds).
fn parse_pax_time(value: &[u8]) -> Option<(i64, i64)> {
    let text = std::str::from_utf8(value).ok()?;
    let (s, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs = s.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let nanos = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse().ok()?
    };
    Some((secs, nanos))
}

/// A tar name as components inside the target: `.` and a leading `/` dropped, `..` applied;
/// a `..` that would climb above the target is refused.
fn clean(raw: &Path, label: &str) -> Result<Vec<OsString>> {
    let mut out: Vec<OsString> = Vec::new();
    for c in raw.components() {
        match c {
            Component::Prefix(_) | Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                if out.pop().is_none() {
                    return Err(Error::Escape {
                        entry: label.to_string(),
                    });
                }
            }
            Component::Normal(n) => out.push(n.to_owned()),
        }
    }
    Ok(out)
}

fn join(path: &[OsString]) -> PathBuf {
    path.iter().collect()
}

/// The names in a directory, without `.` and `..`.
fn list(dir: &OwnedFd) -> rustix::io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_owned());
        }
    }
    Ok(names)
}

/// Remove `name` in `dir`, a whole tree if it is a directory, never following a symlink.
fn remove_any(dir: &OwnedFd, name: &OsStr) -> rustix::io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) => Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {
            let sub = rustix::fs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Perm::empty(),
            )?;
            for child in list(&sub)? {
                remove_any(&sub, &child)?;
            }
            rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned_or_refused() {
        let c = |s: &str| clean(Path::new(s), s).map(|v| join(&v));
        assert_eq!(c("./a/b").unwrap(), PathBuf::from("a/b"));
        assert_eq!(c("/etc/x").unwrap(), PathBuf::from("etc/x"));
        assert_eq!(c("a/../b").unwrap(), PathBuf::from("b"));
        assert_eq!(c("./").unwrap(), PathBuf::from(""));
        for bad in ["../x", "a/../../x", "/../x"] {
            assert!(matches!(c(bad), Err(Error::Escape { .. })), "{bad}");
        }
    }

    #[test]
    fn owner_minus_one_is_not_an_owner() {
        assert_eq!(owner_id(0), 0);
        assert_eq!(owner_id(4_294_967_294), 4_294_967_294);
        assert_eq!(owner_id(4_294_967_295), 4_294_967_294);
        assert_eq!(owner_id(1 << 40), 4_294_967_294);
    }

    /// Found by fuzz/fuzz_targets/apply_flatten.rs: a PAX `uid=4294967295` reached
    /// `Uid::from_raw(u32::MAX)`, which panics in debug builds (and in release asked `fchown`
    /// to leave the owner unchanged). The crashing input, a 533-byte tar, as its non-zero runs.
    #[test]
    fn pax_uid_minus_one_does_not_panic() {
        const RUNS: [(usize, &[u8]); 11] = [
            (0, b"././@PaxHeader"),
            (100, b"0000000"),
            (108, b"0000000"),
            (116, b"0000000"),
            (124, b"00002000050"),
            (136, b"00000000000"),
            (148, b"010212"),
            (155, b" x"),
            (344, b"ustar"),
            (350, b"00"),
            (512, b"m\n18 uid=4294967295\n"),
        ];
        let mut tar = vec![0u8; 533];
        for (at, bytes) in RUNS {
            tar[at..at + bytes.len()].copy_from_slice(bytes);
        }
        let dir = std::env::temp_dir().join(format!("img-unpack-uid-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for mode in [Mode::Flatten, Mode::Overlay] {
            // Applied or refused, but no panic.
            let _ = Applier::new(&dir, mode).unwrap().apply(&tar[..]);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pax_times_parse() {
        assert_eq!(
            parse_pax_time(b"1700000000.5"),
            Some((1_700_000_000, 500_000_000))
        );
        assert_eq!(parse_pax_time(b"12"), Some((12, 0)));
        assert_eq!(parse_pax_time(b"x"), None);
    }
}
