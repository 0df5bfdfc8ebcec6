//! A process img recorded (a container's PID 1, its supervisor): its pid and start time. A pid
//! alone does not name a process for long: once it exits the kernel may hand its pid to
//! another. [`Recorded::identity`] is the one check of "is this still the process we
//! recorded" before a pid is counted as alive or signalled, and [`Recorded::signal`] checks
//! through a pidfd, so that the check and the signal cannot race (runc keeps
//! `init_process_start` for the same reason).

use std::os::fd::OwnedFd;

use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, Signal};

/// A process recorded in state.json: its pid, and its start time to tell it from a later
/// process given the same pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// Its pid (in img's PID namespace).
    pub pid: u32,
    /// When it started, in clock ticks after boot (field 22 of `/proc/PID/stat`); `None` in
    /// records written before img kept it.
    pub start_time: Option<u64>,
}

/// What a recorded pid names now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// The recorded process, alive.
    Same,
    /// No process has the pid, or a zombie (exited, not yet reaped) has it: the recorded
    /// process has exited.
    Gone,
    /// A process that started at another time has the pid: the recorded one has exited and
    /// its pid was given to another process.
    Recycled {
        /// When the process that has the pid now started, in clock ticks after boot.
        found: u64,
    },
    /// A live process has the pid, but the record has no start time to compare with (it was
    /// written by an older img): it cannot be proven to be the recorded process.
    Unproven,
}

impl Identity {
    /// Whether the recorded process may still be running: the same process, or one that
    /// cannot be told apart from it (an old record). Such a process is never signalled
    /// ([`Recorded::signal`]), but neither is it declared gone, which would let `reap`,
    /// `start` and `rm` act on a container that may run.
    pub fn is_alive(self) -> bool {
        matches!(self, Identity::Same | Identity::Unproven)
    }
}

/// Why [`Recorded::signal`] sent nothing. The messages name the pid and say that nothing was
/// signalled.
#[derive(Debug, thiserror::Error)]
pub enum NotSignalled {
    /// The process has exited.
    #[error("pid {pid} has exited: not signalled")]
    Gone {
        /// The recorded pid.
        pid: u32,
    },
    /// Another process has the pid now.
    #[error(
        "pid {pid} now belongs to another process (it started {found} clock ticks after boot, \
         the recorded process at {recorded}): the recorded process has exited, and pid {pid} \
         was not signalled"
    )]
    Recycled {
        /// The recorded pid.
        pid: u32,
        /// The recorded start time.
        recorded: u64,
        /// The start time of the process that has the pid now.
        found: u64,
    },
    /// The record has no start time (it was written by an older img).
    #[error(
        "pid {pid} cannot be proven to be the recorded process: its record has no start time \
         (state.json was written by an older img), so pid {pid} was not signalled"
    )]
    Unproven {
        /// The recorded pid.
        pid: u32,
    },
    /// The system refused (not the process's owner, no such signal).
    #[error("signalling pid {pid}: {cause}")]
    Failed {
        /// The recorded pid.
        pid: u32,
        /// Why.
        cause: std::io::Error,
    },
}

impl Recorded {
    /// Record the process `pid` as it is now: its start time is read from `/proc` (and left
    /// out when it cannot be: then the record proves nothing, and the process is never
    /// signalled through it).
    pub fn of(pid: u32) -> Recorded {
        Recorded {
            pid,
            start_time: Stat::read(pid).map(|s| s.start_time),
        }
    }

    /// What the recorded pid names now: the one check of "is this still the process we
    /// recorded", made before a recorded pid is counted as alive or signalled.
    pub fn identity(&self) -> Identity {
        let Some(now) = Stat::read(self.pid) else {
            return Identity::Gone;
        };
        match self.start_time {
            Some(recorded) if recorded != now.start_time => Identity::Recycled {
                found: now.start_time,
            },
            _ if now.is_dead() => Identity::Gone,
            Some(_) => Identity::Same,
            None => Identity::Unproven,
        }
    }

    /// [`identity`](Self::identity) as a verdict: `Ok` when the pid is the recorded process,
    /// else why it would not be signalled.
    pub fn check(&self) -> Result<(), NotSignalled> {
        let pid = self.pid;
        match self.identity() {
            Identity::Same => Ok(()),
            Identity::Gone => Err(NotSignalled::Gone { pid }),
            Identity::Recycled { found } => Err(NotSignalled::Recycled {
                pid,
                recorded: self.start_time.unwrap_or_default(),
                found,
            }),
            Identity::Unproven => Err(NotSignalled::Unproven { pid }),
        }
    }

    /// Send `signal` to the recorded process, only if it is still that process. A pidfd is
    /// opened first and the identity checked after: if it holds, the pidfd refers to the
    /// recorded process (which had the pid before the pidfd was opened and still has it), and
    /// a signal sent through it reaches that process or, if it has exited since, nobody. Only
    /// where the kernel has no pidfds (before 5.3) is the signal sent by pid, right after the
    /// check.
    pub fn signal(&self, signal: i32) -> Result<(), NotSignalled> {
        let pid = self.pid;
        let failed = |e: Errno| NotSignalled::Failed {
            pid,
            cause: e.into(),
        };
        let raw = i32::try_from(pid).ok().and_then(Pid::from_raw);
        let sig = Signal::from_named_raw(signal).ok_or_else(|| failed(Errno::INVAL))?;
        let pidfd: Result<OwnedFd, Errno> = match raw {
            Some(raw) => rustix::process::pidfd_open(raw, PidfdFlags::empty()),
            None => Err(Errno::SRCH),
        };
        self.check()?;
        let sent = match (pidfd, raw) {
            (Ok(fd), _) => rustix::process::pidfd_send_signal(&fd, sig),
            (Err(Errno::NOSYS), Some(raw)) => rustix::process::kill_process(raw, sig),
            (Err(e), _) => Err(e),
        };
        match sent {
            Ok(()) => Ok(()),
            Err(Errno::SRCH) => Err(NotSignalled::Gone { pid }),
            Err(e) => Err(failed(e)),
        }
    }
}

/// What `/proc/PID/stat` says of a process: the fields img reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// Field 1: the pid.
    pub pid: u32,
    /// Field 2: the command name, without its parentheses. It may hold spaces and
    /// parentheses itself (a process names itself), so it ends at the *last* `)`.
    pub comm: String,
    /// Field 3: `R` running, `S` sleeping, `Z` zombie, …
    pub state: char,
    /// Field 22: when it started, in clock ticks after boot.
    pub start_time: u64,
}

impl Stat {
    /// Parse the text of `/proc/PID/stat`.
    pub fn parse(text: &[u8]) -> Option<Stat> {
        let open = text.iter().position(|&b| b == b'(')?;
        let close = text.iter().rposition(|&b| b == b')')?;
        if close < open {
            return None;
        }
        let pid = std::str::from_utf8(&text[..open])
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let comm = String::from_utf8_lossy(&text[open + 1..close]).into_owned();
        let rest: Vec<&str> = std::str::from_utf8(&text[close + 1..])
            .ok()?
            .split_ascii_whitespace()
            .collect();
        // `rest` starts at field 3.
        let mut state = rest.first()?.chars();
        let (Some(c), None) = (state.next(), state.next()) else {
            return None;
        };
        Some(Stat {
            pid,
            comm,
            state: c,
            start_time: rest.get(22 - 3)?.parse().ok()?,
        })
    }

    /// Read `/proc/PID/stat`; `None` when there is no such process.
    pub fn read(pid: u32) -> Option<Stat> {
        Stat::parse(&std::fs::read(format!("/proc/{pid}/stat")).ok()?)
    }

    /// Whether it has exited: a zombie (`Z`, not yet reaped by its parent) or dead (`X`).
    pub fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::process::ExitStatusExt;
    use std::process::{Child, Command};
    use std::time::{Duration, Instant};

    /// A `/proc/PID/stat` line of 52 fields with `comm` as field 2, `state` as field 3 and
    /// `start` as field 22 (the others are their field numbers).
    fn stat_line(pid: u32, comm: &str, state: char, start: u64) -> String {
        let mut fields = vec![pid.to_string(), format!("({comm})"), state.to_string()];
        fields.extend((4..=52).map(|n| if n == 22 { start } else { n }.to_string()));
        fields.join(" ") + "\n"
    }

    fn sleeper() -> Child {
        Command::new("sleep")
            .arg("1000")
            .spawn()
            .expect("spawning sleep")
    }

    /// Poll `f` every 5 ms until it holds (panic after 10 s).
    fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "gave up waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn stat_parses_a_comm_with_spaces_and_parentheses() {
        for comm in [
            "sleep",
            "a b",
            "x) S 1 2 (y",
            ") (",
            "((",
            "))",
            "",
            "tab\there",
        ] {
            let line = stat_line(4242, comm, 'S', 987_654_321);
            let stat = Stat::parse(line.as_bytes()).unwrap_or_else(|| panic!("{line}"));
            assert_eq!(
                stat,
                Stat {
                    pid: 4242,
                    comm: comm.into(),
                    state: 'S',
                    start_time: 987_654_321,
                },
                "{line}"
            );
        }
        // Not UTF-8 in the name: the rest still parses.
        let text = stat_line(7, "", 'Z', 55);
        let mut line = b"7 (\xff\xfe)".to_vec();
        line.extend_from_slice(text.strip_prefix("7 ()").unwrap().as_bytes());
        let stat = Stat::parse(&line).unwrap();
        assert_eq!((stat.pid, stat.state, stat.start_time), (7, 'Z', 55));
        assert!(stat.is_dead());
    }

    #[test]
    fn stat_refuses_what_is_not_a_stat_line() {
        let full = stat_line(1, "init", 'S', 777);
        for bad in [
            "",
            "1 init S 2 3",
            "1 (init S 2 3",
            "1 init) S (2 3",
            "x (init) S 2 3",
            &full[..full.find(" 21 ").unwrap()],
            &full.replace(" S ", " SS "),
            &full.replace(" 777 ", " seven "),
        ] {
            assert_eq!(Stat::parse(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn stat_reads_a_real_thread_named_with_parentheses() {
        let name = "a) b (c";
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                tx.send(rustix::thread::gettid().as_raw_nonzero().get())
                    .unwrap();
                let _ = done_rx.recv();
            })
            .unwrap();
        let tid = rx.recv().unwrap();
        let path = format!("/proc/self/task/{tid}/stat");
        let stat = Stat::parse(&std::fs::read(&path).unwrap()).unwrap();
        drop(done_tx);
        thread.join().unwrap();
        assert_eq!(stat.pid, tid as u32);
        assert_eq!(stat.comm, name);
        let me = Stat::read(std::process::id()).unwrap();
        assert_eq!(me.pid, std::process::id());
        assert!(!me.is_dead());
        // A thread starts after its process.
        assert!(stat.start_time >= me.start_time && me.start_time > 0);
    }

    #[test]
    fn identity_tells_the_recorded_process_from_a_recycled_pid() {
        let me = Recorded::of(std::process::id());
        let start = me.start_time.expect("our own start time");
        assert_eq!(me.identity(), Identity::Same);
        let recycled = Recorded {
            start_time: Some(start + 1),
            ..me
        };
        assert_eq!(recycled.identity(), Identity::Recycled { found: start });
        assert!(!recycled.identity().is_alive());
        let old = Recorded {
            start_time: None,
            ..me
        };
        assert_eq!(old.identity(), Identity::Unproven);
        assert!(old.identity().is_alive());
    }

    #[test]
    fn identity_counts_a_zombie_and_a_reaped_process_as_gone() {
        let mut child = Command::new("true").spawn().unwrap();
        let recorded = Recorded::of(child.id());
        assert!(recorded.start_time.is_some());
        // Not waited for: once it exits it is a zombie, which counts as gone.
        wait_until("true to exit", || recorded.identity() != Identity::Same);
        assert_eq!(recorded.identity(), Identity::Gone);
        child.wait().unwrap();
        assert_eq!(recorded.identity(), Identity::Gone);
        assert!(matches!(
            recorded.signal(libc::SIGKILL),
            Err(NotSignalled::Gone { .. })
        ));
    }

    #[test]
    fn only_the_recorded_process_is_signalled() {
        let mut child = sleeper();
        let right = Recorded::of(child.id());
        let start = right.start_time.unwrap();
        // A record of another process that had the same pid: refused, and said so.
        let wrong = Recorded {
            start_time: Some(start.wrapping_sub(1)),
            ..right
        };
        let err = wrong.signal(libc::SIGKILL).unwrap_err();
        assert!(
            matches!(err, NotSignalled::Recycled { pid, recorded, found }
                if pid == child.id() && recorded == start - 1 && found == start),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains(&child.id().to_string()) && message.contains("not signalled"),
            "{message}"
        );
        // An old record without a start time: refused, and said so.
        let old = Recorded {
            start_time: None,
            ..right
        };
        let err = old.signal(libc::SIGKILL).unwrap_err();
        assert!(matches!(err, NotSignalled::Unproven { .. }), "{err:?}");
        assert!(err.to_string().contains("older img"), "{err}");
        assert_eq!(child.try_wait().unwrap(), None, "a refused signal was sent");
        assert_eq!(right.identity(), Identity::Same);
        // The right record is signalled.
        right.signal(libc::SIGKILL).unwrap();
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
        assert!(matches!(
            right.signal(libc::SIGKILL),
            Err(NotSignalled::Gone { .. })
        ));
    }
}
