//! Resuming blob downloads: cuts, stalls, servers ignoring `Range`, corrupt or oversized
//! blobs, and what is left in the store afterwards.

use super::*;

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
