//! The device cgroup: which device nodes a container may create (`mknod`) and open.
//!
//! The rules are OCI's `linux.resources.devices`: each allows or denies some accesses (read,
//! write, mknod) to a set of devices (a type, or all; a major and a minor, or `*`). They are
//! evaluated in order, and for every access a request asks for, the last rule covering that
//! access to that device decides; an access no rule covers is denied. A request (the kernel asks
//! for `m` on mknod, and for `r`, `w` or `rw` on open) is allowed when each of its accesses is.
//!
//! On cgroup v1 the rules become writes to the `devices` controller's `devices.deny` and
//! `devices.allow` ([`apply_v1`]), refused when the kernel's model cannot hold them exactly; on
//! cgroup v2 they are compiled into a `BPF_PROG_TYPE_CGROUP_DEVICE` program attached to the
//! cgroup ([`apply_v2`]).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::error::{errno, sys};
use crate::{Error, Result};

// The kernel's DEVCG_ACC_* and DEVCG_DEV_* values, shared by v1 and the BPF context.
const MKNOD: u8 = 1;
const READ: u8 = 2;
const WRITE: u8 = 4;
const ALL_ACCESS: u8 = MKNOD | READ | WRITE;
const BLOCK: u8 = 1;
const CHAR: u8 = 2;

/// docker's default device rules, in order: deny all (`a *:* rwm`); allow mknod of any char and
/// block device (`c *:* m`, `b *:* m`); allow `rwm` on `c 1:3` (null), `1:5` (zero), `1:7`
/// (full), `1:8` (random), `1:9` (urandom), `5:0` (tty), `5:2` (ptmx) and `136:*` (pts).
pub fn default_rules() -> Vec<LinuxDeviceCgroup> {
    use LinuxDeviceType::{A, B, C};
    let mut rules = vec![
        rule(false, A, None, None, "rwm"),
        rule(true, C, None, None, "m"),
        rule(true, B, None, None, "m"),
    ];
    for (major, minor) in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 2)] {
        rules.push(rule(true, C, Some(major), Some(minor), "rwm"));
    }
    rules.push(rule(true, C, Some(136), None, "rwm"));
    rules
}

fn rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(allow)
        .set_typ(Some(typ))
        .set_major(major)
        .set_minor(minor)
        .set_access(Some(access.to_string()));
    r
}

/// A validated rule: `kind` is `BLOCK` or `CHAR` (`None`: both), `None` numbers are `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rule {
    allow: bool,
    kind: Option<u8>,
    major: Option<u32>,
    minor: Option<u32>,
    access: u8,
}

impl Rule {
    fn covers(&self, kind: u8, major: u32, minor: u32) -> bool {
        self.kind.is_none_or(|k| k == kind)
            && self.major.is_none_or(|m| m == major)
            && self.minor.is_none_or(|m| m == minor)
    }

    /// Whether this rule covers every access to every device.
    fn is_total(&self) -> bool {
        self.kind.is_none()
            && self.major.is_none()
            && self.minor.is_none()
            && self.access == ALL_ACCESS
    }
}

fn parse(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Rule>> {
    rules.iter().map(parse_one).collect()
}

fn parse_one(r: &LinuxDeviceCgroup) -> Result<Rule> {
    let bad = |why: &str| Error::Config(format!("device cgroup rule \"{r}\": {why}"));
    let kind = match r.typ() {
        None | Some(LinuxDeviceType::A) => None,
        Some(LinuxDeviceType::B) => Some(BLOCK),
        Some(LinuxDeviceType::C) => Some(CHAR),
        Some(t) => return Err(bad(&format!("type {} is not a, b or c", t.as_str()))),
    };
    // runc reads -1 as "*" too; v1 reads u32::MAX as "*", so it is no device's number.
    let number = |n: Option<i64>| match n {
        None | Some(-1) => Ok(None),
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|&n| n != u32::MAX)
            .map(Some)
            .ok_or_else(|| bad(&format!("device number {n} is out of range"))),
    };
    let mut access = 0;
    for c in r.access().as_deref().unwrap_or("").chars() {
        access |= match c {
            'r' => READ,
            'w' => WRITE,
            'm' => MKNOD,
            _ => return Err(bad(&format!("access {c:?} is not r, w or m"))),
        };
    }
    if access == 0 {
        return Err(bad("no access given"));
    }
    Ok(Rule {
        allow: r.allow(),
        kind,
        major: number(r.major())?,
        minor: number(r.minor())?,
        access,
    })
}

/// What the rules say about a request for `access` (some of `MKNOD`, `READ`, `WRITE`) to a
/// device: allowed when, for each access asked for, the last rule covering it allows.
fn allowed(rules: &[Rule], kind: u8, major: u32, minor: u32, access: u8) -> bool {
    [MKNOD, READ, WRITE]
        .into_iter()
        .filter(|bit| access & bit != 0)
        .all(|bit| {
            rules
                .iter()
                .rev()
                .find(|r| r.access & bit != 0 && r.covers(kind, major, minor))
                .is_some_and(|r| r.allow)
        })
}

/// The requests the kernel makes: mknod, and open for reading, writing or both.
const REQUESTS: [u8; 4] = [MKNOD, READ, WRITE, READ | WRITE];

/// One device of each class the rules can tell apart: both types, each major and minor the
/// rules name, and one they do not name. Both the OCI semantics and the kernel's only compare
/// numbers for equality, so agreeing on these means agreeing everywhere.
fn representatives(rules: &[Rule]) -> Vec<(u8, u32, u32)> {
    fn values(named: impl Iterator<Item = u32>) -> Vec<u32> {
        let mut v: Vec<u32> = named.collect();
        v.sort_unstable();
        v.dedup();
        // The smallest number not named (v is sorted, so the first gap).
        let other = v
            .iter()
            .enumerate()
            .find(|&(i, &n)| u32::try_from(i).ok() != Some(n))
            .map_or(v.len(), |(i, _)| i);
        v.push(u32::try_from(other).unwrap_or(u32::MAX));
        v
    }
    let majors = values(rules.iter().filter_map(|r| r.major));
    let minors = values(rules.iter().filter_map(|r| r.minor));
    let mut out = Vec::new();
    for kind in [CHAR, BLOCK] {
        for &major in &majors {
            for &minor in &minors {
                out.push((kind, major, minor));
            }
        }
    }
    out
}

fn describe(kind: u8, major: u32, minor: u32, access: u8) -> String {
    let t = if kind == BLOCK { 'b' } else { 'c' };
    format!("{t} {major}:{minor} {}", access_str(access))
}

fn access_str(access: u8) -> String {
    // The kernel's order, as devices.list prints it.
    [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')]
        .into_iter()
        .filter(|(bit, _)| access & bit != 0)
        .map(|(_, c)| c)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// cgroup v1

/// An entry of a v1 devices controller's exception list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Exception {
    kind: u8,
    major: Option<u32>,
    minor: Option<u32>,
    access: u8,
}

impl std::fmt::Display for Exception {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let num = |n: Option<u32>| n.map_or_else(|| "*".to_string(), |n| n.to_string());
        let t = if self.kind == BLOCK { 'b' } else { 'c' };
        write!(
            f,
            "{t} {}:{} {}",
            num(self.major),
            num(self.minor),
            access_str(self.access)
        )
    }
}

/// One write to a v1 devices controller: `entry` `None` is the line `a` (everything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct V1Write {
    allow: bool,
    entry: Option<Exception>,
}

impl V1Write {
    fn file(&self) -> &'static str {
        if self.allow {
            "devices.allow"
        } else {
            "devices.deny"
        }
    }

    fn line(&self) -> String {
        self.entry
            .map_or_else(|| "a".to_string(), |e| e.to_string())
    }
}

/// The kernel's v1 devices controller (security/device_cgroup.c) for a cgroup without
/// children whose parent allows everything: a default and a list of exceptions to it.
#[derive(Debug, Default)]
struct V1State {
    default_allow: bool,
    exceptions: Vec<Exception>,
}

impl V1State {
    fn write(&mut self, w: &V1Write) {
        let Some(ex) = w.entry else {
            // "a": forget the exceptions, change the default.
            self.exceptions.clear();
            self.default_allow = w.allow;
            return;
        };
        // An allow in allow-by-default mode, or a deny in deny-by-default mode, removes the
        // accesses from the exception with exactly this type and numbers; otherwise the
        // accesses are added to it (or it is appended).
        let same = |e: &Exception| e.kind == ex.kind && e.major == ex.major && e.minor == ex.minor;
        if w.allow == self.default_allow {
            for e in self.exceptions.iter_mut().filter(|e| same(e)) {
                e.access &= !ex.access;
            }
            self.exceptions.retain(|e| e.access != 0);
        } else if let Some(e) = self.exceptions.iter_mut().find(|e| same(e)) {
            e.access |= ex.access;
        } else {
            self.exceptions.push(ex);
        }
    }

    fn allows(&self, kind: u8, major: u32, minor: u32, access: u8) -> bool {
        let matches = |e: &&Exception| {
            e.kind == kind
                && e.major.is_none_or(|m| m == major)
                && e.minor.is_none_or(|m| m == minor)
        };
        if self.default_allow {
            // Denied when any exception shares an access with the request.
            !self
                .exceptions
                .iter()
                .filter(matches)
                .any(|e| e.access & access != 0)
        } else {
            // Allowed when one exception holds every access of the request.
            self.exceptions
                .iter()
                .filter(matches)
                .any(|e| access & !e.access == 0)
        }
    }

    /// What `devices.list` shows: `a *:* rwm` when allowing by default, else the exceptions.
    fn list(&self) -> Vec<String> {
        if self.default_allow {
            vec!["a *:* rwm".to_string()]
        } else {
            self.exceptions.iter().map(Exception::to_string).collect()
        }
    }
}

/// The writes that put a fresh v1 devices cgroup into the state the rules describe, and that
/// state; an error when the kernel's model cannot represent the rules exactly.
fn v1_writes(rules: &[LinuxDeviceCgroup]) -> Result<(Vec<V1Write>, V1State)> {
    let rules = parse(rules)?;
    // Everything before the last rule about all accesses to all devices is overridden by it;
    // that rule (or, without one, deny-all) is the controller's default.
    let (default_allow, rest) = match rules.iter().rposition(Rule::is_total) {
        Some(i) => (rules[i].allow, &rules[i + 1..]),
        None => (false, &rules[..]),
    };
    let mut writes = vec![V1Write {
        allow: default_allow,
        entry: None,
    }];
    for r in rest {
        // v1 reads any line starting with "a" as "everything": a rule of type a becomes a
        // char and a block line.
        let kinds: &[u8] = match r.kind {
            None => &[CHAR, BLOCK],
            Some(CHAR) => &[CHAR],
            Some(_) => &[BLOCK],
        };
        for &kind in kinds {
            writes.push(V1Write {
                allow: r.allow,
                entry: Some(Exception {
                    kind,
                    major: r.major,
                    minor: r.minor,
                    access: r.access,
                }),
            });
        }
    }
    let mut state = V1State::default();
    for w in &writes {
        state.write(w);
    }
    for (kind, major, minor) in representatives(&rules) {
        for access in REQUESTS {
            let want = allowed(&rules, kind, major, minor, access);
            if state.allows(kind, major, minor, access) != want {
                let verdict = |a: bool| if a { "allowed" } else { "denied" };
                return Err(Error::Config(format!(
                    "the device cgroup rules cannot be represented exactly on cgroup v1: \
                     {} is {} by the rules but would be {} by the kernel",
                    describe(kind, major, minor, access),
                    verdict(want),
                    verdict(!want),
                )));
            }
        }
    }
    Ok((writes, state))
}

/// Apply OCI device rules to a fresh cgroup v1 `devices` controller directory (one without
/// children, whose parent allows everything), by writes to its `devices.deny` and
/// `devices.allow`: first `a` (deny all, or allow all when the last rule covering everything
/// allows), then the later rules in order. Rules the kernel's model cannot represent exactly
/// (such as denying one device after allowing all char devices) are refused before anything is
/// written; afterwards `devices.list` is checked against the intended state.
pub fn apply_v1(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let (writes, state) = v1_writes(rules)?;
    for w in &writes {
        let path = dir.join(w.file());
        let line = w.line();
        std::fs::write(&path, &line)
            .map_err(sys(format!("writing {line} to {}", path.display())))?;
    }
    let path = dir.join("devices.list");
    let text =
        std::fs::read_to_string(&path).map_err(sys(format!("reading {}", path.display())))?;
    let mut actual: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut expected = state.list();
    actual.sort_unstable();
    expected.sort_unstable();
    if actual != expected {
        return Err(Error::Sys {
            what: format!("checking {}", path.display()),
            cause: std::io::Error::other(format!(
                "the kernel lists {actual:?}, expected {expected:?}"
            )),
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// cgroup v2: eBPF

/// One eBPF instruction, laid out as the kernel's `struct bpf_insn` (little-endian: the
/// destination register in the low nibble of `regs`, the source in the high one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

// Opcodes (class | operation | source).
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W: dst = *(u32 *)(src + off)
const ALU32_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K: w_dst &= imm
const ALU32_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K: w_dst >>= imm
const ALU32_MOV_K: u8 = 0xb4; // BPF_ALU | BPF_MOV | BPF_K: w_dst = imm (zero-extended)
const ALU32_MOV_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X: w_dst = w_src
const ALU64_MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K: dst = imm
const JMP_JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K: if dst == imm goto +off
const JMP_JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K: if dst != imm goto +off
const JMP_JNE_X: u8 = 0x5d; // BPF_JMP | BPF_JNE | BPF_X: if dst != src goto +off
const JMP_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT: return r0

// Registers: r0 result, r1 context (then scratch), r2 type, r3 accesses still undecided,
// r4 major, r5 minor.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

/// The program for the rules: a prologue loading `struct bpf_cgroup_dev_ctx`, then one block
/// per rule from the last to the first, then "deny". r3 holds the accesses of the request not
/// yet decided: a deny block that covers the device and shares an access with r3 returns 0; an
/// allow block that covers the device clears its accesses from r3 and returns 1 once r3 is
/// empty. So each access is decided by the last rule covering it, and a request is allowed
/// when all of its accesses are (one asking for none, which the kernel does not make today, is
/// allowed when an allow rule covers the device). Deny rules before the first allow rule are
/// left out: they can only lead to the final deny. Any access bit the kernel may add later is
/// never cleared, so it is denied.
fn program(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Insn>> {
    let rules = parse(rules)?;
    let mut p = vec![
        insn(LDX_MEM_W, R2, R1, 0, 0),       // r2 = ctx->access_type
        insn(ALU32_MOV_X, R3, R2, 0, 0),     // r3 = r2
        insn(ALU32_AND_K, R2, 0, 0, 0xffff), // r2 &= 0xffff: the device type
        insn(ALU32_RSH_K, R3, 0, 0, 16),     // r3 >>= 16: the accesses
        insn(LDX_MEM_W, R4, R1, 4, 0),       // r4 = ctx->major
        insn(LDX_MEM_W, R5, R1, 8, 0),       // r5 = ctx->minor
    ];
    let first_allow = rules.iter().position(|r| r.allow).unwrap_or(rules.len());
    for r in rules[first_allow..].iter().rev() {
        // Tests of the device, each jumping past the block when it fails.
        let mut tests = Vec::new();
        if let Some(kind) = r.kind {
            tests.push(insn(JMP_JNE_K, R2, 0, 0, i32::from(kind)));
        }
        for (reg, number) in [(R4, r.major), (R5, r.minor)] {
            let Some(n) = number else { continue };
            match i32::try_from(n) {
                Ok(imm) => tests.push(insn(JMP_JNE_K, reg, 0, 0, imm)),
                // An immediate is sign-extended to 64 bits; compare with a zero-extended copy.
                Err(_) => tests.extend([
                    insn(ALU32_MOV_K, R1, 0, 0, i32::from_ne_bytes(n.to_ne_bytes())),
                    insn(JMP_JNE_X, reg, R1, 0, 0),
                ]),
            }
        }
        let access = i32::from(r.access);
        let body = if r.allow {
            vec![
                insn(ALU32_AND_K, R3, 0, 0, !access), // these accesses are allowed
                insn(JMP_JNE_K, R3, 0, 2, 0),         // others still undecided: go on
                insn(ALU64_MOV_K, R0, 0, 0, 1),
                insn(JMP_EXIT, 0, 0, 0, 0),
            ]
        } else {
            vec![
                insn(ALU32_MOV_X, R1, R3, 0, 0),
                insn(ALU32_AND_K, R1, 0, 0, access), // undecided accesses this rule denies
                insn(JMP_JEQ_K, R1, 0, 2, 0),        // none: go on
                insn(ALU64_MOV_K, R0, 0, 0, 0),
                insn(JMP_EXIT, 0, 0, 0, 0),
            ]
        };
        let len = tests.len() + body.len();
        for (i, test) in tests.iter_mut().enumerate() {
            if matches!(test.code, JMP_JNE_K | JMP_JNE_X) {
                // Past the rest of the block (a jump counts from the next instruction).
                test.off = i16::try_from(len - i - 1).map_err(|_| {
                    Error::Config("device cgroup rule too large for a BPF jump".to_string())
                })?;
            }
        }
        p.extend(tests);
        p.extend(body);
    }
    p.extend([insn(ALU64_MOV_K, R0, 0, 0, 0), insn(JMP_EXIT, 0, 0, 0, 0)]);
    Ok(p)
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const LICENSE: &std::ffi::CStr = c"Apache-2.0";
const LOG_SIZE: usize = 1 << 20;
/// How much of the verifier's log goes into an error: its last lines say why.
const LOG_TAIL_LINES: usize = 30;

/// The leading fields of `union bpf_attr` for `BPF_PROG_LOAD` (the kernel zero-fills the rest).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The leading fields of `union bpf_attr` for `BPF_PROG_ATTACH`.
#[repr(C)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// `bpf(BPF_PROG_LOAD)` of a device cgroup program, with the verifier's log in `log` if given.
fn prog_load(insns: &[Insn], log: Option<&mut [u8]>) -> std::io::Result<OwnedFd> {
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(insns.len())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::E2BIG))?,
        insns: insns.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        ..ProgLoadAttr::default()
    };
    attr.prog_name[..11].copy_from_slice(b"img_devices");
    if let Some(log) = log {
        attr.log_level = 1;
        attr.log_size = u32::try_from(log.len()).unwrap_or(u32::MAX);
        attr.log_buf = log.as_mut_ptr() as u64;
    }
    // SAFETY: `attr` is a valid prefix of `union bpf_attr` for BPF_PROG_LOAD and its size is
    // passed; the instructions, the license string and the log buffer it points to outlive the
    // call, and the kernel writes at most `log_size` bytes into the log buffer.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &raw const attr,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| std::io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: a successful BPF_PROG_LOAD returns a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Load the program; when the kernel refuses it, load again with a log to say why.
fn load(insns: &[Insn]) -> Result<OwnedFd> {
    let cause = match prog_load(insns, None) {
        Ok(fd) => return Ok(fd),
        Err(e) => e,
    };
    let mut log = vec![0u8; LOG_SIZE];
    let retry = prog_load(insns, Some(&mut log));
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    let text = String::from_utf8_lossy(&log[..end]);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join(" | ");
    match retry {
        // Refused once, accepted with a log: a transient failure, and a good program.
        Ok(fd) => Ok(fd),
        Err(_) => {
            let mut what = String::from("loading the device cgroup BPF program");
            if !tail.is_empty() {
                what.push_str(&format!(" (verifier: {tail})"));
            }
            Err(Error::Sys { what, cause })
        }
    }
}

/// Compile the rules into a `BPF_PROG_TYPE_CGROUP_DEVICE` program, load it
/// (`bpf(BPF_PROG_LOAD)`, the verifier's log in the error if it is refused) and attach it to
/// the cgroup2 directory `dir` (`BPF_PROG_ATTACH`, `BPF_CGROUP_DEVICE`, without
/// `BPF_F_ALLOW_MULTI`: it replaces a program this function attached before, and cgroups below
/// `dir` cannot attach programs of their own). The program lives as long as the cgroup.
pub fn apply_v2(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    use rustix::fs::{Mode, OFlags};
    let insns = program(rules)?;
    let cgroup = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno(format!("opening cgroup {}", dir.display())))?;
    let prog = load(&insns)?;
    let attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd().cast_unsigned(),
        attach_bpf_fd: prog.as_raw_fd().cast_unsigned(),
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: 0,
        replace_bpf_fd: 0,
    };
    // SAFETY: `attr` is a valid prefix of `union bpf_attr` for BPF_PROG_ATTACH and its size is
    // passed; both file descriptors in it are open for the duration of the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &raw const attr,
            std::mem::size_of::<ProgAttachAttr>(),
        )
    };
    if rc < 0 {
        return Err(sys(format!(
            "attaching the device cgroup BPF program to {}",
            dir.display()
        ))(std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(extra: &[LinuxDeviceCgroup]) -> Vec<LinuxDeviceCgroup> {
        let mut rules = default_rules();
        rules.extend_from_slice(extra);
        rules
    }

    fn privileged() -> Vec<LinuxDeviceCgroup> {
        vec![rule(true, LinuxDeviceType::A, None, None, "rwm")]
    }

    fn lines(rules: &[LinuxDeviceCgroup]) -> Vec<String> {
        let (writes, _) = v1_writes(rules).expect("representable");
        writes
            .iter()
            .map(|w| format!("{} {}", w.file(), w.line()))
            .collect()
    }

    #[test]
    fn v1_writes_for_the_default_list() {
        assert_eq!(
            lines(&default_rules()),
            [
                "devices.deny a",
                "devices.allow c *:* m",
                "devices.allow b *:* m",
                "devices.allow c 1:3 rwm",
                "devices.allow c 1:5 rwm",
                "devices.allow c 1:7 rwm",
                "devices.allow c 1:8 rwm",
                "devices.allow c 1:9 rwm",
                "devices.allow c 5:0 rwm",
                "devices.allow c 5:2 rwm",
                "devices.allow c 136:* rwm",
            ]
        );
        let (_, state) = v1_writes(&default_rules()).expect("representable");
        assert_eq!(state.list().len(), 10);
        assert!(!state.default_allow);
    }

    #[test]
    fn v1_writes_for_privileged() {
        assert_eq!(lines(&privileged()), ["devices.allow a"]);
        // docker's privileged list comes after nothing; after the defaults it still wins.
        let mut rules = default_rules();
        rules.extend(privileged());
        assert_eq!(lines(&rules), ["devices.allow a"]);
        let (_, state) = v1_writes(&rules).expect("representable");
        assert_eq!(state.list(), ["a *:* rwm"]);
    }

    #[test]
    fn v1_writes_for_an_extra_device() {
        // --device /dev/kmsg, and --device-cgroup-rule 'a 7:* rw' (both types).
        let rules = with(&[
            rule(true, LinuxDeviceType::C, Some(1), Some(11), "rwm"),
            rule(true, LinuxDeviceType::A, Some(7), None, "rw"),
        ]);
        let got = lines(&rules);
        assert_eq!(got.len(), 14);
        assert_eq!(
            got[11..],
            [
                "devices.allow c 1:11 rwm",
                "devices.allow c 7:* rw",
                "devices.allow b 7:* rw",
            ]
        );
        let (_, state) = v1_writes(&rules).expect("representable");
        assert!(state.allows(CHAR, 1, 11, READ | WRITE));
        assert!(state.allows(BLOCK, 7, 3, READ));
        assert!(!state.allows(CHAR, 1, 12, READ));
    }

    #[test]
    fn v1_deny_after_allow_on_the_same_device() {
        // A later deny of one access of an allowed device removes it from the exception.
        let rules = with(&[rule(false, LinuxDeviceType::C, Some(1), Some(3), "w")]);
        let (_, state) = v1_writes(&rules).expect("representable");
        assert!(state.list().contains(&"c 1:3 rm".to_string()));
        assert!(!state.allows(CHAR, 1, 3, WRITE));
        assert!(state.allows(CHAR, 1, 3, READ));
    }

    #[test]
    fn v1_refuses_what_it_cannot_represent() {
        // Denying one device out of an allowed wildcard: v1 removes exceptions only by exact
        // match, so c 1:3 would stay open.
        let rules = with(&[
            rule(true, LinuxDeviceType::C, Some(1), None, "rwm"),
            rule(false, LinuxDeviceType::C, Some(1), Some(3), "rwm"),
        ]);
        let err = v1_writes(&rules)
            .expect_err("not representable")
            .to_string();
        assert!(err.contains("c 1:3"), "{err}");
        // Read and write of one device granted by two different exceptions: v1 needs one
        // exception holding both for an open O_RDWR.
        let rules = with(&[
            rule(true, LinuxDeviceType::C, Some(4), None, "r"),
            rule(true, LinuxDeviceType::C, Some(4), Some(1), "w"),
        ]);
        assert!(v1_writes(&rules).is_err());
        // Nothing is written before the check: a directory without the files is not touched.
        let err = apply_v1(Path::new("/nonexistent-img-devices"), &rules).expect_err("refused");
        assert!(matches!(err, Error::Config(_)), "{err}");
    }

    #[test]
    fn invalid_rules_are_refused() {
        for bad in [
            rule(true, LinuxDeviceType::U, None, None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(-2), None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(1 << 32), None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(u32::MAX.into()), None, "rwm"),
            rule(true, LinuxDeviceType::C, None, None, "rx"),
            rule(true, LinuxDeviceType::C, None, None, ""),
        ] {
            assert!(program(std::slice::from_ref(&bad)).is_err(), "{bad}");
            assert!(v1_writes(std::slice::from_ref(&bad)).is_err(), "{bad}");
        }
    }

    /// Runs a program the way the kernel would, for the instructions `program` emits.
    fn run(p: &[Insn], kind: u8, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [(access << 16) | u32::from(kind), major, minor];
        let mut reg = [0u64; 11];
        let mut ctx_in_r1 = true;
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = (usize::from(i.regs & 0xf), usize::from(i.regs >> 4));
            let imm32 = i.imm.cast_unsigned();
            let imm64 = i64::from(i.imm).cast_unsigned();
            pc += 1;
            let jump = |cond: bool, pc: &mut usize| {
                if cond {
                    assert!(i.off >= 0, "backward jump");
                    *pc += usize::from(i.off.cast_unsigned());
                }
            };
            match i.code {
                LDX_MEM_W => {
                    assert!(src == 1 && ctx_in_r1, "load from something not the context");
                    reg[dst] = u64::from(ctx[usize::from(i.off.cast_unsigned()) / 4]);
                }
                ALU32_AND_K => reg[dst] = u64::from(reg[dst] as u32 & imm32),
                ALU32_RSH_K => reg[dst] = u64::from(reg[dst] as u32 >> imm32),
                ALU32_MOV_K => reg[dst] = u64::from(imm32),
                ALU32_MOV_X => reg[dst] = u64::from(reg[src] as u32),
                ALU64_MOV_K => reg[dst] = imm64,
                JMP_JEQ_K => jump(reg[dst] == imm64, &mut pc),
                JMP_JNE_K => jump(reg[dst] != imm64, &mut pc),
                JMP_JNE_X => jump(reg[dst] != reg[src], &mut pc),
                JMP_EXIT => return reg[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
            let writes = !matches!(i.code, JMP_JEQ_K | JMP_JNE_K | JMP_JNE_X | JMP_EXIT);
            if writes && dst == 1 {
                ctx_in_r1 = false;
            }
        }
    }

    #[test]
    fn program_for_the_default_list() {
        let p = program(&default_rules()).expect("valid");
        // Prologue (6), "deny all" left out, 2 mknod blocks (type test + 4), 7 device blocks
        // (type, major, minor tests + 4), 1 pts block (type, major + 4), final deny (2).
        assert_eq!(p.len(), 6 + 2 * 5 + 7 * 7 + 6 + 2);
        assert_eq!(p[0], insn(LDX_MEM_W, R2, R1, 0, 0));
        assert_eq!(p[4], insn(LDX_MEM_W, R4, R1, 4, 0));
        assert_eq!(p[5], insn(LDX_MEM_W, R5, R1, 8, 0));
        // The last rule comes first: c 136:* rwm.
        assert_eq!(
            p[6..12],
            [
                insn(JMP_JNE_K, R2, 0, 5, i32::from(CHAR)),
                insn(JMP_JNE_K, R4, 0, 4, 136),
                insn(ALU32_AND_K, R3, 0, 0, !7),
                insn(JMP_JNE_K, R3, 0, 2, 0),
                insn(ALU64_MOV_K, R0, 0, 0, 1),
                insn(JMP_EXIT, 0, 0, 0, 0),
            ]
        );
        // Then c 5:2 rwm.
        assert_eq!(
            p[12..15],
            [
                insn(JMP_JNE_K, R2, 0, 6, i32::from(CHAR)),
                insn(JMP_JNE_K, R4, 0, 5, 5),
                insn(JMP_JNE_K, R5, 0, 4, 2),
            ]
        );
        // The first allow rules, c *:* m then b *:* m, just before the end: a type test, and
        // m cleared.
        let n = p.len();
        assert_eq!(p[n - 7], insn(JMP_JNE_K, R2, 0, 4, i32::from(CHAR)));
        assert_eq!(p[n - 6], insn(ALU32_AND_K, R3, 0, 0, !1));
        assert_eq!(p[n - 12], insn(JMP_JNE_K, R2, 0, 4, i32::from(BLOCK)));
        assert_eq!(p[n - 11], insn(ALU32_AND_K, R3, 0, 0, !1));
        assert_eq!(
            p[n - 2..],
            [insn(ALU64_MOV_K, R0, 0, 0, 0), insn(JMP_EXIT, 0, 0, 0, 0)]
        );
        // And what it decides.
        let r = u32::from(READ);
        let w = u32::from(WRITE);
        let m = u32::from(MKNOD);
        assert_eq!(run(&p, CHAR, r | w, 1, 3), 1); // /dev/null
        assert_eq!(run(&p, CHAR, r | w, 136, 4), 1); // a pts
        assert_eq!(run(&p, CHAR, m, 1, 11), 1); // mknod kmsg
        assert_eq!(run(&p, CHAR, r, 1, 11), 0); // open kmsg
        assert_eq!(run(&p, BLOCK, m, 7, 0), 1); // mknod loop0
        assert_eq!(run(&p, BLOCK, r, 7, 0), 0); // open loop0
        assert_eq!(run(&p, BLOCK, r, 1, 3), 0); // b 1:3 is not null
        assert_eq!(run(&p, CHAR, r, 5, 1), 0); // console
        assert_eq!(run(&p, CHAR, r | 8, 1, 3), 0); // an access the kernel may add later
    }

    #[test]
    fn program_agrees_with_the_rules() {
        use LinuxDeviceType::{A, B, C};
        let lists = [
            default_rules(),
            privileged(),
            with(&[rule(true, C, Some(1), Some(11), "rwm")]),
            with(&[rule(false, C, Some(1), Some(3), "w")]),
            with(&[
                rule(true, C, Some(1), None, "r"),
                rule(true, C, Some(1), Some(11), "w"),
            ]),
            vec![
                rule(true, A, None, None, "rwm"),
                rule(false, B, None, None, "rwm"),
                rule(false, C, Some(1), Some(3), "rw"),
                rule(true, C, None, Some(3), "r"),
            ],
            vec![rule(
                true,
                C,
                Some(4_000_000_000),
                Some(4_000_000_001),
                "rw",
            )],
            vec![],
        ];
        for rules in &lists {
            let p = program(rules).expect("valid");
            let parsed = parse(rules).expect("valid");
            for (kind, major, minor) in representatives(&parsed) {
                for access in REQUESTS {
                    assert_eq!(
                        run(&p, kind, u32::from(access), major, minor) == 1,
                        allowed(&parsed, kind, major, minor, access),
                        "{} with {rules:?}",
                        describe(kind, major, minor, access)
                    );
                }
            }
        }
        // Numbers above i32::MAX are compared unsigned.
        let p = program(&lists[6]).expect("valid");
        assert_eq!(
            run(&p, CHAR, u32::from(READ), 4_000_000_000, 4_000_000_001),
            1
        );
        assert_eq!(run(&p, CHAR, u32::from(READ), 4_000_000_000, 0), 0);
    }

    #[test]
    fn v1_model_follows_the_kernel() {
        let ex = |kind, major, minor, access| Exception {
            kind,
            major,
            minor,
            access,
        };
        let write = |allow, entry| V1Write { allow, entry };
        // Deny by default: a request needs one exception holding all of its accesses.
        let mut v1 = V1State::default();
        for w in [
            write(false, None),
            write(true, Some(ex(CHAR, Some(1), None, READ))),
            write(true, Some(ex(CHAR, Some(1), Some(3), WRITE))),
            write(true, Some(ex(CHAR, Some(1), Some(3), MKNOD))), // merged into c 1:3 wm
            write(false, Some(ex(CHAR, Some(1), Some(7), READ))), // no exact match: no-op
        ] {
            v1.write(&w);
        }
        assert_eq!(v1.list(), ["c 1:* r", "c 1:3 wm"]);
        assert!(v1.allows(CHAR, 1, 3, READ) && v1.allows(CHAR, 1, 3, WRITE));
        assert!(!v1.allows(CHAR, 1, 3, READ | WRITE));
        assert!(v1.allows(CHAR, 1, 7, READ));
        assert!(!v1.allows(BLOCK, 1, 7, READ));
        // Allow by default: denied when any exception shares an access.
        let mut v1 = V1State::default();
        for w in [
            write(true, None),
            write(false, Some(ex(BLOCK, None, None, WRITE))),
        ] {
            v1.write(&w);
        }
        assert_eq!(v1.list(), ["a *:* rwm"]);
        assert!(!v1.allows(BLOCK, 7, 0, READ | WRITE));
        assert!(v1.allows(BLOCK, 7, 0, READ));
        assert!(v1.allows(CHAR, 7, 0, WRITE));
        // The devices to compare on: every number named, and one not named (the first gap).
        let parsed = parse(&default_rules()).expect("valid");
        let points = representatives(&parsed);
        assert_eq!(points.len(), 2 * 4 * 8);
        assert!(points.contains(&(BLOCK, 0, 1)));
        assert!(points.contains(&(CHAR, 136, 9)));
    }

    #[test]
    fn verifier_log_goes_into_the_error() {
        if !rustix::process::geteuid().is_root() {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "skipped: loading BPF programs needs root"
            );
            return;
        }
        // Returns r0 without setting it: the verifier refuses.
        let err = load(&[insn(JMP_EXIT, 0, 0, 0, 0)])
            .expect_err("refused")
            .to_string();
        assert!(err.contains("verifier:") && err.contains("R0"), "{err}");
        // The real program is accepted.
        let fd = load(&program(&default_rules()).expect("valid"));
        assert!(fd.is_ok(), "{:?}", fd.err());
    }
}
