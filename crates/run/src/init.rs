//! The container's first process, run as `img __init CONFIG` inside fresh namespaces: it
//! mounts the rootfs and the spec's mounts, pivots into the rootfs, waits for the parent to put
//! it in its cgroup, drops privileges and execs the command, becoming PID 1.
//!
//! It reports a failure before exec as `CODE MESSAGE` on fd 4 (docker's codes: 125 for our
//! errors, 126 for a command that cannot run, 127 for one not found); a successful exec closes
//! fd 4 (close-on-exec) without a word. fd 3 is where the parent says "go".

use std::ffi::{CString, OsStr};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::error::{errno, sys};
use crate::{Error, Result};

/// fd on which the parent says "go" (one byte).
pub const SYNC_FD: i32 = 3;
/// fd on which init reports a failure.
pub const ERROR_FD: i32 = 4;
/// fd of the console socket, when the process has a terminal.
pub const CONSOLE_FD: i32 = 5;

/// What init needs beyond the spec.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct InitConfig {
    /// The runtime spec (`config.json`).
    pub spec: PathBuf,
    /// Where the root filesystem comes from.
    pub rootfs: Rootfs,
}

/// A container's root filesystem.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Rootfs {
    /// Read-only layers (base first) under a writable directory, mounted by init in its own
    /// mount namespace, so the mount disappears with the container.
    Overlay {
        /// The snapshot directories, base first.
        lowers: Vec<PathBuf>,
        /// The writable layer.
        upper: PathBuf,
        /// overlayfs' work directory.
        work: PathBuf,
        /// Where the merged view is mounted.
        merged: PathBuf,
    },
    /// An existing directory (a bundle's rootfs).
    Dir(PathBuf),
}

/// Run init: never returns.
pub fn main(config: &Path) -> ! {
    let code = match setup(config) {
        Ok(never) => match never {},
        Err(e) => {
            let code = match &e {
                Error::Exec { code, .. } => *code,
                _ => 125,
            };
            // SAFETY: fd 4 was put there by the parent for us; we own it from here on.
            let mut out = unsafe { std::fs::File::from_raw_fd(ERROR_FD) };
            let _ = write!(out, "{code} {e}");
            code
        }
    };
    std::process::exit(code)
}

fn setup(config: &Path) -> Result<std::convert::Infallible> {
    let text = std::fs::read(config).map_err(sys(config.display()))?;
    let cfg: InitConfig = serde_json::from_slice(&text)
        .map_err(|e| Error::Config(format!("{}: {e}", config.display())))?;
    let spec =
        Spec::load(&cfg.spec).map_err(|e| Error::Config(format!("{}: {e}", cfg.spec.display())))?;
    let linux = spec.linux().clone().unwrap_or_default();
    let private_net = linux
        .namespaces()
        .iter()
        .flatten()
        .any(|n| n.typ() == LinuxNamespaceType::Network && n.path().is_none());

    // Our mounts stay in our namespace.
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )?;
    let root = match &cfg.rootfs {
        Rootfs::Overlay {
            lowers,
            upper,
            work,
            merged,
        } => {
            img_unpack::overlay::mount_overlay(lowers, upper, work, merged)
                .map_err(|e| Error::Config(e.to_string()))?;
            merged.clone()
        }
        Rootfs::Dir(dir) => {
            mount(Some(dir), dir, None, libc::MS_BIND | libc::MS_REC, None)?;
            dir.clone()
        }
    };
    let root_fd = rustix::fs::open(
        &root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno(root.display()))?;

    for m in spec.mounts().iter().flatten() {
        let typ = m.typ().clone().unwrap_or_else(|| "bind".into());
        let options = m.options().clone().unwrap_or_default();
        let (mut flags, data) = mount_flags(&options);
        let source = m.source().clone().unwrap_or_else(|| PathBuf::from(&typ));
        let is_bind = flags & libc::MS_BIND != 0 || typ == "bind";
        let file = is_bind && source.is_file();
        let target = ensure_inside(&root_fd, m.destination(), file)?;
        let target_path = PathBuf::from(format!("/proc/self/fd/{}", target.as_raw_fd()));
        if is_bind {
            flags |= libc::MS_BIND;
            let readonly = flags & libc::MS_RDONLY != 0;
            mount(
                Some(&source),
                &target_path,
                None,
                flags & (libc::MS_BIND | libc::MS_REC),
                None,
            )?;
            if readonly {
                // The descriptor still names the directory under the new mount: look again.
                let mounted = ensure_inside(&root_fd, m.destination(), file)?;
                let mounted_path = PathBuf::from(format!("/proc/self/fd/{}", mounted.as_raw_fd()));
                mount(
                    None,
                    &mounted_path,
                    None,
                    libc::MS_BIND
                        | libc::MS_REMOUNT
                        | libc::MS_RDONLY
                        | (flags & (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC)),
                    None,
                )?;
            }
            continue;
        }
        let result = mount(
            Some(&source),
            &target_path,
            Some(&typ),
            flags,
            data.as_deref(),
        );
        if let Err(e) = result {
            if typ == "sysfs" {
                // Without a network namespace of our own the kernel refuses a new sysfs: use
                // the host's, read-only.
                mount(
                    Some(Path::new("/sys")),
                    &target_path,
                    None,
                    libc::MS_BIND | libc::MS_REC,
                    None,
                )?;
                mount(
                    None,
                    &target_path,
                    None,
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                    None,
                )?;
            } else if typ == "mqueue" {
                // Not every kernel offers it; nothing depends on it.
            } else {
                return Err(e);
            }
        }
    }
    make_devices(&root)?;
    for p in linux.masked_paths().iter().flatten() {
        mask(&root_fd, p);
    }
    for p in linux.readonly_paths().iter().flatten() {
        readonly(&root_fd, p);
    }

    rustix::process::chdir(&root).map_err(errno(root.display()))?;
    rustix::process::pivot_root(".", ".").map_err(errno("pivot_root"))?;
    rustix::mount::unmount(".", rustix::mount::UnmountFlags::DETACH)
        .map_err(errno("detaching the old root"))?;
    rustix::process::chdir("/").map_err(errno("/"))?;

    if private_net {
        loopback_up()?;
    }
    if let Some(h) = spec.hostname() {
        rustix::system::sethostname(h.as_bytes()).map_err(errno(format!("sethostname {h}")))?;
    }
    if spec
        .root()
        .as_ref()
        .is_some_and(|r| r.readonly().unwrap_or(false))
    {
        mount(
            None,
            Path::new("/"),
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_REC,
            None,
        )?;
    }

    let process = spec
        .process()
        .clone()
        .ok_or_else(|| Error::Config("the spec has no process".into()))?;
    let user_spec = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(crate::spec::USER_ANNOTATION))
        .cloned();
    let user = match user_spec {
        Some(u) => crate::user::resolve(Path::new("/"), &u)?,
        None => crate::user::User {
            uid: process.user().uid(),
            gid: process.user().gid(),
            groups: process.user().additional_gids().clone().unwrap_or_default(),
            home: "/".into(),
        },
    };
    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    let cwd = process.cwd();
    std::fs::create_dir_all(cwd).map_err(sys(format!("working directory {}", cwd.display())))?;
    rustix::process::chdir(cwd).map_err(errno(format!("working directory {}", cwd.display())))?;
    if process.terminal().unwrap_or(false) {
        // SAFETY: fd 5 is the console socket the parent put there for us.
        let socket = unsafe { OwnedFd::from_raw_fd(CONSOLE_FD) };
        crate::tty::setup_in_container(socket)?;
    }

    // Wait for the parent to put us in our cgroup.
    // SAFETY: fd 3 was put there by the parent for us.
    let mut sync = unsafe { std::fs::File::from_raw_fd(SYNC_FD) };
    let mut go = [0u8; 1];
    if sync.read(&mut go).map_err(sys("waiting for the parent"))? != 1 {
        return Err(Error::Config("the parent went away".into()));
    }
    drop(sync);

    let caps = process.capabilities().clone().unwrap_or_default();
    let bounding = cap_bits(caps.bounding().as_ref());
    for cap in 0..64u64 {
        if bounding & (1 << cap) == 0 {
            // SAFETY: prctl with plain integer arguments.
            let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
            if r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
                break; // past the last capability this kernel knows
            }
        }
    }
    if process.no_new_privileges().unwrap_or(true) {
        rustix::thread::set_no_new_privs(true).map_err(errno("no_new_privs"))?;
    }
    // SAFETY: plain id syscalls in a single-threaded process.
    unsafe {
        let groups: Vec<libc::gid_t> = user.groups.clone();
        if libc::setgroups(groups.len(), groups.as_ptr()) != 0
            || libc::setgid(user.gid) != 0
            || libc::setuid(user.uid) != 0
        {
            return Err(sys(format!("switching to user {}:{}", user.uid, user.gid))(
                std::io::Error::last_os_error(),
            ));
        }
    }
    if user.uid == 0 {
        set_caps(
            cap_bits(caps.effective().as_ref()),
            cap_bits(caps.permitted().as_ref()),
            cap_bits(caps.inheritable().as_ref()),
        )?;
    }
    exec(&process.args().clone().unwrap_or_default(), &env)
}

/// Resolve `dest` inside the root (symlinks as if the root were `/`), creating it (a directory,
/// or an empty file for a file bind) when missing; returns an `O_PATH` descriptor of it.
fn ensure_inside(root: &OwnedFd, dest: &Path, file: bool) -> Result<OwnedFd> {
    let rel = dest.strip_prefix("/").unwrap_or(dest);
    let open = |p: &Path| {
        let p = if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        };
        rustix::fs::openat2(
            root,
            p,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
    };
    if let Ok(fd) = open(rel) {
        return Ok(fd);
    }
    let mut sofar = PathBuf::new();
    let comps: Vec<&OsStr> = rel.iter().collect();
    for (i, c) in comps.iter().enumerate() {
        let parent = open(&sofar).map_err(errno(format!("mount point {}", dest.display())))?;
        sofar.push(c);
        if open(&sofar).is_ok() {
            continue;
        }
        let last = i + 1 == comps.len();
        let r = if last && file {
            rustix::fs::openat(
                &parent,
                *c,
                OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                Mode::from_raw_mode(0o644),
            )
            .map(drop)
        } else {
            rustix::fs::mkdirat(&parent, *c, Mode::from_raw_mode(0o755))
        };
        match r {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(errno(format!("mount point {}", dest.display()))(e)),
        }
    }
    open(rel).map_err(errno(format!("mount point {}", dest.display())))
}

fn mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<()> {
    let c =
        |s: &[u8]| CString::new(s).map_err(|_| Error::Config("a NUL in a mount argument".into()));
    let src = source.map(|s| c(s.as_os_str().as_bytes())).transpose()?;
    let tgt = c(target.as_os_str().as_bytes())?;
    let typ = fstype.map(|t| c(t.as_bytes())).transpose()?;
    let dat = data.map(|d| c(d.as_bytes())).transpose()?;
    // SAFETY: every pointer is a NUL-terminated string alive for the call, or null.
    let r = unsafe {
        libc::mount(
            src.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            tgt.as_ptr(),
            typ.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            dat.as_ref().map_or(std::ptr::null(), |s| s.as_ptr().cast()),
        )
    };
    if r != 0 {
        return Err(sys(format!(
            "mounting {} on {}",
            fstype
                .map(str::to_string)
                .or_else(|| source.map(|s| s.display().to_string()))
                .unwrap_or_default(),
            target.display()
        ))(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Mount options to flags and the rest as filesystem data.
fn mount_flags(options: &[String]) -> (libc::c_ulong, Option<String>) {
    let mut flags = 0;
    let mut data = Vec::new();
    for o in options {
        match o.as_str() {
            "ro" => flags |= libc::MS_RDONLY,
            "rw" => flags &= !libc::MS_RDONLY,
            "nosuid" => flags |= libc::MS_NOSUID,
            "nodev" => flags |= libc::MS_NODEV,
            "noexec" => flags |= libc::MS_NOEXEC,
            "relatime" => flags |= libc::MS_RELATIME,
            "strictatime" => flags |= libc::MS_STRICTATIME,
            "noatime" => flags |= libc::MS_NOATIME,
            "bind" => flags |= libc::MS_BIND,
            "rbind" => flags |= libc::MS_BIND | libc::MS_REC,
            "private" | "rprivate" | "slave" | "rslave" | "shared" | "rshared" => {}
            other => data.push(other.to_string()),
        }
    }
    (flags, (!data.is_empty()).then(|| data.join(",")))
}

/// The devices every container gets (runc's defaults), on the fresh `/dev` tmpfs.
fn make_devices(root: &Path) -> Result<()> {
    let dev = root.join("dev");
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let path = dev.join(name);
        let _ = std::fs::remove_file(&path);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            rustix::fs::FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            rustix::fs::makedev(major, minor),
        )
        .map_err(errno(path.display()))?;
        rustix::fs::chmod(&path, Mode::from_raw_mode(0o666)).map_err(errno(path.display()))?;
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
        ("core", "/proc/kcore"),
    ] {
        let _ = std::os::unix::fs::symlink(target, dev.join(name));
    }
    Ok(())
}

fn mask(root: &OwnedFd, path: &str) {
    let Ok(fd) = rustix::fs::openat2(
        root,
        path.trim_start_matches('/'),
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) else {
        return;
    };
    let target = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    let is_dir = std::fs::metadata(&target).is_ok_and(|m| m.is_dir());
    let _ = if is_dir {
        mount(
            Some(Path::new("tmpfs")),
            &target,
            Some("tmpfs"),
            libc::MS_RDONLY,
            None,
        )
    } else {
        mount(
            Some(Path::new("/dev/null")),
            &target,
            None,
            libc::MS_BIND,
            None,
        )
    };
}

fn readonly(root: &OwnedFd, path: &str) {
    let open = || {
        rustix::fs::openat2(
            root,
            path.trim_start_matches('/'),
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
    };
    let Ok(fd) = open() else { return };
    let target = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    if mount(
        Some(&target),
        &target,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .is_ok()
    {
        // Remount the new mount, which the old descriptor does not name.
        if let Ok(mounted) = open() {
            let p = PathBuf::from(format!("/proc/self/fd/{}", mounted.as_raw_fd()));
            let _ = mount(
                None,
                &p,
                None,
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_REC,
                None,
            );
        }
    }
}

fn loopback_up() -> Result<()> {
    // SAFETY: a socket and two ioctls on a zeroed ifreq naming "lo".
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(sys("socket for lo")(std::io::Error::last_os_error()));
        }
        let _close = OwnedFd::from_raw_fd(fd);
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) != 0 {
            return Err(sys("reading lo's flags")(std::io::Error::last_os_error()));
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) != 0 {
            return Err(sys("bringing lo up")(std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// Capability names (`CAP_CHOWN`) to a bit mask.
fn cap_bits(set: Option<&oci_spec::runtime::Capabilities>) -> u64 {
    const NAMES: [&str; 41] = [
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ];
    let mut bits = 0u64;
    for cap in set.into_iter().flatten() {
        let name = serde_json::to_value(cap)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        if let Some(i) = NAMES
            .iter()
            .position(|n| name.strip_prefix("CAP_") == Some(n))
        {
            bits |= 1 << i;
        }
    }
    bits
}

fn set_caps(effective: u64, permitted: u64, inheritable: u64) -> Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let split = |v: u64| (v as u32, (v >> 32) as u32);
    let (e0, e1) = split(effective);
    let (p0, p1) = split(permitted);
    let (i0, i1) = split(inheritable);
    let data = [
        Data {
            effective: e0,
            permitted: p0,
            inheritable: i0,
        },
        Data {
            effective: e1,
            permitted: p1,
            inheritable: i1,
        },
    ];
    // SAFETY: capset with a v3 header and two data words, as the kernel expects.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
    if r != 0 {
        return Err(sys("setting capabilities")(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Find `args[0]` in the container's `PATH` and exec it; docker's 126/127 when it cannot be.
fn exec(args: &[String], env: &[String]) -> Result<std::convert::Infallible> {
    let Some(cmd) = args.first() else {
        return Err(Error::Config("no command".into()));
    };
    let cstr = |s: &str| CString::new(s).map_err(|_| Error::Config(format!("a NUL in {s:?}")));
    let argv: Vec<CString> = args.iter().map(|a| cstr(a)).collect::<Result<_>>()?;
    let envp: Vec<CString> = env.iter().map(|e| cstr(e)).collect::<Result<_>>()?;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    let candidates: Vec<String> = if cmd.contains('/') {
        vec![cmd.clone()]
    } else {
        let path = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| format!("{d}/{cmd}"))
            .collect()
    };
    // A successful exec closes the error pipe without a word.
    // SAFETY: setting FD_CLOEXEC on our own fd 4.
    unsafe { libc::fcntl(ERROR_FD, libc::F_SETFD, libc::FD_CLOEXEC) };
    let mut denied = None;
    for path in &candidates {
        let p = cstr(path)?;
        // SAFETY: NUL-terminated argv and envp arrays of strings alive for the call.
        unsafe { libc::execve(p.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr()) };
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => {}
            _ => denied = Some(err),
        }
    }
    Err(match denied {
        Some(e) => Error::Exec {
            command: cmd.clone(),
            reason: e.to_string(),
            code: 126,
        },
        None if cmd.contains('/') => Error::Exec {
            command: cmd.clone(),
            reason: "no such file or directory".into(),
            code: 127,
        },
        None => Error::Exec {
            command: cmd.clone(),
            reason: "executable file not found in $PATH".into(),
            code: 127,
        },
    })
}
