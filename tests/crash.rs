//! Crash-consistency drills (issue 10): img is killed with SIGKILL at many points of `pull`,
//! `pull --unpack`, `unpack`, snapshot preparation, `run`, `run -d`, `rm`, `rmi` and `gc`,
//! and after every kill the store must recover: the next command does not hang on a lock,
//! `img fsck` is clean (at once, or after the command is run again), the command run again
//! completes, `img gc` sweeps what the dead process left (temp files, unfinished snapshots),
//! no mount stays on the host, and every container record is one `img ps` (its reap) and
//! `img rm` resolve, with no cgroup left for a container that is not running.
//!
//! Kill points are chosen by state, not time:
//! - `At::Syscall` runs img under `strace -f -P PATH -e inject=CALL:signal=KILL:when=N`: the
//!   kernel-level call number N (counted per thread) of CALL on PATH kills the process, e.g.
//!   the first `openat` of `blobs/sha512` (the fsync of `blobs/` just before `set_ref`), the
//!   `rename` of a temp file over `index.json`, the N-th `unlinkat` while `rm` removes a
//!   container's directory;
//! - `At::State` polls the store and kills as soon as a condition holds (an ingest file exists,
//!   N blobs are committed, a snapshot is being prepared, a container record appeared).
//!
//! Points picked from a seeded generator come on top (the seed is printed; `IMG_CRASH_SEED`
//! replays it). Each drill prints its kill points; each test asserts its minimum count, which
//! add up to more than 50. `IMG_CRASH_SOAK_SECS` makes the gc soak longer than its CI minute.
#![allow(clippy::type_complexity)]

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::{Run, TestRoot, cgroup_dirs, testbed};

/// How long any one command may take before the drill calls it hung (a stale lock).
const DEADLINE: Duration = Duration::from_secs(90);

/// Where a kill happens.
enum At<'a> {
    /// As soon as this holds of the store root (polled while img runs).
    State(&'a dyn Fn(&Path) -> bool),
    /// At the `nth` call (per thread) of `call` whose path or fd is `path` (any path when
    /// `None`), by strace's fault injection.
    Syscall {
        call: &'a str,
        path: Option<PathBuf>,
        nth: u32,
    },
}

impl At<'_> {
    fn describe(&self, root: &Path) -> String {
        match self {
            At::State(_) => "state".into(),
            At::Syscall { call, path, nth } => match path {
                Some(p) => format!(
                    "{call}#{nth} on ROOT/{}",
                    p.strip_prefix(root).unwrap_or(p).display()
                ),
                None => format!("{call}#{nth}"),
            },
        }
    }
}

/// A small deterministic generator (xorshift64*), seeded from `IMG_CRASH_SEED` or the clock.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("IMG_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("crash drill seed: IMG_CRASH_SEED={seed}");
        Rng(seed.max(1))
    }

    fn below(&mut self, n: u32) -> u32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as u32 % n.max(1)
    }

    /// A number in `lo..=hi`.
    fn within(&mut self, lo: u32, hi: u32) -> u32 {
        lo + self.below(hi - lo + 1)
    }
}

/// One drill: a store root, a scratch directory for outputs, and the tally of kill points.
struct Drill {
    name: &'static str,
    root: TestRoot,
    scratch: PathBuf,
    killed: Vec<String>,
    missed: Vec<String>,
    runs: u64,
}

impl Drill {
    fn new(name: &'static str) -> Drill {
        Drill::with_root(name, TestRoot::new(&format!("crash-{name}")))
    }

    /// A drill on a store root of the caller's choice.
    fn with_root(name: &'static str, root: TestRoot) -> Drill {
        let scratch = PathBuf::from(format!("{}.scratch", root.path.display()));
        fs::create_dir_all(&scratch).unwrap();
        let drill = Drill {
            name,
            root,
            scratch,
            killed: Vec::new(),
            missed: Vec::new(),
            runs: 0,
        };
        // The store exists before the first kill, so strace's paths resolve.
        drill.ok(&["images", "-q"]);
        drill
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path.join(rel)
    }

    /// Output files for the next command (not pipes: a detached supervisor keeps its copies).
    fn outputs(&mut self) -> (PathBuf, PathBuf) {
        self.runs += 1;
        (
            self.scratch.join(format!("{}.out", self.runs)),
            self.scratch.join(format!("{}.err", self.runs)),
        )
    }

    /// Run img on the store, within the deadline.
    fn img(&mut self, args: &[&str]) -> Run {
        let (out, err) = self.outputs();
        let mut cmd = self.root.command(args);
        cmd.stdout(fs::File::create(&out).unwrap())
            .stderr(fs::File::create(&err).unwrap());
        let mut child = cmd.spawn().expect("cannot run img");
        let cmdline = format!("img {}", args.join(" "));
        let status = wait_within(&mut child, &cmdline);
        let run = Run {
            cmdline,
            code: status.code().unwrap_or(-1),
            stdout: fs::read_to_string(&out).unwrap_or_default(),
            stderr: fs::read_to_string(&err).unwrap_or_default(),
        };
        assert!(!run.stderr.contains("panicked"), "img panicked: {run}");
        run
    }

    fn ok(&self, args: &[&str]) -> String {
        // The setup path: no deadline bookkeeping needed beyond the harness's own.
        self.root.ok(args)
    }

    /// Run `args` and kill it at `at`; true when it was killed there, false when it finished
    /// first (the point was not reached: counted as missed, not as a kill point).
    fn kill(&mut self, label: &str, args: &[&str], at: At) -> bool {
        let what = format!(
            "{label}: img {} [{}]",
            args.join(" "),
            at.describe(&self.root.path)
        );
        let (out, err) = self.outputs();
        let killed = match &at {
            At::State(cond) => {
                let mut cmd = self.root.command(args);
                cmd.stdout(fs::File::create(&out).unwrap())
                    .stderr(fs::File::create(&err).unwrap());
                let mut child = cmd.spawn().expect("cannot run img");
                let deadline = Instant::now() + DEADLINE;
                loop {
                    if cond(&self.root.path) {
                        // SIGKILL
                        let _ = child.kill();
                        let status = child.wait().unwrap();
                        break status.signal() == Some(9);
                    }
                    if child.try_wait().unwrap().is_some() {
                        break false;
                    }
                    assert!(Instant::now() < deadline, "{what}: hung");
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            At::Syscall { call, path, nth } => {
                let mut cmd = Command::new("strace");
                cmd.args(["-f", "-qq", "-o", "/dev/null"]);
                if let Some(p) = path {
                    cmd.arg("-P").arg(p);
                }
                cmd.arg("-e")
                    .arg(format!("trace={call}"))
                    .arg("-e")
                    .arg(format!("inject={call}:signal=KILL:when={nth}"))
                    .arg(env!("CARGO_BIN_EXE_img"))
                    .arg("--root")
                    .arg(&self.root.path)
                    .args(args)
                    .env_remove("IMG_ROOT")
                    .stdin(Stdio::null())
                    .stdout(fs::File::create(&out).unwrap())
                    .stderr(fs::File::create(&err).unwrap());
                let mut child = cmd.spawn().expect("cannot run strace");
                let status = wait_within(&mut child, &what);
                // strace ends as its tracee did: killed by SIGKILL, or 128 + 9.
                status.signal() == Some(9) || status.code() == Some(137)
            }
        };
        let stderr = fs::read_to_string(&err).unwrap_or_default();
        assert!(
            !stderr.contains("panicked"),
            "{what}: img panicked:\n{stderr}"
        );
        if killed {
            eprintln!("[{}] killed   {what}", self.name);
            self.killed.push(what);
        } else {
            eprintln!("[{}] finished {what} (point not reached)", self.name);
            self.missed.push(what);
        }
        killed
    }

    /// After a kill: nothing hangs, a re-run of `redo` (when `needed` says the work is not
    /// done) completes, fsck is clean, gc sweeps what the dead process left, no mount or
    /// cgroup or unresolved container record is left.
    fn recover(&mut self, redo: &[&str], needed: bool) {
        // The next command does not wait forever on a lock the dead process held.
        let first = self.img(&["fsck", "--json"]);
        if needed {
            let again = self.img(redo);
            assert_eq!(again.code, 0, "after a kill, the re-run failed: {again}");
        }
        self.assert_fsck_clean("after the re-run");
        self.assert_containers_resolved();
        let gc = self.img(&["gc"]);
        assert_eq!(gc.code, 0, "gc after a kill: {gc}");
        self.assert_swept();
        self.assert_fsck_clean("after gc");
        self.assert_no_host_mounts();
        let _ = first;
    }

    fn assert_fsck_clean(&mut self, when: &str) {
        let run = self.img(&["fsck", "--json"]);
        let report: Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("fsck --json {when}: not JSON ({e}): {run}"));
        assert_eq!(
            report["problems"],
            serde_json::json!([]),
            "fsck {when}: {run}"
        );
        assert_eq!(run.code, 0, "fsck {when}: {run}");
    }

    /// After `img gc`: no temp file of a blob, no unfinished snapshot, no temp file of
    /// `index.json` left by a dead writer.
    fn assert_swept(&self) {
        let ingest: Vec<_> = read_names(&self.path("ingest"));
        assert!(ingest.is_empty(), "gc left ingest files: {ingest:?}");
        let tmp: Vec<_> = read_names(&self.path("snapshots/tmp"));
        assert!(tmp.is_empty(), "gc left unfinished snapshots: {tmp:?}");
        let dots: Vec<_> = read_names(&self.root.path)
            .into_iter()
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(
            dots.is_empty(),
            "temp files left in the store root: {dots:?}"
        );
        for snap in read_names(&self.path("snapshots/sha256")) {
            let dir = self.path("snapshots/sha256").join(&snap);
            assert!(
                dir.join("meta.json").is_file() && dir.join("fs").is_dir(),
                "snapshot {snap} is incomplete"
            );
        }
    }

    /// No mount under the store root is visible on the host (containers mount in their own
    /// namespace; a dead img must not leave one behind).
    fn assert_no_host_mounts(&self) {
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = self.root.path.display().to_string();
        let ours: Vec<&str> = info.lines().filter(|l| l.contains(&root)).collect();
        assert!(ours.is_empty(), "mounts left under the store: {ours:#?}");
    }

    /// After `img ps -a` (which reaps): every directory under `containers/` is a readable
    /// record; a record says running only when its process is; a container that is not
    /// running has no cgroup.
    fn assert_containers_resolved(&mut self) {
        let ps = self.img(&["ps", "-a", "--json"]);
        assert_eq!(ps.code, 0, "{ps}");
        for name in read_names(&self.path("containers")) {
            let dir = self.path("containers").join(&name);
            let state: Value = fs::read(dir.join("state.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_else(|| {
                    panic!(
                        "containers/{name} has no readable state.json after `img ps` (its reap): {:?}",
                        read_names(&dir)
                    )
                });
            let running = state["status"] == "running";
            let pid = state["pid"].as_u64();
            if running {
                let pid = pid.expect("a running record has a pid");
                assert!(
                    Path::new(&format!("/proc/{pid}")).exists(),
                    "containers/{name} says running but pid {pid} is gone: {state}"
                );
            } else {
                for cg in cgroup_dirs(&name) {
                    assert!(
                        !cg.exists(),
                        "container {name} is {} but its cgroup {} is left",
                        state["status"],
                        cg.display()
                    );
                }
            }
        }
    }

    /// Remove every container (`rm -f`), checking nothing of them stays.
    fn remove_containers(&mut self) {
        let ids: Vec<String> = read_names(&self.path("containers"));
        for id in &ids {
            let rm = self.img(&["rm", "-f", id]);
            assert_eq!(rm.code, 0, "{rm}");
        }
        let left = read_names(&self.path("containers"));
        assert!(left.is_empty(), "containers left after rm -f: {left:?}");
        for id in ids {
            for cg in cgroup_dirs(&id) {
                assert!(!cg.exists(), "cgroup {} left after rm -f", cg.display());
            }
        }
    }

    fn finish(self, minimum: usize) -> usize {
        eprintln!(
            "[{}] {} kill point(s), {} not reached",
            self.name,
            self.killed.len(),
            self.missed.len()
        );
        assert!(
            self.killed.len() >= minimum,
            "[{}] only {} kill points reached (want {minimum}); not reached: {:#?}",
            self.name,
            self.killed.len(),
            self.missed
        );
        let _ = fs::remove_dir_all(&self.scratch);
        self.killed.len()
    }
}

fn wait_within(child: &mut Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {DEADLINE:?} (a stale lock?)");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn read_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

fn count(dir: &Path) -> usize {
    fs::read_dir(dir).map_or(0, |e| e.count())
}

fn blobs(root: &Path) -> usize {
    count(&root.join("blobs/sha256"))
}

fn has_ref(drill: &Drill, name: &str) -> bool {
    !drill.root.entries_named(name).is_empty()
}

// ---------------------------------------------------------------------------------------
// pull

#[test]
fn pull_killed_at_every_step_recovers() {
    let tb = testbed();
    let image = tb.plain_ref("redis:7");
    let mut rng = Rng::new();
    let mut drill = Drill::new("pull");
    let pull = ["pull", "-q", image.as_str()];
    // How many blobs a complete pull stores.
    drill.ok(&pull);
    let total = blobs(&drill.root.path);
    let root = drill.root.path.clone();

    let mut points: Vec<(String, Box<dyn Fn(&Path) -> bool>)> = vec![(
        "an ingest file exists".into(),
        Box::new(|r: &Path| count(&r.join("ingest")) > 0),
    )];
    for n in 1..total {
        points.push((
            format!("{n} blob(s) committed"),
            Box::new(move |r: &Path| blobs(r) >= n),
        ));
    }
    let mut syscalls: Vec<(String, &str, Option<PathBuf>, u32)> = vec![
        (
            "taking the gc lock shared".into(),
            "openat",
            Some(root.join("locks/gc.lock")),
            1,
        ),
        (
            "syncing blobs/ before set_ref".into(),
            "openat",
            Some(root.join("blobs/sha512")),
            1,
        ),
        (
            "set_ref under index.lock".into(),
            "openat",
            Some(root.join("locks/index.lock")),
            1,
        ),
        ("the first blob commit".into(), "rename", None, 1),
        ("a second commit on a thread".into(), "rename", None, 2),
        ("an fsync".into(), "fsync", None, rng.within(1, 4)),
    ];
    for _ in 0..3 {
        syscalls.push(("random write".into(), "write", None, rng.within(1, 120)));
    }
    for (label, cond) in &points {
        reset(&mut drill);
        drill.kill(label, &pull, At::State(cond.as_ref()));
        let needed = !has_ref(&drill, &image);
        drill.recover(&pull, needed);
        assert!(has_ref(&drill, &image));
    }
    for (label, call, path, nth) in syscalls {
        reset(&mut drill);
        drill.kill(&label, &pull, At::Syscall { call, path, nth });
        let needed = !has_ref(&drill, &image);
        drill.recover(&pull, needed);
        assert!(has_ref(&drill, &image));
    }
    drill.finish(10);
}

/// Back to an empty store (every reference removed, gc'd).
fn reset(drill: &mut Drill) {
    for name in drill.root.ref_names() {
        let rmi = drill.img(&["rmi", &name]);
        assert_eq!(rmi.code, 0, "{rmi}");
    }
    let gc = drill.img(&["gc"]);
    assert_eq!(gc.code, 0, "{gc}");
    assert_eq!(blobs(&drill.root.path), 0, "gc left blobs");
}

// ---------------------------------------------------------------------------------------
// rmi

#[test]
fn rmi_killed_recovers() {
    let tb = testbed();
    let a = tb.plain_ref("busybox:latest");
    let b = tb.plain_ref("busybox:v2s2");
    let mut drill = Drill::new("rmi");
    let root = drill.root.path.clone();
    let points: Vec<(&str, Vec<&str>, &str, Option<PathBuf>, u32)> = vec![
        (
            "renaming the new index.json",
            vec!["rmi", &a],
            "rename",
            None,
            1,
        ),
        (
            "reading index.json",
            vec!["rmi", &a],
            "openat",
            Some(root.join("index.json")),
            1,
        ),
        (
            "re-reading index.json under the lock",
            vec!["rmi", &a],
            "openat",
            Some(root.join("index.json")),
            2,
        ),
        (
            "taking index.lock",
            vec!["rmi", &a],
            "openat",
            Some(root.join("locks/index.lock")),
            1,
        ),
        (
            "the second of two names",
            vec!["rmi", &a, &b],
            "rename",
            None,
            2,
        ),
    ];
    for (label, args, call, path, nth) in points {
        drill.ok(&["pull", "-q", &a]);
        drill.ok(&["pull", "-q", &b]);
        drill.kill(label, &args, At::Syscall { call, path, nth });
        let left: Vec<&str> = args[1..]
            .iter()
            .copied()
            .filter(|n| has_ref(&drill, n))
            .collect();
        let mut redo = vec!["rmi"];
        redo.extend(&left);
        drill.recover(&redo, !left.is_empty());
        for name in &args[1..] {
            assert!(!has_ref(&drill, name), "{name} still named");
        }
    }
    drill.finish(5);
}

// ---------------------------------------------------------------------------------------
// gc

/// The number of entries under each snapshot's `fs/`, by chain ID.
fn snapshot_sizes(root: &Path) -> BTreeMap<String, usize> {
    fn walk(dir: &Path) -> usize {
        let mut n = 0;
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            n += 1;
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                n += walk(&e.path());
            }
        }
        n
    }
    read_names(&root.join("snapshots/sha256"))
        .into_iter()
        .map(|c| {
            let n = walk(&root.join("snapshots/sha256").join(&c).join("fs"));
            (c, n)
        })
        .collect()
}

/// Every snapshot present is as whole as the one `whole` recorded for its chain ID.
fn assert_snapshots_whole(root: &Path, whole: &BTreeMap<String, usize>) {
    for (chain, n) in snapshot_sizes(root) {
        if let Some(&want) = whole.get(&chain) {
            assert_eq!(
                n, want,
                "snapshot {chain} has {n} entries, a whole one {want}: a partial snapshot is named"
            );
        }
    }
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (overlay-form snapshots with whiteout devices): run as root, as tools/test does"
)]
fn gc_killed_recovers() {
    let tb = testbed();
    let redis = tb.plain_ref("redis:7");
    let busybox = tb.plain_ref("busybox:latest");
    let mut rng = Rng::new();
    let mut drill = Drill::new("gc");
    let root = drill.root.path.clone();
    drill.ok(&["pull", "-q", "--unpack", &busybox]);
    let kept = snapshot_sizes(&root);
    drill.ok(&["pull", "-q", "--unpack", &redis]);
    let whole = snapshot_sizes(&root);
    // What gc removes once redis is gone (a bound for the unlinkat counts).
    let redis_entries: usize = whole
        .iter()
        .filter(|(c, _)| !kept.contains_key(*c))
        .map(|(_, n)| n)
        .sum();
    let points: Vec<(String, &str, Option<PathBuf>, u32)> = vec![
        (
            "taking gc.lock".into(),
            "openat",
            Some(root.join("locks/gc.lock")),
            1,
        ),
        ("removing the first blob".into(), "unlink", None, 1),
        ("removing the third blob".into(), "unlink", None, 3),
        (
            "sweeping ingest/".into(),
            "openat",
            Some(root.join("ingest")),
            1,
        ),
        (
            "early in removing a snapshot".into(),
            "unlinkat",
            None,
            rng.within(2, 20),
        ),
        (
            "late in removing the snapshots".into(),
            "unlinkat",
            None,
            rng.within(redis_entries as u32 / 2, redis_entries as u32),
        ),
        (
            "random unlinkat".into(),
            "unlinkat",
            None,
            rng.within(1, redis_entries as u32),
        ),
    ];
    for (label, call, path, nth) in points {
        drill.ok(&["pull", "-q", "--unpack", &redis]);
        drill.ok(&["rmi", &redis]);
        drill.kill(&label, &["gc"], At::Syscall { call, path, nth });
        // A snapshot half removed must not pass for a whole one when the image comes back.
        drill.ok(&["pull", "-q", "--unpack", &redis]);
        assert_snapshots_whole(&root, &whole);
        drill.ok(&["rmi", &redis]);
        drill.recover(&["gc"], true);
        let run = drill.img(&["run", "--rm", &busybox, "true"]);
        assert_eq!(run.code, 0, "{run}");
    }
    drill.finish(6);
}

// ---------------------------------------------------------------------------------------
// pull --unpack, unpack, snapshot preparation by run

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (overlay-form snapshots with whiteout devices): run as root, as tools/test does"
)]
fn pull_unpack_killed_recovers() {
    let tb = testbed();
    let image = tb.plain_ref("redis:7");
    let mut rng = Rng::new();
    let mut drill = Drill::new("pull-unpack");
    let root = drill.root.path.clone();
    let pull = ["pull", "-q", "--unpack", image.as_str()];
    drill.ok(&pull);
    let whole = snapshot_sizes(&root);
    let layers = whole.len();
    let mut points: Vec<(String, Box<dyn Fn(&Path) -> bool>)> = vec![(
        "a snapshot being prepared".into(),
        Box::new(|r: &Path| count(&r.join("snapshots/tmp")) > 0),
    )];
    for n in 1..layers {
        points.push((
            format!("{n} snapshot(s) committed"),
            Box::new(move |r: &Path| count(&r.join("snapshots/sha256")) >= n),
        ));
    }
    for (label, cond) in &points {
        reset(&mut drill);
        drill.kill(label, &pull, At::State(cond.as_ref()));
        drill.recover(&pull, true);
        assert_snapshots_whole(&root, &whole);
        assert_eq!(snapshot_sizes(&root).len(), layers);
    }
    let syscalls: Vec<(String, &str, Option<PathBuf>, u32)> = vec![
        (
            "starting the first snapshot".into(),
            "mkdir",
            Some(root.join("snapshots/tmp")),
            1,
        ),
        (
            "starting a later snapshot".into(),
            "mkdir",
            Some(root.join("snapshots/tmp")),
            2,
        ),
        (
            "set_ref under index.lock".into(),
            "openat",
            Some(root.join("locks/index.lock")),
            1,
        ),
        (
            "random mkdirat in a layer".into(),
            "mkdirat",
            None,
            rng.within(1, 12),
        ),
        ("random write".into(), "write", None, rng.within(1, 60)),
    ];
    for (label, call, path, nth) in syscalls {
        reset(&mut drill);
        drill.kill(&label, &pull, At::Syscall { call, path, nth });
        drill.recover(&pull, true);
        assert_snapshots_whole(&root, &whole);
        assert_eq!(snapshot_sizes(&root).len(), layers);
    }
    drill.finish(7);
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (owners and device nodes of a rootfs): run as root, as tools/test does"
)]
fn unpack_killed_recovers() {
    let tb = testbed();
    let image = tb.plain_ref("redis:7");
    let mut rng = Rng::new();
    let mut drill = Drill::new("unpack");
    drill.ok(&["pull", "-q", &image]);
    let reference = drill.scratch.join("reference");
    drill.ok(&["unpack", &image, reference.to_str().unwrap()]);
    let whole = tree_size(&reference);
    let scratch = drill.scratch.clone();
    let mut n = 0;
    let mut next_target = |in_place: bool| {
        n += 1;
        let t = scratch.join(format!("rootfs-{n}"));
        if in_place {
            fs::create_dir(&t).unwrap();
        }
        t
    };
    let temps = |dir: &Path| -> Vec<String> {
        read_names(dir)
            .into_iter()
            .filter(|n| n.starts_with('.'))
            .collect()
    };
    let check = |drill: &mut Drill, target: &Path| {
        let t = target.to_str().unwrap();
        // A tree that exists is whole; one that does not is made by the re-run.
        if !target.exists() || count(target) == 0 {
            let run = drill.img(&["unpack", &image, t]);
            assert_eq!(run.code, 0, "unpack again after a kill: {run}");
        }
        assert_eq!(tree_size(target), whole, "{t} is not a whole rootfs");
        drill.recover(&["images", "-q"], false);
        let left = temps(&scratch);
        assert!(
            left.is_empty(),
            "temp trees left beside the target: {left:?}"
        );
    };
    let states: Vec<(&str, bool, Box<dyn Fn(&Path) -> bool>)> = vec![
        (
            "the temp tree appeared",
            false,
            Box::new(|s: &Path| !temps(s).is_empty()),
        ),
        (
            "the temp tree has 5 entries",
            false,
            Box::new(|s: &Path| temps(s).iter().any(|t| count(&s.join(t)) >= 5)),
        ),
    ];
    for (label, in_place, cond) in &states {
        let target = next_target(*in_place);
        let scratch = scratch.clone();
        let cond = move |_: &Path| cond(&scratch);
        drill.kill(
            label,
            &["unpack", &image, target.to_str().unwrap()],
            At::State(&cond),
        );
        check(&mut drill, &target);
    }
    let syscalls: Vec<(String, bool, &str, u32)> = vec![
        ("random mkdirat".into(), false, "mkdirat", rng.within(1, 10)),
        ("random write".into(), false, "write", rng.within(1, 60)),
        (
            "random symlinkat".into(),
            false,
            "symlinkat",
            rng.within(1, 20),
        ),
        (
            "into an empty directory: random mkdirat".into(),
            true,
            "mkdirat",
            rng.within(1, 10),
        ),
        (
            "into an empty directory: random write".into(),
            true,
            "write",
            rng.within(1, 60),
        ),
    ];
    for (label, in_place, call, nth) in syscalls {
        let target = next_target(in_place);
        drill.kill(
            &label,
            &["unpack", &image, target.to_str().unwrap()],
            At::Syscall {
                call,
                path: None,
                nth,
            },
        );
        check(&mut drill, &target);
    }
    drill.finish(6);
}

/// Entries under `dir`, recursively (symlinks not followed).
fn tree_size(dir: &Path) -> usize {
    let mut n = 0;
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        n += 1;
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            n += tree_size(&e.path());
        }
    }
    n
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups): run as root, as tools/test does"
)]
fn run_killed_while_preparing_recovers() {
    let tb = testbed();
    let image = tb.plain_ref("redis:7");
    let mut drill = Drill::new("run");
    let root = drill.root.path.clone();
    drill.ok(&["pull", "-q", "--unpack", &image]);
    let whole = snapshot_sizes(&root);
    let layers = whole.len();
    let run = ["run", "--rm", image.as_str(), "true"];
    let mut points: Vec<(String, Box<dyn Fn(&Path) -> bool>)> = vec![(
        "a snapshot being prepared".into(),
        Box::new(|r: &Path| count(&r.join("snapshots/tmp")) > 0),
    )];
    for n in 1..layers {
        points.push((
            format!("{n} snapshot(s) prepared"),
            Box::new(move |r: &Path| count(&r.join("snapshots/sha256")) >= n),
        ));
    }
    points.push((
        "the container directory appeared".into(),
        Box::new(|r: &Path| count(&r.join("containers")) > 0),
    ));
    points.push((
        "the container's config.json written".into(),
        Box::new(|r: &Path| {
            read_names(&r.join("containers"))
                .iter()
                .any(|c| r.join("containers").join(c).join("config.json").exists())
        }),
    ));
    points.push((
        "the container's state.json written".into(),
        Box::new(|r: &Path| {
            read_names(&r.join("containers"))
                .iter()
                .any(|c| r.join("containers").join(c).join("state.json").exists())
        }),
    ));
    for (label, cond) in &points {
        // The snapshots go (the image stays named but gc removes what is not whole: drop
        // them by hand), so `run` prepares them again.
        let _ = fs::remove_dir_all(root.join("snapshots/sha256"));
        drill.kill(label, &run, At::State(cond.as_ref()));
        drill.recover(&run, true);
        assert_snapshots_whole(&root, &whole);
        drill.remove_containers();
    }
    drill.finish(6);
}

// ---------------------------------------------------------------------------------------
// run -d, rm

/// The state.json of the only container (once it is readable).
fn only_state(root: &Path) -> Option<Value> {
    let names = read_names(&root.join("containers"));
    let name = names.iter().find(|n| !n.starts_with('.'))?;
    fs::read(root.join("containers").join(name).join("state.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

fn sigkill(pid: u64) {
    let out = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "kill -KILL {pid}: {out:?}");
}

/// Wait (within the deadline) until `cond` holds.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups): run as root, as tools/test does"
)]
fn run_detached_killed_recovers() {
    let tb = testbed();
    let image = tb.plain_ref("busybox:latest");
    let mut drill = Drill::new("run-d");
    drill.ok(&["pull", "-q", "--unpack", &image]);
    let run = ["run", "-d", image.as_str(), "sleep", "600"];
    let points: Vec<(&str, Box<dyn Fn(&Path) -> bool>)> = vec![
        (
            "the container directory appeared",
            Box::new(|r: &Path| count(&r.join("containers")) > 0),
        ),
        (
            "its state.json written",
            Box::new(|r: &Path| only_state(r).is_some()),
        ),
        (
            "the supervisor started",
            Box::new(|r: &Path| only_state(r).is_some_and(|s| s["status"] == "running")),
        ),
    ];
    for (label, cond) in &points {
        drill.kill(label, &run, At::State(cond.as_ref()));
        drill.recover(&run, true);
        drill.remove_containers();
    }
    // The supervisor killed while the container runs: ps still shows it running (it is),
    // rm -f stops and removes it, cgroup included.
    drill.ok(&run);
    let state = only_state(&drill.root.path).unwrap();
    sigkill(state["supervisor"].as_u64().unwrap());
    drill
        .killed
        .push("the supervisor of a running container".into());
    drill.recover(&["ps"], false);
    drill.remove_containers();
    // The supervisor killed, then the container's process dies: reap records it exited and
    // removes its cgroup.
    drill.ok(&run);
    let state = only_state(&drill.root.path).unwrap();
    sigkill(state["supervisor"].as_u64().unwrap());
    let pid = state["pid"].as_u64().unwrap();
    sigkill(pid);
    wait_until("the container's process to go", || {
        !Path::new(&format!("/proc/{pid}")).exists()
    });
    drill
        .killed
        .push("the supervisor, then the container's process".into());
    drill.recover(&["ps"], false);
    let after = only_state(&drill.root.path).unwrap();
    assert_eq!(after["status"], "exited", "{after}");
    drill.remove_containers();
    drill.finish(4); // "the supervisor started" may be missed: run -d exits once it sees "running"
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups): run as root, as tools/test does"
)]
fn rm_killed_recovers() {
    let tb = testbed();
    let image = tb.plain_ref("busybox:latest");
    let mut rng = Rng::new();
    let mut drill = Drill::new("rm");
    drill.ok(&["pull", "-q", "--unpack", &image]);
    let root = drill.root.path.clone();
    let files = 200;
    let script =
        format!("mkdir /d && cd /d && i=0; while [ $i -lt {files} ]; do : > f$i; i=$((i+1)); done");
    // rm renames the directory out of its name first, then removes it: unlinkat is counted
    // over the whole removal (rm is one thread).
    let mut points: Vec<(String, bool, &str, u32)> = vec![
        ("renaming the directory away".into(), true, "rename", 1),
        ("the first unlinkat".into(), false, "unlinkat", 1),
    ];
    for _ in 0..3 {
        points.push((
            "random unlinkat of the removal".into(),
            false,
            "unlinkat",
            rng.within(2, files),
        ));
    }
    for (label, on_dir, call, nth) in points {
        drill.ok(&["run", "--name", "c", &image, "sh", "-c", &script]);
        let id = only_state(&root).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let dir = root.join("containers").join(&id);
        drill.kill(
            &label,
            &["rm", "c"],
            At::Syscall {
                call,
                path: on_dir.then(|| dir.clone()),
                nth,
            },
        );
        // ps (its reap) and rm resolve whatever is left; the name is free again.
        let listed = drill.img(&["ps", "-a", "-q"]);
        let needed = listed.stdout.contains(&id[..12]);
        drill.recover(&["rm", "c"], needed);
        assert!(!dir.exists(), "containers/{id} left after rm");
        assert!(read_names(&root.join("containers")).is_empty());
    }
    // rm -f of a running container, killed once the container's process is gone.
    drill.ok(&["run", "-d", "--name", "c", &image, "sleep", "600"]);
    let pid = only_state(&root).unwrap()["pid"].as_u64().unwrap();
    let gone = move |_: &Path| !Path::new(&format!("/proc/{pid}")).exists();
    drill.kill(
        "rm -f, its container's process gone",
        &["rm", "-f", "c"],
        At::State(&gone),
    );
    let needed = !drill.img(&["ps", "-a", "-q"]).stdout.trim().is_empty();
    drill.recover(&["rm", "-f", "c"], needed);
    assert!(read_names(&root.join("containers")).is_empty());
    drill.finish(5);
}

// ---------------------------------------------------------------------------------------
// ENOSPC

/// A tmpfs of `bytes` mounted at `dir` for the test, unmounted (lazily) when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, bytes: u64) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        support::run_tool(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes},mode=0700"),
                "tmpfs",
                dir.to_str().unwrap(),
            ],
        );
        Tmpfs {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = fs::remove_dir(&self.dir);
    }
}

/// Bytes under `dir` (apparent sizes of regular files).
fn bytes_under(dir: &Path) -> u64 {
    let mut n = 0;
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(meta) = e.path().symlink_metadata() else {
            continue;
        };
        if meta.is_dir() {
            n += bytes_under(&e.path());
        } else if meta.is_file() {
            n += meta.len();
        }
    }
    n
}

/// A store on a tmpfs too small for what `args` writes: one clear line, a non-zero exit,
/// nothing half-written named; returns the store for more checks.
fn assert_no_space(drill: &mut Drill, args: &[&str]) {
    let run = drill.img(args);
    assert_ne!(run.code, 0, "expected no space: {run}");
    let line = support::assert_one_error_line(&run.stderr);
    eprintln!("img {}: {line}", args.join(" "));
    assert!(
        line.to_lowercase().contains("no space"),
        "the error does not say the device is full: {line}"
    );
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (mounts a tmpfs for the store): run as root, as tools/test does"
)]
fn a_full_disk_mid_pull_and_mid_unpack_names_nothing_half_written() {
    let tb = testbed();
    let image = tb.plain_ref("redis:7");
    // The sizes to fill: a store with the image pulled and unpacked, elsewhere.
    let sizing = Drill::new("enospc-sizing");
    sizing.ok(&["pull", "-q", "--unpack", &image]);
    let blob_bytes = bytes_under(&sizing.path("blobs"));
    let snapshot_bytes = bytes_under(&sizing.path("snapshots"));
    let rootfs = sizing.scratch.join("rootfs");
    sizing.ok(&["unpack", &image, rootfs.to_str().unwrap()]);
    let rootfs_bytes = bytes_under(&rootfs);
    drop(sizing);

    // Mid-pull: half the blobs fit.
    let base = TestRoot::new("crash-enospc");
    let fs_dir = base.path.clone();
    let small = Tmpfs::mount(&fs_dir, blob_bytes / 2);
    let store = fs_dir.join("store");
    let mut drill = Drill::with_root(
        "enospc",
        TestRoot {
            path: store.clone(),
        },
    );
    assert_no_space(&mut drill, &["pull", "-q", &image]);
    assert!(
        drill.root.entries_named(&image).is_empty(),
        "a reference was written on a full disk"
    );
    let ingest = read_names(&store.join("ingest"));
    assert!(
        ingest.is_empty(),
        "temp files left on a full disk: {ingest:?}"
    );
    drill.assert_fsck_clean("after a pull on a full disk");
    drop(drill);
    drop(small);

    // Mid-unpack (pull --unpack): the blobs fit, the snapshots do not. The image is whole
    // and named; no snapshot is named unless whole.
    let small = Tmpfs::mount(&fs_dir, blob_bytes + 256 * 1024 + snapshot_bytes / 3);
    let mut drill = Drill::with_root(
        "enospc",
        TestRoot {
            path: store.clone(),
        },
    );
    assert_no_space(&mut drill, &["pull", "-q", "--unpack", &image]);
    let ingest = read_names(&store.join("ingest"));
    assert!(
        ingest.is_empty(),
        "temp files left on a full disk: {ingest:?}"
    );
    let tmp = read_names(&store.join("snapshots/tmp"));
    assert!(tmp.is_empty(), "unfinished snapshots left: {tmp:?}");
    for snap in read_names(&store.join("snapshots/sha256")) {
        let dir = store.join("snapshots/sha256").join(&snap);
        assert!(
            dir.join("meta.json").is_file(),
            "snapshot {snap} is named but incomplete"
        );
    }
    drill.assert_fsck_clean("after pull --unpack on a full disk");

    // img unpack to a rootfs on the full disk: no target, no temp tree.
    let target = fs_dir.join("rootfs");
    let _ = rootfs_bytes;
    assert_no_space(&mut drill, &["unpack", &image, target.to_str().unwrap()]);
    assert!(!target.exists(), "a partial rootfs is named");
    let temps: Vec<String> = read_names(&fs_dir)
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(temps.is_empty(), "temp trees left: {temps:?}");
    drop(drill);
    drop(small);
    drop(base);
}

// ---------------------------------------------------------------------------------------
// gc soak

/// Run img on `root` from any thread, within the deadline; outputs go to files beside it.
fn img_on(root: &Path, args: &[&str]) -> Run {
    let base = PathBuf::from(format!("{}.soak-{}", root.display(), support::unique()));
    let (out, err) = (
        PathBuf::from(format!("{}.out", base.display())),
        PathBuf::from(format!("{}.err", base.display())),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_img"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("IMG_ROOT")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .expect("cannot run img");
    let cmdline = format!("img {}", args.join(" "));
    let status = wait_within(&mut child, &cmdline);
    let run = Run {
        cmdline,
        code: status.code().unwrap_or(-1),
        stdout: fs::read_to_string(&out).unwrap_or_default(),
        stderr: fs::read_to_string(&err).unwrap_or_default(),
    };
    let _ = fs::remove_file(&out);
    let _ = fs::remove_file(&err);
    assert!(!run.stderr.contains("panicked"), "img panicked: {run}");
    assert_eq!(run.code, 0, "during the gc soak: {run}");
    run
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups): run as root, as tools/test does"
)]
fn gc_beside_pulls_runs_and_rmi_loses_nothing_needed() {
    let tb = testbed();
    let busybox = tb.plain_ref("busybox:latest");
    let busybox2 = tb.plain_ref("busybox:v2s2");
    let redis = tb.plain_ref("redis:7");
    let zstd = tb.plain_ref("redis:7-zstd");
    let rounds: usize = std::env::var("IMG_CRASH_SOAK_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let started = Instant::now();
    let drill = Drill::new("soak");
    let root = drill.root.path.clone();
    drill.ok(&["pull", "-q", "--unpack", &busybox]);
    // A running container whose image is removed at once: only its record keeps its
    // snapshots (the same chain IDs as redis:7's, which the loop pulls and removes).
    drill.ok(&["pull", "-q", "--unpack", &zstd]);
    let whole = snapshot_sizes(&root);
    let keep = drill
        .ok(&[
            "run",
            "-d",
            "--name",
            "keep",
            "--entrypoint",
            "sleep",
            &zstd,
            "3600",
        ])
        .trim()
        .to_string();
    drill.ok(&["rmi", &zstd]);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let gcs = std::sync::atomic::AtomicUsize::new(0);
    let workers = 4;
    // Counted on drop, so a worker that panics also ends the gc loop (and the test fails).
    struct Finish<'a>(&'a std::sync::atomic::AtomicUsize);
    impl Drop for Finish<'_> {
        fn drop(&mut self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let finish = || Finish(&done);
    let finish = &finish;
    std::thread::scope(|s| {
        s.spawn(|| {
            let _done = finish();
            for _ in 0..rounds {
                img_on(&root, &["pull", "-q", "--unpack", &redis]);
                img_on(&root, &["run", "--rm", "--entrypoint", "true", &redis]);
                img_on(&root, &["rmi", &redis]);
            }
        });
        s.spawn(|| {
            let _done = finish();
            for _ in 0..rounds * 2 {
                img_on(&root, &["run", "--rm", &busybox, "true"]);
            }
        });
        s.spawn(|| {
            let _done = finish();
            for _ in 0..rounds {
                let id = img_on(&root, &["run", "-d", &busybox, "sleep", "600"]);
                img_on(&root, &["rm", "-f", id.stdout.trim()]);
            }
        });
        s.spawn(|| {
            let _done = finish();
            for _ in 0..rounds {
                img_on(&root, &["pull", "-q", &busybox2]);
                img_on(&root, &["run", "--rm", &busybox2, "true"]);
                img_on(&root, &["rmi", &busybox2]);
            }
        });
        s.spawn(|| {
            while done.load(std::sync::atomic::Ordering::SeqCst) < workers {
                img_on(&root, &["gc"]);
                gcs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
    });
    eprintln!(
        "[soak] {rounds} round(s), {} gc run(s) beside them",
        gcs.load(std::sync::atomic::Ordering::SeqCst)
    );
    let mut drill = drill;
    // Every image left is whole and runs.
    drill.assert_fsck_clean("after the soak");
    for name in drill.root.ref_names() {
        img_on(&root, &["run", "--rm", &name, "true"]);
    }
    // The running container kept its snapshots, whole, and its root still reads through
    // them.
    let state: Value = serde_json::from_slice(
        &fs::read(root.join("containers").join(&keep).join("state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["status"], "running", "{state}");
    let pid = state["pid"].as_u64().unwrap();
    for lower in state["lowers"].as_array().unwrap() {
        let fs_dir = Path::new(lower.as_str().unwrap());
        let snap = fs_dir.parent().unwrap();
        assert!(
            snap.join("meta.json").is_file() && fs_dir.is_dir(),
            "gc removed snapshot {} of a running container",
            snap.display()
        );
    }
    assert_snapshots_whole(&root, &whole);
    let server = PathBuf::from(format!("/proc/{pid}/root/usr/bin/redis-server"));
    assert!(
        server.exists(),
        "{} is gone from the running container",
        server.display()
    );
    drill.remove_containers();
    drill.recover(&["images", "-q"], false);
    eprintln!("[soak] took {:?}", started.elapsed());
}
