//! End-to-end tests of issue 10 (PID reuse): a pid kept in a container's `state.json` is
//! signalled, and counted as alive, only while it is still the process img recorded (its
//! start time, field 22 of `/proc/PID/stat`, kept next to it).
//!
//! A detached container's record is rewritten so that its pid names an unrelated live process
//! (a `sleep` child of the test) while keeping the container's start time, as if the container
//! had exited and the kernel had given its pid to another process: `stop`, `kill` and `rm -f`
//! must leave that process alone and say why. A record without start times (written by an
//! older img) must not be signalled either. The real container is cleaned up after.
//!
//! Needs root (namespaces, overlay mounts, cgroups); without it each test says why and
//! returns. Outcomes are read from `/proc` directly, not through img.

mod support;

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Run, TestRoot, cgroup_dirs, is_root, testbed};

/// State (field 3) and start time (field 22) of `/proc/PID/stat`, read here without img: the
/// command name (field 2) may hold spaces and parentheses, so fields count from the last `)`.
fn stat(pid: u64) -> Option<(char, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some((
        fields.first()?.chars().next()?,
        fields.get(22 - 3)?.parse().ok()?,
    ))
}

/// Whether the process `pid` that started at `start` is still there and not a zombie.
fn alive_since(pid: u64, start: u64) -> bool {
    stat(pid).is_some_and(|(state, s)| s == start && !matches!(state, 'Z' | 'X'))
}

/// The signals pending for `pid` (`SigPnd` and `ShdPnd` of `/proc/PID/status`), or-ed.
fn pending_signals(pid: u64) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    status
        .lines()
        .filter_map(|l| {
            l.strip_prefix("SigPnd:")
                .or_else(|| l.strip_prefix("ShdPnd:"))
        })
        .map(|v| u64::from_str_radix(v.trim(), 16).expect("a hex signal mask"))
        .fold(0, |a, b| a | b)
}

/// Assert that `pid` (started at `start`) was not signalled: it still runs, is still asleep
/// (a process a fatal signal reached is dying: running, a zombie, or gone), and has no signal
/// pending. The img commands have exited by now, so any signal they sent has arrived.
fn assert_untouched(pid: u64, start: u64, after: &str) {
    let state = stat(pid);
    assert!(
        alive_since(pid, start),
        "pid {pid} was killed by {after}: {state:?}"
    );
    assert_eq!(state.map(|s| s.0), Some('S'), "pid {pid} after {after}");
    assert_eq!(
        pending_signals(pid),
        0,
        "pid {pid} has a signal pending after {after}"
    );
}

/// Call `f` every 20 ms until it holds; panic after `secs` seconds.
fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A detached `sleep 1000` container, its record as img wrote it, and the way back to it: on
/// drop the record is restored and the container removed with `rm -f`.
struct Container {
    root: TestRoot,
    id: String,
    dir: PathBuf,
    /// `state.json` as img wrote it.
    original: Vec<u8>,
    /// The container's PID 1 and its start time.
    pid: u64,
    start: u64,
    /// Its supervisor and the supervisor's start time.
    supervisor: u64,
    supervisor_start: u64,
}

impl Container {
    /// Run one (root only: such tests are ignored unless built by root).
    fn run(test: &str) -> Container {
        if !is_root() {
            panic!("{test}: containers need root (namespaces, overlay, cgroups)");
        }
        let busybox = testbed().plain_ref("busybox:latest");
        let root = TestRoot::new(&format!("pid-reuse-{test}"));
        let run = root.run(&["run", "-d", &busybox, "sleep", "1000"]);
        run.assert_ok();
        let id = run.stdout.trim().to_string();
        assert_eq!(id.len(), 64, "run -d printed no id: {run}");
        let dir = root.path.join("containers").join(&id);
        let original = fs::read(dir.join("state.json")).expect("state.json");
        let state: Value = serde_json::from_slice(&original).expect("state.json is JSON");
        assert_eq!(state["status"], "running", "{state}");
        let number = |key: &str| {
            state[key]
                .as_u64()
                .unwrap_or_else(|| panic!("state.json has no {key}: {state}"))
        };
        let c = Container {
            pid: number("pid"),
            start: number("pid_start_time"),
            supervisor: number("supervisor"),
            supervisor_start: number("supervisor_start_time"),
            root,
            id,
            dir,
            original,
        };
        // The start times recorded are those /proc shows for the pids.
        assert_eq!(stat(c.pid).map(|s| s.1), Some(c.start), "{state}");
        assert_eq!(
            stat(c.supervisor).map(|s| s.1),
            Some(c.supervisor_start),
            "{state}"
        );
        c
    }

    /// `img --root ROOT ARGS…`, asserting it did not panic.
    fn img(&self, args: &[&str]) -> Run {
        let run = self.root.run(args);
        assert!(!run.stderr.contains("panicked"), "img panicked: {run}");
        run
    }

    /// Replace `state.json` with `edit` applied to the record img wrote.
    fn rewrite(&self, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
        let mut state: Value = serde_json::from_slice(&self.original).unwrap();
        edit(state.as_object_mut().unwrap());
        fs::write(
            self.dir.join("state.json"),
            serde_json::to_vec_pretty(&state).unwrap(),
        )
        .unwrap();
    }

    /// Whether `img ps -q` lists it as running.
    fn listed_running(&self) -> bool {
        let run = self.img(&["ps", "-q"]);
        run.assert_ok();
        run.stdout.lines().any(|l| l == &self.id[..12])
    }

    /// Whether the real container (its PID 1) still runs.
    fn really_runs(&self) -> bool {
        alive_since(self.pid, self.start)
    }

    /// Put the record img wrote back, then `rm -f` the container: it must be gone for real,
    /// its process, supervisor, directory and cgroups.
    fn clean_up(&self) {
        fs::write(self.dir.join("state.json"), &self.original).unwrap();
        let run = self.img(&["rm", "-f", &self.id]);
        run.assert_ok();
        assert_eq!(run.stdout, format!("{}\n", self.id), "{run}");
        assert!(!self.dir.exists(), "rm -f left {}", self.dir.display());
        assert!(!self.really_runs(), "rm -f left pid {} running", self.pid);
        wait_until("the supervisor to end", 30, || {
            !alive_since(self.supervisor, self.supervisor_start)
        });
        let left: Vec<PathBuf> = cgroup_dirs(&self.id)
            .into_iter()
            .filter(|d| d.exists())
            .collect();
        assert!(left.is_empty(), "cgroups left behind: {left:?}");
    }
}

impl Drop for Container {
    /// Never leave the container running behind a failed test.
    fn drop(&mut self) {
        if self.dir.exists() {
            let _ = fs::write(self.dir.join("state.json"), &self.original);
            let _ = self.root.run(&["rm", "-f", &self.id]);
        }
    }
}

/// An unrelated process of the test: a `sleep` child, killed and reaped on drop.
struct Bystander {
    child: Child,
    pid: u64,
    start: u64,
}

impl Bystander {
    /// A `sleep` whose start time differs from `not_at` (clock ticks are coarse: one started
    /// within the same tick as the container would be the same process to anyone).
    fn spawn(not_at: u64) -> Bystander {
        loop {
            let mut child = Command::new("sleep").arg("1000").spawn().expect("sleep");
            let pid = u64::from(child.id());
            let start = stat(pid).expect("the sleep's stat").1;
            if start != not_at {
                return Bystander { child, pid, start };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Assert it is still running and was not signalled.
    fn assert_untouched(&mut self, after: &str) {
        assert_eq!(
            self.child.try_wait().expect("try_wait"),
            None,
            "the unrelated process {} ended after {after}",
            self.pid
        );
        assert_untouched(self.pid, self.start, after);
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn a_recycled_pid_is_never_signalled() {
    let c = Container::run("recycled");
    let mut bystander = Bystander::spawn(c.start);
    let b = bystander.pid.to_string();
    // The container's pid now names the bystander; the recorded start time is the
    // container's, so the two cannot be taken for each other.
    c.rewrite(|s| {
        s.insert("pid".into(), Value::from(bystander.pid));
    });
    let mentions_the_mismatch = |run: &Run| {
        let err = &run.stderr;
        err.contains(&format!("pid {b} now belongs to another process"))
            && err.contains(&format!("the recorded process at {}", c.start))
            && err.contains("not signalled")
    };

    // The container is seen as exited, as it would really be: not running, not listed.
    assert!(
        !c.listed_running(),
        "ps lists a container whose pid is recycled"
    );
    let inspect = c.root.json(&["container", "inspect", "--json", &c.id]);
    assert_eq!(inspect["State"]["Running"], false, "{inspect}");
    assert_eq!(inspect["State"]["Pid"], Value::Null, "{inspect}");
    bystander.assert_untouched("ps and inspect");

    // stop: nothing to stop (it has exited), the mismatch said, the bystander unharmed.
    let run = c.img(&["stop", "-t", "1", &c.id]);
    run.assert_ok();
    assert_eq!(run.stdout, format!("{}\n", c.id), "{run}");
    assert!(mentions_the_mismatch(&run), "{run}");
    bystander.assert_untouched("img stop");
    assert!(c.really_runs(), "img stop reached the real container");

    // kill: the container is not running, and the bystander is not signalled.
    {
        for signal in [None, Some("TERM")] {
            let mut args = vec!["kill"];
            if let Some(signal) = signal {
                args.extend(["-s", signal]);
            }
            args.push(&c.id);
            let run = c.img(&args);
            run.assert_failed();
            assert!(run.stderr.contains("is not running"), "{run}");
            assert!(mentions_the_mismatch(&run), "{run}");
            bystander.assert_untouched("img kill");
        }
    }

    // rm -f: the bystander is not killed; the directory is kept, since the supervisor (still
    // alive: the real container runs) has not recorded an exit.
    let run = c.img(&["rm", "-f", &c.id]);
    run.assert_failed();
    assert!(mentions_the_mismatch(&run), "{run}");
    assert!(
        run.stderr.contains(&format!(
            "its supervisor (pid {}) has not recorded its exit yet: not removed",
            c.supervisor
        )),
        "{run}"
    );
    assert!(
        c.dir.is_dir(),
        "rm -f removed the directory of a supervised container"
    );
    bystander.assert_untouched("img rm -f");
    assert!(c.really_runs(), "img rm -f reached the real container");

    // With the true record back, the real container goes, and the bystander stays.
    c.clean_up();
    bystander.assert_untouched("the clean-up");
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn a_record_without_start_times_is_not_signalled() {
    let c = Container::run("old-record");
    // As an older img wrote it: pids without start times.
    c.rewrite(|s| {
        s.remove("pid_start_time");
        s.remove("supervisor_start_time");
    });
    let p = c.pid.to_string();
    let says_unproven = |run: &Run| {
        run.stderr.contains(&format!(
            "pid {p} cannot be proven to be the recorded process"
        )) && run.stderr.contains("older img")
            && run.stderr.contains("not signalled")
    };

    // It may be running: it is not declared gone (ps lists it, reap leaves it).
    assert!(
        c.listed_running(),
        "ps dropped a container it cannot prove gone"
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&fs::read(c.dir.join("state.json")).unwrap()).unwrap()["status"],
        "running"
    );

    let run = c.img(&["stop", "-t", "1", &c.id]);
    run.assert_failed();
    assert!(says_unproven(&run), "{run}");
    assert_untouched(c.pid, c.start, "img stop");

    {
        let run = c.img(&["kill", &c.id]);
        run.assert_failed();
        assert!(says_unproven(&run), "{run}");
        assert_untouched(c.pid, c.start, "img kill");
    }

    let run = c.img(&["rm", "-f", &c.id]);
    run.assert_failed();
    assert!(says_unproven(&run), "{run}");
    assert!(
        c.dir.is_dir(),
        "rm -f removed a container it could not stop"
    );
    assert_untouched(c.pid, c.start, "img rm -f");

    c.clean_up();
}
