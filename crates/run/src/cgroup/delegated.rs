//! Cgroups for rootless containers. Where img runs in a cgroup v2 delegated to its user —
//! what systemd's `Delegate=` gives a unit (`systemd-run --user --scope -p Delegate=yes`, a
//! service with `User=`), or a container's own cgroup namespace — a rootless container's limits
//! go in a child cgroup made there, as podman's do; img stays inside what was delegated and
//! changes nothing above it. Elsewhere (cgroup v1, whose hierarchies are not delegated to users,
//! or a v2 cgroup the user does not own) the limits are refused with the reason, never dropped.
//!
//! cgroup v2 hands controllers to children only from a cgroup with no processes of its own: the
//! first container with limits moves the delegated cgroup's processes (img among them) into a
//! leaf, [`LEAF`], then enables the controllers; later ones find them enabled.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use super::{Cgroup, write};
use crate::error::sys;
use crate::{Error, Result};

/// The limits a container can have: the controller (and the key in a spec's
/// `linux.resources`) and the `run` flag that asks for it.
pub const LIMITS: [(&str, &str); 3] = [
    ("memory", "--memory"),
    ("pids", "--pids-limit"),
    ("cpu", "--cpus"),
];

/// The [`LIMITS`] `resources` sets.
pub fn needed(resources: &LinuxResources) -> Vec<(&'static str, &'static str)> {
    let set = [
        resources.memory().is_some(),
        resources.pids().is_some(),
        resources.cpu().is_some(),
    ];
    LIMITS
        .into_iter()
        .zip(set)
        .filter_map(|(limit, set)| set.then_some(limit))
        .collect()
}

/// The child of the delegated cgroup its own processes are moved into.
pub const LEAF: &str = "img-leaf";

/// Where this process may make cgroups for containers: the cgroup v2 it runs in (its parent
/// once img has moved it into [`LEAF`]), when the user owns it — its directory, `cgroup.procs`
/// and `cgroup.subtree_control`, as `Delegate=` leaves them — and it offers `controllers`. The
/// error says why not, in one line.
pub fn delegated_root(controllers: &[&str]) -> Result<PathBuf> {
    locate("self")
        .and_then(|(mount, below)| {
            root_in(
                &mount,
                &below,
                rustix::process::geteuid().as_raw(),
                controllers,
            )
        })
        .map_err(Error::Config)
}

/// Where the cgroup v2 of process `pid` (`self` or a number) is: the cgroup2 mount point and
/// the path below it (a bind-mounted subtree shows only what is below its root). The error
/// says why it cannot be found.
fn locate(pid: &str) -> std::result::Result<(PathBuf, String), String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let Some((mount, root)) = cgroup2_mount(&mountinfo) else {
        return Err(
            "no cgroup v2 is mounted (cgroup v1 hierarchies are not delegated to users)".into(),
        );
    };
    let file = format!("/proc/{pid}/cgroup");
    let Some(path) = own_cgroup(&std::fs::read_to_string(&file).unwrap_or_default()) else {
        return Err(format!("{file} names no cgroup v2"));
    };
    match path.strip_prefix(root.trim_end_matches('/')) {
        Some(below) => Ok((mount, below.to_string())),
        None => Err(format!(
            "the cgroup {path} is not under the cgroup2 mount {} (its root is {root})",
            mount.display()
        )),
    }
}

/// The cgroup2 filesystem's mount point (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on the
/// hybrid layout) and the cgroup its root is (`/` unless a subtree was bind-mounted).
pub(super) fn cgroup2_mount(mountinfo: &str) -> Option<(PathBuf, String)> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split(' ').next() != Some("cgroup2") {
            return None;
        }
        let mut fields = left.split(' ');
        let root = fields.nth(3)?.to_string();
        Some((PathBuf::from(fields.next()?), root))
    })
}

/// A process's cgroup v2 path (the `0::` line of `/proc/PID/cgroup`).
fn own_cgroup(proc_cgroup: &str) -> Option<String> {
    proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

/// Those of `controllers` a cgroup file's list (`cgroup.controllers`,
/// `cgroup.subtree_control`) does not name.
fn absent<'a>(controllers: &[&'a str], list: &str) -> Vec<&'a str> {
    controllers
        .iter()
        .copied()
        .filter(|c| !list.split_whitespace().any(|l| l == *c))
        .collect()
}

/// Which of `controllers` the cgroup `dir` cannot give its children, as an error line.
fn lacking(dir: &Path, controllers: &[&str]) -> Option<String> {
    let file = dir.join("cgroup.controllers");
    let available = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) => return Some(format!("{}: {e}", file.display())),
    };
    let missing = absent(controllers, &available);
    if missing.is_empty() {
        return None;
    }
    let available = available.trim();
    Some(format!(
        "the cgroup {} offers no {} controller{} (it has: {})",
        dir.display(),
        missing.join(" or "),
        if missing.len() > 1 { "s" } else { "" },
        if available.is_empty() {
            "none"
        } else {
            available
        }
    ))
}

/// [`delegated_root`] on the cgroup2 tree at `mount`, for a process in `own` run by `uid`.
fn root_in(
    mount: &Path,
    own: &str,
    uid: u32,
    controllers: &[&str],
) -> std::result::Result<PathBuf, String> {
    // Where the controllers are bound to cgroup v1 (the hybrid layout), v2 has none to give.
    if let Some(why) = lacking(mount, controllers) {
        return Err(format!(
            "{why}; cgroup v1 hierarchies are not delegated to users"
        ));
    }
    let own = own.trim().trim_start_matches('/');
    if own.split('/').any(|c| c == "..") {
        return Err(format!("/proc/self/cgroup names {own:?}"));
    }
    let own_dir = mount.join(own);
    let root = match own_dir.parent() {
        Some(parent) if own_dir.file_name() == Some(std::ffi::OsStr::new(LEAF)) => {
            parent.to_path_buf()
        }
        _ => own_dir,
    };
    for path in [
        root.clone(),
        root.join("cgroup.procs"),
        root.join("cgroup.subtree_control"),
    ] {
        let meta = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.uid() != uid {
            return Err(format!(
                "{} is not delegated to you (it belongs to uid {}; start img in a cgroup \
                 that is, such as `systemd-run --user --scope -p Delegate=yes`)",
                path.display(),
                meta.uid()
            ));
        }
    }
    if let Some(why) = lacking(&root, controllers) {
        return Err(why);
    }
    Ok(root)
}

/// Move every process of the cgroup `root` (img's own among them) into its [`LEAF`], so that
/// `root` may hand controllers to its children. Processes that end meanwhile are skipped; one
/// that cannot be moved (not the user's) fails it, naming the process.
fn evacuate(root: &Path) -> Result<()> {
    let leaf = root.join(LEAF);
    match std::fs::create_dir(&leaf) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(sys(leaf.display())(e)),
    }
    // Processes may fork while they are moved: a few passes until none is left.
    for _ in 0..8 {
        let procs = root.join("cgroup.procs");
        let pids = std::fs::read_to_string(&procs).map_err(sys(procs.display()))?;
        let pids: Vec<&str> = pids.split_whitespace().collect();
        if pids.is_empty() {
            return Ok(());
        }
        for pid in pids {
            match std::fs::write(leaf.join("cgroup.procs"), pid) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => {
                    return Err(sys(format!(
                        "moving process {pid} from {} into {}",
                        root.display(),
                        leaf.display()
                    ))(e));
                }
            }
        }
    }
    Err(Error::Config(format!(
        "{} keeps getting new processes: cannot move them all into {LEAF}",
        root.display()
    )))
}

impl Cgroup {
    /// The cgroup of container `name` whose process is `pid` (running): as root, where img
    /// makes them; without root, the `img-<name>` cgroup the kernel says the process is in —
    /// wherever in the delegated subtree it was made, whatever cgroup the caller runs in.
    pub fn of_container(name: &str, pid: Option<u32>) -> Cgroup {
        if crate::userns::is_root() {
            return Cgroup::existing(name);
        }
        let found = pid
            .and_then(|pid| locate(&pid.to_string()).ok())
            .map(|(mount, below)| mount.join(below.trim_start_matches('/')))
            .filter(|dir| {
                dir.file_name() == Some(std::ffi::OsStr::new(&format!("img-{name}")))
                    && dir.is_dir()
            });
        match found {
            Some(dir) => Cgroup {
                dirs: vec![dir],
                unified: true,
            },
            None => Cgroup::existing(name),
        }
    }

    /// A rootless container's cgroup, `img-<name>` in the cgroup delegated to the user that
    /// img runs in, with the limits of `resources` (memory, pids, cpu; devices are the user
    /// namespace's business). Fails, saying why, where there is no such cgroup.
    pub fn delegated(name: &str, resources: &LinuxResources) -> Result<Cgroup> {
        let controllers: Vec<&str> = needed(resources).into_iter().map(|(c, _)| c).collect();
        let root = delegated_root(&controllers)?;
        Cgroup::child_of(&root, name, &controllers, Some(resources))
    }

    /// `img-<name>` in the delegated cgroup `root`, with `controllers` handed down to it
    /// (`root`'s processes moved into [`LEAF`] first when some are not yet) and `resources`'
    /// limits.
    fn child_of(
        root: &Path,
        name: &str,
        controllers: &[&str],
        resources: Option<&LinuxResources>,
    ) -> Result<Cgroup> {
        let enabled = std::fs::read_to_string(root.join("cgroup.subtree_control"))
            .map_err(sys(root.display()))?;
        let missing = absent(controllers, &enabled);
        if !missing.is_empty() {
            evacuate(root)?;
            for c in missing {
                write(root, "cgroup.subtree_control", &format!("+{c}"))?;
            }
        }
        let dir = root.join(format!("img-{name}"));
        std::fs::create_dir(&dir).map_err(sys(dir.display()))?;
        let cg = Cgroup {
            dirs: vec![dir],
            unified: true,
        };
        if let Err(e) = cg.limit_v2(resources) {
            let _ = cg.remove();
            return Err(e);
        }
        Ok(cg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory tree shaped like a cgroup2 mount: `a/b` is the delegated cgroup img runs
    /// in (or in its leaf), `a` above it (plain files stand for the kernel's).
    fn tree(name: &str, controllers: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("img-cg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let parent = root.join("a/b");
        std::fs::create_dir_all(parent.join(LEAF)).unwrap();
        std::fs::write(
            root.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        for (file, text) in [
            ("cgroup.procs", ""),
            ("cgroup.subtree_control", ""),
            ("cgroup.controllers", controllers),
        ] {
            std::fs::write(parent.join(file), text).unwrap();
        }
        root
    }

    fn me() -> u32 {
        rustix::process::geteuid().as_raw()
    }

    #[test]
    fn our_cgroup_when_we_own_it_and_it_has_the_controllers_also_from_its_leaf() {
        let root = tree("ok", "cpuset cpu io memory pids\n");
        assert_eq!(
            root_in(&root, "/a/b\n", me(), &["memory", "pids"]),
            Ok(root.join("a/b"))
        );
        assert_eq!(
            root_in(&root, "/a/b/img-leaf", me(), &["memory", "pids"]),
            Ok(root.join("a/b"))
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn refused_with_the_reason() {
        let root = tree("refused", "cpu io\n");
        let missing = root_in(&root, "/a/b", me(), &["memory", "cpu", "pids"]).unwrap_err();
        assert!(
            missing.contains("offers no memory or pids controllers"),
            "{missing}"
        );
        assert!(missing.contains("it has: cpu io"), "{missing}");
        let theirs = root_in(&root, "/a/b", me() + 1, &["cpu"]).unwrap_err();
        assert!(theirs.contains("is not delegated to you"), "{theirs}");
        let climbing = root_in(&root, "/a/b/../..", me(), &["cpu"]).unwrap_err();
        assert!(climbing.contains("names"), "{climbing}");
        // The hybrid layout: controllers on v1, the cgroup2 mount has none of them.
        std::fs::write(root.join("cgroup.controllers"), "hugetlb\n").unwrap();
        let hybrid = root_in(&root, "/a/b", me(), &["memory"]).unwrap_err();
        assert!(
            hybrid.contains("offers no memory controller (it has: hugetlb)"),
            "{hybrid}"
        );
        assert!(
            hybrid.contains("cgroup v1 hierarchies are not delegated"),
            "{hybrid}"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// On the kernel's cgroup2 (here the hybrid layout's, which offers hugetlb): a cgroup
    /// holding a process of its own is emptied into its leaf before it hands a controller down,
    /// and the container's cgroup then has that controller and takes processes.
    #[test]
    #[cfg_attr(not(img_root), ignore = "needs root: makes cgroups")]
    fn a_cgroup_with_processes_moves_them_to_its_leaf_and_hands_a_controller_down() {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let (mount, _) = cgroup2_mount(&mountinfo).expect("a cgroup2 mount");
        let available = std::fs::read_to_string(mount.join("cgroup.controllers")).unwrap();
        let words: Vec<&str> = available.split_whitespace().collect();
        let controller = ["pids", "hugetlb", "memory"]
            .into_iter()
            .find(|c| words.contains(c))
            .unwrap_or_else(|| panic!("{} offers no controller to try", mount.display()));
        let _ = std::fs::write(
            mount.join("cgroup.subtree_control"),
            format!("+{controller}"),
        );
        let root = mount.join(format!("img-test-leaf-{}", std::process::id()));
        std::fs::create_dir(&root).unwrap();
        let mut sleeper = std::process::Command::new("sleep")
            .arg("1000")
            .spawn()
            .unwrap();
        std::fs::write(root.join("cgroup.procs"), sleeper.id().to_string()).unwrap();

        let cg = Cgroup::child_of(&root, "test", &[controller], None).unwrap();
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(root.join("cgroup.procs")), "");
        assert_eq!(
            read(root.join(LEAF).join("cgroup.procs")).trim(),
            sleeper.id().to_string()
        );
        assert!(read(root.join("cgroup.subtree_control")).contains(controller));
        let dir = root.join("img-test");
        assert_eq!(cg.dirs, vec![dir.clone()]);
        assert!(read(dir.join("cgroup.controllers")).contains(controller));
        cg.add(sleeper.id()).unwrap();
        assert_eq!(
            read(dir.join("cgroup.procs")).trim(),
            sleeper.id().to_string()
        );
        // A second container finds the controller enabled and the leaf in place.
        let again = Cgroup::child_of(&root, "again", &[controller], None).unwrap();

        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        cg.remove().unwrap();
        again.remove().unwrap();
        std::fs::remove_dir(root.join(LEAF)).unwrap();
        std::fs::remove_dir(&root).unwrap();
    }

    #[test]
    fn mount_and_own_cgroup_are_read_from_proc() {
        let mountinfo = "25 1 0:23 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
                         26 25 0:24 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount(mountinfo),
            Some((PathBuf::from("/sys/fs/cgroup/unified"), "/".to_string()))
        );
        assert_eq!(cgroup2_mount("25 1 0:23 / /x rw - tmpfs tmpfs rw\n"), None);
        let own = "12:pids:/user.slice\n0::/user.slice/user-1000.slice/session-1.scope\n";
        assert_eq!(
            own_cgroup(own).as_deref(),
            Some("/user.slice/user-1000.slice/session-1.scope")
        );
    }
}
