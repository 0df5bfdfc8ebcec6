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

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::{Error, Result};

mod v1;
mod v2;

pub use v1::apply_v1;
pub use v2::apply_v2;

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
///
/// ```
/// let rules = img_run::devices::default_rules();
/// assert!(!rules[0].allow()); // everything denied first, then the list allowed
/// assert_eq!(rules.len(), 11);
/// ```
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

/// Rule lists the tests of `v1` and `v2` share.
#[cfg(test)]
mod testing {
    use super::*;

    /// docker's default rules, then `extra`.
    pub(super) fn with(extra: &[LinuxDeviceCgroup]) -> Vec<LinuxDeviceCgroup> {
        let mut rules = default_rules();
        rules.extend_from_slice(extra);
        rules
    }

    /// docker's `--privileged`: `a *:* rwm`.
    pub(super) fn privileged() -> Vec<LinuxDeviceCgroup> {
        vec![rule(true, LinuxDeviceType::A, None, None, "rwm")]
    }

    /// Rules that both [`apply_v1`] and [`apply_v2`] must refuse.
    pub(super) fn invalid_rules() -> [LinuxDeviceCgroup; 6] {
        [
            rule(true, LinuxDeviceType::U, None, None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(-2), None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(1 << 32), None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(u32::MAX.into()), None, "rwm"),
            rule(true, LinuxDeviceType::C, None, None, "rx"),
            rule(true, LinuxDeviceType::C, None, None, ""),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn representatives_are_the_named_numbers_and_a_gap() {
        // The devices to compare on: every number named, and one not named (the first gap).
        let parsed = parse(&default_rules()).expect("valid");
        let points = representatives(&parsed);
        assert_eq!(points.len(), 2 * 4 * 8);
        assert!(points.contains(&(BLOCK, 0, 1)));
        assert!(points.contains(&(CHAR, 136, 9)));
    }
}
