//! Pushing a stored image to a registry: every blob the registry lacks (mounted from another
//! repository of the same registry when the image came from there, else uploaded, chunk by
//! chunk for large ones, resumed from the registry's `Range`), then the manifests exactly as
//! the source registry served them, children before their index.

use std::io::{Read, Seek, SeekFrom};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use img_store::manifest::{self, Manifest};
use img_store::{Descriptor, Digest, SOURCE_ANNOTATION, Store};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION};
use reqwest::{Method, Response, StatusCode};
use tokio::sync::{Semaphore, mpsc};

use crate::client::{Registry, Request};
use crate::error::root_cause;
use crate::retry::Backoff;
use crate::{Client, Error, Progress, Reference, Result};

/// What [`push`] may choose.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// How many blobs upload at once.
    pub concurrency: usize,
    /// Blobs larger than this go up in `PATCH` chunks of this size (each a point to resume
    /// from); smaller ones in one `PUT`.
    pub chunk_size: u64,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            concurrency: 4,
            chunk_size: 64 * 1024 * 1024,
        }
    }
}

/// What a push did.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// Where it went.
    pub reference: Reference,
    /// The digest the registry now serves for the reference.
    pub digest: Digest,
    /// The media type of that document.
    pub media_type: String,
    /// Blobs uploaded, and their bytes.
    pub uploaded: usize,
    /// Bytes uploaded.
    pub uploaded_bytes: u64,
    /// Blobs mounted from another repository of the registry.
    pub mounted: usize,
    /// Blobs the registry already had.
    pub present: usize,
    /// Set when only the stored platform's manifest was pushed, not the index that named it
    /// (the store holds one platform of a multi-platform image, as skopeo copies by default).
    pub platform_only: Option<String>,
}

/// One document to put: a manifest with the blobs it needs, or an index.
#[derive(Debug, Clone)]
pub(crate) struct Doc {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Vec<u8>,
    pub blobs: Vec<Descriptor>,
}

/// Where the bytes of the blobs being put come from.
#[derive(Debug, Clone)]
pub(crate) enum BlobSource {
    /// The local store.
    Store(Store),
    /// Another repository, streamed through without being kept (verified in flight).
    Registry(Arc<Registry>, String),
}

/// Push the stored image `name` to `destination`. The manifests go up byte for byte as the
/// source registry served them, so the image keeps its digest.
///
/// ```no_run
/// # async fn demo() -> Result<(), img_registry::Error> {
/// use std::sync::Arc;
/// use img_registry::{Client, ClientOptions, PushOptions, Quiet, Reference, push};
///
/// let store = img_store::Store::open("/var/tmp/store")?;
/// let to = Reference::parse("127.0.0.1:5000/team/redis:7")?;
/// let client = Client::new(ClientOptions::default());
/// let pushed = push(&client, &store, "127.0.0.1:5000/redis:7", &to, &PushOptions::default(),
///     Arc::new(Quiet)).await?;
/// println!("{} is {}", pushed.reference, pushed.digest);
/// # Ok(()) }
/// ```
pub async fn push(
    client: &Client,
    store: &Store,
    name: &str,
    destination: &Reference,
    options: &PushOptions,
    progress: Arc<dyn Progress>,
) -> Result<Pushed> {
    let descriptor = store
        .find_ref(name)?
        .ok_or_else(|| img_store::Error::RefNotFound(name.to_string()))?;
    let (docs, platform_only) = plan(store, name, &descriptor, client)?;
    // Pushes go where the reference says (after registries.conf's rewrite), never to mirrors.
    let target = client
        .sources(destination)?
        .into_iter()
        .rfind(|s| !s.mirror)
        .ok_or_else(|| Error::Protocol {
            what: destination.to_string(),
            reason: "registries.conf gives no location to push to".into(),
        })?;
    let registry = client.registry(&target.registry, target.insecure)?;
    let repo = target.repository.clone();
    let from = descriptor
        .annotations()
        .as_ref()
        .and_then(|a| a.get(SOURCE_ANNOTATION))
        .and_then(|s| s.split_once('/'))
        .filter(|(reg, src)| *reg == target.registry && *src != repo)
        .map(|(_, src)| src.to_string());

    let (digest, counts) = put_docs(
        &registry,
        &repo,
        from.as_deref(),
        &BlobSource::Store(store.clone()),
        &docs,
        destination,
        options,
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

/// Put `docs` (children first, the top last) into `repo`: their blobs, then the manifests, the
/// top one under the destination's tag or digest. Returns the top's digest.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn put_docs(
    registry: &Arc<Registry>,
    repo: &str,
    from: Option<&str>,
    source: &BlobSource,
    docs: &[Doc],
    destination: &Reference,
    options: &PushOptions,
    progress: &Arc<dyn Progress>,
) -> Result<(Digest, Counts)> {
    let (top, children) = docs.split_last().ok_or_else(|| Error::Protocol {
        what: destination.to_string(),
        reason: "nothing to put".into(),
    })?;
    if let Some(d) = destination.digest()
        && d != &top.digest
    {
        return Err(Error::Protocol {
            what: format!("digest {d}"),
            reason: format!(
                "the image is {}, so it cannot go up under that digest",
                top.digest
            ),
        });
    }
    let mut blobs: Vec<Descriptor> = Vec::new();
    for doc in docs {
        for b in &doc.blobs {
            if !blobs.iter().any(|x| x.digest() == b.digest()) {
                blobs.push(b.clone());
            }
        }
    }
    let tag = destination
        .digest()
        .map_or_else(|| destination.manifest_reference(), |d| d.to_string());
    // Asked first, one request alone: it also settles the authorization, so the concurrent
    // blob requests do not each meet the registry's challenge.
    let top_there = manifest_there(registry, repo, top, &tag).await;
    // The blobs are checked even so: one the registry lost is sent again.
    let counts = push_blobs(registry, repo, from, source, blobs, options, progress).await?;
    if !top_there {
        for child in children {
            if !manifest_there(registry, repo, child, child.digest.as_ref()).await {
                put_manifest(registry, repo, child, child.digest.as_ref()).await?;
            }
        }
        put_manifest(registry, repo, top, &tag).await?;
    }
    Ok((top.digest.clone(), counts))
}

/// Whether the registry already serves `doc` under `reference` (a `HEAD` whose
/// `Docker-Content-Digest` is the document's): then a re-push need not put it again. Anything
/// but a clear yes (a 404, another digest, no header, an error) is a no.
async fn manifest_there(registry: &Registry, repo: &str, doc: &Doc, reference: &str) -> bool {
    let what = format!("manifest {}/{repo}", registry.name());
    let target = format!("/v2/{repo}/manifests/{reference}");
    let mut headers = HeaderMap::new();
    headers.insert(
        reqwest::header::ACCEPT,
        HeaderValue::from_static(img_store::manifest::ACCEPT),
    );
    let Ok(resp) = registry
        .request(&Request {
            method: Method::HEAD,
            what: &what,
            repository: repo,
            scope: push_scope(repo, None),
            target: &target,
            headers,
            body: None,
            stop: None,
        })
        .await
    else {
        return false;
    };
    resp.status().is_success()
        && resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| img_store::digest::parse(v.trim()).ok())
            .is_some_and(|theirs| theirs == doc.digest)
}

/// The documents to put, children first. An index goes up whole when the store holds every
/// manifest it lists with their blobs; else only the stored platform's manifest.
fn plan(
    store: &Store,
    name: &str,
    descriptor: &Descriptor,
    client: &Client,
) -> Result<(Vec<Doc>, Option<String>)> {
    let top = store.served(descriptor)?;
    if top.converted {
        client.options().log.say(&format!(
            "{name}: this store (from an older img) did not keep the registry's own manifest; \
             pushing its OCI form, whose digest is {}",
            top.digest
        ));
    }
    let parsed = manifest::parse(&top.digest, Some(&top.media_type), &top.bytes)?;
    match parsed.manifest {
        Manifest::Image(m) => Ok((
            vec![Doc {
                digest: top.digest,
                media_type: top.media_type,
                bytes: top.bytes,
                blobs: image_blobs(&m),
            }],
            None,
        )),
        Manifest::Index(index) => {
            let mut docs = Vec::new();
            for child in index.manifests() {
                match whole_manifest(store, child)? {
                    Some(doc) => docs.push(doc),
                    None => break,
                }
            }
            if docs.len() == index.manifests().len() {
                docs.push(Doc {
                    digest: top.digest,
                    media_type: top.media_type,
                    bytes: top.bytes,
                    blobs: Vec::new(),
                });
                return Ok((docs, None));
            }
            // One platform of several: its manifest alone, as the registry served it.
            let image = store.image(name)?;
            let mut stored = Descriptor::new(
                image.manifest_media_type.as_str().into(),
                image.manifest_size,
                image.manifest_digest.clone(),
            );
            stored.set_annotations(image.manifest.annotations().clone());
            let served = store.served(&stored)?;
            let platform = image.platform.clone().unwrap_or_else(|| "?".into());
            client.options().log.say(&format!(
                "{name}: the store holds only {platform} of the {} platforms its index lists; \
                 pushing that platform's manifest",
                index.manifests().len()
            ));
            Ok((
                vec![Doc {
                    digest: served.digest,
                    media_type: served.media_type,
                    bytes: served.bytes,
                    blobs: image_blobs(&image.manifest),
                }],
                Some(platform),
            ))
        }
    }
}

/// An index's child as a document to put, when the store has it and all its blobs.
fn whole_manifest(store: &Store, child: &Descriptor) -> Result<Option<Doc>> {
    if !store.has_blob(child.digest(), Some(child.size())) {
        return Ok(None);
    }
    let bytes = store.read_blob(child.digest())?;
    let declared = child.media_type().to_string();
    let parsed = manifest::parse(child.digest(), Some(&declared), &bytes)?;
    let Manifest::Image(m) = parsed.manifest else {
        return Ok(None);
    };
    let blobs = image_blobs(&m);
    if !blobs
        .iter()
        .all(|b| store.has_blob(b.digest(), Some(b.size())))
    {
        return Ok(None);
    }
    Ok(Some(Doc {
        digest: child.digest().clone(),
        media_type: parsed.media_type,
        bytes,
        blobs,
    }))
}

/// A manifest's config and layers.
pub(crate) fn image_blobs(m: &img_store::ImageManifest) -> Vec<Descriptor> {
    let mut blobs = vec![m.config().clone()];
    blobs.extend(m.layers().iter().cloned());
    blobs
}

/// How the blobs got there.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub uploaded: usize,
    pub uploaded_bytes: u64,
    pub mounted: usize,
    pub present: usize,
}

/// How one blob got there.
enum Outcome {
    Present,
    Mounted,
    Uploaded(u64),
}

async fn push_blobs(
    registry: &Arc<Registry>,
    repo: &str,
    from: Option<&str>,
    source: &BlobSource,
    blobs: Vec<Descriptor>,
    options: &PushOptions,
    progress: &Arc<dyn Progress>,
) -> Result<Counts> {
    let present = vec![false; blobs.len()];
    progress.blobs(&blobs, &present);
    let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for blob in blobs {
        let (registry, source, repo) = (registry.clone(), source.clone(), repo.to_string());
        let from = from.map(str::to_string);
        let (permits, progress, chunk) = (permits.clone(), progress.clone(), options.chunk_size);
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let outcome = push_blob(
                &registry,
                &source,
                &repo,
                from.as_deref(),
                &blob,
                chunk,
                &progress,
            )
            .await;
            if outcome.is_ok() {
                progress.done(blob.digest());
            }
            outcome
        });
    }
    let mut counts = Counts::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(Outcome::Present)) => counts.present += 1,
            Ok(Ok(Outcome::Mounted)) => counts.mounted += 1,
            Ok(Ok(Outcome::Uploaded(bytes))) => {
                counts.uploaded += 1;
                counts.uploaded_bytes += bytes;
            }
            Ok(Err(e)) => {
                tasks.shutdown().await;
                return Err(e);
            }
            Err(e) => {
                tasks.shutdown().await;
                return Err(Error::Interrupted {
                    what: "blob upload".into(),
                    reason: root_cause(&e),
                });
            }
        }
    }
    Ok(counts)
}

/// The scope a push of `repo` needs, with pull on the mount source.
fn push_scope(repo: &str, from: Option<&str>) -> String {
    match from {
        Some(src) => format!("repository:{repo}:pull,push repository:{src}:pull"),
        None => format!("repository:{repo}:pull,push"),
    }
}

/// One blob: nothing when the registry has it, a mount when it can, else an upload.
async fn push_blob(
    registry: &Registry,
    source: &BlobSource,
    repo: &str,
    from: Option<&str>,
    blob: &Descriptor,
    chunk: u64,
    progress: &Arc<dyn Progress>,
) -> Result<Outcome> {
    let digest = blob.digest();
    let what = format!("blob {digest} to {}/{repo}", registry.name());
    if blob_exists(registry, repo, digest, &what).await? {
        return Ok(Outcome::Present);
    }
    // A missing blob fails before anything is sent.
    if let BlobSource::Store(store) = source {
        drop(store.open_blob(digest)?);
    }
    let mut backoff = Backoff::new(registry.retry());
    let mut mount_from = from;
    loop {
        let location = match start_upload(registry, repo, mount_from, digest, &what).await? {
            Started::Mounted => return Ok(Outcome::Mounted),
            Started::Session(location) => location,
        };
        // A registry that declined the mount will not mount it on a retry either.
        mount_from = None;
        // A whole-blob PUT that failed is not sent again into its session (which the registry
        // may have closed): this loop starts a fresh one.
        let once = || true;
        let sent = match source {
            BlobSource::Store(store) if blob.size() > chunk => {
                let path = store.blob_path(digest);
                put_chunks(
                    registry, repo, location, &path, blob, chunk, progress, &what,
                )
                .await
            }
            BlobSource::Store(store) => {
                let path = store.blob_path(digest);
                let body = file_body(&path, 0, blob.size(), digest.clone(), progress);
                put_whole(registry, repo, &location, &body, Some(&once), blob, &what).await
            }
            BlobSource::Registry(from, from_repo) => {
                let bad = Verdict::default();
                let body = registry_body(
                    from.clone(),
                    from_repo.clone(),
                    blob.clone(),
                    bad.clone(),
                    progress,
                );
                let sent = put_whole(registry, repo, &location, &body, Some(&once), blob, &what);
                match (sent.await, bad.take()) {
                    // The source sent other bytes than the digest names: no retry helps.
                    (Err(_), Some(wrong)) => return Err(wrong.into()),
                    (sent, _) => sent,
                }
            }
        };
        match sent {
            Ok(()) => return Ok(Outcome::Uploaded(blob.size())),
            Err(e) if upload_may_recover(&e) => {
                progress.reset(digest, 0);
                if !backoff
                    .again(registry.log(), &what, format!("{e}; starting over"), None)
                    .await
                {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Failures a fresh upload session may get past.
fn upload_may_recover(e: &Error) -> bool {
    match e {
        Error::Interrupted { .. } | Error::Unreachable { .. } | Error::Connection { .. } => true,
        Error::Status { status, .. } => {
            status.is_server_error()
                || *status == StatusCode::NOT_FOUND
                || *status == StatusCode::RANGE_NOT_SATISFIABLE
                // a whole-blob PUT is not retried in its session, so its 429 lands here
                || *status == StatusCode::TOO_MANY_REQUESTS
        }
        _ => false,
    }
}

async fn blob_exists(registry: &Registry, repo: &str, digest: &Digest, what: &str) -> Result<bool> {
    let target = format!("/v2/{repo}/blobs/{digest}");
    let resp = registry
        .request(&Request {
            method: Method::HEAD,
            what,
            repository: repo,
            scope: push_scope(repo, None),
            target: &target,
            headers: HeaderMap::new(),
            body: None,
            stop: None,
        })
        .await?;
    match resp.status() {
        StatusCode::NOT_FOUND => Ok(false),
        s if s.is_success() => Ok(true),
        _ => registry.checked(what, repo, resp).await.map(|_| false),
    }
}

enum Started {
    Mounted,
    Session(String),
}

/// Open an upload session, asking to mount the blob from `from` when given.
async fn start_upload(
    registry: &Registry,
    repo: &str,
    from: Option<&str>,
    digest: &Digest,
    what: &str,
) -> Result<Started> {
    let target = match from {
        Some(src) => format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={src}"),
        None => format!("/v2/{repo}/blobs/uploads/"),
    };
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    let resp = registry
        .request(&Request {
            method: Method::POST,
            what,
            repository: repo,
            scope: push_scope(repo, from),
            target: &target,
            headers,
            body: None,
            stop: None,
        })
        .await?;
    let resp = registry.checked(what, repo, resp).await?;
    if resp.status() == StatusCode::CREATED && from.is_some() {
        return Ok(Started::Mounted);
    }
    Ok(Started::Session(location(registry, &resp, what)?))
}

/// The absolute URL of an upload session's next step.
fn location(registry: &Registry, resp: &Response, what: &str) -> Result<String> {
    let loc = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::Protocol {
            what: what.to_string(),
            reason: format!("the registry answered {} without a Location", resp.status()),
        })?;
    Ok(registry.resolve(loc))
}

/// `location` with `digest=D` added to its query.
fn with_digest(location: &str, digest: &Digest) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

/// The whole blob in one `PUT`.
async fn put_whole(
    registry: &Registry,
    repo: &str,
    location: &str,
    body: &(dyn Fn() -> reqwest::Body + Send + Sync),
    stop: Option<&(dyn Fn() -> bool + Send + Sync)>,
    blob: &Descriptor,
    what: &str,
) -> Result<()> {
    let target = with_digest(location, blob.digest());
    let mut headers = octets();
    headers.insert(CONTENT_LENGTH, HeaderValue::from(blob.size()));
    let resp = registry
        .request(&Request {
            method: Method::PUT,
            what,
            repository: repo,
            scope: push_scope(repo, None),
            target: &target,
            headers,
            body: Some(body),
            stop,
        })
        .await?;
    registry.checked(what, repo, resp).await.map(drop)
}

/// Set when a blob streamed from another registry did not match its descriptor: the upload
/// is abandoned, not retried, and this is the error.
#[derive(Debug, Clone, Default)]
struct Verdict(Arc<std::sync::Mutex<Option<img_store::Error>>>);

impl Verdict {
    fn set(&self, e: img_store::Error) {
        if let Ok(mut slot) = self.0.lock() {
            slot.get_or_insert(e);
        }
    }

    fn take(&self) -> Option<img_store::Error> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// The blob in `PATCH` chunks with `Content-Range`, then a `PUT` that names its digest. A
/// chunk that fails is resumed from where the registry says it has the bytes up to.
#[allow(clippy::too_many_arguments)]
async fn put_chunks(
    registry: &Registry,
    repo: &str,
    mut location: String,
    path: &std::path::Path,
    blob: &Descriptor,
    chunk: u64,
    progress: &Arc<dyn Progress>,
    what: &str,
) -> Result<()> {
    let digest = blob.digest();
    let size = blob.size();
    let mut offset = 0;
    let mut backoff = Backoff::new(registry.retry());
    while offset < size {
        let len = chunk.min(size - offset);
        let mut headers = octets();
        headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
        headers.insert(
            "content-range",
            HeaderValue::from_str(&format!("{offset}-{}", offset + len - 1))
                .expect("digits and a dash are a valid header"),
        );
        let body = file_body(path, offset, len, digest.clone(), progress);
        let sent = registry
            .request(&Request {
                method: Method::PATCH,
                what,
                repository: repo,
                scope: push_scope(repo, None),
                target: &location,
                headers,
                body: Some(&body),
                stop: None,
            })
            .await;
        match sent {
            Ok(resp) if resp.status() == StatusCode::ACCEPTED => {
                location = location_or(registry, &resp, location);
                offset += len;
                backoff.progressed();
                continue;
            }
            Ok(resp)
                if !resp.status().is_server_error()
                    && resp.status() != StatusCode::RANGE_NOT_SATISFIABLE =>
            {
                registry.checked(what, repo, resp).await?;
                return Err(Error::Protocol {
                    what: what.to_string(),
                    reason: "the registry did not accept the chunk".into(),
                });
            }
            Ok(resp) => {
                let why = format!(
                    "chunk at byte {offset}: registry answered {}",
                    resp.status()
                );
                if !backoff.again(registry.log(), what, why, None).await {
                    return registry.checked(what, repo, resp).await.map(drop);
                }
            }
            Err(e) => {
                if !backoff
                    .again(
                        registry.log(),
                        what,
                        format!("chunk at byte {offset}: {e}"),
                        None,
                    )
                    .await
                {
                    return Err(e);
                }
            }
        }
        // Ask the registry how far it got, and go on from there.
        let (at, next) = upload_status(registry, repo, &location, what).await?;
        location = next;
        progress.reset(digest, at);
        registry.log().say(&format!(
            "{what}: the registry has {at} of {size} bytes; resuming"
        ));
        offset = at;
    }
    let target = with_digest(&location, digest);
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    let resp = registry
        .request(&Request {
            method: Method::PUT,
            what,
            repository: repo,
            scope: push_scope(repo, None),
            target: &target,
            headers,
            body: None,
            stop: None,
        })
        .await?;
    registry.checked(what, repo, resp).await.map(drop)
}

/// The upload session's state: how many bytes the registry holds, and where to go on.
async fn upload_status(
    registry: &Registry,
    repo: &str,
    location: &str,
    what: &str,
) -> Result<(u64, String)> {
    let resp = registry
        .request(&Request {
            method: Method::GET,
            what,
            repository: repo,
            scope: push_scope(repo, None),
            target: location,
            headers: HeaderMap::new(),
            body: None,
            stop: None,
        })
        .await?;
    let resp = registry.checked(what, repo, resp).await?;
    let at = resp
        .headers()
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(upload_range_end)
        .unwrap_or(0);
    let next = location_or(registry, &resp, location.to_string());
    Ok((at, next))
}

/// Bytes held according to an upload's `Range: 0-END` (END inclusive): END + 1. Distribution
/// answers `0-0` for an empty upload as well as for one byte: taken as empty (the byte is
/// sent again, which a registry holding it refuses, and the upload starts over).
fn upload_range_end(range: &str) -> Option<u64> {
    let range = range.trim().trim_start_matches("bytes=");
    let (start, end) = range.split_once('-')?;
    if start.trim() != "0" {
        return None;
    }
    match end.trim().parse::<u64>().ok()? {
        0 => Some(0),
        end => end.checked_add(1),
    }
}

fn location_or(registry: &Registry, resp: &Response, old: String) -> String {
    resp.headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map_or(old, |l| registry.resolve(l))
}

fn octets() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers
}

/// Put a manifest under `reference` (a tag or its digest); the registry must agree on its
/// digest.
async fn put_manifest(registry: &Registry, repo: &str, doc: &Doc, reference: &str) -> Result<()> {
    let sep = if reference.contains(':') { '@' } else { ':' };
    let what = format!("manifest {}/{repo}{sep}{reference}", registry.name());
    let target = format!("/v2/{repo}/manifests/{reference}");
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_str(&doc.media_type).map_err(|e| Error::Protocol {
            what: what.clone(),
            reason: format!("media type {:?}: {e}", doc.media_type),
        })?,
    );
    let bytes = bytes::Bytes::from(doc.bytes.clone());
    let body = move || reqwest::Body::from(bytes.clone());
    let resp = registry
        .request(&Request {
            method: Method::PUT,
            what: &what,
            repository: repo,
            scope: push_scope(repo, None),
            target: &target,
            headers,
            body: Some(&body),
            stop: None,
        })
        .await?;
    let resp = registry.checked(&what, repo, resp).await?;
    if let Some(theirs) = resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| img_store::digest::parse(v).ok())
        && theirs.algorithm() == doc.digest.algorithm()
        && theirs != doc.digest
    {
        return Err(Error::Protocol {
            what,
            reason: format!(
                "the registry stored it as {theirs}, not {} (it changed the bytes)",
                doc.digest
            ),
        });
    }
    Ok(())
}

/// A body that streams `len` bytes of the file from `offset`, read on a blocking thread and
/// counted on `progress` as they go.
fn file_body(
    path: &std::path::Path,
    offset: u64,
    len: u64,
    digest: Digest,
    progress: &Arc<dyn Progress>,
) -> impl Fn() -> reqwest::Body + Send + Sync + use<> {
    let path = path.to_path_buf();
    let progress = progress.clone();
    move || {
        let (tx, rx) = mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
        let (path, digest, progress) = (path.clone(), digest.clone(), progress.clone());
        tokio::task::spawn_blocking(move || {
            let read = |tx: &mpsc::Sender<std::io::Result<bytes::Bytes>>| -> std::io::Result<()> {
                let mut file = std::fs::File::open(&path)?;
                file.seek(SeekFrom::Start(offset))?;
                let mut left = len;
                progress.reset(&digest, offset);
                while left > 0 {
                    let mut buf = vec![0; left.min(256 * 1024) as usize];
                    let n = file.read(&mut buf)?;
                    if n == 0 {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!("{} ended early", path.display()),
                        ));
                    }
                    buf.truncate(n);
                    left -= n as u64;
                    if tx.blocking_send(Ok(buf.into())).is_err() {
                        return Ok(()); // the request was dropped
                    }
                    progress.advance(&digest, n as u64);
                }
                Ok(())
            };
            if let Err(e) = read(&tx) {
                let _ = tx.blocking_send(Err(e));
            }
        });
        reqwest::Body::wrap_stream(Chunks(rx))
    }
}

/// A body that streams a blob from another registry. Each chunk is hashed as it passes and
/// the last one is held back until the whole blob matched its digest and size, so the
/// destination never receives a complete body of unverified bytes.
fn registry_body(
    from: Arc<Registry>,
    repo: String,
    blob: Descriptor,
    bad: Verdict,
    progress: &Arc<dyn Progress>,
) -> impl Fn() -> reqwest::Body + Send + Sync + use<> {
    let progress = progress.clone();
    move || {
        // One chunk in the channel (plus the one held back): the source's chunks can be
        // hundreds of KB each on a fast connection, and with four in flight per blob a copy
        // peaked near 32 MB (tools/bench copy); one keeps it near 22 MB at the same speed.
        let (tx, rx) = mpsc::channel::<std::io::Result<bytes::Bytes>>(1);
        let (from, repo, blob, progress, bad) = (
            from.clone(),
            repo.clone(),
            blob.clone(),
            progress.clone(),
            bad.clone(),
        );
        tokio::spawn(async move {
            let digest = blob.digest();
            progress.reset(digest, 0);
            let forwarded = async {
                let mut resp = from
                    .blob(&repo, digest, 0)
                    .await
                    .map_err(std::io::Error::other)?;
                let mut hasher =
                    img_store::digest::Hasher::for_digest(digest).map_err(std::io::Error::other)?;
                let mut held: Option<bytes::Bytes> = None;
                let mut seen = 0u64;
                while let Some(chunk) = resp.chunk().await.map_err(std::io::Error::other)? {
                    seen += chunk.len() as u64;
                    if seen > blob.size() {
                        bad.set(img_store::Error::SizeMismatch {
                            digest: digest.clone(),
                            expected: blob.size(),
                            actual: seen,
                        });
                        return Err(std::io::Error::other(format!(
                            "blob {digest}: more than its {} bytes",
                            blob.size()
                        )));
                    }
                    hasher.update(&chunk);
                    progress.advance(digest, chunk.len() as u64);
                    if let Some(prev) = held.replace(chunk)
                        && tx.send(Ok(prev)).await.is_err()
                    {
                        return Ok(None);
                    }
                }
                let actual = hasher.finish();
                if seen != blob.size() {
                    bad.set(img_store::Error::SizeMismatch {
                        digest: digest.clone(),
                        expected: blob.size(),
                        actual: seen,
                    });
                } else if &actual != digest {
                    bad.set(img_store::Error::DigestMismatch {
                        expected: digest.clone(),
                        actual: actual.clone(),
                    });
                }
                if seen != blob.size() || &actual != digest {
                    return Err(std::io::Error::other(format!(
                        "blob {digest}: the source sent {seen} bytes hashing to {actual}"
                    )));
                }
                Ok(held)
            };
            match forwarded.await {
                Ok(Some(last)) => {
                    let _ = tx.send(Ok(last)).await;
                }
                Ok(None) => {}
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                }
            }
        });
        reqwest::Body::wrap_stream(Chunks(rx))
    }
}

/// The receiving end of a body's channel as a stream.
struct Chunks(mpsc::Receiver<std::io::Result<bytes::Bytes>>);

impl futures_core::Stream for Chunks {
    type Item = std::io::Result<bytes::Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_upload_ranges() {
        assert_eq!(upload_range_end("0-99"), Some(100));
        assert_eq!(upload_range_end("bytes=0-0"), Some(0));
        assert_eq!(upload_range_end("5-9"), None);
        assert_eq!(upload_range_end("0-"), None);
        assert_eq!(upload_range_end("0-18446744073709551615"), None);
    }

    #[test]
    fn adds_the_digest_to_a_location() {
        let d = img_store::digest::sha256(b"x");
        assert_eq!(
            with_digest("http://r/v2/a/blobs/uploads/u?_state=s", &d),
            format!("http://r/v2/a/blobs/uploads/u?_state=s&digest={d}")
        );
        assert_eq!(
            with_digest("http://r/v2/a/blobs/uploads/u", &d),
            format!("http://r/v2/a/blobs/uploads/u?digest={d}")
        );
    }
}
