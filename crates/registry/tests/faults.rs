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

// ---------------------------------------------------------------------------------------
// Retries

#[tokio::test]
async fn a_503_is_retried_for_manifests_and_blobs() {
    let f = Fixture::new();
    let layer = f.image.layer_digest(1);
    f.mock
        .inject(When::Manifest(TAG.into()), Fault::status(503), 1);
    f.mock.inject(When::blob(&layer), Fault::status(503), 1);
    let pulled = f.pull(&f.client()).await.unwrap();
    f.assert_pulled(&pulled);
    let manifests = f.mock.requests_to(&When::Manifest(TAG.into()));
    assert_eq!(statuses(&manifests), [Some(503), Some(200)]);
    assert_eq!(
        statuses(&f.mock.requests_to(&When::blob(&layer))),
        [Some(503), Some(200)]
    );
    assert_eq!(
        f.notes
            .with("registry answered 503 Service Unavailable; trying again")
            .len(),
        2
    );
}

#[tokio::test]
async fn a_429_with_retry_after_zero_is_honoured() {
    let f = Fixture::new();
    // Without Retry-After the client would back off for 15–30 s.
    let client = Client::new(ClientOptions {
        retry: RetryPolicy {
            tries: 2,
            base: Duration::from_secs(30),
            max: Duration::from_secs(60),
        },
        ..f.options()
    });
    f.mock
        .inject(When::Manifest(TAG.into()), Fault::retry_after(429, "0"), 1);
    let pulled = tokio::time::timeout(Duration::from_secs(14), f.pull(&client))
        .await
        .expect("Retry-After: 0 was not honoured: the client backed off")
        .unwrap();
    f.assert_pulled(&pulled);
    assert_eq!(
        statuses(&f.mock.requests_to(&When::Manifest(TAG.into()))),
        [Some(429), Some(200)]
    );
    let waits: Vec<String> = f
        .notes
        .with("429")
        .into_iter()
        .filter(|n| n.contains(" 0.0s"))
        .collect();
    assert_eq!(waits.len(), 1, "{:?}", f.notes.all());
}

#[tokio::test]
async fn a_retry_after_longer_than_the_policy_allows_is_capped() {
    let f = Fixture::new();
    f.mock.inject(
        When::Manifest(TAG.into()),
        Fault::retry_after(503, "3600"),
        1,
    );
    let pulled = tokio::time::timeout(Duration::from_secs(14), f.pull(&f.client()))
        .await
        .expect("Retry-After: 3600 was not capped at the policy's max")
        .unwrap();
    f.assert_pulled(&pulled);
    assert_eq!(
        f.notes.with("trying again in 0.0s").len(),
        1,
        "{:?}",
        f.notes.all()
    );
}

#[tokio::test]
async fn exhausted_retries_name_the_manifest_and_the_status() {
    let f = Fixture::new();
    f.mock.inject(When::Manifests, Fault::status(503), ALWAYS);
    let err = f.pull(&f.client()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Status { status, code: Some(code), .. }
            if *status == StatusCode::SERVICE_UNAVAILABLE && code == "UNAVAILABLE"),
        "{err:?}"
    );
    let message = err.to_string();
    let what = format!("manifest {}/{REPO}:{TAG}", f.mock.host());
    assert!(message.starts_with(&what), "{message}");
    assert!(message.contains("503 Service Unavailable"), "{message}");
    assert_eq!(f.mock.requests_to(&When::Manifests).len(), TRIES as usize);
    f.assert_not_named();
}

#[tokio::test]
async fn exhausted_retries_on_a_blob_name_the_blob() {
    let f = Fixture::new();
    let layer = f.image.layer_digest(0);
    f.mock
        .inject(When::blob(&layer), Fault::status(500), ALWAYS);
    let err = f.pull(&f.client()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Status { status, .. } if *status == StatusCode::INTERNAL_SERVER_ERROR),
        "{err:?}"
    );
    let message = err.to_string();
    let what = format!("blob {layer} of {}/{REPO}", f.mock.host());
    assert!(message.starts_with(&what), "{message}");
    assert!(message.contains("500 Internal Server Error"), "{message}");
    assert_eq!(
        f.mock.requests_to(&When::blob(&layer)).len(),
        TRIES as usize
    );
    assert!(!f.store.has_blob(&layer, None));
    f.assert_not_named();
    f.wait_no_temp_files().await;
}

#[tokio::test]
#[ignore = "bug: pull returns, and drops its gc guard, before the downloads it cancelled have removed their temp files (see report)"]
async fn a_failed_pull_has_cleaned_up_when_it_returns() {
    let f = Fixture::new();
    let config = f.image.config_digest();
    let layer = f.image.layer_digest(0);
    // The config's download is in flight (its temp file made) when the layer fails.
    f.mock.inject(
        When::blob(&config),
        Fault::Stall { after: Some(10) },
        ALWAYS,
    );
    f.mock
        .inject(When::blob(&layer), Fault::status(500), ALWAYS);
    let options = PullOptions {
        platform: None,
        concurrency: 4,
    };
    let progress = Arc::new(Recorder::default());
    let err = pull(&f.client(), &f.store, &f.reference(TAG), &options, progress)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Status { status, .. } if *status == StatusCode::INTERNAL_SERVER_ERROR),
        "{err:?}"
    );
    f.assert_no_temp_files();
}

#[tokio::test]
#[ignore = "bug: retries exhausted on resets say `cannot reach registry` and do not name the blob (see report)"]
async fn exhausted_retries_on_resets_name_the_blob() {
    let f = Fixture::new();
    let layer = f.image.layer_digest(1);
    f.mock.inject(When::blob(&layer), Fault::Reset, ALWAYS);
    let err = f.pull(&f.client()).await.unwrap_err();
    assert_eq!(
        f.mock.requests_to(&When::blob(&layer)).len(),
        TRIES as usize
    );
    f.assert_not_named();
    // The registry answered the manifest and the other blobs: it was reached.
    let message = err.to_string();
    assert!(message.contains(&format!("blob {layer}")), "{message}");
}

#[tokio::test]
async fn a_404_is_not_retried() {
    let f = Fixture::new();
    let client = f.client();
    let options = PullOptions::default();
    let err = pull(
        &client,
        &f.store,
        &f.reference("missing"),
        &options,
        Arc::new(Recorder::default()),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::Status { status, code: Some(code), .. }
            if *status == StatusCode::NOT_FOUND && code == "MANIFEST_UNKNOWN"),
        "{err:?}"
    );
    assert_eq!(f.mock.requests().len(), 1, "{:#?}", f.mock.requests());

    // A blob the registry does not have: one request, and no temp file left.
    let unknown = Descriptor::new(
        mock::image::OCI_LAYER.into(),
        5,
        img_store::digest::sha256(b"nope!"),
    );
    let err = fetch_blob(
        &f.registry(&client),
        &f.store,
        REPO,
        &unknown,
        &Recorder::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::Status { status, code: Some(code), .. }
            if *status == StatusCode::NOT_FOUND && code == "BLOB_UNKNOWN"),
        "{err:?}"
    );
    assert_eq!(f.mock.requests_to(&When::Blobs).len(), 1);
    f.assert_no_temp_files();
}

#[tokio::test]
async fn connection_refused_is_retried_then_reported() {
    let f = Fixture::new();
    f.mock.down().await;
    let err = f.pull(&f.client()).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(&err, Error::Unreachable { .. }), "{err:?}");
    assert!(message.contains(&f.mock.host()), "{message}");
    assert!(
        message.to_lowercase().contains("connection refused"),
        "{message}"
    );
    assert_eq!(
        f.notes.with("trying again").len(),
        TRIES as usize - 1,
        "{:?}",
        f.notes.all()
    );
    assert!(f.mock.requests().is_empty());
}

#[tokio::test]
async fn a_registry_coming_up_between_tries_is_reached() {
    let f = Fixture::new();
    f.mock.down().await;
    // The first retry note brings the registry up: the next attempt finds it listening.
    let (mock, notes) = (f.mock.clone(), f.notes.clone());
    let client = Client::new(ClientOptions {
        log: Log::new(move |note| {
            notes.push(note);
            if note.contains("trying again") {
                mock.up().expect("listen again on the mock's port");
            }
        }),
        ..f.options()
    });
    let pulled = f.pull(&client).await.unwrap();
    f.assert_pulled(&pulled);
    assert_eq!(f.notes.with("trying again").len(), 1, "{:?}", f.notes.all());
}

#[tokio::test]
async fn a_reset_connection_is_retried() {
    let f = Fixture::new();
    let layer = f.image.layer_digest(1);
    f.mock.inject(When::blob(&layer), Fault::Reset, 1);
    let pulled = f.pull(&f.client()).await.unwrap();
    f.assert_pulled(&pulled);
    let requests = f.mock.requests_to(&When::blob(&layer));
    assert_eq!(statuses(&requests), [None, Some(200)]);
    assert_eq!(requests[0].fault, Some(Fault::Reset));
}

// ---------------------------------------------------------------------------------------
// Resume

#[tokio::test]
async fn a_cut_blob_resumes_from_the_cut() {
    let f = Fixture::new();
    let layer = f.image.layer_digest(1);
    f.mock
        .inject(When::blob(&layer), Fault::Cut { after: 30_000 }, 1);
    let progress = Arc::new(Recorder::default());
    let pulled = f.pull_with(&f.client(), progress.clone()).await.unwrap();
    f.assert_pulled(&pulled);
    let requests = f.mock.requests_to(&When::blob(&layer));
    assert_eq!(statuses(&requests), [Some(200), Some(206)]);
    assert_eq!(ranges(&requests), [None, Some("bytes=30000-".into())]);
    assert_eq!(progress.resets(&layer), Vec::<u64>::new());
    assert_eq!(progress.bytes_since_reset(&layer), LAYERS[1] as u64);
}

#[tokio::test]
async fn a_chunked_blob_cut_midway_resumes_from_the_cut() {
    let f = Fixture::new();
    let layer = f.image.layer_digest(1);
    f.mock
        .inject(When::blob(&layer), Fault::CutChunked { after: 30_000 }, 1);
    let pulled = f.pull(&f.client()).await.unwrap();
    f.assert_pulled(&pulled);
    let requests = f.mock.requests_to(&When::blob(&layer));
    assert_eq!(ranges(&requests), [None, Some("bytes=30000-".into())]);
}

#[tokio::test]
async fn a_server_ignoring_range_restarts_the_blob() {
    let f = Fixture::new();
    let layer = f.image.layer_digest(1);
    f.mock
        .inject(When::blob(&layer), Fault::Cut { after: 30_000 }, 1);
    f.mock.inject(When::blob(&layer), Fault::IgnoreRange, 1);
    let progress = Arc::new(Recorder::default());
    let pulled = f.pull_with(&f.client(), progress.clone()).await.unwrap();
    f.assert_pulled(&pulled);
    let requests = f.mock.requests_to(&When::blob(&layer));
    assert_eq!(statuses(&requests), [Some(200), Some(200)]);
    assert_eq!(ranges(&requests), [None, Some("bytes=30000-".into())]);
    assert_eq!(progress.resets(&layer), [0]);
    assert_eq!(progress.bytes_since_reset(&layer), LAYERS[1] as u64);
    assert_eq!(
        f.notes.with("resume at byte 30000").len(),
        1,
        "{:?}",
        f.notes.all()
    );
}

#[tokio::test]
async fn a_corrupted_blob_is_refused_and_leaves_nothing() {
    let f = Fixture::new();
    let layer = f.image.layer_digest(1);
    f.mock
        .inject(When::blob(&layer), Fault::Corrupt { at: 1234 }, ALWAYS);
    let err = f.pull(&f.client()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Store(img_store::Error::DigestMismatch { expected, .. }) if expected == &layer),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&layer.to_string()) && message.contains("digest mismatch"),
        "{message}"
    );
    assert!(!f.store.has_blob(&layer, None));
    assert!(!f.store.blob_path(&layer).exists());
    f.assert_no_temp_files();
    f.assert_not_named();
}

#[tokio::test]
async fn a_stalled_blob_times_out_and_resumes() {
    let f = Fixture::new();
    let client = Client::new(ClientOptions {
        stall_timeout: Duration::from_millis(300),
        ..f.options()
    });
    let layer = f.layer(1);
    f.mock.inject(
        When::blob(layer.digest()),
        Fault::Stall {
            after: Some(20_000),
        },
        1,
    );
    fetch_blob(
        &f.registry(&client),
        &f.store,
        REPO,
        &layer,
        &Recorder::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        f.store.read_blob(layer.digest()).unwrap(),
        f.image.layers[1]
    );
    f.assert_no_temp_files();
    let requests = f.mock.requests_to(&When::blob(layer.digest()));
    assert_eq!(
        requests[0].fault,
        Some(Fault::Stall {
            after: Some(20_000)
        })
    );
    assert_eq!(requests[1].range(), Some("bytes=20000-"));
    assert_eq!(requests[1].status, Some(206));
    assert!(
        !f.notes.with("(stalled); resuming").is_empty(),
        "{:?}",
        f.notes.all()
    );
}

#[tokio::test]
async fn a_stall_before_the_headers_is_retried() {
    let f = Fixture::new();
    let client = Client::new(ClientOptions {
        stall_timeout: Duration::from_millis(300),
        ..f.options()
    });
    f.mock
        .inject(When::Manifest(TAG.into()), Fault::Stall { after: None }, 1);
    let fetched = f.registry(&client).manifest(REPO, TAG, None).await.unwrap();
    assert_eq!(fetched.digest, f.image.manifest_digest());
    let requests = f.mock.requests_to(&When::Manifest(TAG.into()));
    assert_eq!(statuses(&requests).last(), Some(&Some(200)));
    assert_eq!(requests[0].fault, Some(Fault::Stall { after: None }));
}

#[tokio::test]
async fn a_cut_manifest_is_fetched_again() {
    let f = Fixture::new();
    f.mock
        .inject(When::Manifest(TAG.into()), Fault::Cut { after: 10 }, 1);
    let fetched = f
        .registry(&f.client())
        .manifest(REPO, TAG, None)
        .await
        .unwrap();
    assert_eq!(fetched.bytes, f.image.manifest);
    assert_eq!(f.mock.requests_to(&When::Manifest(TAG.into())).len(), 2);
}

#[tokio::test]
#[ignore = "bug: fetch_blob resumes a blob it already holds whole and fails on the 416 (see report)"]
async fn a_blob_whose_response_breaks_after_its_last_byte_is_committed() {
    let f = Fixture::new();
    let layer = f.layer(1);
    // Every byte arrives, chunked; the final empty chunk never does.
    f.mock.inject(
        When::blob(layer.digest()),
        Fault::CutChunked { after: LAYERS[1] },
        1,
    );
    let result = fetch_blob(
        &f.registry(&f.client()),
        &f.store,
        REPO,
        &layer,
        &Recorder::default(),
    )
    .await;
    let requests = f.mock.requests_to(&When::blob(layer.digest()));
    assert!(result.is_ok(), "{result:?}; requests: {requests:#?}");
    assert_eq!(
        f.store.read_blob(layer.digest()).unwrap(),
        f.image.layers[1]
    );
    f.assert_no_temp_files();
}

#[tokio::test]
#[ignore = "bug: fetch_blob makes one attempt fewer than RetryPolicy::tries when none adds a byte (see report)"]
async fn a_blob_cut_before_its_first_byte_gets_every_try() {
    let f = Fixture::new();
    let layer = f.layer(1);
    f.mock
        .inject(When::blob(layer.digest()), Fault::Cut { after: 0 }, ALWAYS);
    let err = fetch_blob(
        &f.registry(&f.client()),
        &f.store,
        REPO,
        &layer,
        &Recorder::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(&err, Error::Interrupted { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&layer.digest().to_string()),
        "{err}"
    );
    assert_eq!(f.mock.requests_to(&When::Blobs).len(), TRIES as usize);
    f.assert_no_temp_files();
}

// ---------------------------------------------------------------------------------------
// Auth

/// `Basic base64(USER:password)`'s encoded part.
fn basic_token(password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"))
}

#[tokio::test]
async fn a_basic_challenge_is_answered_once_with_the_credentials() {
    let f = Fixture::new();
    f.mock.set_auth(Auth::Basic {
        username: USER.into(),
        password: PASSWORD.into(),
    });
    let pulled = f.pull(&f.client_with_creds(PASSWORD)).await.unwrap();
    f.assert_pulled(&pulled);
    let requests = f.mock.requests();
    let challenged: Vec<&Request> = requests.iter().filter(|r| r.status == Some(401)).collect();
    assert_eq!(challenged.len(), 1, "{requests:#?}");
    assert_eq!(challenged[0].seq, 0);
    assert_eq!(challenged[0].auth_scheme(), None);
    for r in &requests[1..] {
        assert_eq!(
            (r.auth_scheme(), r.status),
            (Some("Basic"), Some(200)),
            "{r:#?}"
        );
    }
    assert!(f.mock.requests_to(&When::Token).is_empty());
}

/// Assert one token request, anonymous or not, for `lib/app`'s pull scope of `service`;
/// that only the first request was challenged; and that every later one bore the token.
fn assert_one_token(requests: &[Request], service: &str, token_auth: Option<&str>) {
    let tokens: Vec<&Request> = requests
        .iter()
        .filter(|r| r.route == mock::Route::Token)
        .collect();
    assert_eq!(tokens.len(), 1, "{requests:#?}");
    assert_eq!(tokens[0].scopes(), [format!("repository:{REPO}:pull")]);
    assert_eq!(tokens[0].query("service"), Some(service));
    assert_eq!(tokens[0].auth_scheme(), token_auth);
    assert_eq!(tokens[0].status, Some(200));
    let challenged: Vec<&Request> = requests.iter().filter(|r| r.status == Some(401)).collect();
    assert_eq!(challenged.len(), 1, "{requests:#?}");
    assert_eq!(challenged[0].seq, 0);
    for r in requests.iter().filter(|r| r.seq > tokens[0].seq) {
        assert_eq!(
            (r.auth_scheme(), r.status),
            (Some("Bearer"), Some(200)),
            "{r:#?}"
        );
    }
}

#[tokio::test]
async fn a_bearer_token_is_fetched_for_the_scope_and_reused() {
    let f = Fixture::new();
    f.mock
        .set_auth(Auth::Bearer(Bearer::anonymous("mock-service")));
    let pulled = f.pull(&f.client()).await.unwrap();
    f.assert_pulled(&pulled);
    assert_one_token(&f.mock.requests(), "mock-service", None);
}

#[tokio::test]
async fn a_bearer_challenge_without_a_scope_gets_the_clients_own() {
    let f = Fixture::new();
    f.mock.set_auth(Auth::Bearer(Bearer {
        scope_in_challenge: false,
        ..Bearer::anonymous("mock-service")
    }));
    let pulled = f.pull(&f.client()).await.unwrap();
    f.assert_pulled(&pulled);
    assert_one_token(&f.mock.requests(), "mock-service", None);
}

#[tokio::test]
async fn a_token_endpoint_wanting_credentials_gets_them() {
    let f = Fixture::new();
    f.mock.set_auth(Auth::Bearer(Bearer {
        credentials: Some((USER.into(), PASSWORD.into())),
        expires_in: Some(300),
        ..Bearer::anonymous("mock-service")
    }));
    let pulled = f.pull(&f.client_with_creds(PASSWORD)).await.unwrap();
    f.assert_pulled(&pulled);
    assert_one_token(&f.mock.requests(), "mock-service", Some("Basic"));
}

#[tokio::test]
async fn an_expired_token_is_fetched_again() {
    let f = Fixture::new();
    f.mock
        .set_auth(Auth::Bearer(Bearer::anonymous("mock-service")));
    let registry = f.registry(&f.client());
    registry.manifest(REPO, TAG, None).await.unwrap();
    assert_eq!(f.mock.requests_to(&When::Token).len(), 1);

    f.mock.expire_tokens();
    let config = Descriptor::new(
        mock::image::OCI_CONFIG.into(),
        f.image.config.len() as u64,
        f.image.config_digest(),
    );
    fetch_blob(&registry, &f.store, REPO, &config, &Recorder::default())
        .await
        .unwrap();
    assert!(f.store.has_blob(&f.image.config_digest(), None));
    let tokens = f.mock.requests_to(&When::Token);
    assert_eq!(tokens.len(), 2);
    assert_eq!(tokens[1].scopes(), [format!("repository:{REPO}:pull")]);
    let blobs = f.mock.requests_to(&When::Blobs);
    assert_eq!(statuses(&blobs), [Some(401), Some(200)]);
    assert_eq!(
        blobs[0].header("authorization"),
        Some("Bearer mock-token-1")
    );
    assert_eq!(
        blobs[1].header("authorization"),
        Some("Bearer mock-token-2")
    );
}

#[tokio::test]
async fn anonymous_access_refused_says_so() {
    let f = Fixture::new();
    f.mock.set_auth(Auth::Basic {
        username: USER.into(),
        password: PASSWORD.into(),
    });
    let err = f.pull(&f.client()).await.unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(
            &err,
            Error::Unauthorized {
                refused: "anonymous access",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        message.contains(&format!("manifest {}/{REPO}:{TAG}", f.mock.host())),
        "{message}"
    );
    assert!(message.contains("refused anonymous access"), "{message}");
    assert_eq!(f.mock.requests().len(), 1, "{:#?}", f.mock.requests());

    // The same when it is the token endpoint that wants credentials.
    let f = Fixture::new();
    f.mock.set_auth(Auth::Bearer(Bearer {
        credentials: Some((USER.into(), PASSWORD.into())),
        ..Bearer::anonymous("mock-service")
    }));
    let err = f.pull(&f.client()).await.unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(
            &err,
            Error::Unauthorized {
                refused: "anonymous access",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(message.contains("token for manifest"), "{message}");
    assert_eq!(f.mock.requests_to(&When::Token).len(), 1);
}

#[tokio::test]
async fn a_failing_token_endpoint_gives_a_clear_error() {
    let f = Fixture::new();
    f.mock
        .set_auth(Auth::Bearer(Bearer::anonymous("mock-service")));
    f.mock.inject(When::Token, Fault::status(500), ALWAYS);
    let registry = f.registry(&f.client());
    let err = registry.manifest(REPO, TAG, None).await.unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(&err, Error::Status { status, .. } if *status == StatusCode::INTERNAL_SERVER_ERROR),
        "{err:?}"
    );
    let what = format!("token for manifest {}/{REPO}:{TAG}", f.mock.host());
    assert!(message.starts_with(&what), "{message}");
    assert_eq!(f.mock.requests_to(&When::Token).len(), TRIES as usize);

    // A token answer without a token.
    f.mock.clear_faults();
    f.mock.inject(
        When::Token,
        Fault::Answer {
            status: 200,
            content_type: "application/json".into(),
            body: br#"{"expires_in": 60}"#.to_vec(),
        },
        1,
    );
    let err = registry.manifest(REPO, TAG, None).await.unwrap_err();
    assert!(matches!(&err, Error::Protocol { .. }), "{err:?}");
    assert!(
        err.to_string().contains("neither token nor access_token"),
        "{err}"
    );
}

#[tokio::test]
async fn the_password_never_appears_in_errors_or_debug_output() {
    let encoded = basic_token(PASSWORD);
    let mut seen: Vec<String> = Vec::new();
    let mut keep = |s: String| seen.push(s);

    // Basic: a wrong password refused, then the right one accepted and cached.
    let f = Fixture::new();
    f.mock.set_auth(Auth::Basic {
        username: USER.into(),
        password: "another".into(),
    });
    let client = f.client_with_creds(PASSWORD);
    let err = f.pull(&client).await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Unauthorized {
                refused: "the credentials",
                ..
            }
        ),
        "{err:?}"
    );
    keep(format!("{err} {err:?}"));
    f.mock.set_auth(Auth::Basic {
        username: USER.into(),
        password: PASSWORD.into(),
    });
    let client = f.client_with_creds(PASSWORD);
    f.pull(&client).await.unwrap();
    keep(format!(
        "{client:?} {:?} {:?}",
        f.registry(&client),
        client.options()
    ));
    keep(f.notes.all().join("\n"));
    // The mock did see it (so the checks below look for the right thing).
    assert!(
        f.mock
            .requests()
            .iter()
            .any(|r| r.header("authorization") == Some(&format!("Basic {encoded}")))
    );

    // Bearer: the token endpoint refusing the credentials, then failing.
    let f = Fixture::new();
    f.mock.set_auth(Auth::Bearer(Bearer {
        credentials: Some((USER.into(), "another".into())),
        ..Bearer::anonymous("mock-service")
    }));
    let client = f.client_with_creds(PASSWORD);
    let err = f.pull(&client).await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Unauthorized {
                refused: "the credentials",
                ..
            }
        ),
        "{err:?}"
    );
    keep(format!("{err} {err:?}"));
    f.mock.inject(When::Token, Fault::status(503), ALWAYS);
    let err = f.pull(&client).await.unwrap_err();
    keep(format!("{err} {err:?} {client:?}"));
    keep(f.notes.all().join("\n"));

    for text in &seen {
        assert!(!text.contains(PASSWORD), "the password shows in: {text}");
        assert!(
            !text.contains(&encoded),
            "the encoded credentials show in: {text}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Manifests

#[tokio::test]
async fn an_announced_digest_that_does_not_match_is_refused() {
    let f = Fixture::new();
    let wrong = img_store::digest::sha256(b"another manifest");
    f.mock.inject(
        When::Manifest(TAG.into()),
        Fault::AnnounceDigest(Some(wrong.to_string())),
        ALWAYS,
    );
    let registry = f.registry(&f.client());
    let err = registry.manifest(REPO, TAG, None).await.unwrap_err();
    assert!(
        matches!(&err, Error::Store(img_store::Error::DigestMismatch { expected, actual })
            if expected == &wrong && actual == &f.image.manifest_digest()),
        "{err:?}"
    );
    let err = f.pull(&f.client()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Store(img_store::Error::DigestMismatch { .. })),
        "{err:?}"
    );
    assert!(!f.store.has_blob(&f.image.manifest_digest(), None));
    f.assert_not_named();
}

#[tokio::test]
async fn a_pinned_digest_that_does_not_match_is_refused() {
    let f = Fixture::new();
    let wrong = img_store::digest::sha256(b"another manifest");
    let err = f
        .registry(&f.client())
        .manifest(REPO, TAG, Some(&wrong))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Store(img_store::Error::DigestMismatch { expected, .. }) if expected == &wrong),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_manifest_over_the_size_cap_is_refused() {
    let f = Fixture::new();
    let registry = f.registry(&f.client());
    // Served under made-up digests, announcing none: the client hashes what it accepts, and
    // nothing else needs to (4 MiB take a debug build a quarter of a second).
    let at_cap = vec![b' '; MAX_MANIFEST];
    let key = img_store::digest::sha256(b"at-cap");
    f.mock.add_manifest_as(
        REPO,
        Some("at-cap"),
        mock::image::OCI_MANIFEST,
        at_cap,
        &key,
    );
    f.mock.inject(
        When::Manifest("at-cap".into()),
        Fault::AnnounceDigest(None),
        ALWAYS,
    );
    let fetched = registry.manifest(REPO, "at-cap", None).await.unwrap();
    assert_eq!(fetched.bytes.len(), MAX_MANIFEST);

    let over = vec![b' '; MAX_MANIFEST + 1];
    let key = img_store::digest::sha256(b"over");
    f.mock
        .add_manifest_as(REPO, Some("over"), mock::image::OCI_MANIFEST, over, &key);
    let err = registry.manifest(REPO, "over", None).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(&err, Error::Protocol { .. }), "{err:?}");
    assert!(
        message.contains(&format!("manifest {}/{REPO}:over", f.mock.host())),
        "{message}"
    );
    assert!(
        message.contains(&format!("larger than {MAX_MANIFEST} bytes")),
        "{message}"
    );
    assert_eq!(f.mock.requests_to(&When::Manifest("over".into())).len(), 1);
}

#[tokio::test]
async fn a_blob_longer_than_its_descriptor_is_refused() {
    let f = Fixture::new();
    let layer = f.layer(0);
    let mut longer = f.image.layers[0].clone();
    longer.extend_from_slice(b"and more");
    f.mock.inject(
        When::blob(layer.digest()),
        Fault::Answer {
            status: 200,
            content_type: "application/octet-stream".into(),
            body: longer,
        },
        ALWAYS,
    );
    let err = fetch_blob(
        &f.registry(&f.client()),
        &f.store,
        REPO,
        &layer,
        &Recorder::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::Store(img_store::Error::SizeMismatch { digest, expected, .. })
            if digest == layer.digest() && *expected == LAYERS[0] as u64),
        "{err:?}"
    );
    assert!(!f.store.has_blob(layer.digest(), None));
    f.assert_no_temp_files();
}

#[tokio::test]
async fn a_reset_on_first_contact_is_retried() {
    let f = Fixture::new();
    f.mock.inject(When::Manifest(TAG.into()), Fault::Reset, 1);
    let pulled = f.pull(&f.client()).await.unwrap();
    f.assert_pulled(&pulled);
    let manifests = f.mock.requests_to(&When::Manifest(TAG.into()));
    assert_eq!(statuses(&manifests), [None, Some(200)]);
}

#[tokio::test]
async fn a_rate_limited_token_endpoint_is_retried() {
    let f = Fixture::new();
    f.mock
        .set_auth(Auth::Bearer(Bearer::anonymous("mock-service")));
    f.mock.inject(When::Token, Fault::retry_after(429, "0"), 1);
    let fetched = f
        .registry(&f.client())
        .manifest(REPO, TAG, None)
        .await
        .unwrap();
    assert_eq!(fetched.digest, f.image.manifest_digest());
    assert_eq!(
        statuses(&f.mock.requests_to(&When::Token)),
        [Some(429), Some(200)]
    );
}

#[tokio::test]
async fn login_checks_the_credentials() {
    let f = Fixture::new();
    f.mock.set_auth(Auth::Basic {
        username: USER.into(),
        password: PASSWORD.into(),
    });
    let client = f.client();
    let right = Credentials {
        username: USER.into(),
        password: PASSWORD.into(),
    };
    client.check_login(&f.mock.host(), &right).await.unwrap();
    let wrong = Credentials {
        password: "another".into(),
        ..right
    };
    let err = client
        .check_login(&f.mock.host(), &wrong)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Unauthorized {
                refused: "the credentials",
                ..
            }
        ),
        "{err:?}"
    );
    let pings = f.mock.requests_to(&When::Ping);
    assert_eq!(
        statuses(&pings),
        [Some(401), Some(200), Some(401), Some(401)]
    );
}

#[tokio::test]
async fn login_to_a_token_registry_sends_the_credentials_to_its_endpoint() {
    let f = Fixture::new();
    f.mock.set_auth(Auth::Bearer(Bearer {
        credentials: Some((USER.into(), PASSWORD.into())),
        ..Bearer::anonymous("mock-service")
    }));
    let right = Credentials {
        username: USER.into(),
        password: PASSWORD.into(),
    };
    f.client()
        .check_login(&f.mock.host(), &right)
        .await
        .unwrap();
    let tokens = f.mock.requests_to(&When::Token);
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].auth_scheme(), Some("Basic"));
    assert_eq!(tokens[0].scopes(), Vec::<&str>::new());
    assert_eq!(
        statuses(&f.mock.requests_to(&When::Ping)),
        [Some(401), Some(200)]
    );
}

// ---------------------------------------------------------------------------------------
// Pulls across sources

#[tokio::test]
async fn a_failing_mirror_falls_through_to_the_registry() {
    let f = Fixture::new();
    let mirror = MockRegistry::start();
    mirror.add_image(REPO, TAG, &f.image);
    let layer = f.image.layer_digest(1);
    mirror.inject(When::blob(&layer), Fault::status(503), ALWAYS);
    let conf = format!(
        "[[registry]]\nlocation = \"{}\"\n[[registry.mirror]]\nlocation = \"{}\"\n",
        f.mock.host(),
        mirror.host()
    );
    let client = Client::new(ClientOptions {
        registries: img_registry::RegistriesConf::parse(&conf).unwrap(),
        ..f.options()
    });
    let pulled = f.pull(&client).await.unwrap();
    f.assert_pulled(&pulled);
    assert_eq!(
        mirror.requests_to(&When::blob(&layer)).len(),
        TRIES as usize
    );
    let fell = f
        .notes
        .with(&format!("mirror {}/{REPO} failed", mirror.host()));
    assert_eq!(fell.len(), 1, "{:?}", f.notes.all());
    // The registry served what the mirror had not: the layer, and the manifest again.
    assert_eq!(f.mock.requests_to(&When::blob(&layer)).len(), 1);
    assert_eq!(f.mock.requests_to(&When::Manifests).len(), 1);
}

#[tokio::test]
async fn a_second_pull_fetches_only_the_manifest() {
    let f = Fixture::new();
    let client = f.client();
    let first = f.pull(&client).await.unwrap();
    assert_eq!(first.fetched, 1 + LAYERS.len());
    let second = f.pull(&client).await.unwrap();
    f.assert_pulled(&second);
    assert_eq!((second.fetched, second.fetched_bytes), (0, 0));
    assert_eq!(f.mock.requests_to(&When::Blobs).len(), 1 + LAYERS.len());
    assert_eq!(f.mock.requests_to(&When::Manifests).len(), 2);
}

// ---------------------------------------------------------------------------------------
// The mock itself, on the wire (so the tests above do not pass thanks to a mock bug)

/// Send `request` (with `Connection: close`) and read the whole answer: (head, body).
async fn raw(mock: &MockRegistry, request: &str) -> (String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(mock.addr()).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let at = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8(answer[..at].to_vec()).unwrap();
    (head, answer[at + 4..].to_vec())
}

#[tokio::test]
async fn the_mock_answers_as_a_registry_does() {
    let f = Fixture::new();
    let host = f.mock.host();
    let layer = f.image.layer_digest(0);
    let get = |path: &str, extra: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")
    };

    let (head, body) = raw(
        &f.mock,
        &get(&format!("/v2/{REPO}/blobs/{layer}"), "Range: bytes=10-\r\n"),
    )
    .await;
    assert!(
        head.starts_with("HTTP/1.1 206 Partial Content\r\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!(
            "Content-Range: bytes 10-{}/{}",
            LAYERS[0] - 1,
            LAYERS[0]
        )),
        "{head}"
    );
    assert!(
        head.contains(&format!("Docker-Content-Digest: {layer}")),
        "{head}"
    );
    assert_eq!(body, f.image.layers[0][10..]);

    let beyond = format!("Range: bytes={}-\r\n", LAYERS[0]);
    let (head, _) = raw(&f.mock, &get(&format!("/v2/{REPO}/blobs/{layer}"), &beyond)).await;
    assert!(head.starts_with("HTTP/1.1 416 "), "{head}");

    let head_request =
        format!("HEAD /v2/{REPO}/manifests/{TAG} HTTP/1.1\r\nConnection: close\r\n\r\n");
    let (head, body) = raw(&f.mock, &head_request).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains(&format!("Content-Type: {}", mock::image::OCI_MANIFEST)),
        "{head}"
    );
    assert!(
        head.contains(&format!(
            "Docker-Content-Digest: {}",
            f.image.manifest_digest()
        )),
        "{head}"
    );
    assert!(
        head.contains(&format!("Content-Length: {}", f.image.manifest.len())),
        "{head}"
    );
    assert!(body.is_empty());

    let (head, body) = raw(&f.mock, &get("/v2/_catalog", "")).await;
    assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["errors"][0]["code"], "NOT_FOUND");

    let upload = format!(
        "POST /v2/{REPO}/blobs/uploads/ HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
    );
    let (head, body) = raw(&f.mock, &upload).await;
    assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["errors"][0]["code"], "UNSUPPORTED");
    let uploads: Vec<Request> = f
        .mock
        .requests()
        .into_iter()
        .filter(|r| matches!(r.route, mock::Route::Upload { .. }))
        .collect();
    assert_eq!(
        (
            uploads.len(),
            uploads[0].method.as_str(),
            uploads[0].body_len
        ),
        (1, "POST", 3)
    );

    f.mock
        .set_auth(Auth::Bearer(Bearer::anonymous("mock-service")));
    let (head, _) = raw(&f.mock, &get(&format!("/v2/{REPO}/manifests/{TAG}"), "")).await;
    assert!(head.starts_with("HTTP/1.1 401 "), "{head}");
    let challenge = format!(
        r#"WWW-Authenticate: Bearer realm="http://{host}/token",service="mock-service",scope="repository:{REPO}:pull""#
    );
    assert!(head.contains(&challenge), "{head}");
    let (head, _) = raw(
        &f.mock,
        &get(
            "/token?service=other&scope=repository%3Alib%2Fapp%3Apull",
            "",
        ),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    let (head, body) = raw(
        &f.mock,
        &get(
            "/token?service=mock-service&scope=repository%3Alib%2Fapp%3Apull",
            "",
        ),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let token: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let bearer = format!(
        "Authorization: Bearer {}\r\n",
        token["token"].as_str().unwrap()
    );
    let (head, body) = raw(
        &f.mock,
        &get(&format!("/v2/{REPO}/manifests/{TAG}"), &bearer),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(body, f.image.manifest);
    let tokens = f.mock.requests_to(&When::Token);
    assert_eq!(tokens[1].scopes(), [format!("repository:{REPO}:pull")]);

    // Not HTTP (a TLS hello): refused at once.
    let (head, _) = raw(&f.mock, "\u{16}\u{3}\u{1}hello").await;
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    assert_eq!(
        f.mock.requests().last().unwrap().route,
        mock::Route::NotHttp
    );
}
