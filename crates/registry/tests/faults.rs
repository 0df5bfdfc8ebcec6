//! Fast in-process tests of the client's retry, resume and auth paths, against the mock
//! registry of `tests/mock` (the end-to-end tests against a real registry and
//! `tools/faultproxy.py` are the workspace's `tests/registry.rs`).
//!
//! Each test scripts faults, drives the public API (`pull`, `Registry::manifest`,
//! `fetch_blob`) into a fresh store, and asserts both the outcome and what the mock saw.
//! Tests wait for states (a call returning, a request recorded), never for a time; the only
//! clocks are the client's own: retry delays of a millisecond, and a short stall timeout in
//! the stall tests.

mod mock;

// A test crate's root resolves modules as a mod.rs does: the tests live in tests/faults/.
#[path = "faults/auth.rs"]
mod auth;
#[path = "faults/manifest.rs"]
mod manifest;
#[path = "faults/resume.rs"]
mod resume;
#[path = "faults/retry.rs"]
mod retry;
#[path = "faults/sources.rs"]
mod sources;
#[path = "faults/wire.rs"]
mod wire;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use img_registry::auth::AuthFiles;
use img_registry::{
    Client, ClientOptions, Credentials, Error, Log, MAX_MANIFEST, Progress, PullOptions, Pulled,
    Reference, Registry, RetryPolicy, fetch_blob, pull,
};
use img_store::{Descriptor, Digest, Store};
use mock::{ALWAYS, Auth, Bearer, Fault, MockRegistry, Request, TestImage, When};
use reqwest::StatusCode;

/// The repository the fixture's image is in.
const REPO: &str = "lib/app";
/// The fixture image's tag.
const TAG: &str = "1";
/// Layer sizes: big enough to be cut in the middle, small enough to be quick.
const LAYERS: [usize; 2] = [40_000, 100_000];
/// The user name of the credential tests.
const USER: &str = "tester";
/// A password that must never be shown.
const PASSWORD: &str = "pa55:w0rd-Zq7%secret";
/// How many attempts the fixture's retry policy makes.
const TRIES: u32 = 3;
/// How long a test waits for a state before failing: generous for a loaded CI machine.
const PATIENCE: Duration = Duration::from_secs(20);

/// A retry policy for tests: `tries` attempts, a millisecond apart.
fn fast_retries(tries: u32) -> RetryPolicy {
    RetryPolicy {
        tries,
        base: Duration::from_millis(1),
        max: Duration::from_millis(2),
    }
}

/// The notes a client's [`Log`] received.
#[derive(Debug, Clone, Default)]
struct Notes(Arc<Mutex<Vec<String>>>);

impl Notes {
    fn push(&self, note: &str) {
        self.0.lock().unwrap().push(note.to_string());
    }

    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// The notes containing `needle`.
    fn with(&self, needle: &str) -> Vec<String> {
        self.all()
            .into_iter()
            .filter(|n| n.contains(needle))
            .collect()
    }
}

/// A mock registry serving one image as `lib/app:1`, a fresh store, and an empty credential
/// file (so the user's own are never read).
struct Fixture {
    mock: Arc<MockRegistry>,
    image: TestImage,
    root: PathBuf,
    store: Store,
    notes: Notes,
}

impl Fixture {
    fn new() -> Fixture {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "faults-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("auth.json"), r#"{"auths":{}}"#).unwrap();
        let store = Store::open(root.join("store")).unwrap();
        let mock = Arc::new(MockRegistry::start());
        let image = TestImage::new(&LAYERS);
        mock.add_image(REPO, TAG, &image);
        Fixture {
            mock,
            image,
            root,
            store,
            notes: Notes::default(),
        }
    }

    /// Client options for the mock: no credentials but the empty file, no CA directories,
    /// [`fast_retries`], a stall timeout no test reaches by accident, notes kept.
    fn options(&self) -> ClientOptions {
        let notes = self.notes.clone();
        ClientOptions {
            auth_files: AuthFiles {
                authfile: Some(self.root.join("auth.json")),
            },
            cert_dirs: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(10),
            retry: fast_retries(TRIES),
            log: Log::new(move |note| notes.push(note)),
            ..ClientOptions::default()
        }
    }

    fn client(&self) -> Client {
        Client::new(self.options())
    }

    /// A client offering [`USER`] and [`PASSWORD`] (`--creds`).
    fn client_with_creds(&self, password: &str) -> Client {
        Client::new(ClientOptions {
            credentials: Some(Credentials {
                username: USER.into(),
                password: password.into(),
            }),
            ..self.options()
        })
    }

    /// The mock's connection for `client`.
    fn registry(&self, client: &Client) -> Arc<Registry> {
        client.registry(&self.mock.host(), false).unwrap()
    }

    /// `HOST/lib/app:TAG`.
    fn reference(&self, tag: &str) -> Reference {
        Reference::parse(&format!("{}/{REPO}:{tag}", self.mock.host())).unwrap()
    }

    /// Pull `lib/app:1`, one blob at a time (so a failing blob leaves none in flight).
    async fn pull(&self, client: &Client) -> Result<Pulled, Error> {
        self.pull_with(client, Arc::new(Recorder::default())).await
    }

    async fn pull_with(&self, client: &Client, progress: Arc<Recorder>) -> Result<Pulled, Error> {
        let options = PullOptions {
            platform: None,
            concurrency: 1,
        };
        pull(
            client,
            &self.store,
            &self.reference(TAG),
            &options,
            progress,
        )
        .await
    }

    /// Assert the image is in the store, named, each blob byte for byte.
    fn assert_pulled(&self, pulled: &Pulled) {
        assert_eq!(pulled.manifest_digest, self.image.manifest_digest());
        assert_eq!(
            self.store.read_blob(&self.image.config_digest()).unwrap(),
            self.image.config
        );
        for (i, layer) in self.image.layers.iter().enumerate() {
            assert_eq!(
                &self.store.read_blob(&self.image.layer_digest(i)).unwrap(),
                layer
            );
        }
        let named = self
            .store
            .find_ref(&self.reference(TAG).to_string())
            .unwrap();
        assert_eq!(named.unwrap().digest(), &self.image.manifest_digest());
        self.assert_no_temp_files();
    }

    /// Assert nothing is named in the store.
    fn assert_not_named(&self) {
        assert!(
            self.store
                .find_ref(&self.reference(TAG).to_string())
                .unwrap()
                .is_none()
        );
    }

    /// The temp files under `ingest/`.
    fn temp_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.store.root().join("ingest"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    /// Assert `ingest/` is empty.
    fn assert_no_temp_files(&self) {
        assert_eq!(
            self.temp_files(),
            Vec::<PathBuf>::new(),
            "temp files left in ingest/"
        );
    }

    /// Wait until `ingest/` is empty: downloads a failure cancelled remove their temp files
    /// when their tasks are dropped, which may be just after the failure is returned.
    async fn wait_no_temp_files(&self) {
        let deadline = Instant::now() + PATIENCE;
        while !self.temp_files().is_empty() {
            assert!(
                Instant::now() < deadline,
                "temp files left in ingest/: {:?}",
                self.temp_files()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Layer `i`'s descriptor.
    fn layer(&self, i: usize) -> Descriptor {
        self.image.layer_descriptor(i)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// What a [`Progress`] was told.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Advance(Digest, u64),
    Reset(Digest, u64),
    Done(Digest),
}

/// A [`Progress`] that records every call.
#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<Event>>);

impl Recorder {
    fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    /// Bytes reported for `digest` since its last reset.
    fn bytes_since_reset(&self, digest: &Digest) -> u64 {
        let mut total = 0;
        for event in self.events() {
            match event {
                Event::Advance(d, n) if &d == digest => total += n,
                Event::Reset(d, at) if &d == digest => total = at,
                _ => {}
            }
        }
        total
    }

    fn resets(&self, digest: &Digest) -> Vec<u64> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Reset(d, at) if &d == digest => Some(at),
                _ => None,
            })
            .collect()
    }
}

impl Progress for Recorder {
    fn advance(&self, digest: &Digest, bytes: u64) {
        self.0
            .lock()
            .unwrap()
            .push(Event::Advance(digest.clone(), bytes));
    }
    fn reset(&self, digest: &Digest, position: u64) {
        self.0
            .lock()
            .unwrap()
            .push(Event::Reset(digest.clone(), position));
    }
    fn done(&self, digest: &Digest) {
        self.0.lock().unwrap().push(Event::Done(digest.clone()));
    }
}

/// The statuses answered to `requests`.
fn statuses(requests: &[Request]) -> Vec<Option<u16>> {
    requests.iter().map(|r| r.status).collect()
}

/// The `Range` headers of `requests`.
fn ranges(requests: &[Request]) -> Vec<Option<String>> {
    requests
        .iter()
        .map(|r| r.range().map(str::to_string))
        .collect()
}
