//! Credentials: where they come from (`--creds`, containers' `auth.json`, docker's
//! `config.json`, `docker-credential-*` helpers) and where `img login` puts them.
//!
//! No secret ever enters an error message: errors name the file, the helper or the registry.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::reference::DOCKER_HUB;
use crate::{Credentials, Error, Result};

/// What a registry may be offered.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// A user name and password, for Basic auth or a token request.
    Basic(Credentials),
    /// An OAuth2 refresh token (`identitytoken`), exchanged at the token realm.
    IdentityToken(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Basic(c) => write!(f, "{c:?}"),
            Secret::IdentityToken(_) => write!(f, "IdentityToken(***)"),
        }
    }
}

/// Where credentials are looked up.
#[derive(Debug, Clone, Default)]
pub struct AuthFiles {
    /// An explicit file (`--authfile`, `REGISTRY_AUTH_FILE`): the only one read when set.
    pub authfile: Option<PathBuf>,
}

impl AuthFiles {
    /// The files read, in order: the explicit one; else `$XDG_RUNTIME_DIR/containers/auth.json`
    /// and docker's `config.json` (`$DOCKER_CONFIG`, `~/.docker`).
    pub fn search_path(&self) -> Vec<PathBuf> {
        if let Some(f) = &self.authfile {
            return vec![f.clone()];
        }
        let mut out = Vec::new();
        if let Some(run) = std::env::var_os("XDG_RUNTIME_DIR") {
            out.push(PathBuf::from(run).join("containers/auth.json"));
        }
        out.push(docker_config());
        out
    }

    /// The file `img login` writes: the explicit one, else docker's `config.json`.
    pub fn login_file(&self) -> PathBuf {
        self.authfile.clone().unwrap_or_else(docker_config)
    }

    /// Credentials for `registry` (`host:port` or `docker.io`) and `repository`, if any file
    /// or helper has them.
    pub fn lookup(&self, registry: &str, repository: &str) -> Result<Option<Secret>> {
        if let Some(f) = &self.authfile
            && !f.is_file()
        {
            return Err(Error::Config {
                path: f.clone(),
                reason: "credentials file not found".into(),
            });
        }
        for path in self.search_path() {
            let Some(file) = read_json(&path)? else {
                continue;
            };
            if let Some(secret) = lookup_in(&path, &file, registry, repository)? {
                return Ok(Some(secret));
            }
        }
        Ok(None)
    }
}

fn docker_config() -> PathBuf {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(d) => PathBuf::from(d).join("config.json"),
        None => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/root"))
            .join(".docker/config.json"),
    }
}

fn read_json(path: &Path) -> Result<Option<Map<String, Value>>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::Config {
                path: path.to_path_buf(),
                reason: e.to_string(),
            });
        }
    };
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        Ok(_) => Err(Error::Config {
            path: path.to_path_buf(),
            reason: "not a JSON object".into(),
        }),
        Err(e) => Err(Error::Config {
            path: path.to_path_buf(),
            reason: format!("invalid JSON: {e}"),
        }),
    }
}

/// The registry part of an `auths` key: scheme, `/v1/` paths and Docker Hub's aliases folded.
fn normalize_key(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let key = key
        .trim_end_matches('/')
        .trim_end_matches("/v1")
        .trim_end_matches("/v2");
    let (host, path) = key.split_once('/').unwrap_or((key, ""));
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => DOCKER_HUB,
        h => h,
    };
    if path.is_empty() {
        host.to_string()
    } else {
        format!("{host}/{path}")
    }
}

/// What a helper is asked for: Docker Hub is known to helpers by its legacy URL.
fn server_url(registry: &str) -> String {
    if registry == DOCKER_HUB {
        "https://index.docker.io/v1/".to_string()
    } else {
        registry.to_string()
    }
}

fn lookup_in(
    path: &Path,
    file: &Map<String, Value>,
    registry: &str,
    repository: &str,
) -> Result<Option<Secret>> {
    if let Some(helper) = cred_helper(file, registry) {
        return helper_get(helper, registry);
    }
    if let Some(auths) = file.get("auths").and_then(|a| a.as_object()) {
        // The most specific key wins: host/ns/repo, host/ns, host.
        let full = format!("{registry}/{repository}");
        let best = auths
            .iter()
            .map(|(k, v)| (normalize_key(k), v))
            .filter(|(k, _)| k == registry || full == *k || full.starts_with(&format!("{k}/")))
            .max_by_key(|(k, _)| k.len());
        if let Some((key, entry)) = best {
            return entry_secret(path, &key, entry).map(Some);
        }
    }
    if let Some(store) = file.get("credsStore").and_then(|s| s.as_str()) {
        return helper_get(store, registry);
    }
    Ok(None)
}

fn entry_secret(path: &Path, key: &str, entry: &Value) -> Result<Secret> {
    let bad = |reason: &str| Error::Config {
        path: path.to_path_buf(),
        reason: format!("auths entry {key:?}: {reason}"),
    };
    let field = |k: &str| {
        entry
            .get(k)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
    };
    if let Some(token) = field("identitytoken") {
        return Ok(Secret::IdentityToken(token.to_string()));
    }
    if let Some(auth) = field("auth") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad("\"auth\" is not base64"))?;
        let text = String::from_utf8(raw).map_err(|_| bad("\"auth\" is not UTF-8"))?;
        return Credentials::parse(&text)
            .map(Secret::Basic)
            .ok_or_else(|| bad("\"auth\" is not USER:PASSWORD"));
    }
    match (field("username"), field("password")) {
        (Some(u), Some(p)) => Ok(Secret::Basic(Credentials {
            username: u.to_string(),
            password: p.to_string(),
        })),
        _ => Err(bad("neither auth, username/password nor identitytoken")),
    }
}

/// Run `docker-credential-NAME get`.
fn helper_get(name: &str, registry: &str) -> Result<Option<Secret>> {
    let (ok, stdout, stderr) = run_helper(name, "get", server_url(registry).as_bytes())?;
    if !ok {
        if stderr.contains("not found") || stdout.contains("not found") {
            return Ok(None);
        }
        return Err(helper_error(
            name,
            "get",
            stderr.lines().next().unwrap_or("failed"),
        ));
    }
    let v: Value = serde_json::from_str(&stdout)
        .map_err(|_| helper_error(name, "get", "answered something other than JSON"))?;
    let user = v.get("Username").and_then(|u| u.as_str()).unwrap_or("");
    let secret = v.get("Secret").and_then(|s| s.as_str()).unwrap_or("");
    if secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if user == "<token>" {
        Secret::IdentityToken(secret.to_string())
    } else {
        Secret::Basic(Credentials {
            username: user.to_string(),
            password: secret.to_string(),
        })
    }))
}

fn run_helper(name: &str, verb: &str, input: &[u8]) -> Result<(bool, String, String)> {
    let program = format!("docker-credential-{name}");
    let mut child = Command::new(&program)
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| helper_error(name, verb, &e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input)
            .map_err(|e| helper_error(name, verb, &e.to_string()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| helper_error(name, verb, &e.to_string()))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    ))
}

fn helper_error(name: &str, verb: &str, reason: &str) -> Error {
    Error::CredentialHelper {
        helper: format!("docker-credential-{name}"),
        verb: verb.to_string(),
        reason: reason.to_string(),
    }
}

/// Store credentials for `registry` as docker does: through the file's credential helper when
/// it names one for the registry, else base64 in its `auths`, the file written atomically with
/// mode 0600. Returns where they went.
pub fn store(file: &Path, registry: &str, creds: &Credentials) -> Result<String> {
    let mut config = read_json(file)?.unwrap_or_default();
    if let Some(helper) = helper_for(&config, registry) {
        let input = serde_json::json!({
            "ServerURL": server_url(registry),
            "Username": creds.username,
            "Secret": creds.password,
        });
        let (ok, _, stderr) = run_helper(&helper, "store", input.to_string().as_bytes())?;
        if !ok {
            return Err(helper_error(
                &helper,
                "store",
                stderr.lines().next().unwrap_or("failed"),
            ));
        }
        return Ok(format!("docker-credential-{helper}"));
    }
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", creds.username, creds.password));
    let auths = config
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(auths) = auths.as_object_mut() else {
        return Err(Error::Config {
            path: file.to_path_buf(),
            reason: "\"auths\" is not an object".into(),
        });
    };
    auths.retain(|k, _| normalize_key(k) != registry);
    auths.insert(key_for(registry), serde_json::json!({ "auth": auth }));
    write_private(file, &Value::Object(config))?;
    Ok(file.display().to_string())
}

/// Remove credentials for `registry`. Returns whether there were any.
pub fn erase(file: &Path, registry: &str) -> Result<bool> {
    let Some(mut config) = read_json(file)? else {
        return Ok(false);
    };
    if let Some(helper) = helper_for(&config, registry) {
        let (ok, _, _) = run_helper(&helper, "erase", server_url(registry).as_bytes())?;
        return Ok(ok);
    }
    let removed = match config.get_mut("auths").and_then(|a| a.as_object_mut()) {
        Some(auths) => {
            let before = auths.len();
            auths.retain(|k, _| normalize_key(k) != registry);
            before != auths.len()
        }
        None => false,
    };
    if removed {
        write_private(file, &Value::Object(config))?;
    }
    Ok(removed)
}

/// The `credHelpers` entry for `registry`.
fn cred_helper<'a>(config: &'a Map<String, Value>, registry: &str) -> Option<&'a str> {
    config
        .get("credHelpers")?
        .as_object()?
        .iter()
        .find(|(k, _)| normalize_key(k) == registry)
        .and_then(|(_, v)| v.as_str())
}

/// The helper that keeps `registry`'s credentials: its `credHelpers` entry, else `credsStore`.
fn helper_for(config: &Map<String, Value>, registry: &str) -> Option<String> {
    cred_helper(config, registry)
        .or_else(|| config.get("credsStore").and_then(|s| s.as_str()))
        .map(str::to_string)
}

/// The key docker writes for a registry.
fn key_for(registry: &str) -> String {
    if registry == DOCKER_HUB {
        "https://index.docker.io/v1/".to_string()
    } else {
        registry.to_string()
    }
}

fn write_private(path: &Path, value: &Value) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e: std::io::Error| Error::Config {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let temp = dir.join(format!(
        ".{}.{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("auth"),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)?;
        f.write_all(&serde_json::to_vec_pretty(value).unwrap_or_default())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("img-auth-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn basic(u: &str, p: &str) -> Option<Secret> {
        Some(Secret::Basic(Credentials {
            username: u.into(),
            password: p.into(),
        }))
    }

    #[test]
    fn reads_every_entry_form() {
        let dir = temp("forms");
        let file = dir.join("auth.json");
        let b64 = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        std::fs::write(
            &file,
            serde_json::json!({"auths": {
                "https://index.docker.io/v1/": {"auth": b64},
                "127.0.0.1:5001": {"username": "bob", "password": "pw"},
                "127.0.0.1:5001/team": {"auth": base64::engine::general_purpose::STANDARD.encode("team:tpw")},
                "quay.io": {"identitytoken": "refresh"},
                "broken.io": {"auth": "%%%"},
            }})
            .to_string(),
        )
        .unwrap();
        let files = AuthFiles {
            authfile: Some(file.clone()),
        };
        assert_eq!(
            files.lookup("docker.io", "library/redis").unwrap(),
            basic("alice", "s3cret")
        );
        assert_eq!(
            files.lookup("127.0.0.1:5001", "other/app").unwrap(),
            basic("bob", "pw")
        );
        assert_eq!(
            files.lookup("127.0.0.1:5001", "team/app").unwrap(),
            basic("team", "tpw")
        );
        assert_eq!(
            files.lookup("quay.io", "x").unwrap(),
            Some(Secret::IdentityToken("refresh".into()))
        );
        assert_eq!(files.lookup("ghcr.io", "x").unwrap(), None);
        let err = files.lookup("broken.io", "x").unwrap_err().to_string();
        assert!(
            err.contains("broken.io") && err.contains("auth.json"),
            "{err}"
        );
        assert!(!format!("{:?}", files.lookup("docker.io", "x").unwrap()).contains("s3cret"));
    }

    #[test]
    fn login_writes_docker_format_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp("login");
        let file = dir.join("config.json");
        std::fs::write(&file, r#"{"auths":{},"psFormat":"keep me"}"#).unwrap();
        let creds = Credentials {
            username: "u".into(),
            password: "p:w".into(),
        };
        store(&file, "127.0.0.1:5001", &creds).unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let v: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(v["psFormat"], "keep me");
        assert_eq!(
            v["auths"]["127.0.0.1:5001"]["auth"],
            base64::engine::general_purpose::STANDARD.encode("u:p:w")
        );
        let files = AuthFiles {
            authfile: Some(file.clone()),
        };
        assert_eq!(
            files.lookup("127.0.0.1:5001", "a").unwrap(),
            basic("u", "p:w")
        );
        assert!(erase(&file, "127.0.0.1:5001").unwrap());
        assert!(!erase(&file, "127.0.0.1:5001").unwrap());
        assert_eq!(files.lookup("127.0.0.1:5001", "a").unwrap(), None);
    }

    #[test]
    fn a_missing_explicit_file_is_an_error() {
        let files = AuthFiles {
            authfile: Some(PathBuf::from("/nonexistent/auth.json")),
        };
        let err = files.lookup("x.io", "a").unwrap_err().to_string();
        assert!(err.contains("/nonexistent/auth.json"), "{err}");
    }
}
