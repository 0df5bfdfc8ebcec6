//! OCI image layout directories (skopeo's `oci:DIR[:REF]`), read into and written from the
//! store.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, Digest};

use super::error::{Error, Result, invalid};
use super::load::{
    LoadOptions, Loaded, check_layout, entry_names, name_plans, oci_plans, parse_index, selected,
};
use super::save::{SaveImage, manifest_descriptor, platform_of};
use crate::digest::Hasher;
use crate::manifest::{self, Manifest};
use crate::{MAX_JSON_BLOB, REF_NAME, Store};

fn io_at(path: &Path) -> impl Fn(io::Error) -> Error + '_ {
    move |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

/// Read a small file of a layout (not following a symlink).
fn read_small(path: &Path) -> Result<Vec<u8>> {
    let file = open_regular(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_JSON_BLOB + 1)
        .read_to_end(&mut bytes)
        .map_err(io_at(path))?;
    if bytes.len() as u64 > MAX_JSON_BLOB {
        return Err(invalid(path.display().to_string(), "too large"));
    }
    Ok(bytes)
}

/// Open a layout's file, refusing a symlink or anything but a regular file.
fn open_regular(path: &Path) -> Result<File> {
    let meta = fs::symlink_metadata(path).map_err(io_at(path))?;
    if !meta.is_file() {
        let what = if meta.file_type().is_symlink() {
            "is a symlink, where a file is expected"
        } else {
            "is not a regular file"
        };
        return Err(invalid(path.display().to_string(), what));
    }
    File::open(path).map_err(io_at(path))
}

fn blob_file(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs")
        .join(digest.algorithm().as_ref())
        .join(digest.digest())
}

/// Copy one blob of the layout into the store, verified.
fn import(store: &Store, dir: &Path, d: &Descriptor) -> Result<()> {
    if store.has_blob(d.digest(), Some(d.size())) {
        return Ok(());
    }
    let path = blob_file(dir, d.digest());
    let mut file = open_regular(&path)?;
    let mut ingest = store.ingest(d.digest(), Some(d.size()))?;
    io::copy(&mut file, &mut ingest).map_err(|e| {
        match e.into_inner().map(|i| i.downcast::<crate::Error>()) {
            Some(Ok(store)) => Error::Store(*store),
            Some(Err(other)) => Error::Io {
                path: path.clone(),
                source: io::Error::other(other),
            },
            None => invalid(path.display().to_string(), "read failed"),
        }
    })?;
    ingest.commit()?;
    Ok(())
}

/// Bring what one `index.json` entry reaches into the store: the manifest, or an index and
/// the children present in the layout, then the chosen image's config and layers.
fn import_entry(
    store: &Store,
    dir: &Path,
    entry: &Descriptor,
    options: &LoadOptions,
) -> Result<()> {
    import(store, dir, entry)?;
    let bytes = store.read_blob(entry.digest())?;
    let parsed = manifest::parse(
        entry.digest(),
        Some(entry.media_type().to_string().as_str()),
        &bytes,
    )?;
    let image = match parsed.manifest {
        Manifest::Image(m) => m,
        Manifest::Index(index) => {
            for child in index.manifests() {
                if blob_file(dir, child.digest()).is_file() {
                    import(store, dir, child)?;
                }
            }
            let Some(child) = super::load::choose(store, &index, options.platform) else {
                return Ok(()); // oci_plans says what is missing
            };
            let bytes = store.read_blob(child.digest())?;
            match manifest::parse(child.digest(), None, &bytes)?.manifest {
                Manifest::Image(m) => m,
                Manifest::Index(_) => return Ok(()),
            }
        }
    };
    import(store, dir, image.config())?;
    for l in image.layers() {
        import(store, dir, l)?;
    }
    Ok(())
}

/// Read images from the OCI layout directory `dir` into the store (skopeo's `oci:DIR[:REF]`:
/// `options.select` picks the entry whose `ref.name` is REF). Blobs are verified as they go
/// in; names are set once every blob is there.
pub fn read_layout(store: &Store, dir: &Path, options: &LoadOptions) -> Result<Vec<Loaded>> {
    let _guard = store.pull_guard()?;
    let layout = dir.join("oci-layout");
    check_layout(&layout.display().to_string(), &read_small(&layout)?)?;
    let index_path = dir.join("index.json");
    let what = index_path.display().to_string();
    let bytes = read_small(&index_path)?;
    let index = parse_index(&what, &bytes)?;
    for entry in index.manifests() {
        if selected(&entry_names(entry), options) {
            import_entry(store, dir, entry, options)?;
        }
    }
    let plans = oci_plans(store, &what, &bytes, &HashMap::new(), options)?;
    name_plans(store, plans, options)
}

/// Write the stored image `image.name` into the OCI layout directory `dir` (made when
/// absent), as the entry named `ref_name` (replacing one of that name) or, without a name,
/// as one more unnamed entry. Blobs the layout has are kept; new ones are copied from the
/// store, checked against their digests, and renamed into place; `index.json` is replaced
/// by a rename. Returns the entry written.
pub fn write_layout(
    store: &Store,
    dir: &Path,
    image: &SaveImage,
    ref_name: Option<&str>,
) -> Result<Descriptor> {
    let stored = store.image(&image.name)?;
    fs::create_dir_all(dir).map_err(io_at(dir))?;
    let layout = dir.join("oci-layout");
    if layout.exists() {
        check_layout(&layout.display().to_string(), &read_small(&layout)?)?;
    } else {
        write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    }
    let m = &stored.manifest;
    let blobs = std::iter::once((m.config().digest().clone(), m.config().size()))
        .chain(m.layers().iter().map(|l| (l.digest().clone(), l.size())))
        .chain([(stored.manifest_digest.clone(), stored.manifest_size)]);
    for (digest, size) in blobs {
        export(store, dir, &digest, size)?;
    }
    let mut descriptor = manifest_descriptor(&stored, Some(platform_of(&stored)));
    if let Some(r) = ref_name {
        let mut a = HashMap::new();
        a.insert(REF_NAME.to_string(), r.to_string());
        descriptor.set_annotations(Some(a));
    }
    let index_path = dir.join("index.json");
    let mut index: serde_json::Value = if index_path.exists() {
        serde_json::from_slice(&read_small(&index_path)?).map_err(|e| Error::Json {
            what: index_path.display().to_string(),
            source: e,
        })?
    } else {
        serde_json::json!({"schemaVersion": 2, "mediaType": manifest::OCI_INDEX, "manifests": []})
    };
    let entries = index
        .get_mut("manifests")
        .and_then(|m| m.as_array_mut())
        .ok_or_else(|| invalid(index_path.display().to_string(), "no manifests array"))?;
    entries.retain(|e| match ref_name {
        Some(r) => e["annotations"][REF_NAME].as_str() != Some(r),
        None => {
            !(e["annotations"][REF_NAME].is_null()
                && e["digest"].as_str() == Some(descriptor.digest().as_ref()))
        }
    });
    entries.push(serde_json::to_value(&descriptor).unwrap_or_default());
    let bytes = serde_json::to_vec(&index).unwrap_or_default();
    write_atomic(&index_path, &bytes)?;
    Ok(descriptor)
}

/// Copy one blob from the store into the layout (unless there), verified, by rename.
fn export(store: &Store, dir: &Path, digest: &Digest, size: u64) -> Result<()> {
    let target = blob_file(dir, digest);
    if let Ok(meta) = fs::symlink_metadata(&target)
        && meta.is_file()
        && meta.len() == size
    {
        return Ok(());
    }
    let parent = target.parent().unwrap_or(dir);
    fs::create_dir_all(parent).map_err(io_at(parent))?;
    let temp = parent.join(format!(".{}.{}.tmp", digest.digest(), std::process::id()));
    let result = (|| {
        let mut from = store.open_blob(digest)?.take(size + 1);
        let mut to = File::create(&temp).map_err(io_at(&temp))?;
        let mut hasher = Hasher::for_digest(digest)?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut n_total = 0u64;
        loop {
            let n = from
                .read(&mut buf)
                .map_err(io_at(&store.blob_path(digest)))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            to.write_all(&buf[..n]).map_err(io_at(&temp))?;
            n_total += n as u64;
        }
        if n_total != size {
            return Err(crate::Error::SizeMismatch {
                digest: digest.clone(),
                expected: size,
                actual: n_total,
            }
            .into());
        }
        let actual = hasher.finish();
        if &actual != digest {
            return Err(crate::Error::DigestMismatch {
                expected: digest.clone(),
                actual,
            }
            .into());
        }
        to.sync_all().map_err(io_at(&temp))?;
        fs::rename(&temp, &target).map_err(io_at(&target))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = File::create(&temp).map_err(io_at(&temp))?;
        f.write_all(bytes).map_err(io_at(&temp))?;
        f.sync_all().map_err(io_at(&temp))?;
        fs::rename(&temp, path).map_err(io_at(path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}
