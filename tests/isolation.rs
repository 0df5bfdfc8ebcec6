//! `img run` as a boundary an untrusted image cannot cross (issue 8): each test tries an
//! escape for real and checks it fails, from inside with a static probe (`tools/probe.c`,
//! built by the test into the test bed's directory and mounted read-only at `/probe`) and
//! from the host (`/proc/PID/cgroup`, file modes, canary files, `setpriv` as another user).
//! Where it matters the same attempt runs under `runc run` on the bundle `img run --bundle`
//! writes, which must carry the same protections.
//!
//! The classes, one test (or a few) each: descriptors the caller leaves open; device nodes;
//! seccomp; the image's symlinks (`hostile/*-symlink` fixtures of the test bed, aimed at the
//! host's `/var/tmp/img-victim`); a setuid file in a container's writable layer and the
//! store's modes; cgroups and the cgroup namespace; the session keyring; `/proc` options,
//! masked and read-only paths, and `--privileged`; `no_new_privs`, file capabilities and the
//! capability flags.
//!
//! Every test needs root (namespaces, overlay mounts, cgroups): built by another user they are
//! reported as ignored, with the reason (build.rs's `img_root`). The tools they use (gcc with a
//! static libc for the probe, runc, setcap, setpriv) are installed by tools/test; a missing
//! one fails the test with its name, never passes it.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Run, TestRoot, assert_one_error_line, cgroup_dirs, is_root, testbed, unique};

/// Held by every test while it runs containers: one at a time, so that the host-side views
/// (cgroups, the victim directory, the store modes) are this test's alone.
static SERIAL: Mutex<()> = Mutex::new(());

/// Where the `hostile/*-symlink` fixtures point (see `RUNTIME` in tools/testbed-fixtures.py).
const VICTIM: &str = "/var/tmp/img-victim";

/// docker's default bounding (and, for root, effective) set: its 14 capabilities.
const DEFAULT_CAPS: &str = "00000000a80425fb";

/// (Part of) a test cannot run on this machine: it fails, naming what is missing, rather than
/// passing without having tried the attack.
fn skipped(test: &str, reason: &str) -> ! {
    panic!("isolation::{test} cannot run here: {reason}")
}

/// Whether `program` can be run (found on PATH).
fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// `tools/probe.c` built static, once per source version: `$IMG_TB_DIR/probe-<hash>`. Err is
/// why it cannot be built here (no gcc, no static libc); a compile error panics.
fn probe() -> Result<PathBuf, String> {
    static PROBE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/probe.c");
            let source = fs::read(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
            let hash = support::sha256_hex(&source);
            let dest = testbed().dir.join(format!("probe-{}", &hash[..16]));
            if dest.exists() {
                return Ok(dest);
            }
            if !have("gcc") {
                return Err("gcc is not installed (apt-get install gcc libc6-dev)".into());
            }
            let libc = support::try_tool("gcc", &["-print-file-name=libc.a"]);
            if !Path::new(libc.stdout.trim()).is_absolute() {
                return Err("no static libc for gcc -static (apt-get install libc6-dev)".into());
            }
            let tmp = dest.with_file_name(format!("probe-{}.tmp-{}", &hash[..16], unique()));
            let build = support::try_tool(
                "gcc",
                &[
                    "-static",
                    "-O2",
                    "-Wall",
                    "-o",
                    tmp.to_str().unwrap(),
                    src.to_str().unwrap(),
                ],
            );
            assert!(build.code == 0, "tools/probe.c does not build: {build}");
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).unwrap();
            fs::rename(&tmp, &dest).unwrap();
            Ok(dest)
        })
        .clone()
}

/// The probe's `key=value` lines, in order.
fn fields(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The last value of `key` in the output of `run`; panics (showing the run) without one.
fn field(run: &Run, key: &str) -> String {
    fields(&run.stdout)
        .into_iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {key}= in the probe's output: {run}"))
}

/// Probe steps as one shell script: `echo @@NAME; /probe ARGS` for each (NAME, ARGS).
fn script(steps: &[(&str, &str)]) -> String {
    steps
        .iter()
        .map(|(name, args)| format!("echo '@@{name}'; /probe {args}; "))
        .collect()
}

/// The output of [`script`]: per step, its `key=value` lines.
struct Steps<'a> {
    run: &'a Run,
    steps: BTreeMap<String, BTreeMap<String, String>>,
}

impl<'a> Steps<'a> {
    fn of(run: &'a Run) -> Steps<'a> {
        let mut steps: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut current = String::new();
        for line in run.stdout.lines() {
            if let Some(name) = line.strip_prefix("@@") {
                current = name.to_string();
                steps.entry(current.clone()).or_default();
            } else if let Some((k, v)) = line.split_once('=') {
                steps
                    .entry(current.clone())
                    .or_default()
                    .insert(k.to_string(), v.to_string());
            }
        }
        Steps { run, steps }
    }

    /// The value of `key` in step `step`; panics (showing the run) without one.
    fn get(&self, step: &str, key: &str) -> &str {
        self.steps
            .get(step)
            .and_then(|s| s.get(key))
            .map(String::as_str)
            .unwrap_or_else(|| panic!("step {step} printed no {key}=: {}", self.run))
    }

    /// Assert `step` printed `key=want`.
    fn expect(&self, step: &str, key: &str, want: &str) {
        let got = self.get(step, key);
        assert_eq!(got, want, "step {step}: {key}: {}", self.run);
    }
}

/// `CapBnd` (or another line) of this test process's `/proc/self/status`: the host's sets.
fn host_status(key: &str) -> String {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in /proc/self/status"))
        .trim()
        .to_string()
}

/// Run the probe on the host itself (controls: what the attempt gives without img).
fn host_probe(probe: &Path, args: &[&str]) -> Run {
    support::try_tool(probe.to_str().unwrap(), args)
}

/// Leave `files` open in the child as the given descriptor numbers, without close-on-exec,
/// as a careless caller would.
fn leak_fds(cmd: &mut Command, files: &[(i32, &File)]) {
    // first copies numbered 100 and up, so that no source is another one's target
    let pairs: Vec<(OwnedFd, i32)> = files
        .iter()
        .map(|(n, f)| {
            // SAFETY: fcntl on a descriptor we own; the copy is owned by the OwnedFd.
            let copy = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 100) };
            assert!(
                copy >= 100,
                "F_DUPFD_CLOEXEC: {}",
                std::io::Error::last_os_error()
            );
            (unsafe { OwnedFd::from_raw_fd(copy) }, *n)
        })
        .collect();
    // SAFETY: dup2 is async-signal-safe; nothing is allocated between fork and exec. dup2
    // leaves the new descriptor without close-on-exec.
    unsafe {
        cmd.pre_exec(move || {
            for (from, to) in &pairs {
                if libc::dup2(from.as_raw_fd(), *to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Poll `f` until it holds; panics after `secs` seconds saying what was awaited.
fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One test's store root, busybox and the probe, remembering every container id it saw.
struct Bed {
    test: String,
    _serial: MutexGuard<'static, ()>,
    root: TestRoot,
    /// `127.0.0.1:5000/busybox:latest`.
    busybox: String,
    /// The static probe on the host.
    probe: PathBuf,
    /// `-v PROBE:/probe:ro`.
    probe_volume: String,
    ids: Mutex<BTreeSet<String>>,
}

impl Bed {
    /// A bed for the test function `test` with a fresh root under `target/test-roots`, or
    /// `None` (skip reported) when this machine cannot run it.
    fn new(test: &str) -> Option<Bed> {
        Bed::at(test, None)
    }

    /// The same with the store root at `path`.
    fn at(test: &str, path: Option<PathBuf>) -> Option<Bed> {
        if !is_root() {
            skipped(
                test,
                "img run needs root (namespaces, overlay mounts, cgroups)",
            );
        }
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let probe = match probe() {
            Ok(p) => p,
            Err(reason) => {
                skipped(test, &reason);
            }
        };
        let root = match path {
            Some(path) => TestRoot { path },
            // short: the overlay's mount options hold paths under it
            None => TestRoot::new(&format!("iso-{}", &test[..test.len().min(32)])),
        };
        Some(Bed {
            test: test.to_string(),
            _serial: serial,
            root,
            busybox: testbed().plain_ref("busybox:latest"),
            probe_volume: format!("{}:/probe:ro", probe.display()),
            probe,
            ids: Mutex::new(BTreeSet::new()),
        })
    }

    fn containers_dir(&self) -> PathBuf {
        self.root.path.join("containers")
    }

    fn container_ids(&self) -> BTreeSet<String> {
        support::container_ids(&self.root.path)
    }

    /// A scratch directory of this test (inside its root, removed with it).
    fn scratch(&self, name: &str) -> PathBuf {
        let dir = self.root.path.join(format!("scratch-{name}"));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Run an img command, watching `ROOT/containers/` meanwhile to learn the ids of the
    /// containers it makes (even those `--rm` removes again).
    fn img_command(&self, cmd: Command, cmdline: String) -> Run {
        let (run, seen) = support::run_watching(&self.root.path, cmd, cmdline);
        self.ids.lock().unwrap().extend(seen);
        run
    }

    fn cmdline(&self, args: &[&str]) -> String {
        format!("img --root {} {}", self.root.path.display(), args.join(" "))
    }

    /// `img --root ROOT ARGS…`.
    fn img(&self, args: &[&str]) -> Run {
        self.img_command(self.root.command(args), self.cmdline(args))
    }

    /// The arguments of `img run --rm -v PROBE:/probe:ro FLAGS… IMAGE CMD…`.
    fn run_args<'a>(&'a self, flags: &[&'a str], image: &'a str, cmd: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["run", "--rm", "-v", &self.probe_volume];
        args.extend(flags);
        args.push(image);
        args.extend(cmd);
        args
    }

    /// `img run --rm -v PROBE:/probe:ro FLAGS… IMAGE CMD…`.
    fn run(&self, flags: &[&str], image: &str, cmd: &[&str]) -> Run {
        self.img(&self.run_args(flags, image, cmd))
    }

    /// `/probe ARGS…` in busybox with `FLAGS…`, asserting it exited 0.
    fn probe(&self, flags: &[&str], args: &[&str]) -> Run {
        let mut cmd = vec!["/probe"];
        cmd.extend(args);
        let run = self.run(flags, &self.busybox.clone(), &cmd);
        run.assert_ok();
        run
    }

    /// `/probe ARGS…` in `image`, asserting it exited 0.
    fn probe_in(&self, image: &str, args: &[&str]) -> Run {
        let mut cmd = vec!["/probe"];
        cmd.extend(args);
        let run = self.run(&[], image, &cmd);
        run.assert_ok();
        run
    }

    /// [`script`] of `steps` in busybox with `FLAGS…`, asserting it exited 0.
    fn steps(&self, flags: &[&str], steps: &[(&str, &str)]) -> Run {
        let text = script(steps);
        let run = self.run(flags, &self.busybox.clone(), &["sh", "-c", &text]);
        run.assert_ok();
        run
    }

    /// `img run --bundle DIR -v PROBE:/probe:ro FLAGS… IMAGE CMD…`, then `runc run` on DIR;
    /// `None` (skip reported) without runc.
    fn runc(&self, flags: &[&str], image: &str, cmd: &[&str]) -> Option<Run> {
        if !have("runc") {
            skipped(
                &self.test,
                "the runc half: runc is not installed (apt-get install runc)",
            );
        }
        let bundle = self.root.path.join(format!("bundle-{}", unique()));
        let bundle_str = bundle.display().to_string();
        let mut args = vec!["run", "--bundle", &bundle_str, "-v", &self.probe_volume];
        args.extend(flags);
        args.push(image);
        args.extend(cmd);
        self.img(&args).assert_ok();
        let id = format!("img-isolation-{}", unique());
        let out = Command::new("runc")
            .args(["run", &id])
            .current_dir(&bundle)
            .stdin(Stdio::null())
            .output()
            .expect("cannot run runc");
        let _ = Command::new("runc")
            .args(["delete", "--force", &id])
            .stdin(Stdio::null())
            .output();
        Some(Run {
            cmdline: format!("cd {bundle_str} && runc run {id}"),
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// [`Bed::runc`] of [`script`] in busybox, asserting runc exited 0.
    fn runc_steps(&self, flags: &[&str], steps: &[(&str, &str)]) -> Option<Run> {
        let text = script(steps);
        let run = self.runc(flags, &self.busybox.clone(), &["sh", "-c", &text])?;
        run.assert_ok();
        Some(run)
    }

    /// `ROOT/containers/<id>/state.json`, parsed (Null while it cannot be read).
    fn state(&self, id: &str) -> Value {
        fs::read(self.containers_dir().join(id).join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    }

    /// No mount mentions the root and no cgroup of a container this test saw is left.
    fn assert_nothing_left(&self) {
        let root = self.root.path.display().to_string();
        let mounts = fs::read_to_string("/proc/mounts").expect("/proc/mounts");
        let ours: Vec<&str> = mounts.lines().filter(|l| l.contains(&root)).collect();
        assert!(ours.is_empty(), "mounts left behind:\n{}", ours.join("\n"));
        for id in self.ids.lock().unwrap().iter() {
            for dir in cgroup_dirs(id) {
                assert!(!dir.exists(), "cgroup {} was left behind", dir.display());
            }
        }
    }
}

impl Drop for Bed {
    /// Never leave a container running behind a test, passed or failed.
    fn drop(&mut self) {
        for id in self.container_ids() {
            if self.state(&id)["status"] == "running" {
                let _ = self.root.run(&["rm", "-f", &id]);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// 1. inherited descriptors (CVE-2024-21626)

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn descriptors_the_caller_left_open_do_not_reach_the_container() {
    let Some(bed) = Bed::new("descriptors_the_caller_left_open_do_not_reach_the_container") else {
        return;
    };
    let host_dir = bed.scratch("host-dir");
    let canary = format!("host-canary-{}", unique());
    fs::write(host_dir.join(&canary), "host\n").unwrap();
    let dir = File::open(&host_dir).unwrap();
    let slash = File::open("/").unwrap();
    let host_dir_str = host_dir.display().to_string();

    // the control: without img, the probe does see both
    let mut cmd = Command::new(&bed.probe);
    cmd.arg("fds");
    leak_fds(&mut cmd, &[(7, &dir), (8, &slash)]);
    let out = cmd.output().unwrap();
    let control = String::from_utf8_lossy(&out.stdout).into_owned();
    let control: BTreeMap<String, String> = fields(&control).into_iter().collect();
    assert_eq!(
        control.get("fd.7"),
        Some(&host_dir_str),
        "the leak does not work: {control:?}"
    );
    assert_eq!(control.get("fd.8").map(String::as_str), Some("/"));

    // img run with 7 and 8 open: the command sees 0, 1, 2 only
    let args = bed.run_args(&[], &bed.busybox, &["/probe", "fds"]);
    let mut cmd = bed.root.command(&args);
    leak_fds(&mut cmd, &[(7, &dir), (8, &slash)]);
    let run = bed.img_command(cmd, format!("{} 7<{host_dir_str} 8</", bed.cmdline(&args)));
    run.assert_ok();
    assert_eq!(field(&run, "fds"), "0,1,2", "{run}");
    assert!(!run.stdout.contains(&host_dir_str), "{run}");

    // -w /proc/self/fd/7: refused, or a directory of the container, never the host's
    let args = bed.run_args(&["-w", "/proc/self/fd/7"], &bed.busybox, &["/probe", "cwd"]);
    let mut cmd = bed.root.command(&args);
    leak_fds(&mut cmd, &[(7, &dir), (8, &slash)]);
    let run = bed.img_command(cmd, format!("{} 7<{host_dir_str} 8</", bed.cmdline(&args)));
    assert!(
        !run.stdout.contains(&canary) && !run.stdout.contains(&host_dir_str),
        "the working directory reached the host directory: {run}"
    );
    if run.code == 0 {
        let cwd = field(&run, "cwd");
        assert!(cwd.starts_with('/'), "cwd outside the root: {run}");
    } else {
        assert_eq!(run.code, 125, "{run}");
        let line = assert_one_error_line(&run.stderr);
        assert!(line.contains("/proc/self/fd/7"), "{line} should name it");
    }
    // the host directory is as it was
    let names: Vec<String> = fs::read_dir(&host_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![canary], "{}", host_dir.display());
    bed.assert_nothing_left();
}

// ---------------------------------------------------------------------------------------
// 2. devices

/// Device nodes the container may make but never open (docker: `c *:* m`, `b *:* m`). Only
/// the device cgroup stops root from opening kvm, loop-control and loop0 (img before issue 8
/// opened them); kmsg and mem would also need CAP_SYSLOG / CAP_SYS_RAWIO.
const FORBIDDEN_NODES: [(&str, &str); 6] = [
    ("kmsg", "mknod-open /tmp/n-kmsg c 1 11"),
    ("mem", "mknod-open /tmp/n-mem c 1 1"),
    ("kvm", "mknod-open /tmp/n-kvm c 10 232"),
    ("loop-control", "mknod-open /tmp/n-loopctl c 10 237"),
    ("loop0", "mknod-open /tmp/n-loop0 b 7 0"),
    ("sda", "mknod-open /tmp/n-sda b 8 0"),
];

/// Device nodes docker's rules allow, and the default `/dev`.
const ALLOWED_DEVICES: [(&str, &str); 8] = [
    ("own-null", "mknod-open /tmp/n-null c 1 3"),
    ("null", "use /dev/null"),
    ("zero", "use /dev/zero"),
    ("full", "use /dev/full"),
    ("random", "open /dev/random ro"),
    ("urandom", "open /dev/urandom ro"),
    ("ptmx", "open /dev/ptmx"),
    ("dev", "read /dev"),
];

/// What a container under docker's device rules gets from the steps above.
fn assert_docker_devices(steps: &Steps) {
    for (name, _) in FORBIDDEN_NODES {
        steps.expect(name, "mknod", "ok");
        steps.expect(name, "open", "EPERM");
    }
    steps.expect("own-null", "mknod", "ok");
    steps.expect("own-null", "open", "ok");
    for name in ["null", "zero"] {
        steps.expect(name, "open", "ok");
        steps.expect(name, "read", "ok");
        steps.expect(name, "write", "ok");
    }
    steps.expect("full", "write", "ENOSPC");
    for name in ["random", "urandom", "ptmx"] {
        steps.expect(name, "open", "ok");
    }
    let dev: BTreeSet<&str> = steps.get("dev", "names").split(',').collect();
    for host_only in ["kmsg", "mem", "kvm", "loop0", "loop-control", "sda"] {
        assert!(
            !dev.contains(host_only),
            "the container's /dev has {host_only}: {}",
            steps.run
        );
    }
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn only_dockers_devices_can_be_opened() {
    let Some(bed) = Bed::new("only_dockers_devices_can_be_opened") else {
        return;
    };
    let all: Vec<(&str, &str)> = FORBIDDEN_NODES
        .iter()
        .chain(ALLOWED_DEVICES.iter())
        .copied()
        .collect();
    let run = bed.steps(&[], &all);
    assert_docker_devices(&Steps::of(&run));

    // the same rules in the bundle, under runc
    if let Some(run) = bed.runc_steps(&[], &all) {
        assert_docker_devices(&Steps::of(&run));
    }

    // --device gives that one device (and its permissions), nothing more
    if !Path::new("/dev/loop-control").exists() {
        skipped(
            "only_dockers_devices_can_be_opened",
            "--device half: no /dev/loop-control here",
        );
    } else {
        let steps = [
            ("ro", "open /dev/myloop ro"),
            ("rw", "open /dev/myloop rw"),
            ("kmsg", "mknod-open /tmp/n-kmsg c 1 11"),
        ];
        let flags = ["--device", "/dev/loop-control:/dev/myloop:r"];
        let check = |run: &Run| {
            let s = Steps::of(run);
            s.expect("ro", "open", "ok");
            s.expect("rw", "open", "EPERM");
            s.expect("kmsg", "open", "EPERM");
        };
        check(&bed.steps(&flags, &steps));
        if let Some(run) = bed.runc_steps(&flags, &steps) {
            check(&run);
        }
        let run = bed.probe(
            &["--device", "/dev/loop-control"],
            &["open", "/dev/loop-control"],
        );
        assert_eq!(field(&run, "open"), "ok", "{run}");
    }
    bed.assert_nothing_left();
}

// ---------------------------------------------------------------------------------------
// 3. seccomp

/// What docker's default profile answers to the probe's `syscalls`, as root with docker's
/// capabilities.
const DOCKER_SYSCALLS: [(&str, &str); 11] = [
    ("keyctl", "EPERM"),
    ("add_key", "EPERM"),
    ("unshare_user", "EPERM"),
    ("perf_event_open", "EPERM"),
    ("io_uring_setup", "EPERM"),
    ("bpf", "EPERM"),
    ("socket_vsock", "EPERM"),
    ("clone3", "ENOSYS"),
    ("fork", "ok"),
    ("socket_inet", "ok"),
    ("mkdir", "ok"),
];

fn assert_docker_syscalls(run: &Run) {
    assert_eq!(field(run, "Seccomp"), "2", "a seccomp filter: {run}");
    for (name, want) in DOCKER_SYSCALLS {
        assert_eq!(field(run, name), want, "{name}: {run}");
    }
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn dockers_seccomp_profile_blocks_the_escape_syscalls() {
    let Some(bed) = Bed::new("dockers_seccomp_profile_blocks_the_escape_syscalls") else {
        return;
    };
    let probe_both = ["sh", "-c", "/probe status && /probe syscalls"];
    let busybox = bed.busybox.clone();

    let run = bed.run(&[], &busybox, &probe_both);
    run.assert_ok();
    assert_docker_syscalls(&run);

    // seccomp=unconfined: no filter, keyctl and clone3 work
    let run = bed.run(
        &["--security-opt", "seccomp=unconfined"],
        &busybox,
        &probe_both,
    );
    run.assert_ok();
    assert_eq!(field(&run, "Seccomp"), "0", "{run}");
    assert_eq!(field(&run, "keyctl"), "ok", "{run}");
    assert_eq!(field(&run, "clone3"), "ok", "{run}");

    // a profile of our own, in docker's format, instead of the default one
    let profile = bed.scratch("seccomp").join("profile.json");
    fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let run = bed.run(&["--security-opt", &opt], &busybox, &probe_both);
    run.assert_ok();
    assert_eq!(field(&run, "Seccomp"), "2", "{run}");
    assert_eq!(
        field(&run, "mkdir"),
        "EACCES",
        "the profile's errnoRet: {run}"
    );
    assert_eq!(
        field(&run, "keyctl"),
        "ok",
        "only that profile applies: {run}"
    );
    assert_eq!(field(&run, "fork"), "ok", "{run}");

    // CAP_SYS_ADMIN opens what docker's profile opens for it, and only that
    let run = bed.run(&["--cap-add", "SYS_ADMIN"], &busybox, &probe_both);
    run.assert_ok();
    assert_eq!(field(&run, "Seccomp"), "2", "{run}");
    assert_eq!(field(&run, "unshare_user"), "ok", "{run}");
    assert_eq!(field(&run, "clone3"), "ok", "{run}");
    assert_eq!(field(&run, "keyctl"), "EPERM", "{run}");

    // ordinary programs still work: a shell, a pipe, a subshell (fork), redis
    let run = bed.run(
        &[],
        &busybox,
        &["sh", "-c", "echo piped | cat; (echo forked); ls / | wc -l"],
    );
    run.assert_ok();
    assert!(run.stdout.starts_with("piped\nforked\n"), "{run}");
    let redis = testbed().plain_ref("redis:7");
    let run = bed.run(&[], &redis, &["redis-server", "--version"]);
    run.assert_ok();
    assert!(run.stdout.starts_with("Redis server v="), "{run}");

    // the bundle carries the same profile: runc answers the same
    if let Some(run) = bed.runc(&[], &busybox, &probe_both) {
        run.assert_ok();
        assert_docker_syscalls(&run);
    }
    bed.assert_nothing_left();
}

// ---------------------------------------------------------------------------------------
// 4. the image's symlinks (hostile/*-symlink fixtures, aimed at the host's /var/tmp/img-victim)

/// Held while the host's victim directory is planted and checked (other test processes):
/// the lock goes with the descriptor.
struct VictimLock(#[allow(dead_code)] File);

impl VictimLock {
    fn take() -> VictimLock {
        let file = File::create(format!("{VICTIM}.lock")).unwrap();
        // SAFETY: flock on a descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock {VICTIM}.lock");
        VictimLock(file)
    }
}

/// What the host's victim directory holds: canaries where the images' symlinks point. The
/// targets the images leave dangling (resolv.conf, data, wd) are absent: a runtime that
/// followed the symlink on the host would create them.
fn plant_victim() {
    let _ = fs::remove_dir_all(VICTIM);
    let v = Path::new(VICTIM);
    for d in ["dev", "proc", "sys", "pts", "shm"] {
        fs::create_dir_all(v.join(d)).unwrap();
        fs::write(v.join(d).join("canary"), format!("host {d} canary\n")).unwrap();
    }
    fs::write(v.join("hosts"), "10.9.9.9 host-victim-hosts\n").unwrap();
    fs::write(v.join("hostname"), "host-victim-hostname\n").unwrap();
    fs::write(
        v.join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\nvictim:x:4242:4242:host victim:/:/bin/sh\n",
    )
    .unwrap();
    fs::write(v.join("group"), "root:x:0:\nvictim:x:4242:\n").unwrap();
}

/// Everything about a tree: per path its type, mode, owner, size, mtime, inode and content.
fn tree_state(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(path) = todo.pop() {
        let meta =
            fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let what = if meta.is_dir() {
            todo.extend(fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            "dir".to_string()
        } else if meta.file_type().is_symlink() {
            format!("symlink {}", fs::read_link(&path).unwrap().display())
        } else if meta.is_file() {
            format!(
                "file {:?}",
                String::from_utf8_lossy(&fs::read(&path).unwrap())
            )
        } else {
            format!("special rdev {}", meta.rdev())
        };
        out.insert(
            path.strip_prefix(dir).unwrap().display().to_string(),
            format!(
                "{what} mode {:o} owner {}:{} size {} mtime {}.{} ino {}",
                meta.mode(),
                meta.uid(),
                meta.gid(),
                meta.len(),
                meta.mtime(),
                meta.mtime_nsec(),
                meta.ino()
            ),
        );
    }
    out
}

/// The `hostile.json` entry of a runtime fixture (see `RUNTIME` in tools/testbed-fixtures.py).
fn runtime_fixture(repo: &str) -> Value {
    support::hostile_json(testbed())["runtime"]
        .as_array()
        .expect("hostile.json has no runtime list: is tools/testbed up to date?")
        .iter()
        .find(|e| e["repo"] == repo)
        .unwrap_or_else(|| panic!("hostile.json lists no runtime fixture {repo}"))
        .clone()
}

/// Plant the victim, run `attempt` with the fixture's reference, then check the victim is
/// exactly as planted and nothing is mounted on it.
fn against_victim(test: &str, repo: &str, attempt: impl FnOnce(&Bed, &str, &Value)) {
    let Some(bed) = Bed::new(test) else {
        return;
    };
    let fixture = runtime_fixture(repo);
    let image = fixture["ref"].as_str().unwrap().to_string();
    // pull first: the run below then only runs
    bed.img(&["pull", &image]).assert_ok();
    let _lock = VictimLock::take();
    plant_victim();
    let before = tree_state(Path::new(VICTIM));
    attempt(&bed, &image, &fixture);
    let after = tree_state(Path::new(VICTIM));
    let mut diffs = Vec::new();
    for (path, a) in &before {
        match after.get(path) {
            Some(b) if a == b => {}
            Some(b) => diffs.push(format!("{path}: {a} -> {b}")),
            None => diffs.push(format!("{path}: removed")),
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        diffs.push(format!("{path}: added ({})", after[path]));
    }
    assert!(
        diffs.is_empty(),
        "{repo} changed the host's {VICTIM}:\n{}",
        diffs.join("\n")
    );
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let on_victim: Vec<&str> = mountinfo.lines().filter(|l| l.contains(VICTIM)).collect();
    assert!(on_victim.is_empty(), "mounts on the victim: {on_victim:?}");
    let _ = fs::remove_dir_all(VICTIM);
    bed.assert_nothing_left();
}

/// The image must be refused: 125, one error line naming the fixture's path.
fn assert_refused(run: &Run, fixture: &Value) {
    let path = fixture["path"].as_str().unwrap();
    assert_eq!(run.code, 125, "{} must be refused: {run}", fixture["repo"]);
    let line = assert_one_error_line(&run.stderr);
    assert!(line.contains(path), "{line} should name {path}");
    assert_eq!(run.stdout, "", "the command must not run: {run}");
}

/// A `hostile/*-symlink` image the runtime must refuse: it does not start, and the host
/// victim directory it points at is untouched.
fn refused_with_the_victim_untouched(test: &str, repo: &str) {
    against_victim(test, repo, |bed, image, fixture| {
        assert_eq!(fixture["expect"], "refused");
        assert_refused(&bed.run(&[], image, &["/probe", "fds"]), fixture);
    });
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn an_image_whose_dev_is_a_symlink_is_refused() {
    refused_with_the_victim_untouched(
        "an_image_whose_dev_is_a_symlink_is_refused",
        "hostile/dev-symlink",
    );
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn an_image_whose_proc_is_a_symlink_is_refused() {
    refused_with_the_victim_untouched(
        "an_image_whose_proc_is_a_symlink_is_refused",
        "hostile/proc-symlink",
    );
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn an_image_whose_sys_is_a_symlink_is_refused() {
    refused_with_the_victim_untouched(
        "an_image_whose_sys_is_a_symlink_is_refused",
        "hostile/sys-symlink",
    );
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn symlinks_under_the_images_dev_stay_inside() {
    against_victim(
        "symlinks_under_the_images_dev_stay_inside",
        "hostile/devpts-symlink",
        |bed, image, fixture| {
            assert_eq!(fixture["expect"], "either");
            let text = script(&[("pts", "mountinfo-of /dev/pts"), ("ptmx", "open /dev/ptmx")]);
            let run = bed.run(&[], image, &["sh", "-c", &text]);
            if run.code == 0 {
                // a tmpfs on /dev hides the image's own: devpts is a real mount at /dev/pts
                let steps = Steps::of(&run);
                steps.expect("pts", "fstype", "devpts");
                steps.expect("ptmx", "open", "ok");
            } else {
                assert_refused(&run, fixture);
            }
        },
    );
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn a_symlinked_etc_hosts_is_followed_inside_the_root() {
    against_victim(
        "a_symlinked_etc_hosts_is_followed_inside_the_root",
        "hostile/hosts-symlink",
        |bed, image, fixture| {
            assert_eq!(fixture["expect"], "runs");
            let run = bed.run(
                &["--hostname", "inside"],
                image,
                &[
                    "sh",
                    "-c",
                    "cat /etc/hosts; echo @@; cat /etc/hostname; echo @@; hostname",
                ],
            );
            run.assert_ok();
            let parts: Vec<&str> = run.stdout.split("@@\n").collect();
            assert_eq!(parts.len(), 3, "{run}");
            assert!(
                parts[0]
                    .lines()
                    .any(|l| l.split_whitespace().skip(1).any(|n| n == "inside")),
                "/etc/hosts is img's, naming the hostname: {run}"
            );
            assert_eq!(parts[1], "inside\n", "/etc/hostname is img's: {run}");
            assert_eq!(parts[2], "inside\n", "{run}");
            for foreign in ["host-victim", "image-decoy"] {
                assert!(!run.stdout.contains(foreign), "{foreign} in: {run}");
            }
            // resolved inside the root: the image's own file is where img's went
            let run = bed.probe_in(image, &["mountinfo-of", "/var/tmp/img-victim/hosts"]);
            assert_ne!(field(&run, "mountpoint"), "none", "{run}");
        },
    );
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn a_dangling_resolv_conf_symlink_is_created_inside_the_root() {
    against_victim(
        "a_dangling_resolv_conf_symlink_is_created_inside_the_root",
        "hostile/resolv-symlink",
        |bed, image, fixture| {
            assert_eq!(fixture["expect"], "runs");
            let text = script(&[
                ("read", "read /etc/resolv.conf"),
                ("mount", "mountinfo-of /var/tmp/img-victim/resolv.conf"),
            ]);
            let run = bed.run(&[], image, &["sh", "-c", &text]);
            run.assert_ok();
            let steps = Steps::of(&run);
            let read = steps.get("read", "read");
            assert!(
                read.parse::<u64>().is_ok(),
                "/etc/resolv.conf unreadable: {run}"
            );
            assert_ne!(steps.get("mount", "mountpoint"), "none", "{run}");
        },
    );
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn a_new_named_volume_is_filled_from_inside_the_root_only() {
    against_victim(
        "a_new_named_volume_is_filled_from_inside_the_root_only",
        "hostile/dev-symlink",
        |bed, image, fixture| {
            // A new volume is filled with what the image has at its mount point: here a
            // symlink to the host's victim directory (with a canary), which must be read as
            // the symlink it is, never followed to the host.
            let run = bed.run(&["-v", "filled:/dev"], image, &["true"]);
            assert_refused(&run, fixture);
            let data = bed.root.path.join("volumes/filled/_data");
            let meta =
                fs::symlink_metadata(&data).unwrap_or_else(|e| panic!("{}: {e}", data.display()));
            assert!(meta.is_dir(), "{} is not a directory", data.display());
            let inside: Vec<_> = fs::read_dir(&data).unwrap().flatten().collect();
            assert!(
                inside.is_empty(),
                "the host's files reached the volume: {inside:?}"
            );
            bed.img(&["volume", "rm", "filled"]).assert_ok();
        },
    );
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn a_volume_on_a_symlink_lands_inside_the_root() {
    against_victim(
        "a_volume_on_a_symlink_lands_inside_the_root",
        "hostile/volume-symlink",
        |bed, image, fixture| {
            assert_eq!(fixture["expect"], "runs");
            let host = bed.scratch("volume");
            fs::write(host.join("canary"), "volume\n").unwrap();
            let volume = format!("{}:/data", host.display());
            let run = bed.run(
                &["-v", &volume],
                image,
                &[
                    "sh",
                    "-c",
                    "cat /data/canary && echo inside > /data/written",
                ],
            );
            run.assert_ok();
            assert_eq!(run.stdout, "volume\n", "{run}");
            assert_eq!(
                fs::read_to_string(host.join("written")).unwrap(),
                "inside\n"
            );
        },
    );
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn a_symlinked_working_directory_is_made_inside_the_root() {
    against_victim(
        "a_symlinked_working_directory_is_made_inside_the_root",
        "hostile/workdir-symlink",
        |bed, image, fixture| {
            assert_eq!(fixture["expect"], "runs");
            assert_eq!(fixture["workdir"], "/wd/sub");
            // the image's WorkingDir, as docker does: created, through the symlink, inside
            let run = bed.run(&[], image, &["/probe", "cwd"]);
            run.assert_ok();
            let cwd = field(&run, "cwd");
            assert!(
                cwd == "/wd/sub" || cwd == "/var/tmp/img-victim/wd/sub",
                "working directory {cwd}: {run}"
            );
        },
    );
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn a_symlinked_etc_passwd_is_read_inside_the_root() {
    against_victim(
        "a_symlinked_etc_passwd_is_read_inside_the_root",
        "hostile/passwd-symlink",
        |bed, image, fixture| {
            assert_eq!(fixture["expect"], "runs");
            // the image says victim is 1111; the host's victim file says 4242
            let run = bed.run(&["-u", "victim"], image, &["sh", "-c", "id -u; id -g"]);
            run.assert_ok();
            assert_eq!(run.stdout, "1111\n1111\n", "{run}");
            // the bundle too: img resolves the user against the image's files, not the host's
            if let Some(run) = bed.runc(&["-u", "victim"], image, &["sh", "-c", "id -u; id -g"]) {
                run.assert_ok();
                assert_eq!(run.stdout, "1111\n1111\n", "{run}");
            }
        },
    );
}

/// Every runtime fixture of hostile.json has a test above.
#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn every_runtime_fixture_has_a_test() {
    if !is_root() {
        skipped(
            "every_runtime_fixture_has_a_test",
            "tools/testbed up needs root",
        );
    }
    let tested: BTreeSet<&str> = [
        "hostile/dev-symlink",
        "hostile/proc-symlink",
        "hostile/sys-symlink",
        "hostile/devpts-symlink",
        "hostile/hosts-symlink",
        "hostile/resolv-symlink",
        "hostile/volume-symlink",
        "hostile/workdir-symlink",
        "hostile/passwd-symlink",
    ]
    .into();
    let listed: BTreeSet<String> = support::hostile_json(testbed())["runtime"]
        .as_array()
        .expect("hostile.json has no runtime list: is tools/testbed up to date?")
        .iter()
        .map(|e| e["repo"].as_str().unwrap().to_string())
        .collect();
    let listed: BTreeSet<&str> = listed.iter().map(String::as_str).collect();
    assert_eq!(listed, tested);
}

// ---------------------------------------------------------------------------------------
// 5. a setuid file in a container's writable layer; the store's modes

/// The permission bits of `path`, in octal.
fn mode(path: &Path) -> String {
    let mode = fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .mode();
    format!("{:o}", mode & 0o7777)
}

/// docker's modes: the root and `containers/` 0710, `snapshots/` and `mounts/` 0700.
fn assert_store_modes(root: &Path) {
    for (dir, want, required) in [
        ("", "710", true),
        ("containers", "710", true),
        ("snapshots", "700", true),
        ("mounts", "700", false),
    ] {
        let path = root.join(dir);
        if required || path.exists() {
            assert_eq!(mode(&path), want, "the mode of {}", path.display());
        }
    }
}

/// Run `path ids` as nobody (65534), a real unprivileged host user. setpriv itself still
/// holds root's effective capabilities when it execs (it keeps them to set the groups after
/// the uid), which would bypass the directory modes: it execs a shell first, which loses
/// them, and the shell execs the file.
fn as_nobody(path: &Path) -> Run {
    support::try_tool(
        "setpriv",
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/bin/sh",
            "-c",
            "exec \"$0\" ids",
            path.to_str().unwrap(),
        ],
    )
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn a_setuid_file_in_a_containers_layer_is_out_of_other_users_reach() {
    const TEST: &str = "a_setuid_file_in_a_containers_layer_is_out_of_other_users_reach";
    if is_root() && !have("setpriv") {
        skipped(TEST, "setpriv is not installed (util-linux)");
    }
    // a world-traversable parent, so that only the store's own modes can stop nobody
    let parent = PathBuf::from(format!("/var/tmp/img-isolation-{}", unique()));
    if is_root() {
        fs::create_dir_all(&parent).unwrap();
        fs::set_permissions(&parent, fs::Permissions::from_mode(0o755)).unwrap();
    }
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                let _ = fs::remove_dir_all(&self.0);
            }
        }
    }
    let _cleanup = Cleanup(parent.clone());
    let Some(bed) = Bed::at(TEST, Some(parent.join("root"))) else {
        return;
    };
    let root = bed.root.path.clone();

    let before = bed.container_ids();
    let busybox = bed.busybox.clone();
    let mut args = vec!["run", "-v", &bed.probe_volume, &busybox];
    args.extend(["sh", "-c", "cp /probe /suid && chmod 4755 /suid"]);
    bed.img(&args).assert_ok();
    let id = bed
        .container_ids()
        .difference(&before)
        .next()
        .expect("a kept container")
        .clone();
    let suid = bed.containers_dir().join(&id).join("upper/suid");
    let meta = fs::metadata(&suid).unwrap_or_else(|e| panic!("{}: {e}", suid.display()));
    assert_eq!(mode(&suid), "4755", "{}", suid.display());
    assert_eq!(meta.uid(), 0, "{}", suid.display());
    assert_store_modes(&root);

    // nobody cannot even reach it
    let run = as_nobody(&suid);
    assert_ne!(run.code, 0, "nobody ran the setuid file: {run}");
    assert!(
        run.stderr.contains("Permission denied"),
        "EACCES expected: {run}"
    );
    assert!(!run.stdout.contains("euid=0"), "{run}");

    // the control: a store as open as an older one makes it a root shell for anyone
    let open_up: Vec<PathBuf> = vec![
        root.clone(),
        root.join("containers"),
        root.join("snapshots"),
        bed.containers_dir().join(&id),
        bed.containers_dir().join(&id).join("upper"),
    ];
    for dir in open_up.iter().chain([&root.join("mounts")]) {
        if dir.exists() {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    let run = as_nobody(&suid);
    run.assert_ok();
    assert_eq!(field(&run, "uid"), "65534", "{run}");
    assert_eq!(
        field(&run, "euid"),
        "0",
        "the setuid bit works once reachable: {run}"
    );

    // the next img command takes the store's modes down again
    bed.img(&["images"]).assert_ok();
    assert_store_modes(&root);
    let run = as_nobody(&suid);
    assert_ne!(run.code, 0, "nobody ran the setuid file: {run}");
    assert!(
        run.stderr.contains("Permission denied"),
        "EACCES expected: {run}"
    );

    bed.img(&["rm", &id]).assert_ok();
    bed.assert_nothing_left();
}

// ---------------------------------------------------------------------------------------
// 6. cgroups

/// `/proc/PID/cgroup` as (hierarchy id, controllers, path).
fn cgroup_lines(text: &str) -> Vec<(String, String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            Some((
                parts.next()?.to_string(),
                parts.next()?.to_string(),
                parts.next()?.to_string(),
            ))
        })
        .collect()
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn the_container_has_a_cgroup_of_its_own_in_every_hierarchy() {
    let Some(bed) = Bed::new("the_container_has_a_cgroup_of_its_own_in_every_hierarchy") else {
        return;
    };
    let busybox = bed.busybox.clone();
    bed.img(&["pull", &busybox]).assert_ok();
    let run = bed.img(&["run", "-d", &busybox, "sleep", "600"]);
    run.assert_ok();
    let id = run.stdout.trim().to_string();
    assert_eq!(id.len(), 64, "run -d prints the id: {run}");
    bed.ids.lock().unwrap().insert(id.clone());
    let mut pid = 0;
    wait_until(&format!("container {id} to run"), 60, || {
        let state = bed.state(&id);
        pid = state["pid"].as_u64().unwrap_or(0);
        state["status"] == "running" && pid != 0
    });

    let host = cgroup_lines(&fs::read_to_string("/proc/self/cgroup").unwrap());
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let theirs = cgroup_lines(&text);
    let v1: Vec<&(String, String, String)> = host.iter().filter(|(h, _, _)| h != "0").collect();
    let suffix = format!("/img/{id}");
    if v1.is_empty() {
        // cgroup v2 only
        let (_, _, path) = theirs.iter().find(|(h, _, _)| h == "0").expect("0:: line");
        assert!(path.ends_with(&suffix), "v2 cgroup {path}:\n{text}");
    }
    for (hier, controllers, _) in &v1 {
        let (_, _, path) = theirs
            .iter()
            .find(|(h, c, _)| h == hier && c == controllers)
            .unwrap_or_else(|| panic!("no {controllers} line for pid {pid}:\n{text}"));
        assert!(
            path.ends_with(&suffix),
            "{controllers}: the container is in {path}, not in img/{id}:\n{text}"
        );
        // and the directory exists with the process in it
        let mount = if controllers.starts_with("name=") {
            controllers.trim_start_matches("name=").to_string()
        } else {
            controllers.clone()
        };
        let dir = Path::new("/sys/fs/cgroup")
            .join(&mount)
            .join(path.trim_start_matches('/'));
        if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
            assert!(
                procs.lines().any(|p| p == pid.to_string()),
                "pid {pid} not in {}",
                dir.display()
            );
        }
        if controllers == "devices" {
            let list = fs::read_to_string(dir.join("devices.list")).unwrap();
            assert!(!list.contains("a *:* rwm"), "every device allowed:\n{list}");
            assert!(list.contains("c 1:3 rwm"), "/dev/null not allowed:\n{list}");
        }
    }

    // inside: a cgroup namespace rooted at its own cgroup, and cgroupfs out of reach
    let text = script(&[
        ("cgroup", "cgroup"),
        ("top", "write /sys/fs/cgroup"),
        ("memory", "write /sys/fs/cgroup/memory"),
        ("sys", "mountinfo-of /sys"),
    ]);
    let run = bed.run(&[], &busybox, &["sh", "-c", &text]);
    run.assert_ok();
    let inside: Vec<&str> = run
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("cgroup="))
        .collect();
    let inside = cgroup_lines(&inside.join("\n"));
    assert_eq!(inside.len(), theirs.len(), "{run}");
    for (_, controllers, path) in inside {
        assert_eq!(path, "/", "{controllers:?}: not a cgroup namespace: {run}");
    }
    let steps = Steps::of(&run);
    for (step, key) in [("top", "create"), ("top", "mkdir")] {
        assert_ne!(steps.get(step, key), "ok", "{step} {key}: {run}");
    }
    let memory = steps.steps.get("memory").cloned().unwrap_or_default();
    for key in ["create", "mkdir"] {
        assert_ne!(memory.get(key).map(String::as_str), Some("ok"), "{run}");
    }
    let sys_options = steps.get("sys", "options");
    assert!(
        sys_options.split(',').any(|o| o == "ro"),
        "/sys is not read-only: {run}"
    );

    bed.img(&["rm", "-f", &id]).assert_ok();
    wait_until("the container's cgroups to go", 60, || {
        cgroup_dirs(&id).iter().all(|d| !d.exists())
    });
    bed.assert_nothing_left();
}

// ---------------------------------------------------------------------------------------
// 7. keyring

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn each_container_gets_a_session_keyring_of_its_own() {
    let Some(bed) = Bed::new("each_container_gets_a_session_keyring_of_its_own") else {
        return;
    };
    let host = host_probe(&bed.probe, &["keyring"]);
    let host_id = field(&host, "keyring");
    assert!(host_id.parse::<i64>().is_ok(), "{host}");

    let unconfined = ["--security-opt", "seccomp=unconfined"];
    let a = bed.probe(&unconfined, &["keyring"]);
    let b = bed.probe(&unconfined, &["keyring"]);
    let (a_id, b_id) = (field(&a, "keyring"), field(&b, "keyring"));
    assert!(a_id.parse::<i64>().is_ok(), "{a}");
    assert_ne!(
        a_id, host_id,
        "the container shares the host's session keyring: {a}"
    );
    assert_ne!(
        a_id, b_id,
        "two containers share a session keyring: {a}\n{b}"
    );
    // under docker's profile keyctl itself is refused
    let run = bed.probe(&[], &["keyring"]);
    assert_eq!(field(&run, "keyring"), "EPERM", "{run}");
    bed.assert_nothing_left();
}

// ---------------------------------------------------------------------------------------
// 8. /proc, masked and read-only paths, --privileged

/// docker's masked paths: empty or unreadable inside, where the host has them.
const MASKED: [&str; 12] = [
    "/proc/kcore",
    "/proc/keys",
    "/proc/timer_list",
    "/proc/sched_debug",
    "/proc/interrupts",
    "/proc/latency_stats",
    "/proc/timer_stats",
    "/proc/acpi",
    "/proc/scsi",
    "/proc/asound",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Files the container must not be able to open for writing (EROFS), where the host has them.
const READ_ONLY_FILES: [&str; 4] = [
    "/proc/sys/kernel/domainname",
    "/proc/sysrq-trigger",
    "/proc/irq/default_smp_affinity",
    "/proc/sys/vm/drop_caches",
];

/// Mount points that must be read-only inside.
const READ_ONLY_MOUNTS: [&str; 6] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
    "/sys",
];

/// The masked and read-only paths this host has, as probe steps.
fn path_steps() -> Vec<(String, String)> {
    let mut steps = vec![("proc".to_string(), "mountinfo-of /proc".to_string())];
    for p in MASKED.iter().filter(|p| Path::new(p).exists()) {
        steps.push((format!("masked {p}"), format!("read {p}")));
    }
    for p in READ_ONLY_FILES.iter().filter(|p| Path::new(p).exists()) {
        steps.push((format!("ro {p}"), format!("write {p}")));
    }
    for p in READ_ONLY_MOUNTS.iter().filter(|p| Path::new(p).exists()) {
        steps.push((format!("mount {p}"), format!("mountinfo-of {p}")));
    }
    steps
}

fn has_option(options: &str, option: &str) -> bool {
    options.split(',').any(|o| o == option)
}

/// What docker's paths look like from inside, whatever the capabilities.
fn assert_docker_paths(run: &Run) {
    let steps = Steps::of(run);
    let proc_options = steps.get("proc", "options");
    for option in ["nosuid", "nodev", "noexec"] {
        assert!(
            has_option(proc_options, option),
            "/proc lacks {option}: {run}"
        );
    }
    for (name, lines) in &steps.steps {
        if let Some(path) = name.strip_prefix("masked ") {
            // empty (an empty file or directory over it) or unreadable
            let empty = lines.get("read").is_some_and(|r| r == "0")
                || lines.get("entries").is_some_and(|n| n == "0")
                || lines.get("read").is_some_and(|r| r.starts_with('E'));
            assert!(empty, "{path} is not masked: {lines:?}\n{run}");
        } else if let Some(path) = name.strip_prefix("ro ") {
            assert_eq!(
                lines.get("write").map(String::as_str),
                Some("EROFS"),
                "{path} can be opened for writing: {run}"
            );
        } else if let Some(path) = name.strip_prefix("mount ") {
            let options = lines.get("options").map(String::as_str).unwrap_or("");
            assert!(
                has_option(options, "ro"),
                "{path} is not read-only: {lines:?}\n{run}"
            );
        }
    }
}

fn run_path_steps(bed: &Bed, flags: &[&str]) -> Run {
    let steps = path_steps();
    let steps: Vec<(&str, &str)> = steps
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    bed.steps(flags, &steps)
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn proc_is_restricted_and_sensitive_paths_are_masked() {
    let Some(bed) = Bed::new("proc_is_restricted_and_sensitive_paths_are_masked") else {
        return;
    };
    assert_docker_paths(&run_path_steps(&bed, &[]));
    // the masks and read-only mounts, not missing capabilities, are what stop these: with
    // every capability (but not --privileged) they still hold, as with docker
    assert_docker_paths(&run_path_steps(&bed, &["--cap-add", "ALL"]));
    let steps = path_steps();
    let steps: Vec<(&str, &str)> = steps
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    if let Some(run) = bed.runc_steps(&[], &steps) {
        assert_docker_paths(&run);
    }
    bed.assert_nothing_left();
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn privileged_turns_the_protections_off() {
    let Some(bed) = Bed::new("privileged_turns_the_protections_off") else {
        return;
    };
    let host_bounding = host_status("CapBnd");
    let text = script(&[
        ("status", "status"),
        ("kmsg", "mknod-open /tmp/n-kmsg c 1 11"),
        ("timer_list", "read /proc/timer_list"),
        ("domainname", "write /proc/sys/kernel/domainname"),
        ("sys", "mountinfo-of /proc/sys"),
    ]);
    let busybox = bed.busybox.clone();
    let run = bed.run(&["--privileged"], &busybox, &["sh", "-c", &text]);
    run.assert_ok();
    let steps = Steps::of(&run);
    steps.expect("status", "CapEff", &host_bounding);
    steps.expect("status", "CapBnd", &host_bounding);
    steps.expect("status", "Seccomp", "0");
    steps.expect("kmsg", "open", "ok");
    if Path::new("/proc/timer_list").exists() {
        let n: u64 = steps.get("timer_list", "read").parse().unwrap_or(0);
        assert!(n > 0, "/proc/timer_list still masked: {run}");
    }
    steps.expect("domainname", "write", "ok");
    steps.expect("sys", "mountpoint", "none");
    bed.assert_nothing_left();
}

// ---------------------------------------------------------------------------------------
// 9. no_new_privs, file capabilities, capability flags

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn file_capabilities_work_unless_no_new_privileges() {
    let Some(bed) = Bed::new("file_capabilities_work_unless_no_new_privileges") else {
        return;
    };
    if !have("setcap") && Command::new("setcap").output().is_err() {
        skipped(
            "file_capabilities_work_unless_no_new_privileges",
            "setcap is not installed (libcap2-bin)",
        );
    }
    // a copy of the probe with cap_net_raw+ep (mounted in, so the host path's modes do not
    // matter)
    let dir = bed.scratch("caps");
    let capprobe = dir.join("capprobe");
    fs::copy(&bed.probe, &capprobe).unwrap();
    support::run_tool("setcap", &["cap_net_raw+ep", capprobe.to_str().unwrap()]);
    let volume = format!("{}:/capprobe:ro", capprobe.display());
    let cap_steps = "/capprobe rawsock; /capprobe status; echo @@plain; /probe rawsock";
    let busybox = bed.busybox.clone();
    let nobody = |extra: &[&str]| -> Run {
        let mut flags = vec!["-u", "65534", "-v", volume.as_str()];
        flags.extend(extra);
        bed.run(&flags, &busybox, &["sh", "-c", cap_steps])
    };

    // no_new_privs is off by default: the file capability is granted
    let run = nobody(&[]);
    run.assert_ok();
    let steps = Steps::of(&run);
    steps.expect("", "rawsock", "ok");
    steps.expect("", "NoNewPrivs", "0");
    steps.expect("plain", "rawsock", "EPERM");

    for opt in ["no-new-privileges", "no-new-privileges=true"] {
        let run = nobody(&["--security-opt", opt]);
        run.assert_ok();
        let steps = Steps::of(&run);
        steps.expect("", "rawsock", "EPERM");
        steps.expect("", "NoNewPrivs", "1");
    }
    let run = nobody(&["--security-opt", "no-new-privileges=false"]);
    run.assert_ok();
    Steps::of(&run).expect("", "rawsock", "ok");

    // out of the bounding set, no file capability brings it back (the exec may fail)
    let flags = [
        "-u",
        "65534",
        "-v",
        volume.as_str(),
        "--cap-drop",
        "NET_RAW",
    ];
    let run = bed.run(&flags, &busybox, &["/capprobe", "rawsock"]);
    assert!(!run.stdout.contains("rawsock=ok"), "{run}");
    assert!(
        run.code == 126 || field(&run, "rawsock") == "EPERM",
        "neither refused nor EPERM: {run}"
    );

    // the bundle: the same under runc
    let flags = ["-u", "65534", "-v", volume.as_str()];
    if let Some(run) = bed.runc(&flags, &busybox, &["sh", "-c", cap_steps]) {
        run.assert_ok();
        let steps = Steps::of(&run);
        steps.expect("", "rawsock", "ok");
        steps.expect("", "NoNewPrivs", "0");
    }
    let flags = [
        "-u",
        "65534",
        "-v",
        volume.as_str(),
        "--security-opt",
        "no-new-privileges",
    ];
    if let Some(run) = bed.runc(&flags, &busybox, &["sh", "-c", cap_steps]) {
        run.assert_ok();
        let steps = Steps::of(&run);
        steps.expect("", "rawsock", "EPERM");
        steps.expect("", "NoNewPrivs", "1");
    }
    bed.assert_nothing_left();
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn capability_flags_shape_the_sets_as_dockers_do() {
    let Some(bed) = Bed::new("capability_flags_shape_the_sets_as_dockers_do") else {
        return;
    };
    let host_bounding = host_status("CapBnd");
    let caps = |flags: &[&str]| -> BTreeMap<String, String> {
        let run = bed.probe(flags, &["status"]);
        fields(&run.stdout).into_iter().collect()
    };
    let expect = |flags: &[&str], bnd: &str, eff: &str| {
        let got = caps(flags);
        let want = |k: &str| got.get(k).cloned().unwrap_or_default();
        assert_eq!(want("CapBnd"), bnd, "CapBnd with {flags:?}: {got:?}");
        assert_eq!(want("CapEff"), eff, "CapEff with {flags:?}: {got:?}");
        assert_eq!(want("CapPrm"), eff, "CapPrm with {flags:?}: {got:?}");
        assert_eq!(want("CapInh"), "0000000000000000", "{flags:?}: {got:?}");
        assert_eq!(want("CapAmb"), "0000000000000000", "{flags:?}: {got:?}");
    };
    expect(&[], DEFAULT_CAPS, DEFAULT_CAPS);
    expect(&["-u", "65534"], DEFAULT_CAPS, "0000000000000000");
    expect(
        &["--cap-drop", "ALL"],
        "0000000000000000",
        "0000000000000000",
    );
    expect(
        &["--cap-drop", "CHOWN"],
        "00000000a80425fa",
        "00000000a80425fa",
    );
    expect(
        &["--cap-add", "NET_ADMIN"],
        "00000000a80435fb",
        "00000000a80435fb",
    );
    expect(
        &["--cap-add", "CAP_SYS_TIME"],
        "00000000aa0425fb",
        "00000000aa0425fb",
    );
    expect(
        &["--cap-drop", "ALL", "--cap-add", "NET_BIND_SERVICE"],
        "0000000000000400",
        "0000000000000400",
    );
    expect(&["--cap-add", "ALL"], &host_bounding, &host_bounding);
    bed.assert_nothing_left();
}
