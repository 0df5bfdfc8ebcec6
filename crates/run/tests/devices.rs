//! The device cgroup for real (root only): a child process in a cgroup given docker's default
//! rules can open /dev/null and create device nodes, but not open them; on cgroup v1 (the
//! `devices` controller) and on cgroup v2 (a BPF program). Without rules, or with privileged
//! ones, the same child opens them all, so the checks can fail.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use img_run::devices::{apply_v1, apply_v2, default_rules};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

type Apply = fn(&Path, &[LinuxDeviceCgroup]) -> img_run::Result<()>;

/// A test that cannot run here fails with the reason: the root-only ones are marked ignored
/// unless root builds them (build.rs), so what is left is a machine without what it tests.
fn cannot_run(reason: &str) -> ! {
    panic!("cannot run here: {reason}")
}

fn need_root() -> Result<(), String> {
    if rustix::process::geteuid().is_root() {
        Ok(())
    } else {
        Err("creating cgroups and device nodes needs root".to_string())
    }
}

/// Where the device nodes go: the temporary directory, unless it is mounted nodev.
fn node_base() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir();
    let st = rustix::fs::statvfs(&dir).map_err(|e| format!("statvfs {}: {e}", dir.display()))?;
    if st.f_flag.contains(rustix::fs::StatVfsMountFlags::NODEV) {
        return Err(format!(
            "{} is mounted nodev: device nodes there cannot be opened at all",
            dir.display()
        ));
    }
    Ok(dir)
}

fn v1_root() -> Result<PathBuf, String> {
    need_root()?;
    let root = PathBuf::from("/sys/fs/cgroup/devices");
    if root.join("devices.allow").exists() {
        Ok(root)
    } else {
        Err("no cgroup v1 devices controller at /sys/fs/cgroup/devices".to_string())
    }
}

fn v2_root() -> Result<PathBuf, String> {
    need_root()?;
    // Unified (/sys/fs/cgroup itself) or hybrid (/sys/fs/cgroup/unified).
    for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        if Path::new(root).join("cgroup.controllers").exists() {
            return Ok(PathBuf::from(root));
        }
    }
    Err("no cgroup2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified".to_string())
}

/// A cgroup and a directory for device nodes, both removed on drop (after the child is gone).
struct Scratch {
    name: String,
    cgroup: PathBuf,
    nodes: PathBuf,
}

impl Scratch {
    fn new(root: &Path, nodes: &Path, label: &str) -> Scratch {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!("img-test-{label}-{}-{nanos:08x}", std::process::id());
        let s = Scratch {
            cgroup: root.join(&name),
            nodes: nodes.join(&name),
            name,
        };
        std::fs::create_dir(&s.nodes).expect("creating the node directory");
        std::fs::create_dir(&s.cgroup).expect("creating the cgroup");
        s
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.nodes);
        let mut tries = 0;
        let result = loop {
            match std::fs::remove_dir(&self.cgroup) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 100 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break Ok(()),
                other => break other,
            }
        };
        if let Err(e) = result {
            let msg = format!("removing cgroup {}: {e}", self.cgroup.display());
            if std::thread::panicking() {
                let _ = writeln!(std::io::stderr(), "{msg}");
            } else {
                panic!("{msg}");
            }
        }
    }
}

/// Each step in a child shell: opening /dev/null read-write, mknod of c 1:11 (kmsg) and
/// b 7:0 (loop0) in the node directory, and opening each for reading. One line per step:
/// `NAME ok` or `NAME err MESSAGE`.
const SCRIPT: &str = r#"
d=$1
echo "cgroup $(tr '\n' ' ' </proc/$$/cgroup)"
step() {
    name=$1
    shift
    if out=$("$@" 2>&1); then
        echo "$name ok"
    else
        echo "$name err $(printf %s "$out" | tr '\n' ' ')"
    fi
}
step open_null sh -c ': <>/dev/null'
step mknod_char mknod "$d/kmsg" c 1 11
step open_char sh -c ': <"$1"' sh "$d/kmsg"
step mknod_block mknod "$d/loop0" b 7 0
step open_block sh -c ': <"$1"' sh "$d/loop0"
"#;

const STEPS: [&str; 5] = [
    "open_null",
    "mknod_char",
    "open_char",
    "mknod_block",
    "open_block",
];

#[derive(Debug)]
struct Outcome {
    steps: BTreeMap<String, String>,
}

/// Run the script in a child that joins the cgroup between fork and exec.
fn run_in(s: &Scratch) -> Outcome {
    let procs = CString::new(s.cgroup.join("cgroup.procs").as_os_str().as_bytes())
        .expect("cgroup path without NUL");
    let join = move || -> std::io::Result<()> {
        // SAFETY: open(2) of a NUL-terminated path made before the fork (async-signal-safe).
        let fd = unsafe { libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // "0" moves the writer, this child, into the cgroup.
        // SAFETY: write(2) of a static one-byte buffer to the fd just opened.
        let n = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
        let err = std::io::Error::last_os_error();
        // SAFETY: closing the fd opened above, used nowhere else.
        unsafe { libc::close(fd) };
        if n == 1 { Ok(()) } else { Err(err) }
    };
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(SCRIPT).arg("sh").arg(&s.nodes);
    // SAFETY: `join` makes only async-signal-safe calls (open, write, close) and allocates
    // nothing between fork and exec.
    unsafe { cmd.pre_exec(join) };
    let out = cmd.output().expect("running sh in the cgroup");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sh: {:?}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let mut steps = BTreeMap::new();
    let mut cgroups = None;
    for line in stdout.lines() {
        let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
        if key == "cgroup" {
            cgroups = Some(rest.to_string());
        } else {
            steps.insert(key.to_string(), rest.to_string());
        }
    }
    // The child really ran in our cgroup (v1: "N:devices:/NAME", v2: "0::/NAME").
    let cgroups = cgroups.expect("the child's cgroups");
    assert!(
        cgroups.contains(&format!(":/{} ", s.name)),
        "child not in {}: {cgroups}",
        s.name
    );
    for step in STEPS {
        assert!(steps.contains_key(step), "no {step} in {stdout}");
    }
    Outcome { steps }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Want {
    Ok,
    Eperm,
}

fn check(case: &str, o: &Outcome, wants: &[(&str, Want)]) {
    for &(step, want) in wants {
        let got = &o.steps[step];
        let ok = match want {
            Want::Ok => got == "ok",
            Want::Eperm => got.starts_with("err ") && got.contains("Operation not permitted"),
        };
        assert!(ok, "{case}: {step}: wanted {want:?}, got {got:?} ({o:?})");
    }
}

fn rule(
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(true)
        .set_typ(Some(typ))
        .set_major(major)
        .set_minor(minor)
        .set_access(Some(access.to_string()));
    r
}

/// Every case on one hierarchy; `label` names the cgroups.
fn cases(label: &str, root: &Path, nodes: &Path, apply: Apply) {
    use Want::{Eperm, Ok};
    let all_ok: Vec<(&str, Want)> = STEPS.iter().map(|&s| (s, Ok)).collect();

    // Without rules the child opens everything: the EPERMs below come from the rules.
    let s = Scratch::new(root, nodes, &format!("{label}-none"));
    check("no rules", &run_in(&s), &all_ok);
    drop(s);

    let s = Scratch::new(root, nodes, &format!("{label}-default"));
    apply(&s.cgroup, &default_rules()).expect("applying the default rules");
    let o = run_in(&s);
    check(
        "default",
        &o,
        &[
            ("open_null", Ok),
            ("mknod_char", Ok),
            ("open_char", Eperm),
            ("mknod_block", Ok),
            ("open_block", Eperm),
        ],
    );
    drop(s);

    // --device /dev/kmsg adds c 1:11 rwm.
    let s = Scratch::new(root, nodes, &format!("{label}-extra"));
    let mut rules = default_rules();
    rules.push(rule(LinuxDeviceType::C, Some(1), Some(11), "rwm"));
    apply(&s.cgroup, &rules).expect("applying the default rules and kmsg");
    check(
        "default + kmsg",
        &run_in(&s),
        &[
            ("open_null", Ok),
            ("mknod_char", Ok),
            ("open_char", Ok),
            ("mknod_block", Ok),
            ("open_block", Eperm),
        ],
    );
    drop(s);

    // Without the two mknod rules, mknod itself is refused.
    let s = Scratch::new(root, nodes, &format!("{label}-nomknod"));
    let mut rules = default_rules();
    rules.retain(|r| r.access().as_deref() != Some("m"));
    assert_eq!(rules.len(), default_rules().len() - 2);
    apply(&s.cgroup, &rules).expect("applying the rules without mknod");
    check(
        "no mknod",
        &run_in(&s),
        &[
            ("open_null", Ok),
            ("mknod_char", Eperm),
            ("mknod_block", Eperm),
        ],
    );
    drop(s);

    // Privileged: a *:* rwm.
    let s = Scratch::new(root, nodes, &format!("{label}-priv"));
    apply(&s.cgroup, &[rule(LinuxDeviceType::A, None, None, "rwm")]).expect("applying privileged");
    check("privileged", &run_in(&s), &all_ok);
    drop(s);

    // Applying again replaces the earlier rules.
    let s = Scratch::new(root, nodes, &format!("{label}-again"));
    apply(&s.cgroup, &default_rules()).expect("applying the default rules");
    apply(&s.cgroup, &[rule(LinuxDeviceType::A, None, None, "rwm")]).expect("applying privileged");
    check("default, then privileged", &run_in(&s), &all_ok);
    drop(s);
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (cgroups, device nodes, BPF programs): run as root, as tools/test does"
)]
fn v1_device_rules_hold_for_a_child() {
    let (root, nodes) = match v1_root().and_then(|r| Ok((r, node_base()?))) {
        Ok(x) => x,
        Err(reason) => cannot_run(&format!("cgroup v1 devices: {reason}")),
    };
    cases("v1", &root, &nodes, apply_v1);

    // What the kernel lists for the default rules, independently of apply_v1's own check.
    let s = Scratch::new(&root, &nodes, "v1-list");
    apply_v1(&s.cgroup, &default_rules()).expect("applying the default rules");
    let list = std::fs::read_to_string(s.cgroup.join("devices.list")).expect("devices.list");
    assert_eq!(
        list,
        "c *:* m\nb *:* m\nc 1:3 rwm\nc 1:5 rwm\nc 1:7 rwm\nc 1:8 rwm\nc 1:9 rwm\n\
         c 5:0 rwm\nc 5:2 rwm\nc 136:* rwm\n"
    );
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (cgroups, device nodes, BPF programs): run as root, as tools/test does"
)]
fn v2_device_rules_hold_for_a_child() {
    let (root, nodes) = match v2_root().and_then(|r| Ok((r, node_base()?))) {
        Ok(x) => x,
        Err(reason) => cannot_run(&format!("cgroup v2 devices: {reason}")),
    };
    cases("v2", &root, &nodes, apply_v2);
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root (cgroups, device nodes, BPF programs): run as root, as tools/test does"
)]
fn v2_refuses_a_directory_that_is_not_a_cgroup() {
    if need_root().is_err() {
        cannot_run("loading BPF programs needs root");
    }
    // Fail closed: attaching to a plain directory is an error, not a silent no-op.
    let dir = std::env::temp_dir();
    let err = apply_v2(&dir, &default_rules()).expect_err("not a cgroup");
    assert!(err.to_string().contains("attaching"), "{err}");
}
