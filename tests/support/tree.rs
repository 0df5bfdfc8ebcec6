//! A snapshot of a directory tree for comparing two unpacked filesystems, observed without
//! img: `lstat` (never following a symlink), `readlink`, `llistxattr`/`lgetxattr`, and
//! `sha256sum` for file contents.
//!
//! Modification times are left out on purpose: umoci and img may differ on directory mtimes by
//! design (a directory's mtime changes whenever an entry is added or removed below it, and the
//! two unpackers restore them at different moments; a directory implied by a deeper entry
//! gets the unpack time), and an overlay mount reports the upper layer's times where it copied
//! up. Everything else that makes up a rootfs is compared.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fmt;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The kind of a directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Char,
    Block,
    Fifo,
    Socket,
}

/// What a tree records about one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    /// Permission bits, setuid/setgid/sticky included (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Files only.
    pub size: Option<u64>,
    /// Files only: lower-case hex sha256 of the content.
    pub sha256: Option<String>,
    /// Symlinks only.
    pub target: Option<PathBuf>,
    /// Character and block devices only: (major, minor).
    pub device: Option<(u32, u32)>,
    /// Every extended attribute (name, value), as `llistxattr` lists them for this process.
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

/// A directory tree: every path below (and including) the root, by relative path (`.` for the
/// root itself), and the hardlink groups among them.
#[derive(Debug, Clone)]
pub struct Tree {
    /// Where it was read from, for messages.
    pub root: PathBuf,
    pub entries: BTreeMap<String, Entry>,
    /// Non-directory paths sharing one inode, each group sorted, groups sorted.
    pub hardlinks: BTreeSet<Vec<String>>,
}

impl Tree {
    /// Walk `root` (not following symlinks) and record everything.
    pub fn read(root: &Path) -> Tree {
        let mut entries = BTreeMap::new();
        let mut inodes: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
        let mut files: Vec<(String, PathBuf)> = Vec::new();
        let mut todo = vec![(String::from("."), root.to_path_buf())];
        while let Some((rel, path)) = todo.pop() {
            let meta = fs::symlink_metadata(&path)
                .unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
            let ft = meta.file_type();
            let kind = if ft.is_dir() {
                Kind::Dir
            } else if ft.is_symlink() {
                Kind::Symlink
            } else if ft.is_file() {
                Kind::File
            } else if ft.is_char_device() {
                Kind::Char
            } else if ft.is_block_device() {
                Kind::Block
            } else if ft.is_fifo() {
                Kind::Fifo
            } else {
                Kind::Socket
            };
            let entry = Entry {
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                size: (kind == Kind::File).then_some(meta.len()),
                sha256: None,
                target: (kind == Kind::Symlink).then(|| {
                    fs::read_link(&path)
                        .unwrap_or_else(|e| panic!("readlink {}: {e}", path.display()))
                }),
                device: matches!(kind, Kind::Char | Kind::Block).then(|| split_dev(meta.rdev())),
                xattrs: xattrs(&path),
            };
            if kind != Kind::Dir && meta.nlink() > 1 {
                inodes
                    .entry((meta.dev(), meta.ino()))
                    .or_default()
                    .push(rel.clone());
            }
            if kind == Kind::File {
                files.push((rel.clone(), path.clone()));
            }
            if kind == Kind::Dir {
                let children = fs::read_dir(&path)
                    .unwrap_or_else(|e| panic!("readdir {}: {e}", path.display()));
                for child in children {
                    let child = child.unwrap_or_else(|e| panic!("readdir {}: {e}", path.display()));
                    let name = child.file_name().to_string_lossy().into_owned();
                    let child_rel = if rel == "." {
                        name
                    } else {
                        format!("{rel}/{name}")
                    };
                    todo.push((child_rel, child.path()));
                }
            }
            entries.insert(rel, entry);
        }
        for ((rel, _), hash) in files.iter().zip(sha256_files(&files)) {
            entries.get_mut(rel).expect("walked").sha256 = Some(hash);
        }
        let hardlinks = inodes
            .into_values()
            .filter(|g| g.len() > 1)
            .map(|mut g| {
                g.sort();
                g
            })
            .collect();
        Tree {
            root: root.to_path_buf(),
            entries,
            hardlinks,
        }
    }

    /// The entry at `rel` (a path relative to the root, `.` for the root).
    pub fn get(&self, rel: &str) -> Option<&Entry> {
        self.entries.get(rel)
    }

    /// This tree without the root directory's own metadata (its children are kept).
    pub fn without_root(mut self) -> Tree {
        self.entries.remove(".");
        self
    }
}

/// Every difference between `a` and `b`, one line each (empty when they are equal apart from
/// mtimes).
pub fn diff(a: &Tree, b: &Tree) -> Vec<String> {
    let (la, lb) = (a.root.display(), b.root.display());
    let mut out = Vec::new();
    for (path, ea) in &a.entries {
        let Some(eb) = b.entries.get(path) else {
            out.push(format!("{path}: only in {la} ({ea})"));
            continue;
        };
        if ea == eb {
            continue;
        }
        let mut fields = Vec::new();
        if ea.kind != eb.kind {
            fields.push(format!("type {:?} vs {:?}", ea.kind, eb.kind));
        }
        if ea.mode != eb.mode {
            fields.push(format!("mode {:04o} vs {:04o}", ea.mode, eb.mode));
        }
        if (ea.uid, ea.gid) != (eb.uid, eb.gid) {
            fields.push(format!(
                "owner {}:{} vs {}:{}",
                ea.uid, ea.gid, eb.uid, eb.gid
            ));
        }
        if ea.size != eb.size {
            fields.push(format!("size {:?} vs {:?}", ea.size, eb.size));
        }
        if ea.sha256 != eb.sha256 {
            fields.push(format!("sha256 {:?} vs {:?}", ea.sha256, eb.sha256));
        }
        if ea.target != eb.target {
            fields.push(format!("symlink target {:?} vs {:?}", ea.target, eb.target));
        }
        if ea.device != eb.device {
            fields.push(format!("device {:?} vs {:?}", ea.device, eb.device));
        }
        if ea.xattrs != eb.xattrs {
            fields.push(format!(
                "xattrs {} vs {}",
                show_xattrs(&ea.xattrs),
                show_xattrs(&eb.xattrs)
            ));
        }
        out.push(format!("{path}: {} ({la} vs {lb})", fields.join(", ")));
    }
    for (path, eb) in &b.entries {
        if !a.entries.contains_key(path) {
            out.push(format!("{path}: only in {lb} ({eb})"));
        }
    }
    for group in a.hardlinks.difference(&b.hardlinks) {
        out.push(format!("hardlinks {group:?}: only in {la}"));
    }
    for group in b.hardlinks.difference(&a.hardlinks) {
        out.push(format!("hardlinks {group:?}: only in {lb}"));
    }
    out
}

/// Panic with every difference unless `a` and `b` are equal (mtimes aside).
pub fn assert_same(a: &Tree, b: &Tree, what: &str) {
    let d = diff(a, b);
    assert!(
        d.is_empty(),
        "{what}: {} difference(s) between {} and {}:\n  {}",
        d.len(),
        a.root.display(),
        b.root.display(),
        d.join("\n  ")
    );
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} {:04o} {}:{}",
            self.kind, self.mode, self.uid, self.gid
        )?;
        if let Some(size) = self.size {
            write!(f, " {size} bytes")?;
        }
        if let Some(t) = &self.target {
            write!(f, " -> {}", t.display())?;
        }
        if let Some((major, minor)) = self.device {
            write!(f, " dev {major}:{minor}")?;
        }
        if !self.xattrs.is_empty() {
            write!(f, " xattrs {}", show_xattrs(&self.xattrs))?;
        }
        Ok(())
    }
}

fn show_xattrs(x: &BTreeMap<String, Vec<u8>>) -> String {
    let parts: Vec<String> = x
        .iter()
        .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v).escape_debug()))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// Linux's `major()` and `minor()` of a `dev_t`.
fn split_dev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as u32, minor as u32)
}

/// The extended attributes of `path` itself (a symlink's own, not its target's).
fn xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let c = CString::new(path.as_os_str().as_bytes()).expect("no NUL in a path");
    let mut out = BTreeMap::new();
    // SAFETY: a NUL-terminated path, a null buffer of size 0 asks for the size needed.
    let len = unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    if len <= 0 {
        return out;
    }
    let mut names = vec![0u8; len as usize];
    // SAFETY: the buffer is `names.len()` bytes long.
    let len = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    assert!(len >= 0, "llistxattr {}", path.display());
    names.truncate(len as usize);
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname = CString::new(name).unwrap();
        // SAFETY: as above, asking for the value's size.
        let vlen = unsafe { libc::lgetxattr(c.as_ptr(), cname.as_ptr(), std::ptr::null_mut(), 0) };
        let mut value = vec![0u8; vlen.max(0) as usize];
        if vlen > 0 {
            // SAFETY: the buffer is `value.len()` bytes long.
            let n = unsafe {
                libc::lgetxattr(
                    c.as_ptr(),
                    cname.as_ptr(),
                    value.as_mut_ptr().cast(),
                    value.len(),
                )
            };
            assert!(n >= 0, "lgetxattr {} {:?}", path.display(), cname);
            value.truncate(n as usize);
        }
        out.insert(String::from_utf8_lossy(name).into_owned(), value);
    }
    out
}

/// The sha256 of each file, in order, with `sha256sum` (a few hundred files per run).
fn sha256_files(files: &[(String, PathBuf)]) -> Vec<String> {
    let mut out = Vec::with_capacity(files.len());
    for chunk in files.chunks(500) {
        let output = std::process::Command::new("sha256sum")
            .arg("--zero")
            .arg("--")
            .args(chunk.iter().map(|(_, p)| p))
            .stdin(std::process::Stdio::null())
            .output()
            .expect("cannot run sha256sum");
        assert!(
            output.status.success(),
            "sha256sum: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let records: Vec<&[u8]> = output
            .stdout
            .split(|&b| b == 0)
            .filter(|r| !r.is_empty())
            .collect();
        assert_eq!(records.len(), chunk.len(), "sha256sum output");
        for r in records {
            out.push(String::from_utf8_lossy(&r[..64]).into_owned());
        }
    }
    out
}
