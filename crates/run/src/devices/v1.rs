//! cgroup v1: the rules as writes to the `devices` controller's `devices.deny` and
//! `devices.allow` ([`apply_v1`]), checked first against a model of the kernel's exception list
//! (security/device_cgroup.c) and afterwards against `devices.list`.

use std::path::Path;

use oci_spec::runtime::LinuxDeviceCgroup;

use super::{BLOCK, CHAR, REQUESTS, Rule, access_str, allowed, describe, parse, representatives};
use crate::error::sys;
use crate::{Error, Result};

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

#[cfg(test)]
mod tests {
    use oci_spec::runtime::LinuxDeviceType;

    use super::*;
    use crate::devices::testing::{invalid_rules, privileged, with};
    use crate::devices::{MKNOD, READ, WRITE, default_rules, rule};

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
    }

    #[test]
    fn invalid_rules_are_refused() {
        for bad in invalid_rules() {
            assert!(v1_writes(std::slice::from_ref(&bad)).is_err(), "{bad}");
        }
    }
}
