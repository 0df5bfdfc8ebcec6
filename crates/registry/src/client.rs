//! Talking to one registry: scheme choice, TLS with certs.d CAs, auth challenges, and turning
//! error responses into errors that carry the registry's code.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use img_store::Digest;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RANGE, WWW_AUTHENTICATE,
};
use reqwest::{Method, Response, StatusCode};

use crate::auth::{AuthFiles, Secret};
use crate::error::root_cause;
use crate::reference::is_loopback;
use crate::retry::{self, Backoff, RetryPolicy};
use crate::{Error, Reference, RegistriesConf, Result, Source};

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

    pub(crate) fn basic(&self) -> String {
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

/// A sink for progress notes (retries, mirror fall-through): shown at `-v`.
#[derive(Clone, Default)]
pub struct Log(Option<Arc<LogFn>>);

type LogFn = dyn Fn(&str) + Send + Sync;

impl Log {
    /// Notes go to `f`.
    pub fn new(f: impl Fn(&str) + Send + Sync + 'static) -> Log {
        Log(Some(Arc::new(f)))
    }

    /// Say something.
    pub fn say(&self, message: &str) {
        if let Some(f) = &self.0 {
            f(message);
        }
    }
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Log(on)"
        } else {
            "Log(off)"
        })
    }
}

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Credentials offered to every registry that asks (`--creds`); when set, credential
    /// files are not read.
    pub credentials: Option<Credentials>,
    /// Where credentials are looked up when a registry asks and `credentials` is not set.
    pub auth_files: AuthFiles,
    /// Mirrors, rewrites, blocked and insecure registries, unqualified-name search.
    pub registries: RegistriesConf,
    /// Directories holding `HOST:PORT/*.crt` CA files, searched in order.
    pub cert_dirs: Vec<PathBuf>,
    /// How long to wait for a connection.
    pub connect_timeout: Duration,
    /// How long a response may send nothing before it counts as cut.
    pub stall_timeout: Duration,
    /// Retries of failed requests and interrupted downloads.
    pub retry: RetryPolicy,
    /// The `User-Agent` header.
    pub user_agent: String,
    /// Where retries and fall-throughs are reported.
    pub log: Log,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            credentials: None,
            auth_files: AuthFiles::default(),
            registries: RegistriesConf::default(),
            cert_dirs: vec![
                PathBuf::from("/etc/containers/certs.d"),
                PathBuf::from("/etc/docker/certs.d"),
            ],
            connect_timeout: Duration::from_secs(15),
            stall_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            user_agent: concat!("img/", env!("CARGO_PKG_VERSION")).to_string(),
            log: Log::default(),
        }
    }
}

/// Registries as configured: one [`Registry`] per host, made on first use and shared.
#[derive(Debug)]
pub struct Client {
    options: ClientOptions,
    registries: Mutex<HashMap<(String, bool), Arc<Registry>>>,
}

impl Client {
    /// A client with these options.
    pub fn new(options: ClientOptions) -> Client {
        Client {
            options,
            registries: Mutex::new(HashMap::new()),
        }
    }

    /// The options.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// The connection to `registry` (`insecure`: plain http and unverified TLS allowed).
    pub fn registry(&self, registry: &str, insecure: bool) -> Result<Arc<Registry>> {
        let key = (registry.to_string(), insecure);
        let mut cache = self.registries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = cache.get(&key) {
            return Ok(r.clone());
        }
        let r = Arc::new(Registry::new(registry, insecure, &self.options)?);
        cache.insert(key, r.clone());
        Ok(r)
    }

    /// Where to pull `reference` from, mirrors first (from registries.conf).
    pub fn sources(&self, reference: &Reference) -> Result<Vec<Source>> {
        self.options.registries.sources(reference)
    }

    /// The references a name as typed may mean, in the order to try them: one for a
    /// qualified name (`host/app`), and one per `unqualified-search-registries` entry for a
    /// bare one (`redis`) when registries.conf lists any (else docker.io, as docker does).
    pub fn candidates(&self, input: &str) -> Result<Vec<Reference>> {
        let reference = Reference::parse(input)?;
        match self.options.registries.search_registries() {
            Some(list) if !Reference::is_qualified(input) => list
                .iter()
                .map(|registry| Reference::parse(&format!("{registry}/{input}")))
                .collect(),
            _ => Ok(vec![reference]),
        }
    }

    /// Check that `credentials` are accepted by `registry` (the `img login` check).
    pub async fn check_login(&self, registry: &str, credentials: &Credentials) -> Result<()> {
        let options = ClientOptions {
            credentials: Some(credentials.clone()),
            ..self.options.clone()
        };
        let insecure = self
            .options
            .registries
            .entry_for(registry)
            .is_some_and(|e| e.insecure);
        let r = Registry::new(registry, insecure, &options)?;
        r.get(&format!("login to {registry}"), "", "/v2/", None, 0)
            .await?;
        Ok(())
    }
}

/// A connection to one registry's API. Caches the scheme that worked and the authorization
/// each repository earned.
#[derive(Debug)]
pub struct Registry {
    name: String,
    host: String,
    schemes: Vec<&'static str>,
    /// Index into `schemes` of the one that answered; `usize::MAX` until one has.
    scheme: AtomicUsize,
    http: reqwest::Client,
    credentials: Option<Credentials>,
    auth_files: AuthFiles,
    retry: RetryPolicy,
    log: Log,
    auth: Mutex<HashMap<String, CachedAuth>>,
}

#[derive(Debug, Clone)]
struct CachedAuth {
    header: HeaderValue,
    expires: Option<Instant>,
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
    /// https first); insecure ones in https without verification, then http; all others in
    /// https only. Until one scheme has answered, each attempt tries them in order.
    pub fn new(registry: &str, insecure: bool, options: &ClientOptions) -> Result<Registry> {
        let host = crate::reference::api_host(registry).to_string();
        let cas = ca_files(&options.cert_dirs, registry)?;
        let schemes = match (is_loopback(registry), cas.is_empty(), insecure) {
            (true, true, _) => vec!["http", "https"],
            (true, false, _) | (false, _, true) => vec!["https", "http"],
            (false, _, false) => vec!["https"],
        };
        let tls = tls_config(&cas, insecure && cas.is_empty())?;
        let http = reqwest::Client::builder()
            .user_agent(&options.user_agent)
            .connect_timeout(options.connect_timeout)
            .read_timeout(options.stall_timeout)
            .tcp_nodelay(true)
            .no_proxy()
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| Error::Client(root_cause(&e)))?;
        Ok(Registry {
            name: registry.to_string(),
            host,
            schemes,
            scheme: AtomicUsize::new(usize::MAX),
            http,
            credentials: options.credentials.clone(),
            auth_files: options.auth_files.clone(),
            retry: options.retry,
            log: options.log.clone(),
            auth: Mutex::new(HashMap::new()),
        })
    }

    /// The registry's name as references spell it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The retry policy.
    pub fn retry(&self) -> RetryPolicy {
        self.retry
    }

    /// Where notes go.
    pub fn log(&self) -> &Log {
        &self.log
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
        let mut backoff = Backoff::new(self.retry);
        let (bytes, media_type, announced) = loop {
            let resp = self
                .get(
                    &what,
                    repository,
                    &path,
                    Some(img_store::manifest::ACCEPT),
                    0,
                )
                .await?;
            match read_manifest(&what, resp).await {
                Err(Error::Interrupted { reason, .. })
                    if backoff
                        .again(&self.log, &what, format!("interrupted ({reason})"), None)
                        .await => {}
                other => break other?,
            }
        };
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

    /// Start a blob download from byte `offset` (a `Range` request when it is not 0); the
    /// caller reads it with [`BlobStream::chunk`] and checks [`BlobStream::start`].
    pub async fn blob(&self, repository: &str, digest: &Digest, offset: u64) -> Result<BlobStream> {
        let what = format!("blob {digest} of {}/{repository}", self.name);
        let path = format!("/v2/{repository}/blobs/{digest}");
        let resp = self.get(&what, repository, &path, None, offset).await?;
        Ok(BlobStream { what, resp })
    }

    /// GET `path` with pull authorization; an error status becomes an [`Error`].
    async fn get(
        &self,
        what: &str,
        repository: &str,
        path: &str,
        accept: Option<&str>,
        offset: u64,
    ) -> Result<Response> {
        let mut headers = HeaderMap::new();
        if let Some(a) = accept {
            headers.insert(
                ACCEPT,
                HeaderValue::from_str(a).map_err(|e| bad_header(what, e))?,
            );
        }
        if offset > 0 {
            headers.insert(
                RANGE,
                HeaderValue::from_str(&format!("bytes={offset}-"))
                    .map_err(|e| bad_header(what, e))?,
            );
        }
        let scope = if repository.is_empty() {
            String::new()
        } else {
            pull_scope(repository)
        };
        let resp = self
            .request(&Request {
                method: Method::GET,
                what,
                repository,
                scope,
                target: path,
                headers,
                body: None,
                stop: None,
            })
            .await?;
        self.checked(what, repository, resp).await
    }

    /// Send a request: answer one auth challenge (per attempt) for the request's scopes, retry
    /// transient failures (connection errors, timeouts, 408, 429, 5xx) with backoff and
    /// `Retry-After`. Returns the final answer whatever its status; [`Registry::checked`]
    /// turns an error status into an [`Error`].
    pub(crate) async fn request(&self, req: &Request<'_>) -> Result<Response> {
        let mut challenged = false;
        let mut backoff = Backoff::new(self.retry);
        loop {
            let resp = match self.send(req).await {
                Ok(resp) => resp,
                Err(e) if transient(&e) && !req.stop.is_some_and(|stop| stop()) => {
                    let why = format!("{} ({})", self.name, root_cause(&e));
                    if backoff.again(&self.log, req.what, why, None).await {
                        continue;
                    }
                    return Err(self.failed(req.what, &e));
                }
                Err(e) => return Err(self.failed(req.what, &e)),
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && !challenged {
                challenged = true;
                if self
                    .answer_challenge(req.what, req.repository, &resp, &req.scope)
                    .await?
                {
                    continue;
                }
            }
            if retry::retryable(status) && !req.stop.is_some_and(|stop| stop()) {
                let why = format!("registry answered {status}");
                if backoff
                    .again(&self.log, req.what, why, Some(resp.headers()))
                    .await
                {
                    // A token may expire while we wait: the retry may answer a new challenge.
                    challenged = false;
                    continue;
                }
            }
            return Ok(resp);
        }
    }

    /// The error for a request that got no answer: the registry is unreachable, unless it
    /// has answered before (then this request, named, failed).
    fn failed(&self, what: &str, e: &reqwest::Error) -> Error {
        if self.scheme.load(Ordering::Relaxed) == usize::MAX {
            return Error::Unreachable {
                registry: self.name.clone(),
                reason: root_cause(e),
            };
        }
        Error::Connection {
            what: what.to_string(),
            registry: self.name.clone(),
            reason: root_cause(e),
        }
    }

    /// Pass a success through; turn anything else into an error with the registry's code.
    pub(crate) async fn checked(
        &self,
        what: &str,
        repository: &str,
        resp: Response,
    ) -> Result<Response> {
        // Which credentials were offered matters only to a refusal's message; looking them up
        // may run a credential helper, so only then.
        let refused = matches!(
            resp.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        );
        let had_credentials = refused && self.has_secret(repository);
        check(what, &self.name, had_credentials, resp).await
    }

    /// Send one request, trying each scheme in order until one has answered once. An absolute
    /// target (an upload's `Location`) is sent as it is.
    async fn send(&self, req: &Request<'_>) -> std::result::Result<Response, reqwest::Error> {
        let absolute = req.target.starts_with("http://") || req.target.starts_with("https://");
        let decided = self.scheme.load(Ordering::Relaxed);
        let order: Vec<usize> = if decided == usize::MAX && !absolute {
            (0..self.schemes.len()).collect()
        } else {
            vec![decided.min(self.schemes.len() - 1)]
        };
        let mut last = None;
        for (n, &i) in order.iter().enumerate() {
            let url = if absolute {
                req.target.to_string()
            } else {
                format!("{}://{}{}", self.schemes[i], self.host, req.target)
            };
            let mut builder = self
                .http
                .request(req.method.clone(), &url)
                .headers(req.headers.clone());
            if let Some(auth) = self.cached_auth(&req.scope) {
                builder = builder.header(AUTHORIZATION, auth);
            }
            if let Some(body) = req.body {
                builder = builder.body(body());
            }
            let more = n + 1 < order.len();
            match builder.send().await {
                Ok(resp) if more && speaks_https_only(&resp) => continue,
                Ok(resp) => {
                    if !absolute {
                        self.scheme.store(i, Ordering::Relaxed);
                    }
                    return Ok(resp);
                }
                Err(e) if more && (e.is_connect() || e.is_request()) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        // Only reached when every scheme failed to connect; `last` holds the final error.
        Err(last.expect("at least one scheme was tried"))
    }

    /// The URL a relative `Location` (or an absolute one) names on this registry.
    pub(crate) fn resolve(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            return location.to_string();
        }
        let decided = self.scheme.load(Ordering::Relaxed);
        let scheme = self.schemes[decided.min(self.schemes.len() - 1)];
        let slash = if location.starts_with('/') { "" } else { "/" };
        format!("{scheme}://{}{slash}{location}", self.host)
    }

    fn has_secret(&self, repository: &str) -> bool {
        self.secret(repository).ok().flatten().is_some()
    }

    /// The credentials for `repository`: `--creds`, else the credential files and helpers.
    fn secret(&self, repository: &str) -> Result<Option<Secret>> {
        if let Some(c) = &self.credentials {
            return Ok(Some(Secret::Basic(c.clone())));
        }
        self.auth_files.lookup(&self.name, repository)
    }

    fn cached_auth(&self, scope: &str) -> Option<HeaderValue> {
        let auth = self.auth.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        [scope, ""]
            .iter()
            .filter_map(|k| auth.get(*k))
            .find(|c| c.expires.is_none_or(|e| e > now))
            .map(|c| c.header.clone())
    }

    fn remember_auth(&self, scope: &str, value: &str, expires: Option<Instant>) -> Result<()> {
        let mut header = HeaderValue::from_str(value).map_err(|_| Error::Protocol {
            what: format!("authorization for {}", self.name),
            reason: "credentials contain characters not allowed in a header".into(),
        })?;
        header.set_sensitive(true);
        self.auth
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(scope.to_string(), CachedAuth { header, expires });
        Ok(())
    }

    /// Earn an authorization for `scope` from a 401's challenge. Returns whether a retry can
    /// succeed.
    async fn answer_challenge(
        &self,
        what: &str,
        repository: &str,
        resp: &Response,
        scope: &str,
    ) -> Result<bool> {
        let Some(challenge) = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(Challenge::parse)
        else {
            return Ok(false);
        };
        match challenge.scheme.as_str() {
            "basic" => match self.secret(repository)? {
                Some(Secret::Basic(c)) => {
                    // Basic credentials are good for every repository of the registry.
                    self.remember_auth("", &c.basic(), None)?;
                    Ok(true)
                }
                _ => Ok(false),
            },
            "bearer" => {
                let secret = self.secret(repository)?;
                let (token, ttl) = self.token(what, &challenge, scope, secret).await?;
                // Refresh a little before the registry would refuse it.
                let expires = Instant::now() + ttl.saturating_sub(ttl / 10);
                self.remember_auth(scope, &format!("Bearer {token}"), Some(expires))?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Fetch a Bearer token from the challenge's realm: a GET (with Basic credentials when we
    /// have a password), or an OAuth2 refresh-token POST for an identity token.
    async fn token(
        &self,
        what: &str,
        challenge: &Challenge,
        scope: &str,
        secret: Option<Secret>,
    ) -> Result<(String, Duration)> {
        let token_what = format!("token for {what}");
        let protocol = |reason: String| Error::Protocol {
            what: token_what.clone(),
            reason,
        };
        let realm = challenge
            .params
            .get("realm")
            .ok_or_else(|| protocol("Bearer challenge without a realm".into()))?;
        let mut params: Vec<(&str, &str)> = Vec::new();
        if let Some(service) = challenge.params.get("service") {
            params.push(("service", service));
        }
        // Our scopes (a push asks for `pull,push` on its repository and `pull` on a mount
        // source), and the challenge's when it names another.
        let mut scopes: Vec<&str> = scope.split_whitespace().collect();
        if let Some(theirs) = challenge.params.get("scope")
            && !scopes.contains(&theirs.as_str())
        {
            scopes.push(theirs);
        }
        for s in scopes {
            params.push(("scope", s));
        }
        let req = match &secret {
            Some(Secret::IdentityToken(refresh)) => {
                let mut form = params.clone();
                form.extend([
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh.as_str()),
                    ("client_id", "img"),
                ]);
                let body = reqwest::Url::parse_with_params("http://form.invalid/", &form)
                    .map(|u| u.query().unwrap_or_default().to_string())
                    .map_err(|e| protocol(e.to_string()))?;
                self.http
                    .post(realm)
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(body)
            }
            other => {
                let url = reqwest::Url::parse_with_params(realm, &params)
                    .map_err(|e| protocol(format!("bad token realm {realm:?}: {e}")))?;
                let req = self.http.get(url);
                match other {
                    Some(Secret::Basic(c)) => req.header(AUTHORIZATION, c.basic()),
                    _ => req,
                }
            }
        };
        let mut backoff = Backoff::new(self.retry);
        let resp = loop {
            let Some(fut) = req.try_clone().map(|r| r.send()) else {
                return Err(protocol("cannot repeat the token request".into()));
            };
            match fut.await {
                Ok(r) if retry::retryable(r.status()) => {
                    if !backoff.again_quietly(Some(r.headers())).await {
                        break r;
                    }
                }
                Ok(r) => break r,
                Err(e) if transient(&e) && backoff.again_quietly(None).await => {}
                Err(e) => {
                    return Err(Error::Unreachable {
                        registry: realm.clone(),
                        reason: root_cause(&e),
                    });
                }
            }
        };
        let resp = check(&token_what, &self.name, secret.is_some(), resp).await?;
        let body = resp.bytes().await.map_err(|e| protocol(root_cause(&e)))?;
        let body: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| protocol(format!("invalid JSON: {e}")))?;
        let token = body
            .get("token")
            .or_else(|| body.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| protocol("the answer has neither token nor access_token".into()))?;
        // The distribution spec's default lifetime is 60 s.
        let ttl = body
            .get("expires_in")
            .and_then(|e| e.as_u64())
            .filter(|&s| s > 0)
            .unwrap_or(60);
        Ok((token.to_string(), Duration::from_secs(ttl)))
    }
}

/// A blob as it arrives from a registry ([`Registry::blob`]).
#[derive(Debug)]
pub struct BlobStream {
    what: String,
    resp: Response,
}

impl BlobStream {
    /// The HTTP status of the answer.
    pub fn status(&self) -> u16 {
        self.resp.status().as_u16()
    }

    /// Where in the blob the bytes start: 0 for a whole answer (`200`), the start of a `206`
    /// answer's `Content-Range`, `None` for anything else.
    pub fn start(&self) -> Option<u64> {
        if self.resp.status() == StatusCode::OK {
            return Some(0);
        }
        crate::pull::resume_start(&self.resp)
    }

    /// The next bytes; `None` at the end. A stall longer than the client's stall timeout, or a
    /// cut connection, is [`Error::Interrupted`] (reason `stalled` for the former).
    pub async fn chunk(&mut self) -> Result<Option<bytes::Bytes>> {
        self.resp.chunk().await.map_err(|e| Error::Interrupted {
            what: self.what.clone(),
            reason: if e.is_timeout() {
                "stalled".to_string()
            } else {
                root_cause(&e)
            },
        })
    }
}

/// One request as [`Registry::request`] sends it.
pub(crate) struct Request<'a> {
    pub method: Method,
    /// What is being done, for errors and notes (`blob sha256:… of 127.0.0.1:5000/redis`).
    pub what: &'a str,
    /// The repository whose credentials answer a challenge.
    pub repository: &'a str,
    /// The scopes the authorization must carry, space-separated
    /// (`repository:team/app:pull,push repository:library/redis:pull`); empty for `/v2/`.
    pub scope: String,
    /// A path on the registry (`/v2/…`) or an absolute URL (an upload's `Location`).
    pub target: &'a str,
    pub headers: HeaderMap,
    /// Makes the body afresh for each attempt.
    pub body: Option<&'a (dyn Fn() -> reqwest::Body + Send + Sync)>,
    /// Asked after a failed attempt: `true` returns the failure without another attempt (a
    /// body whose source failed verification will fail again).
    pub stop: Option<&'a (dyn Fn() -> bool + Send + Sync)>,
}

/// The scope for reading `repository`.
pub(crate) fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

fn bad_header(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Protocol {
        what: what.to_string(),
        reason: format!("cannot make a header: {e}"),
    }
}

/// Read a manifest body, capped at [`MAX_MANIFEST`].
async fn read_manifest(
    what: &str,
    mut resp: Response,
) -> Result<(Vec<u8>, Option<String>, Option<Digest>)> {
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
        what: what.to_string(),
        reason: root_cause(&e),
    })? {
        if bytes.len() + chunk.len() > MAX_MANIFEST {
            return Err(Error::Protocol {
                what: what.to_string(),
                reason: format!("manifest larger than {MAX_MANIFEST} bytes"),
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok((bytes, media_type, announced))
}

/// Failures worth another attempt: the connection, not the request, went wrong.
fn transient(e: &reqwest::Error) -> bool {
    e.is_connect() || e.is_timeout() || e.is_request() || e.is_body()
}

/// Pass a success through; turn anything else into an error with the registry's code.
async fn check(
    what: &str,
    registry: &str,
    had_credentials: bool,
    resp: Response,
) -> Result<Response> {
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
            refused: if had_credentials {
                "the credentials"
            } else {
                "anonymous access"
            },
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

/// A `WWW-Authenticate` value as the client reads it: the scheme (lower-case) and the
/// parameters (keys lower-case). For the fuzz targets (`fuzz/`); not part of the API.
#[doc(hidden)]
pub fn parse_challenge(header: &str) -> Option<(String, HashMap<String, String>)> {
    Challenge::parse(header).map(|c| (c.scheme, c.params))
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

fn tls_config(cas: &[PathBuf], unverified: bool) -> Result<rustls::ClientConfig> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    // The registry's own CA files are read (and refused) now; the system's roots only at the
    // first TLS handshake (see `Verifier`).
    let mut own = rustls::RootCertStore::empty();
    for path in cas {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect())
            .map_err(|e| cert_error(path, e))?;
        if certs.is_empty() {
            return Err(cert_error(path, "no PEM certificate in the file"));
        }
        for cert in certs {
            own.add(cert).map_err(|e| cert_error(path, e))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Client(e.to_string()))?;
    let verifier = Verifier {
        provider,
        roots: (!unverified).then(|| Roots {
            own,
            verifier: std::sync::OnceLock::new(),
        }),
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// How server certificates are checked: against the system's roots and the registry's CA
/// files (webpki, as rustls does by default), or — for registries registries.conf marks
/// `insecure` — not at all (handshake signatures are still checked). The system's roots (a
/// hundred and more files to read and parse, tens of ms on a cold cache) are loaded at the first
/// TLS handshake, so a plain-http registry never pays for them.
#[derive(Debug)]
struct Verifier {
    provider: Arc<rustls::crypto::CryptoProvider>,
    /// `None`: insecure, any certificate is accepted.
    roots: Option<Roots>,
}

#[derive(Debug)]
struct Roots {
    /// The registry's own CA certificates.
    own: rustls::RootCertStore,
    verifier: std::sync::OnceLock<
        std::result::Result<Arc<rustls::client::WebPkiServerVerifier>, rustls::Error>,
    >,
}

impl Roots {
    fn verifier(
        &self,
        provider: &Arc<rustls::crypto::CryptoProvider>,
    ) -> std::result::Result<Arc<rustls::client::WebPkiServerVerifier>, rustls::Error> {
        self.verifier
            .get_or_init(|| {
                let mut roots = self.own.clone();
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
                rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider.clone(),
                )
                .build()
                .map_err(|e| rustls::Error::General(format!("no trusted certificates: {e}")))
            })
            .clone()
    }
}

impl rustls::client::danger::ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls_pki_types::CertificateDer<'_>,
        intermediates: &[rustls_pki_types::CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match &self.roots {
            None => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            Some(roots) => roots.verifier(&self.provider)?.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
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
