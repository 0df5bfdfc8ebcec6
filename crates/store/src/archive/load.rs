//! Reading archives into the store: legacy `docker save` tars, docker ≥ 25's, OCI archives;
//! plain, gzip or zstd.

use std::collections::{BTreeSet, HashMap};
use std::io::{self, BufRead, BufReader, Read, Write};

use oci_spec::image::{
    Descriptor, Digest, DigestAlgorithm, ImageConfiguration, ImageIndex, Platform,
};
use serde::Deserialize;

use super::error::{Error, Result, invalid, member};
use super::{CONTAINERD_NAME, OCI_CONFIG, OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD};
use crate::digest::Hasher;
use crate::manifest::{self, Manifest};
use crate::{
    Ingest, MANIFEST_ANNOTATION, MAX_JSON_BLOB, PLATFORM_ANNOTATION, REF_NAME,
    REGISTRY_DIGEST_ANNOTATION, Store,
};

/// Turns a name found in an archive into the store's spelling; `None` when it is not a
/// reference.
pub type Normalize = dyn Fn(&str) -> Option<String>;

/// How [`load`] names what it loads.
#[derive(Default, Clone, Copy)]
pub struct LoadOptions<'a> {
    /// Name the image so, instead of the names the archive gives (the archive, after
    /// `select`, must then hold one image).
    pub tag: Option<&'a str>,
    /// Load only the image the archive names so (skopeo's `oci-archive:FILE:REF`): an
    /// `index.json` entry's `ref.name` or containerd name, or a `RepoTags` entry; `@N` is
    /// the archive's N-th image (from 0), as skopeo's `docker-archive:FILE:@N`.
    pub select: Option<&'a str>,
    /// Store uncompressed layers of docker archives gzip-compressed (the manifest is then
    /// img's own); without it they are stored as they come, their digest being their diff_id.
    /// OCI archives keep their manifests, so their layers are never recompressed.
    pub compress: bool,
    /// Turns a name found in the archive (`busybox:latest`) into the store's spelling
    /// (`docker.io/library/busybox:latest`); `None` when it is not a reference. Without it
    /// names are taken as they are.
    pub normalize: Option<&'a Normalize>,
    /// The platform to take from a multi-platform image (default: the host's).
    pub platform: Option<&'a Platform>,
}

impl std::fmt::Debug for LoadOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadOptions")
            .field("tag", &self.tag)
            .field("select", &self.select)
            .field("compress", &self.compress)
            .field("normalize", &self.normalize.is_some())
            .finish()
    }
}

/// One name [`load`] set.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The reference name in the store.
    pub name: String,
    /// The `index.json` entry it points at.
    pub descriptor: Descriptor,
    /// The platform manifest's digest.
    pub manifest: Digest,
    /// The config's digest: the image ID.
    pub config: Digest,
}

/// How many members that are not `blobs/ALG/HEX` (legacy layers) may wait, uncommitted, for
/// `manifest.json` to say what they are. Each holds an open temp file.
const MAX_PENDING: usize = 512;
/// How many bytes of small JSON members (configs, `manifest.json`, legacy `json` files) are
/// kept in memory at most.
const MAX_JSON_TOTAL: u64 = 4 * MAX_JSON_BLOB;

/// Read an archive — legacy `docker save` output (layer directories with `layer.tar`),
/// docker ≥ 25's, skopeo's `docker-archive:` and `oci-archive:`, img's own — plain, gzip or
/// zstd-compressed, in one pass from `input`, into `store`; returns the names set.
///
/// Every blob is verified as it goes in ([`Store::ingest`]); a member name with `..` or an
/// absolute path, a link or special file where a blob is expected, a digest that does not
/// match, or an archive cut short fails the load with an error naming the member, and then no
/// name is set (verified blobs that did go in are unnamed until `gc`).
pub fn load(store: &Store, input: impl Read, options: &LoadOptions) -> Result<Vec<Loaded>> {
    let _guard = store.pull_guard()?;
    let mut input = BufReader::with_capacity(256 * 1024, input);
    let head = input.fill_buf().map_err(|e| Error::Read { source: e })?;
    let reader: Box<dyn Read> = match sniff(head) {
        Kind::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Kind::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(input)
                .map_err(|e| Error::Read { source: e })?,
        ),
        Kind::Plain => Box::new(input),
    };
    let mut members = Members::new(store, options.compress);
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(|e| Error::Read { source: e })?;
    let mut first = true;
    for entry in entries {
        let mut entry = entry.map_err(|e| match first {
            true => Error::NotArchive { source: clean(e) },
            false => Error::Read { source: clean(e) },
        })?;
        first = false;
        members.add(&mut entry)?;
    }
    members.finish(options)
}

/// The tar reader's error with what it quotes of the input made printable and short (it
/// quotes header bytes, which from a hostile archive may be terminal escapes).
fn clean(e: io::Error) -> io::Error {
    let text: String = e
        .to_string()
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(120)
        .collect();
    io::Error::new(e.kind(), text)
}

/// A blob's compression, told by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Gzip,
    Zstd,
}

fn sniff(head: &[u8]) -> Kind {
    if head.starts_with(&[0x1f, 0x8b]) {
        Kind::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Kind::Zstd
    } else {
        Kind::Plain
    }
}

/// A member that is in the store.
#[derive(Debug, Clone)]
struct Blob {
    digest: Digest,
    size: u64,
    kind: Kind,
    /// The digest of the uncompressed content, when it was computed here.
    diff_id: Option<Digest>,
}

/// A member hashed but not yet committed: kept until `manifest.json` names it.
struct Pending {
    ingest: Ingest,
    kind: Kind,
    diff_id: Option<Digest>,
}

/// What the archive's members turned into, by normalized name.
struct Members<'s> {
    store: &'s Store,
    compress: bool,
    json: HashMap<String, Vec<u8>>,
    json_total: u64,
    blobs: HashMap<String, Blob>,
    pending: HashMap<String, Pending>,
    /// Members that are not regular files: what they are.
    other: HashMap<String, &'static str>,
}

/// A member's name as a relative path without `.` components; `..` and absolute names are
/// refused.
pub(crate) fn member_name(raw: &str) -> Result<String> {
    if raw.starts_with('/') {
        return Err(member(raw, "absolute member name"));
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(member(raw, "member name contains '..'")),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// `blobs/ALG/HEX` as a digest.
fn blob_digest(name: &str) -> Option<Result<Digest>> {
    let rest = name.strip_prefix("blobs/")?;
    let (alg, hex) = rest.split_once('/')?;
    Some(
        crate::digest::parse(&format!("{alg}:{hex}"))
            .map_err(|e| member(name, format!("not a blob name: {e}"))),
    )
}

fn is_json_member(name: &str) -> bool {
    matches!(
        name,
        "oci-layout" | "index.json" | "manifest.json" | "repositories"
    ) || name.ends_with(".json")
        || name.ends_with("/json")
        || name.ends_with("/VERSION")
        || name == "VERSION"
}

impl<'s> Members<'s> {
    fn new(store: &'s Store, compress: bool) -> Members<'s> {
        Members {
            store,
            compress,
            json: HashMap::new(),
            json_total: 0,
            blobs: HashMap::new(),
            pending: HashMap::new(),
            other: HashMap::new(),
        }
    }

    fn add<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<()> {
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let name = member_name(&raw)?;
        let kind = entry.header().entry_type();
        if name.is_empty() || kind.is_dir() || kind.is_pax_global_extensions() {
            return Ok(());
        }
        if !(kind.is_file() || kind == tar::EntryType::Continuous) {
            let what = if kind.is_symlink() {
                "a symlink"
            } else if kind.is_hard_link() {
                "a hard link"
            } else {
                "not a regular file"
            };
            self.other.insert(name, what);
            return Ok(());
        }
        if self.json.contains_key(&name)
            || self.blobs.contains_key(&name)
            || self.pending.contains_key(&name)
            || self.other.contains_key(&name)
        {
            return Err(member(raw, "appears twice in the archive"));
        }
        let size = entry.size();
        let mut head = Vec::with_capacity(512);
        (&mut *entry)
            .take(512)
            .read_to_end(&mut head)
            .map_err(|e| Error::MemberRead {
                member: raw.clone(),
                source: e,
            })?;
        if let Some(digest) = blob_digest(&name) {
            let digest = digest?;
            let blob = self.add_blob(&raw, entry, head, digest, size)?;
            self.blobs.insert(name, blob);
        } else if is_json_member(&name) {
            if size > MAX_JSON_BLOB || self.json_total + size > MAX_JSON_TOTAL {
                return Err(member(
                    raw,
                    format!("{size} bytes is too large for metadata"),
                ));
            }
            let rest = size.saturating_sub(head.len() as u64);
            let head_len = head.len();
            let mut bytes = head;
            copy(&raw, entry, &mut bytes, head_len, rest)?;
            self.json_total += size;
            self.json.insert(name, bytes);
        } else {
            if self.pending.len() >= MAX_PENDING {
                return Err(member(
                    raw,
                    format!("more than {MAX_PENDING} members outside blobs/"),
                ));
            }
            let pending = self.add_pending(&raw, entry, head, size)?;
            self.pending.insert(name, pending);
        }
        Ok(())
    }

    /// A `blobs/ALG/HEX` member: straight into the store, verified against its name.
    fn add_blob<R: Read>(
        &mut self,
        raw: &str,
        entry: &mut tar::Entry<R>,
        head: Vec<u8>,
        digest: Digest,
        size: u64,
    ) -> Result<Blob> {
        let kind = sniff(&head);
        let blob = Blob {
            digest: digest.clone(),
            size,
            kind,
            diff_id: None,
        };
        if self.store.has_blob(&digest, Some(size)) {
            // Read it anyway: a cut archive must fail whatever the store holds.
            copy(
                raw,
                entry,
                &mut io::sink(),
                head.len(),
                size.saturating_sub(head.len() as u64),
            )?;
            return Ok(blob);
        }
        let in_store = |e: crate::Error| Error::MemberBlob {
            member: raw.to_string(),
            source: e,
        };
        let mut ingest = self.store.ingest(&digest, Some(size)).map_err(in_store)?;
        ingest.append(&head).map_err(in_store)?;
        copy(
            raw,
            entry,
            &mut ingest,
            head.len(),
            size.saturating_sub(head.len() as u64),
        )?;
        ingest.commit().map_err(in_store)?;
        Ok(blob)
    }

    /// Another member (a legacy `layer.tar`, skopeo's `HEX.tar`): hashed into a temp file,
    /// gzip-compressed on the way when asked and it is an uncompressed tar.
    fn add_pending<R: Read>(
        &mut self,
        raw: &str,
        entry: &mut tar::Entry<R>,
        head: Vec<u8>,
        size: u64,
    ) -> Result<Pending> {
        let kind = sniff(&head);
        let in_store = |e: crate::Error| Error::MemberBlob {
            member: raw.to_string(),
            source: e,
        };
        let ingest = self
            .store
            .ingest_new(DigestAlgorithm::Sha256)
            .map_err(in_store)?;
        let rest = size.saturating_sub(head.len() as u64);
        if self.compress && kind == Kind::Plain {
            let mut sink = Compressing {
                encoder: flate2::write::GzEncoder::new(ingest, flate2::Compression::default()),
                hasher: Hasher::new(&DigestAlgorithm::Sha256).expect("sha256 is supported"),
            };
            sink.write_all(&head).map_err(|e| Error::MemberRead {
                member: raw.to_string(),
                source: e,
            })?;
            copy(raw, entry, &mut sink, head.len(), rest)?;
            let ingest = sink.encoder.finish().map_err(|e| Error::MemberRead {
                member: raw.to_string(),
                source: e,
            })?;
            return Ok(Pending {
                ingest,
                kind: Kind::Gzip,
                diff_id: Some(sink.hasher.finish()),
            });
        }
        let mut ingest = ingest;
        ingest.append(&head).map_err(in_store)?;
        copy(raw, entry, &mut ingest, head.len(), rest)?;
        Ok(Pending {
            ingest,
            kind,
            diff_id: None,
        })
    }

    /// The blob a document names by member name (`manifest.json`'s `Config` and `Layers`):
    /// committed now if it was waiting. `what` says who names it.
    fn blob(&mut self, raw: &str, what: &str) -> Result<Blob> {
        let name = member_name(raw)?;
        if let Some(kind) = self.other.get(&name) {
            return Err(member(raw, format!("is {kind}, named as a blob by {what}")));
        }
        if let Some(blob) = self.blobs.get(&name) {
            return Ok(blob.clone());
        }
        if let Some(p) = self.pending.remove(&name) {
            let size = p.ingest.written();
            let digest = p.ingest.commit().map_err(|e| Error::MemberBlob {
                member: raw.to_string(),
                source: e,
            })?;
            let diff_id = match p.kind {
                Kind::Plain => Some(digest.clone()),
                _ => p.diff_id,
            };
            let blob = Blob {
                digest,
                size,
                kind: p.kind,
                diff_id,
            };
            self.blobs.insert(name, blob.clone());
            return Ok(blob);
        }
        if let Some(bytes) = self.json.get(&name) {
            let digest = crate::digest::sha256(bytes);
            self.store
                .put_blob(&digest, bytes)
                .map_err(|e| Error::MemberBlob {
                    member: raw.to_string(),
                    source: e,
                })?;
            return Ok(Blob {
                digest,
                size: bytes.len() as u64,
                kind: Kind::Plain,
                diff_id: None,
            });
        }
        Err(member(
            raw,
            format!("named by {what}, is not in the archive (is the archive cut short?)"),
        ))
    }

    fn finish(mut self, options: &LoadOptions) -> Result<Vec<Loaded>> {
        let has_index = self.json.contains_key("index.json");
        let has_docker = self.json.contains_key("manifest.json");
        let plans = if has_index && !(options.compress && has_docker) {
            if let Some(bytes) = self.json.get("oci-layout") {
                check_layout("oci-layout", bytes)?;
            }
            let tags = match self.json.get("manifest.json") {
                Some(bytes) => docker_tags(bytes)?,
                None => HashMap::new(),
            };
            let index = self.json.remove("index.json").unwrap_or_default();
            oci_plans(self.store, "index.json", &index, &tags, options)?
        } else if has_docker {
            self.docker_plans(options)?
        } else {
            return Err(Error::NoImage(
                "neither index.json nor manifest.json (not an image archive, or cut short)".into(),
            ));
        };
        name_plans(self.store, plans, options)
    }

    /// Images from docker's `manifest.json`: layers as the archive holds them, in an OCI
    /// manifest made here.
    fn docker_plans(&mut self, options: &LoadOptions) -> Result<Vec<Plan>> {
        let bytes = self.json.get("manifest.json").cloned().unwrap_or_default();
        let entries = parse_docker(&bytes)?;
        let mut plans = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let what = format!("manifest.json entry {i}");
            let config = self.blob(&entry.config, &what)?;
            let config_json = self.store.read_blob(&config.digest)?;
            // A legacy config member is named by its digest: HEX.json.
            let base = entry.config.rsplit('/').next().unwrap_or(&entry.config);
            if let Some(hex) = base.strip_suffix(".json")
                && hex.len() == 64
                && hex.bytes().all(|b| b.is_ascii_hexdigit())
                && hex != config.digest.digest()
            {
                return Err(invalid(
                    "manifest.json",
                    format!(
                        "Config {:?} hashes to {} (wrong digest)",
                        entry.config, config.digest
                    ),
                ));
            }
            let parsed: ImageConfiguration =
                serde_json::from_slice(&config_json).map_err(|e| Error::Json {
                    what: entry.config.clone(),
                    source: e,
                })?;
            let diff_ids = parsed.rootfs().diff_ids();
            if diff_ids.len() != entry.layers.len() {
                return Err(invalid(
                    &what,
                    format!(
                        "{} layers, but its config {:?} lists {} diff_ids",
                        entry.layers.len(),
                        entry.config,
                        diff_ids.len()
                    ),
                ));
            }
            let mut layers = Vec::new();
            for (name, diff_id) in entry.layers.iter().zip(diff_ids) {
                let mut blob = self.blob(name, &what)?;
                if let Some(actual) = &blob.diff_id
                    && actual.to_string() != *diff_id
                {
                    return Err(member(
                        name,
                        format!(
                            "layer hashes to {actual}, its config's diff_id is {diff_id} (wrong digest)"
                        ),
                    ));
                }
                if options.compress && blob.kind == Kind::Plain {
                    blob = compress_blob(self.store, name, &blob)?;
                }
                let media_type = match blob.kind {
                    Kind::Plain => OCI_LAYER,
                    Kind::Gzip => OCI_LAYER_GZIP,
                    Kind::Zstd => OCI_LAYER_ZSTD,
                };
                layers.push(serde_json::json!({
                    "mediaType": media_type,
                    "digest": blob.digest.to_string(),
                    "size": blob.size,
                }));
            }
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": manifest::OCI_MANIFEST,
                "config": {
                    "mediaType": OCI_CONFIG,
                    "digest": config.digest.to_string(),
                    "size": config.size,
                },
                "layers": layers,
            });
            let bytes = serde_json::to_vec(&manifest).unwrap_or_default();
            let digest = crate::digest::sha256(&bytes);
            self.store.put_blob(&digest, &bytes)?;
            plans.push(Plan {
                descriptor: Descriptor::new(
                    manifest::OCI_MANIFEST.into(),
                    bytes.len() as u64,
                    digest.clone(),
                ),
                manifest: digest,
                config: config.digest,
                names: entry.repo_tags.clone().unwrap_or_default(),
            });
        }
        Ok(plans)
    }
}

/// Copy exactly `size` more bytes of a member into `out`; fewer means the archive was cut.
fn copy<R: Read>(
    raw: &str,
    entry: &mut R,
    out: &mut impl Write,
    head: usize,
    size: u64,
) -> Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut done = 0u64;
    let read_err = |e: io::Error| Error::MemberRead {
        member: raw.to_string(),
        source: e,
    };
    loop {
        let n = entry.read(&mut buf).map_err(read_err)?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).map_err(|e| {
            // An Ingest reports the store's error (size, disk) through io::Error.
            match e.into_inner().map(|inner| inner.downcast::<crate::Error>()) {
                Some(Ok(store)) => Error::MemberBlob {
                    member: raw.to_string(),
                    source: *store,
                },
                Some(Err(other)) => Error::MemberRead {
                    member: raw.to_string(),
                    source: io::Error::other(other),
                },
                None => member(raw, "write failed"),
            }
        })?;
        done += n as u64;
    }
    if done < size {
        return Err(member(
            raw,
            format!(
                "cut short: the archive ends inside it ({} of {} bytes)",
                done + head as u64,
                size + head as u64
            ),
        ));
    }
    Ok(())
}

/// A gzip encoder into the store that also hashes what it is given (the diff_id).
struct Compressing {
    encoder: flate2::write::GzEncoder<Ingest>,
    hasher: Hasher,
}

impl Write for Compressing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.encoder.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.encoder.flush()
    }
}

/// gzip a stored uncompressed layer into a new blob (its diff_id checked on the way).
fn compress_blob(store: &Store, raw: &str, blob: &Blob) -> Result<Blob> {
    let mut file = store.open_blob(&blob.digest)?;
    let ingest = store.ingest_new(DigestAlgorithm::Sha256)?;
    let mut sink = Compressing {
        encoder: flate2::write::GzEncoder::new(ingest, flate2::Compression::default()),
        hasher: Hasher::for_digest(&blob.digest)?,
    };
    let path = store.blob_path(&blob.digest);
    io::copy(&mut file, &mut sink).map_err(|e| Error::Io {
        path: path.clone(),
        source: e,
    })?;
    let diff_id = sink.hasher.finish();
    if diff_id != blob.digest {
        return Err(crate::Error::DigestMismatch {
            expected: blob.digest.clone(),
            actual: diff_id,
        }
        .into());
    }
    let ingest = sink.encoder.finish().map_err(|e| Error::MemberRead {
        member: raw.to_string(),
        source: e,
    })?;
    let size = ingest.written();
    let digest = ingest.commit()?;
    Ok(Blob {
        digest,
        size,
        kind: Kind::Gzip,
        diff_id: Some(diff_id),
    })
}

/// An image found in an archive or layout, its blobs in the store, not yet named.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// What its name will point at.
    pub descriptor: Descriptor,
    /// The platform manifest.
    pub manifest: Digest,
    /// The config.
    pub config: Digest,
    /// Names the archive gives it, as written there.
    pub names: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

fn parse_docker(bytes: &[u8]) -> Result<Vec<DockerEntry>> {
    serde_json::from_slice(bytes).map_err(|e| Error::Json {
        what: "manifest.json".into(),
        source: e,
    })
}

/// `RepoTags` of `manifest.json` by the config they name (`blobs/ALG/HEX` or `HEX.json`).
fn docker_tags(bytes: &[u8]) -> Result<HashMap<String, Vec<String>>> {
    let mut out = HashMap::new();
    for entry in parse_docker(bytes)? {
        let name = member_name(&entry.config)?;
        let hex = match blob_digest(&name) {
            Some(d) => d?.digest().to_string(),
            None => name.trim_end_matches(".json").to_string(),
        };
        out.entry(hex)
            .or_insert_with(Vec::new)
            .extend(entry.repo_tags.unwrap_or_default());
    }
    Ok(out)
}

pub(crate) fn check_layout(what: &str, bytes: &[u8]) -> Result<()> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| Error::Json {
        what: what.into(),
        source: e,
    })?;
    match value.get("imageLayoutVersion").and_then(|v| v.as_str()) {
        Some(v) if v.starts_with("1.") => Ok(()),
        other => Err(invalid(
            what,
            format!("unsupported imageLayoutVersion {other:?}"),
        )),
    }
}

/// Parse an `index.json`.
pub(crate) fn parse_index(what: &str, bytes: &[u8]) -> Result<ImageIndex> {
    serde_json::from_slice(bytes).map_err(|e| Error::Json {
        what: what.into(),
        source: e,
    })
}

/// The names an `index.json` entry carries: its containerd name, then its `ref.name`.
pub(crate) fn entry_names(d: &Descriptor) -> Vec<String> {
    let Some(a) = d.annotations() else {
        return Vec::new();
    };
    // docker ≥ 25 writes the full name as the containerd name and only the tag as ref.name.
    a.get(CONTAINERD_NAME)
        .or_else(|| a.get(REF_NAME))
        .cloned()
        .into_iter()
        .collect()
}

/// `@N`, skopeo's way to pick an archive's N-th image.
fn source_index(select: &str) -> Option<usize> {
    select.strip_prefix('@')?.parse().ok()
}

/// Whether an entry is the one `select` asks for (by any of its names, as written or
/// normalized).
pub(crate) fn selected(names: &[String], options: &LoadOptions) -> bool {
    let Some(want) = options.select else {
        return true;
    };
    if source_index(want).is_some() {
        return true; // picked by position in name_plans
    }
    let norm = |s: &str| options.normalize.and_then(|n| n(s));
    let want_n = norm(want);
    names
        .iter()
        .any(|n| n == want || (want_n.is_some() && norm(n) == want_n))
}

/// Images from an `index.json` whose blobs are in the store: each entry's manifest (a
/// Docker one kept in its OCI form, as a pull keeps it) or, for an index, the platform's.
pub(crate) fn oci_plans(
    store: &Store,
    what: &str,
    index_bytes: &[u8],
    docker_tags: &HashMap<String, Vec<String>>,
    options: &LoadOptions,
) -> Result<Vec<Plan>> {
    let index = parse_index(what, index_bytes)?;
    let mut plans = Vec::new();
    for entry in index.manifests() {
        let names = entry_names(entry);
        if options.select.is_some() && !selected(&names, options) {
            continue;
        }
        let mut plan = store_entry(store, what, entry, options.platform)?;
        plan.names = names;
        // manifest.json's RepoTags name an image by its config, which several manifests may
        // share: only an entry without a name of its own takes them.
        if plan.names.is_empty()
            && let Some(tags) = docker_tags.get(plan.config.digest())
        {
            plan.names.extend(tags.iter().cloned());
        }
        plans.push(plan);
    }
    Ok(plans)
}

/// Check that an entry's blobs are in the store, store Docker documents in their OCI form,
/// and make the descriptor its name will point at.
pub(crate) fn store_entry(
    store: &Store,
    what: &str,
    entry: &Descriptor,
    platform: Option<&Platform>,
) -> Result<Plan> {
    let present = |d: &Descriptor, by: &str| -> Result<()> {
        if store.has_blob(d.digest(), Some(d.size())) {
            Ok(())
        } else {
            Err(invalid(
                by,
                format!(
                    "names {} ({} bytes), which is not in the archive (wrong digest, or the archive is cut short)",
                    d.digest(),
                    d.size()
                ),
            ))
        }
    };
    present(entry, what)?;
    let top = store.read_blob(entry.digest())?;
    let parsed = manifest::parse(
        entry.digest(),
        Some(entry.media_type().to_string().as_str()),
        &top,
    )?;
    let top_what = format!("manifest {}", entry.digest());
    match parsed.manifest {
        Manifest::Image(m) => {
            present(m.config(), &top_what)?;
            for l in m.layers() {
                present(l, &top_what)?;
            }
            let (mut descriptor, digest) = stored_manifest(store, entry, &parsed.media_type, &top)?;
            // img's OCI form of a Docker manifest (from an img save): the entry says which
            // digest the registry serves, as a pull's entry does.
            if let Some(served) = m
                .annotations()
                .as_ref()
                .and_then(|a| a.get(REGISTRY_DIGEST_ANNOTATION))
                && descriptor.annotations().is_none()
            {
                let mut a = HashMap::new();
                a.insert(REGISTRY_DIGEST_ANNOTATION.to_string(), served.clone());
                descriptor.set_annotations(Some(a));
            }
            Ok(Plan {
                descriptor,
                manifest: digest,
                config: m.config().digest().clone(),
                names: Vec::new(),
            })
        }
        Manifest::Index(index) => {
            let child = choose(store, &index, platform).ok_or_else(|| {
                invalid(
                    &top_what,
                    "no platform manifest of this index is in the archive",
                )
            })?;
            let bytes = store.read_blob(child.digest())?;
            let child_parsed = manifest::parse(
                child.digest(),
                Some(child.media_type().to_string().as_str()),
                &bytes,
            )?;
            let Manifest::Image(m) = child_parsed.manifest else {
                return Err(invalid(
                    &top_what,
                    "an index inside an index is not supported",
                ));
            };
            let child_what = format!("manifest {}", child.digest());
            present(m.config(), &child_what)?;
            for l in m.layers() {
                present(l, &child_what)?;
            }
            let (child_d, child_digest) =
                stored_manifest(store, &child, &child_parsed.media_type, &bytes)?;
            // A Docker list becomes a one-entry OCI index of the stored platform (as a pull
            // stores it); an OCI index is kept as it is.
            let (top_d, top_digest) = if parsed.media_type == manifest::DOCKER_LIST {
                let mut e = Descriptor::new(
                    child_d.media_type().clone(),
                    child_d.size(),
                    child_digest.clone(),
                );
                e.set_platform(child.platform().clone());
                let oci = manifest::single_entry_index(&e);
                let digest = crate::digest::sha256(&oci);
                store.put_blob(&digest, &oci)?;
                (
                    Descriptor::new(manifest::OCI_INDEX.into(), oci.len() as u64, digest.clone()),
                    digest,
                )
            } else {
                (
                    Descriptor::new(
                        parsed.media_type.as_str().into(),
                        entry.size(),
                        entry.digest().clone(),
                    ),
                    entry.digest().clone(),
                )
            };
            let mut top_d = top_d;
            let mut annotations = HashMap::new();
            annotations.insert(MANIFEST_ANNOTATION.to_string(), child_digest.to_string());
            if let Some(p) = child.platform() {
                let mut s = format!("{}/{}", p.os(), p.architecture());
                if let Some(v) = p.variant() {
                    s = format!("{s}/{v}");
                }
                annotations.insert(PLATFORM_ANNOTATION.to_string(), s);
            }
            if &top_digest != entry.digest() {
                annotations.insert(
                    REGISTRY_DIGEST_ANNOTATION.to_string(),
                    entry.digest().to_string(),
                );
            }
            top_d.set_annotations(Some(annotations));
            Ok(Plan {
                descriptor: top_d,
                manifest: child_digest,
                config: m.config().digest().clone(),
                names: Vec::new(),
            })
        }
    }
}

/// A platform manifest as the store keeps it: a Docker one in its OCI form (the original
/// stays beside it, reached through `io.img.digest`), an OCI one as it is.
fn stored_manifest(
    store: &Store,
    entry: &Descriptor,
    media_type: &str,
    bytes: &[u8],
) -> Result<(Descriptor, Digest)> {
    if media_type == manifest::DOCKER_MANIFEST {
        let oci = manifest::docker_to_oci(entry.digest(), bytes)?;
        let digest = crate::digest::sha256(&oci);
        store.put_blob(&digest, &oci)?;
        let mut d = Descriptor::new(
            manifest::OCI_MANIFEST.into(),
            oci.len() as u64,
            digest.clone(),
        );
        let mut annotations = HashMap::new();
        annotations.insert(
            REGISTRY_DIGEST_ANNOTATION.to_string(),
            entry.digest().to_string(),
        );
        d.set_annotations(Some(annotations));
        Ok((d, digest))
    } else {
        Ok((
            Descriptor::new(media_type.into(), entry.size(), entry.digest().clone()),
            entry.digest().clone(),
        ))
    }
}

/// The host's platform, as OCI spells it.
fn host() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    ("linux", arch)
}

/// The child of an index to keep: the asked (or host's) platform when present, else the
/// first child whose manifest is in the store.
pub(crate) fn choose(
    store: &Store,
    index: &ImageIndex,
    platform: Option<&Platform>,
) -> Option<Descriptor> {
    let (os, arch) = host();
    let fits = |d: &Descriptor| match (d.platform(), platform) {
        (Some(p), Some(want)) => {
            p.os() == want.os()
                && p.architecture() == want.architecture()
                && (want.variant().is_none() || p.variant() == want.variant())
        }
        (Some(p), None) => p.os().to_string() == os && p.architecture().to_string() == arch,
        (None, _) => false,
    };
    let present = |d: &Descriptor| store.has_blob(d.digest(), Some(d.size()));
    let children = index.manifests();
    children
        .iter()
        .find(|d| fits(d) && present(d))
        .or_else(|| {
            if platform.is_some() {
                None
            } else {
                children.iter().find(|d| present(d))
            }
        })
        .cloned()
}

/// Give each plan its names ([`LoadOptions::tag`], else the archive's, normalized) and set
/// them, once every plan is ready.
pub(crate) fn name_plans(
    store: &Store,
    plans: Vec<Plan>,
    options: &LoadOptions,
) -> Result<Vec<Loaded>> {
    let norm = |s: &str| match options.normalize {
        Some(n) => n(s),
        None => Some(s.to_string()),
    };
    let mut plans: Vec<Plan> = match options.select.and_then(source_index) {
        // skopeo's `docker-archive:FILE:@N`: the archive's N-th image.
        Some(n) => plans.into_iter().nth(n).into_iter().collect(),
        None => plans
            .into_iter()
            .filter(|p| selected(&p.names, options))
            .collect(),
    };
    if plans.is_empty() {
        return Err(Error::NoImage(match options.select {
            Some(s) => format!("none is named {s:?}"),
            None => "its index lists none".into(),
        }));
    }
    if let Some(tag) = options.tag {
        if plans.len() != 1 {
            return Err(Error::NoImage(format!(
                "it holds {} images, and one name was given for them ({tag:?})",
                plans.len()
            )));
        }
        let name = norm(tag).ok_or_else(|| invalid(tag, "not a reference"))?;
        plans[0].names = vec![name];
    } else {
        for p in &mut plans {
            let mut names: Vec<String> = Vec::new();
            for n in &p.names {
                if let Some(n) = norm(n)
                    && !names.contains(&n)
                {
                    names.push(n);
                }
            }
            if names.is_empty() {
                return Err(Error::NoImage(format!(
                    "image {} has no name in the archive; give it one (--tag)",
                    p.manifest
                )));
            }
            p.names = names;
        }
    }
    let mut loaded = Vec::new();
    let mut seen = BTreeSet::new();
    for p in plans {
        for name in p.names {
            if !seen.insert(name.clone()) {
                continue;
            }
            loaded.push(Loaded {
                name,
                descriptor: p.descriptor.clone(),
                manifest: p.manifest.clone(),
                config: p.config.clone(),
            });
        }
    }
    for l in &loaded {
        store.set_ref(&l.name, l.descriptor.clone())?;
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_store(name: &str) -> (std::path::PathBuf, Store) {
        let dir = std::env::temp_dir().join(format!(
            "img-archive-{name}-{}-{}",
            std::process::id(),
            crate::ingest::unique()
        ));
        let store = Store::open(&dir).unwrap();
        (dir, store)
    }

    /// A tar of (name, kind, content or link target), written by hand so that names tar's
    /// builder refuses (`..`) can be made.
    fn tar_of(members: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, kind, data) in members {
            let mut h = tar::Header::new_gnu();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            if kind.is_symlink() {
                h.set_link_name(std::str::from_utf8(data).unwrap()).unwrap();
                h.set_size(0);
            } else {
                h.set_size(data.len() as u64);
            }
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            if !kind.is_symlink() {
                out.extend_from_slice(data);
                out.resize(out.len().div_ceil(512) * 512, 0);
            }
        }
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    #[test]
    fn member_names_with_dotdot_or_absolute_are_refused() {
        assert_eq!(member_name("./a//b/./c").unwrap(), "a/b/c");
        for bad in ["../x", "a/../../x", "/etc/passwd", "a/.."] {
            let err = member_name(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn a_symlink_named_as_a_layer_is_refused_and_nothing_is_named() {
        let (dir, store) = temp_store("symlink");
        let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#;
        let tar = tar_of(&[
            ("target.tar", tar::EntryType::Regular, &[0u8; 1024]),
            ("l/layer.tar", tar::EntryType::Symlink, b"../target.tar"),
            ("c.json", tar::EntryType::Regular, config),
            (
                "manifest.json",
                tar::EntryType::Regular,
                br#"[{"Config":"c.json","RepoTags":["a:1"],"Layers":["l/layer.tar"]}]"#,
            ),
        ]);
        let err = load(&store, &tar[..], &LoadOptions::default()).unwrap_err();
        assert!(
            err.to_string().contains("l/layer.tar") && err.to_string().contains("symlink"),
            "{err}"
        );
        assert!(store.refs().unwrap().is_empty());
        assert_eq!(std::fs::read_dir(dir.join("ingest")).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_layer_whose_digest_is_not_its_diff_id_is_refused() {
        let (dir, store) = temp_store("diffid");
        let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#;
        let tar = tar_of(&[
            ("l/layer.tar", tar::EntryType::Regular, &[0u8; 1024]),
            ("c.json", tar::EntryType::Regular, config),
            (
                "manifest.json",
                tar::EntryType::Regular,
                br#"[{"Config":"c.json","RepoTags":["a:1"],"Layers":["l/layer.tar"]}]"#,
            ),
        ]);
        let err = load(&store, &tar[..], &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("l/layer.tar") && err.contains("diff_id"),
            "{err}"
        );
        assert!(store.refs().unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_dotdot_member_is_refused() {
        let (dir, store) = temp_store("dotdot");
        let tar = tar_of(&[("../evil", tar::EntryType::Regular, b"x")]);
        let err = load(&store, &tar[..], &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("../evil") && err.contains("'..'"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
