//! Installs real seccomp filters and checks the errno of real syscalls.
//!
//! A filter cannot be removed, so every case runs in a fresh copy of this test binary: the
//! test re-executes itself with `IMG_SECCOMP_CASE` set, the copy runs the same test, sees the
//! variable, installs the filter (after `no_new_privs`, as init does), makes its syscalls and
//! prints `probe NAME RESULT` lines (`ok` or an errno number), and the parent checks them.
//! A control copy makes the harmless probes without a filter, so that a refusal cannot come
//! from the kernel or the machine rather than from the filter.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

use img_run::seccomp::{Profile, compile};

const CASE: &str = "IMG_SECCOMP_CASE";

fn docker_caps() -> Vec<String> {
    img_run::capabilities::DEFAULT.map(String::from).to_vec()
}

/// What a child reported, and how it ended.
struct Outcome {
    probes: BTreeMap<String, String>,
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn get(&self, name: &str) -> &str {
        self.probes.get(name).map_or_else(
            || panic!("no probe {name}:\n{}\n{}", self.stdout, self.stderr),
            String::as_str,
        )
    }

    fn expect(&self, name: &str, want: &str) {
        assert_eq!(self.get(name), want, "probe {name}:\n{}", self.stdout);
    }

    fn expect_errno(&self, name: &str, errno: i32) {
        self.expect(name, &errno.to_string());
    }

    fn expect_success(&self) {
        assert!(
            self.status.success(),
            "child failed ({:?}):\n{}\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
    }
}

/// Whether this process holds CAP_SYS_ADMIN (bit 21 of CapEff).
fn has_cap_sys_admin() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 21) != 0)
}

/// Runs `case` in a copy of this test binary, within test `test`.
fn child(test: &str, case: &str) -> Outcome {
    let exe = std::env::current_exe().expect("current exe");
    let output = Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CASE, case)
        .output()
        .expect("spawn the test binary");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let probes = stdout
        .lines()
        // libtest's "test NAME ... " may precede the first line.
        .filter_map(|l| l.find("probe ").map(|at| &l[at + "probe ".len()..]))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, result)| (name.to_string(), result.to_string()))
        .collect();
    Outcome {
        probes,
        status: output.status,
        stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// In a child: runs the case and exits. In the parent: returns.
fn run_case_if_child() {
    let Ok(case) = std::env::var(CASE) else {
        return;
    };
    let code = match cases::run(&case) {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(std::io::stdout(), "error {e}");
            3
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

/// The child side.
mod cases {
    use super::*;

    fn report(name: &str, rc: libc::c_long) {
        let result = if rc >= 0 {
            "ok".to_string()
        } else {
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(-1)
                .to_string()
        };
        let mut out = std::io::stdout();
        let _ = writeln!(out, "probe {name} {result}");
        let _ = out.flush();
    }

    fn no_new_privs() {
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        assert_eq!(rc, 0, "no_new_privs");
    }

    fn no_core_dumps() {
        let limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `limit` is a valid rlimit for the call.
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, &limit) };
    }

    fn install(profile: &Profile, caps: &[String]) -> img_run::Result<()> {
        compile(&profile.resolve(caps)?)?.install()
    }

    /// The number of filters /proc says are installed.
    fn filters_installed() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        for line in status.lines() {
            if let Some(n) = line.strip_prefix("Seccomp_filters:") {
                let _ = writeln!(std::io::stdout(), "probe filters {}", n.trim());
            }
        }
    }

    /// Syscalls that change nothing whatever the filter: their result without a filter is
    /// not the one the default profile gives.
    fn harmless_probes() {
        // SAFETY (all of them): raw syscalls with null pointers or plain integers; the kernel
        // validates them and fails, or they only return information.
        unsafe {
            report("getpid", libc::syscall(libc::SYS_getpid));
            // KEYCTL_GET_KEYRING_ID of the thread keyring, without creating it.
            report("keyctl", libc::syscall(libc::SYS_keyctl, 0, -1, 0));
            let null = std::ptr::null::<u8>();
            report(
                "add_key",
                libc::syscall(libc::SYS_add_key, null, null, null, 0, 0),
            );
            report(
                "request_key",
                libc::syscall(libc::SYS_request_key, null, null, null, 0),
            );
            report(
                "perf_event_open",
                libc::syscall(libc::SYS_perf_event_open, null, 0, -1, -1, 0),
            );
            report(
                "io_uring_setup",
                libc::syscall(libc::SYS_io_uring_setup, 1, null),
            );
            report("clone3", libc::syscall(libc::SYS_clone3, null, 0));
            report(
                "mount",
                libc::syscall(libc::SYS_mount, null, null, null, 0, null),
            );
        }
        let path = c"/proc/self/status";
        // SAFETY: a valid C string; the descriptor is closed below.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        report("open", fd.into());
        if fd >= 0 {
            // SAFETY: our own descriptor.
            unsafe { libc::close(fd) };
        }
        for (name, domain, kind) in [
            ("socket_inet", libc::AF_INET, libc::SOCK_STREAM),
            ("socket_inet6_udp", libc::AF_INET6, libc::SOCK_DGRAM),
            ("socket_unix", libc::AF_UNIX, libc::SOCK_STREAM),
            ("socket_netlink", libc::AF_NETLINK, libc::SOCK_RAW),
        ] {
            // SAFETY: plain integers; the descriptor is closed below.
            let fd = unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, 0) };
            report(name, fd.into());
            if fd >= 0 {
                // SAFETY: our own descriptor.
                unsafe { libc::close(fd) };
            }
        }
        let dir = std::env::temp_dir().join(format!("img-seccomp-{}", std::process::id()));
        report(
            "mkdir",
            if std::fs::create_dir(&dir).is_ok() {
                0
            } else {
                -1
            },
        );
        let _ = std::fs::remove_dir(&dir);
    }

    /// Probes that would change the process without a filter.
    fn refused_probes() {
        // SAFETY (all of them): raw syscalls on plain integers; a success only changes this
        // throwaway process, and a clone child exits at once.
        unsafe {
            report("unshare_user", libc::unshare(libc::CLONE_NEWUSER).into());
            report("unshare_0", libc::unshare(0).into());
            report(
                "socket_vsock",
                libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM, 0).into(),
            );
            report(
                "socket_alg",
                libc::socket(libc::AF_ALG, libc::SOCK_SEQPACKET, 0).into(),
            );
            report(
                "bpf",
                libc::syscall(libc::SYS_bpf, 0, std::ptr::null::<u8>(), 0),
            );
            let flags = libc::c_long::from(libc::CLONE_NEWUSER | libc::SIGCHLD);
            let pid = libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0);
            if pid == 0 {
                libc::_exit(0);
            }
            if pid > 0 {
                libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
            }
            report("clone_newuser", pid);
            // The query, a 64-bit value whose low half is the query too, and an unlisted one.
            report(
                "personality_query",
                libc::syscall(libc::SYS_personality, 0xffff_ffff_u64),
            );
            report(
                "personality_64bit",
                libc::syscall(libc::SYS_personality, 0x1_0000_0000_u64),
            );
            report(
                "personality_exec",
                libc::syscall(libc::SYS_personality, 0x0400_0000_u64),
            );
            // Newer than any syscall the default profile names: runc's -ENOSYS stub.
            report("above_profile", libc::syscall(467));
            report("minus_one", libc::syscall(-1));
        }
    }

    /// Syscalls a process needs: fork (clone without namespace flags), a thread (clone3
    /// gets ENOSYS, the libc falls back to clone).
    fn process_probes() {
        // SAFETY: the child only calls _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: leaving the forked child at once.
            unsafe { libc::_exit(7) };
        }
        let mut status = 0;
        if pid > 0 {
            // SAFETY: our own child; `status` is valid for writing.
            unsafe { libc::waitpid(pid, &mut status, 0) };
        }
        let exited = pid > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 7;
        report("fork", if exited { 0 } else { -1 });
        let thread = std::thread::spawn(|| 42).join().ok();
        report("thread", if thread == Some(42) { 0 } else { -1 });
    }

    pub fn run(case: &str) -> img_run::Result<()> {
        no_core_dumps();
        match case {
            "control" => harmless_probes(),
            "default" => {
                no_new_privs();
                install(&Profile::docker_default(), &docker_caps())?;
                filters_installed();
                harmless_probes();
                refused_probes();
                process_probes();
            }
            "sys_admin" => {
                no_new_privs();
                let mut caps = docker_caps();
                caps.push("CAP_SYS_ADMIN".into());
                install(&Profile::docker_default(), &caps)?;
                filters_installed();
                harmless_probes();
                // SAFETY: unshare(0) changes nothing.
                report("unshare_0", unsafe { libc::unshare(0) }.into());
                process_probes();
            }
            "without_no_new_privs" => {
                // With CAP_SYS_ADMIN instead (the test runs this case only if it holds it).
                install(&Profile::docker_default(), &docker_caps())?;
                filters_installed();
                harmless_probes();
            }
            "x32" => {
                no_new_privs();
                install(&Profile::docker_default(), &docker_caps())?;
                report("getpid", raw_getpid());
                // getpid through the x32 ABI: killed, whether or not the kernel has x32.
                // SAFETY: a syscall number and no arguments.
                report("x32_getpid", unsafe {
                    libc::syscall(0x4000_0000 | libc::SYS_getpid)
                });
            }
            "custom" => {
                no_new_privs();
                let json = br#"{
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [
                        {"names": ["mkdir", "mkdirat", "no_such_syscall"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                        {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                         "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]},
                        {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                         "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 12345, "op": "SCMP_CMP_EQ"}]},
                        {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5},
                        {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 7},
                        {"names": ["gettid"], "action": "SCMP_ACT_LOG"},
                        {"names": ["gettid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 9},
                        {"names": ["getuid"], "action": "SCMP_ACT_ALLOW"}
                    ]
                }"#;
                let profile = Profile::from_json(json, Path::new("custom.json"))?;
                install(&profile, &[])?;
                filters_installed();
                let dir = std::env::temp_dir().join(format!("img-seccomp-{}", std::process::id()));
                let refused = std::fs::create_dir(&dir)
                    .err()
                    .and_then(|e| e.raw_os_error());
                report("mkdir", refused.map_or(0, |_| -1));
                let _ = writeln!(
                    std::io::stdout(),
                    "probe mkdir_errno {}",
                    refused.unwrap_or(0)
                );
                // SAFETY (all of them): plain integers, or a valid C string.
                unsafe {
                    #[cfg(target_arch = "x86_64")]
                    report(
                        "sys_mkdir",
                        libc::syscall(libc::SYS_mkdir, c"/img-seccomp-x".as_ptr(), 0o700),
                    );
                    report("getpriority_1", libc::syscall(libc::SYS_getpriority, 1, 0));
                    report("getpriority_2", libc::syscall(libc::SYS_getpriority, 2, 0));
                    report(
                        "getpriority_0_0",
                        libc::syscall(libc::SYS_getpriority, 0, 0),
                    );
                    report(
                        "getpriority_0_12345",
                        libc::syscall(libc::SYS_getpriority, 0, 12345),
                    );
                    report(
                        "getpriority_0_12346",
                        libc::syscall(libc::SYS_getpriority, 0, 12346),
                    );
                    report("getppid", libc::syscall(libc::SYS_getppid));
                    report("gettid", libc::syscall(libc::SYS_gettid));
                    report("getuid", libc::syscall(libc::SYS_getuid));
                    report("getpid", libc::syscall(libc::SYS_getpid));
                }
            }
            "kill" => {
                no_new_privs();
                let json = br#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    {"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}]}"#;
                install(&Profile::from_json(json, Path::new("kill.json"))?, &[])?;
                report("getpid", raw_getpid());
                // SAFETY: no arguments.
                report("getppid", unsafe { libc::syscall(libc::SYS_getppid) });
            }
            other => panic!("unknown case {other}"),
        }
        Ok(())
    }

    fn raw_getpid() -> libc::c_long {
        // SAFETY: no arguments.
        unsafe { libc::syscall(libc::SYS_getpid) }
    }
}

#[test]
fn docker_default_profile_refuses_and_allows() {
    run_case_if_child();
    const TEST: &str = "docker_default_profile_refuses_and_allows";

    // Without a filter, the harmless probes do not fail the way the filter makes them fail.
    let control = child(TEST, "control");
    control.expect_success();
    for probe in [
        "keyctl",
        "add_key",
        "request_key",
        "perf_event_open",
        "mount",
    ] {
        assert_ne!(
            control.get(probe),
            libc::EPERM.to_string(),
            "{probe} without a filter"
        );
    }
    assert_ne!(control.get("clone3"), libc::ENOSYS.to_string());
    let io_uring = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled");
    if io_uring.as_deref().map_or(true, |v| v.trim() == "0") {
        assert_ne!(control.get("io_uring_setup"), libc::EPERM.to_string());
    }
    control.expect("mkdir", "ok");

    let out = child(TEST, "default");
    out.expect_success();
    // The main filter and clone3's ENOSYS filter.
    out.expect("filters", "2");
    for probe in [
        "keyctl",
        "add_key",
        "request_key",
        "unshare_user",
        "unshare_0",
        "mount",
        "perf_event_open",
        "bpf",
        "io_uring_setup",
        "socket_vsock",
        "socket_alg",
        "clone_newuser",
        "personality_64bit",
        "personality_exec",
    ] {
        out.expect_errno(probe, libc::EPERM);
    }
    out.expect_errno("clone3", libc::ENOSYS);
    out.expect_errno("above_profile", libc::ENOSYS);
    out.expect_errno("minus_one", libc::ENOSYS);
    for probe in [
        "getpid",
        "open",
        "socket_inet",
        "socket_inet6_udp",
        "socket_unix",
        "socket_netlink",
        "mkdir",
        "personality_query",
        "fork",
        "thread",
    ] {
        out.expect(probe, "ok");
    }
}

#[test]
fn sys_admin_allows_namespaces_and_clone3() {
    run_case_if_child();
    let out = child("sys_admin_allows_namespaces_and_clone3", "sys_admin");
    out.expect_success();
    // No clone3 filter: clone3 is allowed.
    out.expect("filters", "1");
    out.expect("unshare_0", "ok");
    // Allowed through to the kernel, which refuses the null arguments.
    out.expect_errno("mount", libc::EFAULT);
    out.expect_errno("perf_event_open", libc::EFAULT);
    out.expect_errno("clone3", libc::EINVAL);
    out.expect_errno("keyctl", libc::EPERM);
    out.expect("fork", "ok");
    out.expect("thread", "ok");
}

#[test]
#[cfg_attr(not(img_root), ignore = "needs root (CAP_SYS_ADMIN)")]
fn installs_with_cap_sys_admin_instead_of_no_new_privs() {
    run_case_if_child();
    assert!(has_cap_sys_admin(), "needs CAP_SYS_ADMIN (root has it)");
    let out = child(
        "installs_with_cap_sys_admin_instead_of_no_new_privs",
        "without_no_new_privs",
    );
    out.expect_success();
    out.expect("filters", "2");
    out.expect_errno("keyctl", libc::EPERM);
    out.expect_errno("clone3", libc::ENOSYS);
    out.expect("getpid", "ok");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn x32_syscalls_are_killed() {
    run_case_if_child();
    let out = child("x32_syscalls_are_killed", "x32");
    out.expect("getpid", "ok");
    assert!(!out.probes.contains_key("x32_getpid"), "{}", out.stdout);
    assert_eq!(out.status.signal(), Some(libc::SIGSYS), "{:?}", out.status);
}

#[test]
fn custom_profile_errno_args_and_precedence() {
    run_case_if_child();
    let out = child("custom_profile_errno_args_and_precedence", "custom");
    out.expect_success();
    // Default ALLOW: an empty main filter, then ERRNO(13), ERRNO(5), ERRNO(7), LOG, ERRNO(9).
    out.expect("filters", "6");
    out.expect_errno("mkdir_errno", libc::EACCES);
    #[cfg(target_arch = "x86_64")]
    out.expect_errno("sys_mkdir", libc::EACCES);
    // Args on one index are ORed; on different indices ANDed.
    out.expect_errno("getpriority_1", libc::EACCES);
    out.expect_errno("getpriority_2", libc::EACCES);
    out.expect("getpriority_0_0", "ok");
    out.expect_errno("getpriority_0_12345", libc::EACCES);
    assert_ne!(out.get("getpriority_0_12346"), libc::EACCES.to_string());
    // Two ERRNOs: the later entry's; ERRNO over LOG.
    out.expect_errno("getppid", 7);
    out.expect_errno("gettid", libc::EBADF);
    out.expect("getuid", "ok");
    out.expect("getpid", "ok");
}

#[test]
fn kill_action_kills() {
    run_case_if_child();
    let out = child("kill_action_kills", "kill");
    out.expect("getpid", "ok");
    assert!(!out.probes.contains_key("getppid"), "{}", out.stdout);
    assert_eq!(out.status.signal(), Some(libc::SIGSYS), "{:?}", out.status);
}
