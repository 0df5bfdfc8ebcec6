//! `img exec`: another process in a running container, with the container's confinement and
//! never more (its namespaces, cgroup, bounding set and capabilities, seccomp filter,
//! `no_new_privs`, and its user unless `-u` names another).
//!
//! The caller re-executes our binary as `img __exec CONFIG` in the host's PID namespace
//! ([`main`]), where the container cannot see it. It makes itself non-dumpable, checks the
//! container's recorded PID 1 is still that process (start time) and holds it by a pidfd,
//! joins its cgroup, then its namespaces through the pidfd (its user namespace last, when it
//! has one), and forks: the child — the first of us the container can see, non-dumpable
//! until it execs the command, so `/proc/PID/exe` never leads to our binary (runc's
//! CVE-2019-5736) and it holds no descriptor but 0–2 (CVE-2024-21626) — enters the working
//! directory, takes a terminal if asked, drops privileges as init does, and execs. We stay
//! outside, forward signals to it and end with its status.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::sys;
use crate::recorded::Recorded;
use crate::{Error, Result};

/// What `img exec` asks for, written by the caller for [`main`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ExecConfig {
    /// The container's id (names its cgroup).
    pub id: String,
    /// Its `config.json`: the confinement the new process gets.
    pub spec: PathBuf,
    /// Its PID 1, as recorded: pid and start time.
    pub pid: u32,
    /// The start time recorded with it (clock ticks after boot).
    pub start_time: Option<u64>,
    /// The command.
    pub args: Vec<String>,
    /// `-e`: added to (or replacing in) the container's environment.
    pub env: Vec<String>,
    /// `-u`: instead of the container's user.
    pub user: Option<String>,
    /// `-w`: instead of the container's working directory.
    pub workdir: Option<String>,
    /// `-t`: a terminal of its own (the console socket is at fd 5).
    pub tty: bool,
}

/// Write `config` for an `img __exec` into the container's directory `dir`, readable by us
/// only (`__exec` removes it once read); its path.
pub fn write_config(dir: &Path, config: &ExecConfig) -> Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!(".exec-{}-{n}.json", std::process::id()));
    let bytes = serde_json::to_vec(config).map_err(|e| Error::Config(e.to_string()))?;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(&bytes))
        .map_err(sys(path.display()))?;
    Ok(path)
}

/// Run `img __exec CONFIG`: never returns. Its exit code is the command's (128 + signal
/// when killed), 125 when we fail, 126/127 as docker when the command cannot run.
pub fn main(config: &Path) -> ! {
    let code = match setup(config) {
        Ok(code) => code,
        Err(e) => {
            let code = match &e {
                Error::Exec { code, .. } => *code,
                _ => 125,
            };
            eprintln!("img: {e}");
            code
        }
    };
    std::process::exit(code)
}

fn setup(config: &Path) -> Result<i32> {
    // SAFETY: prctl on our own process with plain values.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let loaded = crate::init::load_config(config, |c: &ExecConfig| &c.spec);
    let _ = std::fs::remove_file(config);
    let (cfg, spec, process) = loaded?;
    let linux = spec.linux().clone().unwrap_or_default();
    let filter = linux
        .seccomp()
        .as_ref()
        .map(crate::seccomp::compile)
        .transpose()?;

    // The container's PID 1, held by a pidfd opened before its identity is checked: the
    // namespaces we join are its, not those of a process that got its pid since.
    let not_running = || Error::Config(format!("container {} is not running", cfg.id));
    let recorded = Recorded {
        pid: cfg.pid,
        start_time: cfg.start_time,
    };
    let raw = i32::try_from(cfg.pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(not_running)?;
    let pidfd = rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty())
        .map_err(|_| not_running())?;
    recorded.check().map_err(|_| not_running())?;

    let rootless = !crate::userns::is_root();
    // Rootless: the container's cgroup in the delegated subtree, if it has one.
    crate::cgroup::Cgroup::of_container(&cfg.id, Some(cfg.pid)).add(std::process::id())?;
    let mut flags = 0;
    let mut userns = false;
    for ns in linux.namespaces().iter().flatten() {
        flags |= match ns.typ() {
            LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
            LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
            LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
            LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
            LinuxNamespaceType::Network => libc::CLONE_NEWNET,
            LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
            LinuxNamespaceType::User => {
                userns = true;
                0
            }
            _ => 0,
        };
    }
    if rootless {
        // The user namespace owns the others (see runtime::start): the kernel joins it first
        // and the rest as its root.
        setns(&pidfd, flags | libc::CLONE_NEWUSER)?;
    } else {
        setns(&pidfd, flags)?;
        if userns {
            // Last: the other namespaces are the host root's (see init), joined above as root.
            setns(&pidfd, libc::CLONE_NEWUSER)?;
        }
    }

    // Our pid as the child will read it: 0 from inside a PID namespace we are outside of.
    let parent = if flags & libc::CLONE_NEWPID != 0 {
        0
    } else {
        std::process::id() as libc::pid_t
    };
    // SAFETY: fork of this single-threaded process; both sides go on with ordinary code.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(sys("fork")(std::io::Error::last_os_error()));
    }
    if child == 0 {
        let e = match enter(&cfg, &spec, &process, filter.as_ref(), parent) {
            Ok(never) => match never {},
            Err(e) => e,
        };
        let code = match &e {
            Error::Exec { code, .. } => *code,
            _ => 125,
        };
        eprintln!("img: {e}");
        std::process::exit(code);
    }
    Ok(relay(child))
}

/// `setns(2)` through a pidfd: every namespace in `flags` at once.
fn setns(pidfd: &OwnedFd, flags: i32) -> Result<()> {
    // SAFETY: setns on a pidfd we hold, with namespace flags.
    if unsafe { libc::setns(pidfd.as_raw_fd(), flags) } != 0 {
        return Err(sys("joining the container's namespaces")(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// In the child, inside: working directory, terminal, user, privileges, exec.
fn enter(
    cfg: &ExecConfig,
    spec: &Spec,
    process: &oci_spec::runtime::Process,
    filter: Option<&crate::seccomp::Filter>,
    parent: libc::pid_t,
) -> Result<std::convert::Infallible> {
    let user = crate::user::of_spec(spec, process, cfg.user.as_deref())?;
    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    for e in &cfg.env {
        let key = e.split('=').next().unwrap_or_default();
        env.retain(|old| old.split('=').next() != Some(key));
        env.push(e.clone());
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    let cwd = cfg
        .workdir
        .as_deref()
        .map(PathBuf::from)
        .unwrap_or_else(|| process.cwd().clone());
    crate::process::enter_cwd(&cwd)?;
    if cfg.tty {
        // SAFETY: fd 5 is the console socket our caller put there for us.
        let socket = unsafe { OwnedFd::from_raw_fd(crate::init::CONSOLE_FD) };
        crate::tty::setup_in_container(socket)?;
    }
    let privileges = crate::init::Privileges {
        caps: process.capabilities().clone().unwrap_or_default(),
        no_new_privileges: process.no_new_privileges().unwrap_or(false),
        user: &user,
        seccomp: filter,
    };
    crate::init::drop_privileges(&crate::syscall::Linux, &privileges)?;
    // The process dies with the `__exec` that relays it (a health check killed at its
    // timeout, an exec whose caller was killed): nothing it started runs on unwatched. Set
    // after the user change, which clears it.
    // A relay already gone left us to another parent (the container's PID 1).
    // SAFETY: prctl on our own process with plain values; getppid has no preconditions.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if libc::getppid() != parent {
            libc::_exit(137);
        }
    }
    crate::process::exec(&cfg.args, &env)
}

/// Forward signals to `child` until it ends; its status as an exit code.
fn relay(child: i32) -> i32 {
    // SAFETY: blocking every signal of this (single-threaded) process.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
    }
    crate::process::forward_and_wait(child)
}
