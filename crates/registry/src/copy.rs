//! Copying an image from one repository to another, registry to registry, without a store:
//! each blob streams from the source to the destination (verified in flight), or is mounted
//! when both repositories are on the same registry; manifests go across byte for byte.

use std::sync::Arc;

use img_store::Descriptor;
use img_store::manifest::{self, Manifest};

use crate::client::Registry;
use crate::push::{BlobSource, Doc, image_blobs, put_docs};
use crate::{Client, Error, Platform, Progress, PushOptions, Pushed, Reference, Result};

/// What [`copy`] may choose.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// From a multi-platform image, copy every platform and the index (skopeo's `--all`);
    /// else only `platform`'s manifest (skopeo's default).
    pub all: bool,
    /// The platform to copy from an index; the host's when `None`.
    pub platform: Option<Platform>,
    /// Concurrency of blob transfers.
    pub push: PushOptions,
}

/// Copy `source` to `destination`. The destination gets the exact manifest bytes, so the
/// digest stays the same (for a single platform taken from an index, the platform manifest's).
///
/// ```no_run
/// # async fn demo() -> Result<(), img_registry::Error> {
/// use std::sync::Arc;
/// use img_registry::{Client, ClientOptions, CopyOptions, Quiet, Reference, copy};
///
/// let client = Client::new(ClientOptions::default());
/// let from = Reference::parse("127.0.0.1:5000/redis:7")?;
/// let to = Reference::parse("127.0.0.1:5001/mirror/redis:7")?;
/// let copied = copy(&client, &from, &to, &CopyOptions::default(), Arc::new(Quiet)).await?;
/// println!("{}", copied.digest);
/// # Ok(()) }
/// ```
pub async fn copy(
    client: &Client,
    source: &Reference,
    destination: &Reference,
    options: &CopyOptions,
    progress: Arc<dyn Progress>,
) -> Result<Pushed> {
    let sources = client.sources(source)?;
    let mut failure = None;
    let mut found = None;
    for s in &sources {
        let registry = client.registry(&s.registry, s.insecure)?;
        match plan(&registry, &s.repository, source, options).await {
            Ok(docs) => {
                found = Some((registry, s.repository.clone(), docs));
                break;
            }
            Err(e) if s.mirror => {
                client.options().log.say(&format!(
                    "mirror {}/{} failed: {e}; trying the next source",
                    s.registry, s.repository
                ));
                failure = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    let Some((from, from_repo, (docs, platform_only))) = found else {
        return Err(failure.unwrap_or_else(|| Error::Protocol {
            what: source.to_string(),
            reason: "registries.conf gives no source to copy from".into(),
        }));
    };
    let target = client
        .sources(destination)?
        .into_iter()
        .rfind(|s| !s.mirror)
        .ok_or_else(|| Error::Protocol {
            what: destination.to_string(),
            reason: "registries.conf gives no location to copy to".into(),
        })?;
    let registry = client.registry(&target.registry, target.insecure)?;
    let mount = (from.name() == registry.name() && from_repo != target.repository)
        .then_some(from_repo.as_str());
    let (digest, counts) = put_docs(
        &registry,
        &target.repository,
        mount,
        &BlobSource::Registry(from.clone(), from_repo.clone()),
        &docs,
        destination,
        &options.push,
        &progress,
    )
    .await?;
    let top = docs.last().expect("a plan has at least one document");
    Ok(Pushed {
        reference: destination.clone(),
        digest,
        media_type: top.media_type.clone(),
        uploaded: counts.uploaded,
        uploaded_bytes: counts.uploaded_bytes,
        mounted: counts.mounted,
        present: counts.present,
        platform_only,
    })
}

/// The documents to copy, children first, and the platform when only one of an index's is.
async fn plan(
    registry: &Registry,
    repo: &str,
    source: &Reference,
    options: &CopyOptions,
) -> Result<(Vec<Doc>, Option<String>)> {
    let top = registry
        .manifest(repo, &source.manifest_reference(), source.digest())
        .await?;
    let parsed = manifest::parse(&top.digest, top.media_type.as_deref(), &top.bytes)?;
    let index = match parsed.manifest {
        Manifest::Image(m) => {
            return Ok((
                vec![Doc {
                    digest: top.digest,
                    media_type: parsed.media_type,
                    bytes: top.bytes,
                    blobs: image_blobs(&m),
                }],
                None,
            ));
        }
        Manifest::Index(index) => index,
    };
    let chosen: Vec<Descriptor> = if options.all {
        index.manifests().clone()
    } else {
        let wanted = options.platform.clone().unwrap_or_else(Platform::host);
        let entry = wanted
            .select(index.manifests())
            .ok_or_else(|| Error::NoPlatform {
                reference: source.to_string(),
                wanted: wanted.to_string(),
                available: index
                    .manifests()
                    .iter()
                    .filter_map(Platform::of_descriptor)
                    .map(|p| p.to_string())
                    .collect(),
            })?;
        vec![entry.clone()]
    };
    let mut docs = Vec::new();
    for entry in &chosen {
        let child = registry
            .manifest(repo, entry.digest().as_ref(), Some(entry.digest()))
            .await?;
        let declared = entry.media_type().to_string();
        let parsed_child = manifest::parse(&child.digest, Some(&declared), &child.bytes)?;
        let Manifest::Image(m) = parsed_child.manifest else {
            return Err(img_store::Error::BadManifest {
                digest: child.digest,
                reason: "an index inside an index is not supported".into(),
            }
            .into());
        };
        docs.push(Doc {
            digest: child.digest,
            media_type: parsed_child.media_type,
            bytes: child.bytes,
            blobs: image_blobs(&m),
        });
    }
    if options.all {
        docs.push(Doc {
            digest: top.digest,
            media_type: parsed.media_type,
            bytes: top.bytes,
            blobs: Vec::new(),
        });
        return Ok((docs, None));
    }
    let platform = chosen
        .first()
        .and_then(Platform::of_descriptor)
        .map(|p| p.to_string());
    Ok((docs, platform))
}
