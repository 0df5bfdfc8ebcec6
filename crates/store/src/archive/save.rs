//! Writing docker ≥ 25's archive format: an OCI image layout in a tar plus `manifest.json`.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read, Write};

use oci_spec::image::{Descriptor, Digest, Platform};
use serde_json::json;

use super::CONTAINERD_NAME;
use super::error::{Error, Result, invalid};
use crate::digest::Hasher;
use crate::manifest;
use crate::{Image, REF_NAME, Store};

/// One image to save, and the names the archive gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveImage {
    /// The stored reference to read.
    pub name: String,
    /// docker's `RepoTags` for it in `manifest.json` (`busybox:latest`,
    /// `127.0.0.1:5000/redis:7`); none for an image saved by digest.
    pub repo_tags: Vec<String>,
    /// `org.opencontainers.image.ref.name` of its `index.json` entry (docker writes the tag;
    /// skopeo's `oci-archive:FILE:REF` reads it).
    pub ref_name: Option<String>,
    /// `io.containerd.image.name` of its `index.json` entry: the full name.
    pub full_name: Option<String>,
}

impl SaveImage {
    /// Save the stored image `name` under that same name: as its `RepoTags` entry, its
    /// containerd name, and its tag as the `ref.name` (as docker ≥ 25 writes them). A name
    /// pinned by digest gets no tag.
    pub fn named(name: &str) -> SaveImage {
        let tag = tag_of(name);
        SaveImage {
            name: name.to_string(),
            repo_tags: tag.map(|_| vec![name.to_string()]).unwrap_or_default(),
            ref_name: tag.map(str::to_string),
            full_name: Some(name.to_string()),
        }
    }
}

/// The tag of `name` (`REPO:TAG`), if it has one and no digest.
fn tag_of(name: &str) -> Option<&str> {
    if name.contains('@') {
        return None;
    }
    let (_, tag) = name.rsplit_once(':')?;
    (!tag.contains('/') && !tag.is_empty()).then_some(tag)
}

/// What [`save`] wrote.
#[derive(Debug, Clone, Default)]
pub struct SaveReport {
    /// Per image saved (in the order given): its name and the platform manifest's digest.
    pub images: Vec<(String, Digest)>,
    /// Blobs written (each once, however many images share it).
    pub blobs: usize,
    /// Bytes of blob content written.
    pub bytes: u64,
}

/// An image's part of the archive.
struct Planned {
    save: SaveImage,
    image: Image,
    platform: Option<Platform>,
}

/// Write `images` as one docker ≥ 25 archive to `out`, streaming each blob from the store
/// (no temporary copy) and checking it against its digest on the way. Every blob is checked
/// to be present before the first byte is written; a blob whose content turns out not to
/// match its name fails the save (with the archive cut short).
pub fn save(store: &Store, images: &[SaveImage], out: impl Write) -> Result<SaveReport> {
    if images.is_empty() {
        return Err(Error::NoImage("nothing to save".into()));
    }
    let mut planned = Vec::new();
    for save in images {
        let image = store.image(&save.name)?;
        let platform = Some(platform_of(&image));
        planned.push(Planned {
            save: save.clone(),
            image,
            platform,
        });
    }
    // Blobs in order of first use: per image, config, layers, manifest.
    let mut blobs: Vec<(Digest, u64)> = Vec::new();
    let mut seen = HashSet::new();
    for p in &planned {
        let m = &p.image.manifest;
        let all = std::iter::once((m.config().digest().clone(), m.config().size()))
            .chain(m.layers().iter().map(|l| (l.digest().clone(), l.size())))
            .chain([(p.image.manifest_digest.clone(), p.image.manifest_size)]);
        // A Docker manifest stored in its OCI form: its served bytes go too (an extra blob
        // readers ignore), so a load keeps what a push needs to reproduce the registry's digest.
        let served = p.image.registry_manifest_digest();
        let served = (served != p.image.manifest_digest)
            .then(|| {
                std::fs::metadata(store.blob_path(&served))
                    .ok()
                    .map(|m| (served, m.len()))
            })
            .flatten();
        for (digest, size) in all.chain(served) {
            if !store.has_blob(&digest, Some(size)) {
                return Err(invalid(
                    format!("image {}", p.save.name),
                    format!("blob {digest} ({size} bytes) is not in the store (pull it again)"),
                ));
            }
            if seen.insert(digest.clone()) {
                blobs.push((digest, size));
            }
        }
    }

    let index = index_json(&planned);
    let docker = manifest_json(&planned);
    let mut tar = tar::Builder::new(out);
    let mut report = SaveReport::default();
    let w = |e: io::Error| Error::Write { source: e };
    append_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(w)?;
    append_bytes(&mut tar, "index.json", &index).map_err(w)?;
    append_bytes(&mut tar, "manifest.json", &docker).map_err(w)?;
    append_dir(&mut tar, "blobs/").map_err(w)?;
    let mut dirs = HashSet::new();
    for (digest, size) in &blobs {
        let alg = digest.algorithm().as_ref().to_string();
        if dirs.insert(alg.clone()) {
            append_dir(&mut tar, &format!("blobs/{alg}/")).map_err(w)?;
        }
        let file = store.open_blob(digest)?;
        let mut reader = Verifying {
            inner: file.take(*size),
            hasher: Hasher::for_digest(digest)?,
            read: 0,
        };
        let mut header = header(tar::EntryType::Regular, 0o644, *size);
        let path = format!("blobs/{alg}/{}", digest.digest());
        tar.append_data(&mut header, &path, &mut reader)
            .map_err(|e| match e.kind() {
                // A blob shorter than its size: tar pads with what it read, so say so.
                io::ErrorKind::UnexpectedEof => Error::Store(crate::Error::SizeMismatch {
                    digest: digest.clone(),
                    expected: *size,
                    actual: reader.read,
                }),
                _ => w(e),
            })?;
        if reader.read != *size {
            return Err(crate::Error::SizeMismatch {
                digest: digest.clone(),
                expected: *size,
                actual: reader.read,
            }
            .into());
        }
        let actual = reader.hasher.finish();
        if &actual != digest {
            return Err(crate::Error::DigestMismatch {
                expected: digest.clone(),
                actual,
            }
            .into());
        }
        report.blobs += 1;
        report.bytes += size;
    }
    let mut out = tar.into_inner().map_err(w)?;
    out.flush().map_err(w)?;
    report.images = planned
        .iter()
        .map(|p| (p.save.name.clone(), p.image.manifest_digest.clone()))
        .collect();
    Ok(report)
}

/// The image's platform, from its config.
pub(crate) fn platform_of(image: &Image) -> Platform {
    let mut platform = Platform::default();
    platform.set_os(image.config.os().clone());
    platform.set_architecture(image.config.architecture().clone());
    platform.set_variant(image.config.variant().clone());
    platform
}

/// The descriptor of an image's platform manifest, as a layout's `index.json` lists it.
pub(crate) fn manifest_descriptor(image: &Image, platform: Option<Platform>) -> Descriptor {
    let mut d = Descriptor::new(
        image.manifest_media_type.as_str().into(),
        image.manifest_size,
        image.manifest_digest.clone(),
    );
    d.set_platform(platform);
    d
}

fn index_json(planned: &[Planned]) -> Vec<u8> {
    let manifests: Vec<serde_json::Value> = planned
        .iter()
        .map(|p| {
            let mut d = manifest_descriptor(&p.image, p.platform.clone());
            let mut annotations = std::collections::HashMap::new();
            if let Some(full) = &p.save.full_name {
                annotations.insert(CONTAINERD_NAME.to_string(), full.clone());
            }
            if let Some(r) = &p.save.ref_name {
                annotations.insert(REF_NAME.to_string(), r.clone());
            }
            if !annotations.is_empty() {
                d.set_annotations(Some(annotations));
            }
            // Through a sorted map, so the bytes are the same every time.
            let v = serde_json::to_value(&d).unwrap_or_default();
            sorted(v)
        })
        .collect();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_INDEX,
        "manifests": manifests,
    });
    serde_json::to_vec(&index).unwrap_or_default()
}

/// docker's `manifest.json`: one entry per distinct image (names of the same image merged).
fn manifest_json(planned: &[Planned]) -> Vec<u8> {
    let mut order: Vec<Digest> = Vec::new();
    let mut tags: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut by: BTreeMap<String, &Planned> = BTreeMap::new();
    for p in planned {
        let key = p.image.manifest_digest.to_string();
        if !by.contains_key(&key) {
            order.push(p.image.manifest_digest.clone());
            by.insert(key.clone(), p);
        }
        let list = tags.entry(key).or_default();
        for t in &p.save.repo_tags {
            if !list.contains(t) {
                list.push(t.clone());
            }
        }
    }
    let entries: Vec<serde_json::Value> = order
        .iter()
        .map(|d| {
            let key = d.to_string();
            let p = by[&key];
            let m = &p.image.manifest;
            let blob = |d: &Digest| format!("blobs/{}/{}", d.algorithm().as_ref(), d.digest());
            json!({
                "Config": blob(m.config().digest()),
                "RepoTags": tags.get(&key).cloned().unwrap_or_default(),
                "Layers": m.layers().iter().map(|l| blob(l.digest())).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::to_vec(&entries).unwrap_or_default()
}

/// A JSON value with every object's keys in sorted order (serde_json's map is sorted).
fn sorted(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            serde_json::Value::Object(m.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        other => other,
    }
}

/// A header with the archive's fixed metadata: root-owned, mtime 0.
fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, path: &str, bytes: &[u8]) -> io::Result<()> {
    let mut h = header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
    tar.append_data(&mut h, path, bytes)
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str) -> io::Result<()> {
    let mut h = header(tar::EntryType::Directory, 0o755, 0);
    tar.append_data(&mut h, path, io::empty())
}

/// A blob being copied out, hashed as it goes.
struct Verifying<R> {
    inner: R,
    hasher: Hasher,
    read: u64,
}

impl<R: Read> Read for Verifying<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}
