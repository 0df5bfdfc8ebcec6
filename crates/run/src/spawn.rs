//! Starting init inside its namespaces with one `clone(2)`: every namespace exists before
//! init runs, a new PID namespace included (init is its PID 1). Without root, the user
//! namespace comes with them and owns them; the parent has `newuidmap`/`newgidmap` write its
//! maps while the child waits, so init is exec'd as the namespace's root and keeps its
//! capabilities there (an exec before the maps would drop them).

use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::sys;
use crate::userns::IdMap;
use crate::{Error, Result};

/// Where one of the child's standard descriptors comes from.
#[derive(Debug)]
pub enum Stdio {
    /// Ours, as it is.
    Inherit,
    /// `/dev/null`.
    Null,
    /// This open file.
    Fd(OwnedFd),
}

impl From<std::fs::File> for Stdio {
    fn from(file: std::fs::File) -> Stdio {
        Stdio::Fd(file.into())
    }
}

/// What to start.
#[derive(Debug)]
pub struct Spawn<'a> {
    /// The program.
    pub exe: &'a Path,
    /// Its arguments after its name.
    pub args: &'a [&'a OsStr],
    /// Its stdin, stdout and stderr.
    pub stdio: [Stdio; 3],
    /// Further descriptors it gets: each open file at the given number.
    pub fds: Vec<(OwnedFd, i32)>,
    /// `CLONE_NEW*` flags.
    pub namespaces: i32,
    /// With `CLONE_NEWUSER`: the maps written before the program runs.
    pub maps: Option<(&'a [IdMap], &'a [IdMap])>,
    /// Namespaces (`/proc/PID/ns/*` descriptors) the child joins before it runs, in order: a
    /// user namespace first, which then lets it join the ones that namespace owns.
    pub join: Vec<OwnedFd>,
}

/// A started child, ours to wait for.
#[derive(Debug)]
pub struct Process {
    pid: u32,
    status: Option<i32>,
}

impl Process {
    /// Its pid (in our PID namespace).
    pub fn id(&self) -> u32 {
        self.pid
    }

    /// Wait for it to end: its exit code, or 128 + the signal that killed it (docker's).
    pub fn wait(&mut self) -> Result<i32> {
        if let Some(code) = self.status {
            return Ok(code);
        }
        let mut status = 0;
        loop {
            // SAFETY: waitpid on our own child with a plain status word.
            let r = unsafe { libc::waitpid(self.pid as libc::pid_t, &mut status, 0) };
            if r >= 0 {
                break;
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(sys("waiting for the container")(e));
            }
        }
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        };
        self.status = Some(code);
        Ok(code)
    }

    /// SIGKILL it (unless it has been waited for: its pid may be another's by now).
    pub fn kill(&self) {
        if self.status.is_none() {
            // SAFETY: a signal to our own unreaped child.
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}

/// What the child does between clone and exec, all prepared beforehand: it may only make
/// async-signal-safe calls (the parent has other threads, whose locks it inherits held).
struct Plan {
    exe: CString,
    argv: Vec<*const libc::c_char>,
    /// (from, to): dup2'd in order; every `from` is 10 or above, so no `to` clobbers one.
    dups: Vec<(i32, i32)>,
    /// Read one byte from it before exec (the maps are written), when set.
    mapped: i32,
    /// The pipe's other end, closed first (so a parent that dies unheard ends the read).
    mapped_w: i32,
    /// Namespaces to join, in order.
    join: Vec<i32>,
    /// Where a failure is said: init's error pipe when the child gets one at fd 4, else its
    /// stderr.
    report: i32,
}

/// Start `spawn`; the child runs its program once its namespaces (and maps) are there.
pub fn spawn(spawn: Spawn<'_>) -> Result<Process> {
    let exe = c_string(spawn.exe.as_os_str())?;
    let args: Vec<CString> = std::iter::once(Ok(exe.clone()))
        .chain(spawn.args.iter().map(|a| c_string(a)))
        .collect::<Result<_>>()?;
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    // Every source at 10 or above (close-on-exec), held until the child has its copies.
    let mut held = Vec::new();
    let mut dups = Vec::new();
    for (to, io) in spawn.stdio.into_iter().enumerate() {
        let fd = match io {
            Stdio::Inherit => continue,
            Stdio::Null => std::fs::File::options()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map_err(sys("/dev/null"))?
                .into(),
            Stdio::Fd(fd) => fd,
        };
        let fd = high_fd(fd)?;
        dups.push((fd.as_raw_fd(), to as i32));
        held.push(fd);
    }
    for (fd, to) in spawn.fds {
        let fd = high_fd(fd)?;
        dups.push((fd.as_raw_fd(), to));
        held.push(fd);
    }
    // The namespaces too at 10 or above: the dup2s must not land on one first.
    let join: Vec<OwnedFd> = spawn.join.into_iter().map(high_fd).collect::<Result<_>>()?;
    let report = if dups.iter().any(|&(_, to)| to == crate::init::ERROR_FD) {
        crate::init::ERROR_FD
    } else {
        2
    };
    let mapped = match spawn.maps {
        Some(_) => Some(pipe()?),
        None => None,
    };
    let plan = Plan {
        exe,
        argv,
        dups,
        mapped: mapped.as_ref().map_or(-1, |(r, _)| r.as_raw_fd()),
        mapped_w: mapped.as_ref().map_or(-1, |(_, w)| w.as_raw_fd()),
        join: join.iter().map(AsRawFd::as_raw_fd).collect(),
        report,
    };
    let flags = spawn.namespaces as libc::c_ulong | libc::SIGCHLD as libc::c_ulong;
    // SAFETY: a fork-like clone (no new stack, no shared memory); the child runs only
    // `child`, which makes async-signal-safe calls on data prepared above and never returns.
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    if pid < 0 {
        return Err(sys("creating the container's namespaces (clone)")(
            std::io::Error::last_os_error(),
        ));
    }
    if pid == 0 {
        // SAFETY: we are the new child; see `child`.
        unsafe { child(&plan) }
    }
    drop(held);
    drop(join);
    let process = Process {
        pid: pid as u32,
        status: None,
    };
    if let (Some((uids, gids)), Some((r, w))) = (spawn.maps, mapped) {
        drop(r);
        let written = write_maps(process.pid, uids, gids);
        if let Err(e) = written {
            let mut process = process;
            process.kill();
            let _ = process.wait();
            return Err(e);
        }
        // The child goes on; if it has died meanwhile, its wait says so.
        let _ = rustix::io::write(&w, b"m");
    }
    Ok(process)
}

/// The child's side: descriptors in place, signals as a new process has them, wait for the
/// maps, exec. On failure it says why on fd 4 (init's error fd, when given) and exits 127.
///
/// # Safety
/// Only in the child of a fork-like clone; only async-signal-safe calls.
unsafe fn child(plan: &Plan) -> ! {
    // SAFETY (the whole body): plain system calls on descriptors and buffers the plan holds.
    unsafe {
        for &(from, to) in &plan.dups {
            if libc::dup2(from, to) < 0 {
                fail(
                    plan.report,
                    b"125 img: placing the container's descriptors failed",
                );
            }
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        for &ns in &plan.join {
            if libc::setns(ns, 0) != 0 {
                fail(
                    plan.report,
                    b"125 img: joining the container's namespaces failed",
                );
            }
        }
        if plan.mapped >= 0 {
            libc::close(plan.mapped_w);
            let mut byte = 0u8;
            let n = libc::read(plan.mapped, (&raw mut byte).cast(), 1);
            if n != 1 {
                fail(plan.report, b"125 img: the user namespace was not mapped");
            }
        }
        libc::execv(plan.exe.as_ptr(), plan.argv.as_ptr());
        fail(plan.report, b"127 img: executing the program failed")
    }
}

/// Report `message` on `fd` and exit 127.
///
/// # Safety
/// Async-signal-safe: write and _exit only.
unsafe fn fail(fd: i32, message: &[u8]) -> ! {
    // SAFETY: writing a static buffer, then exiting without running anything of the parent's.
    unsafe {
        libc::write(fd, message.as_ptr().cast(), message.len());
        libc::_exit(127)
    }
}

/// Have `newuidmap` and `newgidmap` (setuid helpers from shadow, Debian's `uidmap`) write
/// `pid`'s maps: they check the ranges against `/etc/subuid` and `/etc/subgid`.
fn write_maps(pid: u32, uids: &[IdMap], gids: &[IdMap]) -> Result<()> {
    for (tool, maps) in [("newuidmap", uids), ("newgidmap", gids)] {
        let mut cmd = std::process::Command::new(tool);
        cmd.arg(pid.to_string());
        for m in maps {
            cmd.args([
                m.container.to_string(),
                m.host.to_string(),
                m.size.to_string(),
            ]);
        }
        let out = cmd
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| {
                Error::Config(format!(
                    "running {tool} (a rootless container needs it: apt-get install uidmap): {e}"
                ))
            })?;
        if !out.status.success() {
            let said = String::from_utf8_lossy(&out.stderr);
            return Err(Error::Config(format!(
                "{tool} {pid} refused the maps {}: {}",
                crate::idmap::map_text(maps).trim().replace('\n', ", "),
                said.trim()
            )));
        }
    }
    Ok(())
}

fn c_string(s: &OsStr) -> Result<CString> {
    CString::new(s.as_bytes())
        .map_err(|_| Error::Config(format!("{s:?}: a NUL byte in an argument")))
}

/// A pipe whose ends are at fd 10 or above (so dup2 onto 0 to 6 cannot clobber them),
/// close-on-exec.
pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(crate::error::errno("pipe"))?;
    Ok((high_fd(r)?, high_fd(w)?))
}

/// The same open file at a descriptor of 10 or above, close-on-exec.
pub(crate) fn high_fd(fd: OwnedFd) -> Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new fd we then own.
    let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    if n < 0 {
        return Err(sys("fcntl")(std::io::Error::last_os_error()));
    }
    // SAFETY: `n` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}
