//! Images in and out of the store as archives and layouts: `docker save`'s tars (legacy and
//! docker ≥ 25), OCI archives (an OCI image layout in a tar) and OCI layout directories.
//!
//! What [`save`] writes is docker ≥ 25's format: an OCI image layout in a tar (`oci-layout`,
//! `index.json` whose entries carry `org.opencontainers.image.ref.name` and
//! `io.containerd.image.name`, `blobs/sha256/…`) plus docker's `manifest.json` (`Config`,
//! `RepoTags`, `Layers`, all pointing into `blobs/`), so docker, podman and skopeo read it as a
//! `docker-archive:` and skopeo and umoci as an `oci-archive:`. The tar is streamed to any
//! [`std::io::Write`]; members and their metadata are the same for the same images (sorted
//! order of first use, mtime 0, root-owned, 0644/0755).
//!
//! [`load`] reads any of these, plain or gzip/zstd-compressed (told apart by magic bytes), in
//! one pass: every member goes straight into an [`Ingest`](crate::Ingest) as it arrives (the
//! store's `ingest/` directory is the spool), `blobs/ALG/HEX` members verified against their
//! names, other members (legacy `layer.tar`s, skopeo's `HEX.tar`) hashed as they come and kept
//! uncommitted until the archive's `manifest.json` says they are layers. References are set
//! only after every blob an image reaches is in the store; on any error nothing is named and
//! the uncommitted members' temp files go.
//!
//! [`read_layout`] and [`write_layout`] do the same for OCI layout directories (skopeo's
//! `oci:DIR[:REF]`).
//!
//! ```
//! use img_store::Store;
//! use img_store::archive::{self, LoadOptions, SaveImage};
//! # let dir = std::env::temp_dir().join(format!("img-doc-archive-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&dir);
//! let store = Store::open(dir.join("a"))?;
//! // An image made by hand: an empty config and one (empty) layer.
//! let layer = vec![0u8; 1024];
//! let layer_digest = img_store::digest::sha256(&layer);
//! store.put_blob(&layer_digest, &layer)?;
//! let config = format!(
//!     r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}}}}"#
//! );
//! let config_digest = img_store::digest::sha256(config.as_bytes());
//! store.put_blob(&config_digest, config.as_bytes())?;
//! let manifest = format!(
//!     r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":1024}}]}}"#,
//!     config.len()
//! );
//! let manifest_digest = img_store::digest::sha256(manifest.as_bytes());
//! store.put_blob(&manifest_digest, manifest.as_bytes())?;
//! let descriptor = img_store::Descriptor::new(
//!     "application/vnd.oci.image.manifest.v1+json".into(),
//!     manifest.len() as u64,
//!     manifest_digest.clone(),
//! );
//! store.set_ref("example.com/app:1", descriptor)?;
//!
//! // Save it, load it into another store.
//! let mut tar = Vec::new();
//! archive::save(&store, &[SaveImage::named("example.com/app:1")], &mut tar)?;
//! let other = Store::open(dir.join("b"))?;
//! let loaded = archive::load(&other, &tar[..], &LoadOptions::default())?;
//! assert_eq!(loaded[0].name, "example.com/app:1");
//! assert_eq!(loaded[0].descriptor.digest(), &manifest_digest);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod layout;
mod load;
mod save;

pub use error::{Error, Result};
pub use layout::{read_layout, write_layout};
pub use load::{LoadOptions, Loaded, Normalize, load};
pub use save::{SaveImage, SaveReport, save};

/// oci-spec's platform type, as [`LoadOptions::platform`] takes it.
pub use oci_spec::image::Platform as OciPlatform;

/// containerd's (and docker ≥ 25's) annotation on an `index.json` entry: the image's full name.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// The OCI config media type.
pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// The OCI layer media types, by compression.
pub(crate) const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub(crate) const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub(crate) const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
