//! Pulls across sources: mirrors falling through, blobs already in the store.

use super::*;

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
