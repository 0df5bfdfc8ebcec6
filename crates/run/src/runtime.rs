//! The parent's side of running a container: write the spec, make the cgroup, start
//! `img __init` in new namespaces, put it in the cgroup, let it go, and wait.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::cgroup::Cgroup;
use crate::error::sys;
use crate::init::{ERROR_FD, InitConfig, Rootfs, SYNC_FD};
use crate::{Error, Result};

/// What to start.
#[derive(Debug)]
pub struct Launch<'a> {
    /// The container's id (names its cgroup).
    pub id: &'a str,
    /// The container's directory: `config.json` and `init.json` are written there.
    pub dir: &'a Path,
    /// The runtime spec.
    pub spec: &'a Spec,
    /// The root filesystem.
    pub rootfs: Rootfs,
    /// The program that runs init: our own binary, re-executed as `EXE __init CONFIG`.
    pub exe: PathBuf,
    /// The container's stdin, stdout, stderr.
    pub stdio: [Stdio; 3],
    /// init's end of the console socket, when the process has a terminal.
    pub console: Option<OwnedFd>,
}

/// A started container.
#[derive(Debug)]
pub struct Container {
    /// Its init process (the command, once exec'd): PID 1 inside.
    pub child: Child,
    /// Its cgroup.
    pub cgroup: Cgroup,
}

impl Container {
    /// Wait for the command to end; docker's exit code (128 + signal when killed).
    pub fn wait(&mut self) -> Result<i32> {
        let status = self
            .child
            .wait()
            .map_err(sys("waiting for the container"))?;
        Ok(status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    }

    /// Remove the cgroup (the processes are gone once PID 1 is).
    pub fn cleanup(&self) -> Result<()> {
        self.cgroup.remove()
    }
}

/// Start a container: on return its command is running (exec succeeded), or the reason it
/// could not start is the error (with docker's exit code in [`Error::Init`]).
pub fn start(launch: Launch<'_>) -> Result<Container> {
    let spec_path = launch.dir.join("config.json");
    let init_path = launch.dir.join("init.json");
    let json = |e: serde_json::Error| Error::Config(e.to_string());
    let spec = serde_json::to_vec_pretty(launch.spec).map_err(json)?;
    std::fs::write(&spec_path, spec).map_err(sys(spec_path.display()))?;
    let init = InitConfig {
        spec: spec_path,
        rootfs: launch.rootfs,
    };
    let init = serde_json::to_vec_pretty(&init).map_err(json)?;
    std::fs::write(&init_path, init).map_err(sys(init_path.display()))?;

    let linux = launch.spec.linux().clone().unwrap_or_default();
    let mut flags = 0;
    let mut new_pid = false;
    for ns in linux.namespaces().iter().flatten() {
        if ns.path().is_some() {
            return Err(Error::Config(format!(
                "joining an existing {:?} namespace is not supported yet",
                ns.typ()
            )));
        }
        match ns.typ() {
            LinuxNamespaceType::Pid => new_pid = true,
            LinuxNamespaceType::Mount => flags |= libc::CLONE_NEWNS,
            LinuxNamespaceType::Uts => flags |= libc::CLONE_NEWUTS,
            LinuxNamespaceType::Ipc => flags |= libc::CLONE_NEWIPC,
            LinuxNamespaceType::Network => flags |= libc::CLONE_NEWNET,
            // Made by init once it is in its cgroup, which becomes the namespace's root.
            LinuxNamespaceType::Cgroup => {}
            // Made by init once everything that needs host root is done (see init).
            LinuxNamespaceType::User => {}
            other => {
                return Err(Error::Config(format!(
                    "{other:?} namespaces are not supported yet"
                )));
            }
        }
    }
    // A init that fails early closes its end of the sync pipe: our "go" must then fail with
    // EPIPE, not kill us (the child gets the default action back before exec).
    // SAFETY: changing a signal's disposition to ignored.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let maps = crate::userns::spec_maps(launch.spec)?;
    let cgroup = Cgroup::create(launch.id, linux.resources().as_ref())?;
    let (sync_r, sync_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (sr, ew) = (sync_r.as_raw_fd(), err_w.as_raw_fd());
    let userns_pipe = maps.as_ref().map(|_| pipe()).transpose()?;
    let uw = userns_pipe.as_ref().map_or(-1, |(_, w)| w.as_raw_fd());
    let console = launch.console.map(high_fd).transpose()?;
    let cs = console.as_ref().map_or(-1, |c| c.as_raw_fd());
    let [stdin, stdout, stderr] = launch.stdio;
    let mut cmd = Command::new(&launch.exe);
    cmd.arg("__init")
        .arg(&init_path)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr);
    // SAFETY: only async-signal-safe calls (dup2, sigprocmask, unshare) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(sr, SYNC_FD) < 0 || libc::dup2(ew, ERROR_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if cs >= 0 && libc::dup2(cs, crate::init::CONSOLE_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if uw >= 0 && libc::dup2(uw, crate::init::USERNS_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            if libc::unshare(flags) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // A new PID namespace applies to the children of the thread that asks for it: ask from a
    // thread of its own, so this one's children are not affected.
    let spawned = std::thread::scope(|s| {
        s.spawn(|| {
            if new_pid {
                // SAFETY: CLONE_NEWPID changes only which namespace this thread's future
                // children are born in; this thread makes exactly one and ends.
                unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWPID) }
                    .map_err(std::io::Error::from)?;
            }
            cmd.spawn()
        })
        .join()
    });
    let child = match spawned {
        Ok(Ok(child)) => child,
        Ok(Err(e)) => {
            let _ = cgroup.remove();
            return Err(sys(format!("starting {} __init", launch.exe.display()))(e));
        }
        Err(_) => {
            let _ = cgroup.remove();
            return Err(Error::Config(
                "the thread starting the container panicked".into(),
            ));
        }
    };
    drop(sync_r);
    drop(err_w);
    drop(console);
    let userns_r = userns_pipe.map(|(r, _w)| r);
    let mut container = Container { child, cgroup };
    let report = (|| -> Result<String> {
        container.cgroup.add(container.child.id())?;
        if let (Some((uids, gids)), Some(told)) = (&maps, userns_r) {
            // init says it is in its user namespace (or fails and closes the pipe: its
            // report on the error pipe says why, and our "go" below goes nowhere).
            let mut byte = [0u8; 1];
            if std::fs::File::from(told).read(&mut byte).unwrap_or(0) == 1 {
                crate::idmap::write_maps(container.child.id(), uids, gids)?;
            }
        }
        let mut go = std::fs::File::from(sync_w);
        // The init may already be gone (it reports why on the error pipe).
        let _ = go.write_all(b"g");
        drop(go);
        let mut text = String::new();
        std::fs::File::from(err_r)
            .read_to_string(&mut text)
            .map_err(sys("reading the container's start report"))?;
        Ok(text)
    })();
    let failure = match report {
        Ok(text) if text.is_empty() => return Ok(container),
        Ok(text) => {
            let (code, message) = text.split_once(' ').unwrap_or(("125", &text));
            Error::Init {
                code: code.parse().unwrap_or(125),
                message: message.to_string(),
            }
        }
        Err(e) => e,
    };
    let _ = container.child.kill();
    let _ = container.child.wait();
    let _ = container.cgroup.remove();
    Err(failure)
}

/// A pipe whose ends are at fd 10 or above (so dup2 onto 3 and 4 cannot clobber them),
/// close-on-exec.
fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(crate::error::errno("pipe"))?;
    Ok((high_fd(r)?, high_fd(w)?))
}

/// The same open file at a descriptor of 10 or above, close-on-exec.
fn high_fd(fd: OwnedFd) -> Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new fd we then own.
    let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    if n < 0 {
        return Err(sys("fcntl")(std::io::Error::last_os_error()));
    }
    // SAFETY: `n` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// Block the signals a container should receive instead of us, in this thread and the
/// threads it starts from now on; [`forward_signals`] hands them over.
pub fn block_signals() {
    // SAFETY: building a signal set and masking it in this thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in FORWARDED {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

const FORWARDED: [i32; 7] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
];

/// Forward the signals [`block_signals`] blocked to `pid`, from a thread, until we exit.
/// `on_winch` runs on `SIGWINCH` instead (a terminal resize to pass on).
pub fn forward_signals(pid: u32, on_winch: Option<Box<dyn Fn() + Send>>) {
    std::thread::spawn(move || {
        // SAFETY: waiting on a set of blocked signals and sending them on.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in FORWARDED {
                libc::sigaddset(&mut set, s);
            }
            loop {
                let mut sig = 0;
                if libc::sigwait(&set, &mut sig) != 0 {
                    return;
                }
                match (&on_winch, sig) {
                    (Some(f), libc::SIGWINCH) => f(),
                    _ => {
                        libc::kill(pid as libc::pid_t, sig);
                    }
                }
            }
        }
    });
}
