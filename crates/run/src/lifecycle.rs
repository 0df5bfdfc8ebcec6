//! A container's life after `run` made it, as a library: start it detached, signal, stop,
//! kill, wait for and remove it. The `img` commands are thin over these; a pipeline can call
//! them with the directory of a container (`ContainerState::find`) and our binary (which
//! serves `__supervise`, `__init` and `__exec`).
//!
//! Every signal goes through the recorded pid and its start time ([`Recorded`]): a pid that
//! is another process's by now is never signalled.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::state::{ContainerState, ContainerStatus, NotSignalled};
use crate::{Error, Result};

/// What became of a signal for a container.
#[derive(Debug)]
pub enum Sent {
    /// Its process has it.
    Yes,
    /// Its process has exited already.
    Exited,
    /// Its process has exited and its pid is another process's now: nothing was signalled.
    Recycled(NotSignalled),
}

/// Send `signal` to the container's process, if the recorded pid is still that process. A
/// pid that cannot be proven to be it (a record of an older img) or a refusal by the system
/// is an error: nothing was signalled, and the process may run.
pub fn send(state: &ContainerState, signal: i32) -> Result<Sent> {
    let Some(pid) = state.pid else {
        return Ok(Sent::Exited);
    };
    match pid.signal(signal) {
        Ok(()) => Ok(Sent::Yes),
        Err(NotSignalled::Gone { .. }) => Ok(Sent::Exited),
        Err(e @ NotSignalled::Recycled { .. }) => Ok(Sent::Recycled(e)),
        Err(e) => Err(Error::Config(format!("container {}: {e}", state.name))),
    }
}

/// The number of a signal given as a name (`KILL`, `SIGKILL`, `sigkill`) or a number.
///
/// ```
/// use img_run::lifecycle::signal_number;
/// assert_eq!(signal_number("sigterm").unwrap(), libc::SIGTERM);
/// assert_eq!(signal_number("9").unwrap(), 9);
/// assert!(signal_number("NOPE").is_err() && signal_number("65").is_err());
/// ```
pub fn signal_number(name: &str) -> Result<i32> {
    let invalid = || Error::Config(format!("invalid signal: {name}"));
    if let Ok(n) = name.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n).ok_or_else(invalid);
    }
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    Ok(match bare {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "CHLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        _ => return Err(invalid()),
    })
}

/// Wait up to `wait` for the container's process to exit; whether it did.
pub fn wait_exit(dir: &Path, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if !ContainerState::load(dir).is_ok_and(|s| s.is_running()) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    !ContainerState::load(dir).is_ok_and(|s| s.is_running())
}

/// Wait (a few seconds at most) for the supervisor to record the exit, so that `rm` and
/// `start` see a settled record.
pub fn settle(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match ContainerState::load(dir) {
            Ok(s) if s.status == ContainerStatus::Running && s.supervisor_alive() => {}
            _ => return,
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// [`settle`], and an error (the container not `done`) if its supervisor is still at work in
/// the directory after all.
pub fn settled(dir: &Path, done: &str) -> Result<()> {
    settle(dir);
    match ContainerState::load(dir) {
        Ok(now) if now.status == ContainerStatus::Running && now.supervisor_alive() => {
            Err(Error::Config(format!(
                "container {}: its supervisor (pid {}) has not recorded its exit yet: not {done}",
                now.name,
                now.supervisor.map_or(0, |s| s.pid)
            )))
        }
        _ => Ok(()),
    }
}

/// Stop the container in `dir`: `signal` (its `--stop-signal`, else SIGTERM), then SIGKILL
/// after `grace` seconds (its `--stop-timeout`, else 10). No restart policy brings it back.
/// `recycled` hears of a recorded pid found to be another process's (nothing was signalled:
/// the container had exited).
pub fn stop(
    dir: &Path,
    signal: Option<i32>,
    grace: Option<u64>,
    mut recycled: impl FnMut(&NotSignalled),
) -> Result<()> {
    // No restart policy brings back what `stop` stopped (under the lock: its supervisor may
    // be deciding to restart it right now).
    let (state, ()) = ContainerState::update(dir, |s| {
        if s.restart_policy.is_some() {
            s.stopped_by_user = true;
        }
    })?;
    if state.status != ContainerStatus::Running {
        return Ok(());
    }
    let signal = match (signal, state.stop_signal.as_deref()) {
        (Some(s), _) => s,
        (None, Some(name)) => signal_number(name)?,
        (None, None) => libc::SIGTERM,
    };
    let grace = grace.or(state.stop_timeout).unwrap_or(10);
    match send(&state, signal)? {
        Sent::Yes => {
            if !wait_exit(dir, Duration::from_secs(grace)) {
                match send(&state, libc::SIGKILL)? {
                    Sent::Yes => {
                        wait_exit(dir, Duration::from_secs(10));
                    }
                    Sent::Exited => {}
                    Sent::Recycled(e) => recycled(&e),
                }
            }
        }
        Sent::Exited => {}
        // It has exited, as `ps` shows it: stopped already.
        Sent::Recycled(e) => recycled(&e),
    }
    settle(dir);
    Ok(())
}

/// Send `signal` to the running container in `dir`; it does not wait.
pub fn kill(dir: &Path, signal: i32) -> Result<()> {
    let state = ContainerState::load(dir)?;
    let not_running = |why: String| {
        Err(Error::Config(format!(
            "container {} is not running{why}",
            state.name
        )))
    };
    if state.status != ContainerStatus::Running {
        return not_running(String::new());
    }
    match send(&state, signal)? {
        Sent::Yes => Ok(()),
        Sent::Exited => not_running(String::new()),
        Sent::Recycled(e) => not_running(format!(": {e}")),
    }
}

/// Remove the container in `dir` (its record, writable layer and cgroup). A running one is
/// refused unless `force` (docker's `rm -f`: SIGKILL first). `recycled` hears of a recorded
/// pid found to be another process's.
pub fn remove(dir: &Path, force: bool, mut recycled: impl FnMut(&NotSignalled)) -> Result<()> {
    let state = ContainerState::load(dir)?;
    if state.status == ContainerStatus::Running {
        if state.is_running() {
            if !force {
                return Err(Error::Config(format!(
                    "container {} is running: stop it first, or use rm -f",
                    state.name
                )));
            }
            match send(&state, libc::SIGKILL)? {
                Sent::Yes => {
                    wait_exit(dir, Duration::from_secs(10));
                }
                Sent::Exited => {}
                Sent::Recycled(e) => recycled(&e),
            }
        } else if let Some(Err(e @ NotSignalled::Recycled { .. })) = state.pid.map(|p| p.check()) {
            recycled(&e);
        }
        settled(dir, "removed")?;
    }
    // Its other processes die with its PID 1, but not at the same instant: until they have,
    // its overlay may still write into `upper/` and `work/` (a state, waited for, bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !state.pids().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = crate::cgroup::Cgroup::existing(&state.id).remove();
    ContainerState::remove_dir(dir)
}

/// Make `cmd` a process of its own that outlives us: no stdio, its own session.
pub fn detached(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid between fork and exec is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
}

/// Start the supervisor of the container in `dir` (`exe __supervise DIR`) in the background
/// and wait until its command runs, or the reason it could not start.
pub fn start_detached(dir: &Path, exe: &Path) -> Result<ContainerState> {
    let mut cmd = Command::new(exe);
    cmd.arg("__supervise").arg(dir);
    detached(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(crate::error::sys("starting the container's supervisor"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = ContainerState::load(dir)?;
        match state.status {
            // Running, or run already and waiting to run again (a restart policy).
            ContainerStatus::Running | ContainerStatus::Restarting => return Ok(state),
            // It ran and is done already (a short command): that is a success.
            ContainerStatus::Exited if state.error.is_none() && state.started.is_some() => {
                let _ = child.wait();
                return Ok(state);
            }
            ContainerStatus::Exited => {
                let _ = child.wait();
                if state.auto_remove {
                    let _ = ContainerState::remove_dir(dir);
                }
                return Err(Error::Config(state.error.unwrap_or_else(|| {
                    format!(
                        "the container exited at once with code {}",
                        state.exit_code.unwrap_or(-1)
                    )
                })));
            }
            ContainerStatus::Created => {}
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Error::Config(format!(
                "the container's supervisor ended before the container started ({status})"
            )));
        }
        if Instant::now() > deadline {
            return Err(Error::Config(
                "the container did not start within 60 s".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Start the stopped container in `dir` again, detached, on its kept writable layer (docker's
/// `start`); a running one is left as it is. `recycled` hears of a recorded pid found to be
/// another process's.
pub fn start(dir: &Path, exe: &Path, mut recycled: impl FnMut(&NotSignalled)) -> Result<()> {
    let mut state = ContainerState::load(dir)?;
    if state.is_running() {
        return Ok(());
    }
    if state.status == ContainerStatus::Running {
        if let Some(Err(e @ NotSignalled::Recycled { .. })) = state.pid.map(|p| p.check()) {
            recycled(&e);
        }
        settled(dir, "started")?;
        state = ContainerState::load(dir)?;
    }
    let was = state.status;
    let (_, fresh) = ContainerState::update(dir, |s| {
        // Another `start` got there first: one supervisor per container.
        if s.status != was || s.is_running() {
            return false;
        }
        s.status = ContainerStatus::Created;
        s.stopped_by_user = false;
        s.restart_count = 0;
        // Ours until its supervisor records itself: a reap sees whether we are alive.
        s.supervisor = Some(crate::state::Recorded::of(std::process::id()));
        true
    })?;
    if !fresh {
        return Err(Error::Config(format!(
            "container {} is being started by another command",
            state.name
        )));
    }
    start_detached(dir, exe)?;
    Ok(())
}

/// Wait for the container in `dir` to end; its exit code. A state, not a time: until the
/// record says it stopped (or it was removed, as `--rm` does, when there is no code left).
pub fn wait(dir: &Path) -> Result<i32> {
    loop {
        match ContainerState::load(dir) {
            Ok(s) if s.is_running() => {}
            Ok(s) if s.status != ContainerStatus::Exited && s.supervisor_alive() => {}
            Ok(s) => return Ok(s.exit_code.unwrap_or(-1)),
            Err(_) if !dir.exists() => {
                return Err(Error::Config(format!(
                    "container {} was removed before its exit code was read",
                    dir.file_name()
                        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
                )));
            }
            Err(e) => return Err(e),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
