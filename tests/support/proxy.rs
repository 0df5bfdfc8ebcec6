//! `tools/faultproxy.py` as a test fixture: a fault-injecting proxy in front of the plain test
//! registry that looks like Docker Hub (token auth, blobs redirected to a CDN), started per
//! test on ephemeral ports and killed when dropped.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A running `tools/faultproxy.py`.
#[derive(Debug)]
pub struct Proxy {
    child: Child,
    registry: u16,
    token: u16,
    cdn: u16,
    /// The proxy's stderr (its request log with `--verbose`).
    log: PathBuf,
}

impl Proxy {
    /// Bring the test bed up, start `tools/faultproxy.py --upstream 127.0.0.1:5000
    /// --max-seconds 120 ARGS…` and wait for its port line. Panics (with the proxy's stderr)
    /// if it does not come up.
    pub fn start(args: &[&str]) -> Proxy {
        // the upstream must be up before the proxy can pass anything through
        super::testbed();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let logs = repo.join("target/test-roots");
        fs::create_dir_all(&logs).unwrap_or_else(|e| panic!("{}: {e}", logs.display()));
        let log = logs.join(format!("faultproxy-{}.log", super::unique()));
        let stderr = fs::File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let mut child = Command::new(repo.join("tools/faultproxy.py"))
            .args(["--upstream", "127.0.0.1:5000", "--max-seconds", "120"])
            .args(args)
            .current_dir(repo)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("cannot run tools/faultproxy.py");
        let mut line = String::new();
        let read = BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line);
        let ports: Option<Value> = read
            .ok()
            .filter(|&n| n > 0)
            .and_then(|_| serde_json::from_str(&line).ok());
        let port = |ports: &Value, role: &str| -> Option<u16> {
            ports[role].as_u64().and_then(|p| u16::try_from(p).ok())
        };
        let Some((registry, token, cdn)) = ports
            .as_ref()
            .and_then(|p| Some((port(p, "registry")?, port(p, "token")?, port(p, "cdn")?)))
        else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "faultproxy {args:?} did not start: stdout {line:?}, stderr:\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            );
        };
        Proxy {
            child,
            registry,
            token,
            cdn,
            log,
        }
    }

    /// The registry port's address, `127.0.0.1:P` (what references name).
    pub fn registry_addr(&self) -> String {
        format!("127.0.0.1:{}", self.registry)
    }

    /// The token port's address.
    pub fn token_addr(&self) -> String {
        format!("127.0.0.1:{}", self.token)
    }

    /// The CDN port's address.
    pub fn cdn_addr(&self) -> String {
        format!("127.0.0.1:{}", self.cdn)
    }

    /// `127.0.0.1:P/<image>`.
    pub fn reference(&self, image: &str) -> String {
        format!("{}/{image}", self.registry_addr())
    }

    /// The proxy's counters (`GET /_proxy/stats`), parsed.
    pub fn stats(&self) -> Value {
        let mut stream = TcpStream::connect(("127.0.0.1", self.registry))
            .unwrap_or_else(|e| panic!("faultproxy {}: {e}", self.registry_addr()));
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream
            .write_all(b"GET /_proxy/stats HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap();
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .expect("reading /_proxy/stats");
        let text = String::from_utf8_lossy(&response);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("not an HTTP response: {text}"));
        assert!(
            head.starts_with("HTTP/1.") && head.contains(" 200 "),
            "/_proxy/stats: {head}"
        );
        serde_json::from_str(body).unwrap_or_else(|e| panic!("/_proxy/stats: {e}: {body}"))
    }

    /// What the proxy wrote on stderr so far (its request log when started with `--verbose`).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("faultproxy log kept for inspection: {}", self.log.display());
        } else {
            let _ = fs::remove_file(&self.log);
        }
    }
}

/// A counter of [`Proxy::stats`] as a number (0 when absent).
pub fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}
