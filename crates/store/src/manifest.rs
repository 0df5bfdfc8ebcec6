//! Telling manifests apart: OCI image manifest and index, Docker schema 2 manifest and
//! manifest list, with or without a `mediaType` field (umoci writes none).

use oci_spec::image::{Digest, ImageIndex, ImageManifest};

use crate::{Error, Result};

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker schema 2 manifest list media type.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema 1 media types, which are refused.
pub const DOCKER_SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// The `Accept` header value for manifest requests: every type we can read, best first.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// A parsed manifest document.
#[derive(Debug, Clone)]
pub enum Manifest {
    /// An image index or Docker manifest list: one entry per platform.
    Index(Box<ImageIndex>),
    /// An image manifest: a config and layers.
    Image(Box<ImageManifest>),
}

/// A manifest and the media type it was recognised as.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The document.
    pub manifest: Manifest,
    /// Its media type: the declared one when there is one, else the OCI type its shape implies.
    pub media_type: String,
}

/// Parse the manifest `bytes` (whose digest is `digest`). `declared` is the media type the
/// registry announced (`Content-Type`), if any; the document's own `mediaType` field and then
/// its shape decide when neither says.
pub fn parse(digest: &Digest, declared: Option<&str>, bytes: &[u8]) -> Result<Parsed> {
    let bad = |reason: String| Error::BadManifest {
        digest: digest.clone(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let field = value
        .get("mediaType")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let schema = value.get("schemaVersion").and_then(|v| v.as_u64());
    let declared = declared.filter(|d| is_manifest_type(d) || DOCKER_SCHEMA1.contains(d));
    let media_type = declared.or(field.as_deref());
    if schema == Some(1) || media_type.is_some_and(|m| DOCKER_SCHEMA1.contains(&m)) {
        return Err(bad(
            "docker schema 1 manifests are unsupported; re-push the image as schema 2 or OCI"
                .into(),
        ));
    }
    let is_index = match media_type {
        Some(OCI_INDEX | DOCKER_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        _ => value.get("manifests").is_some_and(|m| m.is_array()),
    };
    let manifest = if is_index {
        Manifest::Index(Box::new(
            serde_json::from_value(value).map_err(|e| bad(format!("bad index: {e}")))?,
        ))
    } else if value.get("config").is_some() && value.get("layers").is_some() {
        Manifest::Image(Box::new(
            serde_json::from_value(value).map_err(|e| bad(format!("bad manifest: {e}")))?,
        ))
    } else {
        return Err(bad(format!(
            "not an image manifest or index (media type {})",
            media_type.unwrap_or("not given")
        )));
    };
    let media_type = match (media_type.filter(|m| is_manifest_type(m)), &manifest) {
        (Some(m), _) => m.to_string(),
        (_, Manifest::Index(_)) => OCI_INDEX.to_string(),
        (_, Manifest::Image(_)) => OCI_MANIFEST.to_string(),
    };
    Ok(Parsed {
        manifest,
        media_type,
    })
}

/// The OCI form of a Docker schema 2 manifest: the same config and layer blobs under OCI media
/// types, every other field kept, and the registry's `digest` recorded in the annotation
/// [`REGISTRY_DIGEST_ANNOTATION`](crate::REGISTRY_DIGEST_ANNOTATION). The store keeps this form
/// so that OCI tools (skopeo, umoci) can read every image.
pub fn docker_to_oci(digest: &Digest, bytes: &[u8]) -> Result<Vec<u8>> {
    let bad = |reason: String| Error::BadManifest {
        digest: digest.clone(),
        reason,
    };
    let mut value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    // Indexing a JSON value that is not an object (`value["mediaType"] = …`) panics.
    let object = value
        .as_object_mut()
        .ok_or_else(|| bad("not a JSON object".into()))?;
    let map = |v: &mut serde_json::Value| {
        if let Some(mt) = v.get_mut("mediaType")
            && let Some(oci) = mt.as_str().and_then(oci_blob_type)
        {
            *mt = oci.into();
        }
    };
    object.insert("mediaType".into(), OCI_MANIFEST.into());
    // Provenance: the digest the registry serves for this manifest.
    let annotations = object
        .entry("annotations")
        .or_insert_with(|| serde_json::json!({}));
    if let Some(a) = annotations.as_object_mut() {
        a.insert(
            crate::REGISTRY_DIGEST_ANNOTATION.to_string(),
            digest.to_string().into(),
        );
    }
    if let Some(config) = value.get_mut("config") {
        map(config);
    }
    if let Some(layers) = value.get_mut("layers").and_then(|l| l.as_array_mut()) {
        layers.iter_mut().for_each(map);
    }
    serde_json::to_vec(&value).map_err(|e| bad(format!("cannot re-encode: {e}")))
}

/// An OCI index listing one platform manifest (the form a Docker manifest list takes in the
/// store, where only the pulled platform is kept).
pub fn single_entry_index(entry: &oci_spec::image::Descriptor) -> Vec<u8> {
    let value = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [entry],
    });
    serde_json::to_vec(&value).unwrap_or_default()
}

/// The OCI media type for a Docker config or layer media type, if it has one.
fn oci_blob_type(docker: &str) -> Option<&'static str> {
    match docker {
        "application/vnd.docker.container.image.v1+json" => {
            Some("application/vnd.oci.image.config.v1+json")
        }
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
            Some("application/vnd.oci.image.layer.v1.tar+gzip")
        }
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
            Some("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip")
        }
        _ => None,
    }
}

/// Whether `media_type` is one of the four manifest types we read.
pub fn is_manifest_type(media_type: &str) -> bool {
    matches!(
        media_type,
        OCI_MANIFEST | OCI_INDEX | DOCKER_MANIFEST | DOCKER_LIST
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> Digest {
        crate::digest::sha256(b"x")
    }

    #[test]
    fn shape_decides_without_media_type() {
        let umoci = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","size":3},"layers":[]}"#;
        let p = parse(&digest(), None, umoci).unwrap();
        assert!(matches!(p.manifest, Manifest::Image(_)));
        assert_eq!(p.media_type, OCI_MANIFEST);
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        let p = parse(&digest(), Some("text/plain"), index).unwrap();
        assert!(matches!(p.manifest, Manifest::Index(_)));
        assert_eq!(p.media_type, OCI_INDEX);
    }

    #[test]
    fn schema1_is_refused_by_name() {
        let s1 = br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        let err = parse(&digest(), None, s1).unwrap_err().to_string();
        assert!(err.contains("schema 1") && err.contains("re-push"), "{err}");
    }

    #[test]
    fn docker_manifests_convert_to_oci() {
        let docker = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":3,"digest":"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":5,"digest":"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","urls":["x"]}]}"#;
        let oci = docker_to_oci(&digest(), docker).unwrap();
        let p = parse(&digest(), None, &oci).unwrap();
        assert_eq!(p.media_type, OCI_MANIFEST);
        let Manifest::Image(m) = p.manifest else {
            panic!("not a manifest")
        };
        assert_eq!(
            m.config().media_type().to_string(),
            "application/vnd.oci.image.config.v1+json"
        );
        assert_eq!(
            m.layers()[0].media_type().to_string(),
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        assert_eq!(
            m.layers()[0].urls().as_deref(),
            Some(&["x".to_string()][..])
        );
        assert_eq!(m.layers()[0].size(), 5);
        assert_eq!(
            m.annotations().as_ref().unwrap()[crate::REGISTRY_DIGEST_ANNOTATION],
            digest().to_string()
        );
    }

    #[test]
    fn docker_to_oci_refuses_what_is_not_an_object() {
        // Found by fuzz/fuzz_targets/manifest.rs: JSON that is not an object (here `1`) made
        // docker_to_oci panic instead of failing.
        for bytes in [&b"1"[..], b"[]", b"\"x\"", b"null", b"true"] {
            let err = docker_to_oci(&digest(), bytes).unwrap_err().to_string();
            assert!(err.contains("not a JSON object"), "{err}");
        }
    }

    #[test]
    fn other_documents_are_refused() {
        let err = parse(&digest(), None, b"{}").unwrap_err().to_string();
        assert!(err.contains("not an image manifest"), "{err}");
        let err = parse(&digest(), None, b"<html>").unwrap_err().to_string();
        assert!(err.contains("invalid JSON"), "{err}");
    }
}
