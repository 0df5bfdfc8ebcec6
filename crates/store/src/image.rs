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
    /// Sizes come from descriptors an image author wrote: the sum saturates rather than wrap.
    pub fn size(&self) -> u64 {
        let mut size = self
            .manifest_size
            .saturating_add(self.manifest.config().size());
        for layer in self.manifest.layers() {
            size = size.saturating_add(layer.size());
        }
        if &self.manifest_digest != self.descriptor.digest() {
            size = size.saturating_add(self.descriptor.size());
        }
        size
    }
}

/// A manifest or index as its registry served it ([`Store::served`]).
#[derive(Debug, Clone)]
pub struct Served {
    /// The digest of `bytes`: the registry's digest.
    pub digest: Digest,
    /// The document's media type.
    pub media_type: String,
    /// The exact bytes.
    pub bytes: Vec<u8>,
    /// The registry's bytes were not kept (an older store): these are the stored OCI form,
    /// whose digest differs from the one the registry served.
    pub converted: bool,
}

/// What an image ID, or a prefix of one, names among the stored images. An image's ID is its
/// config's digest, as docker has it (`sha256:…`; `docker images` shows 12 hex digits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdMatch {
    /// The input is not an ID's form, or no stored image's ID fits it.
    None,
    /// One image ID fits.
    One {
        /// The image ID.
        id: Digest,
        /// The stored references to that image, in `index.json` order.
        names: Vec<String>,
    },
    /// Several image IDs start with the prefix (sorted).
    Ambiguous(Vec<Digest>),
}

/// An image ID or ID prefix as docker takes one: lower-case hex alone (`3f57d9401f8d`, all 64
/// digits meaning `sha256:` + them) or after `sha256:`/`sha512:` (a prefix of the hex too).
/// `None` for any other form. Returns the algorithm (when given or implied) and the hex.
pub fn parse_image_id(input: &str) -> Option<(Option<&str>, &str)> {
    let (algorithm, hex) = match input.split_once(':') {
        Some((alg @ ("sha256" | "sha512"), hex)) => (Some(alg), hex),
        Some(_) => return None,
        None if input.len() == 64 => (Some("sha256"), input),
        None => (None, input),
    };
    let max = if algorithm == Some("sha512") { 128 } else { 64 };
    let is_hex = hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    (!hex.is_empty() && hex.len() <= max && is_hex).then_some((algorithm, hex))
}

/// Whether `input` is a whole image ID (`HEX64`, `sha256:HEX64`, `sha512:HEX128`), which can
/// only name a stored image by ID (never a repository to pull).
pub fn is_full_image_id(input: &str) -> bool {
    match parse_image_id(input) {
        Some((Some("sha512"), hex)) => hex.len() == 128,
        Some((Some(_), hex)) => hex.len() == 64,
        _ => false,
    }
}

impl Store {
    /// Find stored images by ID (their config's digest) or a prefix of one, as docker does:
    /// a prefix fits when it is unique among the IDs, whatever its length (several
    /// references to one image are one ID). Entries that cannot be read are skipped: their
    /// ID is unknown.
    pub fn find_image_id(&self, input: &str) -> Result<IdMatch> {
        let Some((algorithm, hex)) = parse_image_id(input) else {
            return Ok(IdMatch::None);
        };
        let mut fits: Vec<(Digest, String)> = Vec::new();
        for (name, image) in self.images()? {
            let Ok(image) = image else { continue };
            let id = image.manifest.config().digest();
            let same_algorithm = algorithm.is_none_or(|a| id.algorithm().as_ref() == a);
            if same_algorithm && id.digest().starts_with(hex) {
                fits.push((id.clone(), name));
            }
        }
        let mut ids: Vec<Digest> = fits.iter().map(|(id, _)| id.clone()).collect();
        ids.sort_by_key(|d| d.to_string());
        ids.dedup();
        Ok(match ids.len() {
            0 => IdMatch::None,
            1 => IdMatch::One {
                id: ids.remove(0),
                names: fits.into_iter().map(|(_, name)| name).collect(),
            },
            _ => IdMatch::Ambiguous(ids),
        })
    }

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

    /// The document `descriptor` points at in the form its registry served it: the bytes kept
    /// under its `io.img.digest` when img stored it converted (a Docker manifest or list kept
    /// as OCI), else the stored bytes themselves. A store made by an older img did not keep
    /// the served bytes: then the stored form comes back, with `converted` set.
    pub fn served(&self, descriptor: &Descriptor) -> Result<Served> {
        let stored = self.read_blob(descriptor.digest())?;
        let parsed = manifest::parse(
            descriptor.digest(),
            Some(descriptor.media_type().to_string().as_str()),
            &stored,
        )?;
        let own = match &parsed.manifest {
            Manifest::Index(index) => index.annotations().clone(),
            Manifest::Image(m) => m.annotations().clone(),
        };
        let named = [descriptor.annotations().as_ref(), own.as_ref()]
            .into_iter()
            .flatten()
            .find_map(crate::gc::served_digest)
            .filter(|d| d != descriptor.digest());
        let Some(digest) = named else {
            return Ok(Served {
                digest: descriptor.digest().clone(),
                media_type: parsed.media_type,
                bytes: stored,
                converted: false,
            });
        };
        if !self.has_blob(&digest, None) {
            return Ok(Served {
                digest: descriptor.digest().clone(),
                media_type: parsed.media_type,
                bytes: stored,
                converted: true,
            });
        }
        let bytes = self.read_blob(&digest)?;
        let media_type = manifest::parse(&digest, None, &bytes)?.media_type;
        Ok(Served {
            digest,
            media_type,
            bytes,
            converted: false,
        })
    }

    /// Read and parse the manifest or index a descriptor points at.
    pub fn parse_manifest(&self, descriptor: &Descriptor) -> Result<manifest::Parsed> {
        let bytes = self.read_blob(descriptor.digest())?;
        let declared = descriptor.media_type().to_string();
        manifest::parse(descriptor.digest(), Some(&declared), &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_id_forms() {
        let hex = "a".repeat(64);
        assert_eq!(parse_image_id(&hex), Some((Some("sha256"), hex.as_str())));
        assert_eq!(parse_image_id("3f57d9401f8d"), Some((None, "3f57d9401f8d")));
        assert_eq!(parse_image_id("a"), Some((None, "a")));
        assert_eq!(
            parse_image_id("sha256:3f57"),
            Some((Some("sha256"), "3f57"))
        );
        let long = "b".repeat(128);
        assert_eq!(
            parse_image_id(&format!("sha512:{long}")),
            Some((Some("sha512"), long.as_str()))
        );
        for not_id in [
            "",
            "sha256:",
            "busybox",
            "3F57D9401F8D",
            "md5:3f57",
            "127.0.0.1:5000/app",
            &format!("{hex}0"),
            &format!("sha256:{hex}0"),
        ] {
            assert_eq!(parse_image_id(not_id), None, "{not_id}");
        }
        assert!(is_full_image_id(&hex));
        assert!(is_full_image_id(&format!("sha256:{hex}")));
        assert!(is_full_image_id(&format!("sha512:{long}")));
        assert!(!is_full_image_id(&hex[..63]));
        assert!(!is_full_image_id(&format!("sha512:{hex}")));
    }
}
