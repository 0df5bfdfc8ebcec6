//! User namespaces: the subordinate id ranges an account may map (`/etc/subuid` and
//! `/etc/subgid`, read as shadow's `newuidmap` reads them), the mappings a rootless container
//! gets from them, and the changes that make a runtime spec runnable by an unprivileged runc
//! (what `runc spec --rootless` does to its own spec).

use std::path::Path;

use serde::Serialize;
use serde_json::{Value, json};

use crate::{Error, Result};

/// One line of a user namespace's `uid_map` or `gid_map`: `size` ids from `host` appear as
/// ids from `container` inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IdMap {
    /// The first id inside the namespace.
    #[serde(rename = "containerID")]
    pub container: u32,
    /// The first id outside.
    #[serde(rename = "hostID")]
    pub host: u32,
    /// How many.
    pub size: u32,
}

/// The subordinate ranges (`start`, `count`) that `/etc/subuid`-format `text` gives the account
/// called `name` or numbered `id` (both spellings are allowed there), in file order; lines that
/// do not parse are skipped, as `newuidmap` skips them.
///
/// ```
/// use img_run::userns::subordinate_ranges;
/// let text = "alice:100000:65536\n1001:300000:10\nbob:x:1\n";
/// assert_eq!(subordinate_ranges(text, "alice", 1000), vec![(100000, 65536)]);
/// assert_eq!(subordinate_ranges(text, "carol", 1001), vec![(300000, 10)]);
/// assert!(subordinate_ranges(text, "bob", 7).is_empty());
/// ```
pub fn subordinate_ranges(text: &str, name: &str, id: u32) -> Vec<(u32, u32)> {
    let id = id.to_string();
    text.lines()
        .filter_map(|line| {
            let mut fields = line.trim().splitn(3, ':');
            let (who, start, count) = (fields.next()?, fields.next()?, fields.next()?);
            if who != name && who != id {
                return None;
            }
            let count: u32 = count.parse().ok()?;
            Some((start.parse().ok()?, count)).filter(|_| count > 0)
        })
        .collect()
}

/// Whether we run as the host's root: uid 0 in the host's user namespace. Root of a user
/// namespace an ordinary user made (where img runs again for rootless work, see
/// [`run_mapped`]) is that user, not root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root() && img_unpack::overlay::in_initial_user_namespace()
}

/// Run `exe args` as root of a new user namespace mapping the caller's own ids (it as 0, its
/// subordinate ranges from 1, see [`caller_mappings`]) and wait for it; its exit code. What
/// an ordinary user cannot do to files its rootless containers own through subordinate ids
/// (prepare snapshots with the image's owners, remove them) is done there, as podman does
/// all its rootless work inside such a namespace.
/// `also`: further `CLONE_NEW*` namespaces for it (owned by that user namespace).
pub fn run_mapped(
    exe: &Path,
    args: &[&std::ffi::OsStr],
    stdio: [crate::spawn::Stdio; 3],
    also: i32,
) -> Result<i32> {
    let (uids, gids) = rootless_mappings_of_caller()?;
    let mut child = crate::spawn::spawn(crate::spawn::Spawn {
        exe,
        args,
        stdio,
        fds: Vec::new(),
        namespaces: libc::CLONE_NEWUSER | also,
        maps: Some((&uids, &gids)),
        join: Vec::new(),
    })?;
    child.wait()
}

/// The name of account `uid` in `/etc/passwd`-format `text`.
pub fn account_name(text: &str, uid: u32) -> Option<String> {
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        (fields.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
    })
}

/// A rootless container's mappings: the caller's own `id` as 0 (the image's root is the user,
/// as in podman and rootless runc), then the first subordinate range from 1, when there is one.
///
/// ```
/// use img_run::userns::{IdMap, rootless_mappings};
/// let maps = rootless_mappings(1000, &[(100000, 65536)]);
/// assert_eq!(maps, vec![
///     IdMap { container: 0, host: 1000, size: 1 },
///     IdMap { container: 1, host: 100000, size: 65536 },
/// ]);
/// ```
pub fn rootless_mappings(id: u32, subordinate: &[(u32, u32)]) -> Vec<IdMap> {
    let mut maps = vec![IdMap {
        container: 0,
        host: id,
        size: 1,
    }];
    if let Some(&(start, count)) = subordinate.first() {
        maps.push(IdMap {
            container: 1,
            host: start,
            size: count,
        });
    }
    maps
}

/// The mappings of the calling (unprivileged) user: its euid/egid as 0 and its subordinate
/// ranges from `/etc/subuid` and `/etc/subgid` (named in `/etc/passwd`), read under `root`.
pub fn caller_mappings(root: &Path) -> (Vec<IdMap>, Vec<IdMap>) {
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_default();
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    let name = account_name(&read("etc/passwd"), uid).unwrap_or_default();
    (
        rootless_mappings(uid, &subordinate_ranges(&read("etc/subuid"), &name, uid)),
        rootless_mappings(gid, &subordinate_ranges(&read("etc/subgid"), &name, uid)),
    )
}

/// [`caller_mappings`], which a rootless container (or anything run as root of a user
/// namespace for the caller) needs with a subordinate range: an error saying how to add one
/// when `/etc/subuid` or `/etc/subgid` gives the caller none.
pub fn rootless_mappings_of_caller() -> Result<(Vec<IdMap>, Vec<IdMap>)> {
    let (uids, gids) = caller_mappings(Path::new("/"));
    if uids.len() < 2 || gids.len() < 2 {
        return Err(Error::Config(format!(
            "{} has no subordinate ids: add a range to /etc/subuid and /etc/subgid (e.g. \
             `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER`)",
            std::env::var("USER").unwrap_or_else(|_| "this user".into())
        )));
    }
    Ok((uids, gids))
}

/// The uid and gid maps of a runtime spec's user namespace, if it has one (a user namespace
/// without both maps is an error: we run as root and map onto a subordinate range).
pub fn spec_maps(spec: &oci_spec::runtime::Spec) -> Result<Option<(Vec<IdMap>, Vec<IdMap>)>> {
    let Some(linux) = spec.linux() else {
        return Ok(None);
    };
    let wanted = linux
        .namespaces()
        .iter()
        .flatten()
        .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::User);
    if !wanted {
        return Ok(None);
    }
    let convert = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| -> Vec<IdMap> {
        maps.iter()
            .flatten()
            .map(|m| IdMap {
                container: m.container_id(),
                host: m.host_id(),
                size: m.size(),
            })
            .collect()
    };
    let (uids, gids) = (convert(linux.uid_mappings()), convert(linux.gid_mappings()));
    if uids.is_empty() || gids.is_empty() {
        return Err(Error::Config(
            "a user namespace needs uid and gid mappings".into(),
        ));
    }
    Ok(Some((uids, gids)))
}

/// Remove the tree at `path` as an unprivileged user, whose rootless containers leave files
/// owned by its subordinate ids (and overlayfs' mode-0 work directories) that it cannot
/// remove itself: plainly first, then with `rm -rf` run as root of a user namespace mapping
/// the caller's ids (as `podman unshare rm` does), where every such file is the namespace's.
pub fn remove_tree(path: &Path) -> Result<()> {
    let plain = std::fs::remove_dir_all(path);
    let denied = match &plain {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)),
    };
    if !denied || is_root() {
        return plain.map_err(crate::error::sys(path.display()));
    }
    let rm = ["/bin/rm", "/usr/bin/rm"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .ok_or_else(|| Error::Config(format!("removing {}: no rm to run", path.display())))?;
    let stdio = [
        crate::spawn::Stdio::Null,
        crate::spawn::Stdio::Null,
        crate::spawn::Stdio::Inherit,
    ];
    let args = ["-rf".as_ref(), "--".as_ref(), path.as_os_str()];
    match run_mapped(rm, &args, stdio, 0)? {
        0 if !path.exists() => Ok(()),
        code => Err(Error::Config(format!(
            "removing {} in a user namespace: rm exited with {code}",
            path.display()
        ))),
    }
}

/// Whether overlayfs can be mounted inside a user namespace here (Linux ≥ 5.11 lets it,
/// some distributions' kernels and filesystems do not): `mount -t overlay` is tried, as root
/// of a user namespace with the caller's mappings and a mount namespace of its own (so nothing
/// stays mounted), on empty directories made under `scratch`, which is removed after.
pub fn overlay_works(scratch: &Path) -> Result<bool> {
    let dirs = ["lower", "upper", "work", "merged"].map(|d| scratch.join(d));
    for d in &dirs {
        std::fs::create_dir_all(d).map_err(crate::error::sys(d.display()))?;
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={},userxattr",
        dirs[0].display(),
        dirs[1].display(),
        dirs[2].display()
    );
    let mount = ["/bin/mount", "/usr/bin/mount"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .ok_or_else(|| Error::Config("no mount (util-linux) to try overlayfs with".into()))?;
    use crate::spawn::Stdio::Null;
    let args = [
        "-t".as_ref(),
        "overlay".as_ref(),
        "-o".as_ref(),
        options.as_ref(),
        "overlay".as_ref(),
        dirs[3].as_os_str(),
    ];
    let works = run_mapped(mount, &args, [Null, Null, Null], libc::CLONE_NEWNS)? == 0;
    remove_tree(scratch)?;
    Ok(works)
}

/// The account whose subordinate ids `--userns=remap` maps containers onto (docker's is
/// `dockremap`).
pub const REMAP_USER: &str = "img-remap";

/// `--userns=remap`'s mappings: the container's ids 0.. onto the first range `/etc/subuid`
/// and `/etc/subgid` (under `root`) give [`REMAP_USER`].
pub fn remap_mappings(root: &Path) -> Result<(Vec<IdMap>, Vec<IdMap>)> {
    let range = |file: &str| -> Result<IdMap> {
        let text = std::fs::read_to_string(root.join(file)).unwrap_or_default();
        let found = subordinate_ranges(&text, REMAP_USER, u32::MAX);
        let &(start, count) = found.first().ok_or_else(|| {
            Error::Config(format!(
                "--userns=remap: /{file} has no range for {REMAP_USER} (add one, e.g. \
                 `usermod --add-subuids 400000-465535 --add-subgids 400000-465535 {REMAP_USER}` \
                 after `useradd --system {REMAP_USER}`)"
            ))
        })?;
        if start == 0 {
            return Err(Error::Config(format!(
                "--userns=remap: the range of {REMAP_USER} in /{file} starts at 0 (root)"
            )));
        }
        Ok(IdMap {
            container: 0,
            host: start,
            size: count,
        })
    };
    Ok((vec![range("etc/subuid")?], vec![range("etc/subgid")?]))
}

/// What [`make_rootless`] does with the limits (memory, pids, cpu) a spec asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootlessLimits {
    /// Refuse them: a bundle for rootless runc.
    Refuse,
    /// Keep them where the user has a cgroup v2 subtree of their own to hold them (img's
    /// runtime makes the container's cgroup there, [`crate::cgroup::Cgroup::delegated`]);
    /// refuse them, saying why, elsewhere.
    Delegated,
}

/// Whether the limits `asked` (controller and the flag that asks for it, as
/// [`crate::cgroup::delegated::needed`] lists them) can be kept without root; the refusal names
/// the flags and why. `img run` asks before it pulls or unpacks anything.
pub fn check_rootless_limits(asked: &[(&str, &str)], limits: RootlessLimits) -> Result<()> {
    if asked.is_empty() {
        return Ok(());
    }
    let flags: Vec<&str> = asked.iter().map(|(_, flag)| *flag).collect();
    let verb = if flags.len() == 1 { "needs" } else { "need" };
    let controllers: Vec<&str> = asked.iter().map(|(c, _)| *c).collect();
    match limits {
        RootlessLimits::Refuse => Err(Error::Config(format!(
            "{} {verb} root: an unprivileged bundle has no cgroup to hold the limits",
            flags.join(", ")
        ))),
        RootlessLimits::Delegated => crate::cgroup::delegated::delegated_root(&controllers)
            .map(drop)
            .map_err(|e| {
                Error::Config(format!(
                    "{} {verb} root or a cgroup v2 subtree delegated to you: {e}",
                    flags.join(", "),
                ))
            }),
    }
}

/// Make a bundle's runtime spec (as JSON) one an unprivileged runc runs, as `runc spec
/// --rootless` does: a user namespace with `uids`/`gids`, no `uid=`/`gid=` mount options, a
/// read-only bind of the host's `/sys` where the container shares the host's network (sysfs
/// cannot be mounted there), and no cgroup settings but the limits `limits` allows. Limits the
/// caller asked for are refused, not dropped, where they cannot be kept.
pub fn make_rootless(
    spec: &mut Value,
    uids: &[IdMap],
    gids: &[IdMap],
    limits: RootlessLimits,
) -> Result<()> {
    // Unreadable limits are refused, never taken for none.
    let raw = &spec["linux"]["resources"];
    let resources: Option<oci_spec::runtime::LinuxResources> = if raw.is_null() {
        None
    } else {
        Some(
            serde_json::from_value(raw.clone())
                .map_err(|e| Error::Config(format!("the spec's linux.resources: {e}")))?,
        )
    };
    let asked = resources
        .as_ref()
        .map(crate::cgroup::delegated::needed)
        .unwrap_or_default();
    check_rootless_limits(&asked, limits)?;
    // What may stay (the limits just allowed); devices and the rest go.
    let kept: serde_json::Map<String, Value> = asked
        .iter()
        .map(|(key, _)| (key.to_string(), spec["linux"]["resources"][*key].clone()))
        .collect();
    if let Some(linux) = spec["linux"].as_object_mut() {
        linux.remove("resources");
        if !kept.is_empty() {
            linux.insert("resources".into(), Value::Object(kept));
        }
    }
    let namespaces = spec["linux"]["namespaces"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let host_network = !namespaces.iter().any(|n| n["type"] == "network");
    let mut namespaces: Vec<Value> = namespaces
        .into_iter()
        .filter(|n| n["type"] != "user")
        .collect();
    namespaces.push(json!({"type": "user"}));
    spec["linux"]["namespaces"] = json!(namespaces);
    spec["linux"]["uidMappings"] = json!(uids);
    spec["linux"]["gidMappings"] = json!(gids);
    let mounts: Vec<Value> = spec["mounts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut m| {
            if host_network && m["destination"] == "/sys" {
                return json!({
                    "destination": "/sys", "type": "none", "source": "/sys",
                    "options": ["rbind", "nosuid", "noexec", "nodev", "ro"],
                });
            }
            if let Some(options) = m["options"].as_array_mut() {
                options.retain(|o| {
                    !o.as_str()
                        .is_some_and(|o| o.starts_with("uid=") || o.starts_with("gid="))
                });
            }
            m
        })
        .collect();
    spec["mounts"] = json!(mounts);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rootless_spec_has_a_user_namespace_and_no_cgroup() {
        let mut spec = json!({
            "mounts": [
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                 "options": ["nosuid", "newinstance", "gid=5", "mode=0620"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]},
            ],
            "linux": {
                "namespaces": [{"type": "pid"}, {"type": "mount"}],
                "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            },
        });
        let uids = rootless_mappings(1000, &[(100000, 65536)]);
        make_rootless(&mut spec, &uids, &uids, RootlessLimits::Refuse).unwrap();
        assert!(spec["linux"].get("resources").is_none());
        assert_eq!(spec["linux"]["namespaces"][2], json!({"type": "user"}));
        assert_eq!(
            spec["linux"]["uidMappings"][1],
            json!({"containerID": 1, "hostID": 100000, "size": 65536})
        );
        assert_eq!(
            spec["mounts"][0]["options"],
            json!(["nosuid", "newinstance", "mode=0620"])
        );
        // the host's network: sysfs cannot be mounted, the host's is bound read-only
        assert_eq!(spec["mounts"][1]["type"], "none");
        assert!(
            spec["mounts"][1]["options"]
                .as_array()
                .unwrap()
                .contains(&json!("ro"))
        );
    }

    #[test]
    fn limits_without_root_are_refused_not_dropped() {
        let mut spec =
            json!({"linux": {"resources": {"memory": {"limit": 1}, "pids": {"limit": 5}}}});
        let err = make_rootless(&mut spec, &[], &[], RootlessLimits::Refuse)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--memory, --pids-limit need root"), "{err}");
    }

    #[test]
    fn remap_takes_img_remaps_first_range_and_says_how_to_add_one() {
        let root = std::env::temp_dir().join(format!("img-remap-test-{}", std::process::id()));
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(
            root.join("etc/subuid"),
            "alice:100000:65536\nimg-remap:400000:65536\n",
        )
        .unwrap();
        std::fs::write(root.join("etc/subgid"), "img-remap:500000:1000\n").unwrap();
        let (uids, gids) = remap_mappings(&root).unwrap();
        assert_eq!(
            uids,
            vec![IdMap {
                container: 0,
                host: 400000,
                size: 65536
            }]
        );
        assert_eq!(
            gids,
            vec![IdMap {
                container: 0,
                host: 500000,
                size: 1000
            }]
        );
        std::fs::write(root.join("etc/subgid"), "img-remap:0:10\n").unwrap();
        let zero = remap_mappings(&root).unwrap_err().to_string();
        std::fs::write(root.join("etc/subgid"), "").unwrap();
        let none = remap_mappings(&root).unwrap_err().to_string();
        let _ = std::fs::remove_dir_all(&root);
        assert!(zero.contains("starts at 0"), "{zero}");
        assert!(
            none.contains("/etc/subgid has no range for img-remap"),
            "{none}"
        );
        assert!(none.contains("usermod --add-subuids"), "{none}");
    }

    #[test]
    fn account_names_and_ranges() {
        let passwd = "root:x:0:0::/root:/bin/sh\nimg-rootless:x:1002:1002::/home/r:/bin/sh\n";
        assert_eq!(account_name(passwd, 1002).as_deref(), Some("img-rootless"));
        assert_eq!(account_name(passwd, 5), None);
        assert_eq!(
            subordinate_ranges(
                "img-rootless:265536:0\nimg-rootless:1:2\n",
                "img-rootless",
                9
            ),
            vec![(1, 2)]
        );
    }
}
