//! Pulling an image into the store: resolve the reference to a platform manifest, fetch what
//! the store lacks (layers concurrently, each streamed to disk and verified), then name it.

use std::sync::Arc;

use img_store::manifest::{self, Manifest};
use std::collections::HashMap;

use img_store::{
    Descriptor, Digest, MANIFEST_ANNOTATION, PLATFORM_ANNOTATION, REGISTRY_DIGEST_ANNOTATION,
    SOURCE_ANNOTATION, Store,
};
use reqwest::StatusCode;
use tokio::sync::Semaphore;

use crate::client::{Client, Registry};
use crate::error::root_cause;
use crate::retry::Backoff;
use crate::{Error, Platform, Reference, Result};

/// What [`pull`] may choose.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The platform to pick from an index; the host's when `None`.
    pub platform: Option<Platform>,
    /// How many blobs download at once.
    pub concurrency: usize,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: None,
            concurrency: 4,
        }
    }
}

/// Callbacks for showing a pull's progress. Every method has an empty default.
pub trait Progress: Send + Sync {
    /// The blobs of the chosen manifest are known; `present` ones will not be fetched.
    fn blobs(&self, _blobs: &[Descriptor], _present: &[bool]) {}
    /// `bytes` more bytes of `digest` arrived.
    fn advance(&self, _digest: &Digest, _bytes: u64) {}
    /// These bytes of `digest`, from byte `offset`, were written to its ingest (not verified
    /// yet: [`Progress::done`] says when they are). For work on a blob while it downloads,
    /// such as unpacking it; bytes that do not follow the previous ones mean a download that
    /// started over. Waiting here slows this blob's download.
    fn received(&self, _digest: &Digest, _offset: u64, _bytes: &bytes::Bytes) {}
    /// `digest` starts again from byte `position` (a resumed or restarted download).
    fn reset(&self, _digest: &Digest, _position: u64) {}
    /// `digest` is verified and in the store.
    fn done(&self, _digest: &Digest) {}
}

/// A [`Progress`] that shows nothing.
#[derive(Debug, Default)]
pub struct Quiet;
impl Progress for Quiet {}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The reference, normalized; also the store's name for it.
    pub reference: Reference,
    /// The digest the reference resolved to at the registry (the index's, when it is an index).
    pub digest: Digest,
    /// The media type of that manifest or index.
    pub media_type: String,
    /// The platform manifest's digest, as the registry serves it.
    pub manifest_digest: Digest,
    /// The platform chosen from an index, if there was an index.
    pub platform: Option<Platform>,
    /// The config descriptor.
    pub config: Descriptor,
    /// The layer descriptors, base first.
    pub layers: Vec<Descriptor>,
    /// Blobs downloaded by this pull (config and layers).
    pub fetched: usize,
    /// Bytes downloaded by this pull (config and layers).
    pub fetched_bytes: u64,
}

/// Pull `reference` into `store` and name it there by its normalized form. The sources
/// registries.conf gives are tried in order: a mirror that fails in any way falls through to
/// the next source (said on the client's log); the last source's failure is the error.
pub async fn pull(
    client: &Client,
    store: &Store,
    reference: &Reference,
    options: &PullOptions,
    progress: Arc<dyn Progress>,
) -> Result<Pulled> {
    let _guard = store.pull_guard()?;
    let sources = client.sources(reference)?;
    let mut failure = None;
    for source in &sources {
        let registry = client.registry(&source.registry, source.insecure)?;
        let pulled = pull_from(
            &registry,
            &source.repository,
            store,
            reference,
            options,
            progress.clone(),
        )
        .await;
        match pulled {
            Err(e) if source.mirror => {
                client.options().log.say(&format!(
                    "mirror {}/{} failed: {e}; trying the next source",
                    source.registry, source.repository
                ));
                failure = Some(e);
            }
            other => return other,
        }
    }
    Err(failure.unwrap_or_else(|| Error::Protocol {
        what: reference.to_string(),
        reason: "registries.conf gives no source to pull from".into(),
    }))
}

/// Pull from one source: `registry`, where the image is `repo`.
async fn pull_from(
    registry: &Arc<Registry>,
    repo: &str,
    store: &Store,
    reference: &Reference,
    options: &PullOptions,
    progress: Arc<dyn Progress>,
) -> Result<Pulled> {
    let top = registry
        .manifest(repo, &reference.manifest_reference(), reference.digest())
        .await?;
    let parsed = manifest::parse(&top.digest, top.media_type.as_deref(), &top.bytes)?;

    // The platform manifest: the top document itself, or the index's entry for our platform.
    let (entry, platform, child_digest, child_bytes, child_type) = match &parsed.manifest {
        Manifest::Image(_) => (
            None,
            None,
            top.digest.clone(),
            top.bytes.clone(),
            parsed.media_type.clone(),
        ),
        Manifest::Index(index) => {
            let wanted = options.platform.clone().unwrap_or_else(Platform::host);
            let entry = wanted
                .select(index.manifests())
                .ok_or_else(|| Error::NoPlatform {
                    reference: reference.to_string(),
                    wanted: wanted.to_string(),
                    available: index
                        .manifests()
                        .iter()
                        .filter_map(Platform::of_descriptor)
                        .map(|p| p.to_string())
                        .collect(),
                })?;
            let bytes = if store.has_blob(entry.digest(), Some(entry.size())) {
                store.read_blob(entry.digest())?
            } else {
                registry
                    .manifest(repo, entry.digest().as_ref(), Some(entry.digest()))
                    .await?
                    .bytes
            };
            let chosen = Platform::of_descriptor(entry).unwrap_or(wanted);
            let media_type = entry.media_type().to_string();
            (
                Some(entry.clone()),
                Some(chosen),
                entry.digest().clone(),
                bytes,
                media_type,
            )
        }
    };
    let child = manifest::parse(&child_digest, Some(&child_type), &child_bytes)?;
    let Manifest::Image(image) = child.manifest else {
        return Err(img_store::Error::BadManifest {
            digest: child_digest,
            reason: "an index inside an index is not supported".into(),
        }
        .into());
    };

    let mut blobs = vec![image.config().clone()];
    blobs.extend(image.layers().iter().cloned());
    let present: Vec<bool> = blobs
        .iter()
        .map(|b| store.has_blob(b.digest(), Some(b.size())))
        .collect();
    progress.blobs(&blobs, &present);
    let missing: Vec<Descriptor> = blobs
        .iter()
        .zip(&present)
        .filter(|(_, p)| !**p)
        .map(|(b, _)| b.clone())
        .collect();
    let fetched = missing.len();
    let fetched_bytes = missing.iter().map(|b| b.size()).sum();
    fetch_all(
        registry,
        store,
        repo,
        missing,
        options.concurrency,
        &progress,
    )
    .await?;

    // Manifests go in after what they reference, so a manifest in the store implies its blobs.
    // Docker manifests and lists are stored in their OCI form, so that OCI tools read every
    // image; the registry's digest is kept as an annotation.
    // The registry's own bytes are kept beside (a blob under the registry's digest, reached
    // through the `io.img.digest` annotations), so a push reproduces the digest it served.
    let (child_stored, child_stored_type) = if child.media_type == manifest::DOCKER_MANIFEST {
        let oci = manifest::docker_to_oci(&child_digest, &child_bytes)?;
        store.put_blob(&child_digest, &child_bytes)?;
        (oci, manifest::OCI_MANIFEST.to_string())
    } else {
        (child_bytes, child.media_type.clone())
    };
    let child_stored_digest = store_json(store, &child_digest, &child_stored)?;
    let mut annotations = HashMap::new();
    let descriptor = match (&entry, &platform) {
        (Some(entry), Some(chosen)) => {
            let (bytes, media_type) = if parsed.media_type == manifest::DOCKER_LIST {
                let mut oci_entry = Descriptor::new(
                    child_stored_type.as_str().into(),
                    child_stored.len() as u64,
                    child_stored_digest.clone(),
                );
                oci_entry.set_platform(entry.platform().clone());
                let index = manifest::single_entry_index(&oci_entry);
                store.put_blob(&top.digest, &top.bytes)?;
                (index, manifest::OCI_INDEX.to_string())
            } else {
                (top.bytes.clone(), parsed.media_type.clone())
            };
            let digest = store_json(store, &top.digest, &bytes)?;
            annotations.insert(MANIFEST_ANNOTATION.into(), child_stored_digest.to_string());
            annotations.insert(PLATFORM_ANNOTATION.into(), chosen.to_string());
            Descriptor::new(media_type.as_str().into(), bytes.len() as u64, digest)
        }
        _ => Descriptor::new(
            child_stored_type.as_str().into(),
            child_stored.len() as u64,
            child_stored_digest.clone(),
        ),
    };
    let mut descriptor = descriptor;
    if descriptor.digest() != &top.digest {
        annotations.insert(REGISTRY_DIGEST_ANNOTATION.into(), top.digest.to_string());
    }
    annotations.insert(
        SOURCE_ANNOTATION.into(),
        format!("{}/{repo}", registry.name()),
    );
    descriptor.set_annotations(Some(annotations));
    store.set_ref(&reference.to_string(), descriptor)?;
    Ok(Pulled {
        reference: reference.clone(),
        digest: top.digest,
        media_type: parsed.media_type,
        manifest_digest: child_digest,
        platform,
        config: image.config().clone(),
        layers: image.layers().clone(),
        fetched,
        fetched_bytes,
    })
}

/// Store a JSON document under its sha256 (or, when unchanged, under the digest it came with).
fn store_json(store: &Store, original: &Digest, bytes: &[u8]) -> Result<Digest> {
    let digest = img_store::digest::of_bytes_like(original, bytes)?;
    store.put_blob(&digest, bytes)?;
    Ok(digest)
}

/// Download blobs, at most `concurrency` at once; the first failure cancels the rest (their
/// temp files are removed as their tasks are dropped).
async fn fetch_all(
    registry: &Arc<Registry>,
    store: &Store,
    repo: &str,
    blobs: Vec<Descriptor>,
    concurrency: usize,
    progress: &Arc<dyn Progress>,
) -> Result<()> {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    // A commit runs on a blocking thread that an aborted task does not stop: each holds one
    // of these until it has renamed or removed its temp file.
    let commits = Arc::new(Semaphore::new(COMMITS as usize));
    let mut tasks = tokio::task::JoinSet::new();
    for blob in blobs {
        let (registry, store, repo) = (registry.clone(), store.clone(), repo.to_string());
        let (permits, progress, commits) = (permits.clone(), progress.clone(), commits.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            fetch_blob_tracked(&registry, &store, &repo, &blob, progress.as_ref(), &commits).await
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let failed = match joined {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(e) => Error::Interrupted {
                what: "blob download".into(),
                reason: root_cause(&e),
            },
        };
        // The other downloads end (and remove their temp files) before the caller goes on,
        // their commits on blocking threads included.
        tasks.shutdown().await;
        let _all = commits.acquire_many(COMMITS).await;
        return Err(failed);
    }
    Ok(())
}

/// Stream one blob into the store, verified. A response cut or stalled midway is resumed
/// with `Range` from the bytes already written (the hash state is kept); a server that answers
/// the range with the whole blob restarts it cleanly. Attempts that add no byte count against
/// the retry policy; the full-blob digest check decides in the end.
pub async fn fetch_blob(
    registry: &Registry,
    store: &Store,
    repo: &str,
    blob: &Descriptor,
    progress: &dyn Progress,
) -> Result<()> {
    let commits = Arc::new(Semaphore::new(1));
    fetch_blob_tracked(registry, store, repo, blob, progress, &commits).await
}

/// More commits than can ever run at once: [`fetch_all`] takes them all to wait for every one.
const COMMITS: u32 = 1 << 16;

/// [`fetch_blob`], its commit holding a permit of `commits` while it runs.
async fn fetch_blob_tracked(
    registry: &Registry,
    store: &Store,
    repo: &str,
    blob: &Descriptor,
    progress: &dyn Progress,
    commits: &Arc<Semaphore>,
) -> Result<()> {
    let digest = blob.digest();
    let what = format!("blob {digest} of {}/{repo}", registry.name());
    let mut ingest = store.ingest(digest, Some(blob.size()))?;
    let mut backoff = Backoff::new(registry.retry());
    loop {
        let offset = ingest.written();
        let mut resp = registry.blob(repo, digest, offset).await?;
        if offset > 0 && resp.start() != Some(offset) {
            ingest.restart()?;
            progress.reset(digest, 0);
            let why = format!(
                "the server did not resume at byte {offset} (HTTP {}); starting over",
                resp.status()
            );
            if resp.start() != Some(0) {
                // A partial answer from elsewhere in the blob: ask again from the start.
                if !backoff.again(registry.log(), &what, why, None).await {
                    return Err(Error::Interrupted {
                        what,
                        reason: "the server does not answer range requests coherently".into(),
                    });
                }
                continue;
            }
            registry.log().say(&format!("{what}: {why}"));
        }
        let before = ingest.written();
        let reason = loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    let offset = ingest.written();
                    ingest.append(&chunk)?;
                    progress.received(digest, offset, &chunk);
                    progress.advance(digest, chunk.len() as u64);
                }
                Ok(None) if ingest.written() == blob.size() => break None,
                Ok(None) => break Some("the response ended early".to_string()),
                // Every byte is here: the digest check at commit decides.
                Err(_) if ingest.written() == blob.size() => break None,
                Err(Error::Interrupted { reason, .. }) => break Some(reason),
                Err(e) => return Err(e),
            }
        };
        let Some(reason) = reason else { break };
        let why = format!(
            "cut at byte {} of {} ({reason}); resuming",
            ingest.written(),
            blob.size()
        );
        // A cut after progress resumes at once; only attempts that got nothing back count
        // against the policy and back off.
        if ingest.written() > before {
            backoff.progressed();
            registry.log().say(&format!("{what}: {why}"));
        } else if !backoff.again(registry.log(), &what, why, None).await {
            return Err(Error::Interrupted { what, reason });
        }
    }
    // The fsync waits for the disk: let the async workers keep downloading meanwhile.
    let held = commits
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| Error::Interrupted {
            what: format!("blob {digest}"),
            reason: e.to_string(),
        })?;
    tokio::task::spawn_blocking(move || {
        let committed = ingest.commit().map(drop);
        drop(held);
        committed
    })
    .await
    .map_err(|e| Error::Interrupted {
        what: format!("blob {digest}"),
        reason: root_cause(&e),
    })??;
    progress.done(digest);
    Ok(())
}

/// Where a `206` answer starts (`Content-Range: bytes START-END/SIZE`); `None` for anything
/// else. Public for the fuzz targets (`fuzz/`) only; not part of the API.
#[doc(hidden)]
pub fn resume_start(resp: &reqwest::Response) -> Option<u64> {
    if resp.status() != StatusCode::PARTIAL_CONTENT {
        return None;
    }
    let range = resp
        .headers()
        .get(reqwest::header::CONTENT_RANGE)?
        .to_str()
        .ok()?;
    range
        .strip_prefix("bytes ")?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}
