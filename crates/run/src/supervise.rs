//! Running a prepared container to its end: used by `img run` in the foreground, and by the
//! small supervisor process (`img __supervise DIR`, like conmon) that keeps a detached
//! container's log and exit status. It starts the container, records it running, serves its
//! ports and terminal, forwards signals, waits, records the exit and removes the cgroup.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::error::sys;
use crate::init::Rootfs;
use crate::runtime::Stdio;
use crate::spec::Network;
use crate::state::{ContainerState, ContainerStatus, Recorded};
use crate::{Error, Launch, Result, ports, runtime, tty};

/// The directory (in a container's) holding the flattened copy of its image that a rootless
/// container gets where overlayfs cannot be mounted in a user namespace.
pub const FLATTENED: &str = "rootfs";

/// Where the container's stdio goes.
#[derive(Debug, Clone)]
pub enum Io {
    /// Our own stdout and stderr; our stdin too when `stdin` is set.
    Inherit {
        /// Keep stdin open (`-i`).
        stdin: bool,
        /// Also append stdout and stderr to this log (`img logs` of a foreground container,
        /// as docker keeps them): they then reach us through pipes.
        log: Option<PathBuf>,
    },
    /// A pty proxied to our terminal (`-t`).
    Tty,
    /// Appended to a log file (detached), stdin closed.
    Log(PathBuf),
}

/// Run the container in `dir` (its `state.json` and `config.json` written) to its end;
/// returns its exit code. `exe` is our binary (re-executed as `__init`); `started` is told
/// once the command runs.
pub fn supervise(
    dir: &Path,
    io: Io,
    exe: PathBuf,
    started: impl FnOnce(&ContainerState),
) -> Result<i32> {
    // Ours from now on, before anything slow (a volume filled, a rootfs copied): a reap must
    // not take a starting container for one whose maker died.
    let (mut state, ()) = ContainerState::update(dir, |s| {
        s.supervisor = Some(Recorded::of(std::process::id()));
    })?;
    let spec_path = dir.join("config.json");
    let spec = Spec::load(&spec_path)
        .map_err(|e| Error::Config(format!("{}: {e}", spec_path.display())))?;
    let listeners = match state.network {
        // With the host's network the container's ports are the host's already.
        Network::Host => Vec::new(),
        Network::Private => ports::listen(&state.ports)?,
    };
    if !listeners.is_empty() {
        // The ports the kernel chose for `-p CTR` are the ones recorded.
        state.ports = listeners.iter().map(|(p, _)| p.clone()).collect();
    }
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    let mut console_ours = None;
    let mut console_theirs = None;
    let mut tees = Vec::new();
    // Init opens the terminal in the container and sends us its master.
    let mut console = || -> Result<[Stdio; 3]> {
        let (ours, theirs) = tty::console_socket()?;
        console_ours = Some(ours);
        console_theirs = Some(theirs);
        Ok([Stdio::Null, Stdio::Null, Stdio::Null])
    };
    let stdio: [Stdio; 3] = match &io {
        Io::Inherit { stdin, log } => {
            let stdin = if *stdin { Stdio::Inherit } else { Stdio::Null };
            match log {
                None => [stdin, Stdio::Inherit, Stdio::Inherit],
                Some(path) => {
                    let log = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(sys(path.display()))?;
                    let (out_r, out_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                        .map_err(crate::error::errno("pipe"))?;
                    let (err_r, err_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                        .map_err(crate::error::errno("pipe"))?;
                    let log2 = log.try_clone().map_err(sys(path.display()))?;
                    tees.push(tee(out_r, log, false));
                    tees.push(tee(err_r, log2, true));
                    [stdin, Stdio::Fd(out_w), Stdio::Fd(err_w)]
                }
            }
        }
        Io::Tty => console()?,
        // Detached with a terminal (`run -dt`): the master is served to `img attach` (attach).
        Io::Log(_) if terminal => console()?,
        Io::Log(path) => {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(sys(path.display()))?;
            let err = log.try_clone().map_err(sys(path.display()))?;
            [Stdio::Null, Stdio::from(log), Stdio::from(err)]
        }
    };
    runtime::block_signals();
    // A rootless container mounts its overlay itself, in its user namespace (see init).
    let remap = if crate::userns::is_root() {
        crate::userns::spec_maps(&spec)?
    } else {
        None
    };
    let rootfs = match &remap {
        // Mounted here, in the host's namespace, with idmapped layers (see idmap).
        Some((uids, gids)) => {
            crate::idmap::mount_rootfs(dir, &state.lowers, uids, gids)?;
            Rootfs::Dir(dir.join("merged"))
        }
        // A rootless container where overlayfs cannot be mounted has a copy of its own.
        None if dir.join(FLATTENED).is_dir() => Rootfs::Dir(dir.join(FLATTENED)),
        None => Rootfs::Overlay {
            lowers: state.lowers.clone(),
            upper: dir.join("upper"),
            work: dir.join("work"),
            merged: dir.join("merged"),
        },
    };
    let launched = runtime::start(Launch {
        id: &state.id,
        dir,
        spec: &spec,
        rootfs,
        exe: exe.clone(),
        stdio,
        console: console_theirs,
    });
    let mut container = match launched {
        Ok(c) => c,
        Err(e) => {
            if remap.is_some() {
                crate::idmap::unmount_rootfs(dir);
            }
            let code = match &e {
                Error::Init { code, .. } => *code,
                _ => 125,
            };
            let _ = ContainerState::update(dir, |s| {
                s.status = ContainerStatus::Exited;
                s.exit_code = Some(code);
                s.error = Some(e.to_string());
                s.finished = Some(now());
            });
            return Err(e);
        }
    };
    let pid = container.child.id();
    let ports = state.ports.clone();
    let recorded = ContainerState::update(dir, |s| {
        // the ports the kernel chose for `-p CTR`
        s.ports = ports;
        s.status = ContainerStatus::Running;
        // With their start times: the pids may be another process's by the time they are
        // read (our child is not reaped before `wait`, so its start time is the one read).
        s.pid = Some(Recorded::of(pid));
        s.supervisor = Some(Recorded::of(std::process::id()));
        s.exit_code = None;
        s.error = None;
        s.started = Some(now());
    });
    let state = match recorded {
        Ok((state, ())) => state,
        Err(e) => {
            // Unrecorded, it would run on unsupervised: it does not run.
            abandon(&mut container, dir, remap.is_some());
            return Err(e);
        }
    };
    started(&state);
    let mut forwarding = None;
    let serving = (|| -> Result<_> {
        forwarding = Some(ports::forward(pid, listeners, &exe)?);
        Ok(match (console_ours, &io) {
            (Some(socket), Io::Log(log)) => {
                let master = tty::receive_master(&socket)?;
                runtime::forward_signals(pid, None);
                (Some(crate::attach::serve(master, log, dir)?), None)
            }
            (Some(socket), _) => {
                let master = tty::receive_master(&socket)?;
                tty::resize(&master);
                let raw = tty::RawMode::enter();
                let winch_master = master.try_clone().map_err(sys("pty"))?;
                runtime::forward_signals(pid, Some(Box::new(move || tty::resize(&winch_master))));
                (Some(tty::proxy(master)?), Some(raw))
            }
            (None, _) => {
                runtime::forward_signals(pid, None);
                (None, None)
            }
        })
    })();
    let (output, _raw) = match serving {
        Ok(serving) => serving,
        // Its ports or its terminal cannot be served: it does not run on unsupervised.
        Err(e) => {
            abandon(&mut container, dir, remap.is_some());
            let _ = ContainerState::update(dir, |s| {
                s.status = ContainerStatus::Exited;
                s.exit_code = Some(125);
                s.error = Some(e.to_string());
                s.finished = Some(now());
            });
            return Err(e);
        }
    };
    let _ = std::fs::remove_file(dir.join(crate::health::FILE));
    let health = state
        .healthcheck
        .clone()
        .map(|check| crate::health::watch(dir.to_path_buf(), exe.clone(), &state, check));
    let code = container.wait();
    if let Some(stop) = health {
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    // Its ports are free again (a restart policy listens on them anew).
    drop(forwarding);
    let code = code?;
    if let Some(out) = output {
        let _ = out.join();
    }
    for t in tees {
        let _ = t.join();
    }
    let oom = container.cgroup.oom_killed();
    let _ = container.cleanup();
    if remap.is_some() {
        crate::idmap::unmount_rootfs(dir);
    }
    // The record as it is now (`img rename`, `img stop` may have changed it meanwhile).
    ContainerState::update(dir, |s| {
        s.status = ContainerStatus::Exited;
        s.exit_code = Some(code);
        s.finished = Some(now());
        if oom {
            s.error = Some("killed by the kernel: out of memory (--memory)".into());
        }
    })?;
    Ok(code)
}

/// Stop a container that cannot be supervised: kill it, reap it, remove its cgroup and (a
/// remapped one's) rootfs mount.
fn abandon(container: &mut crate::Container, dir: &Path, remapped: bool) {
    container.child.kill();
    let _ = container.wait();
    let _ = container.cleanup();
    if remapped {
        crate::idmap::unmount_rootfs(dir);
    }
}

/// Copy what the container writes on `from` to our stdout (or stderr) and to `log`, until
/// every writer has closed it.
fn tee(
    from: std::os::fd::OwnedFd,
    mut log: std::fs::File,
    stderr: bool,
) -> std::thread::JoinHandle<()> {
    use std::io::{Read, Write};
    std::thread::spawn(move || {
        let mut from = std::fs::File::from(from);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let _ = log.write_all(&buf[..n]);
            let _ = if stderr {
                std::io::stderr().write_all(&buf[..n])
            } else {
                let mut out = std::io::stdout();
                out.write_all(&buf[..n]).and_then(|()| out.flush())
            };
        }
    })
}

/// Record containers whose process died with their supervisor (img killed, machine crash) as
/// exited, remove their cgroups and, for `--rm` ones, their directories; remove directories a
/// killed `run` or `rm` left half made or half removed ([`ContainerState::sweep`]) and cgroups
/// left by containers that no longer exist. Returns how many it fixed. A recorded pid that another
/// process has now counts as dead ([`Recorded::identity`]).
pub fn reap(root: &Path) -> usize {
    let mut fixed = 0;
    let known: Vec<String> = ContainerState::list(root)
        .into_iter()
        .map(|(dir, s)| {
            let dead_supervisor = !s.supervisor_alive();
            if (s.status == ContainerStatus::Running && !s.is_running()
                || s.status == ContainerStatus::Restarting)
                && dead_supervisor
            {
                fixed += 1;
                let _ = crate::cgroup::Cgroup::existing(&s.id).remove();
                // A remapped container's rootfs is mounted in the host's namespace.
                crate::idmap::unmount_rootfs(&dir);
                if s.auto_remove {
                    let _ = ContainerState::remove_dir(&dir);
                } else {
                    let _ = ContainerState::update(&dir, |s| {
                        s.status = ContainerStatus::Exited;
                        s.finished = Some(now());
                        s.error = Some("its supervisor died; the exit code is unknown".into());
                    });
                }
            }
            // Made, but its maker (a `run` or `start`) died before it ran: its cgroup (made
            // just before the start) goes, and with --rm the record too.
            if s.status == ContainerStatus::Created && s.supervisor.is_some() && dead_supervisor {
                fixed += 1;
                let _ = crate::cgroup::Cgroup::existing(&s.id).remove();
                crate::idmap::unmount_rootfs(&dir);
                if s.auto_remove {
                    let _ = ContainerState::remove_dir(&dir);
                }
            }
            s.id
        })
        .collect();
    fixed += ContainerState::sweep(root);
    fixed += crate::cgroup::Cgroup::remove_orphans(&known);
    fixed
}

/// Now, RFC 3339 (as the binary writes `created`).
fn now() -> String {
    jiff::Timestamp::now().to_string()
}
