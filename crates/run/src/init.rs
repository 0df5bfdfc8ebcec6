//! The container's first process, run as `img __init CONFIG` inside fresh namespaces: it
//! closes what the caller left open, mounts the rootfs and the spec's mounts (`rootfs`),
//! pivots into the rootfs, waits for the parent to put it in its cgroup, enters a cgroup
//! namespace and a session keyring of its own, drops privileges (capabilities, user, seccomp,
//! in runc's order) and execs the command, becoming PID 1.
//!
//! Every protection either holds or init reports the error and the command never runs.
//!
//! It reports a failure before exec as `CODE MESSAGE` on fd 4 (docker's codes: 125 for our
//! errors, 126 for a command that cannot run, 127 for one not found); a successful exec closes
//! fd 4 (close-on-exec) without a word. fd 3 is where the parent says "go".

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxCapabilities, LinuxNamespaceType, Spec};

use crate::capabilities::{set_of, sets_of};
use crate::error::sys;
use crate::rootfs::{self, Root};
use crate::syscall::{
    CapabilitySet, CapabilitySets, Linux, Mount, MountFlags, Syscall, UnshareFlags,
};
use crate::user::User;
use crate::{Error, Result};

/// fd on which the parent says "go" (one byte).
pub const SYNC_FD: i32 = 3;
/// fd on which init reports a failure.
pub const ERROR_FD: i32 = 4;
/// fd of the console socket, when the process has a terminal.
pub const CONSOLE_FD: i32 = 5;
/// fd on which init says it has entered its user namespace (one byte), when the spec has
/// one: the parent then writes the namespace's maps before its "go".
pub const USERNS_FD: i32 = 6;

/// What init needs beyond the spec.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct InitConfig {
    /// The runtime spec (`config.json`).
    pub spec: PathBuf,
    /// Where the root filesystem comes from.
    pub rootfs: Rootfs,
    /// Whether init was started in a user namespace of its own already (without root): then
    /// devices are bound from the host's `/dev`, not made (see [`crate::runtime::start`]).
    #[serde(default)]
    pub rootless: bool,
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
    let code = match setup(&Linux, config) {
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

/// A helper's JSON config at `path` (init's, exec's), the container's spec it names, and the
/// spec's process.
pub(crate) fn load_config<C: serde::de::DeserializeOwned>(
    path: &Path,
    spec_of: impl Fn(&C) -> &Path,
) -> Result<(C, Spec, oci_spec::runtime::Process)> {
    let text = std::fs::read(path).map_err(sys(path.display()))?;
    let cfg: C = serde_json::from_slice(&text)
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    let spec_path = spec_of(&cfg);
    let spec = Spec::load(spec_path)
        .map_err(|e| Error::Config(format!("{}: {e}", spec_path.display())))?;
    let process = spec.process().clone().ok_or_else(|| {
        Error::Config(format!("{}: the spec has no process", spec_path.display()))
    })?;
    Ok((cfg, spec, process))
}

fn setup(kernel: &dyn Syscall, config: &Path) -> Result<std::convert::Infallible> {
    // Nothing the caller left open goes further than this (fds 3 to 6 are ours).
    crate::process::close_from(USERNS_FD as u32 + 1)?;
    let (cfg, spec, process) = load_config(config, |c: &InitConfig| &c.spec)?;
    let terminal = process.terminal().unwrap_or(false);
    if !terminal {
        crate::process::close_one(CONSOLE_FD);
    }
    let linux = spec.linux().clone().unwrap_or_default();
    // Compiled before anything is mounted: a profile that cannot be applied stops us early.
    let filter = linux
        .seccomp()
        .as_ref()
        .map(crate::seccomp::compile)
        .transpose()?;
    let has_ns = |t: LinuxNamespaceType| {
        linux
            .namespaces()
            .iter()
            .flatten()
            .any(|n| n.typ() == t && n.path().is_none())
    };
    // The user namespace init makes itself, last (as root); a rootless one exists already.
    let userns = has_ns(LinuxNamespaceType::User) && !cfg.rootless;
    if !userns {
        crate::process::close_one(USERNS_FD);
    }

    // Our mounts stay in our namespace.
    kernel.mount(Path::new("/"), Mount::Private)?;
    if has_ns(LinuxNamespaceType::User) && has_ns(LinuxNamespaceType::Network) {
        // Root in a user namespace holds no capability over this network namespace (ours
        // made it): low ports and ping are opened to every user of it, as docker does for
        // every container (/proc is still the host's mount here; net.* is our namespace's).
        // Inside a rootless user namespace only the groups it maps can be named.
        let groups = if cfg.rootless {
            format!("0 {}", last_mapped_gid()?)
        } else {
            "0 2147483647".to_string()
        };
        for (key, value) in [
            ("net/ipv4/ip_unprivileged_port_start", "0"),
            ("net/ipv4/ping_group_range", groups.as_str()),
        ] {
            let path = Path::new("/proc/sys").join(key);
            std::fs::write(&path, value).map_err(sys(path.display()))?;
        }
    }
    let root_path = match &cfg.rootfs {
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
            kernel.mount(
                dir,
                Mount::Bind {
                    source: dir,
                    recursive: true,
                },
            )?;
            dir.clone()
        }
    };
    crate::volumes::copy_up(&root_path, &spec)?;
    let root = Root::open(&root_path)?;
    rootfs::prepare(kernel, &root, &spec, cfg.rootless)?;
    rustix::process::chdir(root.path()).map_err(crate::error::errno(root.path().display()))?;
    drop(root);
    kernel.pivot_root()?;

    if has_ns(LinuxNamespaceType::Network) {
        loopback_up()?;
    }
    if let Some(h) = spec.hostname() {
        kernel.sethostname(h)?;
    }
    if spec
        .root()
        .as_ref()
        .is_some_and(|r| r.readonly().unwrap_or(false))
    {
        let slash = rustix::fs::open("/", rustix::fs::OFlags::PATH, rustix::fs::Mode::empty())
            .map_err(crate::error::errno("/"))?;
        let flags = rootfs::remount_flags(&slash)? | MountFlags::RDONLY;
        kernel.mount(Path::new("/"), Mount::Remount { flags })?;
    }

    let user = crate::user::of_spec(&spec, &process, None)?;
    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    crate::process::enter_cwd(process.cwd())?;
    if terminal {
        // SAFETY: fd 5 is the console socket the parent put there for us.
        let socket = unsafe { OwnedFd::from_raw_fd(CONSOLE_FD) };
        crate::tty::setup_in_container(socket)?;
    }

    // Everything above needed host root; from here on we are the container's root only: a
    // user namespace of our own, whose maps the parent writes before its "go".
    if userns {
        kernel.unshare(UnshareFlags::NEWUSER)?;
        // SAFETY: fd 6 was put there by the parent for us.
        let mut told = unsafe { std::fs::File::from_raw_fd(USERNS_FD) };
        told.write_all(b"u")
            .map_err(sys("telling the parent about the user namespace"))?;
    }

    // Wait for the parent to put us in our cgroup.
    // SAFETY: fd 3 was put there by the parent for us.
    let mut sync = unsafe { std::fs::File::from_raw_fd(SYNC_FD) };
    let mut go = [0u8; 1];
    if sync.read(&mut go).map_err(sys("waiting for the parent"))? != 1 {
        return Err(Error::Config("the parent went away".into()));
    }
    drop(sync);

    // Now that we are in our cgroup, it becomes the root of our cgroup namespace.
    if has_ns(LinuxNamespaceType::Cgroup) {
        kernel.unshare(UnshareFlags::NEWCGROUP)?;
    }
    kernel.join_session_keyring()?;
    let privileges = Privileges {
        caps: process.capabilities().clone().unwrap_or_default(),
        no_new_privileges: process.no_new_privileges().unwrap_or(false),
        user: &user,
        seccomp: filter.as_ref(),
    };
    // --ulimit: only ever lowering (checked when the spec was made; the kernel refuses a
    // raise without CAP_SYS_RESOURCE anyway).
    for r in process.rlimits().iter().flatten() {
        let name = format!("{:?}", r.typ());
        let resource = crate::spec::rlimit_resource(&name)
            .ok_or_else(|| Error::Config(format!("unknown rlimit {name}")))?;
        let limit = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: setrlimit of ours with a plain struct.
        if unsafe { libc::setrlimit(resource, &limit) } != 0 {
            return Err(sys(format!("setting {:?}", r.typ()))(
                std::io::Error::last_os_error(),
            ));
        }
    }
    drop_privileges(kernel, &privileges)?;
    let args = process.args().clone().unwrap_or_default();
    let with_init = spec.annotations().as_ref().is_some_and(|a| {
        a.get(crate::spec::INIT_ANNOTATION)
            .is_some_and(|v| v == "true")
    });
    if with_init {
        crate::process::exec_under_init(&args, &env)
    } else {
        crate::process::exec(&args, &env)
    }
}

/// What the process keeps once init lets go (and what `exec`'s process gets).
pub(crate) struct Privileges<'a> {
    pub(crate) caps: LinuxCapabilities,
    pub(crate) no_new_privileges: bool,
    pub(crate) user: &'a User,
    pub(crate) seccomp: Option<&'a crate::seccomp::Filter>,
}

/// runc's order: `no_new_privs`; without it, seccomp while we still hold CAP_SYS_ADMIN
/// (installing a filter needs one or the other); the bounding set; the user; the
/// capabilities (root keeps the spec's; another user keeps none: a non-root process gains
/// capabilities only from file capabilities at exec, within the bounding set, as with
/// docker); with `no_new_privs`, seccomp as late as possible; then every descriptor from 3 up
/// close-on-exec.
pub(crate) fn drop_privileges(sys: &dyn Syscall, p: &Privileges<'_>) -> Result<()> {
    if p.no_new_privileges {
        sys.set_no_new_privs()?;
    }
    if let (Some(filter), false) = (p.seccomp, p.no_new_privileges) {
        sys.install_seccomp(filter)?;
    }
    sys.drop_bounding(set_of(p.caps.bounding().as_ref()))?;
    sys.set_ids(p.user.uid, p.user.gid, &p.user.groups)?;
    let sets = if p.user.uid == 0 {
        sets_of(&p.caps)
    } else {
        CapabilitySets {
            effective: CapabilitySet::empty(),
            permitted: CapabilitySet::empty(),
            inheritable: CapabilitySet::empty(),
        }
    };
    sys.set_caps(&sets)?;
    if let (Some(filter), true) = (p.seccomp, p.no_new_privileges) {
        sys.install_seccomp(filter)?;
    }
    sys.cloexec_from(3)
}

/// The highest group id our user namespace maps.
fn last_mapped_gid() -> Result<u64> {
    let path = "/proc/self/gid_map";
    let text = std::fs::read_to_string(path).map_err(sys(path))?;
    text.lines()
        .filter_map(|line| {
            let fields: Vec<u64> = line
                .split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect();
            (fields.len() == 3 && fields[2] > 0).then(|| fields[0] + fields[2] - 1)
        })
        .max()
        .ok_or_else(|| Error::Config(format!("{path} maps no group")))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::{Call, Recorder};

    fn caps(names: &[&str]) -> LinuxCapabilities {
        serde_json::from_value(serde_json::json!({
            "bounding": names, "effective": names, "permitted": names,
        }))
        .unwrap()
    }

    fn user(uid: u32) -> User {
        User {
            uid,
            gid: uid,
            groups: vec![uid],
            home: "/".into(),
        }
    }

    fn kinds(calls: &[Call]) -> Vec<&'static str> {
        calls
            .iter()
            .map(|c| match c {
                Call::NoNewPrivs => "nnp",
                Call::Seccomp => "seccomp",
                Call::Bounding(_) => "bounding",
                Call::Ids(..) => "ids",
                Call::Caps(_) => "caps",
                Call::Cloexec(3) => "cloexec",
                _ => "other",
            })
            .collect()
    }

    #[test]
    fn seccomp_goes_before_the_capabilities_without_no_new_privs() {
        let filter = crate::seccomp::compile(
            &crate::seccomp::Profile::docker_default()
                .resolve(&["CAP_CHOWN".to_string()])
                .unwrap(),
        )
        .unwrap();
        let u = user(0);
        let rec = Recorder::default();
        let p = Privileges {
            caps: caps(&["CAP_CHOWN", "CAP_KILL"]),
            no_new_privileges: false,
            user: &u,
            seccomp: Some(&filter),
        };
        drop_privileges(&rec, &p).unwrap();
        let calls = rec.calls.borrow();
        assert_eq!(
            kinds(&calls),
            ["seccomp", "bounding", "ids", "caps", "cloexec"]
        );
        let want = CapabilitySet::CHOWN | CapabilitySet::KILL;
        assert_eq!(calls[1], Call::Bounding(want));
        assert!(
            matches!(&calls[3], Call::Caps(s) if s.effective == want && s.permitted == want
            && s.inheritable.is_empty())
        );

        let rec = Recorder::default();
        let p = Privileges {
            no_new_privileges: true,
            ..p
        };
        drop_privileges(&rec, &p).unwrap();
        assert_eq!(
            kinds(&rec.calls.borrow()),
            ["nnp", "bounding", "ids", "caps", "seccomp", "cloexec"]
        );
    }

    #[test]
    fn a_non_root_user_keeps_no_capabilities() {
        let u = user(1000);
        let rec = Recorder::default();
        let p = Privileges {
            caps: caps(&["CAP_NET_RAW"]),
            no_new_privileges: false,
            user: &u,
            seccomp: None,
        };
        drop_privileges(&rec, &p).unwrap();
        let calls = rec.calls.borrow();
        assert_eq!(kinds(&calls), ["bounding", "ids", "caps", "cloexec"]);
        assert_eq!(calls[0], Call::Bounding(CapabilitySet::NET_RAW));
        assert_eq!(calls[1], Call::Ids(1000, 1000, vec![1000]));
        assert!(matches!(&calls[2], Call::Caps(s) if s.effective.is_empty()
            && s.permitted.is_empty()));
    }
}
