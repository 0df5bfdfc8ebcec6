//! docker's seccomp profile format ([`Profile`]) and its resolution into the OCI
//! [`LinuxSeccomp`] as moby does it: architectures from `archMap`, entries kept or dropped on
//! their capabilities, architectures and minimum kernel ([`KernelVersion`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::invalid;
use crate::error::Result;

/// docker's current default profile (moby's `profiles/seccomp/default.json`, docker 25 and
/// later: io_uring refused), in docker's schema.
const DOCKER_DEFAULT: &str = include_str!("default.json");

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

/// Helpers the tests of this module and of `bpf` share.
#[cfg(test)]
pub(super) mod testing {
    use super::*;

    /// docker's default capabilities.
    pub(in crate::seccomp) fn docker_caps() -> Vec<String> {
        crate::capabilities::DEFAULT.map(String::from).to_vec()
    }

    /// `caps` and `cap`.
    pub(in crate::seccomp) fn with(mut caps: Vec<String>, cap: &str) -> Vec<String> {
        caps.push(cap.to_string());
        caps
    }

    pub(super) const AMD64: NativeArch = NativeArch {
        docker: "amd64",
        scmp: "SCMP_ARCH_X86_64",
    };
    pub(super) const ARM64: NativeArch = NativeArch {
        docker: "arm64",
        scmp: "SCMP_ARCH_AARCH64",
    };
    pub(super) const S390X: NativeArch = NativeArch {
        docker: "s390x",
        scmp: "SCMP_ARCH_S390X",
    };

    /// A fixed running kernel.
    pub(super) fn kernel(kernel: u32, major: u32) -> impl Fn() -> Result<KernelVersion> {
        move || Ok(KernelVersion { kernel, major })
    }

    /// `profile` resolved on `arch` under Linux 6.18, whatever the host.
    pub(super) fn resolve(profile: &Profile, caps: &[String], arch: NativeArch) -> LinuxSeccomp {
        profile
            .resolve_with(caps, Some(arch), &kernel(6, 18))
            .expect("resolves")
    }

    /// [`resolve`] on amd64: what `bpf`'s tests compile.
    pub(in crate::seccomp) fn resolve_amd64(profile: &Profile, caps: &[String]) -> LinuxSeccomp {
        resolve(profile, caps, AMD64)
    }
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::LinuxSeccompArg;

    use super::testing::*;
    use super::*;

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
}
