//! End-to-end tests of `img run` (foreground) against the local registry of `tools/testbed`,
//! checked from outside img where possible: the exit codes docker gives, what the command
//! sees inside (ids, PID 1, hostname, network, mounts), the cgroup files of the running
//! container, the files on disk (upper dirs, snapshots, bind-mounted host directories), runc
//! running the `--bundle` img writes, and that nothing (mounts, cgroups, container dirs) is
//! left behind.
//!
//! Every test needs root (namespaces, overlay mounts, cgroups); without it a test says why
//! and returns.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Run, TestRoot, assert_one_error_line, cgroup_dirs, is_root, testbed, unique};

/// Held by every test while it runs containers: the tests of this file run one at a time, so
/// that each checks what it means to (a limit, a mount, a layer) without the others' containers
/// starting at the same moment; `concurrent_runs_in_two_roots_all_start` is the one test of
/// containers starting together.
static SERIAL: Mutex<()> = Mutex::new(());

/// One test's store root and the busybox image, remembering every container id it saw so
/// that [`Bed::assert_nothing_left`] can look for their cgroups and mounts.
struct Bed {
    /// [`SERIAL`], for the bed that holds it.
    _serial: Option<MutexGuard<'static, ()>>,
    root: TestRoot,
    /// `127.0.0.1:5000/busybox:latest`.
    busybox: String,
    /// Every container id seen under `ROOT/containers/` while img ran.
    ids: Mutex<BTreeSet<String>>,
}

impl Bed {
    /// A bed for `test` (root only: such tests are ignored unless built by root).
    fn new(test: &str) -> Bed {
        if !is_root() {
            panic!("{test}: img run needs root (namespaces, overlay, cgroups)");
        }
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let mut bed = Bed::another(test);
        bed._serial = Some(serial);
        bed
    }

    /// A second bed for a test that already holds [`SERIAL`] through its first.
    fn another(test: &str) -> Bed {
        let tb = testbed();
        Bed {
            _serial: None,
            root: TestRoot::new(&format!("run-{test}")),
            busybox: tb.plain_ref("busybox:latest"),
            ids: Mutex::new(BTreeSet::new()),
        }
    }

    fn containers_dir(&self) -> PathBuf {
        self.root.path.join("containers")
    }

    /// The container ids under `ROOT/containers/` now.
    fn container_ids(&self) -> BTreeSet<String> {
        support::container_ids(&self.root.path)
    }

    /// Run `img --root ROOT ARGS…`, watching `ROOT/containers/` while it runs to learn the
    /// ids of the containers it makes (even those `--rm` removes again).
    fn img(&self, args: &[&str]) -> Run {
        let cmdline = format!("img --root {} {}", self.root.path.display(), args.join(" "));
        let (run, seen) = support::run_watching(&self.root.path, self.root.command(args), cmdline);
        self.ids.lock().unwrap().extend(seen);
        run
    }

    /// `img run FLAGS… busybox CMD…` (the container is kept).
    fn run(&self, flags: &[&str], cmd: &[&str]) -> Run {
        self.run_image(flags, &self.busybox.clone(), cmd)
    }

    /// `img run FLAGS… IMAGE CMD…` (the container is kept).
    fn run_image(&self, flags: &[&str], image: &str, cmd: &[&str]) -> Run {
        let mut args = vec!["run"];
        args.extend(flags);
        args.push(image);
        args.extend(cmd);
        self.img(&args)
    }

    /// `img run --rm FLAGS… busybox CMD…`, asserting no container directory is left.
    fn run_rm(&self, flags: &[&str], cmd: &[&str]) -> Run {
        let image = self.busybox.clone();
        self.run_rm_image(flags, &image, cmd)
    }

    /// `img run --rm FLAGS… IMAGE CMD…`, asserting no container directory is left.
    fn run_rm_image(&self, flags: &[&str], image: &str, cmd: &[&str]) -> Run {
        let before = self.container_ids();
        let mut all = vec!["--rm"];
        all.extend(flags);
        let run = self.run_image(&all, image, cmd);
        let after = self.container_ids();
        let left: Vec<&String> = after.difference(&before).collect();
        assert!(
            left.is_empty(),
            "--rm left container directories {left:?} under {}: {run}",
            self.containers_dir().display()
        );
        run
    }

    /// The one container directory that is new since `before`.
    fn new_container(&self, before: &BTreeSet<String>) -> String {
        let now = self.container_ids();
        let new: Vec<&String> = now.difference(before).collect();
        assert_eq!(new.len(), 1, "expected one new container, got {new:?}");
        new[0].clone()
    }

    /// `ROOT/containers/<id>/state.json`, parsed.
    fn state(&self, id: &str) -> Value {
        let path = self.containers_dir().join(id).join("state.json");
        let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// No mount mentions the root, no cgroup of any container this test saw is left, and no
    /// process of them runs.
    fn assert_nothing_left(&self) {
        let root = self.root.path.display().to_string();
        let mounts = fs::read_to_string("/proc/mounts").expect("/proc/mounts");
        let ours: Vec<&str> = mounts.lines().filter(|l| l.contains(&root)).collect();
        assert!(ours.is_empty(), "mounts left behind:\n{}", ours.join("\n"));
        let ids = self.ids.lock().unwrap().clone();
        for id in &ids {
            for dir in cgroup_dirs(id) {
                assert!(
                    !dir.exists(),
                    "cgroup {} of container {id} was left behind",
                    dir.display()
                );
            }
        }
    }
}

/// Whether `s` is a 12 hex digit short id.
fn is_short_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The interface names of a `/proc/net/dev` text.
fn interfaces(net_dev: &str) -> BTreeSet<String> {
    net_dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split_once(':'))
        .map(|(name, _)| name.trim().to_string())
        .collect()
}

/// Everything about a directory tree that a container must never change in a read-only
/// lower layer: per path its type, mode, owner, size, mtime, content, symlink target, device
/// number, plus `getfattr`'s dump of every extended attribute.
fn snapshot_state(dir: &Path) -> (BTreeMap<String, String>, String) {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(path) = todo.pop() {
        let meta =
            fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let ft = meta.file_type();
        let rel = path.strip_prefix(dir).unwrap().display().to_string();
        let what = if ft.is_dir() {
            let mut names: Vec<PathBuf> = fs::read_dir(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                .map(|e| e.unwrap().path())
                .collect();
            names.sort();
            todo.extend(names);
            "dir".to_string()
        } else if ft.is_symlink() {
            format!("symlink {}", fs::read_link(&path).unwrap().display())
        } else if ft.is_file() {
            let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            format!("file {}", support::sha256_hex(&bytes))
        } else {
            format!("special {:o} rdev {}", meta.mode(), meta.rdev())
        };
        out.insert(
            rel,
            format!(
                "{what} mode {:o} owner {}:{} size {} mtime {}.{:09} nlink {}",
                meta.mode(),
                meta.uid(),
                meta.gid(),
                meta.len(),
                meta.mtime(),
                meta.mtime_nsec(),
                meta.nlink()
            ),
        );
    }
    let xattrs = support::run_tool(
        "getfattr",
        &[
            "--absolute-names",
            "-R",
            "-h",
            "-d",
            "-m",
            "-",
            "-e",
            "hex",
            dir.to_str().unwrap(),
        ],
    );
    (out, xattrs)
}

/// Every snapshot (`ROOT/snapshots/sha256/*/fs`) of the root, with its state.
fn snapshots(root: &Path) -> BTreeMap<PathBuf, (BTreeMap<String, String>, String)> {
    let dir = root.join("snapshots/sha256");
    fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path().join("fs"))
        .map(|fs_dir| {
            let state = snapshot_state(&fs_dir);
            (fs_dir, state)
        })
        .collect()
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn exit_codes_are_dockers() {
    let bed = Bed::new("exit-codes");
    let run = bed.run_rm(&[], &["sh", "-c", "exit 7"]);
    assert_eq!(run.code, 7, "the command's own exit code: {run}");
    let run = bed.run_rm(&[], &["true"]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(run.stderr, "", "{run}");

    let run = bed.run_rm(&[], &["nosuchcmd"]);
    assert_eq!(run.code, 127, "a command not found exits 127: {run}");
    let line = assert_one_error_line(&run.stderr);
    assert!(line.contains("nosuchcmd"), "{line} should name the command");
    assert_eq!(run.stdout, "", "{run}");

    let run = bed.run_rm(&[], &["/etc/passwd"]);
    assert_eq!(
        run.code, 126,
        "a file that cannot be executed exits 126: {run}"
    );
    let line = assert_one_error_line(&run.stderr);
    assert!(line.contains("/etc/passwd"), "{line} should name the file");

    let run = bed.run_rm(&["--memory", "lots"], &["true"]);
    assert_eq!(run.code, 125, "an invalid --memory is img's error: {run}");
    let line = assert_one_error_line(&run.stderr);
    assert!(line.contains("lots"), "{line} should name the value");

    let missing = testbed().plain_ref(&format!("t-{}/nosuch:latest", unique()));
    let run = bed.run_rm_image(&[], &missing, &["true"]);
    assert_eq!(
        run.code, 125,
        "an image the registry lacks is img's error: {run}"
    );
    let line = assert_one_error_line(&run.stderr);
    assert!(line.contains(&missing), "{line} should name {missing}");
    bed.assert_nothing_left();
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn invalid_flag_values_exit_125_like_docker() {
    let bed = Bed::new("flag-values");
    // docker run answers an unparsable flag value with 125 ("invalid argument … for flag"),
    // whichever flag it is.
    for flags in [
        &["--pids-limit", "abc"][..],
        &["--cpus", "half"][..],
        &["--network", "bogus"][..],
    ] {
        let run = bed.run_rm(flags, &["true"]);
        assert_eq!(run.code, 125, "{flags:?}: {run}");
        assert_eq!(run.stdout, "", "{run}");
    }
    bed.assert_nothing_left();
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn env_workdir_and_user_reach_the_process() {
    let bed = Bed::new("env-user");
    let run = bed.run_rm(
        &["-e", "FOO=bar", "-w", "/tmp", "-u", "1000:1000"],
        &["sh", "-c", "echo $FOO; pwd; id -u; id -g"],
    );
    run.assert_ok();
    assert_eq!(run.stdout, "bar\n/tmp\n1000\n1000\n", "{run}");

    // a working directory the image lacks is created, as docker does
    let run = bed.run_rm(&["-w", "/new/dir"], &["pwd"]);
    run.assert_ok();
    assert_eq!(run.stdout, "/new/dir\n", "{run}");

    // a name is looked up in the image's /etc/passwd: nobody:x:65534:65534
    let run = bed.run_rm(&["-u", "nobody"], &["sh", "-c", "id -u; id -g"]);
    run.assert_ok();
    assert_eq!(run.stdout, "65534\n65534\n", "{run}");
    // the default user is root
    let run = bed.run_rm(&[], &["sh", "-c", "id -u; id -g; echo $HOME"]);
    run.assert_ok();
    assert_eq!(run.stdout, "0\n0\n/root\n", "{run}");

    let run = bed.run_rm(&["-u", "ghost"], &["true"]);
    assert_eq!(run.code, 125, "an unknown user is img's error: {run}");
    let line = assert_one_error_line(&run.stderr);
    assert!(line.contains("ghost"), "{line} should name the user");
    assert_eq!(run.stdout, "", "{run}");
    bed.assert_nothing_left();
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn the_command_is_pid_1_and_the_hostname_is_the_short_id() {
    let bed = Bed::new("pid1-hostname");
    let run = bed.run_rm(&[], &["sh", "-c", "echo $$"]);
    run.assert_ok();
    assert_eq!(run.stdout, "1\n", "{run}");
    let run = bed.run_rm(&[], &["cat", "/proc/1/cmdline"]);
    run.assert_ok();
    assert_eq!(run.stdout, "cat\0/proc/1/cmdline\0", "{run}");

    // the default hostname is the first 12 hex digits of the container's id
    let before = bed.container_ids();
    let run = bed.run(
        &[],
        &["sh", "-c", "hostname; cat /etc/hostname; cat /etc/hosts"],
    );
    run.assert_ok();
    let id = bed.new_container(&before);
    assert_eq!(id.len(), 64, "a container id is 64 hex digits: {id}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines.len() >= 3, "{run}");
    assert!(is_short_id(lines[0]), "{run}");
    assert_eq!(lines[0], &id[..12], "hostname vs the id {id}: {run}");
    assert_eq!(
        lines[1], lines[0],
        "/etc/hostname agrees with hostname: {run}"
    );
    assert!(
        lines[2..]
            .iter()
            .any(|l| l.split_whitespace().skip(1).any(|name| name == lines[0])),
        "/etc/hosts names the hostname: {run}"
    );
    let state = bed.state(&id);
    assert_eq!(state["id"], id.as_str());
    assert_eq!(state["status"], "exited", "{state}");
    assert_eq!(state["exit_code"], 0, "{state}");

    let run = bed.run_rm(
        &["--hostname", "x"],
        &["sh", "-c", "hostname; cat /etc/hostname; cat /etc/hosts"],
    );
    run.assert_ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[..2], ["x", "x"], "{run}");
    assert!(
        lines[2..]
            .iter()
            .any(|l| l.split_whitespace().skip(1).any(|name| name == "x")),
        "/etc/hosts names the hostname: {run}"
    );
    bed.assert_nothing_left();
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn a_memory_limit_kills_with_137() {
    let bed = Bed::new("memory");
    let hog = "x=$(head -c 64000000 /dev/zero | tr \"\\0\" a); echo ${#x}";
    // without a limit the allocation succeeds: the limit is what kills it below
    let run = bed.run_rm(&[], &["sh", "-c", hog]);
    run.assert_ok();
    assert_eq!(run.stdout, "64000000\n", "{run}");

    let before = bed.container_ids();
    let run = bed.run(&["--memory", "16m"], &["sh", "-c", hog]);
    assert_eq!(run.code, 137, "out of memory exits 137: {run}");
    assert_eq!(run.stdout, "", "{run}");
    let id = bed.new_container(&before);
    let state = bed.state(&id);
    assert_eq!(state["status"], "exited", "{state}");
    assert_eq!(state["exit_code"], 137, "{state}");
    assert!(
        state["error"]
            .as_str()
            .is_some_and(|e| e.contains("memory")),
        "state.json says why it died: {state}"
    );
    bed.assert_nothing_left();
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn a_pids_limit_stops_a_fork_bomb() {
    let bed = Bed::new("pids");
    let bomb = "for i in $(seq 20); do sleep 1 & done; wait";
    let run = bed.run_rm(&[], &["sh", "-c", bomb]);
    run.assert_ok();
    let run = bed.run_rm(&["--pids-limit", "8"], &["sh", "-c", bomb]);
    assert_ne!(run.code, 0, "{run}");
    assert!(run.stderr.contains("fork"), "expected a fork error: {run}");
    bed.assert_nothing_left();
}

/// Wait until a container of the bed is running; its id.
fn wait_running(bed: &Bed, child: &mut Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for id in bed.container_ids() {
            let path = bed.containers_dir().join(&id).join("state.json");
            if let Ok(bytes) = fs::read(&path)
                && let Ok(state) = serde_json::from_slice::<Value>(&bytes)
                && state["status"] == "running"
            {
                bed.ids.lock().unwrap().insert(id.clone());
                return id;
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("img exited ({status}) before its container was seen running");
        }
        assert!(Instant::now() < deadline, "no container ran within 30 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn limits_are_written_to_the_containers_cgroups() {
    let bed = Bed::new("cgroup-files");
    // pull first, so the container starts right away
    bed.root.ok(&["pull", &bed.busybox]);
    let mut child = bed
        .root
        .command(&[
            "run",
            "--rm",
            "--cpus",
            "0.5",
            "--memory",
            "32m",
            "--pids-limit",
            "16",
            &bed.busybox,
            "sleep",
            "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run the img binary");
    let id = wait_running(&bed, &mut child);
    let read = |controller: &str, file: &str| -> String {
        let path = Path::new("/sys/fs/cgroup")
            .join(controller)
            .join("img")
            .join(&id)
            .join(file);
        fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .to_string()
    };
    let quota = read("cpu", "cpu.cfs_quota_us");
    let period = read("cpu", "cpu.cfs_period_us");
    let memory = read("memory", "memory.limit_in_bytes");
    let pids = read("pids", "pids.max");
    // the container's process is in those cgroups
    let pid = bed.state(&id)["pid"]
        .as_u64()
        .expect("a running container has a pid");
    let procs = read("pids", "cgroup.procs");
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "img run: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(quota, "50000");
    assert_eq!(period, "100000");
    assert_eq!(memory, (32u64 << 20).to_string());
    assert_eq!(pids, "16");
    assert!(
        procs.lines().any(|p| p == pid.to_string()),
        "pid {pid} not in cgroup.procs {procs:?}"
    );
    assert!(
        !bed.containers_dir().join(&id).exists(),
        "--rm left {id} behind"
    );
    bed.assert_nothing_left();
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn the_writable_layer_is_per_container_and_snapshots_stay_intact() {
    let bed = Bed::new("upper");
    // the first run prepares the snapshots
    bed.run_rm(&[], &["true"]).assert_ok();
    let snaps_before = snapshots(&bed.root.path);
    assert!(!snaps_before.is_empty());
    let passwd_before = snaps_before
        .keys()
        .map(|fs_dir| fs_dir.join("etc/passwd"))
        .find(|p| p.exists())
        .map(|p| fs::read_to_string(p).unwrap())
        .expect("a snapshot has /etc/passwd");

    let before = bed.container_ids();
    let run = bed.run(
        &[],
        &[
            "sh",
            "-c",
            "echo data > /newfile && echo junk >> /etc/passwd && chmod 600 /etc/group \
             && rm /bin/ls && rm -r /tmp && mkdir -p /root/d && echo deep > /root/d/f \
             && touch /bin/busybox",
        ],
    );
    run.assert_ok();
    let id = bed.new_container(&before);
    let upper = bed.containers_dir().join(&id).join("upper");
    assert_eq!(
        fs::read_to_string(upper.join("newfile")).unwrap(),
        "data\n",
        "the new file is in {}",
        upper.display()
    );
    assert_eq!(
        fs::read_to_string(upper.join("etc/passwd")).unwrap(),
        format!("{passwd_before}junk\n")
    );
    assert_eq!(
        fs::read_to_string(upper.join("root/d/f")).unwrap(),
        "deep\n"
    );
    let whiteout = fs::symlink_metadata(upper.join("bin/ls")).expect("a whiteout for /bin/ls");
    assert!(
        whiteout.file_type().is_char_device() && whiteout.rdev() == 0,
        "/bin/ls in the upper dir is a whiteout (0/0 character device)"
    );

    // a second container of the same image sees the image, not the first one's changes
    let run = bed.run_rm(
        &[],
        &[
            "sh",
            "-c",
            "test -e /newfile && echo newfile; cat /etc/passwd; test -L /bin/ls && echo ls; \
             test -d /tmp && echo tmp; test -e /root/d && echo d; true",
        ],
    );
    run.assert_ok();
    assert_eq!(run.stdout, format!("{passwd_before}ls\ntmp\n"), "{run}");

    // a container writing more, removed with --rm
    let run = bed.run_rm(
        &[],
        &[
            "sh",
            "-c",
            "echo x > /bin/busybox2 && rm /etc/group && echo y > /etc/passwd && ln -s a /b",
        ],
    );
    run.assert_ok();

    let snaps_after = snapshots(&bed.root.path);
    assert_eq!(
        snaps_before.keys().collect::<Vec<_>>(),
        snaps_after.keys().collect::<Vec<_>>(),
        "the set of snapshots changed"
    );
    for (dir, (files_before, xattrs_before)) in &snaps_before {
        let (files_after, xattrs_after) = &snaps_after[dir];
        let mut diffs = Vec::new();
        for (path, a) in files_before {
            match files_after.get(path) {
                Some(b) if a == b => {}
                Some(b) => diffs.push(format!("{path}: {a} -> {b}")),
                None => diffs.push(format!("{path}: removed")),
            }
        }
        for path in files_after.keys() {
            if !files_before.contains_key(path) {
                diffs.push(format!("{path}: added"));
            }
        }
        assert!(
            diffs.is_empty(),
            "running containers changed the snapshot {}:\n{}",
            dir.display(),
            diffs.join("\n")
        );
        assert_eq!(xattrs_before, xattrs_after, "xattrs of {}", dir.display());
    }
    bed.assert_nothing_left();
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn network_modes() {
    let bed = Bed::new("network");
    let lo_only: BTreeSet<String> = ["lo".to_string()].into();
    for flags in [&[][..], &["--network", "none"][..]] {
        let run = bed.run_rm(flags, &["cat", "/proc/net/dev"]);
        run.assert_ok();
        assert_eq!(interfaces(&run.stdout), lo_only, "{run}");
    }
    // lo is up: IFF_UP (1) in its flags
    let run = bed.run_rm(&[], &["cat", "/sys/class/net/lo/flags"]);
    run.assert_ok();
    let flags = u32::from_str_radix(run.stdout.trim().trim_start_matches("0x"), 16)
        .unwrap_or_else(|e| panic!("lo flags {:?}: {e}", run.stdout));
    assert_eq!(flags & 1, 1, "lo is not up: {run}");

    let host = interfaces(&fs::read_to_string("/proc/net/dev").unwrap());
    let run = bed.run_rm(&["--network", "host"], &["cat", "/proc/net/dev"]);
    run.assert_ok();
    let inside = interfaces(&run.stdout);
    assert_eq!(inside.len(), host.len(), "{run}");
    assert_eq!(inside, host, "{run}");
    bed.assert_nothing_left();
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn volumes_and_a_read_only_root() {
    let bed = Bed::new("volumes");
    let host = bed.root.path.join("host-dir");
    fs::create_dir_all(&host).unwrap();
    fs::write(host.join("f"), "hello\n").unwrap();
    let host_str = host.display().to_string();

    let ro = format!("{host_str}:/data:ro");
    let run = bed.run_rm(&["-v", &ro], &["sh", "-c", "cat /data/f; echo x > /data/g"]);
    assert_ne!(run.code, 0, "a write to a :ro volume fails: {run}");
    assert_eq!(run.stdout, "hello\n", "{run}");
    assert!(!host.join("g").exists(), "the :ro volume was written");

    let rw = format!("{host_str}:/data");
    let run = bed.run_rm(
        &["-v", &rw],
        &["sh", "-c", "cat /data/f; echo written > /data/g"],
    );
    run.assert_ok();
    assert_eq!(run.stdout, "hello\n", "{run}");
    assert_eq!(
        fs::read_to_string(host.join("g")).unwrap(),
        "written\n",
        "the file written in /data is on the host"
    );

    let before = bed.container_ids();
    let run = bed.run(&["--read-only"], &["sh", "-c", "echo x > /etc/zz"]);
    assert_ne!(run.code, 0, "a write to a --read-only root fails: {run}");
    assert!(run.stderr.contains("Read-only"), "{run}");
    let id = bed.new_container(&before);
    let upper = bed.containers_dir().join(&id).join("upper");
    assert!(
        !upper.join("etc/zz").exists(),
        "the write reached the upper dir"
    );
    // reading still works
    let run = bed.run_rm(&["--read-only"], &["cat", "/etc/passwd"]);
    run.assert_ok();
    assert!(run.stdout.starts_with("root:"), "{run}");
    bed.assert_nothing_left();
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn a_bundle_runs_under_runc_like_img_run() {
    let bed = Bed::new("bundle");
    assert!(
        Command::new("runc").arg("--version").output().is_ok(),
        "runc is not installed (tools/test installs it)"
    );
    let script = "echo hi; echo $$; id -u; id -g; pwd; echo $HOME; ls /; cat /etc/passwd; \
                  wc -l < /proc/net/dev; cat /etc/hostname; hostname";
    let bundle = bed.root.path.join("bundle");
    let bundle_str = bundle.display().to_string();
    let run = bed.run(&["--bundle", &bundle_str], &["sh", "-c", script]);
    run.assert_ok();
    assert!(bundle.join("config.json").is_file(), "{run}");
    assert!(bundle.join("rootfs/bin/busybox").is_file(), "{run}");
    assert!(
        bed.container_ids().is_empty(),
        "--bundle made a container directory"
    );

    let runc_id = format!("img-test-{}", unique());
    let out = Command::new("runc")
        .args(["run", &runc_id])
        .current_dir(&bundle)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run runc");
    let runc = Run {
        cmdline: format!("cd {bundle_str} && runc run {runc_id}"),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    // `runc run` deletes a container that ran in the foreground; delete is for safety
    let _ = Command::new("runc")
        .args(["delete", "--force", &runc_id])
        .stdin(Stdio::null())
        .output();
    let state = Command::new("runc")
        .args(["state", &runc_id])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!state.status.success(), "runc still knows {runc_id}");
    runc.assert_ok();

    let img = bed.run_rm(&[], &["sh", "-c", script]);
    img.assert_ok();
    // the last two lines (/etc/hostname and hostname) are each run's own short id
    let split = |r: &Run| -> (Vec<String>, Vec<String>) {
        let lines: Vec<String> = r.stdout.lines().map(str::to_string).collect();
        assert!(lines.len() > 2, "{r}");
        let (same, ids) = lines.split_at(lines.len() - 2);
        (same.to_vec(), ids.to_vec())
    };
    let (runc_same, runc_ids) = split(&runc);
    let (img_same, img_ids) = split(&img);
    assert_eq!(runc_same, img_same, "runc:\n{runc}\nimg:\n{img}");
    for (ids, r) in [(&runc_ids, &runc), (&img_ids, &img)] {
        assert!(is_short_id(&ids[0]), "{r}");
        assert_eq!(ids[0], ids[1], "{r}");
    }
    bed.assert_nothing_left();
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn redis_server_runs() {
    let bed = Bed::new("redis");
    let redis = testbed().plain_ref("redis:7");
    let run = bed.run_rm_image(&[], &redis, &["redis-server", "--version"]);
    run.assert_ok();
    assert!(run.stdout.starts_with("Redis server v="), "{run}");
    bed.assert_nothing_left();
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn concurrent_runs_in_two_roots_all_start() {
    let a = Bed::new("concurrent-a");
    let b = Bed::another("concurrent-b");
    // cgroups are the machine's, container directories each root's own: a container starting
    // in one root must not lose its new cgroup to a run in the other
    for bed in [&a, &b] {
        bed.root.ok(&["pull", &bed.busybox]);
    }
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for bed in [&a, &b] {
            let failures = &failures;
            s.spawn(move || {
                for _ in 0..20 {
                    let run = bed.run_rm(&[], &["true"]);
                    if run.code != 0 {
                        failures.lock().unwrap().push(run.to_string());
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of 40 runs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    a.assert_nothing_left();
    b.assert_nothing_left();
}

/// `--bundle relb` (a relative path) wrote bind sources as `relb/hosts`, which runc resolved
/// inside the bundle (`relb/relb/hosts`) and failed on: paths in a bundle are absolute.
#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn a_relative_bundle_path_runs_under_runc() {
    let bed = Bed::new("relative-bundle");
    assert!(
        Command::new("runc").arg("--version").output().is_ok(),
        "runc is not installed (tools/test installs it)"
    );
    fs::create_dir_all(&bed.root.path).unwrap();
    let out = bed
        .root
        .command(&[
            "run",
            "--bundle",
            "relb",
            &bed.busybox,
            "cat",
            "/etc/hostname",
        ])
        .current_dir(&bed.root.path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bundle = bed.root.path.join("relb");
    let spec: Value =
        serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap();
    for m in spec["mounts"].as_array().unwrap() {
        let source = m["source"].as_str().unwrap_or_default();
        assert!(
            !source.contains('/') || source.starts_with('/'),
            "a relative source in the bundle: {m}"
        );
    }
    let runc_id = format!("img-test-{}", unique());
    let runc = Command::new("runc")
        .args(["run", &runc_id])
        .current_dir(&bundle)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = Command::new("runc")
        .args(["delete", "--force", &runc_id])
        .stdin(Stdio::null())
        .output();
    assert!(
        runc.status.success(),
        "runc: {}",
        String::from_utf8_lossy(&runc.stderr)
    );
    assert!(is_short_id(String::from_utf8_lossy(&runc.stdout).trim()));
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn run_of_an_image_not_stored_says_what_docker_says() {
    let tb = testbed();
    let root = TestRoot::new("run-pulls");
    let busybox = tb.plain_ref("busybox:latest");
    let run = root.run(&["run", "--rm", &busybox, "echo", "ran"]);
    run.assert_ok();
    assert_eq!(run.stdout, "ran\n");
    let digest = support::registry_digest(&busybox);
    assert_eq!(
        run.stderr,
        format!(
            "Unable to find image '{busybox}' locally\nDigest: {digest}\n\
             Status: Downloaded newer image for {busybox}\n"
        ),
        "{run}"
    );
    // stored now: nothing more is said
    let again = root.run(&["run", "--rm", &busybox, "true"]);
    again.assert_ok();
    assert_eq!(again.stderr, "", "{again}");
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn env_file_add_host_and_tmpfs_as_docker_has_them() {
    let bed = Bed::new("run-flags");
    let env_file = bed.root.path.join("vars.env");
    fs::create_dir_all(&bed.root.path).unwrap();
    fs::write(&env_file, "# a comment\nA=1\n\nB=two words\nC=from file\n").unwrap();
    let env_file = env_file.to_str().unwrap();
    let run = bed.run_rm(
        &[
            "--env-file",
            env_file,
            "-e",
            "C=flag wins",
            "--add-host",
            "db:10.0.0.5",
            "--add-host",
            "v6=[fd00::1]",
            "--tmpfs",
            "/scratch",
            "--tmpfs",
            "/fast:exec,size=1m",
        ],
        &[
            "sh",
            "-c",
            "echo \"$A|$B|$C\"; grep -E '[[:space:]](db|v6)$' /etc/hosts; \
             grep -E ' /(scratch|fast) ' /proc/mounts | cut -d' ' -f2,4",
        ],
    );
    run.assert_ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], "1|two words|flag wins", "{run}");
    assert_eq!(&lines[1..3], ["10.0.0.5\tdb", "fd00::1\tv6"], "{run}");
    let scratch = lines
        .iter()
        .find(|l| l.starts_with("/scratch "))
        .expect("/scratch");
    for o in ["nosuid", "nodev", "noexec"] {
        assert!(scratch.contains(o), "{scratch}");
    }
    let fast = lines
        .iter()
        .find(|l| l.starts_with("/fast "))
        .expect("/fast");
    assert!(
        !fast.contains("noexec") && fast.contains("size=1024k"),
        "{fast}"
    );

    for (flags, wanted) in [
        (
            &["--env-file", "/nonexistent/vars"][..],
            "/nonexistent/vars",
        ),
        (&["--add-host", "nohost"][..], "--add-host"),
        (&["--tmpfs", "relative"][..], "--tmpfs"),
    ] {
        let run = bed.run_rm(flags, &["true"]);
        assert_eq!(run.code, 125, "{run}");
        assert!(assert_one_error_line(&run.stderr).contains(wanted), "{run}");
    }
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn a_foreground_containers_output_is_kept_for_logs() {
    let bed = Bed::new("foreground-logs");
    bed.root.ok(&["pull", "-q", &bed.busybox]);
    let run = bed.run_image(
        &["--name", "fg"],
        &bed.busybox.clone(),
        &["sh", "-c", "echo out; echo err >&2; exit 4"],
    );
    assert_eq!(run.code, 4, "{run}");
    assert_eq!(
        (run.stdout.as_str(), run.stderr.as_str()),
        ("out\n", "err\n"),
        "{run}"
    );
    // as docker: kept until rm, both streams (each in its order; between the two streams
    // the order is the order they reached us, as with docker)
    let logs = bed.root.ok(&["logs", "fg"]);
    let mut lines: Vec<&str> = logs.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["err", "out"], "{logs}");
    bed.root.ok(&["rm", "fg"]);
    let (_, err) = bed.root.fails(&["logs", "fg"]);
    assert!(
        assert_one_error_line(&err).contains("no such container"),
        "{err}"
    );
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn ulimit_dns_and_mount_as_docker_has_them() {
    let bed = Bed::new("ulimit-dns-mount");
    let src = bed.root.path.join("bind-src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), "bound\n").unwrap();
    let bind = format!("type=bind,source={},target=/m,readonly", src.display());
    let run = bed.run_rm(
        &[
            "--ulimit",
            "nofile=512:1024",
            "--dns",
            "10.0.0.53",
            "--dns-search",
            "example.test",
            "--dns-option",
            "ndots:2",
            "--mount",
            &bind,
            "--mount",
            "type=tmpfs,target=/t,tmpfs-size=1m",
        ],
        &[
            "sh",
            "-c",
            "ulimit -n; ulimit -Hn; cat /etc/resolv.conf; cat /m/f; \
             touch /m/x 2>/dev/null || echo read-only; grep ' /t ' /proc/mounts | cut -d' ' -f4",
        ],
    );
    run.assert_ok();
    assert_eq!(
        run.stdout,
        "512\n1024\nnameserver 10.0.0.53\nsearch example.test\noptions ndots:2\nbound\nread-only\n\
         rw,nosuid,nodev,noexec,relatime,size=1024k\n",
        "{run}"
    );
    // a limit above our own hard one is refused, as are named volumes for now
    let ours = fs::read_to_string("/proc/self/limits").unwrap();
    // (an unlimited hard limit cannot be exceeded: that case is then left out)
    let hard: Option<u64> = ours
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4)?.parse().ok());
    let above = hard.map(|h| format!("nofile=1:{}", h + 1));
    let mut cases = vec![
        (
            "--mount",
            "type=volume,target=/v",
            "anonymous volumes are not supported",
        ),
        ("--dns", "not-an-ip", "--dns"),
    ];
    if let Some(above) = &above {
        cases.push(("--ulimit", above.as_str(), "can only be lowered"));
    }
    for (flag, value, wanted) in cases {
        let run = bed.run_rm(&[flag, value], &["true"]);
        assert_eq!(run.code, 125, "{run}");
        assert!(assert_one_error_line(&run.stderr).contains(wanted), "{run}");
    }
}
