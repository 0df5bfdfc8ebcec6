//! cgroup v2: the rules compiled into a `BPF_PROG_TYPE_CGROUP_DEVICE` eBPF program
//! (`program`), loaded with `bpf(BPF_PROG_LOAD)` and attached to the cgroup ([`apply_v2`]).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::LinuxDeviceCgroup;

use super::parse;
use crate::error::{errno, sys};
use crate::{Error, Result};

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
    use oci_spec::runtime::LinuxDeviceType;

    use super::*;
    use crate::devices::testing::{invalid_rules, privileged, with};
    use crate::devices::{
        BLOCK, CHAR, MKNOD, READ, REQUESTS, WRITE, allowed, default_rules, describe,
        representatives, rule,
    };

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
    #[cfg_attr(not(img_root), ignore = "needs root (loading BPF programs)")]
    fn verifier_log_goes_into_the_error() {
        // Returns r0 without setting it: the verifier refuses.
        let err = load(&[insn(JMP_EXIT, 0, 0, 0, 0)])
            .expect_err("refused")
            .to_string();
        assert!(err.contains("verifier:") && err.contains("R0"), "{err}");
        // The real program is accepted.
        let fd = load(&program(&default_rules()).expect("valid"));
        assert!(fd.is_ok(), "{:?}", fd.err());
    }

    #[test]
    fn invalid_rules_are_refused() {
        for bad in invalid_rules() {
            assert!(program(std::slice::from_ref(&bad)).is_err(), "{bad}");
        }
    }
}
