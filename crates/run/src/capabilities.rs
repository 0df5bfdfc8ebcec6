//! Capability names, sets, and docker's `--cap-add`/`--cap-drop` arithmetic.

use rustix::thread::{CapabilitySet, CapabilitySets};

use crate::{Error, Result};

/// The capabilities by number, without the `CAP_` prefix (linux/capability.h).
const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// docker's default capability set.
pub const DEFAULT: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// `CAP_NAME` of capability number `bit`.
pub fn name(bit: u32) -> String {
    match NAMES.get(bit as usize) {
        Some(n) => format!("CAP_{n}"),
        None => format!("capability {bit}"),
    }
}

/// The number of a capability named as docker accepts it: `NET_RAW`, `CAP_NET_RAW`, any case.
pub fn number(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    NAMES.iter().position(|n| *n == bare).map(|i| i as u32)
}

/// Whether this process holds capability `bit` (in its permitted set): a container can be
/// given only what img has (root here lacks CAP_SYS_RESOURCE, say).
fn held(bit: u32) -> bool {
    rustix::thread::capabilities(None).is_ok_and(|c| {
        c.permitted
            .contains(CapabilitySet::from_bits_retain(1 << bit))
    })
}

/// Every capability img knows and holds, as `CAP_` names (`--privileged`, `--cap-add ALL`).
pub fn all() -> Vec<String> {
    (0..NAMES.len() as u32)
        .filter(|b| held(*b))
        .map(name)
        .collect()
}

/// docker's `--cap-add`/`--cap-drop` on its default set: `ALL` in `add` starts from every
/// capability (then `drop` applies); `ALL` in `drop` starts from none (then `add` applies);
/// otherwise the defaults less `drop` plus `add`. Unknown names are errors.
///
/// ```
/// use img_run::capabilities::adjust;
/// let caps = adjust(&["net_bind_service".into()], &["ALL".into()]).unwrap();
/// assert_eq!(caps, ["CAP_NET_BIND_SERVICE"]);
/// assert!(adjust(&[], &["CAP_FLY".into()]).is_err());
/// ```
pub fn adjust(add: &[String], drop: &[String]) -> Result<Vec<String>> {
    let canonical = |list: &[String]| -> Result<Vec<String>> {
        list.iter()
            .filter(|c| !c.eq_ignore_ascii_case("ALL"))
            .map(|c| {
                number(c)
                    .map(name)
                    .ok_or_else(|| Error::Config(format!("unknown capability: {c:?}")))
            })
            .collect()
    };
    let has_all = |list: &[String]| list.iter().any(|c| c.eq_ignore_ascii_case("ALL"));
    let (add_names, drop_names) = (canonical(add)?, canonical(drop)?);
    let mut caps: Vec<String> = if has_all(add) {
        all()
    } else if has_all(drop) {
        Vec::new()
    } else {
        DEFAULT.iter().map(|c| c.to_string()).collect()
    };
    if has_all(add) || !has_all(drop) {
        caps.retain(|c| !drop_names.contains(c));
    }
    if !has_all(add) {
        for c in add_names {
            if number(&c).is_some_and(|b| !held(b)) {
                return Err(Error::Config(format!(
                    "--cap-add {c}: img itself does not hold {c} here, so it cannot give it"
                )));
            }
            if !caps.contains(&c) {
                caps.push(c);
            }
        }
    }
    Ok(caps)
}

/// A set of the spec's capability names.
pub fn set_of(caps: Option<&oci_spec::runtime::Capabilities>) -> CapabilitySet {
    let mut set = CapabilitySet::empty();
    for cap in caps.into_iter().flatten() {
        let text = serde_json::to_value(cap)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        if let Some(bit) = number(&text) {
            set |= CapabilitySet::from_bits_retain(1 << bit);
        }
    }
    set
}

/// The effective, permitted and inheritable sets the spec asks for.
pub fn sets_of(caps: &oci_spec::runtime::LinuxCapabilities) -> CapabilitySets {
    CapabilitySets {
        effective: set_of(caps.effective().as_ref()),
        permitted: set_of(caps.permitted().as_ref()),
        inheritable: set_of(caps.inheritable().as_ref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(number("net_raw"), Some(13));
        assert_eq!(number("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(name(40), "CAP_CHECKPOINT_RESTORE");
        assert_eq!(number("CAP_NOPE"), None);
    }

    #[test]
    fn cap_add_and_drop_as_docker() {
        let d = adjust(&[], &[]).unwrap();
        assert_eq!(d.len(), 14);
        let d = adjust(&strings(&["sys_admin"]), &strings(&["NET_RAW"])).unwrap();
        assert!(d.contains(&"CAP_SYS_ADMIN".into()) && !d.contains(&"CAP_NET_RAW".into()));
        assert_eq!(d.len(), 14);
        let d = adjust(&strings(&["NET_BIND_SERVICE"]), &strings(&["ALL"])).unwrap();
        assert_eq!(d, ["CAP_NET_BIND_SERVICE"]);
        let d = adjust(&strings(&["ALL"]), &strings(&["CAP_SYS_ADMIN"])).unwrap();
        assert!(d.len() > 30 && !d.contains(&"CAP_SYS_ADMIN".into()));
        let e = adjust(&strings(&["CAP_FLY"]), &[]).unwrap_err().to_string();
        assert!(e.contains("CAP_FLY"), "{e}");
    }

    #[test]
    fn default_set_is_dockers_bounding_mask() {
        let caps: Vec<String> = DEFAULT.iter().map(|c| c.to_string()).collect();
        let mut bits = 0u64;
        for c in &caps {
            bits |= 1 << number(c).unwrap();
        }
        assert_eq!(bits, 0xa80425fb);
    }
}
