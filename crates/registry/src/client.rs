//! Talking to one registry: scheme choice, TLS with certs.d CAs, auth challenges, and turning
//! error responses into errors that carry the registry's code.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use img_store::Digest;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};

use crate::error::root_cause;
use crate::reference::is_loopback;
use crate::{Error, Result};

/// The largest manifest accepted (distribution's own limit is 4 MiB).
pub const MAX_MANIFEST: usize = 4 * 1024 * 1024;

/// A user name and password. Its `Debug` form hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or token.
    pub password: String,
}

impl Credentials {
    /// Parse `USER:PASS` (the password may contain ':').
    pub fn parse(s: &str) -> Option<Credentials> {
        let (u, p) = s.split_once(':')?;
        (!u.is_empty()).then(|| Credentials {
            username: u.to_string(),
            password: p.to_string(),
        })
    }

    fn basic(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}:***)", self.username)
    }
}

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Credentials offered to every registry that asks (`--creds`).
    pub credentials: Option<Credentials>,
    /// Directories holding `HOST:PORT/*.crt` CA files, searched in order.
    pub cert_dirs: Vec<PathBuf>,
    /// How long to wait for a connection.
    pub connect_timeout: Duration,
    /// The `User-Agent` header.
    pub user_agent: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            credentials: None,
            cert_dirs: vec![
                PathBuf::from("/etc/containers/certs.d"),
                PathBuf::from("/etc/docker/certs.d"),
            ],
            connect_timeout: Duration::from_secs(15),
            user_agent: concat!("img/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// A connection to one registry's API. Cheap to share behind an `Arc`; caches the scheme that
/// worked and the authorization each scope earned.
#[derive(Debug)]
pub struct Registry {
    name: String,
    host: String,
    schemes: Vec<&'static str>,
    scheme: AtomicUsize,
    http: reqwest::Client,
    credentials: Option<Credentials>,
    auth: Mutex<HashMap<String, HeaderValue>>,
}

/// A manifest as fetched.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The exact bytes (their digest is the manifest's identity).
    pub bytes: Vec<u8>,
    /// The `Content-Type` the registry gave.
    pub media_type: Option<String>,
    /// The digest of `bytes`.
    pub digest: Digest,
}

impl Registry {
    /// Prepare to talk to `registry` (as named in a reference: `docker.io`, `127.0.0.1:5000`).
    /// Loopback registries are spoken to in plain http unless a CA is configured for them (then
    /// https first), falling back to the other scheme when the first cannot connect; all others
    /// use https only.
    pub fn new(registry: &str, options: &ClientOptions) -> Result<Registry> {
        let host = crate::reference::api_host(registry).to_string();
        let cas = ca_files(&options.cert_dirs, registry)?;
        let schemes = match (is_loopback(registry), cas.is_empty()) {
            (true, true) => vec!["http", "https"],
            (true, false) => vec!["https", "http"],
            (false, _) => vec!["https"],
        };
        let mut builder = reqwest::Client::builder()
            .user_agent(&options.user_agent)
            .connect_timeout(options.connect_timeout)
            .tcp_nodelay(true)
            .no_proxy();
        if schemes[0] == "https" || schemes.len() > 1 {
            builder = builder.tls_backend_preconfigured(tls_config(&cas)?);
        }
        let http = builder.build().map_err(|e| Error::Client(root_cause(&e)))?;
        Ok(Registry {
            name: registry.to_string(),
            host,
            schemes,
            scheme: AtomicUsize::new(0),
            http,
            credentials: options.credentials.clone(),
            auth: Mutex::new(HashMap::new()),
        })
    }

    /// The registry's name as references spell it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Fetch a manifest by tag or digest. When `expected` is given (a pinned reference, or an
    /// index's entry) the bytes must hash to it.
    pub async fn manifest(
        &self,
        repository: &str,
        reference: &str,
        expected: Option<&Digest>,
    ) -> Result<FetchedManifest> {
        let sep = if img_store::digest::parse(reference).is_ok() {
            '@'
        } else {
            ':'
        };
        let what = format!("manifest {}/{repository}{sep}{reference}", self.name);
        let path = format!("/v2/{repository}/manifests/{reference}");
        let mut resp = self
            .get(&what, repository, &path, Some(img_store::manifest::ACCEPT))
            .await?;
        let media_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let announced = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| img_store::digest::parse(v).ok());
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| Error::Interrupted {
            what: what.clone(),
            reason: root_cause(&e),
        })? {
            if bytes.len() + chunk.len() > MAX_MANIFEST {
                return Err(Error::Protocol {
                    what,
                    reason: format!("manifest larger than {MAX_MANIFEST} bytes"),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        let like = expected.or(announced.as_ref());
        let digest = match like {
            Some(d) => img_store::digest::of_bytes_like(d, &bytes)?,
            None => img_store::digest::sha256(&bytes),
        };
        for want in [expected, announced.as_ref()].into_iter().flatten() {
            if want.algorithm() == digest.algorithm() && want != &digest {
                return Err(img_store::Error::DigestMismatch {
                    expected: want.clone(),
                    actual: digest,
                }
                .into());
            }
        }
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// Start a blob download; the caller streams the body with [`Response::chunk`].
    pub async fn blob(&self, repository: &str, digest: &Digest) -> Result<Response> {
        let what = format!("blob {digest} of {}/{repository}", self.name);
        let path = format!("/v2/{repository}/blobs/{digest}");
        self.get(&what, repository, &path, None).await
    }

    /// GET `path`, answering one auth challenge if the registry sends one, and turn an error
    /// status into an [`Error`].
    async fn get(
        &self,
        what: &str,
        repository: &str,
        path: &str,
        accept: Option<&str>,
    ) -> Result<Response> {
        let scope = format!("repository:{repository}:pull");
        let mut challenged = false;
        loop {
            let resp = self.send(Method::GET, path, accept, &scope).await?;
            if resp.status() == StatusCode::UNAUTHORIZED && !challenged {
                challenged = true;
                if self.answer_challenge(what, &resp, &scope).await? {
                    continue;
                }
            }
            return check(what, &self.name, resp).await;
        }
    }

    /// Send a request on the current scheme, moving to the next one when it cannot connect.
    async fn send(
        &self,
        method: Method,
        path: &str,
        accept: Option<&str>,
        scope: &str,
    ) -> Result<Response> {
        loop {
            let i = self.scheme.load(Ordering::Relaxed);
            let url = format!("{}://{}{path}", self.schemes[i], self.host);
            let mut req = self.http.request(method.clone(), &url);
            if let Some(a) = accept {
                req = req.header(ACCEPT, a);
            }
            if let Some(auth) = self.cached_auth(scope) {
                req = req.header(AUTHORIZATION, auth);
            }
            let can_fall_back = i + 1 < self.schemes.len();
            match req.send().await {
                Ok(resp) if can_fall_back && speaks_https_only(&resp) => {}
                Ok(resp) => return Ok(resp),
                Err(e) if can_fall_back && (e.is_connect() || e.is_request()) => {}
                Err(e) => {
                    return Err(Error::Unreachable {
                        registry: self.name.clone(),
                        reason: root_cause(&e),
                    });
                }
            }
            let _ = self
                .scheme
                .compare_exchange(i, i + 1, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    fn cached_auth(&self, scope: &str) -> Option<HeaderValue> {
        let auth = self.auth.lock().unwrap_or_else(|p| p.into_inner());
        auth.get(scope).or_else(|| auth.get("")).cloned()
    }

    fn remember_auth(&self, scope: &str, value: &str) -> Result<()> {
        let mut header = HeaderValue::from_str(value).map_err(|_| Error::Protocol {
            what: format!("authorization for {}", self.name),
            reason: "credentials contain characters not allowed in a header".into(),
        })?;
        header.set_sensitive(true);
        self.auth
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(scope.to_string(), header);
        Ok(())
    }

    /// Earn an authorization for `scope` from a 401's challenge. Returns whether a retry can
    /// succeed.
    async fn answer_challenge(&self, what: &str, resp: &Response, scope: &str) -> Result<bool> {
        let Some(challenge) = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(Challenge::parse)
        else {
            return Ok(false);
        };
        match challenge.scheme.as_str() {
            "basic" => match &self.credentials {
                Some(c) => {
                    // Basic credentials are good for every repository of the registry.
                    self.remember_auth("", &c.basic())?;
                    Ok(true)
                }
                None => Ok(false),
            },
            "bearer" => {
                let token = self.token(what, &challenge, scope).await?;
                self.remember_auth(scope, &format!("Bearer {token}"))?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Fetch a Bearer token from the challenge's realm.
    async fn token(&self, what: &str, challenge: &Challenge, scope: &str) -> Result<String> {
        let realm = challenge
            .params
            .get("realm")
            .ok_or_else(|| Error::Protocol {
                what: what.to_string(),
                reason: "Bearer challenge without a realm".into(),
            })?;
        let mut params: Vec<(&str, &str)> = Vec::new();
        if let Some(service) = challenge.params.get("service") {
            params.push(("service", service));
        }
        params.push((
            "scope",
            challenge.params.get("scope").map_or(scope, String::as_str),
        ));
        let url = reqwest::Url::parse_with_params(realm, &params).map_err(|e| Error::Protocol {
            what: what.to_string(),
            reason: format!("bad token realm {realm:?}: {e}"),
        })?;
        let mut req = self.http.get(url);
        if let Some(c) = &self.credentials {
            req = req.header(AUTHORIZATION, c.basic());
        }
        let resp = req.send().await.map_err(|e| Error::Unreachable {
            registry: realm.clone(),
            reason: root_cause(&e),
        })?;
        let resp = check(&format!("token for {what}"), &self.name, resp).await?;
        let body: serde_json::Value =
            resp.json_bytes().await.map_err(|reason| Error::Protocol {
                what: format!("token for {what}"),
                reason,
            })?;
        body.get("token")
            .or_else(|| body.get("access_token"))
            .and_then(|t| t.as_str())
            .map(str::to_string)
            .ok_or_else(|| Error::Protocol {
                what: format!("token for {what}"),
                reason: "the token answer has neither token nor access_token".into(),
            })
    }
}

/// Read a small JSON body.
trait JsonBytes {
    async fn json_bytes(self) -> Result<serde_json::Value, String>;
}

impl JsonBytes for Response {
    async fn json_bytes(self) -> Result<serde_json::Value, String> {
        let bytes = self.bytes().await.map_err(|e| root_cause(&e))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("invalid JSON: {e}"))
    }
}

/// Pass a success through; turn anything else into an error with the registry's code.
async fn check(what: &str, registry: &str, resp: Response) -> Result<Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.bytes().await.unwrap_or_default();
    let first = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("errors")?.get(0).cloned());
    let field = |k: &str| {
        first
            .as_ref()
            .and_then(|e| e.get(k)?.as_str().map(str::to_string))
    };
    let (code, message) = (field("code"), field("message"));
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(Error::Unauthorized {
            what: what.to_string(),
            registry: registry.to_string(),
            code,
            message,
        });
    }
    Err(Error::Status {
        what: what.to_string(),
        status,
        code,
        message,
    })
}

/// Go's TLS server answers plain http with a 400 saying so.
fn speaks_https_only(resp: &Response) -> bool {
    resp.status() == StatusCode::BAD_REQUEST && resp.headers().get(CONTENT_TYPE).is_none()
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, PartialEq)]
struct Challenge {
    scheme: String,
    params: HashMap<String, String>,
}

impl Challenge {
    fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        let mut params = HashMap::new();
        let mut rest = rest.trim();
        while !rest.is_empty() {
            let (key, after) = rest.split_once('=')?;
            let after = after.trim_start();
            let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
                let end = quoted.find('"')?;
                (&quoted[..end], &quoted[end + 1..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (&after[..end], &after[end..])
            };
            params.insert(key.trim().to_ascii_lowercase(), value.to_string());
            rest = tail.trim_start().trim_start_matches(',').trim_start();
        }
        Some(Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params,
        })
    }
}

/// The CA files configured for `registry` in the certs.d trees (`*.crt`, as docker and podman
/// read them).
fn ca_files(dirs: &[PathBuf], registry: &str) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for dir in dirs {
        let dir = dir.join(registry);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "crt") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn tls_config(cas: &[PathBuf]) -> Result<rustls::ClientConfig> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    for path in cas {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect())
            .map_err(|e| cert_error(path, e))?;
        if certs.is_empty() {
            return Err(cert_error(path, "no PEM certificate in the file"));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| cert_error(path, e))?;
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Client(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

fn cert_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Certificate {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.example/token");
        assert_eq!(c.params["scope"], "repository:a/b:pull,push");
        let c = Challenge::parse(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(c.scheme, "basic");
        assert_eq!(c.params["realm"], "Registry Realm");
    }

    #[test]
    fn credentials_hide_the_password() {
        let c = Credentials::parse("me:se:cret").unwrap();
        assert_eq!(c.password, "se:cret");
        assert!(!format!("{c:?}").contains("se:cret"));
        assert!(Credentials::parse("nopass").is_none());
    }
}
