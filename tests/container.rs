//! End-to-end tests of detached containers and their commands (`run -d`, `ps`, `logs`, `stop`,
//! `start`, `rm`, `container inspect`), published ports, `-it` terminals and the cleanup after
//! a crashed supervisor, against the local registry of `tools/testbed`. Outcomes are checked
//! from outside img where possible: a real redis client conversation over the published port,
//! `/proc/net/tcp`, `/proc/<pid>`, `/proc/mounts`, the cgroup directories, the container's
//! directory, and `script` (util-linux) as the terminal of `-it`.
//!
//! Every test needs root (namespaces, overlay mounts, cgroups); without it a test says why
//! and returns.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Run, TestRoot, assert_one_error_line, cgroup_dirs, is_root, testbed};

/// One test's store root, with the test bed's images.
struct Bed {
    root: TestRoot,
    /// `127.0.0.1:5000/busybox:latest`.
    busybox: String,
    /// `127.0.0.1:5000/redis:7`.
    redis: String,
}

impl Bed {
    /// A bed for `test` (root only: such tests are ignored unless built by root).
    fn new(test: &str) -> Bed {
        if !is_root() {
            panic!("{test}: containers need root (namespaces, overlay, cgroups)");
        }
        let tb = testbed();
        Bed {
            root: TestRoot::new(&format!("container-{test}")),
            busybox: tb.plain_ref("busybox:latest"),
            redis: tb.plain_ref("redis:7"),
        }
    }

    /// Run `img --root ROOT ARGS…` (asserting it did not panic).
    fn img(&self, args: &[&str]) -> Run {
        let run = self.root.run(args);
        assert!(!run.stderr.contains("panicked"), "img panicked: {run}");
        run
    }

    /// Run img, assert it exited 0, return its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let run = self.img(args);
        run.assert_ok();
        run.stdout
    }

    /// `img run -d FLAGS… IMAGE CMD…`: asserts it printed exactly one 64-hex id and returns it.
    fn run_d(&self, flags: &[&str], image: &str, cmd: &[&str]) -> String {
        let mut args = vec!["run", "-d"];
        args.extend(flags);
        args.push(image);
        args.extend(cmd);
        let run = self.img(&args);
        run.assert_ok();
        let id = run.stdout.trim_end_matches('\n');
        assert!(is_full_id(id), "run -d should print one 64-hex id: {run}");
        id.to_string()
    }

    /// `ROOT/containers/<id>`.
    fn dir(&self, id: &str) -> PathBuf {
        self.root.path.join("containers").join(id)
    }

    /// The container ids under `ROOT/containers/`.
    fn container_ids(&self) -> BTreeSet<String> {
        match fs::read_dir(self.root.path.join("containers")) {
            Ok(entries) => entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => BTreeSet::new(),
        }
    }

    /// `ROOT/containers/<id>/state.json`, parsed.
    fn state(&self, id: &str) -> Value {
        let path = self.dir(id).join("state.json");
        let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Poll `state.json` until its status is `status`; returns it.
    fn wait_status(&self, id: &str, status: &str) -> Value {
        let mut last = Value::Null;
        wait_until(&format!("container {id} to be {status}"), 30, || {
            last = self.state(id);
            last["status"] == status
        });
        last
    }

    /// `img logs ID`.
    fn logs(&self, id: &str) -> String {
        self.ok(&["logs", id])
    }

    /// Poll `img logs` until `needle` occurs `times` times; returns the log.
    fn wait_log(&self, id: &str, needle: &str, times: usize) -> String {
        let mut log = String::new();
        wait_until(
            &format!("{needle:?} ×{times} in the log of {id}"),
            30,
            || {
                log = self.logs(id);
                log.matches(needle).count() >= times
            },
        );
        log
    }

    /// The row of `img ps [-a]` for the container `id`, if it lists it.
    fn ps_row(&self, all: bool, id: &str) -> Option<String> {
        let args: &[&str] = if all { &["ps", "-a"] } else { &["ps"] };
        let out = self.ok(args);
        let header = out.lines().next().unwrap_or_default();
        // docker's columns, in docker's order
        let columns: Vec<&str> = header
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(
            columns,
            [
                "CONTAINER ID",
                "IMAGE",
                "COMMAND",
                "CREATED",
                "STATUS",
                "PORTS",
                "NAMES"
            ],
            "{out}"
        );
        out.lines()
            .skip(1)
            .find(|l| l.starts_with(&id[..12]))
            .map(str::to_string)
    }

    /// The short ids `img ps -q [-a]` prints, asserting each is 12 hex digits.
    fn ps_quiet(&self, extra: &[&str]) -> Vec<String> {
        let mut args = vec!["ps", "-q"];
        args.extend(extra);
        let out = self.ok(&args);
        let ids: Vec<String> = out.lines().map(str::to_string).collect();
        for id in &ids {
            assert!(is_short_id(id), "ps -q printed {id:?}: {out}");
        }
        ids
    }

    /// No mount mentions the root, and none of the container's cgroups exists.
    fn assert_no_mount_or_cgroup(&self, id: &str) {
        let root = self.root.path.display().to_string();
        let mounts = fs::read_to_string("/proc/mounts").expect("/proc/mounts");
        let ours: Vec<&str> = mounts.lines().filter(|l| l.contains(&root)).collect();
        assert!(ours.is_empty(), "mounts left behind:\n{}", ours.join("\n"));
        let left: Vec<PathBuf> = cgroup_dirs(id).into_iter().filter(|d| d.exists()).collect();
        assert!(left.is_empty(), "cgroups of {id} left behind: {left:?}");
    }
}

impl Drop for Bed {
    /// Never leave a container running behind a test, passed or failed (the directories stay
    /// for a look when it failed; see [`TestRoot`]).
    fn drop(&mut self) {
        for id in self.container_ids() {
            let _ = self.root.run(&["stop", "-t", "0", &id]);
        }
    }
}

/// Whether `s` is a 64 hex digit container id.
fn is_full_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `s` is a 12 hex digit short id.
fn is_short_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether process `pid` exists and is not a zombie.
fn alive(pid: u64) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().map(|r| r.trim_start().to_string()))
        .is_some_and(|rest| !rest.starts_with('Z'))
}

/// Whether `/proc/<pid>` is gone altogether (reaped, not even a zombie).
fn reaped(pid: u64) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// Call `f` every 20 ms until it holds; panic after `secs` seconds.
fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A port nobody listens on now (bound to 127.0.0.1:0 and released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

/// The local addresses (`HEXADDR:HEXPORT`) of the listening TCP sockets on `port`, from
/// `/proc/net/tcp` and `/proc/net/tcp6`.
fn listeners_on(port: u16) -> Vec<String> {
    let suffix = format!(":{port:04X}");
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cells: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st …; st 0A is LISTEN
            if cells.len() > 3 && cells[3] == "0A" && cells[1].ends_with(&suffix) {
                out.push(cells[1].to_string());
            }
        }
    }
    out
}

/// Send redis's inline `PING` to 127.0.0.1:`port` and return the first reply line.
fn redis_ping(port: u16) -> String {
    let addr = ("127.0.0.1", port);
    let mut stream =
        TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to 127.0.0.1:{port}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(b"PING\r\n").unwrap();
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while !reply.ends_with(b"\r\n") {
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => reply.push(byte[0]),
            Err(e) => panic!("reading redis's reply on port {port}: {e}"),
        }
    }
    String::from_utf8_lossy(&reply).into_owned()
}

/// The host port `img port NAME CTR` prints for `address` (`127.0.0.1`, `0.0.0.0`, `[::]`).
fn published(bed: &Bed, name: &str, ctr: &str, address: &str) -> u16 {
    let out = bed.ok(&["port", name, ctr]);
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{address}:")))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("img port {name} {ctr} shows no {address}: {out}"))
}

/// The pids whose command line is `… __supervise DIR` for the container directory `dir`.
fn supervisors_of(dir: &Path) -> Vec<u64> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u64>() else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a == "__supervise") && args.iter().any(|a| Path::new(a) == dir) {
            out.push(pid);
        }
    }
    out
}

/// SIGKILL `pid`.
fn sigkill(pid: u64) {
    // SAFETY: sending a signal to a pid we just looked up.
    let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill -9 {pid}: {}", std::io::Error::last_os_error());
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn redis_serves_a_published_port_through_stop_start_and_rm() {
    let bed = Bed::new("redis");
    let port = free_port();
    let publish = format!("{port}:6379");
    let id = bed.run_d(&["--name", "cache", "-p", &publish], &bed.redis, &[]);
    let dir = bed.dir(&id);
    let first = bed.state(&id);
    assert_eq!(first["status"], "running", "{first}");
    let pid = first["pid"]
        .as_u64()
        .expect("a running container has a pid");
    assert!(alive(pid), "pid {pid} of {id} is not running: {first}");

    // redis talks to a real client through the published port, once it says it is ready
    let log = bed.wait_log(&id, "Ready to accept connections", 1);
    assert!(log.contains("Redis version="), "{log}");
    assert_eq!(redis_ping(port), "+PONG\r\n");

    // as docker: `-p HOST:CTR` listens on every address, IPv4 and IPv6 (one dual-stack
    // socket on [::], or 0.0.0.0 where IPv6 is off); the test connects on loopback only
    let listening = listeners_on(port);
    assert!(
        listening == vec![format!("{}:{port:04X}", "0".repeat(32))]
            || listening == vec![format!("00000000:{port:04X}")],
        "port {port} should listen on every address: {listening:?}"
    );

    let row = bed
        .ps_row(false, &id)
        .expect("ps lists the running container");
    assert!(row.trim_end().ends_with(" cache"), "{row}");
    assert!(row.contains(&bed.redis), "{row}");
    assert!(row.contains("\"redis-server\""), "{row}");
    assert!(row.contains("Up "), "{row}");
    assert!(
        row.contains(&format!(
            "0.0.0.0:{port}->6379/tcp, [::]:{port}->6379/tcp   cache"
        )),
        "{row}"
    );
    assert_eq!(bed.ps_quiet(&[]), vec![id[..12].to_string()]);
    let listed = bed.root.json(&["ps", "--json"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["id"], id.as_str(), "{listed}");

    let inspect = bed.root.json(&["container", "inspect", "--json", "cache"]);
    assert_eq!(inspect["Id"], id.as_str(), "{inspect}");
    assert_eq!(inspect["Name"], "cache", "{inspect}");
    assert_eq!(inspect["State"]["Status"], "running", "{inspect}");
    assert_eq!(inspect["State"]["Running"], true, "{inspect}");
    assert_eq!(inspect["State"]["Pid"], pid, "{inspect}");
    assert_eq!(
        inspect["HostConfig"]["PortBindings"],
        serde_json::json!([format!("0.0.0.0:{port}->6379/tcp, [::]:{port}->6379/tcp")]),
        "{inspect}"
    );
    assert_eq!(
        inspect["Config"]["Cmd"],
        serde_json::json!(["redis-server"]),
        "{inspect}"
    );
    assert_eq!(inspect["HostConfig"]["AutoRemove"], false, "{inspect}");

    // stop: redis handles SIGTERM, saves and exits 0
    let supervisor = first["supervisor"].as_u64().expect("a supervisor pid");
    assert_eq!(bed.ok(&["stop", "cache"]), "cache\n");
    let stopped = bed.state(&id);
    assert_eq!(stopped["status"], "exited", "{stopped}");
    assert_eq!(stopped["exit_code"], 0, "{stopped}");
    assert!(!alive(pid), "redis (pid {pid}) survived stop");
    wait_until("the supervisor to end after stop", 10, || {
        !alive(supervisor)
    });
    // Nothing listens (read from /proc/net: a connect to a closed ephemeral port on loopback
    // can succeed by connecting to itself, TCP's self-connect, and fail the test once in a
    // while).
    assert!(
        listeners_on(port).is_empty(),
        "port {port} is still listened on after stop"
    );
    assert!(bed.ps_row(false, &id).is_none(), "ps lists a stopped one");
    assert!(bed.ps_quiet(&[]).is_empty());
    let row = bed.ps_row(true, &id).expect("ps -a lists the stopped one");
    assert!(row.contains("Exited (0)"), "{row}");
    assert!(
        bed.dir(&id).join("upper/data/dump.rdb").is_file(),
        "redis saved its data at shutdown into the writable layer"
    );
    let inspect = bed
        .root
        .json(&["container", "inspect", "--json", &id[..12]]);
    assert_eq!(inspect["State"]["Running"], false, "{inspect}");
    assert_eq!(inspect["State"]["Status"], "exited", "{inspect}");
    assert_eq!(inspect["State"]["ExitCode"], 0, "{inspect}");
    assert_eq!(inspect["State"]["Pid"], Value::Null, "{inspect}");

    // start: the same container again, serving the same port
    assert_eq!(bed.ok(&["start", "cache"]), "cache\n");
    let again = bed.state(&id);
    assert_eq!(again["status"], "running", "{again}");
    let pid2 = again["pid"].as_u64().expect("a pid after start");
    assert_ne!(pid2, pid);
    assert!(alive(pid2));
    let log = bed.wait_log(&id, "Ready to accept connections", 2);
    assert!(
        log.contains("DB loaded from disk"),
        "the restarted redis should load the dump it saved in its writable layer:\n{log}"
    );
    assert_eq!(redis_ping(port), "+PONG\r\n");
    assert_eq!(bed.ps_quiet(&[]), vec![id[..12].to_string()]);

    // rm -f: killed, removed, nothing left
    let supervisor2 = again["supervisor"].as_u64().expect("a supervisor pid");
    assert_eq!(bed.ok(&["rm", "-f", "cache"]), "cache\n");
    assert!(
        !dir.exists(),
        "{} is still there after rm -f",
        dir.display()
    );
    assert!(!alive(pid2), "redis (pid {pid2}) survived rm -f");
    wait_until("the supervisor to end after rm -f", 10, || {
        !alive(supervisor2)
    });
    assert!(listeners_on(port).is_empty(), "port {port} after rm -f");
    assert!(bed.ps_quiet(&["-a"]).is_empty());
    bed.assert_no_mount_or_cgroup(&id);
    let (_, err) = bed.root.fails(&["logs", "cache"]);
    assert_one_error_line(&err);
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn a_detached_containers_output_and_exit_code_are_kept() {
    let bed = Bed::new("detached");
    // The command waits for a file in a bind-mounted host directory: the test decides when it
    // goes on, without guessing how long anything takes.
    let gate = bed.root.path.join("gate");
    fs::create_dir_all(&gate).unwrap();
    let volume = format!("{}:/gate", gate.display());
    let script = "while [ ! -e /gate/go ]; do sleep 0.05; done; \
                  echo run >> /runs; echo out; echo err >&2; exit 3";
    let id = bed.run_d(
        &["--name", "job", "--volume", &volume],
        &bed.busybox,
        &["sh", "-c", script],
    );
    assert_eq!(bed.state(&id)["status"], "running");
    assert_eq!(bed.logs("job"), "", "nothing was written yet");

    // logs -f follows until the container exits
    let mut follow = bed.root.command(&["logs", "-f", "job"]);
    follow.stdout(Stdio::piped()).stderr(Stdio::piped());
    let follower = std::thread::spawn(move || follow.output().expect("img logs -f"));
    fs::write(gate.join("go"), "").unwrap();
    let state = bed.wait_status(&id, "exited");
    assert_eq!(state["exit_code"], 3, "{state}");
    assert_eq!(state["error"], Value::Null, "{state}");
    assert!(state["finished"].is_string(), "{state}");
    let followed = follower.join().unwrap();
    assert!(followed.status.success(), "{followed:?}");
    assert_eq!(String::from_utf8_lossy(&followed.stdout), "out\nerr\n");

    assert_eq!(bed.logs("job"), "out\nerr\n");
    assert_eq!(bed.logs(&id[..12]), "out\nerr\n", "logs by short id");
    let log = fs::read_to_string(bed.dir(&id).join("log")).unwrap();
    assert_eq!(log, "out\nerr\n");
    assert!(bed.ps_row(false, &id).is_none());
    let row = bed.ps_row(true, &id).expect("ps -a lists it");
    assert!(row.contains("Exited (3)"), "{row}");
    assert!(row.trim_end().ends_with(" job"), "{row}");
    assert_eq!(bed.ps_quiet(&["-a"]), vec![id[..12].to_string()]);
    // `-q` before the subcommand works too
    assert_eq!(bed.ok(&["-q", "ps", "-a"]), format!("{}\n", &id[..12]));
    let inspect = bed.root.json(&["container", "inspect", "--json", "job"]);
    assert_eq!(inspect["State"]["ExitCode"], 3, "{inspect}");
    assert_eq!(inspect["State"]["Running"], false, "{inspect}");

    // start runs it again on the same writable layer, appending to the same log
    fs::remove_file(gate.join("go")).unwrap();
    assert_eq!(bed.ok(&["start", "job"]), "job\n");
    assert_eq!(bed.state(&id)["status"], "running");
    fs::write(gate.join("go"), "").unwrap();
    let state = bed.wait_status(&id, "exited");
    assert_eq!(state["exit_code"], 3, "{state}");
    assert_eq!(bed.logs("job"), "out\nerr\nout\nerr\n");
    assert_eq!(
        fs::read_to_string(bed.dir(&id).join("upper/runs")).unwrap(),
        "run\nrun\n",
        "the second run sees the first one's file"
    );
    assert_eq!(bed.ok(&["rm", "job"]), "job\n");
    assert!(!bed.dir(&id).exists());
    bed.assert_no_mount_or_cgroup(&id);

    // --rm -d: the directory goes away by itself when the command ends
    fs::remove_file(gate.join("go")).unwrap();
    let id = bed.run_d(
        &["--rm", "--volume", &volume],
        &bed.busybox,
        &["sh", "-c", script],
    );
    let state = bed.state(&id);
    assert_eq!(state["auto_remove"], true, "{state}");
    assert_eq!(state["status"], "running", "{state}");
    fs::write(gate.join("go"), "").unwrap();
    wait_until("the --rm container's directory to go", 30, || {
        !bed.dir(&id).exists()
    });
    assert!(bed.ps_quiet(&["-a"]).is_empty());
    bed.assert_no_mount_or_cgroup(&id);
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn a_detached_command_that_ends_at_once_still_prints_its_id() {
    let bed = Bed::new("quick");
    // docker prints the id of any container whose command ran, however short its life. img's
    // run -d polls state.json every 5 ms and takes an `exited` it sees before `running` for a
    // failure to start (src/commands/container.rs, start_detached).
    for _ in 0..5 {
        let id = bed.run_d(
            &[],
            &bed.busybox,
            &["sh", "-c", "echo out; echo err >&2; exit 3"],
        );
        let state = bed.wait_status(&id, "exited");
        assert_eq!(state["exit_code"], 3, "{state}");
        assert_eq!(state["error"], Value::Null, "{state}");
        assert_eq!(bed.logs(&id), "out\nerr\n");
        assert_eq!(bed.ok(&["start", &id]).trim(), id);
    }
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn stop_kills_after_the_grace_time_and_rm_and_names_are_guarded() {
    let bed = Bed::new("stop");
    let id = bed.run_d(&["--name", "same"], &bed.busybox, &["sleep", "300"]);
    let pid = bed.state(&id)["pid"].as_u64().expect("pid");
    assert!(alive(pid));

    // names are unique: a second `--name same` fails before making anything
    let before = bed.container_ids();
    let run = bed.img(&["run", "-d", "--name", "same", &bed.busybox, "true"]);
    assert_eq!(run.code, 125, "{run}");
    assert_eq!(run.stdout, "", "{run}");
    let line = assert_one_error_line(&run.stderr);
    assert!(line.contains("same"), "{line}");
    assert_eq!(
        bed.container_ids(),
        before,
        "a refused run left a directory"
    );

    // rm without -f refuses a running container and leaves it running
    let run = bed.img(&["rm", "same"]);
    run.assert_failed();
    assert_eq!(run.stdout, "", "{run}");
    let line = assert_one_error_line(&run.stderr);
    assert!(line.contains("same"), "{line}");
    assert!(bed.dir(&id).is_dir());
    assert!(alive(pid), "rm without -f killed the container");
    assert_eq!(bed.state(&id)["status"], "running");
    assert_eq!(bed.ps_quiet(&[]), vec![id[..12].to_string()]);

    // sleep as PID 1 ignores SIGTERM: stop -t 1 must SIGKILL it
    assert_eq!(bed.ok(&["stop", "-t", "1", "same"]), "same\n");
    let state = bed.state(&id);
    assert_eq!(state["status"], "exited", "{state}");
    assert_eq!(state["exit_code"], 137, "{state}");
    assert!(!alive(pid), "sleep (pid {pid}) survived stop");
    let row = bed.ps_row(true, &id).expect("ps -a lists it");
    assert!(row.contains("Exited (137)"), "{row}");
    assert!(bed.ps_quiet(&[]).is_empty());

    // stopping a stopped container is harmless; rm of a stopped one needs no -f
    assert_eq!(bed.ok(&["stop", "same"]), "same\n");
    assert_eq!(bed.ok(&["rm", "same"]), "same\n");
    assert!(!bed.dir(&id).exists());
    bed.assert_no_mount_or_cgroup(&id);
    // the name is free again
    let id2 = bed.run_d(&["--name", "same"], &bed.busybox, &["sleep", "300"]);
    assert_ne!(id2, id);
    assert_eq!(bed.ok(&["rm", "-f", "same"]), "same\n");
    bed.assert_no_mount_or_cgroup(&id2);
}

/// `img run -it …` under util-linux `script`, which gives it a pseudo-terminal; the test
/// writes what a user would type to script's stdin and reads the terminal's output.
struct Terminal {
    child: Child,
    stdin: Option<ChildStdin>,
    output: Arc<Mutex<Vec<u8>>>,
    /// Copies script's output into `output` until script closes it.
    reader: std::thread::JoinHandle<()>,
}

impl Terminal {
    /// Start `img --root ROOT ARGS…` in a terminal (`script -qec CMD /dev/null`).
    fn start(bed: &Bed, args: &[&str]) -> Terminal {
        let mut words = vec![
            env!("CARGO_BIN_EXE_img").to_string(),
            "--root".to_string(),
            bed.root.path.display().to_string(),
        ];
        words.extend(args.iter().map(|a| a.to_string()));
        let cmdline = words
            .iter()
            .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
            .collect::<Vec<_>>()
            .join(" ");
        let mut child = Command::new("script")
            .args(["-qec", &cmdline, "/dev/null"])
            .env_remove("IMG_ROOT")
            .env("TERM", "xterm")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot run script (util-linux)");
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut stdout = child.stdout.take().unwrap();
        let sink = Arc::clone(&output);
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let stdin = child.stdin.take();
        Terminal {
            child,
            stdin,
            output,
            reader,
        }
    }

    /// Everything the terminal showed so far.
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Everything the terminal showed, once script's output is closed.
    fn text_when_read(self) -> String {
        self.reader.join().expect("the terminal reader panicked");
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// How many bytes the terminal showed so far.
    fn len(&self) -> usize {
        self.output.lock().unwrap().len()
    }

    /// Wait until `needle` shows after the first `from` bytes of output.
    fn wait_for(&self, needle: &str, from: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.output.lock().unwrap()[from..].to_vec();
            if String::from_utf8_lossy(&out).contains(needle) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} never showed on the terminal; it showed:\n{:?}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Type `keys`.
    fn type_keys(&mut self, keys: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin.write_all(keys.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Wait (at most 20 s, then kill it) for img to end; its exit code (script passes it
    /// on) and the whole output.
    fn finish(mut self) -> (i32, String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                drop(self.stdin.take());
                // script has exited: its output is closed and the reader ends.
                let text = self.text_when_read();
                return (status.code().unwrap_or(-1), text);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "img run -it did not end within 20 s; the terminal showed:\n{:?}",
                    self.text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn run_it_gives_the_container_a_terminal_of_its_own() {
    let bed = Bed::new("tty");
    assert!(
        Command::new("script").arg("--version").output().is_ok(),
        "util-linux `script` is not installed (tools/test installs it)"
    );
    let busybox = bed.busybox.clone();

    // a terminal in the container's own devpts; the command's exit code comes back
    let term = Terminal::start(
        &bed,
        &[
            "run",
            "-it",
            "--rm",
            &busybox,
            "sh",
            "-c",
            "tty; echo hi; exit 4",
        ],
    );
    let (code, out) = term.finish();
    assert_eq!(code, 4, "{out:?}");
    assert!(out.contains("/dev/pts/0\r\n"), "{out:?}");
    assert!(out.contains("hi\r\n"), "{out:?}");
    assert!(bed.container_ids().is_empty(), "--rm left a directory");

    // an interactive shell reads what we type
    let mut term = Terminal::start(&bed, &["run", "-it", "--rm", &busybox, "sh"]);
    term.wait_for("# ", 0);
    term.type_keys("echo inside-$((6*7))\n");
    // the echo of the typed line shows `$((6*7))`; only the shell's output shows 42
    term.wait_for("inside-42\r\n", 0);
    term.type_keys("exit 5\n");
    let (code, out) = term.finish();
    assert_eq!(code, 5, "{out:?}");
    assert!(bed.container_ids().is_empty(), "--rm left a directory");

    // Ctrl-C reaches the foreground process in the container, not img
    let mut term = Terminal::start(&bed, &["run", "-it", "--rm", &busybox, "sh"]);
    term.wait_for("# ", 0);
    let mark = term.len();
    term.type_keys("sleep 30; echo sleep-ended-$((1+1))\n");
    term.wait_for("sleep 30", mark);
    // wait for the sleep to run before interrupting it: the container's only processes are
    // the shell and, once it forked, the sleep
    let id = bed.container_ids().into_iter().next().expect("a container");
    let pid = bed.state(&id)["pid"].as_u64().expect("pid");
    // and to be the terminal's foreground process group: until the shell's child has made
    // itself the foreground job, ^C would go to the shell (which waits on) instead.
    wait_until("sleep to be the terminal's foreground job", 20, || {
        foreground_child_named(pid, "sleep")
    });
    let mark = term.len();
    term.type_keys("\x03");
    term.wait_for("# ", mark);
    term.type_keys("exit 6\n");
    let (code, out) = term.finish();
    assert_eq!(code, 6, "{out:?}");
    assert!(
        !out.contains("sleep-ended-2"),
        "the sleep was not interrupted: {out:?}"
    );
    assert!(bed.container_ids().is_empty(), "--rm left a directory");
    bed.assert_no_mount_or_cgroup(&id);
}

/// Whether process `pid` has a child whose command name is `name`.
/// Whether a child of `pid` named `name` leads the foreground process group of its terminal
/// (`/proc/PID/stat`: pgrp is field 5, tpgid field 8).
fn foreground_child_named(pid: u64, name: &str) -> bool {
    let tasks = format!("/proc/{pid}/task");
    for task in fs::read_dir(tasks).into_iter().flatten().flatten() {
        let children = fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children.split_whitespace() {
            let stat = fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            // comm is in parentheses and may hold spaces: split after the last ')'.
            let Some((head, rest)) = stat.rsplit_once(") ") else {
                continue;
            };
            let comm = head.split_once(" (").map(|(_, c)| c).unwrap_or_default();
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // rest starts at field 3 (state): pgrp is fields[2], tpgid fields[5].
            if comm == name && fields.len() > 5 && fields[2] == fields[5] {
                return true;
            }
        }
    }
    false
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn ps_cleans_up_after_a_killed_supervisor() {
    let bed = Bed::new("crash");
    let id = bed.run_d(&["--name", "orphan"], &bed.busybox, &["sleep", "300"]);
    let dir = bed.dir(&id);
    let state = bed.state(&id);
    let pid = state["pid"].as_u64().expect("pid");
    let supervisors = supervisors_of(&dir);
    assert_eq!(
        supervisors.len(),
        1,
        "expected one `img __supervise {}` process",
        dir.display()
    );
    let supervisor = supervisors[0];
    assert_eq!(state["supervisor"], supervisor, "{state}");
    let cgroups: Vec<PathBuf> = cgroup_dirs(&id)
        .into_iter()
        .filter(|d| d.exists())
        .collect();
    assert!(!cgroups.is_empty(), "the running container has no cgroup");

    // img "crashes": its supervisor and the container die without a word
    sigkill(supervisor);
    sigkill(pid);
    // They are no longer our children's children: wait until init has reaped them.
    wait_until("init to reap the killed processes", 30, || {
        reaped(supervisor) && reaped(pid)
    });
    assert_eq!(
        bed.state(&id)["status"],
        "running",
        "nobody recorded the crash yet"
    );

    let row = bed.ps_row(true, &id).expect("ps -a lists it");
    assert!(row.contains("Exited"), "{row}");
    let state = bed.state(&id);
    assert_eq!(state["status"], "exited", "{state}");
    let error = state["error"].as_str().unwrap_or_default();
    assert!(error.contains("supervisor"), "{state}");
    assert!(state["finished"].is_string(), "{state}");
    for dir in &cgroups {
        assert!(!dir.exists(), "cgroup {} was left behind", dir.display());
    }
    bed.assert_no_mount_or_cgroup(&id);
    assert!(bed.ps_quiet(&[]).is_empty());
    let inspect = bed.root.json(&["container", "inspect", "--json", "orphan"]);
    assert_eq!(inspect["State"]["Running"], false, "{inspect}");
    assert_eq!(inspect["State"]["Status"], "exited", "{inspect}");
    assert!(
        inspect["State"]["Error"]
            .as_str()
            .is_some_and(|e| e.contains("supervisor")),
        "{inspect}"
    );
    // and it can be removed like any stopped container
    assert_eq!(bed.ok(&["rm", "orphan"]), "orphan\n");
    assert!(!dir.exists());
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn ps_right_after_the_crash_records_it() {
    let bed = Bed::new("crash-zombie");
    let id = bed.run_d(&[], &bed.busybox, &["sleep", "300"]);
    let state = bed.state(&id);
    let pid = state["pid"].as_u64().expect("pid");
    let supervisor = state["supervisor"].as_u64().expect("supervisor");
    sigkill(supervisor);
    sigkill(pid);
    wait_until("the killed processes to die", 10, || {
        !alive(supervisor) && !alive(pid)
    });
    if reaped(supervisor) {
        // This machine's init reaped the supervisor at once: the case cannot be seen here.
        eprintln!("init reaped the killed supervisor at once: nothing to check");
        return;
    }
    // The supervisor is dead (a zombie until init reaps it): the very next ps must see it so.
    let row = bed.ps_row(true, &id).expect("ps -a lists it");
    let state = bed.state(&id);
    assert_eq!(
        state["status"], "exited",
        "ps showed {row:?}; state: {state}"
    );
    assert!(
        state["error"]
            .as_str()
            .is_some_and(|e| e.contains("supervisor")),
        "{state}"
    );
    bed.assert_no_mount_or_cgroup(&id);
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn ports_wait_and_rename_as_docker_has_them() {
    let bed = Bed::new("ports");
    // -P: the image's exposed 6379 on a random port of every address; -p 127.0.0.1::6379 a
    // random port of loopback only
    let id = bed.run_d(
        &["--name", "p1", "-P", "-p", "127.0.0.1::6379"],
        &bed.redis,
        &[],
    );
    bed.wait_log(&id, "Ready to accept connections", 1);
    let ports = bed.ok(&["port", "p1"]);
    let lines: Vec<&str> = ports.lines().collect();
    assert_eq!(lines.len(), 3, "{ports}");
    assert!(
        lines.iter().all(|l| l.starts_with("6379/tcp -> ")),
        "{ports}"
    );
    let everywhere = published(&bed, "p1", "6379/tcp", "0.0.0.0");
    assert_eq!(published(&bed, "p1", "6379", "[::]"), everywhere);
    let local = published(&bed, "p1", "6379", "127.0.0.1");
    assert_ne!(everywhere, local);
    for port in [everywhere, local] {
        assert_ne!(port, 0);
        assert_eq!(redis_ping(port), "+PONG\r\n", "port {port}");
    }
    assert_eq!(
        listeners_on(local),
        vec![format!("0100007F:{local:04X}")],
        "-p 127.0.0.1::6379 listens on loopback only"
    );
    let row = bed.ps_row(false, &id).expect("ps lists it");
    assert!(
        row.contains(&format!("127.0.0.1:{local}->6379/tcp")),
        "{row}"
    );
    let (_, err) = bed.root.fails(&["port", "p1", "6380"]);
    assert!(
        assert_one_error_line(&err).contains("no public port '6380/tcp'"),
        "{err}"
    );

    // rename: the new name reaches everything, the old one nothing, and the supervisor's
    // record of the exit keeps it
    assert_eq!(bed.ok(&["rename", "p1", "cache-2"]), "");
    assert!(
        bed.ps_row(false, &id)
            .unwrap()
            .trim_end()
            .ends_with(" cache-2")
    );
    let (_, err) = bed.root.fails(&["port", "p1"]);
    assert!(assert_one_error_line(&err).contains("no such container"));
    let other = bed.run_d(&["--name", "other"], &bed.redis, &[]);
    let (_, err) = bed.root.fails(&["rename", "other", "cache-2"]);
    assert!(
        assert_one_error_line(&err).contains("already in use"),
        "{err}"
    );
    let (_, err) = bed.root.fails(&["rename", "other", "bad/name"]);
    assert!(
        assert_one_error_line(&err).contains("invalid container name"),
        "{err}"
    );

    // wait: blocks until the exit is recorded and prints the code (redis exits 0 on SIGTERM)
    let waiter = std::process::Command::new(env!("CARGO_BIN_EXE_img"))
        .args([
            "--root",
            bed.root.path.to_str().unwrap(),
            "wait",
            "cache-2",
            "other",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    bed.ok(&["kill", "-s", "TERM", "cache-2"]);
    bed.ok(&["kill", "other"]);
    let out = waiter.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "0\n137\n");
    assert_eq!(bed.state(&id)["name"], "cache-2");
    assert_eq!(bed.ok(&["wait", &other]), "137\n");
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn run_d_on_a_busy_port_says_why() {
    let bed = Bed::new("busy-port");
    // stored first: the run's stderr is then its error alone
    bed.ok(&["pull", "-q", &bed.redis]);
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let publish = format!("127.0.0.1:{port}:6379");
    for extra in [&[][..], &["--rm"][..]] {
        let mut args = vec!["run", "-d", "-p", &publish];
        args.extend(extra);
        args.push(&bed.redis);
        let run = bed.img(&args);
        assert_eq!(run.code, 125, "{run}");
        let line = assert_one_error_line(&run.stderr);
        assert!(line.contains("Address already in use"), "{run}");
        assert!(line.contains(&port.to_string()), "{run}");
    }
    // the one without --rm stays, exited, with the reason; the --rm one is gone
    let all = bed.ps_quiet(&["-a"]);
    assert_eq!(all.len(), 1, "{all:?}");
    let row = bed.ps_row(true, &all[0]).unwrap();
    assert!(row.contains("Exited (125)"), "{row}");
    drop(held);
}

/// The states (`R`, `S`, `Z`, …) of the children of process `pid`, from /proc (a zombie has
/// left its cgroup, so the cgroup's list would not show it).
fn child_states(pid: u64) -> Vec<String> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) STATE PPID …: the fields after the last ')'
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(1) == Some(&pid.to_string().as_str()) {
            out.push(fields[0].to_string());
        }
    }
    out
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn init_forwards_signals_and_reaps_zombies() {
    let bed = Bed::new("init");
    // An orphan that exits is handed to PID 1: `sleep` as PID 1 never reaps it (the control),
    // img's --init does.
    let orphan = "sh -c 'sleep 1 &'; echo spawned; exec sleep 600";
    let without = bed.run_d(&[], &bed.busybox, &["sh", "-c", orphan]);
    let with = bed.run_d(&["--init"], &bed.busybox, &["sh", "-c", orphan]);
    for id in [&without, &with] {
        bed.wait_log(id, "spawned", 1);
    }
    let pid1 = |id: &str| bed.state(id)["pid"].as_u64().expect("a pid");
    let (plain, init) = (pid1(&without), pid1(&with));
    wait_until("the zombie under a PID 1 that does not reap", 30, || {
        child_states(plain).iter().any(|s| s == "Z")
    });
    // init's children: sleep only, once the orphan has come and been reaped
    wait_until("--init to reap the orphan", 30, || {
        child_states(init) == ["S"]
    });

    // stop: SIGTERM reaches the command through init at once (143), where a PID 1 shell that
    // ignores it waits for the kill after the grace time (137)
    assert_eq!(bed.ok(&["stop", "-t", "60", &with]), format!("{with}\n"));
    assert_eq!(bed.state(&with)["exit_code"], 143);
    let sh = bed.run_d(
        &["--init"],
        &bed.busybox,
        &["sh", "-c", "echo up; while true; do sleep 1; done"],
    );
    bed.wait_log(&sh, "up", 1);
    bed.ok(&["stop", "-t", "60", &sh]);
    assert_eq!(bed.state(&sh)["exit_code"], 143);
    bed.ok(&["stop", "-t", "1", &without]);
    assert_eq!(bed.state(&without)["exit_code"], 137);

    // the command's own code, and docker's 127, come through init
    let run = bed.img(&["run", "--rm", "--init", &bed.busybox, "sh", "-c", "exit 3"]);
    assert_eq!(run.code, 3, "{run}");
    let run = bed.img(&["run", "--rm", "--init", &bed.busybox, "nosuchcmd"]);
    assert_eq!(run.code, 127, "{run}");
    // the container's processes cannot reach init's binary (the host's) through /proc/1
    let run = bed.img(&[
        "run",
        "--rm",
        "--init",
        &bed.busybox,
        "sh",
        "-c",
        "cat /proc/1/exe >/dev/null 2>&1 && echo reached || echo refused",
    ]);
    assert_eq!(run.stdout, "refused\n", "{run}");
}

/// The lines of /proc/PID/status naming the process's confinement, and the namespaces it is
/// in (readlink of /proc/PID/ns/*), as `KEY VALUE` lines.
const CONFINEMENT: &str = "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status; \
     for n in cgroup ipc mnt net pid uts user; do echo \"$n $(readlink /proc/self/ns/$n)\"; done";

/// What [`CONFINEMENT`] prints, read from the host for process `pid`.
fn confinement_of(pid: u64) -> String {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mut out: Vec<String> = status
        .lines()
        .filter(|l| {
            [
                "CapInh",
                "CapPrm",
                "CapEff",
                "CapBnd",
                "CapAmb",
                "NoNewPrivs",
                "Seccomp",
            ]
            .iter()
            .any(|k| l.starts_with(&format!("{k}:")))
        })
        .map(str::to_string)
        .collect();
    for n in ["cgroup", "ipc", "mnt", "net", "pid", "uts", "user"] {
        let link = fs::read_link(format!("/proc/{pid}/ns/{n}")).unwrap();
        out.push(format!("{n} {}", link.display()));
    }
    out.join("\n") + "\n"
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn exec_joins_a_running_container_with_its_confinement() {
    let bed = Bed::new("exec");
    let id = bed.run_d(&["--name", "cache"], &bed.redis, &[]);
    bed.wait_log(&id, "Ready to accept connections", 1);
    assert_eq!(bed.ok(&["exec", "cache", "redis-cli", "ping"]), "PONG\n");

    // the same capabilities, seccomp, no_new_privs and namespaces as the container's PID 1
    let pid = bed.state(&id)["pid"].as_u64().unwrap();
    let inside = bed.ok(&["exec", "cache", "sh", "-c", CONFINEMENT]);
    assert_eq!(
        inside.replace('\t', " "),
        confinement_of(pid).replace('\t', " ")
    );
    // …and its cgroup: a detached exec's process is among the cgroup's
    bed.ok(&["exec", "-d", "cache", "sleep", "600"]);
    let procs = cgroup_dirs(&id)
        .into_iter()
        .map(|d| d.join("cgroup.procs"))
        .find(|p| p.exists())
        .expect("the container's cgroup");
    let mut sleep = String::new();
    wait_until(
        "the detached exec to be in the container's cgroup",
        30,
        || {
            let text = fs::read_to_string(&procs).unwrap();
            sleep = text
                .lines()
                .find(|p| {
                    fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep")
                })
                .unwrap_or_default()
                .to_string();
            !sleep.is_empty()
        },
    );

    // nothing of ours inside: it holds only 0–2, its exe is the container's own, and its
    // parent is outside the PID namespace (no /proc/PPID/exe leads to our binary)
    let mut fds: Vec<String> = fs::read_dir(format!("/proc/{sleep}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    fds.sort();
    assert_eq!(fds, ["0", "1", "2"]);
    assert_eq!(
        fs::read_link(format!("/proc/{sleep}/exe")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert_eq!(bed.ok(&["exec", "cache", "sh", "-c", "echo $PPID"]), "0\n");

    // -e, -w, -u, and docker's exit codes
    assert_eq!(
        bed.ok(&[
            "exec",
            "-e",
            "A=1",
            "-w",
            "/tmp",
            "-u",
            "999",
            "cache",
            "sh",
            "-c",
            "echo $A; pwd; id -u"
        ]),
        "1\n/tmp\n999\n"
    );
    for (cmd, code) in [
        (&["sh", "-c", "exit 5"][..], 5),
        (&["nosuchcmd"][..], 127),
        (&["/etc/passwd"][..], 126),
    ] {
        let mut args = vec!["exec", "cache"];
        args.extend(cmd);
        let run = bed.img(&args);
        assert_eq!(run.code, code, "{run}");
    }
    bed.ok(&["stop", "cache"]);
    let (code, err) = bed.root.fails(&["exec", "cache", "true"]);
    assert_eq!(code, 1);
    assert!(
        assert_one_error_line(&err).contains("is not running"),
        "{err}"
    );
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn top_and_stats_show_the_containers_processes_and_cgroup() {
    let bed = Bed::new("top-stats");
    let id = bed.run_d(
        &["--name", "busy", "-m", "64m"],
        &bed.busybox,
        &["sh", "-c", "sleep 600 & echo up; wait"],
    );
    bed.wait_log(&id, "up", 1);
    let pid = bed.state(&id)["pid"].as_u64().unwrap();

    // top: the host's ps, only the container's processes (its shell and its sleep)
    let top = bed.ok(&["top", "busy", "-o", "pid,comm"]);
    let rows: Vec<(String, String)> = top
        .lines()
        .skip(1)
        .map(|l| {
            let mut f = l.split_whitespace();
            (
                f.next().unwrap().to_string(),
                f.next().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(rows.len(), 2, "{top}");
    assert!(rows.contains(&(pid.to_string(), "sh".into())), "{top}");
    assert!(rows.iter().any(|(_, c)| c == "sleep"), "{top}");
    assert!(
        top.starts_with("  PID COMMAND") || top.starts_with("PID"),
        "{top}"
    );

    // stats: the limit and the pids as the cgroup has them
    let stats = bed.ok(&["stats", "--no-stream", "busy"]);
    let header = stats.lines().next().unwrap();
    for col in [
        "CONTAINER ID",
        "NAME",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "NET I/O",
        "PIDS",
    ] {
        assert!(header.contains(col), "{stats}");
    }
    let row = stats.lines().nth(1).expect("a row");
    assert!(row.starts_with(&id[..12]), "{stats}");
    assert!(row.contains(" / 64.00MiB"), "{stats}");
    assert!(
        row.split_whitespace()
            .nth(2)
            .is_some_and(|c| c.ends_with('%')),
        "{stats}"
    );
    assert_eq!(row.split_whitespace().last(), Some("2"), "{stats}");
    // docker's `inspect NAME` finds a container too
    let inspect = bed.root.json(&["inspect", "--json", "busy"]);
    assert_eq!(inspect["Id"], id.as_str(), "{inspect}");
    // docker's default: a JSON array of the document; -f a Go template over it
    let doc = bed.root.json(&["inspect", &bed.busybox]);
    assert!(
        doc[0]["Id"]
            .as_str()
            .is_some_and(|i| i.starts_with("sha256:")),
        "{doc}"
    );
    assert_eq!(
        bed.ok(&["inspect", "-f", "{{.State.Status}} {{.State.Pid}}", "busy"])
            .trim(),
        format!("running {}", inspect["State"]["Pid"])
    );
    bed.ok(&["stop", "-t", "1", "busy"]);
    let (_, err) = bed.root.fails(&["top", "busy"]);
    assert!(assert_one_error_line(&err).contains("is not running"));
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn stop_signal_stop_timeout_and_labels_are_kept() {
    let bed = Bed::new("stop-signal");
    let id = bed.run_d(
        &[
            "--stop-signal",
            "USR1",
            "--stop-timeout",
            "60",
            "-l",
            "team=a",
            "--label",
            "tier",
        ],
        &bed.busybox,
        &[
            "sh",
            "-c",
            "trap 'exit 9' USR1; echo up; while true; do sleep 1; done",
        ],
    );
    bed.wait_log(&id, "up", 1);
    // no --name: docker's adjective_surname
    let name = bed.state(&id)["name"].as_str().unwrap().to_string();
    let (adjective, surname) = name.split_once('_').expect("adjective_surname");
    assert!(
        adjective.chars().all(|c| c.is_ascii_lowercase())
            && surname
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()),
        "{name}"
    );
    assert!(bed.ps_row(false, &id).unwrap().trim_end().ends_with(&name));
    // SIGUSR1, which the shell traps: 9, not the 137 of a kill after the grace time
    bed.ok(&["stop", &id]);
    assert_eq!(bed.state(&id)["exit_code"], 9);
    let inspect = bed.root.json(&["container", "inspect", "--json", &id]);
    assert_eq!(
        inspect["Config"]["Labels"],
        serde_json::json!({"team": "a", "tier": ""})
    );
    assert_eq!(inspect["Config"]["StopSignal"], "USR1");
    assert_eq!(inspect["Config"]["StopTimeout"], 60);
    // -s on stop overrides it
    bed.ok(&["start", &id]);
    bed.wait_log(&id, "up", 2);
    bed.ok(&["stop", "-s", "KILL", &id]);
    assert_eq!(bed.state(&id)["exit_code"], 137);
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn history_df_and_prune_as_docker_has_them() {
    let bed = Bed::new("prune");
    bed.ok(&["pull", "-q", &bed.redis]);
    bed.ok(&["pull", "-q", &bed.busybox]);

    // history: newest first, the newest row named by the image ID, one row per config entry
    let history = bed.ok(&["history", "--no-trunc", &bed.redis]);
    let config = bed.root.json(&["inspect", "--json", &bed.redis]);
    let entries = config["history"].as_array().expect("history").len();
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), 1 + entries, "{history}");
    assert!(lines[0].starts_with("IMAGE "), "{history}");
    let id = bed.ok(&["-q", "images", &bed.redis]);
    assert!(lines[1].starts_with(id.trim()), "{history}");
    assert!(lines[1].contains("CMD [\"redis-server\"]"), "{history}");
    assert!(
        lines[2..].iter().all(|l| l.starts_with("<missing>")),
        "{history}"
    );

    // a stopped container, a running one
    bed.img(&["run", "--name", "done", &bed.busybox, "true"])
        .assert_ok();
    let running = bed.run_d(&["--name", "up"], &bed.busybox, &["sleep", "600"]);
    let df = bed.ok(&["system", "df"]);
    let containers = df.lines().find(|l| l.starts_with("Containers")).expect(&df);
    let cells: Vec<&str> = containers.split_whitespace().collect();
    assert_eq!(&cells[1..3], ["2", "1"], "{df}");

    // prune without -f and without a terminal removes nothing
    let asked = bed.img(&["container", "prune"]);
    asked.assert_ok();
    assert!(asked.stderr.contains("Are you sure"), "{asked}");
    assert_eq!(bed.ps_quiet(&["-a"]).len(), 2);
    let pruned = bed.ok(&["container", "prune", "-f"]);
    assert!(pruned.starts_with("Deleted Containers:\n"), "{pruned}");
    assert!(pruned.contains("Total reclaimed space: "), "{pruned}");
    assert_eq!(bed.ps_quiet(&["-a"]), vec![running[..12].to_string()]);

    // image prune -a: every image no container was made from (redis), not busybox
    let pruned = bed.ok(&["image", "prune", "-a", "-f"]);
    assert!(
        pruned.contains(&format!("untagged: {}", bed.redis)),
        "{pruned}"
    );
    assert!(
        !pruned.contains(&format!("untagged: {}", bed.busybox)),
        "{pruned}"
    );
    let images = bed.ok(&["images"]);
    assert!(
        !images.contains("redis") && images.contains("busybox"),
        "{images}"
    );
    bed.root.assert_fsck_clean();
    assert_eq!(bed.ok(&["exec", "up", "true"]), "");
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn restart_policies_as_docker_has_them() {
    let bed = Bed::new("restart");
    // on-failure:2: a command that fails runs three times in all, then stays exited
    let failing = bed.run_d(
        &["--restart", "on-failure:2"],
        &bed.busybox,
        &["sh", "-c", "echo run; exit 1"],
    );
    wait_until("on-failure:2 to give up", 60, || {
        let s = bed.state(&failing);
        s["status"] == "exited" && !s["supervisor"].as_u64().is_some_and(alive)
    });
    assert_eq!(bed.logs(&failing), "run\nrun\nrun\n");
    let s = bed.state(&failing);
    assert_eq!(
        (s["exit_code"].as_i64(), s["restart_count"].as_u64()),
        (Some(1), Some(2))
    );
    let inspect = bed.root.json(&["container", "inspect", "--json", &failing]);
    assert_eq!(inspect["RestartCount"], 2);

    // on-failure leaves a success alone
    let fine = bed.run_d(&["--restart", "on-failure"], &bed.busybox, &["true"]);
    assert_eq!(bed.ok(&["wait", &fine]), "0\n");
    assert_eq!(bed.state(&fine)["restart_count"], 0);

    // always: runs again after a success, until `img stop`, which no policy undoes; its
    // published port is listened on again by each run (the last one's closed at its exit)
    let always = bed.run_d(
        &["--restart", "always", "-p", "127.0.0.1::8080"],
        &bed.busybox,
        &["sh", "-c", "echo run; exec sleep 1"],
    );
    bed.wait_log(&always, "run", 3);
    let s = bed.state(&always);
    assert!(s["error"].is_null(), "a restart failed: {s}");
    bed.ok(&["stop", "-t", "1", &always]);
    wait_until("always to stay stopped", 60, || {
        let s = bed.state(&always);
        s["status"] == "exited" && !s["supervisor"].as_u64().is_some_and(alive)
    });
    let runs = bed.logs(&always).matches("run").count();
    assert!(bed.state(&always)["stopped_by_user"] == true);
    // start clears it: it runs (and restarts) again
    bed.ok(&["start", &always]);
    bed.wait_log(&always, "run", runs + 2);
    bed.ok(&["rm", "-f", &always]);

    let run = bed.img(&["run", "--rm", "--restart", "always", &bed.busybox, "true"]);
    assert_eq!(run.code, 125, "{run}");
    assert!(
        assert_one_error_line(&run.stderr).contains("--restart"),
        "{run}"
    );
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (namespaces, overlay mounts, cgroups, device nodes): run as root, as tools/test does"
)]
fn cp_never_follows_a_container_symlink_out_of_its_root() {
    let bed = Bed::new("cp");
    let host = bed.root.path.join("host-side");
    fs::create_dir_all(host.join("dir/sub")).unwrap();
    fs::write(host.join("dir/sub/f"), "from the host\n").unwrap();
    let marker = format!("img-cp-marker-{}", support::unique());
    let id = bed.run_d(
        &["--name", "box"],
        &bed.busybox,
        &[
            "sh", "-c",
            "mkdir -p /data && echo inside > /data/x && chown 1234:5678 /data/x && \
             ln -s / /data/escape && ln -s ../../../../../.. /data/up && ln -s /etc/passwd /data/pw && \
             echo container-host > /etc/hostname.mine && echo ready; exec sleep 600",
        ],
    );
    bed.wait_log(&id, "ready", 1);

    // in, through a symlink to /: lands in the container's /tmp, never the host's
    let src = host.join("dir/sub/f");
    let dest = format!("box:/data/escape/tmp/{marker}");
    bed.ok(&["cp", src.to_str().unwrap(), &dest]);
    assert!(
        !Path::new("/tmp").join(&marker).exists(),
        "cp wrote the host's /tmp"
    );
    assert_eq!(
        bed.ok(&["exec", "box", "cat", &format!("/tmp/{marker}")]),
        "from the host\n"
    );
    // a directory, into a directory that is there
    bed.ok(&["cp", host.join("dir").to_str().unwrap(), "box:/data"]);
    assert_eq!(
        bed.ok(&["exec", "box", "cat", "/data/dir/sub/f"]),
        "from the host\n"
    );

    // out, through a relative symlink climbing above /: the container's file, not the host's
    let out = host.join("out");
    fs::create_dir_all(&out).unwrap();
    bed.ok(&[
        "cp",
        "box:/data/up/etc/hostname.mine",
        out.join("h").to_str().unwrap(),
    ]);
    assert_eq!(
        fs::read_to_string(out.join("h")).unwrap(),
        "container-host\n"
    );
    // a directory: its symlinks come as symlinks, never followed; owners are ours unless -a
    bed.ok(&["cp", "box:/data", out.to_str().unwrap()]);
    let pw = fs::symlink_metadata(out.join("data/pw")).unwrap();
    assert!(pw.file_type().is_symlink());
    assert_eq!(
        fs::read_link(out.join("data/pw")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert!(
        fs::symlink_metadata(out.join("data/escape"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    use std::os::unix::fs::MetadataExt;
    let x = fs::metadata(out.join("data/x")).unwrap();
    assert_eq!((x.uid(), x.gid()), (0, 0));
    bed.ok(&[
        "cp",
        "-a",
        "box:/data/x",
        out.join("x-archive").to_str().unwrap(),
    ]);
    let x = fs::metadata(out.join("x-archive")).unwrap();
    assert_eq!((x.uid(), x.gid()), (1234, 5678));

    // a stopped container: its layers mounted for the copy, then not
    bed.ok(&["stop", "-t", "0", "box"]);
    bed.ok(&["cp", src.to_str().unwrap(), "box:/after-stop"]);
    bed.ok(&["cp", "box:/after-stop", out.join("after").to_str().unwrap()]);
    assert_eq!(
        fs::read_to_string(out.join("after")).unwrap(),
        "from the host\n"
    );
    let mounts = fs::read_to_string("/proc/mounts").unwrap();
    assert!(
        !mounts.contains(bed.dir(&id).to_str().unwrap()),
        "a mount left: {mounts}"
    );

    let (_, err) = bed
        .root
        .fails(&["cp", "box:/no/such", out.to_str().unwrap()]);
    assert!(assert_one_error_line(&err).contains("/no/such"), "{err}");
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (runs containers): run as root, as tools/test does"
)]
fn format_and_filter_as_docker_documents_them() {
    let bed = Bed::new("format");
    let web = bed.run_d(
        &["--name", "web", "-l", "tier=front"],
        &bed.busybox,
        &["sleep", "600"],
    );
    let failed = bed.img(&[
        "run",
        "--name",
        "failed",
        &bed.busybox,
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(failed.code, 3, "{failed}");
    bed.ok(&["run", "--name", "fine", &bed.busybox, "true"]);

    // docker's documented `ps --format` fields and table form
    assert_eq!(
        bed.ok(&["ps", "--format", "{{.ID}}: {{.Names}} {{.State}}"]),
        format!("{}: web running\n", &web[..12])
    );
    let table = bed.ok(&["ps", "-a", "--format", "table {{.Names}}\\t{{.Labels}}"]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAMES", "LABELS"], "{table}");
    assert!(rows.contains(&vec!["web", "tier=front"]), "{table}");
    assert_eq!(rows.len(), 4, "{table}");
    // filters: one key's values are alternatives, keys all apply; status looks at all
    let names = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["ps", "--format", "{{.Names}}"];
        all.extend(args);
        let mut v: Vec<String> = bed.ok(&all).lines().map(String::from).collect();
        v.sort();
        v
    };
    assert_eq!(names(&["-f", "status=exited"]), ["failed", "fine"]);
    assert_eq!(names(&["-f", "exited=3"]), ["failed"]);
    assert_eq!(names(&["-f", "status=exited", "-f", "name=fin"]), ["fine"]);
    assert_eq!(
        names(&[
            "-a",
            "-f",
            "status=running",
            "-f",
            "status=exited",
            "-f",
            "label=tier"
        ]),
        ["web"]
    );
    assert_eq!(
        names(&["-a", "-f", &format!("ancestor={}", bed.busybox)]).len(),
        3
    );
    let json = bed.ok(&["ps", "--format", "json"]);
    let row: Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(row["Names"], "web");
    assert_eq!(row["Command"], "\"sleep 600\"");
    assert_eq!(bed.ok(&["ps", "-q", "--no-trunc"]).trim(), web);
    let (code, err) = bed.root.fails(&["ps", "-f", "colour=red"]);
    assert_eq!(code, 1);
    assert!(assert_one_error_line(&err).contains("colour"), "{err}");

    // inspect: docker's JSON array by default, -f a template over the same document
    let doc = bed.root.json(&["inspect", "failed"]);
    assert_eq!(doc[0]["State"]["ExitCode"], 3, "{doc}");
    assert_eq!(
        bed.ok(&[
            "container",
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            "failed"
        ]),
        "exited 3\n"
    );
    let image = bed.root.json(&["image", "inspect", &bed.busybox]);
    assert_eq!(
        bed.ok(&[
            "inspect",
            "-f",
            "{{json .Config.Cmd}} {{.Os}}",
            &bed.busybox
        ]),
        format!(
            "{} {}\n",
            image[0]["Config"]["Cmd"],
            image[0]["Os"].as_str().unwrap()
        )
    );
    // images: fields, table, reference filter with a glob
    let line = bed.ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    let id = image[0]["Id"].as_str().unwrap();
    assert!(
        line.lines()
            .any(|l| l == format!("{} {}", bed.busybox, &id[7..19])),
        "{line}"
    );
    assert_eq!(
        bed.ok(&["images", "-q", "--no-trunc", "-f", "reference=*/busybox:*"])
            .trim(),
        id
    );
    assert!(
        bed.ok(&["images", "-q", "-f", "reference=nothing*"])
            .is_empty()
    );
    bed.ok(&["rm", "-f", "web", "failed", "fine"]);
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (runs containers): run as root, as tools/test does"
)]
fn named_volumes_are_filled_kept_and_removed_as_dockers() {
    let bed = Bed::new("volumes");
    let data = bed.root.path.join("volumes/conf/_data");
    // a new volume is filled with what the image has there (busybox's /etc: passwd, group)
    bed.ok(&["run", "--rm", "-v", "conf:/etc", &bed.busybox, "true"]);
    let mut names: Vec<String> = fs::read_dir(&data)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["group", "passwd"], "{}", data.display());
    // what one container writes, the next reads; an existing volume is not filled again
    bed.ok(&[
        "run",
        "--rm",
        "-v",
        "conf:/etc",
        &bed.busybox,
        "sh",
        "-c",
        "echo kept > /etc/note; rm /etc/group",
    ]);
    let out = bed.ok(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,source=conf,target=/x,readonly",
        &bed.busybox,
        "sh",
        "-c",
        "cat /x/note; ls /x; touch /x/no 2>/dev/null || echo read-only",
    ]);
    assert_eq!(out, "kept\nnote\npasswd\nread-only\n");
    // nothing in the image there: an empty volume
    bed.ok(&["volume", "create", "spare"]);
    let out = bed.ok(&[
        "run",
        "--rm",
        "-v",
        "fresh:/nothing/here",
        &bed.busybox,
        "ls",
        "-a",
        "/nothing/here",
    ]);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), [".", ".."]);
    let listed = bed.ok(&["volume", "ls", "-q"]);
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        ["conf", "fresh", "spare"]
    );
    assert_eq!(
        bed.ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", "conf"])
            .trim(),
        data.to_str().unwrap()
    );
    // in use (even by a stopped container): refused; then gone with it
    bed.ok(&[
        "run",
        "--name",
        "user",
        "-v",
        "conf:/etc",
        &bed.busybox,
        "true",
    ]);
    let (code, err) = bed.root.fails(&["volume", "rm", "conf"]);
    assert_eq!(code, 1);
    assert!(assert_one_error_line(&err).contains("in use"), "{err}");
    // gc and image prune leave volumes alone; volume prune -a takes the unused ones
    bed.ok(&["gc"]);
    assert!(data.join("note").exists());
    let pruned = bed.ok(&["volume", "prune", "-a", "-f"]);
    assert!(
        pruned.contains("fresh") && pruned.contains("spare") && !pruned.contains("conf"),
        "{pruned}"
    );
    bed.ok(&["rm", "user"]);
    bed.ok(&["volume", "rm", "conf"]);
    assert!(!bed.root.path.join("volumes/conf").exists());
    // not a name: a bind, whose host path must be absolute
    let (code, err) = bed
        .root
        .fails(&["run", "--rm", "-v", "../up:/x", &bed.busybox, "true"]);
    assert_eq!(code, 125);
    assert!(assert_one_error_line(&err).contains("absolute"), "{err}");
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (runs containers): run as root, as tools/test does"
)]
fn run_dt_then_attach_detach_and_attach_again() {
    let bed = Bed::new("attach");
    let id = bed.run_d(&["-t", "--name", "shell"], &bed.busybox, &["sh"]);
    // joined: what we type reaches the shell, its terminal has our window's size
    let mut term = Terminal::start(&bed, &["attach", "shell"]);
    term.type_keys("echo in-$((6*7)); stty size\n");
    term.wait_for("in-42\r\n", 0);
    // ctrl-p ctrl-q: we leave, it runs on
    term.type_keys("\x10\x11");
    let (code, out) = term.finish();
    assert_eq!(code, 0, "{out:?}");
    assert_eq!(bed.state(&id)["status"], "running");
    // what it wrote while joined is in its log, as docker keeps a terminal's output
    assert!(bed.logs(&id).contains("in-42"), "{}", bed.logs(&id));
    // joined again; its exit ends the attach with its code
    let mut term = Terminal::start(&bed, &["attach", "shell"]);
    term.type_keys("echo again-$((2+2))\n");
    term.wait_for("again-4\r\n", 0);
    term.type_keys("exit 7\n");
    let (code, out) = term.finish();
    assert_eq!(code, 7, "{out:?}");
    assert_eq!(bed.wait_status(&id, "exited")["exit_code"], 7);
    let (_, err) = bed.root.fails(&["attach", "shell"]);
    assert!(
        assert_one_error_line(&err).contains("stopped container"),
        "{err}"
    );

    // without a terminal: its output from now on, and its exit code
    let quiet = bed.run_d(
        &["--name", "quiet"],
        &bed.busybox,
        &[
            "sh",
            "-c",
            "read x < /dev/zero & sleep 1; echo late; exit 3",
        ],
    );
    let attached = bed.img(&["attach", "quiet"]);
    assert_eq!(attached.code, 3, "{attached}");
    assert!(attached.stdout.contains("late"), "{attached}");
    bed.ok(&["rm", &id, &quiet]);
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (runs containers): run as root, as tools/test does"
)]
fn health_checks_run_inside_and_show_in_ps_and_inspect() {
    let bed = Bed::new("health");
    let id = bed.run_d(
        &[
            "--name",
            "checked",
            "--health-cmd",
            "test -f /tmp/ready && echo fine",
            "--health-interval",
            "200ms",
            "--health-retries",
            "2",
        ],
        &bed.busybox,
        &["sleep", "600"],
    );
    let status = || bed.ok(&["ps", "--format", "{{.Status}}", "-f", "name=checked"]);
    let health = || {
        bed.ok(&["inspect", "-f", "{{.State.Health.Status}}", "checked"])
            .trim()
            .to_string()
    };
    // No /tmp/ready: the check fails twice in a row (no start period) and it is unhealthy.
    wait_until("the container to be unhealthy", 60, || {
        health() == "unhealthy"
    });
    assert!(status().contains("(unhealthy)"), "{}", status());
    assert_eq!(
        bed.ok(&["ps", "-q", "--no-trunc", "-f", "health=unhealthy"])
            .trim(),
        id
    );
    // The check runs inside the container: a file made there makes it healthy.
    bed.ok(&["exec", "checked", "touch", "/tmp/ready"]);
    wait_until("the container to be healthy", 60, || health() == "healthy");
    assert!(status().contains("(healthy)"), "{}", status());
    let doc = bed.root.json(&["inspect", "checked"]);
    let log = doc[0]["State"]["Health"]["Log"].as_array().unwrap();
    assert_eq!(log.last().unwrap()["ExitCode"], 0, "{doc}");
    assert_eq!(log.last().unwrap()["Output"], "fine\n", "{doc}");
    assert_eq!(doc[0]["State"]["Health"]["FailingStreak"], 0, "{doc}");
    bed.ok(&["rm", "-f", "checked"]);

    let (code, err) = bed.root.fails(&[
        "run",
        "--health-interval",
        "soon",
        "--health-cmd",
        "true",
        &bed.busybox,
        "true",
    ]);
    assert_eq!(code, 125);
    assert!(assert_one_error_line(&err).contains("soon"), "{err}");
}
