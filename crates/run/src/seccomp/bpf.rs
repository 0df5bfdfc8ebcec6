//! The resolved OCI [`LinuxSeccomp`] compiled to classic BPF with seccompiler ([`compile`]):
//! rule sets per action, the head seccompiler does not write (x32 check, runc's -ENOSYS stub),
//! and the installation ([`Filter::install`]).

use std::fmt;

use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};
use seccompiler::{
    BackendError, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::{invalid, syscalls};
use crate::error::{Error, Result};

/// The kernel's limit on one BPF program (BPF_MAXINSNS).
const MAX_INSNS: usize = 4096;
/// seccomp_data offsets.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
/// Classic BPF opcodes: BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_J*|BPF_K, BPF_RET|BPF_K.
const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGT_K: u16 = 0x25;
const JGE_K: u16 = 0x35;
const RET_K: u16 = 0x06;
/// x86's `__X32_SYSCALL_BIT`.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// Filter flags we pass to seccomp(2).
const FLAG_TSYNC: u32 = 1;
const FLAG_LOG: u32 = 2;
const FLAG_SPEC_ALLOW: u32 = 4;

/// The native architecture as seccompiler knows it, with its AUDIT_ARCH value.
fn native_target() -> Result<(TargetArch, u32)> {
    match std::env::consts::ARCH {
        "x86_64" => Ok((TargetArch::x86_64, 0xC000_003E)),
        "aarch64" => Ok((TargetArch::aarch64, 0xC000_00B7)),
        "riscv64" => Ok((TargetArch::riscv64, 0xC000_00F3)),
        other => Err(invalid(format!(
            "seccomp: filters cannot be compiled on {other} (seccompiler supports x86_64, aarch64 and riscv64)"
        ))),
    }
}

/// The native number of a syscall, or `None` if this architecture has no such syscall.
fn syscall_number(name: &str) -> Option<u32> {
    syscalls::SYSCALLS
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .map(|i| syscalls::SYSCALLS[i].1)
}

fn action(action: LinuxSeccompAction, errno: Option<u32>) -> Result<SeccompAction> {
    const EPERM: u32 = libc::EPERM as u32;
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            SeccompAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => SeccompAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => SeccompAction::Trap,
        LinuxSeccompAction::ScmpActErrno => match errno.unwrap_or(EPERM) {
            errno @ 0..=4095 => SeccompAction::Errno(errno),
            errno => {
                return Err(invalid(format!(
                    "seccomp: errnoRet {errno} is not an errno"
                )));
            }
        },
        LinuxSeccompAction::ScmpActTrace => match errno.unwrap_or(EPERM) {
            data @ 0..=0xFFFF => SeccompAction::Trace(data),
            data => {
                return Err(invalid(format!(
                    "seccomp: errnoRet {data} is too large for SCMP_ACT_TRACE"
                )));
            }
        },
        LinuxSeccompAction::ScmpActLog => SeccompAction::Log,
        LinuxSeccompAction::ScmpActAllow => SeccompAction::Allow,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(invalid("seccomp: SCMP_ACT_NOTIFY is not supported"));
        }
    })
}

/// An entry's args as rules: `None` is unconditional; several rules are ORed.
fn rules(args: Option<&Vec<LinuxSeccompArg>>) -> Result<Option<Vec<SeccompRule>>> {
    let args = match args {
        Some(args) if !args.is_empty() => args,
        _ => return Ok(None),
    };
    let mut per_index = [0usize; 6];
    let mut conditions = Vec::with_capacity(args.len());
    for arg in args {
        let index = arg.index();
        let Some(count) = per_index.get_mut(index) else {
            return Err(invalid(format!(
                "seccomp: argument index {index} is above 5"
            )));
        };
        *count += 1;
        let (op, value) = match arg.op() {
            LinuxSeccompOperator::ScmpCmpNe => (SeccompCmpOp::Ne, arg.value()),
            LinuxSeccompOperator::ScmpCmpLt => (SeccompCmpOp::Lt, arg.value()),
            LinuxSeccompOperator::ScmpCmpLe => (SeccompCmpOp::Le, arg.value()),
            LinuxSeccompOperator::ScmpCmpEq => (SeccompCmpOp::Eq, arg.value()),
            LinuxSeccompOperator::ScmpCmpGe => (SeccompCmpOp::Ge, arg.value()),
            LinuxSeccompOperator::ScmpCmpGt => (SeccompCmpOp::Gt, arg.value()),
            LinuxSeccompOperator::ScmpCmpMaskedEq => (
                SeccompCmpOp::MaskedEq(arg.value()),
                arg.value_two().unwrap_or(0),
            ),
        };
        // The index is at most 5 here.
        let index = index as u8;
        conditions.push(
            SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value).map_err(backend)?,
        );
    }
    let rules = if per_index.iter().any(|&n| n > 1) {
        // runc: args sharing an index are each a rule of their own.
        conditions
            .into_iter()
            .map(|c| SeccompRule::new(vec![c]))
            .collect::<std::result::Result<Vec<_>, _>>()
    } else {
        SeccompRule::new(conditions).map(|r| vec![r])
    };
    rules.map(Some).map_err(backend)
}

fn backend(e: BackendError) -> Error {
    match e {
        BackendError::FilterTooLarge(n) => invalid(format!(
            "seccomp: the filter has {n} BPF instructions, the kernel takes at most {MAX_INSNS}"
        )),
        e => invalid(format!("seccomp: compiling the filter: {e}")),
    }
}

/// The rules of one syscall in one filter.
#[derive(Debug)]
enum Chain {
    /// Matches whatever the args.
    Always,
    /// Matches if any rule does.
    Any(Vec<SeccompRule>),
}

#[derive(Debug, Default)]
struct RuleSet(std::collections::BTreeMap<i64, Chain>);

impl RuleSet {
    fn add(&mut self, nr: u32, rules: &Option<Vec<SeccompRule>>) {
        let chain = self
            .0
            .entry(i64::from(nr))
            .or_insert_with(|| Chain::Any(Vec::new()));
        match (chain, rules) {
            (Chain::Always, _) => {}
            (chain, None) => *chain = Chain::Always,
            (Chain::Any(existing), Some(rules)) => existing.extend(rules.iter().cloned()),
        }
    }

    fn filter(
        self,
        mismatch: SeccompAction,
        on_match: SeccompAction,
        arch: TargetArch,
    ) -> Result<Vec<libc::sock_filter>> {
        let rules = self
            .0
            .into_iter()
            .map(|(nr, chain)| {
                // seccompiler: an empty rule list matches unconditionally; `Any` is never
                // empty, as an entry with args always gives at least one rule.
                let rules = match chain {
                    Chain::Always => Vec::new(),
                    Chain::Any(rules) => rules,
                };
                (nr, rules)
            })
            .collect();
        let filter = SeccompFilter::new(rules, mismatch, on_match, arch).map_err(backend)?;
        let program: seccompiler::BpfProgram = filter.try_into().map_err(backend)?;
        Ok(program
            .into_iter()
            .map(|i| libc::sock_filter {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            })
            .collect())
    }
}

const fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

fn same(a: &libc::sock_filter, b: &libc::sock_filter) -> bool {
    (a.code, a.jt, a.jf, a.k) == (b.code, b.jt, b.jf, b.k)
}

/// Compiles a resolved profile into the filters to install (see the module documentation).
/// Names this architecture lacks are skipped; anything that cannot be expressed is an error.
pub fn compile(seccomp: &LinuxSeccomp) -> Result<Filter> {
    let (arch, audit_arch) = native_target()?;
    let default = action(seccomp.default_action(), seccomp.default_errno_ret())?;

    let mut flags = FLAG_TSYNC;
    for flag in seccomp.flags().iter().flatten() {
        flags |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => FLAG_SPEC_ALLOW,
            // TSYNC is always on; WAIT_KILLABLE_RECV only concerns a notify listener, and
            // SCMP_ACT_NOTIFY is refused.
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync
            | LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 0,
        };
    }

    // Every rule, for the main filter; and the rules of each other action, in the order of
    // their first entry.
    let mut all = RuleSet::default();
    let mut others: Vec<(SeccompAction, RuleSet)> = Vec::new();
    let mut largest: Option<u32> = None;
    for call in seccomp.syscalls().iter().flatten() {
        let act = action(call.action(), call.errno_ret())?;
        let rules = rules(call.args().as_ref())?;
        let numbers: Vec<u32> = call
            .names()
            .iter()
            .filter_map(|n| syscall_number(n))
            .collect();
        largest = numbers.iter().copied().chain(largest).max();
        if act == default || numbers.is_empty() {
            // runc drops rules that repeat the default action, and skips unknown names.
            continue;
        }
        for &nr in &numbers {
            all.add(nr, &rules);
        }
        if act != SeccompAction::Allow {
            let index = match others.iter().position(|(a, _)| *a == act) {
                Some(i) => i,
                None => {
                    others.push((act.clone(), RuleSet::default()));
                    others.len() - 1
                }
            };
            for &nr in &numbers {
                others[index].1.add(nr, &rules);
            }
        }
    }

    let mut programs = Vec::with_capacity(1 + others.len());
    let main = if default == SeccompAction::Allow {
        // Nothing to allow: only the head below matters.
        RuleSet::default().filter(SeccompAction::Allow, SeccompAction::KillProcess, arch)?
    } else {
        all.filter(default.clone(), SeccompAction::Allow, arch)?
    };
    let passes = matches!(
        seccomp.default_action(),
        LinuxSeccompAction::ScmpActAllow
            | LinuxSeccompAction::ScmpActLog
            | LinuxSeccompAction::ScmpActTrace
    );
    programs.push(with_head(
        main,
        audit_arch,
        arch,
        largest.filter(|_| !passes),
    )?);
    for (act, rules) in others {
        programs.push(rules.filter(SeccompAction::Allow, act, arch)?);
    }
    for program in &programs {
        if program.len() > MAX_INSNS {
            return Err(backend(BackendError::FilterTooLarge(program.len())));
        }
    }
    Ok(Filter { programs, flags })
}

/// Inserts, after seccompiler's architecture check, the x32 check (x86_64) and runc's
/// -ENOSYS stub for syscalls above `enosys_above`.
fn with_head(
    mut program: Vec<libc::sock_filter>,
    audit_arch: u32,
    arch: TargetArch,
    enosys_above: Option<u32>,
) -> Result<Vec<libc::sock_filter>> {
    let kill = u32::from(SeccompAction::KillProcess);
    let arch_check = [
        stmt(LD_W_ABS, DATA_ARCH),
        jump(JEQ_K, audit_arch, 1, 0),
        stmt(RET_K, kill),
    ];
    if program.len() < arch_check.len() || !program.iter().zip(&arch_check).all(|(a, b)| same(a, b))
    {
        return Err(invalid(
            "seccomp: unexpected program from seccompiler (no architecture check)",
        ));
    }
    let mut head = vec![stmt(LD_W_ABS, DATA_NR)];
    if arch == TargetArch::x86_64 {
        head.extend([
            // -1 goes on (tracers use it to skip a call); other x32 numbers are killed.
            jump(JEQ_K, u32::MAX, 2, 0),
            jump(JGE_K, X32_SYSCALL_BIT, 0, 1),
            stmt(RET_K, kill),
        ]);
    }
    if let Some(largest) = enosys_above {
        head.extend([
            jump(JGT_K, largest, 0, 1),
            stmt(RET_K, u32::from(SeccompAction::Errno(libc::ENOSYS as u32))),
        ]);
    }
    program.splice(arch_check.len()..arch_check.len(), head);
    Ok(program)
}

/// Compiled BPF filters, ready to install: the main filter first, then one per other action.
#[derive(Clone)]
pub struct Filter {
    programs: Vec<Vec<libc::sock_filter>>,
    flags: u32,
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Filter")
            .field(
                "programs",
                &self.programs.iter().map(Vec::len).collect::<Vec<_>>(),
            )
            .field("flags", &self.flags)
            .finish()
    }
}

impl PartialEq for Filter {
    fn eq(&self, other: &Self) -> bool {
        self.flags == other.flags
            && self.programs.len() == other.programs.len()
            && self
                .programs
                .iter()
                .zip(&other.programs)
                .all(|(a, b)| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y)))
    }
}

impl Eq for Filter {}

impl Filter {
    /// Installs the filters, in order, for every thread of the calling process
    /// (`SECCOMP_FILTER_FLAG_TSYNC`). The caller must have set `no_new_privs` or hold
    /// CAP_SYS_ADMIN; this does not set `no_new_privs`. If a later filter fails, the earlier
    /// ones stay installed: the caller is expected to give up (init exits).
    pub fn install(&self) -> Result<()> {
        let count = self.programs.len();
        for (i, program) in self.programs.iter().enumerate() {
            let len = u16::try_from(program.len())
                .map_err(|_| backend(BackendError::FilterTooLarge(program.len())))?;
            let prog = libc::sock_fprog {
                len,
                filter: program.as_ptr().cast_mut(),
            };
            // SAFETY: `prog` points at `len` initialised instructions that outlive the call;
            // the kernel copies them and writes nothing back.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    libc::c_ulong::from(self.flags),
                    &raw const prog,
                )
            };
            if rc != 0 {
                let cause = if rc > 0 {
                    std::io::Error::other(format!("thread {rc} cannot be synchronised"))
                } else {
                    std::io::Error::last_os_error()
                };
                return Err(Error::Sys {
                    what: format!("installing seccomp filter {} of {count}", i + 1),
                    cause,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_table_is_sorted_and_right() {
        assert!(syscalls::SYSCALLS.windows(2).all(|w| w[0].0 < w[1].0));
        #[cfg(any(
            target_arch = "x86_64",
            target_arch = "aarch64",
            target_arch = "riscv64"
        ))]
        for (name, nr) in [
            ("read", libc::SYS_read),
            ("write", libc::SYS_write),
            ("openat", libc::SYS_openat),
            ("clone", libc::SYS_clone),
            ("clone3", libc::SYS_clone3),
            ("socket", libc::SYS_socket),
            ("keyctl", libc::SYS_keyctl),
            ("unshare", libc::SYS_unshare),
            ("mount", libc::SYS_mount),
            ("perf_event_open", libc::SYS_perf_event_open),
            ("io_uring_setup", libc::SYS_io_uring_setup),
            ("personality", libc::SYS_personality),
            ("mkdirat", libc::SYS_mkdirat),
            ("seccomp", libc::SYS_seccomp),
            ("exit_group", libc::SYS_exit_group),
        ] {
            assert_eq!(syscall_number(name).map(i64::from), Some(nr), "{name}");
        }
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(syscall_number("mkdir"), Some(83));
            assert_eq!(syscall_number("removexattrat"), Some(466));
            assert_eq!(syscall_number("chown32"), None);
        }
        assert_eq!(syscall_number("no_such_syscall"), None);
    }

    #[cfg(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64"
    ))]
    mod native {
        use std::path::Path;

        use oci_spec::runtime::LinuxSyscall;

        use super::*;
        use crate::seccomp::Profile;
        use crate::seccomp::profile::testing::{docker_caps, resolve_amd64, with};

        fn seccomp(json: &str) -> LinuxSeccomp {
            Profile::from_json(json.as_bytes(), Path::new("t.json"))
                .expect("parses")
                .resolve(&[])
                .expect("resolves")
        }

        #[test]
        fn default_profile_compiles_to_two_filters() {
            let seccomp = resolve_amd64(&Profile::docker_default(), &docker_caps());
            let filter = compile(&seccomp).expect("compiles");
            // The main filter, and ERRNO(ENOSYS) for clone3.
            assert_eq!(filter.programs.len(), 2, "{filter:?}");
            let lengths: Vec<usize> = filter.programs.iter().map(Vec::len).collect();
            assert!(lengths[0] > 1000 && lengths[0] <= MAX_INSNS, "{lengths:?}");
            assert!(lengths[1] < 16, "{lengths:?}");
            // The clone3 filter returns ENOSYS for clone3 and allows the rest.
            let errno = u32::from(SeccompAction::Errno(38));
            let clone3 = &filter.programs[1];
            assert!(
                clone3
                    .iter()
                    .any(|i| i.code == JEQ_K && i.k == libc::SYS_clone3 as u32)
            );
            assert!(clone3.iter().any(|i| i.code == RET_K && i.k == errno));

            let admin = resolve_amd64(
                &Profile::docker_default(),
                &with(docker_caps(), "SYS_ADMIN"),
            );
            assert_eq!(compile(&admin).expect("compiles").programs.len(), 1);
        }

        #[test]
        fn groups_per_action_and_skipped_rules() {
            let filter = compile(&seccomp(
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                    {"names": ["getpid", "no_such_syscall"], "action": "SCMP_ACT_ALLOW"},
                    {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                    {"names": ["only_elsewhere"], "action": "SCMP_ACT_KILL"},
                    {"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                    {"names": ["getuid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5},
                    {"names": ["getgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}
                ]}"#,
            ))
            .expect("compiles");
            // Main, ERRNO(13), ERRNO(5): getppid repeats the default; only_elsewhere is
            // unknown here, so its KILL filter is not made.
            assert_eq!(filter.programs.len(), 3, "{filter:?}");
        }

        #[test]
        fn unexpressible_profiles_fail() {
            for (json, what) in [
                (
                    r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
                    "index 6",
                ),
                (
                    r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}"#,
                    "errnoRet 70000",
                ),
                (
                    r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["no_such_syscall"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5000}]}"#,
                    "errnoRet 5000",
                ),
            ] {
                let err = compile(&seccomp(json)).expect_err(what).to_string();
                assert!(err.contains(what), "{err}");
            }
            let mut notify = seccomp(r#"{"defaultAction": "SCMP_ACT_ERRNO"}"#);
            let mut call = LinuxSyscall::default();
            call.set_names(vec!["read".into()]);
            call.set_action(LinuxSeccompAction::ScmpActNotify);
            notify.set_syscalls(Some(vec![call]));
            let err = compile(&notify).expect_err("notify").to_string();
            assert!(err.contains("SCMP_ACT_NOTIFY"), "{err}");
        }

        #[test]
        fn same_index_args_become_separate_rules() {
            let one = |args: &str| {
                compile(&seccomp(&format!(
                    r#"{{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{{"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "args": {args}}}]}}"#
                )))
                .expect("compiles")
                .programs[1]
                    .clone()
            };
            let returns = |p: &[libc::sock_filter]| {
                p.iter()
                    .filter(|i| i.code == RET_K && i.k == u32::from(SeccompAction::Errno(13)))
                    .count()
            };
            // Two indices: one rule, one ERRNO return; one index twice: two rules.
            let and = one(
                r#"[{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"}]"#,
            );
            let or = one(
                r#"[{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]"#,
            );
            assert_eq!(returns(&and), 1);
            assert_eq!(returns(&or), 2);
        }
    }
}
