//! One cgroup per container, on cgroup v2, v1, or the hybrid layout (v1 controllers plus a
//! cgroup2 mount without controllers, which crun refuses): limits for memory, pids and cpu.
//! Rootless containers get one only in a cgroup v2 subtree delegated to the user
//! ([`delegated`]).

pub mod delegated;

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use crate::error::sys;
use crate::{Error, Result};

const ROOT: &str = "/sys/fs/cgroup";

/// A container's cgroup: one directory on v2, one per hierarchy on v1.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Cgroup {
    /// The directories, created by us.
    pub dirs: Vec<PathBuf>,
    /// Whether this is the unified (v2) hierarchy.
    pub unified: bool,
}

/// A cgroup's usage; `None` where its controller is missing (or sets no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// CPU time used, nanoseconds.
    pub cpu_ns: Option<u64>,
    /// Memory in use, bytes.
    pub memory: Option<u64>,
    /// The memory limit, bytes.
    pub memory_limit: Option<u64>,
    /// Processes (and threads) in it.
    pub pids: Option<u64>,
}

/// A mounted cgroup v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hierarchy {
    /// Its controllers (`cpu`, `cpuacct`, `name=systemd`, …).
    controllers: Vec<String>,
    /// Where it is mounted.
    mount: PathBuf,
}

/// The cgroup layout containers get here, for `img version`: `v2 (memory pids cpu)`, or
/// `v1 (memory, pids, …)`, `hybrid` when a cgroup2 mount sits beside v1 controllers.
pub fn layout() -> String {
    let root = Path::new(ROOT);
    if let Ok(controllers) = std::fs::read_to_string(root.join("cgroup.controllers")) {
        return format!("v2 ({})", controllers.trim());
    }
    let mut controllers: Vec<String> = hierarchies()
        .into_iter()
        .flat_map(|h| h.controllers)
        .filter(|c| !c.starts_with("name="))
        .collect();
    controllers.sort();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let unified = delegated::cgroup2_mount(&mountinfo).is_some();
    let kind = if unified { "hybrid: v1" } else { "v1" };
    format!("{kind} ({})", controllers.join(", "))
}

/// The v1 hierarchies in `/proc/self/mountinfo` under `/sys/fs/cgroup`, each once.
fn hierarchies() -> Vec<Hierarchy> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    parse_hierarchies(&text)
}

fn parse_hierarchies(mountinfo: &str) -> Vec<Hierarchy> {
    let mut out: Vec<Hierarchy> = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut r = right.split(' ');
        if r.next() != Some("cgroup") {
            continue;
        }
        let Some(mount) = left.split(' ').nth(4).map(PathBuf::from) else {
            continue;
        };
        if !mount.starts_with(ROOT) {
            continue;
        }
        let options = r.nth(1).unwrap_or_default();
        let controllers: Vec<String> = options
            .split(',')
            .filter(|o| {
                o.starts_with("name=")
                    || !(o.contains('=')
                        || [
                            "rw",
                            "ro",
                            "xattr",
                            "clone_children",
                            "noprefix",
                            "cpuset_v2_mode",
                        ]
                        .contains(o))
            })
            .map(str::to_string)
            .collect();
        if !controllers.is_empty() && !out.iter().any(|h| h.controllers == controllers) {
            out.push(Hierarchy { controllers, mount });
        }
    }
    out
}

impl Cgroup {
    /// Create `img/<name>` (in every v1 hierarchy, or on v2), apply `resources`, devices
    /// included. Without a device controller (v1) or cgroup2 for the eBPF device program, the
    /// container does not start: its root could open any device node it makes.
    pub fn create(name: &str, resources: Option<&LinuxResources>) -> Result<Cgroup> {
        let root = Path::new(ROOT);
        let device_rules = resources
            .and_then(|r| r.devices().clone())
            .unwrap_or_default();
        if root.join("cgroup.controllers").exists() {
            let parent = root.join("img");
            std::fs::create_dir_all(&parent).map_err(sys(parent.display()))?;
            // Delegate the controllers we use down to our subtree; absent ones are skipped.
            for dir in [root, &parent] {
                for c in ["+memory", "+pids", "+cpu"] {
                    let _ = std::fs::write(dir.join("cgroup.subtree_control"), c);
                }
            }
            let dir = parent.join(name);
            std::fs::create_dir_all(&dir).map_err(sys(dir.display()))?;
            let cg = Cgroup {
                dirs: vec![dir.clone()],
                unified: true,
            };
            let applied = cg
                .limit_v2(resources)
                .and_then(|()| crate::devices::apply_v2(&dir, &device_rules));
            if let Err(e) = applied {
                let _ = cg.remove();
                return Err(e);
            }
            return Ok(cg);
        }
        let mut cg = Cgroup {
            dirs: Vec::new(),
            unified: false,
        };
        let made = (|| {
            for h in hierarchies() {
                let parent = h.mount.join("img");
                let dir = parent.join(name);
                let cpuset = h.controllers.iter().any(|c| c == "cpuset");
                for d in [&parent, &dir] {
                    match std::fs::create_dir(d) {
                        Ok(()) => {
                            if cpuset {
                                inherit_cpuset(d)?;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(sys(d.display())(e)),
                    }
                }
                cg.dirs.push(dir);
            }
            cg.limit_v1(resources)?;
            match cg.dir_of("devices") {
                Some(dir) => crate::devices::apply_v1(dir, &device_rules),
                None => Err(Error::Config(
                    "no devices cgroup controller on this machine: refusing to start a container \
                     whose root could open any device"
                        .into(),
                )),
            }
        })();
        if let Err(e) = made {
            let _ = cg.remove();
            return Err(e);
        }
        Ok(cg)
    }

    fn dir_of(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|d| {
                d.parent()
                    .and_then(Path::parent)
                    .and_then(Path::file_name)
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.split(',').any(|c| c == controller))
            })
            .map(PathBuf::as_path)
    }

    fn limit_v1(&self, r: Option<&LinuxResources>) -> Result<()> {
        let Some(r) = r else { return Ok(()) };
        if let (Some(m), Some(dir)) = (
            r.memory().as_ref().and_then(|m| m.limit()),
            self.dir_of("memory"),
        ) {
            write(dir, "memory.limit_in_bytes", &m.to_string())?;
            // No swap beyond the limit (absent when the kernel has no swap accounting).
            if dir.join("memory.memsw.limit_in_bytes").exists() {
                write(dir, "memory.memsw.limit_in_bytes", &m.to_string())?;
            }
        }
        if let (Some(p), Some(dir)) = (r.pids().as_ref().map(|p| p.limit()), self.dir_of("pids")) {
            write(dir, "pids.max", &p.to_string())?;
        }
        if let (Some(cpu), Some(dir)) = (r.cpu().as_ref(), self.dir_of("cpu")) {
            if let Some(period) = cpu.period() {
                write(dir, "cpu.cfs_period_us", &period.to_string())?;
            }
            if let Some(quota) = cpu.quota() {
                write(dir, "cpu.cfs_quota_us", &quota.to_string())?;
            }
        }
        Ok(())
    }

    fn limit_v2(&self, r: Option<&LinuxResources>) -> Result<()> {
        let (Some(r), Some(dir)) = (r, self.dirs.first()) else {
            return Ok(());
        };
        if let Some(m) = r.memory().as_ref().and_then(|m| m.limit()) {
            write(dir, "memory.max", &m.to_string())?;
            if dir.join("memory.swap.max").exists() {
                write(dir, "memory.swap.max", "0")?;
            }
        }
        if let Some(p) = r.pids().as_ref().map(|p| p.limit()) {
            write(dir, "pids.max", &p.to_string())?;
        }
        if let Some(cpu) = r.cpu().as_ref()
            && let Some(quota) = cpu.quota()
        {
            write(
                dir,
                "cpu.max",
                &format!("{quota} {}", cpu.period().unwrap_or(100_000)),
            )?;
        }
        Ok(())
    }

    /// No cgroup: a rootless container's (nothing to add to, limit or remove).
    pub fn none() -> Cgroup {
        Cgroup {
            dirs: Vec::new(),
            unified: false,
        }
    }

    /// The cgroup a container of this id would have, as far as it exists (without root: in
    /// the cgroup delegated to the user that this process runs in).
    pub fn existing(name: &str) -> Cgroup {
        if !crate::userns::is_root() {
            let dirs = delegated::delegated_root(&[])
                .ok()
                .map(|root| root.join(format!("img-{name}")))
                .filter(|dir| dir.is_dir())
                .into_iter()
                .collect();
            return Cgroup {
                dirs,
                unified: true,
            };
        }
        let root = Path::new(ROOT);
        if root.join("cgroup.controllers").exists() {
            return Cgroup {
                dirs: vec![root.join("img").join(name)],
                unified: true,
            };
        }
        let dirs = hierarchies()
            .iter()
            .map(|h| h.mount.join("img").join(name))
            .filter(|d| d.exists())
            .collect();
        Cgroup {
            dirs,
            unified: false,
        }
    }

    /// Remove our cgroups (`img/<id>`) whose container is not in `known`; returns how many.
    pub fn remove_orphans(known: &[String]) -> usize {
        let root = Path::new(ROOT);
        let parents: Vec<PathBuf> = if root.join("cgroup.controllers").exists() {
            vec![root.join("img")]
        } else {
            hierarchies().iter().map(|h| h.mount.join("img")).collect()
        };
        let mut removed = 0;
        for parent in parents {
            for entry in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let ours = name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit());
                // Cgroup names are machine-wide but `known` is one store's containers: leave
                // young cgroups alone (another store's container may be starting in one).
                // rmdir itself fails on a cgroup that still has processes.
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > std::time::Duration::from_secs(60));
                if ours
                    && old
                    && !known.contains(&name)
                    && std::fs::remove_dir(entry.path()).is_ok()
                {
                    removed += 1;
                }
            }
        }
        removed
    }

    /// What the cgroup has used so far (`img stats`), as far as its controllers say.
    pub fn usage(&self) -> Usage {
        let read = |dir: Option<&Path>, file: &str| -> Option<String> {
            dir.and_then(|d| std::fs::read_to_string(d.join(file)).ok())
        };
        let number = |text: Option<String>| text.and_then(|t| t.trim().parse::<u64>().ok());
        let key = |text: Option<String>, key: &str| {
            text.and_then(|t| {
                t.lines().find_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    (k == key).then(|| v.trim().parse::<u64>().ok())?
                })
            })
        };
        if self.unified {
            let dir = self.dirs.first().map(PathBuf::as_path);
            return Usage {
                cpu_ns: key(read(dir, "cpu.stat"), "usage_usec").map(|u| u * 1000),
                memory: number(read(dir, "memory.current")),
                // "max" does not parse: no limit
                memory_limit: number(read(dir, "memory.max")),
                pids: number(read(dir, "pids.current")),
            };
        }
        let memory = self.dir_of("memory");
        // v1 says "no limit" with a huge number (PAGE_COUNTER_MAX pages)
        let limit = number(read(memory, "memory.limit_in_bytes")).filter(|l| *l < 1 << 62);
        Usage {
            cpu_ns: number(read(self.dir_of("cpuacct"), "cpuacct.usage")),
            memory: number(read(memory, "memory.usage_in_bytes")),
            memory_limit: limit,
            pids: number(read(self.dir_of("pids"), "pids.current")),
        }
    }

    /// The pids of the cgroup's processes (`img top`).
    pub fn pids(&self) -> Vec<u32> {
        let dir = if self.unified {
            self.dirs.first().map(PathBuf::as_path)
        } else {
            self.dir_of("pids")
                .or(self.dirs.first().map(PathBuf::as_path))
        };
        dir.and_then(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Move a process (and its future children) into the cgroup.
    pub fn add(&self, pid: u32) -> Result<()> {
        for dir in &self.dirs {
            write(dir, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    /// Whether the kernel killed something in this cgroup for lack of memory.
    pub fn oom_killed(&self) -> bool {
        let (file, key) = if self.unified {
            ("memory.events", "oom_kill")
        } else {
            ("memory.oom_control", "oom_kill")
        };
        let Some(dir) = (if self.unified {
            self.dirs.first().map(PathBuf::as_path)
        } else {
            self.dir_of("memory")
        }) else {
            return false;
        };
        std::fs::read_to_string(dir.join(file))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' '))
            .any(|(k, v)| k == key && v.trim() != "0")
    }

    /// Freeze every process of the cgroup (to commit a running container's writable layer
    /// while nothing writes to it): v1's `freezer` controller (`freezer.state` = `FROZEN`),
    /// or v2's `cgroup.freeze`. Returns once the kernel reports the cgroup frozen; a cgroup
    /// that is not frozen within 10 seconds is thawed again and that is an error.
    pub fn freeze(&self) -> Result<()> {
        self.set_frozen(true)
    }

    /// Let the processes of a frozen cgroup run again; returns once they do.
    pub fn thaw(&self) -> Result<()> {
        self.set_frozen(false)
    }

    fn set_frozen(&self, frozen: bool) -> Result<()> {
        let (dir, file, value) = if self.unified {
            let dir = self.dirs.first().ok_or_else(|| no_freezer("no cgroup"))?;
            (
                dir.as_path(),
                "cgroup.freeze",
                if frozen { "1" } else { "0" },
            )
        } else {
            let dir = self
                .dir_of("freezer")
                .ok_or_else(|| no_freezer("no freezer cgroup controller on this machine"))?;
            (
                dir,
                "freezer.state",
                if frozen { "FROZEN" } else { "THAWED" },
            )
        };
        write(dir, file, value)?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if self.is_frozen(dir)? == frozen {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                if frozen {
                    let _ = self.set_frozen(false);
                }
                return Err(Error::Config(format!(
                    "{}: the cgroup did not become {} within 10 seconds",
                    dir.display(),
                    if frozen { "frozen" } else { "thawed" }
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// Whether the kernel reports the cgroup `dir` frozen (v2 `cgroup.events`' `frozen 1`, v1
    /// `freezer.state` = `FROZEN`; `FREEZING` is not yet).
    fn is_frozen(&self, dir: &Path) -> Result<bool> {
        let file = if self.unified {
            "cgroup.events"
        } else {
            "freezer.state"
        };
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).map_err(sys(path.display()))?;
        Ok(if self.unified {
            text.lines().any(|l| l.trim() == "frozen 1")
        } else {
            text.trim() == "FROZEN"
        })
    }

    /// Remove the directories (once their processes are gone; retried briefly).
    pub fn remove(&self) -> Result<()> {
        for dir in &self.dirs {
            let mut tries = 0;
            loop {
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if tries < 50 && e.raw_os_error() == Some(libc::EBUSY) => {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    Err(e) => return Err(sys(format!("removing cgroup {}", dir.display()))(e)),
                }
            }
        }
        Ok(())
    }
}

fn no_freezer(why: &str) -> Error {
    Error::Config(format!(
        "cannot pause the container: {why} (commit with --pause=false to read it running)"
    ))
}

fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    let path = dir.join(file);
    std::fs::write(&path, value).map_err(sys(format!("writing {value} to {}", path.display())))
}

/// A new v1 cpuset cgroup starts with no CPUs and no memory nodes, and takes no process until
/// it has some: give it its parent's.
fn inherit_cpuset(dir: &Path) -> Result<()> {
    let parent = dir.parent().unwrap_or(dir);
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let from = parent.join(file);
        let value = std::fs::read_to_string(&from).map_err(sys(from.display()))?;
        write(dir, file, value.trim())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `State:` letter of a process in /proc (D: a frozen task's uninterruptible sleep).
    fn proc_state(pid: u32) -> char {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("State:"))
            .and_then(|s| s.trim().chars().next())
            .unwrap()
    }

    #[test]
    #[cfg_attr(not(img_root), ignore = "needs root: creates a cgroup")]
    fn freeze_stops_the_processes_and_thaw_lets_them_run() {
        let cg = Cgroup::create(&format!("test-freeze-{}", std::process::id()), None).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .spawn()
            .unwrap();
        let pid = child.id();
        cg.add(pid).unwrap();
        cg.freeze().unwrap();
        // The kernel, not our own file, says so: a frozen task sleeps uninterruptibly.
        assert_eq!(proc_state(pid), 'D');
        cg.freeze().unwrap();
        cg.thaw().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while proc_state(pid) != 'S' {
            assert!(std::time::Instant::now() < deadline, "never thawed");
            std::thread::yield_now();
        }
        child.kill().unwrap();
        child.wait().unwrap();
        cg.remove().unwrap();
    }

    #[test]
    fn v1_hierarchies_from_mountinfo() {
        let text = "\
30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
31 25 0:27 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
32 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
33 25 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
34 25 0:29 / /elsewhere/memory rw - cgroup cgroup rw,memory
35 25 0:30 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset,clone_children
36 25 0:31 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices,release_agent=/x
";
        let h = parse_hierarchies(text);
        let names: Vec<String> = h.iter().map(|h| h.controllers.join(",")).collect();
        assert_eq!(
            names,
            ["name=systemd", "cpu,cpuacct", "memory", "cpuset", "devices"]
        );
        assert_eq!(h[1].mount, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        let cg = Cgroup {
            dirs: h.iter().map(|h| h.mount.join("img/x")).collect(),
            unified: false,
        };
        assert_eq!(
            cg.dir_of("cpuacct"),
            Some(Path::new("/sys/fs/cgroup/cpu,cpuacct/img/x"))
        );
        assert_eq!(cg.dir_of("pids"), None);
    }
}
