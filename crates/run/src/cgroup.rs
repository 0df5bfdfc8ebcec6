//! One cgroup per container, on cgroup v2, v1, or the hybrid layout (v1 controllers plus a
//! cgroup2 mount without controllers, which crun refuses): limits for memory, pids and cpu.

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use crate::Result;
use crate::error::sys;

const ROOT: &str = "/sys/fs/cgroup";

/// A container's cgroup: one directory on v2, one per controller on v1.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Cgroup {
    /// The directories, created by us.
    pub dirs: Vec<PathBuf>,
    /// Whether this is the unified (v2) hierarchy.
    pub unified: bool,
}

impl Cgroup {
    /// Create `img/<name>` and apply `resources`.
    pub fn create(name: &str, resources: Option<&LinuxResources>) -> Result<Cgroup> {
        let root = Path::new(ROOT);
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
                dirs: vec![dir],
                unified: true,
            };
            cg.limit_v2(resources)?;
            return Ok(cg);
        }
        let mut dirs = Vec::new();
        for controller in ["memory", "pids", "cpu"] {
            let base = root.join(controller);
            if !base.join("cgroup.procs").exists() {
                continue;
            }
            let dir = base.join("img").join(name);
            std::fs::create_dir_all(&dir).map_err(sys(dir.display()))?;
            dirs.push(dir);
        }
        let cg = Cgroup {
            dirs,
            unified: false,
        };
        cg.limit_v1(resources)?;
        Ok(cg)
    }

    fn dir_of(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|d| d.components().any(|c| c.as_os_str() == controller))
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

    /// The cgroup a container of this id would have, as far as it exists.
    pub fn existing(name: &str) -> Cgroup {
        let root = Path::new(ROOT);
        if root.join("cgroup.controllers").exists() {
            return Cgroup {
                dirs: vec![root.join("img").join(name)],
                unified: true,
            };
        }
        let dirs = ["memory", "pids", "cpu"]
            .iter()
            .map(|c| root.join(c).join("img").join(name))
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
            ["memory", "pids", "cpu"]
                .iter()
                .map(|c| root.join(c).join("img"))
                .collect()
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

fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    let path = dir.join(file);
    std::fs::write(&path, value).map_err(sys(format!("writing {value} to {}", path.display())))
}
