//! Health checks (`--health-cmd`, or the image's `HEALTHCHECK`), as docker runs them: the
//! container's supervisor runs the check inside the container (an `img __exec`, with the
//! container's confinement) every interval, with a timeout; `retries` failures in a row make
//! it unhealthy, failures during the start period do not count until a check has passed.
//! The outcome is kept in `DIR/health.json` (written only by the supervisor), which `ps`
//! and `inspect` show.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::exec::ExecConfig;
use crate::state::ContainerState;
use crate::{Error, Result};

/// The file beside `state.json`.
pub const FILE: &str = "health.json";

/// The most of a check's output kept (docker keeps 4 KiB).
const OUTPUT_MAX: usize = 4096;

/// How a container is checked (docker's `Healthcheck`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// `["CMD-SHELL", "cmd"]` (run by `/bin/sh -c`), or `["CMD", "prog", "arg", …]`.
    pub test: Vec<String>,
    /// Between checks (docker's default 30 s).
    pub interval: Duration,
    /// A check that takes longer fails (default 30 s).
    pub timeout: Duration,
    /// Failures in a row that make it unhealthy (default 3).
    pub retries: u32,
    /// Failures this early do not count until a check has passed (default 0).
    pub start_period: Duration,
}

impl HealthCheck {
    /// A check of `--health-cmd CMD` (or `test` given whole), docker's defaults where `None`.
    pub fn new(
        test: Vec<String>,
        interval: Option<Duration>,
        timeout: Option<Duration>,
        retries: Option<u32>,
        start_period: Option<Duration>,
    ) -> HealthCheck {
        // docker: 0 means the default
        let or_default = |d: Option<Duration>| {
            d.filter(|d| !d.is_zero())
                .unwrap_or(Duration::from_secs(30))
        };
        HealthCheck {
            test,
            interval: or_default(interval),
            timeout: or_default(timeout),
            retries: retries.unwrap_or(3),
            start_period: start_period.unwrap_or_default(),
        }
    }

    /// The image's `HEALTHCHECK` (the config's `Healthcheck`, durations in nanoseconds), unless
    /// it says `NONE`.
    pub fn of_image(config: &serde_json::Value) -> Option<HealthCheck> {
        let h = &config["config"]["Healthcheck"];
        let test: Vec<String> = serde_json::from_value(h["Test"].clone()).ok()?;
        if test.first().is_none_or(|t| t == "NONE") {
            return None;
        }
        let nanos = |key: &str| h[key].as_u64().filter(|n| *n > 0).map(Duration::from_nanos);
        Some(HealthCheck::new(
            test,
            nanos("Interval"),
            nanos("Timeout"),
            h["Retries"].as_u64().filter(|r| *r > 0).map(|r| r as u32),
            nanos("StartPeriod"),
        ))
    }

    /// The command to run inside.
    fn command(&self) -> Result<Vec<String>> {
        match self.test.split_first() {
            Some((kind, rest)) if kind == "CMD-SHELL" => Ok(["/bin/sh", "-c"]
                .into_iter()
                .map(String::from)
                .chain(rest.iter().cloned())
                .collect()),
            Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => Ok(rest.to_vec()),
            _ => Err(Error::Config(format!(
                "a health check must be CMD or CMD-SHELL: {:?}",
                self.test
            ))),
        }
    }
}

/// Parse a Go duration as docker's flags take it: `30s`, `1m30s`, `500ms`, `1h`.
///
/// ```
/// use std::time::Duration;
/// use img_run::health::parse_duration;
/// assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
/// assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
/// assert!(parse_duration("10").is_err() && parse_duration("3 days").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration> {
    let bad = || {
        Error::Config(format!(
            "invalid duration {text:?}: expected e.g. 30s, 1m30s, 500ms"
        ))
    };
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total = Duration::try_from_secs_f64(number * seconds)
            .ok()
            .and_then(|d| total.checked_add(d))
            .ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// What the checks found so far (docker's `State.Health`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
    /// Failures in a row.
    pub failing_streak: u32,
    /// The last five checks, oldest first.
    pub log: Vec<Probe>,
}

/// One check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// When it began and ended (RFC 3339).
    pub start: String,
    /// When it ended.
    pub end: String,
    /// Its exit code (-1: it took longer than the timeout).
    pub exit_code: i32,
    /// What it printed (at most 4 KiB, as docker keeps).
    pub output: String,
}

impl Health {
    /// Read `dir/health.json` (a container without checks has none).
    pub fn load(dir: &Path) -> Option<Health> {
        let bytes = std::fs::read(dir.join(FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(FILE);
        let tmp = dir.join(format!(".{FILE}.{}", std::process::id()));
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Config(e.to_string()))?;
        std::fs::write(&tmp, bytes).map_err(crate::error::sys(tmp.display()))?;
        std::fs::rename(&tmp, &path).map_err(crate::error::sys(path.display()))
    }

    /// The verdict after `probe`, for a check `since_start` after the container started.
    fn record(&mut self, probe: Probe, check: &HealthCheck, since_start: Duration) {
        let passed = probe.exit_code == 0;
        if passed {
            self.status = "healthy".into();
            self.failing_streak = 0;
        } else if self.status != "starting" || since_start >= check.start_period {
            // in the start period, failures count only once a check has passed
            self.failing_streak += 1;
            if self.failing_streak >= check.retries {
                self.status = "unhealthy".into();
            }
        }
        self.log.push(probe);
        if self.log.len() > 5 {
            self.log.remove(0);
        }
    }
}

/// In the supervisor: check the container in `dir` (its PID 1 recorded in `state`) until
/// `stop` is set; `exe` runs `__exec`.
pub fn watch(
    dir: PathBuf,
    exe: PathBuf,
    state: &ContainerState,
    check: HealthCheck,
) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let Some(pid) = state.pid else {
        return stop;
    };
    let started = Instant::now();
    let config = ExecConfig {
        id: state.id.clone(),
        spec: dir.join("config.json"),
        pid: pid.pid,
        start_time: pid.start_time,
        args: Vec::new(),
        env: Vec::new(),
        user: None,
        workdir: None,
        tty: false,
    };
    let stopped = stop.clone();
    std::thread::spawn(move || {
        let mut health = Health {
            status: "starting".into(),
            ..Health::default()
        };
        let _ = health.save(&dir);
        let Ok(args) = check.command() else { return };
        let config = ExecConfig { args, ..config };
        loop {
            // docker's order: the first check one interval after the start
            let deadline = Instant::now() + check.interval;
            while Instant::now() < deadline {
                if stopped.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50).min(check.interval));
            }
            let probe = probe(&dir, &exe, &config, check.timeout, &stopped);
            if stopped.load(Ordering::Relaxed) {
                return;
            }
            health.record(probe, &check, started.elapsed());
            let _ = health.save(&dir);
        }
    });
    stop
}

/// Run the check once inside the container.
fn probe(
    dir: &Path,
    exe: &Path,
    config: &ExecConfig,
    timeout: Duration,
    stop: &AtomicBool,
) -> Probe {
    let now = || jiff::Timestamp::now().to_string();
    let start = now();
    let failed = |output: String| Probe {
        start: start.clone(),
        end: now(),
        exit_code: -1,
        output,
    };
    let path = match crate::exec::write_config(dir, config) {
        Ok(p) => p,
        Err(e) => return failed(e.to_string()),
    };
    let child = Command::new(exe)
        .arg("__exec")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            return failed(format!("starting the check: {e}"));
        }
    };
    // Both pipes read at once, at most 4 KiB kept (docker's), the rest drained and dropped:
    // a check that prints without end neither fills our memory nor blocks on a full pipe.
    let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|e| Box::new(e) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut pipe| {
        let output = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut kept) = output.lock() {
                    let room = OUTPUT_MAX.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        })
    })
    .collect();
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline && !stop.load(Ordering::Relaxed) => {
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => {
                // SIGTERM is passed on to the check by `__exec`; the check dies with it (its
                // parent-death signal, set by `__exec`) when SIGKILL follows.
                // SAFETY: signals to our own unreaped child.
                unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
                let grace = Instant::now() + Duration::from_secs(1);
                while Instant::now() < grace && matches!(child.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let _ = std::fs::remove_file(&path);
    // What the check wrote before it ended; a process it left behind holding the pipes is not
    // waited for beyond a moment.
    let settle = Instant::now() + Duration::from_millis(500);
    while readers.iter().any(|r| !r.is_finished()) && Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(5));
    }
    let bytes = output.lock().map(|o| o.clone()).unwrap_or_default();
    let output = String::from_utf8_lossy(&bytes).into_owned();
    match status {
        Some(s) => Probe {
            start,
            end: now(),
            exit_code: s.code().unwrap_or(-1),
            output,
        },
        None => failed(format!(
            "Health check exceeded timeout ({}s)",
            timeout.as_secs_f64()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(code: i32) -> Probe {
        Probe {
            start: String::new(),
            end: String::new(),
            exit_code: code,
            output: String::new(),
        }
    }

    #[test]
    fn retries_and_the_start_period_as_docker_counts_them() {
        let check = HealthCheck::new(
            vec!["CMD".into(), "true".into()],
            None,
            None,
            Some(2),
            Some(Duration::from_secs(10)),
        );
        let mut h = Health {
            status: "starting".into(),
            ..Health::default()
        };
        // failures in the start period do not count before a pass
        h.record(probe(1), &check, Duration::from_secs(1));
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 0));
        h.record(probe(0), &check, Duration::from_secs(2));
        assert_eq!((h.status.as_str(), h.failing_streak), ("healthy", 0));
        // after a pass, they do, even in the start period
        h.record(probe(1), &check, Duration::from_secs(3));
        assert_eq!((h.status.as_str(), h.failing_streak), ("healthy", 1));
        h.record(probe(1), &check, Duration::from_secs(4));
        assert_eq!((h.status.as_str(), h.failing_streak), ("unhealthy", 2));
        for _ in 0..5 {
            h.record(probe(0), &check, Duration::from_secs(20));
        }
        assert_eq!(h.status, "healthy");
        assert_eq!(h.log.len(), 5);
        assert_eq!(
            HealthCheck::new(
                vec!["CMD-SHELL".into(), "a && b".into()],
                None,
                None,
                None,
                None
            )
            .command()
            .unwrap(),
            ["/bin/sh", "-c", "a && b"]
        );
        assert!(
            HealthCheck::new(vec!["NONE".into()], None, None, None, None)
                .command()
                .is_err()
        );
    }

    #[test]
    fn an_images_healthcheck_in_nanoseconds() {
        let config = serde_json::json!({"config": {"Healthcheck": {
            "Test": ["CMD-SHELL", "redis-cli ping"], "Interval": 5_000_000_000u64, "Retries": 4
        }}});
        let check = HealthCheck::of_image(&config).unwrap();
        assert_eq!(check.interval, Duration::from_secs(5));
        assert_eq!(check.timeout, Duration::from_secs(30));
        assert_eq!(check.retries, 4);
        let none = serde_json::json!({"config": {"Healthcheck": {"Test": ["NONE"]}}});
        assert!(HealthCheck::of_image(&none).is_none());
    }
}
