//! The layer applier run on arbitrary input, with the oracle "nothing outside the target is
//! created, changed or followed".
//!
//! # Input
//!
//! `FLAGS LAYER [SEP LAYER]...`: up to four layers separated by [`LAYER_SEPARATOR`]. The low
//! two bits of `FLAGS` pick how each layer reaches the applier: `0`/`3` as is (its magic bytes
//! decide between gzip, zstd and a plain tar, as the real layer stream does, with the same
//! decoders), `1` gzip-compressed and `2` zstd-compressed here first (so that mutations of the
//! tar itself still go through the decompressors). `Mode::Flatten` applies the layers in order
//! to one target and stops at the first error, as `unpack_image` does; `Mode::Overlay` applies
//! each to a target of its own, as snapshots are prepared.
//!
//! # Sandbox
//!
//! When the process may (root, a private mount namespace), the first input sets up: every
//! mount read-only (`mount_setattr(AT_RECURSIVE)`) except the directories libFuzzer writes
//! (corpus, artifacts: bind mounts made writable again), and a fresh tmpfs over `/tmp` which
//! holds the sandbox:
//!
//! ```text
//! /tmp/canary-outside
//! /tmp/sandbox/{canary, sibling/{canary, sub/}, target-0..3/}
//! ```
//!
//! An escape can then touch nothing of the host: a write anywhere else fails with `EROFS`, a
//! hardlink to a host file with `EXDEV` (the tmpfs is a filesystem of its own), and either
//! error from the applier is a finding. Inside the tmpfs, everything but the targets' contents
//! is compared with a snapshot taken at setup (type, mode, owner, size, mtime, inode, link
//! count, xattrs, content, symlink target) after every input; a difference is a finding.
//! Without the privileges for this, the sandbox is a plain temporary directory (a warning says
//! so) and only the snapshot comparison guards it.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use img_unpack::{Compression, Error, Mode};

/// Separates the layers of one input.
pub const LAYER_SEPARATOR: &[u8] = b"\0IMG-FUZZ-LAYER\0";
/// Layers per input at most (later separators are part of the last layer).
pub const MAX_LAYERS: usize = 4;
/// Decompressed bytes per layer at most: a compression bomb is slow, not a bug.
const MAX_UNCOMPRESSED: u64 = 32 << 20;

struct Sandbox {
    root: PathBuf,
    targets: Vec<PathBuf>,
    before: Snapshot,
}

/// Apply `data` (see the module docs) in the sandbox and check the oracle.
pub fn run(data: &[u8], mode: Mode) {
    let sandbox = sandbox();
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    for (i, layer) in split_layers(rest).into_iter().enumerate() {
        let target = match mode {
            Mode::Flatten => &sandbox.targets[0],
            Mode::Overlay => &sandbox.targets[i],
        };
        let blob = match flags & 3 {
            1 => gzip(layer),
            2 => zstd::bulk::compress(layer, 1).expect("zstd compresses"),
            _ => layer.to_vec(),
        };
        if let Err(e) = apply_blob(&blob, target, mode) {
            check_error(&e);
            if mode == Mode::Flatten {
                break;
            }
        }
    }
    let after = Snapshot::take(&sandbox.root, &sandbox.targets);
    if let Some(diff) = sandbox.before.diff(&after) {
        panic!("applying the layer changed the sandbox outside its target: {diff}");
    }
    for target in &sandbox.targets {
        reset(target);
    }
}

/// `rest` cut at the separators, at most [`MAX_LAYERS`] pieces.
pub fn split_layers(mut rest: &[u8]) -> Vec<&[u8]> {
    let mut layers = Vec::new();
    while layers.len() + 1 < MAX_LAYERS {
        match find(rest, LAYER_SEPARATOR) {
            Some(at) => {
                layers.push(&rest[..at]);
                rest = &rest[at + LAYER_SEPARATOR.len()..];
            }
            None => break,
        }
    }
    layers.push(rest);
    layers
}

/// Byte by byte: a slice comparison is a `bcmp` that libFuzzer intercepts, slowly, at every
/// position.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let last = haystack.len().checked_sub(needle.len())?;
    (0..=last).find(|&i| {
        haystack[i..i + needle.len()]
            .iter()
            .zip(needle)
            .all(|(a, b)| a == b)
    })
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).expect("gzip to memory");
    enc.finish().expect("gzip to memory")
}

/// A layer blob as the real stream reads it: compression told by magic bytes, same decoders.
fn apply_blob(blob: &[u8], target: &Path, mode: Mode) -> img_unpack::Result<img_unpack::Stats> {
    match Compression::sniff(blob) {
        Compression::None => img_unpack::apply_tar(blob, target, mode),
        Compression::Gzip => img_unpack::apply_tar(
            flate2::bufread::MultiGzDecoder::new(blob).take(MAX_UNCOMPRESSED),
            target,
            mode,
        ),
        Compression::Zstd => match zstd::stream::read::Decoder::with_buffer(blob) {
            Ok(d) => img_unpack::apply_tar(d.take(MAX_UNCOMPRESSED), target, mode),
            Err(_) => Ok(Default::default()),
        },
    }
}

/// `EROFS` or `EXDEV` from the applier means it reached outside the sandbox's tmpfs.
fn check_error(e: &Error) {
    match e {
        Error::Io { path, cause }
            if matches!(cause.raw_os_error(), Some(libc::EROFS) | Some(libc::EXDEV)) =>
        {
            panic!("the applier reached outside its target: {path}: {cause}");
        }
        Error::Layer { cause, .. } => check_error(cause),
        _ => {}
    }
}

fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| {
        let root = match protect() {
            Ok(root) => root,
            Err(why) => {
                eprintln!(
                    "img-fuzz: WARNING: no read-only mount namespace ({why}); the sandbox is a \
                     plain directory and an escape could reach the host"
                );
                let root = std::env::temp_dir().join(format!("img-fuzz-{}", std::process::id()));
                let _ = std::fs::remove_dir_all(&root);
                std::fs::create_dir_all(&root).expect("cannot create the sandbox");
                root
            }
        };
        let write = |p: &Path, bytes: &[u8], mode: u32| {
            std::fs::write(p, bytes).expect("cannot write a canary");
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
                .expect("cannot chmod a canary");
        };
        let mkdir = |p: &Path| {
            std::fs::create_dir(p).expect("cannot create a sandbox directory");
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
                .expect("cannot chmod a sandbox directory");
        };
        write(
            &root.join("canary-outside"),
            b"outside the sandbox\n",
            0o600,
        );
        let sandbox = root.join("sandbox");
        mkdir(&sandbox);
        write(&sandbox.join("canary"), b"beside the target\n", 0o644);
        mkdir(&sandbox.join("sibling"));
        write(
            &sandbox.join("sibling/canary"),
            b"in a sibling directory\n",
            0o4755,
        );
        mkdir(&sandbox.join("sibling/sub"));
        let targets: Vec<PathBuf> = (0..MAX_LAYERS)
            .map(|i| sandbox.join(format!("target-{i}")))
            .collect();
        for t in &targets {
            mkdir(t);
        }
        let before = Snapshot::take(&root, &targets);
        Sandbox {
            root,
            targets,
            before,
        }
    })
}

/// Empty a target and give it back a fresh directory's metadata.
fn reset(target: &Path) {
    for entry in std::fs::read_dir(target).expect("cannot list a target") {
        let entry = entry.expect("cannot list a target");
        let path = entry.path();
        let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.unwrap_or_else(|e| panic!("cannot empty {}: {e}", path.display()));
    }
    let c = cstr(target);
    for name in xattrs(&c) {
        let name = CString::new(name).expect("xattr names have no NUL");
        // SAFETY: both are NUL-terminated strings.
        unsafe { libc::lremovexattr(c.as_ptr(), name.as_ptr()) };
    }
    std::os::unix::fs::lchown(target, Some(0), Some(0)).ok();
    std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o755))
        .expect("cannot chmod a target");
}

/// Make every mount read-only but libFuzzer's output directories, in a mount namespace of
/// our own, and mount the sandbox's tmpfs on `/tmp`. Returns the sandbox root.
fn protect() -> Result<PathBuf, String> {
    let outputs = libfuzzer_outputs();
    if let Some(p) = outputs.iter().find(|p| p.starts_with("/tmp")) {
        return Err(format!(
            "{} is under /tmp, where the sandbox is mounted",
            p.display()
        ));
    }
    for p in &outputs {
        std::fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    let os = |what: &str| format!("{what}: {}", std::io::Error::last_os_error());
    // SAFETY: plain system calls on NUL-terminated strings and a mount_attr we own.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(os("unshare(CLONE_NEWNS)"));
        }
        if libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return Err(os("making / private"));
        }
        for p in &outputs {
            let c = cstr(p);
            if libc::mount(
                c.as_ptr(),
                c.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ) != 0
            {
                return Err(os(&format!("bind-mounting {}", p.display())));
            }
        }
        set_readonly(c"/", true, true).map_err(|e| format!("mount_setattr /: {e}"))?;
        for p in &outputs {
            set_readonly(&cstr(p), false, false)
                .map_err(|e| format!("mount_setattr {}: {e}", p.display()))?;
        }
        if libc::mount(
            c"img-fuzz".as_ptr(),
            c"/tmp".as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            c"size=128m,mode=0755".as_ptr().cast(),
        ) != 0
        {
            return Err(os("mounting a tmpfs on /tmp"));
        }
    }
    // The protection itself is checked: a host path must refuse a write.
    let probe = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(".img-fuzz-probe")));
    if let Some(probe) = probe
        && std::fs::write(&probe, b"").is_ok()
    {
        let _ = std::fs::remove_file(&probe);
        return Err(format!("{} is still writable", probe.display()));
    }
    Ok(PathBuf::from("/tmp"))
}

/// `mount_setattr(path, MOUNT_ATTR_RDONLY)`, set or cleared, recursively or not.
///
/// # Safety
/// A system call; `path` is NUL-terminated.
unsafe fn set_readonly(path: &std::ffi::CStr, on: bool, recursive: bool) -> std::io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_RDONLY: u64 = 1;
    let attr = MountAttr {
        attr_set: if on { MOUNT_ATTR_RDONLY } else { 0 },
        attr_clr: if on { 0 } else { MOUNT_ATTR_RDONLY },
        propagation: 0,
        userns_fd: 0,
    };
    let flags = if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: see the function's contract; `attr` outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The directories libFuzzer may write: corpus directories and the artifact prefix's (the
/// working directory without one).
fn libfuzzer_outputs() -> Vec<PathBuf> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let mut out = Vec::new();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args
        .iter()
        .any(|a| a.starts_with("-artifact_prefix=") || a.starts_with("-exact_artifact_path="))
    {
        // Crash files go to the working directory then.
        out.push(cwd.clone());
    }
    for arg in args {
        let dir = if let Some(p) = arg.strip_prefix("-artifact_prefix=") {
            if p.ends_with('/') {
                PathBuf::from(p)
            } else {
                Path::new(p)
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default()
            }
        } else if let Some(p) = arg
            .strip_prefix("-exact_artifact_path=")
            .or_else(|| arg.strip_prefix("-features_dir="))
        {
            Path::new(p)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
        } else if !arg.starts_with('-') && Path::new(&arg).is_dir() {
            PathBuf::from(&arg)
        } else {
            continue;
        };
        let dir = if dir.as_os_str().is_empty() {
            cwd.clone()
        } else {
            cwd.join(dir)
        };
        out.push(dir);
    }
    out.sort();
    out.dedup();
    out
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("paths have no NUL")
}

fn xattrs(path: &CString) -> Vec<Vec<u8>> {
    // SAFETY: a size query (no buffer).
    let size = unsafe { libc::llistxattr(path.as_ptr(), std::ptr::null_mut(), 0) };
    if size <= 0 {
        return Vec::new();
    }
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: `buf` is as long as said.
    let n = unsafe { libc::llistxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n <= 0 {
        return Vec::new();
    }
    buf.truncate(n as usize);
    buf.split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn xattr_value(path: &CString, name: &[u8]) -> Vec<u8> {
    let name = CString::new(name).expect("xattr names have no NUL");
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: `buf` is as long as said; both strings are NUL-terminated.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    buf.truncate(n.max(0) as usize);
    buf
}

/// What the sandbox holds, but the targets' contents.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot(BTreeMap<PathBuf, Node>);

#[derive(Debug, PartialEq, Eq)]
struct Node {
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    ino: u64,
    nlink: u64,
    rdev: u64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    content: Vec<u8>,
    link: Option<PathBuf>,
}

impl Snapshot {
    fn take(root: &Path, targets: &[PathBuf]) -> Snapshot {
        let mut nodes = BTreeMap::new();
        walk(root, targets, &mut nodes);
        Snapshot(nodes)
    }

    fn diff(&self, after: &Snapshot) -> Option<String> {
        for (path, node) in &self.0 {
            match after.0.get(path) {
                None => return Some(format!("{} disappeared", path.display())),
                Some(n) if n != node => {
                    return Some(format!(
                        "{} changed:\n  before {node:?}\n  after  {n:?}",
                        path.display()
                    ));
                }
                Some(_) => {}
            }
        }
        after
            .0
            .iter()
            .find(|(p, _)| !self.0.contains_key(*p))
            .map(|(p, n)| format!("{} appeared: {n:?}", p.display()))
    }
}

fn walk(path: &Path, targets: &[PathBuf], nodes: &mut BTreeMap<PathBuf, Node>) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    let is_target = targets.iter().any(|t| t == path);
    if is_target {
        // Its metadata and contents are the applier's to change; not what it is.
        nodes.insert(
            path.to_path_buf(),
            Node {
                mode: meta.mode() & libc::S_IFMT,
                uid: 0,
                gid: 0,
                size: 0,
                mtime: (0, 0),
                ino: meta.ino(),
                nlink: 0,
                rdev: 0,
                xattrs: Vec::new(),
                content: Vec::new(),
                link: None,
            },
        );
        return;
    }
    let c = cstr(path);
    let xattrs = xattrs(&c)
        .into_iter()
        .map(|n| {
            let v = xattr_value(&c, &n);
            (n, v)
        })
        .collect();
    let content = if meta.file_type().is_file() && meta.len() <= 1 << 20 {
        std::fs::read(path).unwrap_or_default()
    } else {
        Vec::new()
    };
    let link = if meta.file_type().is_symlink() {
        std::fs::read_link(path).ok()
    } else {
        None
    };
    nodes.insert(
        path.to_path_buf(),
        Node {
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ino: meta.ino(),
            nlink: meta.nlink(),
            rdev: meta.rdev(),
            xattrs,
            content,
            link,
        },
    );
    if meta.file_type().is_dir()
        && let Ok(entries) = std::fs::read_dir(path)
    {
        for entry in entries.flatten() {
            walk(&entry.path(), targets, nodes);
        }
    }
}
