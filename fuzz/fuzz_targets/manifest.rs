//! Manifest, index and config parsing in img-store: `manifest::parse` (the kind detection, with
//! each declared media type a registry or an index entry may give), `docker_to_oci`,
//! `single_entry_index`, image configs and `index.json` as the store reads them, digests and
//! image IDs. Oracles: no panic; and what a pull accepts, the store reads back: a Docker
//! manifest's OCI form parses as an image manifest, and the one-entry index that replaces a
//! Docker manifest list parses as an index.
#![no_main]

use img_store::manifest::{self, Manifest};
use img_store::{Descriptor, ImageConfiguration, ImageIndex};
use libfuzzer_sys::fuzz_target;

const DECLARED: [Option<&str>; 9] = [
    None,
    Some(manifest::OCI_MANIFEST),
    Some(manifest::OCI_INDEX),
    Some(manifest::DOCKER_MANIFEST),
    Some(manifest::DOCKER_LIST),
    Some(manifest::DOCKER_SCHEMA1[0]),
    Some(manifest::DOCKER_SCHEMA1[1]),
    Some("application/json"),
    Some(""),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let digest = img_store::digest::sha256(bytes);
    let declared = DECLARED[usize::from(selector) % DECLARED.len()];
    if let Ok(parsed) = manifest::parse(&digest, declared, bytes) {
        assert!(
            manifest::is_manifest_type(&parsed.media_type),
            "parse recognised {:?}",
            parsed.media_type
        );
        match &parsed.manifest {
            Manifest::Image(m) => {
                let _ = (m.config().digest(), m.layers().len());
                if parsed.media_type == manifest::DOCKER_MANIFEST {
                    // Stored in its OCI form, read back under the OCI type.
                    let oci = manifest::docker_to_oci(&digest, bytes)
                        .expect("a parsed Docker manifest converts");
                    let back = manifest::parse(&digest, Some(manifest::OCI_MANIFEST), &oci)
                        .expect("the OCI form of a Docker manifest parses");
                    assert!(matches!(back.manifest, Manifest::Image(_)));
                    assert_eq!(back.media_type, manifest::OCI_MANIFEST);
                }
            }
            Manifest::Index(index) => {
                for entry in index.manifests().iter().take(4) {
                    // A Docker list is stored as an OCI index of the pulled platform.
                    let mut oci_entry = Descriptor::new(
                        manifest::OCI_MANIFEST.into(),
                        entry.size(),
                        entry.digest().clone(),
                    );
                    oci_entry.set_platform(entry.platform().clone());
                    let stored = manifest::single_entry_index(&oci_entry);
                    let back = manifest::parse(&digest, Some(manifest::OCI_INDEX), &stored)
                        .expect("a one-entry index parses");
                    let Manifest::Index(back) = back.manifest else {
                        panic!("a one-entry index parses as an image manifest");
                    };
                    assert_eq!(back.manifests().len(), 1);
                    assert_eq!(back.manifests()[0].digest(), entry.digest());
                }
            }
        }
    }
    let _ = manifest::docker_to_oci(&digest, bytes);
    if let Ok(config) = serde_json::from_slice::<ImageConfiguration>(bytes) {
        for d in config.rootfs().diff_ids() {
            if let Ok(d) = img_store::digest::parse(d) {
                let _ = img_store::digest::short(&d);
                let _ = img_store::digest::of_bytes_like(&d, b"x");
            }
        }
    }
    if let Ok(index) = serde_json::from_slice::<ImageIndex>(bytes) {
        for d in index.manifests() {
            let _ = img_store::ref_name(d);
        }
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = img_store::digest::parse(text);
        let _ = img_store::parse_image_id(text);
        let _ = img_store::is_full_image_id(text);
        let _ = manifest::is_manifest_type(text);
    }
});
