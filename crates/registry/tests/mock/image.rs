//! Test images for the mock: a config, layers of deterministic noise, and an OCI manifest
//! naming them. Nothing unpacks these layers; pulls only move and verify them.

use img_store::Digest;

/// The OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The OCI image config media type.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// The OCI uncompressed layer media type.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// An image as a registry serves it.
#[derive(Debug, Clone)]
pub struct TestImage {
    /// The config blob.
    pub config: Vec<u8>,
    /// The layer blobs, base first.
    pub layers: Vec<Vec<u8>>,
    /// The manifest naming them.
    pub manifest: Vec<u8>,
}

impl TestImage {
    /// An image whose layers have these sizes (each different noise).
    pub fn new(layer_sizes: &[usize]) -> TestImage {
        let layers: Vec<Vec<u8>> = layer_sizes
            .iter()
            .enumerate()
            .map(|(i, &len)| noise(i as u64 + 1, len))
            .collect();
        let diff_ids: Vec<String> = layers
            .iter()
            .map(|l| img_store::digest::sha256(l).to_string())
            .collect();
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        })
        .to_string()
        .into_bytes();
        let descriptor = |media_type: &str, bytes: &[u8]| {
            serde_json::json!({
                "mediaType": media_type,
                "digest": img_store::digest::sha256(bytes).to_string(),
                "size": bytes.len(),
            })
        };
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, &config),
            "layers": layers.iter().map(|l| descriptor(OCI_LAYER, l)).collect::<Vec<_>>(),
        })
        .to_string()
        .into_bytes();
        TestImage {
            config,
            layers,
            manifest,
        }
    }

    /// The config's digest.
    pub fn config_digest(&self) -> Digest {
        img_store::digest::sha256(&self.config)
    }

    /// Layer `i`'s digest.
    pub fn layer_digest(&self, i: usize) -> Digest {
        img_store::digest::sha256(&self.layers[i])
    }

    /// The manifest's digest.
    pub fn manifest_digest(&self) -> Digest {
        img_store::digest::sha256(&self.manifest)
    }

    /// Layer `i`'s descriptor, as `fetch_blob` takes it.
    pub fn layer_descriptor(&self, i: usize) -> img_store::Descriptor {
        img_store::Descriptor::new(
            OCI_LAYER.into(),
            self.layers[i].len() as u64,
            self.layer_digest(i),
        )
    }
}

/// `len` bytes of deterministic noise (xorshift64*) from `seed`.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}
