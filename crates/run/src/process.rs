//! The last steps of init: descriptors, the working directory, and exec with docker's exit
//! codes.

use std::ffi::CString;
use std::path::Path;

use crate::error::{errno, sys};
use crate::{Error, Result};

/// Close every descriptor from `first` up: whatever the caller of img left open (a host
/// directory, a socket) must not reach the container (CVE-2024-21626's class). Done first
/// thing in init, before any path is looked up.
pub(crate) fn close_from(first: u32) -> Result<()> {
    // SAFETY: close_range on descriptors nobody in this fresh process uses (init has opened
    // nothing yet); no memory is passed.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0) };
    if r != 0 {
        return Err(sys("closing inherited descriptors")(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Close one descriptor if it is open.
pub(crate) fn close_one(fd: i32) {
    // SAFETY: closing a descriptor number we were handed and own; EBADF when it is not open.
    unsafe { libc::close(fd) };
}

/// Enter the working directory (made when missing) and check it is inside the container: a
/// path through a descriptor leaked from the host would land outside.
pub(crate) fn enter_cwd(cwd: &Path) -> Result<()> {
    let what = || format!("working directory {}", cwd.display());
    // After pivot_root `/` is the container's: made as a mount point is, through the image's
    // symlinks (a dangling one's target is made), as runc does.
    let root = crate::rootfs::Root::open(Path::new("/"))?;
    let dir = root.ensure(
        cwd,
        crate::rootfs::Create::Dir,
        crate::rootfs::Links::Follow,
    )?;
    rustix::process::fchdir(&dir).map_err(errno(what()))?;
    // getcwd fails (ENOENT, "(unreachable)") for a directory outside our root.
    match rustix::process::getcwd(Vec::new()) {
        Ok(_) => Ok(()),
        Err(_) => Err(Error::Config(format!(
            "{} is outside the container",
            what()
        ))),
    }
}

/// Find `args[0]` in the container's `PATH` and exec it; docker's 126/127 when it cannot be.
pub(crate) fn exec(args: &[String], env: &[String]) -> Result<std::convert::Infallible> {
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
    // Every descriptor from 3 up is close-on-exec by now (see `init`): a successful exec
    // closes the error pipe without a word.
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

/// `--init` (docker's, tini's job): stay PID 1 and run the command as our child; forward to
/// it every signal we get, reap every process the namespace hands us, and end with the
/// command's status (128 + the signal when killed by one). Called with the container's
/// privileges already dropped; we also make ourselves non-dumpable, so the container's
/// processes cannot reach us (or our binary, the host's) through `/proc/1`.
pub(crate) fn exec_under_init(args: &[String], env: &[String]) -> Result<std::convert::Infallible> {
    // SAFETY: signal masks, fork, prctl, sigwaitinfo, waitpid and kill on plain values; the
    // child only restores its mask and goes on to exec.
    let child = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_BLOCK, &all, &mut old);
        let child = libc::fork();
        if child < 0 {
            return Err(sys("fork for --init")(std::io::Error::last_os_error()));
        }
        if child == 0 {
            libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            return exec(args, env);
        }
        // The child's exec (or its report of why not) ends the parent's wait for a start.
        close_one(crate::init::ERROR_FD);
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        child
    };
    std::process::exit(forward_and_wait(child))
}

/// With every signal blocked: forward each signal we get to `child`, reap every child (as a
/// PID 1 must), and return `child`'s status as an exit code (128 + the signal when killed by
/// one). Used by `--init` and by `img exec`'s process outside the container.
pub(crate) fn forward_and_wait(child: i32) -> i32 {
    // SAFETY: sigwaitinfo, waitpid and kill on plain values and zeroed structures.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        loop {
            loop {
                let mut status = 0;
                let reaped = libc::waitpid(-1, &mut status, libc::WNOHANG);
                if reaped == child {
                    return if libc::WIFEXITED(status) {
                        libc::WEXITSTATUS(status)
                    } else {
                        128 + libc::WTERMSIG(status)
                    };
                }
                if reaped <= 0 {
                    break;
                }
            }
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let sig = libc::sigwaitinfo(&all, &mut info);
            if sig > 0 && sig != libc::SIGCHLD {
                libc::kill(child, sig);
            }
        }
    }
}
