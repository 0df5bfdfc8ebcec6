//! Containers on disk: `ROOT/containers/<id>/` holds `state.json` (what was asked for and
//! what happened), the runtime spec, the writable layer, and `log`. No daemon: every command
//! reads these files, and a container whose process is gone is seen as exited.

use std::path::{Path, PathBuf};

use crate::error::sys;
use crate::spec::Network;
use crate::{Error, Result};

/// A published port: `[IP:]HOST:CONTAINER`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Port {
    /// The host address to listen on (127.0.0.1 unless given).
    pub host_ip: String,
    /// The host port.
    pub host_port: u16,
    /// The port inside the container.
    pub container_port: u16,
}

impl Port {
    /// Parse `HOST:CTR` or `IP:HOST:CTR` (an optional `/tcp` suffix is accepted).
    pub fn parse(s: &str) -> Result<Port> {
        let bad = || {
            Error::Config(format!(
                "invalid port mapping {s:?}: expected [IP:]HOST:CONTAINER"
            ))
        };
        let body = s.strip_suffix("/tcp").unwrap_or(s);
        let parts: Vec<&str> = body.rsplitn(3, ':').collect();
        let (ip, host, ctr) = match parts[..] {
            [c, h] => ("127.0.0.1", h, c),
            [c, h, ip] => (ip, h, c),
            _ => return Err(bad()),
        };
        let ip = ip.trim_matches(['[', ']']);
        ip.parse::<std::net::IpAddr>().map_err(|_| bad())?;
        Ok(Port {
            host_ip: ip.to_string(),
            host_port: host.parse().map_err(|_| bad())?,
            container_port: ctr.parse().map_err(|_| bad())?,
        })
    }
}

impl std::fmt::Display for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}->{}/tcp",
            self.host_ip, self.host_port, self.container_port
        )
    }
}

/// What a container is and what became of it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ContainerState {
    /// 64 hex digits.
    pub id: String,
    /// Unique among the store's containers.
    pub name: String,
    /// The image reference it was made from.
    pub image: String,
    /// The process's arguments.
    pub command: Vec<String>,
    /// `created`, `running` or `exited`.
    pub status: String,
    /// Host pid of its PID 1 while running.
    pub pid: Option<u32>,
    /// Pid of the process supervising it (img itself in the foreground).
    pub supervisor: Option<u32>,
    /// The exit code once exited.
    pub exit_code: Option<i32>,
    /// Why it could not start, if it could not.
    pub error: Option<String>,
    /// When it was created, started and finished (RFC 3339).
    pub created: String,
    /// When it last started.
    pub started: Option<String>,
    /// When it last finished.
    pub finished: Option<String>,
    /// Published ports.
    pub ports: Vec<Port>,
    /// Network mode.
    pub network: Network,
    /// Remove it when it exits.
    pub auto_remove: bool,
    /// Its snapshot directories (lower layers), base first.
    pub lowers: Vec<PathBuf>,
}

impl ContainerState {
    /// The container directory of `id` under `root`.
    pub fn dir(root: &Path, id: &str) -> PathBuf {
        root.join("containers").join(id)
    }

    /// Read `dir/state.json`.
    pub fn load(dir: &Path) -> Result<ContainerState> {
        let path = dir.join("state.json");
        let bytes = std::fs::read(&path).map_err(sys(path.display()))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// Write `dir/state.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join("state.json");
        let tmp = dir.join(format!(".state.json.{}", std::process::id()));
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Config(e.to_string()))?;
        std::fs::write(&tmp, bytes).map_err(sys(tmp.display()))?;
        std::fs::rename(&tmp, &path).map_err(sys(path.display()))
    }

    /// Whether its process is alive (a `running` record whose pid is gone is not).
    pub fn is_running(&self) -> bool {
        self.status == "running" && self.pid.is_some_and(process_alive)
    }

    /// Whether its supervisor process is alive.
    pub fn supervisor_alive(&self) -> bool {
        self.supervisor.is_some_and(process_alive)
    }

    /// Every container under `root`, newest first; records that cannot be read are skipped.
    pub fn list(root: &Path) -> Vec<(PathBuf, ContainerState)> {
        let mut out: Vec<(PathBuf, ContainerState)> = std::fs::read_dir(root.join("containers"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| ContainerState::load(&e.path()).ok().map(|s| (e.path(), s)))
            .collect();
        out.sort_by(|a, b| b.1.created.cmp(&a.1.created));
        out
    }

    /// Find a container by name, id, or unique id prefix.
    pub fn find(root: &Path, what: &str) -> Result<(PathBuf, ContainerState)> {
        let all = Self::list(root);
        if let Some(found) = all.iter().find(|(_, s)| s.name == what || s.id == what) {
            return Ok(found.clone());
        }
        let hits: Vec<_> = all
            .into_iter()
            .filter(|(_, s)| s.id.starts_with(what))
            .collect();
        match hits.len() {
            1 => Ok(hits.into_iter().next().expect("one hit")),
            0 => Err(Error::Config(format!("no such container: {what}"))),
            _ => Err(Error::Config(format!(
                "{what:?} matches several containers: give more of the id"
            ))),
        }
    }
}

/// Whether a process exists and has not exited: a zombie (dead, not yet reaped by its parent)
/// counts as gone.
pub fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|r| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombie_is_not_alive() {
        assert!(process_alive(std::process::id()));
        let child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Not waited for: once it exits it is a zombie, which counts as gone.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while process_alive(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!process_alive(pid));
        drop(child);
    }

    #[test]
    fn ports_parse_like_docker() {
        let p = Port::parse("16379:6379").unwrap();
        assert_eq!(
            (p.host_ip.as_str(), p.host_port, p.container_port),
            ("127.0.0.1", 16379, 6379)
        );
        let p = Port::parse("0.0.0.0:8080:80/tcp").unwrap();
        assert_eq!(
            (p.host_ip.as_str(), p.host_port, p.container_port),
            ("0.0.0.0", 8080, 80)
        );
        assert_eq!(p.to_string(), "0.0.0.0:8080->80/tcp");
        let p = Port::parse("[::1]:8080:80").unwrap();
        assert_eq!(p.host_ip, "::1");
        for bad in ["80", "a:b", "1:2:3:4", "70000:1", "host:1:2"] {
            assert!(Port::parse(bad).is_err(), "{bad}");
        }
    }
}
