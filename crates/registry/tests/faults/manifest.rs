//! Manifests: digests announced or pinned that do not match, and the size cap.

use super::*;

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
