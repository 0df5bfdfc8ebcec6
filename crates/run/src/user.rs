//! `--user` and the image's `User`: a name or number, resolved with the image's own
//! `/etc/passwd` and `/etc/group` as docker does.

use std::path::Path;

use crate::{Error, Result};

/// A resolved user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (from `/etc/group` membership).
    pub groups: Vec<u32>,
    /// Home directory, for `HOME`.
    pub home: String,
}

/// Resolve `spec` (`name`, `uid`, `name:group`, `uid:gid`; empty means root) against the
/// files under `root`. They are read inside `root` (`RESOLVE_IN_ROOT`): an image whose
/// `/etc/passwd` is a symlink to a host file gets its own file or none, never the host's.
pub fn resolve(root: &Path, spec: &str) -> Result<User> {
    let passwd = read_in_root(root, "etc/passwd")?;
    let group = read_in_root(root, "etc/group")?;
    resolve_in(&passwd, &group, spec)
}

/// The text of `rel` inside `root`, symlinks resolved as if `root` were `/`; empty when it
/// does not exist.
fn read_in_root(root: &Path, rel: &str) -> Result<String> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let what = || format!("{} in {}", rel, root.display());
    let dir = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(crate::error::errno(root.display()))?;
    let file = match rustix::fs::openat2(
        &dir,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => std::fs::File::from(fd),
        Err(rustix::io::Errno::NOENT) => return Ok(String::new()),
        Err(e) => return Err(crate::error::errno(what())(e)),
    };
    std::io::read_to_string(file).map_err(crate::error::sys(what()))
}

/// Resolve against the text of `passwd` and `group` files.
pub fn resolve_in(passwd: &str, group: &str, spec: &str) -> Result<User> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let entries: Vec<Vec<&str>> = passwd
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect())
        .filter(|f: &Vec<&str>| f.len() >= 7)
        .collect();
    let by_name = entries.iter().find(|f| f[0] == user_part);
    let (uid, mut gid, name, home) = match (user_part.parse::<u32>(), by_name) {
        (_, Some(f)) => (
            f[2].parse().unwrap_or(0),
            f[3].parse().unwrap_or(0),
            Some(f[0].to_string()),
            f[5].to_string(),
        ),
        (Ok(uid), None) => match entries.iter().find(|f| f[2] == user_part) {
            Some(f) => (
                uid,
                f[3].parse().unwrap_or(0),
                Some(f[0].to_string()),
                f[5].to_string(),
            ),
            None => (uid, 0, None, "/".to_string()),
        },
        (Err(_), None) => {
            return Err(Error::NoUser {
                user: spec.to_string(),
            });
        }
    };
    let groups_file: Vec<Vec<&str>> = group
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect())
        .filter(|f: &Vec<&str>| f.len() >= 4)
        .collect();
    if let Some(g) = group_part {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups_file
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    Error::Config(format!(
                        "unable to find group {g}: no matching entries in group file"
                    ))
                })?,
        };
    }
    let mut groups: Vec<u32> = match &name {
        Some(n) => groups_file
            .iter()
            .filter(|f| f[3].split(',').any(|m| m == n))
            .filter_map(|f| f[2].parse().ok())
            .collect(),
        None => Vec::new(),
    };
    groups.retain(|&g| g != gid);
    groups.sort_unstable();
    groups.dedup();
    Ok(User {
        uid,
        gid,
        groups,
        home: if home.is_empty() { "/".into() } else { home },
    })
}

/// The user a container's process runs as: the annotation `img run` leaves (`-u`, or the
/// image's `User`), resolved against the container's own passwd and group (we are inside its
/// root by then), else the spec's numeric user. `given` (exec's `-u`) wins over both.
pub(crate) fn of_spec(
    spec: &oci_spec::runtime::Spec,
    process: &oci_spec::runtime::Process,
    given: Option<&str>,
) -> Result<User> {
    let named = given.map(str::to_string).or_else(|| {
        spec.annotations()
            .as_ref()
            .and_then(|a| a.get(crate::spec::USER_ANNOTATION))
            .cloned()
    });
    match named {
        Some(u) => resolve(Path::new("/"), &u),
        None => Ok(User {
            uid: process.user().uid(),
            gid: process.user().gid(),
            groups: process.user().additional_gids().clone().unwrap_or_default(),
            home: "/".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nredis:x:999:998::/data:/bin/false\nnobody:x:65534:65534::/:/bin/false\n";
    const GROUP: &str = "root:x:0:\nredis:x:998:\nwheel:x:10:redis,other\nnogroup:x:65534:\n";

    #[test]
    fn resolves_like_docker() {
        let u = |s| resolve_in(PASSWD, GROUP, s).unwrap();
        assert_eq!(
            u(""),
            User {
                uid: 0,
                gid: 0,
                groups: vec![],
                home: "/root".into()
            }
        );
        assert_eq!(
            u("redis"),
            User {
                uid: 999,
                gid: 998,
                groups: vec![10],
                home: "/data".into()
            }
        );
        assert_eq!(u("999").gid, 998);
        assert_eq!(
            u("1000:1000"),
            User {
                uid: 1000,
                gid: 1000,
                groups: vec![],
                home: "/".into()
            }
        );
        assert_eq!(u("redis:wheel").gid, 10);
        assert_eq!(u("nobody:0").gid, 0);
        let err = resolve_in(PASSWD, GROUP, "ghost").unwrap_err().to_string();
        assert!(err.contains("ghost"), "{err}");
        assert!(resolve_in(PASSWD, GROUP, "redis:nogrp").is_err());
    }
}
