//! Containers on disk: `ROOT/containers/<id>/` holds `state.json` (what was asked for and
//! what happened), the runtime spec, the writable layer, and `log`. No daemon: every command
//! reads these files, and a container whose process is gone is seen as exited.
//!
//! Every pid kept here (the container's PID 1, its supervisor) is kept with the process's
//! start time ([`Recorded`]), so a recycled pid is never taken for the container.

use std::path::{Path, PathBuf};

pub use crate::recorded::{Identity, NotSignalled, Recorded, Stat};

use crate::error::sys;
use crate::spec::Network;
use crate::{Error, Result};

/// A published port, in docker's grammar: `[IP:][HOST:]CONTAINER`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Port {
    /// The host address to listen on; empty for every address, IPv4 and IPv6 (docker's
    /// default: `-p 8080:80` is reachable from other machines; `-p 127.0.0.1:8080:80` is not).
    pub host_ip: String,
    /// The host port; 0 until a random one is chosen (`-p 80`, `-p IP::80`, `-P`).
    pub host_port: u16,
    /// The port inside the container.
    pub container_port: u16,
}

impl Port {
    /// Parse `CTR`, `HOST:CTR`, `IP:HOST:CTR` or `IP::CTR` (an optional `/tcp` suffix is
    /// accepted; IPv6 addresses in brackets).
    pub fn parse(s: &str) -> Result<Port> {
        let bad = |why: &str| {
            Error::Config(format!(
                "invalid port mapping {s:?}: {why} (expected [IP:][HOST:]CONTAINER)"
            ))
        };
        if s.ends_with("/udp") || s.ends_with("/sctp") {
            return Err(bad("only tcp ports can be published"));
        }
        let body = s.strip_suffix("/tcp").unwrap_or(s);
        let parts: Vec<&str> = body.rsplitn(3, ':').collect();
        let (ip, host, ctr) = match parts[..] {
            [c] => ("", "", c),
            [c, h] => ("", h, c),
            [c, h, ip] => (ip, h, c),
            _ => return Err(bad("too many parts")),
        };
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        if !ip.is_empty() {
            ip.parse::<std::net::IpAddr>()
                .map_err(|_| bad(&format!("{ip:?} is not an IP address")))?;
        }
        let number = |text: &str, what: &str| {
            text.parse::<u16>()
                .map_err(|_| bad(&format!("{what} port {text:?} is not a number up to 65535")))
        };
        let container_port = number(ctr, "container")?;
        if container_port == 0 {
            return Err(bad("container port 0"));
        }
        Ok(Port {
            host_ip: ip.to_string(),
            host_port: if host.is_empty() {
                0
            } else {
                number(host, "host")?
            },
            container_port,
        })
    }

    /// Every host address it listens on, as docker prints them: `0.0.0.0` and `[::]` for the
    /// default, else the one given.
    pub fn host_addresses(&self) -> Vec<String> {
        match self.host_ip.as_str() {
            "" => vec!["0.0.0.0".into(), "[::]".into()],
            ip if ip.contains(':') => vec![format!("[{ip}]")],
            ip => vec![ip.to_string()],
        }
    }
}

/// docker's form: `0.0.0.0:8080->80/tcp, [::]:8080->80/tcp`.
impl std::fmt::Display for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let each: Vec<String> = self
            .host_addresses()
            .iter()
            .map(|a| format!("{a}:{}->{}/tcp", self.host_port, self.container_port))
            .collect();
        f.write_str(&each.join(", "))
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
    pub status: ContainerStatus,
    /// Its PID 1 while running: host pid and start time (`pid`, `pid_start_time` in
    /// state.json).
    #[serde(flatten, with = "pid_fields")]
    pub pid: Option<Recorded>,
    /// The process supervising it (img itself in the foreground): `supervisor`,
    /// `supervisor_start_time` in state.json.
    #[serde(flatten, with = "supervisor_fields")]
    pub supervisor: Option<Recorded>,
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
    /// `--label KEY=VALUE`s.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// The signal `img stop` sends first (`--stop-signal`, else the image's `StopSignal`).
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// Seconds `img stop` waits before SIGKILL when `-t` is not given (`--stop-timeout`).
    #[serde(default)]
    pub stop_timeout: Option<u64>,
    /// `--restart`, docker's spelling (`no` when absent).
    #[serde(default)]
    pub restart_policy: Option<String>,
    /// How many times the supervisor restarted it.
    #[serde(default)]
    pub restart_count: u32,
    /// `img stop` stopped it: no restart policy brings it back (`img start` clears this).
    #[serde(default)]
    pub stopped_by_user: bool,
    /// Its health check (`--health-cmd`, or the image's), run by its supervisor.
    #[serde(default)]
    pub healthcheck: Option<crate::health::HealthCheck>,
}

/// Where a container is in its life, as its record says (`state.json` keeps docker's words).
/// `Running` is what the record says: [`ContainerState::is_running`] also checks that its
/// process is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerStatus {
    /// Made (or being started again), not running yet.
    Created,
    /// Started; its supervisor waits for it.
    Running,
    /// Ended, to be run again by its restart policy.
    Restarting,
    /// Ended (its code in `exit_code`), or never started (`error`).
    Exited,
}

impl ContainerStatus {
    /// docker's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerStatus::Created => "created",
            ContainerStatus::Running => "running",
            ContainerStatus::Restarting => "restarting",
            ContainerStatus::Exited => "exited",
        }
    }
}

impl std::fmt::Display for ContainerStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Check a container name as docker does: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
///
/// ```
/// assert!(img_run::state::check_name("web-1.a_b").is_ok());
/// assert!(img_run::state::check_name("-x").is_err());
/// assert!(img_run::state::check_name("a/b").is_err());
/// ```
pub fn check_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "invalid container name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )))
    }
}

/// The pid in a temp directory's name `ID.new-PID` (leading dot stripped), if it is one.
fn maker_of_temp(name: &str) -> Option<u32> {
    name.rsplit_once(".new-")?.1.parse().ok()
}

/// A container directory being made: it exists under its id, locked (an exclusive `flock` on
/// the directory) until its `state.json` is written and this is dropped. A directory without
/// `state.json` that nobody holds is what a killed `run` left: [`ContainerState::sweep`]
/// removes it.
#[derive(Debug)]
pub struct Creating {
    _lock: std::fs::File,
}

impl ContainerState {
    /// The container directory of `id` under `root`.
    pub fn dir(root: &Path, id: &str) -> PathBuf {
        root.join("containers").join(id)
    }

    /// Make the (empty) directory of container `id`, locked until the returned value is
    /// dropped: write `state.json` before dropping it. The directory is made under a temp
    /// name carrying our pid (`.ID.new-PID`) and locked before it takes its id, so a
    /// concurrent sweep never sees it named and unlocked, and leaves the temp name alone while
    /// its maker lives (between its `mkdir` and its lock).
    pub fn create_dir(root: &Path, id: &str) -> Result<(PathBuf, Creating)> {
        let containers = root.join("containers");
        std::fs::create_dir_all(&containers).map_err(sys(containers.display()))?;
        let temp = containers.join(format!(".{id}.new-{}", std::process::id()));
        std::fs::create_dir(&temp).map_err(sys(temp.display()))?;
        let lock = std::fs::File::open(&temp).map_err(sys(temp.display()))?;
        lock.lock().map_err(sys(temp.display()))?;
        let dir = Self::dir(root, id);
        if let Err(e) = std::fs::rename(&temp, &dir) {
            let _ = std::fs::remove_dir(&temp);
            return Err(sys(dir.display())(e));
        }
        Ok((dir, Creating { _lock: lock }))
    }

    /// Remove a container's directory: first out of its name (one rename to
    /// `containers/.ID.rm-N`), then its files, so a removal killed half way leaves no record
    /// without its `state.json`; [`ContainerState::sweep`] finishes it.
    pub fn remove_dir(dir: &Path) -> Result<()> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parent = dir.parent().unwrap_or(Path::new("."));
        // A remapped container whose supervisor was killed may still have its rootfs mounted
        // (in the host's namespace): never remove files through it.
        crate::idmap::unmount_rootfs(dir);
        let doomed = parent.join(format!(".{name}.rm-{}", std::process::id()));
        match std::fs::rename(dir, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(sys(dir.display())(e)),
        }
        // A writer finishing in it (a dying container's overlay) can make a removal meet a
        // directory that is not empty yet: again, a few times.
        let mut tries = 0;
        loop {
            match crate::userns::remove_tree(&doomed) {
                // A sweep removing it at the same time is no failure.
                Err(_) if !doomed.exists() => return Ok(()),
                Err(Error::Sys { cause, .. })
                    if tries < 20 && cause.raw_os_error() == Some(libc::ENOTEMPTY) =>
                {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    /// Remove what killed commands left under `root/containers/`: removals begun
    /// (`.ID.rm-N`), directories made but never named (`.ID.new-PID` whose maker is gone), and
    /// directories without
    /// `state.json` whose maker is gone (nobody holds their lock). Returns how many.
    pub fn sweep(root: &Path) -> usize {
        let containers = root.join("containers");
        let mut removed = 0;
        for entry in std::fs::read_dir(&containers)
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let doomed = if name.starts_with('.') && name.contains(".rm-") {
                true
            } else if let Some(pid) = name.strip_prefix('.').and_then(maker_of_temp) {
                // Its maker may be between `mkdir` and `flock`: only a dead maker's is doomed.
                !Path::new("/proc").join(pid.to_string()).exists()
                    && std::fs::File::open(&path).is_ok_and(|f| f.try_lock().is_ok())
            } else if !path.join("state.json").exists() {
                // Unheld: its maker died before writing state.json.
                std::fs::File::open(&path).is_ok_and(|f| f.try_lock().is_ok())
                    && !path.join("state.json").exists()
            } else {
                false
            };
            if doomed && entry.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = crate::userns::remove_tree(&path);
                removed += 1;
            }
        }
        removed
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

    /// Read `dir/state.json`, change it with `change`, write it back, all under the
    /// container's lock (`DIR/.state.lock`): two writers — `img stop` marking it stopped and
    /// its supervisor deciding to restart it, a `rename` and a start — never lose each other's
    /// change. Returns the record written and what `change` returned.
    pub fn update<T>(
        dir: &Path,
        change: impl FnOnce(&mut ContainerState) -> T,
    ) -> Result<(ContainerState, T)> {
        let path = dir.join(".state.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(sys(path.display()))?;
        lock.lock().map_err(sys(path.display()))?;
        let mut state = ContainerState::load(dir)?;
        let before = serde_json::to_value(&state).ok();
        let out = change(&mut state);
        // Nothing written when nothing changed (a `rm` may be removing the directory).
        if serde_json::to_value(&state).ok() != before {
            state.save(dir)?;
        }
        Ok((state, out))
    }

    /// Whether its process is alive (a `running` record whose process is gone, or whose pid
    /// another process has now, is not).
    pub fn is_running(&self) -> bool {
        self.status == ContainerStatus::Running && self.pid.is_some_and(|p| p.identity().is_alive())
    }

    /// The pids (ours) of the container's processes, for `img top`: its cgroup's as root;
    /// a rootless container has none, so those that share its PID 1's PID namespace.
    pub fn pids(&self) -> Vec<u32> {
        if crate::userns::is_root() {
            return crate::cgroup::Cgroup::existing(&self.id).pids();
        }
        let Some(first) = self.pid.filter(|p| p.identity().is_alive()) else {
            return Vec::new();
        };
        let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
        let Some(want) = ns(&first.pid.to_string()) else {
            return Vec::new();
        };
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| ns(&pid.to_string()).as_ref() == Some(&want))
            .collect()
    }

    /// Whether its supervisor process is alive (and still the one recorded).
    pub fn supervisor_alive(&self) -> bool {
        self.supervisor.is_some_and(|p| p.identity().is_alive())
    }

    /// Every container under `root`, newest first; records that cannot be read are skipped.
    pub fn list(root: &Path) -> Vec<(PathBuf, ContainerState)> {
        let mut out: Vec<(PathBuf, ContainerState)> = std::fs::read_dir(root.join("containers"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
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

/// `pid` and `pid_start_time` in state.json, for [`ContainerState::pid`].
mod pid_fields {
    use super::Recorded;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Fields {
        #[serde(default)]
        pid: Option<u32>,
        #[serde(default)]
        pid_start_time: Option<u64>,
    }

    pub fn serialize<S: serde::Serializer>(r: &Option<Recorded>, s: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(
            &Fields {
                pid: r.map(|r| r.pid),
                pid_start_time: r.and_then(|r| r.start_time),
            },
            s,
        )
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Recorded>, D::Error> {
        let f: Fields = serde::Deserialize::deserialize(d)?;
        Ok(f.pid.map(|pid| Recorded {
            pid,
            start_time: f.pid_start_time,
        }))
    }
}

/// `supervisor` and `supervisor_start_time` in state.json, for [`ContainerState::supervisor`].
mod supervisor_fields {
    use super::Recorded;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Fields {
        #[serde(default)]
        supervisor: Option<u32>,
        #[serde(default)]
        supervisor_start_time: Option<u64>,
    }

    pub fn serialize<S: serde::Serializer>(r: &Option<Recorded>, s: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(
            &Fields {
                supervisor: r.map(|r| r.pid),
                supervisor_start_time: r.and_then(|r| r.start_time),
            },
            s,
        )
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Recorded>, D::Error> {
        let f: Fields = serde::Deserialize::deserialize(d)?;
        Ok(f.supervisor.map(|pid| Recorded {
            pid,
            start_time: f.supervisor_start_time,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_json_keeps_start_times_and_old_records_load() {
        let old = r#"{"id":"ab","name":"n","image":"i","command":["sleep"],"status":"running",
            "pid":4242,"supervisor":4241,"exit_code":null,"error":null,"created":"c",
            "started":null,"finished":null,"ports":[],"network":"Private",
            "auto_remove":false,"lowers":[]}"#;
        let mut state: ContainerState = serde_json::from_str(old).unwrap();
        assert_eq!(
            state.pid,
            Some(Recorded {
                pid: 4242,
                start_time: None
            })
        );
        assert_eq!(
            state.supervisor,
            Some(Recorded {
                pid: 4241,
                start_time: None
            })
        );
        state.pid = Some(Recorded {
            pid: 10,
            start_time: Some(11),
        });
        state.supervisor = None;
        let json: serde_json::Value = serde_json::to_value(&state).unwrap();
        assert_eq!(json["pid"], 10);
        assert_eq!(json["pid_start_time"], 11);
        assert!(json["supervisor"].is_null() && json["supervisor_start_time"].is_null());
        assert_eq!(json["name"], "n");
        let back: ContainerState = serde_json::from_value(json).unwrap();
        assert_eq!(back.pid, state.pid);
        assert_eq!(back.supervisor, None);
        // null pids (a created container) load as none
        let created = old.replace("4242", "null").replace("4241", "null");
        let state: ContainerState = serde_json::from_str(&created).unwrap();
        assert_eq!((state.pid, state.supervisor), (None, None));
    }

    #[test]
    fn ports_parse_like_docker() {
        let fields = |s: &str| {
            let p = Port::parse(s).unwrap();
            (p.host_ip, p.host_port, p.container_port)
        };
        assert_eq!(fields("16379:6379"), ("".into(), 16379, 6379));
        assert_eq!(fields("80"), ("".into(), 0, 80));
        assert_eq!(fields("127.0.0.1::80"), ("127.0.0.1".into(), 0, 80));
        assert_eq!(fields("0.0.0.0:8080:80/tcp"), ("0.0.0.0".into(), 8080, 80));
        assert_eq!(fields("[::1]:8080:80"), ("::1".into(), 8080, 80));
        assert_eq!(
            Port::parse("8080:80").unwrap().to_string(),
            "0.0.0.0:8080->80/tcp, [::]:8080->80/tcp"
        );
        assert_eq!(
            Port::parse("[::1]:8080:80").unwrap().to_string(),
            "[::1]:8080->80/tcp"
        );
        for bad in ["a:b", "1:2:3:4", "70000:1", "host:1:2", "0", "53/udp", ""] {
            assert!(Port::parse(bad).is_err(), "{bad}");
        }
        let e = Port::parse("53/udp").unwrap_err().to_string();
        assert!(e.contains("only tcp"), "{e}");
    }

    #[test]
    fn sweep_leaves_a_living_makers_temp_dir_and_removes_a_dead_ones() {
        let root = std::env::temp_dir().join(format!("img-sweep-test-{}", std::process::id()));
        let containers = root.join("containers");
        std::fs::create_dir_all(&containers).unwrap();
        // a maker between mkdir and flock: alive (us), its directory not locked yet
        let living = containers.join(format!(".aa.new-{}", std::process::id()));
        std::fs::create_dir(&living).unwrap();
        // a maker that died there
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = child.id();
        child.wait().unwrap();
        let dead = containers.join(format!(".bb.new-{dead_pid}"));
        std::fs::create_dir(&dead).unwrap();
        // a named directory whose maker died before writing state.json
        let orphan = containers.join("cc");
        std::fs::create_dir(&orphan).unwrap();

        let removed = ContainerState::sweep(&root);
        let (living_left, dead_left, orphan_left) =
            (living.exists(), dead.exists(), orphan.exists());
        let _ = std::fs::remove_dir_all(&root);
        assert!(living_left, "a living maker's temp directory was swept");
        assert!(!dead_left && !orphan_left);
        assert_eq!(removed, 2);
    }
}
