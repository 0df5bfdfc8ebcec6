//! docker's seccomp profiles, compiled to BPF with [seccompiler] and installed by init.
//!
//! One path for every profile: docker's JSON ([`Profile`], the embedded
//! [`Profile::docker_default`] or `--security-opt seccomp=PROFILE.json`) is resolved against
//! the container's bounding set, the host's architecture and the running kernel into the OCI
//! [`LinuxSeccomp`] of the runtime spec ([`Profile::resolve`], exactly as moby does it), which
//! is what runc runs from a bundle and what [`compile`] turns into BPF for our own init
//! ([`Filter::install`]).
//!
//! # Semantics (runc's and libseccomp's)
//!
//! * The default action applies to every syscall no entry matches. `SCMP_ACT_ERRNO` and
//!   `SCMP_ACT_TRACE` return `defaultErrnoRet` as the default action, an entry's `errnoRet`
//!   as its action, EPERM when absent. `SCMP_ACT_KILL` kills the thread, as in runc.
//! * An entry whose action (with its errno) is the default action is dropped, as runc does.
//! * The args of one entry are ANDed, except when two of them share an index: then each arg
//!   is a rule of its own, so they are ORed (runc's behaviour). Several entries for one
//!   syscall are ORed. Args are compared as 64-bit values; `SCMP_CMP_MASKED_EQ` is
//!   `(arg & value) == (valueTwo & value)` (libseccomp masks the datum too).
//! * A name the architecture does not have (`chown32` on x86_64, a syscall newer than our
//!   table) is skipped, as runc does; an unknown action, `SCMP_ACT_NOTIFY`, an arg index above
//!   5 or an errno above 4095 is an error: nothing is installed rather than less.
//! * runc's -ENOSYS stub: unless the default action lets the call through (`ALLOW`, `LOG`,
//!   `TRACE`), syscall numbers above the largest one the profile names return ENOSYS, so
//!   that libcs fall back from syscalls newer than the profile instead of failing with EPERM.
//!
//! # Several filters, one answer
//!
//! A seccompiler filter has one action for the syscalls it matches and one for the rest, and
//! a profile mixes actions, so [`compile`] makes a list of filters:
//!
//! 1. the main filter: every rule of the profile, whatever its action, returns ALLOW;
//!    anything else returns the default action. Before its rules it checks the ABI (below)
//!    and holds the -ENOSYS stub;
//! 2. one filter per other action (action and errno, e.g. `ERRNO(ENOSYS)` for docker's
//!    `clone3`): the rules with that action return it; anything else returns ALLOW.
//!
//! The kernel runs every installed filter and keeps the most severe result, in this order:
//! KILL_PROCESS, KILL_THREAD, TRAP, ERRNO, TRACE, LOG, ALLOW; between two results of the same
//! kind (two ERRNOs with different errnos) the filter installed last wins. Hence:
//!
//! * no rule matches: the main filter gives the default action and every other filter
//!   ALLOW, so the default action wins (when it is ALLOW, all of them allow);
//! * a rule with action A matches: the main filter gives ALLOW, A's filter gives A and the
//!   others ALLOW, so A wins — every action but ALLOW is more severe than ALLOW, and ALLOW
//!   rules live in the main filter only;
//! * a call above the largest named syscall: the stub's ENOSYS from the main filter, ALLOW
//!   from the others (no rule can match it);
//! * docker's `clone3` without CAP_SYS_ADMIN: ALLOW from the main filter, `ERRNO(ENOSYS)`
//!   from its own, so ENOSYS — there is no tie with the default EPERM because the main filter
//!   allows `clone3`; filters are installed main filter first anyway, so even a tie would go
//!   to ENOSYS;
//! * rules with different actions matching the same call (docker's profiles have none): the
//!   most severe wins, and between two of the same kind (`ERRNO(13)` and `ERRNO(5)`) the one
//!   whose first entry comes later in the profile, as filters of other actions are installed
//!   in the order of their first entry. libseccomp refuses or merges such overlaps its own
//!   way; this is where we may differ, always towards the more severe action.
//!
//! # Architectures
//!
//! seccompiler filters the native ABI only (x86_64, aarch64, riscv64). A call made through
//! another ABI fails closed: each filter kills the process when the audit architecture is not
//! the native one (32-bit x86 through `int 0x80`, 32-bit ARM), and on x86_64 the main filter
//! also kills x32 calls (numbers with bit 30 set; -1, which tracers use to skip a call, goes
//! on to the -ENOSYS stub or the default action, as libseccomp lets it). docker's x86_64
//! profile lists the x86 and x32 sub-architectures, so 32-bit programs that run under docker
//! are killed with SIGSYS here. [`Profile::resolve`] still lists them, as docker does, for
//! runc and bundles.
//!
//! # Cost
//!
//! Compiling docker's default profile takes 0.1–0.2 ms (release build; about 1,600 BPF
//! instructions in the main filter, 10 in clone3's); a parent can still compile once and hand
//! init the bytes ([`Filter::to_bytes`], [`Filter::from_bytes`]). The filters are linear, but
//! since Linux 5.11 the kernel caches, per syscall number, "every filter allows this whatever
//! the args", so syscalls allowed without arg checks skip the filters entirely; the others
//! (`socket`, `clone`, `personality`, refusals) cost a few hundred nanoseconds more.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
};
use seccompiler::{
    BackendError, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

mod syscalls;

/// docker's current default profile (moby's `profiles/seccomp/default.json`, docker 25 and
/// later: io_uring refused), in docker's schema.
const DOCKER_DEFAULT: &str = include_str!("seccomp/default.json");

fn invalid(message: impl fmt::Display) -> Error {
    Error::Seccomp(message.to_string())
}

// ---------------------------------------------------------------------------------------------
// docker's profile format
// ---------------------------------------------------------------------------------------------

/// A seccomp profile in docker's format: the OCI fields plus `archMap` and conditional syscall
/// entries (`includes`/`excludes` on capabilities, architecture and kernel version).
/// Unknown fields are ignored and `null` lists are empty, as Go's decoder does.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// The action for syscalls no entry matches. docker treats a profile with neither a
    /// default action nor syscalls as no filter at all ([`Profile::is_unconfined`]).
    #[serde(
        default,
        deserialize_with = "default_action",
        skip_serializing_if = "Option::is_none"
    )]
    pub default_action: Option<LinuxSeccompAction>,
    /// The errno of an `SCMP_ACT_ERRNO` (or the data of an `SCMP_ACT_TRACE`) default action;
    /// EPERM when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    /// The older form of `archMap`: the architectures, as `SCMP_ARCH_*` names, copied as they
    /// are. A profile has this or `archMap`, not both.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub architectures: Vec<String>,
    /// Each architecture with its sub-architectures; the native one's entry gives the
    /// resolved architectures.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub arch_map: Vec<ArchMap>,
    /// Filter flags (`SECCOMP_FILTER_FLAG_LOG`, …), passed on.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub flags: Vec<LinuxSeccompFilterFlag>,
    /// The seccomp agent's socket for `SCMP_ACT_NOTIFY`, passed on (we cannot notify).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_path: Option<PathBuf>,
    /// Opaque data for the seccomp agent, passed on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_metadata: Option<String>,
    /// The syscall entries, in order.
    #[serde(default, deserialize_with = "nullable")]
    pub syscalls: Vec<Syscall>,
}

/// An `archMap` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMap {
    /// The architecture, e.g. `SCMP_ARCH_X86_64`.
    pub architecture: String,
    /// Its sub-architectures, e.g. `SCMP_ARCH_X86` and `SCMP_ARCH_X32`.
    #[serde(default, deserialize_with = "nullable")]
    pub sub_architectures: Vec<String>,
}

/// A syscall entry: names, action, args, and the conditions under which it applies.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Syscall {
    /// The syscalls' names.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub names: Vec<String>,
    /// The single name older profiles use instead of `names`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// What to do when the entry matches.
    pub action: LinuxSeccompAction,
    /// The errno of `SCMP_ACT_ERRNO` (data of `SCMP_ACT_TRACE`); EPERM when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    /// Conditions on the arguments (see the module documentation for how they combine).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub args: Vec<Arg>,
    /// A comment, ignored.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
    /// The entry applies only if all of these hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub includes: Option<Condition>,
    /// The entry does not apply if any of these holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excludes: Option<Condition>,
}

/// A condition on one syscall argument.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    /// The argument's index, 0 to 5.
    pub index: usize,
    /// The value compared with, or the mask of `SCMP_CMP_MASKED_EQ`.
    #[serde(default)]
    pub value: u64,
    /// The value the masked argument must equal, for `SCMP_CMP_MASKED_EQ`.
    #[serde(default)]
    pub value_two: u64,
    /// The comparison.
    pub op: LinuxSeccompOperator,
}

/// The `includes`/`excludes` of a syscall entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Capabilities (`CAP_SYS_ADMIN`); includes: all in the bounding set; excludes: any.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub caps: Vec<String>,
    /// Architectures in Go's naming (`amd64`, `x86`, `x32`, `arm64`, `arm`, `s390x`, …),
    /// compared with the native one.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub arches: Vec<String>,
    /// A kernel version; includes: the running kernel is at least this; excludes: it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_kernel: Option<KernelVersion>,
}

/// A kernel version as docker's profiles give it, `"<kernel>.<major>"` (e.g. `"4.8"`); the
/// running kernel's minor version and suffix are ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KernelVersion {
    /// The kernel version, the 4 of 4.8.
    pub kernel: u32,
    /// The major revision, the 8 of 4.8.
    pub major: u32,
}

impl KernelVersion {
    /// Parses docker's `"<kernel>.<major>"`; `""` is 0.0, as in Go (which then matches every
    /// kernel).
    fn parse(text: &str) -> std::result::Result<Self, String> {
        let bad = |why: &str| {
            format!("invalid kernel version {text:?}, expected \"<kernel>.<major>\"{why}")
        };
        if text.is_empty() {
            return Ok(Self::default());
        }
        let (kernel, major) = text.split_once('.').ok_or_else(|| bad(""))?;
        let number = |part: &str| {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(""));
            }
            part.parse::<u8>().map(u32::from).map_err(|_| bad(""))
        };
        let version = Self {
            kernel: number(kernel)?,
            major: number(major)?,
        };
        if version == Self::default() {
            return Err(bad(": version cannot be 0.0"));
        }
        Ok(version)
    }

    /// The running kernel's version, from `uname`.
    pub fn running() -> Result<Self> {
        let uname = rustix::system::uname();
        let release = uname.release().to_string_lossy();
        Self::from_release(&release).ok_or_else(|| {
            invalid(format!(
                "seccomp: cannot parse the kernel release {release:?}"
            ))
        })
    }

    /// `"6.18.44-foo"` → 6.18, `"3.12-1-amd64"` → 3.12 (Go's `%d.%d`).
    fn from_release(release: &str) -> Option<Self> {
        let (kernel, rest) = release.split_once('.')?;
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        Some(Self {
            kernel: kernel.parse().ok()?,
            major: rest.get(..digits)?.parse().ok()?,
        })
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.kernel, self.major)
    }
}

impl Serialize for KernelVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KernelVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `null` as the default value, as Go decodes `null` into a nil slice.
fn nullable<'de, D, T>(deserializer: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// `defaultAction`: `""` or `null` is no action (Go's zero value).
fn default_action<'de, D>(
    deserializer: D,
) -> std::result::Result<Option<LinuxSeccompAction>, D::Error>
where
    D: Deserializer<'de>,
{
    match Option::<String>::deserialize(deserializer)?.as_deref() {
        None | Some("") => Ok(None),
        Some(name) => LinuxSeccompAction::from_str(name)
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("unknown seccomp action {name:?}"))),
    }
}

impl Profile {
    /// docker's default profile (docker 25 and later), embedded in the binary.
    pub fn docker_default() -> Profile {
        // The embedded profile is part of the build; a unit test parses it.
        serde_json::from_str(DOCKER_DEFAULT).expect("the embedded seccomp profile is valid")
    }

    /// Parses a profile in docker's JSON format (`--security-opt seccomp=PATH`); `path` names
    /// the file in errors. Also refuses what could never be installed (`SCMP_ACT_NOTIFY`) or
    /// resolved (both `name` and `names`, both `architectures` and `archMap`).
    pub fn from_json(bytes: &[u8], path: &Path) -> Result<Profile> {
        let profile: Profile = serde_json::from_slice(bytes)
            .map_err(|e| invalid(format!("seccomp profile {}: {e}", path.display())))?;
        let notify = profile.default_action == Some(LinuxSeccompAction::ScmpActNotify)
            || profile
                .syscalls
                .iter()
                .any(|s| s.action == LinuxSeccompAction::ScmpActNotify);
        let check = if notify {
            Err("SCMP_ACT_NOTIFY is not supported".to_string())
        } else {
            profile.check()
        };
        check.map_err(|why| invalid(format!("seccomp profile {}: {why}", path.display())))?;
        Ok(profile)
    }

    /// Whether docker runs this profile as no filter at all: no default action and no
    /// syscalls (`{}`). [`Profile::resolve`] refuses such a profile.
    pub fn is_unconfined(&self) -> bool {
        self.default_action.is_none() && self.syscalls.is_empty()
    }

    /// The structural checks moby makes while resolving.
    fn check(&self) -> std::result::Result<(), String> {
        if !self.architectures.is_empty() && !self.arch_map.is_empty() {
            return Err(
                "both 'architectures' and 'archMap' are specified, use either 'architectures' or 'archMap'"
                    .into(),
            );
        }
        if let Some(call) = self
            .syscalls
            .iter()
            .find(|s| !s.name.is_empty() && !s.names.is_empty())
        {
            return Err(format!(
                "both 'name' and 'names' are specified (name {:?}), use either 'name' or 'names'",
                call.name
            ));
        }
        Ok(())
    }

    /// Resolves the profile as docker (moby) does for a container whose bounding set is
    /// `bounding_caps` (`CAP_SYS_ADMIN` or `SYS_ADMIN`, any case): architectures are the
    /// native one and its `subArchitectures` from `archMap` (or `architectures` as given), and
    /// an entry is kept only if its `includes` all hold and none of its `excludes` does —
    /// capabilities against the bounding set, `arches` against the native architecture in
    /// Go's naming (`amd64`, `arm64`, …), `minKernel` against the running kernel.
    pub fn resolve(&self, bounding_caps: &[String]) -> Result<LinuxSeccomp> {
        self.resolve_with(
            bounding_caps,
            NativeArch::current(),
            &KernelVersion::running,
        )
    }

    fn resolve_with(
        &self,
        bounding_caps: &[String],
        native: Option<NativeArch>,
        kernel: &dyn Fn() -> Result<KernelVersion>,
    ) -> Result<LinuxSeccomp> {
        self.check()
            .map_err(|why| invalid(format!("seccomp profile: {why}")))?;
        let Some(default_action) = self.default_action else {
            return Err(invalid(
                "seccomp profile: no defaultAction (docker runs a profile with neither defaultAction nor syscalls unconfined)",
            ));
        };
        let mut out = LinuxSeccomp::default();
        out.set_default_action(default_action);
        out.set_default_errno_ret(self.default_errno_ret);

        let names: Vec<&str> = if !self.architectures.is_empty() {
            self.architectures.iter().map(String::as_str).collect()
        } else {
            native
                .and_then(|n| self.arch_map.iter().find(|a| a.architecture == n.scmp))
                .map(|a| {
                    std::iter::once(a.architecture.as_str())
                        .chain(a.sub_architectures.iter().map(String::as_str))
                        .collect()
                })
                .unwrap_or_default()
        };
        let arches = names
            .into_iter()
            .map(|name| {
                Arch::from_str(name)
                    .map_err(|_| invalid(format!("seccomp profile: unknown architecture {name:?}")))
            })
            .collect::<Result<Vec<_>>>()?;
        if !arches.is_empty() {
            out.set_architectures(Some(arches));
        }
        if !self.flags.is_empty() {
            out.set_flags(Some(self.flags.clone()));
        }
        out.set_listener_path(self.listener_path.clone());
        out.set_listener_metadata(self.listener_metadata.clone());

        let caps: Vec<String> = bounding_caps.iter().map(|c| cap_key(c)).collect();
        let has_cap = |cap: &String| caps.contains(&cap_key(cap));
        let arch = native.map_or("", |n| n.docker);
        let arch_in = |arches: &[String]| arches.iter().any(|a| a == arch);
        let mut running = None;
        let mut kernel_at_least = |min: KernelVersion| -> Result<bool> {
            let running = match running {
                Some(version) => version,
                None => *running.insert(kernel()?),
            };
            Ok(running >= min)
        };

        let mut syscalls = Vec::new();
        'entries: for call in &self.syscalls {
            if let Some(ex) = &call.excludes {
                if arch_in(&ex.arches) || ex.caps.iter().any(has_cap) {
                    continue;
                }
                if let Some(min) = ex.min_kernel
                    && kernel_at_least(min)?
                {
                    continue;
                }
            }
            if let Some(inc) = &call.includes {
                if !inc.arches.is_empty() && !arch_in(&inc.arches) {
                    continue;
                }
                for cap in &inc.caps {
                    if !has_cap(cap) {
                        continue 'entries;
                    }
                }
                if let Some(min) = inc.min_kernel
                    && !kernel_at_least(min)?
                {
                    continue;
                }
            }
            let mut syscall = LinuxSyscall::default();
            syscall.set_names(if call.name.is_empty() {
                call.names.clone()
            } else {
                vec![call.name.clone()]
            });
            syscall.set_action(call.action);
            syscall.set_errno_ret(call.errno_ret);
            if !call.args.is_empty() {
                let args = call
                    .args
                    .iter()
                    .map(|a| {
                        LinuxSeccompArgBuilder::default()
                            .index(a.index)
                            .value(a.value)
                            .value_two(a.value_two)
                            .op(a.op)
                            .build()
                            .map_err(|e| invalid(format!("seccomp profile: {e}")))
                    })
                    .collect::<Result<Vec<_>>>()?;
                syscall.set_args(Some(args));
            }
            syscalls.push(syscall);
        }
        out.set_syscalls(Some(syscalls));
        Ok(out)
    }
}

/// `CAP_SYS_ADMIN`, `SYS_ADMIN`, `cap_sys_admin` → `SYS_ADMIN`.
fn cap_key(cap: &str) -> String {
    let upper = cap.trim().to_ascii_uppercase();
    match upper.strip_prefix("CAP_") {
        Some(rest) => rest.to_string(),
        None => upper,
    }
}

/// The native architecture in docker's two namings.
#[derive(Clone, Copy, Debug)]
struct NativeArch {
    /// Go's, as `includes.arches` uses it: `amd64`, `arm64`, ….
    docker: &'static str,
    /// libseccomp's, as `archMap` uses it: `SCMP_ARCH_X86_64`, ….
    scmp: &'static str,
}

impl NativeArch {
    fn current() -> Option<Self> {
        let little = cfg!(target_endian = "little");
        let (docker, scmp) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", "SCMP_ARCH_X86_64"),
            "x86" => ("x86", "SCMP_ARCH_X86"),
            "aarch64" => ("arm64", "SCMP_ARCH_AARCH64"),
            "arm" => ("arm", "SCMP_ARCH_ARM"),
            "riscv64" => ("riscv64", "SCMP_ARCH_RISCV64"),
            "s390x" => ("s390x", "SCMP_ARCH_S390X"),
            "powerpc64" if little => ("ppc64le", "SCMP_ARCH_PPC64LE"),
            "powerpc64" => ("ppc64", "SCMP_ARCH_PPC64"),
            "powerpc" => ("ppc", "SCMP_ARCH_PPC"),
            "loongarch64" => ("loong64", "SCMP_ARCH_LOONGARCH64"),
            "mips64" if little => ("mipsel64", "SCMP_ARCH_MIPSEL64"),
            "mips64" => ("mips64", "SCMP_ARCH_MIPS64"),
            "mips" if little => ("mipsel", "SCMP_ARCH_MIPSEL"),
            "mips" => ("mips", "SCMP_ARCH_MIPS"),
            _ => return None,
        };
        Some(Self { docker, scmp })
    }
}

// ---------------------------------------------------------------------------------------------
// OCI LinuxSeccomp → BPF
// ---------------------------------------------------------------------------------------------

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
const KNOWN_FLAGS: u32 = FLAG_TSYNC | FLAG_LOG | FLAG_SPEC_ALLOW;

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

/// The header of [`Filter::to_bytes`].
const MAGIC: &[u8; 8] = b"imgscmp1";

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

    /// How many BPF programs [`install`](Filter::install) loads.
    pub fn program_count(&self) -> usize {
        self.programs.len()
    }

    /// The BPF instructions of each program, in install order.
    pub fn program_lengths(&self) -> Vec<usize> {
        self.programs.iter().map(Vec::len).collect()
    }

    /// The filter as bytes, for a parent that compiles once and hands init the result (on
    /// this machine: the bytes carry the architecture, and nothing else checks them — pass
    /// them only over a channel the container cannot write).
    pub fn to_bytes(&self) -> Vec<u8> {
        let insns: usize = self.programs.iter().map(Vec::len).sum();
        let mut out = Vec::with_capacity(MAGIC.len() + 12 + 4 * self.programs.len() + 8 * insns);
        out.extend_from_slice(MAGIC);
        let audit_arch = native_target().map_or(0, |(_, a)| a);
        out.extend_from_slice(&audit_arch.to_le_bytes());
        out.extend_from_slice(&self.flags.to_le_bytes());
        for value in std::iter::once(self.programs.len()).chain(self.programs.iter().map(Vec::len))
        {
            // At most MAX_INSNS, and a handful of programs.
            out.extend_from_slice(&(value as u32).to_le_bytes());
        }
        for insn in self.programs.iter().flatten() {
            out.extend_from_slice(&insn.code.to_le_bytes());
            out.extend_from_slice(&[insn.jt, insn.jf]);
            out.extend_from_slice(&insn.k.to_le_bytes());
        }
        out
    }

    /// Reads [`Filter::to_bytes`]'s output back, checking its framing and architecture.
    pub fn from_bytes(bytes: &[u8]) -> Result<Filter> {
        let corrupt = |why: &str| invalid(format!("seccomp: compiled filter is corrupt: {why}"));
        let mut rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| corrupt("bad header"))?;
        let mut word = || -> Result<u32> {
            let (head, tail) = rest
                .split_first_chunk::<4>()
                .ok_or_else(|| corrupt("truncated"))?;
            rest = tail;
            Ok(u32::from_le_bytes(*head))
        };
        let (_, audit_arch) = native_target()?;
        if word()? != audit_arch {
            return Err(corrupt("compiled for another architecture"));
        }
        let flags = word()?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(corrupt("unknown flags"));
        }
        let count = word()? as usize;
        if count == 0 || count > 64 {
            return Err(corrupt("bad program count"));
        }
        let lengths = (0..count)
            .map(|_| match word()? as usize {
                len @ 1..=MAX_INSNS => Ok(len),
                _ => Err(corrupt("bad program length")),
            })
            .collect::<Result<Vec<_>>>()?;
        if rest.len() != lengths.iter().sum::<usize>() * 8 {
            return Err(corrupt("wrong size"));
        }
        let mut insns = rest.chunks_exact(8).map(|c| libc::sock_filter {
            code: u16::from_le_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        });
        let programs = lengths
            .iter()
            .map(|&len| insns.by_ref().take(len).collect())
            .collect();
        Ok(Filter { programs, flags })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docker's default capabilities.
    fn docker_caps() -> Vec<String> {
        [
            "CHOWN",
            "DAC_OVERRIDE",
            "FSETID",
            "FOWNER",
            "MKNOD",
            "NET_RAW",
            "SETGID",
            "SETUID",
            "SETFCAP",
            "SETPCAP",
            "NET_BIND_SERVICE",
            "SYS_CHROOT",
            "KILL",
            "AUDIT_WRITE",
        ]
        .into_iter()
        .map(String::from)
        .collect()
    }

    fn with(mut caps: Vec<String>, cap: &str) -> Vec<String> {
        caps.push(cap.to_string());
        caps
    }

    const AMD64: NativeArch = NativeArch {
        docker: "amd64",
        scmp: "SCMP_ARCH_X86_64",
    };
    const ARM64: NativeArch = NativeArch {
        docker: "arm64",
        scmp: "SCMP_ARCH_AARCH64",
    };
    const S390X: NativeArch = NativeArch {
        docker: "s390x",
        scmp: "SCMP_ARCH_S390X",
    };

    fn kernel(kernel: u32, major: u32) -> impl Fn() -> Result<KernelVersion> {
        move || Ok(KernelVersion { kernel, major })
    }

    fn resolve(profile: &Profile, caps: &[String], arch: NativeArch) -> LinuxSeccomp {
        profile
            .resolve_with(caps, Some(arch), &kernel(6, 18))
            .expect("resolves")
    }

    /// The entries naming `name`: (action, errno, args).
    fn entries(
        seccomp: &LinuxSeccomp,
        name: &str,
    ) -> Vec<(LinuxSeccompAction, Option<u32>, Vec<LinuxSeccompArg>)> {
        seccomp
            .syscalls()
            .iter()
            .flatten()
            .filter(|s| s.names().iter().any(|n| n == name))
            .map(|s| {
                (
                    s.action(),
                    s.errno_ret(),
                    s.args().clone().unwrap_or_default(),
                )
            })
            .collect()
    }

    fn allowed(seccomp: &LinuxSeccomp, name: &str) -> bool {
        entries(seccomp, name)
            .iter()
            .any(|(a, _, args)| *a == LinuxSeccompAction::ScmpActAllow && args.is_empty())
    }

    #[test]
    fn default_profile_parses_and_blocks_io_uring() {
        let profile = Profile::docker_default();
        assert_eq!(
            profile.default_action,
            Some(LinuxSeccompAction::ScmpActErrno)
        );
        assert_eq!(profile.default_errno_ret, Some(1));
        assert!(profile.syscalls.len() > 20);
        let named = |name: &str| {
            profile
                .syscalls
                .iter()
                .any(|s| s.names.iter().any(|n| n == name))
        };
        for name in [
            "read",
            "clone3",
            "socket",
            "personality",
            "mseal",
            "removexattrat",
        ] {
            assert!(named(name), "{name}");
        }
        for name in [
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
            "keyctl",
            "add_key",
        ] {
            assert!(
                !named(name),
                "{name} must not be in docker's default profile"
            );
        }
        for call in &profile.syscalls {
            let mut sorted = call.names.clone();
            sorted.sort();
            assert_eq!(sorted, call.names, "names sorted");
        }
    }

    #[test]
    fn default_caps_resolution() {
        let seccomp = resolve(&Profile::docker_default(), &docker_caps(), AMD64);
        assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(seccomp.default_errno_ret(), Some(1));
        assert_eq!(
            seccomp.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
        for name in [
            "read",
            "execve",
            "getpid",
            "arch_prctl",
            "modify_ldt",
            "chroot",
            "ptrace",
        ] {
            assert!(allowed(&seccomp, name), "{name}");
        }
        for name in [
            "mount",
            "unshare",
            "setns",
            "bpf",
            "perf_event_open",
            "keyctl",
            "io_uring_setup",
            "reboot",
            "open_by_handle_at",
            "set_tls",
            "riscv_flush_icache",
        ] {
            assert!(entries(&seccomp, name).is_empty(), "{name}");
        }
        assert_eq!(
            entries(&seccomp, "clone3"),
            vec![(LinuxSeccompAction::ScmpActErrno, Some(38), vec![])]
        );
        let clone = entries(&seccomp, "clone");
        assert_eq!(clone.len(), 1);
        let arg = clone[0].2[0];
        assert_eq!(
            (arg.index(), arg.value(), arg.op()),
            (0, 0x7E02_0000, LinuxSeccompOperator::ScmpCmpMaskedEq)
        );
        assert_eq!(entries(&seccomp, "socket").len(), 3);
        // What runc reads from config.json.
        let json = serde_json::to_string(&seccomp).expect("serialises");
        for text in [
            r#""defaultAction":"SCMP_ACT_ERRNO""#,
            r#""defaultErrnoRet":1"#,
            r#""architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"]"#,
            r#""op":"SCMP_CMP_MASKED_EQ""#,
            r#""errnoRet":38"#,
        ] {
            assert!(json.contains(text), "{text} in {json}");
        }
    }

    #[test]
    fn sys_admin_allows_mount_unshare_and_clone3() {
        for cap in ["SYS_ADMIN", "CAP_SYS_ADMIN", "cap_sys_admin"] {
            let seccomp = resolve(&Profile::docker_default(), &with(docker_caps(), cap), AMD64);
            for name in [
                "mount",
                "unshare",
                "clone",
                "clone3",
                "setns",
                "bpf",
                "perf_event_open",
            ] {
                assert!(allowed(&seccomp, name), "{name} with {cap}");
            }
            assert_eq!(
                entries(&seccomp, "clone3").len(),
                1,
                "no ENOSYS entry with {cap}"
            );
            assert_eq!(
                entries(&seccomp, "clone").len(),
                1,
                "no masked clone with {cap}"
            );
        }
        let seccomp = resolve(
            &Profile::docker_default(),
            &with(docker_caps(), "SYS_PTRACE"),
            AMD64,
        );
        assert!(allowed(&seccomp, "kcmp"));
        assert!(!allowed(&seccomp, "mount"));
    }

    #[test]
    fn arch_only_entries() {
        let profile = Profile::docker_default();
        let arm = resolve(&profile, &docker_caps(), ARM64);
        assert_eq!(
            arm.architectures().as_deref(),
            Some(&[Arch::ScmpArchAarch64, Arch::ScmpArchArm][..])
        );
        assert!(allowed(&arm, "set_tls") && allowed(&arm, "cacheflush"));
        assert!(!allowed(&arm, "arch_prctl") && !allowed(&arm, "modify_ldt"));

        let s390 = resolve(&profile, &docker_caps(), S390X);
        let clone = entries(&s390, "clone");
        assert_eq!(clone.len(), 1, "{clone:?}");
        assert_eq!(clone[0].2[0].index(), 1, "s390 passes the flags second");
        assert!(allowed(&s390, "s390_runtime_instr"));

        let none = profile
            .resolve_with(&docker_caps(), None, &kernel(6, 18))
            .expect("resolves");
        assert_eq!(none.architectures(), &None);
        assert!(!allowed(&none, "arch_prctl"));
    }

    #[test]
    fn min_kernel() {
        let profile = Profile::from_json(
            br#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                {"names": ["a"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
                {"names": ["b"], "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "5.10"}},
                {"names": ["c"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": null}}
            ]}"#,
            Path::new("k.json"),
        )
        .expect("parses");
        let names = |k: KernelVersion| -> Vec<String> {
            profile
                .resolve_with(&[], Some(AMD64), &move || Ok(k))
                .expect("resolves")
                .syscalls()
                .iter()
                .flatten()
                .flat_map(|s| s.names().clone())
                .collect()
        };
        let v = |kernel, major| KernelVersion { kernel, major };
        assert_eq!(names(v(4, 7)), ["b", "c"]);
        assert_eq!(names(v(4, 8)), ["a", "b", "c"]);
        assert_eq!(names(v(5, 10)), ["a", "c"]);
        assert_eq!(names(v(10, 0)), ["a", "c"]);
        assert_eq!(
            KernelVersion::from_release("6.18.44-fc-v657"),
            Some(v(6, 18))
        );
        assert_eq!(KernelVersion::from_release("3.12-1-amd64"), Some(v(3, 12)));
        assert!(KernelVersion::running().is_ok());
        for bad in ["4", "4.8.1", "0.0", "256.1", "a.b", "4.-1"] {
            let json = format!(
                r#"{{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{{"names":["x"],"action":"SCMP_ACT_ERRNO","includes":{{"minKernel":"{bad}"}}}}]}}"#
            );
            let err = Profile::from_json(json.as_bytes(), Path::new("k.json")).expect_err(bad);
            assert!(err.to_string().contains("invalid kernel version"), "{err}");
        }
    }

    #[test]
    fn older_formats() {
        let profile = Profile::from_json(
            br#"{"defaultAction": "SCMP_ACT_KILL", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
                "syscalls": [{"name": "read", "action": "SCMP_ACT_ALLOW", "args": null, "comment": "",
                              "includes": {}, "excludes": {"caps": null, "minKernel": null}}]}"#,
            Path::new("old.json"),
        )
        .expect("parses");
        let seccomp = resolve(&profile, &[], ARM64);
        assert_eq!(
            seccomp.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86][..])
        );
        assert!(allowed(&seccomp, "read"));

        let both = Profile::from_json(
            br#"{"defaultAction": "SCMP_ACT_KILL", "syscalls": [{"name": "read", "names": ["write"], "action": "SCMP_ACT_ALLOW"}]}"#,
            Path::new("/etc/both.json"),
        )
        .expect_err("name and names");
        assert!(both.to_string().contains("/etc/both.json"), "{both}");
        assert!(both.to_string().contains("'name' and 'names'"), "{both}");
        let both = Profile::from_json(
            br#"{"defaultAction": "SCMP_ACT_KILL", "architectures": ["SCMP_ARCH_X86_64"],
                "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": null}]}"#,
            Path::new("arch.json"),
        )
        .expect_err("architectures and archMap");
        assert!(
            both.to_string().contains("'architectures' and 'archMap'"),
            "{both}"
        );
    }

    #[test]
    fn parse_errors_name_the_file() {
        let path = Path::new("/srv/profiles/my profile.json");
        for (json, what) in [
            (&b"{"[..], "EOF"),
            (br#"{"defaultAction": "SCMP_ACT_PERHAPS"}"#, "unknown seccomp action"),
            (br#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["x"], "action": "NOPE"}]}"#, "unknown variant"),
            (br#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["x"]}]}"#, "missing field `action`"),
            (br#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_SOMETIMES"}]}]}"#, "unknown variant"),
            (br#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#, "SCMP_ACT_NOTIFY is not supported"),
            (br#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_NOTIFY"}]}"#, "SCMP_ACT_NOTIFY"),
        ] {
            let err = Profile::from_json(json, path).expect_err(what).to_string();
            assert!(err.starts_with("seccomp profile /srv/profiles/my profile.json: "), "{err}");
            assert!(err.contains(what), "{err} should say {what}");
        }
    }

    #[test]
    fn unconfined_and_missing_default() {
        let empty = Profile::from_json(b"{}", Path::new("e.json")).expect("parses");
        assert!(empty.is_unconfined());
        assert!(!Profile::docker_default().is_unconfined());
        let err = empty
            .resolve(&[])
            .expect_err("no default action")
            .to_string();
        assert!(err.contains("no defaultAction"), "{err}");
        let blank =
            Profile::from_json(br#"{"defaultAction": ""}"#, Path::new("e.json")).expect("parses");
        assert!(blank.is_unconfined());
    }

    #[test]
    fn serialises_back_to_dockers_format() {
        let profile = Profile::docker_default();
        let json = serde_json::to_string(&profile).expect("serialises");
        assert!(json.contains(r#""minKernel":"4.8""#), "{json}");
        let again = Profile::from_json(json.as_bytes(), Path::new("x.json")).expect("parses");
        assert_eq!(again, profile);
    }

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
    mod bpf {
        use super::*;

        fn seccomp(json: &str) -> LinuxSeccomp {
            Profile::from_json(json.as_bytes(), Path::new("t.json"))
                .expect("parses")
                .resolve(&[])
                .expect("resolves")
        }

        #[test]
        fn default_profile_compiles_to_two_filters() {
            let seccomp = resolve(&Profile::docker_default(), &docker_caps(), AMD64);
            let filter = compile(&seccomp).expect("compiles");
            // The main filter, and ERRNO(ENOSYS) for clone3.
            assert_eq!(filter.program_count(), 2, "{filter:?}");
            let lengths = filter.program_lengths();
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

            let admin = resolve(
                &Profile::docker_default(),
                &with(docker_caps(), "SYS_ADMIN"),
                AMD64,
            );
            assert_eq!(compile(&admin).expect("compiles").program_count(), 1);
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
            assert_eq!(filter.program_count(), 3, "{filter:?}");
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

        #[test]
        fn bytes_round_trip() {
            let seccomp = resolve(&Profile::docker_default(), &docker_caps(), AMD64);
            let filter = compile(&seccomp).expect("compiles");
            let bytes = filter.to_bytes();
            assert_eq!(Filter::from_bytes(&bytes).expect("reads"), filter);
            assert!(Filter::from_bytes(&bytes[..bytes.len() - 1]).is_err());
            assert!(Filter::from_bytes(&bytes[1..]).is_err());
            let mut longer = bytes.clone();
            longer.extend_from_slice(&[0; 8]);
            assert!(Filter::from_bytes(&longer).is_err());
            let mut arch = bytes;
            arch[8] ^= 1;
            let err = Filter::from_bytes(&arch)
                .expect_err("other arch")
                .to_string();
            assert!(err.contains("another architecture"), "{err}");
        }
    }
}
