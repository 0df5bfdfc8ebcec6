//! Retries: transient statuses, `Retry-After`, exhausted retries, 404s, refused and reset
//! connections.

use super::*;

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

#[tokio::test]
async fn a_reset_on_first_contact_is_retried() {
    let f = Fixture::new();
    f.mock.inject(When::Manifest(TAG.into()), Fault::Reset, 1);
    let pulled = f.pull(&f.client()).await.unwrap();
    f.assert_pulled(&pulled);
    let manifests = f.mock.requests_to(&When::Manifest(TAG.into()));
    assert_eq!(statuses(&manifests), [None, Some(200)]);
}
