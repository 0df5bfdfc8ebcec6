//! The parent's side of running a container: write the spec, make the cgroup, start
//! `img __init` in new namespaces, put it in the cgroup, let it go, and wait.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::cgroup::Cgroup;
use crate::error::sys;
use crate::init::{ERROR_FD, InitConfig, Rootfs, SYNC_FD};
pub use crate::spawn::{Process, Stdio};
use crate::spawn::{Spawn, pipe, spawn};
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
    pub child: Process,
    /// Its cgroup (none for a rootless container).
    pub cgroup: Cgroup,
}

impl Container {
    /// Wait for the command to end; docker's exit code (128 + signal when killed).
    pub fn wait(&mut self) -> Result<i32> {
        self.child.wait()
    }

    /// Remove the cgroup (the processes are gone once PID 1 is).
    pub fn cleanup(&self) -> Result<()> {
        self.cgroup.remove()
    }
}

/// Start a container: on return its command is running (exec succeeded), or the reason it
/// could not start is the error (with docker's exit code in [`Error::Init`]).
///
/// As root, the container gets a cgroup and, with `--userns=remap`, a user namespace init
/// makes last (see init). Without root it is rootless: a user namespace made first, with the
/// caller's subordinate ids mapped, owns every other namespace, and there is no cgroup.
pub fn start(launch: Launch<'_>) -> Result<Container> {
    let rootless = !crate::userns::is_root();
    let spec_path = launch.dir.join("config.json");
    let init_path = launch.dir.join("init.json");
    let json = |e: serde_json::Error| Error::Config(e.to_string());
    let spec = serde_json::to_vec_pretty(launch.spec).map_err(json)?;
    std::fs::write(&spec_path, spec).map_err(sys(spec_path.display()))?;
    let init = InitConfig {
        spec: spec_path,
        rootfs: launch.rootfs,
        rootless,
    };
    let init = serde_json::to_vec_pretty(&init).map_err(json)?;
    std::fs::write(&init_path, init).map_err(sys(init_path.display()))?;

    let linux = launch.spec.linux().clone().unwrap_or_default();
    let mut flags = 0;
    for ns in linux.namespaces().iter().flatten() {
        if ns.path().is_some() {
            return Err(Error::Config(format!(
                "joining an existing {:?} namespace is not supported yet",
                ns.typ()
            )));
        }
        match ns.typ() {
            LinuxNamespaceType::Pid => flags |= libc::CLONE_NEWPID,
            LinuxNamespaceType::Mount => flags |= libc::CLONE_NEWNS,
            LinuxNamespaceType::Uts => flags |= libc::CLONE_NEWUTS,
            LinuxNamespaceType::Ipc => flags |= libc::CLONE_NEWIPC,
            LinuxNamespaceType::Network => flags |= libc::CLONE_NEWNET,
            // Made by init once it is in its cgroup, which becomes the namespace's root.
            LinuxNamespaceType::Cgroup => {}
            // Rootless: made first, with the others. As root: made by init once everything
            // that needs host root is done (see init).
            LinuxNamespaceType::User if rootless => flags |= libc::CLONE_NEWUSER,
            LinuxNamespaceType::User => {}
            other => {
                return Err(Error::Config(format!(
                    "{other:?} namespaces are not supported yet"
                )));
            }
        }
    }
    let maps = crate::userns::spec_maps(launch.spec)?;
    if rootless && maps.is_none() {
        return Err(Error::Config(
            "a rootless container needs a user namespace in its spec".into(),
        ));
    }
    // A init that fails early closes its end of the sync pipe: our "go" must then fail with
    // EPIPE, not kill us (the child gets the default action back before exec).
    // SAFETY: changing a signal's disposition to ignored.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let cgroup = match (rootless, linux.resources()) {
        (false, resources) => Cgroup::create(launch.id, resources.as_ref())?,
        // A rootless spec keeps limits only where a subtree is delegated (make_rootless).
        (true, Some(r)) if !crate::cgroup::delegated::needed(r).is_empty() => {
            Cgroup::delegated(launch.id, r)?
        }
        (true, _) => Cgroup::none(),
    };
    let (sync_r, sync_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    // As root with a user namespace, init says when it has made it.
    let userns_pipe = (maps.is_some() && !rootless).then(pipe).transpose()?;
    let mut fds = vec![(sync_r, SYNC_FD), (err_w, ERROR_FD)];
    if let Some(console) = launch.console {
        fds.push((console, crate::init::CONSOLE_FD));
    }
    let userns_r = match userns_pipe {
        Some((r, w)) => {
            fds.push((w, crate::init::USERNS_FD));
            Some(r)
        }
        None => None,
    };
    let spawned = spawn(Spawn {
        exe: &launch.exe,
        args: &[OsStr::new("__init"), init_path.as_os_str()],
        stdio: launch.stdio,
        fds,
        namespaces: flags,
        maps: maps
            .as_ref()
            .filter(|_| rootless)
            .map(|(u, g)| (u.as_slice(), g.as_slice())),
        join: Vec::new(),
    });
    let child = match spawned {
        Ok(child) => child,
        Err(e) => {
            let _ = cgroup.remove();
            return Err(e);
        }
    };
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
    container.child.kill();
    let _ = container.child.wait();
    let _ = container.cgroup.remove();
    Err(failure)
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

/// Forward the signals [`block_signals`] blocked to `pid` (our child), from a thread, until
/// we exit. `on_winch` runs on `SIGWINCH` instead (a terminal resize to pass on).
pub fn forward_signals(pid: u32, on_winch: Option<Box<dyn Fn() + Send>>) {
    forward_signals_with(
        Box::new(move |sig| {
            // SAFETY: a signal to our own child (not reaped while we forward).
            unsafe { libc::kill(pid as libc::pid_t, sig) };
        }),
        on_winch,
    );
}

/// [`forward_signals`] to a process that is not our child: `send` delivers each (through its
/// recorded identity, so that a recycled pid is never signalled).
pub fn forward_signals_with(send: Box<dyn Fn(i32) + Send>, on_winch: Option<Box<dyn Fn() + Send>>) {
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
                    _ => send(sig),
                }
            }
        }
    });
}
