//! A small in-process OCI distribution registry for the registry crate's tests: a tokio TCP
//! server on `127.0.0.1:0` speaking HTTP/1.1 by hand.
//!
//! It serves the manifests and blobs a test gives it (`Docker-Content-Digest`, `Content-Type`,
//! `Range: bytes=N-` answered with `206` and `Content-Range`), asks for Basic or Bearer auth
//! (with a token endpoint on the same server), and applies the faults a test scripts per
//! request ([`Fault`], matched by [`When`]). Every request is recorded ([`Request`]) so a
//! test asserts what the client did, not only what it returned.
//!
//! Requests are routed by method and path (`serve.rs`): `/v2/`, `/v2/NAME/manifests/REF`,
//! `/v2/NAME/blobs/DIGEST`, `/v2/NAME/blobs/uploads/…` (a stub for push tests to fill in),
//! and `/token`; anything else answers 404 with a registry-style JSON error.
//!
//! ```text
//! let mock = MockRegistry::start();                      // inside a tokio runtime
//! mock.add_image("lib/app", "1", &TestImage::new(&[1000]));
//! mock.inject(When::Blobs, Fault::Cut { after: 100 }, 1); // the next blob request only
//! // … pull 127.0.0.1:PORT/lib/app:1 …
//! assert_eq!(mock.requests_to(&When::Blobs)[1].range(), Some("bytes=100-"));
//! ```
//!
//! Push tests: `serve::upload` receives every request under `/v2/NAME/blobs/uploads/`
//! (request bodies are read, `Content-Length` or chunked); under Bearer auth those routes
//! already need a `push` scope.
//!
//! Every test binary that includes this module uses only part of it.
#![allow(dead_code)]

mod http;
pub mod image;
mod script;
mod serve;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use img_store::Digest;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

pub use image::TestImage;
pub use script::{ALWAYS, Auth, Bearer, Fault, Request, Route, When};

/// How long [`MockRegistry::wait_for`] waits for a state before failing the test: long
/// enough for a loaded CI machine, short enough to fail rather than hang.
const PATIENCE: Duration = Duration::from_secs(20);

/// A manifest or blob being served.
#[derive(Debug, Clone)]
struct Content {
    bytes: Arc<Vec<u8>>,
    media_type: String,
}

/// A repository's contents.
#[derive(Debug, Clone, Default)]
struct Repo {
    /// Tag → manifest digest.
    tags: HashMap<String, String>,
    /// Digest → manifest.
    manifests: HashMap<String, Content>,
    /// Digest → blob.
    blobs: HashMap<String, Content>,
}

/// A token the endpoint gave out.
#[derive(Debug, Clone)]
struct Grant {
    /// The scopes asked for (`repository:NAME:ACTIONS`).
    scopes: Vec<String>,
    /// False once [`MockRegistry::expire_tokens`] ran.
    valid: bool,
}

/// A scripted fault and how many more requests it applies to.
#[derive(Debug, Clone)]
struct Rule {
    when: When,
    fault: Fault,
    left: usize,
}

/// What the server tasks share with the test.
struct State {
    addr: SocketAddr,
    inner: Mutex<Inner>,
    /// Woken at every recorded request.
    recorded: Notify,
}

#[derive(Default)]
struct Inner {
    repos: HashMap<String, Repo>,
    auth: Auth,
    rules: Vec<Rule>,
    requests: Vec<Request>,
    tokens: HashMap<String, Grant>,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The first scripted fault for `route` that has uses left; uses it up once.
    fn take_fault(&self, route: &Route) -> Option<Fault> {
        let mut inner = self.lock();
        let rule = inner
            .rules
            .iter_mut()
            .find(|r| r.left > 0 && r.when.matches(route))?;
        rule.left = rule
            .left
            .saturating_sub(if rule.left == ALWAYS { 0 } else { 1 });
        Some(rule.fault.clone())
    }

    /// Record a request (its `seq` is set here) and wake the waiters.
    fn record(&self, mut request: Request) {
        let mut inner = self.lock();
        request.seq = inner.requests.len();
        inner.requests.push(request);
        drop(inner);
        self.recorded.notify_waiters();
    }
}

/// A running mock registry. Dropping it stops the server and closes its connections.
pub struct MockRegistry {
    state: Arc<State>,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl MockRegistry {
    /// Start a registry on a free loopback port. Call inside a tokio runtime.
    pub fn start() -> MockRegistry {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port for the mock");
        let addr = listener.local_addr().expect("the mock's address");
        let mock = MockRegistry {
            state: Arc::new(State {
                addr,
                inner: Mutex::new(Inner::default()),
                recorded: Notify::new(),
            }),
            server: Mutex::new(None),
        };
        mock.serve(listener);
        mock
    }

    fn serve(&self, listener: std::net::TcpListener) {
        listener
            .set_nonblocking(true)
            .expect("make the mock's listener non-blocking");
        let listener =
            tokio::net::TcpListener::from_std(listener).expect("register the mock's listener");
        let task = tokio::spawn(accept(listener, self.state.clone()));
        *self.server.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
    }

    /// Stop listening and close every connection: connections to the port are refused until
    /// [`MockRegistry::up`]. Returns once the port is closed.
    pub async fn down(&self) {
        let task = self.server.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listen again on the same port (after [`MockRegistry::down`]); a no-op when up. The
    /// port is listening when this returns. Call inside a tokio runtime.
    pub fn up(&self) -> std::io::Result<()> {
        if self
            .server
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            return Ok(());
        }
        let listener = std::net::TcpListener::bind(self.state.addr)?;
        self.serve(listener);
        Ok(())
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.state.addr
    }

    /// `127.0.0.1:PORT`, the registry part of references to it.
    pub fn host(&self) -> String {
        self.state.addr.to_string()
    }

    /// Serve `bytes` as a blob of `repo`; returns its digest.
    pub fn add_blob(&self, repo: &str, bytes: &[u8]) -> Digest {
        let digest = img_store::digest::sha256(bytes);
        let content = Content {
            bytes: Arc::new(bytes.to_vec()),
            media_type: "application/octet-stream".into(),
        };
        let mut inner = self.state.lock();
        let repo = inner.repos.entry(repo.into()).or_default();
        repo.blobs.insert(digest.to_string(), content);
        digest
    }

    /// Serve `bytes` as a manifest of `repo` with `Content-Type: media_type`, by digest and,
    /// when given, by `tag`; returns its digest.
    pub fn add_manifest(
        &self,
        repo: &str,
        tag: Option<&str>,
        media_type: &str,
        bytes: &[u8],
    ) -> Digest {
        let digest = img_store::digest::sha256(bytes);
        self.add_manifest_as(repo, tag, media_type, bytes.to_vec(), &digest);
        digest
    }

    /// Serve `bytes` as a manifest of `repo` under `digest` without hashing them (4 MiB
    /// take a debug build a quarter of a second): for content the client refuses before
    /// hashing it, or for a registry that serves the wrong content for a digest.
    pub fn add_manifest_as(
        &self,
        repo: &str,
        tag: Option<&str>,
        media_type: &str,
        bytes: Vec<u8>,
        digest: &Digest,
    ) {
        let content = Content {
            bytes: Arc::new(bytes),
            media_type: media_type.into(),
        };
        let mut inner = self.state.lock();
        let repo = inner.repos.entry(repo.into()).or_default();
        repo.manifests.insert(digest.to_string(), content);
        if let Some(tag) = tag {
            repo.tags.insert(tag.into(), digest.to_string());
        }
    }

    /// Serve `image` (its config, layers and manifest) as `repo:tag`.
    pub fn add_image(&self, repo: &str, tag: &str, image: &TestImage) {
        self.add_blob(repo, &image.config);
        for layer in &image.layers {
            self.add_blob(repo, layer);
        }
        self.add_manifest(repo, Some(tag), image::OCI_MANIFEST, &image.manifest);
    }

    /// Ask for this authentication from now on.
    pub fn set_auth(&self, auth: Auth) {
        self.state.lock().auth = auth;
    }

    /// Apply `fault` to the next `times` requests that match `when` ([`ALWAYS`]: to all).
    /// Faults are tried in the order they were scripted; the first with uses left wins.
    pub fn inject(&self, when: When, fault: Fault, times: usize) {
        self.state.lock().rules.push(Rule {
            when,
            fault,
            left: times,
        });
    }

    /// Drop every scripted fault that has not been used up.
    pub fn clear_faults(&self) {
        self.state.lock().rules.clear();
    }

    /// Make every token given out so far invalid, as their expiry would: requests bearing
    /// one are challenged again.
    pub fn expire_tokens(&self) {
        for grant in self.state.lock().tokens.values_mut() {
            grant.valid = false;
        }
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().requests.clone()
    }

    /// The requests so far that match `when`.
    pub fn requests_to(&self, when: &When) -> Vec<Request> {
        let inner = self.state.lock();
        inner
            .requests
            .iter()
            .filter(|r| when.matches(&r.route))
            .cloned()
            .collect()
    }

    /// Wait until the requests recorded so far satisfy `done` (described by `what` in the
    /// panic if they do not within a generous deadline).
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[Request]) -> bool) {
        let wait = async {
            loop {
                let recorded = self.state.recorded.notified();
                if done(&self.state.lock().requests) {
                    return;
                }
                recorded.await;
            }
        };
        if tokio::time::timeout(PATIENCE, wait).await.is_err() {
            panic!(
                "waited {PATIENCE:?} for {what}; requests: {:#?}",
                self.requests()
            );
        }
    }
}

impl Drop for MockRegistry {
    fn drop(&mut self) {
        if let Some(task) = self.server.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
    }
}

/// Accept connections and serve each in a task; aborting this task drops the listener and
/// every connection's task with it.
async fn accept(listener: tokio::net::TcpListener, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                match accepted {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        connections.spawn(serve::connection(state.clone(), stream));
                    }
                    // Out of descriptors, say: let the connections finish first.
                    Err(_) => tokio::task::yield_now().await,
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
