//! A stored image seen whole: the reference's manifest (through its index, if any), config and
//! layers, read back from the store.

use oci_spec::image::{Descriptor, Digest, ImageConfiguration, ImageManifest};

use crate::manifest::{self, Manifest};
use crate::{
    Error, MANIFEST_ANNOTATION, PLATFORM_ANNOTATION, REGISTRY_DIGEST_ANNOTATION, Result, Store,
    ref_name,
};

/// An image as the store holds it.
#[derive(Debug, Clone)]
pub struct Image {
    /// The reference name (`org.opencontainers.image.ref.name`).
    pub name: String,
    /// The `index.json` entry: the manifest or index the reference points at.
    pub descriptor: Descriptor,
    /// The platform manifest's digest (the descriptor's own digest when it is not an index).
    pub manifest_digest: Digest,
    /// The platform manifest's size in bytes.
    pub manifest_size: u64,
    /// The platform manifest.
    pub manifest: ImageManifest,
    /// The media type of the platform manifest.
    pub manifest_media_type: String,
    /// The config, parsed.
    pub config: ImageConfiguration,
    /// The config exactly as stored.
    pub config_json: Vec<u8>,
    /// The platform chosen from an index, as `os/arch[/variant]`, when there was an index.
    pub platform: Option<String>,
}

impl Image {
    /// The digest the registry serves for this reference (the stored document's own digest
    /// unless it was converted from a Docker manifest or list).
    pub fn registry_digest(&self) -> Digest {
        self.descriptor
            .annotations()
            .as_ref()
            .and_then(|a| a.get(REGISTRY_DIGEST_ANNOTATION))
            .and_then(|d| crate::digest::parse(d).ok())
            .unwrap_or_else(|| self.descriptor.digest().clone())
    }

    /// The digest the registry serves for the platform manifest (the stored manifest's own
    /// digest unless it was converted from a Docker manifest).
    pub fn registry_manifest_digest(&self) -> Digest {
        self.manifest
            .annotations()
            .as_ref()
            .and_then(|a| a.get(REGISTRY_DIGEST_ANNOTATION))
            .and_then(|d| crate::digest::parse(d).ok())
            .unwrap_or_else(|| self.manifest_digest.clone())
    }

    /// The config's `rootfs.diff_ids`, parsed.
    pub fn diff_ids(&self) -> Result<Vec<Digest>> {
        self.config
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| crate::digest::parse(d))
            .collect()
    }

    /// Bytes this image occupies in the store: manifests, config and compressed layers.
    pub fn size(&self) -> u64 {
        let mut size = self.manifest_size
            + self.manifest.config().size()
            + self.manifest.layers().iter().map(|l| l.size()).sum::<u64>();
        if &self.manifest_digest != self.descriptor.digest() {
            size += self.descriptor.size();
        }
        size
    }
}

impl Store {
    /// Read the image named `name`.
    pub fn image(&self, name: &str) -> Result<Image> {
        let descriptor = self
            .find_ref(name)?
            .ok_or_else(|| Error::RefNotFound(name.to_string()))?;
        self.image_at(name, descriptor)
    }

    /// Every named image, in `index.json` order, each read or failed on its own.
    pub fn images(&self) -> Result<Vec<(String, Result<Image>)>> {
        Ok(self
            .refs()?
            .into_iter()
            .filter_map(|d| {
                let name = ref_name(&d)?.to_string();
                let image = self.image_at(&name, d);
                Some((name, image))
            })
            .collect())
    }

    fn image_at(&self, name: &str, descriptor: Descriptor) -> Result<Image> {
        let top = self.parse_manifest(&descriptor)?;
        let annotations = descriptor.annotations().clone().unwrap_or_default();
        let (manifest_digest, manifest_size, image, media_type, platform) = match top.manifest {
            Manifest::Image(m) => (
                descriptor.digest().clone(),
                descriptor.size(),
                m,
                top.media_type,
                None,
            ),
            Manifest::Index(index) => {
                let chosen = match annotations.get(MANIFEST_ANNOTATION) {
                    Some(d) => crate::digest::parse(d)?,
                    // Written by another tool: take the first child that is present.
                    None => index
                        .manifests()
                        .iter()
                        .map(|m| m.digest().clone())
                        .find(|d| self.has_blob(d, None))
                        .ok_or_else(|| Error::BadManifest {
                            digest: descriptor.digest().clone(),
                            reason: "index has no child manifest in the store".into(),
                        })?,
                };
                let child = index
                    .manifests()
                    .iter()
                    .find(|m| m.digest() == &chosen)
                    .cloned()
                    .ok_or_else(|| Error::BadManifest {
                        digest: descriptor.digest().clone(),
                        reason: format!("index does not list the chosen manifest {chosen}"),
                    })?;
                let parsed = self.parse_manifest(&child)?;
                let Manifest::Image(m) = parsed.manifest else {
                    return Err(Error::BadManifest {
                        digest: chosen,
                        reason: "nested index where an image manifest was expected".into(),
                    });
                };
                let platform = annotations.get(PLATFORM_ANNOTATION).cloned();
                (chosen, child.size(), m, parsed.media_type, platform)
            }
        };
        let config_json = self.read_blob(image.config().digest())?;
        let config = serde_json::from_slice(&config_json).map_err(|cause| Error::Json {
            what: format!("config {}", image.config().digest()),
            cause,
        })?;
        Ok(Image {
            name: name.to_string(),
            descriptor,
            manifest_digest,
            manifest_size,
            manifest: *image,
            manifest_media_type: media_type,
            config,
            config_json,
            platform,
        })
    }

    /// Read and parse the manifest or index a descriptor points at.
    pub fn parse_manifest(&self, descriptor: &Descriptor) -> Result<manifest::Parsed> {
        let bytes = self.read_blob(descriptor.digest())?;
        let declared = descriptor.media_type().to_string();
        manifest::parse(descriptor.digest(), Some(&declared), &bytes)
    }
}
