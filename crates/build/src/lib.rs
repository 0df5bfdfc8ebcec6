//! Making images from images: take a base image from the store (or start from nothing), append
//! layers made from directories, tars or an overlayfs upper directory, change the config, add
//! history, and write the result to the store under a reference — then push or save it.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let tmp = std::env::temp_dir().join(format!("img-doc-build-{}", std::process::id()));
//! # std::fs::create_dir_all(tmp.join("app"))?;
//! use img_build::Builder;
//! std::fs::write(tmp.join("app/hello.txt"), "hello\n")?;
//! let store = img_store::Store::open(tmp.join("store"))?;
//!
//! let platform = img_registry::Platform::host();
//! let mut image = Builder::scratch(&platform)?;
//! image
//!     .append_dir(tmp.join("app"))
//!     .entrypoint(["/bin/cat", "/hello.txt"])
//!     .label("org.opencontainers.image.title", "hello");
//! image.apply_change("ENV GREETING=hi")?;
//! let written = image.write(&store, "example.com/hello:1")?;
//!
//! let stored = store.image("example.com/hello:1")?;
//! assert_eq!(stored.config.config().as_ref().unwrap().env().as_ref().unwrap(), &["GREETING=hi"]);
//! assert_eq!(stored.manifest.layers(), &[written.layers[0].descriptor.clone()]);
//! // The layer holds the directory's files, read back as any layer is.
//! let mut tar = tar::Archive::new(img_unpack::open_layer(&store, &written.layers[0].descriptor)?);
//! let names: Vec<String> = tar.entries()?.map(|e| Ok(e?.path()?.display().to_string()))
//!     .collect::<std::io::Result<_>>()?;
//! assert_eq!(names, ["hello.txt"]);
//! # std::fs::remove_dir_all(&tmp)?;
//! # Ok(()) }
//! ```
//!
//! Layers are reproducible: entries sorted by name, owners and modes as on disk, no user or
//! group names, mtimes clamped to `SOURCE_DATE_EPOCH` when it is set (the config's and the
//! history's `created` are then that time too), so the same input gives the same digests.
//! Every blob goes through [`Store::ingest_new`] (verified, atomic); the reference is set
//! last, so a failure leaves nothing named in the store.
#![warn(missing_docs)]

mod change;
mod error;
mod layer;

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;

use img_registry::{Platform, Reference};
use img_store::{
    Descriptor, DigestAlgorithm, IdMatch, ImageConfiguration, SOURCE_ANNOTATION, Store,
};
use oci_spec::image::{
    Config, History, ImageConfigurationBuilder, ImageManifestBuilder, MediaType, RootFs,
};

pub use error::{Error, Result};
pub use img_unpack::Compression;
pub use layer::Layer;

/// An image being made: a base (or nothing), layers to append, a config.
pub struct Builder {
    config: ImageConfiguration,
    base_layers: Vec<Descriptor>,
    pending: Vec<Pending>,
    history: Vec<HistoryEntry>,
    compression: Compression,
    epoch: Option<u64>,
    /// Where the base came from (`io.img.source`): a push to that registry mounts its blobs.
    source: Option<String>,
    /// A `CMD` change was applied (an `ENTRYPOINT` change then keeps it).
    pub(crate) cmd_changed: bool,
}

enum Pending {
    Dir(PathBuf),
    Upper(PathBuf, Vec<PathBuf>),
    Tar(Box<dyn Read + Send>, String),
}

/// One entry of the image's history (`docker history`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The command that made the layer (`docker history`'s CREATED BY).
    pub created_by: Option<String>,
    /// A message (`commit -m`).
    pub comment: Option<String>,
    /// Who made it (`commit -a`).
    pub author: Option<String>,
    /// The entry changed only the config and has no layer.
    pub empty_layer: bool,
}

/// What [`Builder::write`] stored.
#[derive(Debug, Clone)]
pub struct Written {
    /// The normalized reference it is stored under.
    pub reference: String,
    /// The image manifest (its digest is what a registry will serve once pushed).
    pub manifest: Descriptor,
    /// The config (its digest is the image ID).
    pub config: Descriptor,
    /// The layers appended (the base's are not repeated here).
    pub layers: Vec<Layer>,
}

impl Written {
    /// The image ID, as docker shows it: the config's digest.
    pub fn image_id(&self) -> &img_store::Digest {
        self.config.digest()
    }
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("base_layers", &self.base_layers.len())
            .field("pending", &self.pending.len())
            .field("compression", &self.compression)
            .field("epoch", &self.epoch)
            .finish()
    }
}

/// `SOURCE_DATE_EPOCH`, when set.
fn epoch_from_env() -> Result<Option<u64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| Error::SourceDateEpoch(v)),
        Err(_) => Ok(None),
    }
}

impl Builder {
    /// Start from a stored image: a reference (as typed or normalized: `busybox`,
    /// `127.0.0.1:5000/busybox:latest`) or an image ID (or a unique prefix of one). Its
    /// layers, config and history are kept. Reads `SOURCE_DATE_EPOCH`.
    pub fn from_image(store: &Store, reference_or_id: &str) -> Result<Builder> {
        let name = find(store, reference_or_id)?;
        let image = store.image(&name)?;
        let source = image
            .descriptor
            .annotations()
            .as_ref()
            .and_then(|a| a.get(SOURCE_ANNOTATION))
            .cloned();
        Ok(Builder {
            config: image.config.clone(),
            base_layers: image.manifest.layers().clone(),
            pending: Vec::new(),
            history: Vec::new(),
            compression: Compression::Gzip,
            epoch: epoch_from_env()?,
            source,
            cmd_changed: false,
        })
    }

    /// Start from nothing (`FROM scratch`) for `platform`. Reads `SOURCE_DATE_EPOCH`.
    pub fn scratch(platform: &Platform) -> Result<Builder> {
        let config = ImageConfigurationBuilder::default()
            .architecture(platform.architecture.as_str())
            .os(platform.os.as_str())
            .rootfs(RootFs::default())
            .config(Config::default())
            .build()
            .expect("a config with os, architecture and rootfs is complete");
        let mut config = config;
        config.set_variant(platform.variant.clone());
        Ok(Builder {
            config,
            base_layers: Vec::new(),
            pending: Vec::new(),
            history: Vec::new(),
            compression: Compression::Gzip,
            epoch: epoch_from_env()?,
            source: None,
            cmd_changed: false,
        })
    }

    /// How new layers are compressed: gzip (the default), zstd, or not at all.
    pub fn compression(&mut self, compression: Compression) -> &mut Self {
        self.compression = compression;
        self
    }

    /// Clamp mtimes to this time (seconds since 1970) and use it as the `created` time;
    /// `None` keeps mtimes and uses the current time. Defaults to `SOURCE_DATE_EPOCH`.
    pub fn source_date_epoch(&mut self, epoch: Option<u64>) -> &mut Self {
        self.epoch = epoch;
        self
    }

    /// Append a layer holding the directory's contents (not the directory itself) at the
    /// image's root. The directory is read when [`Builder::write`] runs.
    pub fn append_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.pending.push(Pending::Dir(dir.into()));
        self
    }

    /// Append a layer from an uncompressed tar, taken byte for byte (so its diff_id is the
    /// tar's sha256). A stored layer can be read as one with [`img_unpack::open_layer`].
    pub fn append_tar(&mut self, reader: impl Read + Send + 'static) -> &mut Self {
        self.pending
            .push(Pending::Tar(Box::new(reader), "a tar stream".into()));
        self
    }

    /// Append a layer made from an overlayfs upper directory (a container's writable
    /// layer), as docker's overlay2 makes one: a whiteout (a 0:0 character device) becomes a
    /// `.wh.NAME` entry, an opaque directory (`trusted.overlay.opaque=y`) gets a
    /// `.wh..wh..opq` entry, and overlay's own xattrs are left out. An upper directory made
    /// with `metacopy` or `redirect_dir` (which a layer cannot express) is refused.
    pub fn append_overlay_upper(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.pending.push(Pending::Upper(dir.into(), Vec::new()));
        self
    }

    /// [`Builder::append_overlay_upper`], leaving out the mount points a runtime made in the
    /// upper directory (`/etc/hosts`, a volume's directory: paths in the image, absolute or
    /// not) when they are an empty file or an empty directory there, as docker keeps them
    /// in a layer of their own that a commit leaves out.
    pub fn append_overlay_upper_except(
        &mut self,
        dir: impl Into<PathBuf>,
        mount_points: impl IntoIterator<Item = PathBuf>,
    ) -> &mut Self {
        self.pending.push(Pending::Upper(
            dir.into(),
            mount_points.into_iter().collect(),
        ));
        self
    }

    fn edit(&mut self, f: impl FnOnce(&mut Config)) -> &mut Self {
        let mut config = self.config.config().clone().unwrap_or_default();
        f(&mut config);
        self.config.set_config(Some(config));
        self
    }

    /// Set the entrypoint (exec form).
    pub fn entrypoint<S: Into<String>>(&mut self, args: impl IntoIterator<Item = S>) -> &mut Self {
        let args: Vec<String> = args.into_iter().map(Into::into).collect();
        self.edit(|c| {
            c.set_entrypoint(Some(args));
        })
    }

    /// Set the default command (exec form).
    pub fn cmd<S: Into<String>>(&mut self, args: impl IntoIterator<Item = S>) -> &mut Self {
        let args: Vec<String> = args.into_iter().map(Into::into).collect();
        self.edit(|c| {
            c.set_cmd(Some(args));
        })
    }

    /// Remove the default command.
    pub fn clear_cmd(&mut self) -> &mut Self {
        self.edit(|c| {
            c.set_cmd(None);
        })
    }

    /// Set an environment variable (replacing an earlier value of it).
    pub fn env(&mut self, key: &str, value: &str) -> &mut Self {
        let entry = format!("{key}={value}");
        self.edit(|c| {
            let mut env = c.env().clone().unwrap_or_default();
            match env
                .iter_mut()
                .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
            {
                Some(e) => *e = entry,
                None => env.push(entry),
            }
            c.set_env(Some(env));
        })
    }

    /// Set the working directory.
    pub fn workdir(&mut self, dir: &str) -> &mut Self {
        let dir = dir.to_string();
        self.edit(|c| {
            c.set_working_dir(Some(dir));
        })
    }

    fn current_workdir(&self) -> Option<String> {
        self.config
            .config()
            .as_ref()
            .and_then(|c| c.working_dir().clone())
            .filter(|d| !d.is_empty())
    }

    /// Set the user (`NAME`, `UID`, `UID:GID`, …).
    pub fn user(&mut self, user: &str) -> &mut Self {
        let user = user.to_string();
        self.edit(|c| {
            c.set_user(Some(user));
        })
    }

    /// Set a label.
    pub fn label(&mut self, key: &str, value: &str) -> &mut Self {
        let (key, value) = (key.to_string(), value.to_string());
        self.edit(|c| {
            let mut labels = c.labels().clone().unwrap_or_default();
            labels.insert(key, value);
            c.set_labels(Some(labels));
        })
    }

    /// Declare an exposed port, `PORT/PROTO` (`80/tcp`).
    pub fn expose(&mut self, port: &str) -> &mut Self {
        let port = port.to_string();
        self.edit(|c| {
            let mut ports = c.exposed_ports().clone().unwrap_or_default();
            if !ports.contains(&port) {
                ports.push(port);
                ports.sort();
            }
            c.set_exposed_ports(Some(ports));
        })
    }

    /// Declare a volume.
    pub fn volume(&mut self, path: &str) -> &mut Self {
        let path = path.to_string();
        self.edit(|c| {
            let mut volumes = c.volumes().clone().unwrap_or_default();
            if !volumes.contains(&path) {
                volumes.push(path);
                volumes.sort();
            }
            c.set_volumes(Some(volumes));
        })
    }

    /// Set the signal that stops the container (`SIGTERM`, `9`).
    pub fn stop_signal(&mut self, signal: &str) -> &mut Self {
        let signal = signal.to_string();
        self.edit(|c| {
            c.set_stop_signal(Some(signal));
        })
    }

    /// Set the image's author (the config's `author`).
    pub fn author(&mut self, author: &str) -> &mut Self {
        self.config.set_author(Some(author.to_string()));
        self
    }

    /// Apply a change in docker's `commit -c` spelling: `CMD`, `ENTRYPOINT` (JSON exec form
    /// or shell form), `ENV`, `LABEL` (`K=V …` or `K V`), `EXPOSE`, `USER`, `WORKDIR`,
    /// `VOLUME`, `STOPSIGNAL`. As in a Dockerfile, `ENTRYPOINT` drops the inherited `CMD`
    /// unless a `CMD` change came before it. Any other instruction is an error naming it.
    ///
    /// ```
    /// let mut b = img_build::Builder::scratch(&img_registry::Platform::host())?;
    /// b.apply_change(r#"CMD ["redis-server", "--port", "7000"]"#)?;
    /// b.apply_change("EXPOSE 7000")?;
    /// assert!(b.apply_change("RUN make").unwrap_err().to_string().contains("RUN cannot be applied"));
    /// # Ok::<(), img_build::Error>(())
    /// ```
    pub fn apply_change(&mut self, change: &str) -> Result<&mut Self> {
        change::apply(self, change)?;
        Ok(self)
    }

    /// Add a history entry. Entries that are not `empty_layer` describe the appended layers
    /// in order; a layer left without one gets `created_by: "img build"`.
    pub fn history(&mut self, entry: HistoryEntry) -> &mut Self {
        self.history.push(entry);
        self
    }

    /// The config as it stands (without the layers still to be written).
    pub fn config(&self) -> &ImageConfiguration {
        &self.config
    }

    /// Write the new layers, the config and the manifest into the store and name the image
    /// `reference` (normalized as docker does: `busybox:new` is
    /// `docker.io/library/busybox:new`). The store's gc lock is held shared throughout, so a
    /// concurrent `gc` does not sweep blobs not yet named.
    pub fn write(self, store: &Store, reference: &str) -> Result<Written> {
        let name = Reference::parse(reference)
            .map_err(|source| Error::Reference {
                reference: reference.to_string(),
                source: Box::new(source),
            })?
            .to_string();
        let _guard = store.pull_guard()?;
        let mut config = self.config;
        let mut layers = Vec::new();
        for pending in self.pending {
            let layer = match pending {
                Pending::Dir(dir) => layer::from_dir(
                    store,
                    &dir,
                    &layer::Tree::Plain,
                    self.compression,
                    self.epoch,
                )?,
                Pending::Upper(dir, mount_points) => layer::from_dir(
                    store,
                    &dir,
                    &layer::Tree::OverlayUpper(
                        mount_points
                            .iter()
                            .map(|p| p.strip_prefix("/").unwrap_or(p).to_path_buf())
                            .collect(),
                    ),
                    self.compression,
                    self.epoch,
                )?,
                Pending::Tar(mut reader, what) => {
                    layer::from_tar(store, &mut reader, self.compression, &what)?
                }
            };
            layers.push(layer);
        }
        let created = match self.epoch {
            Some(e) => jiff::Timestamp::from_second(i64::try_from(e).unwrap_or(i64::MAX))
                .unwrap_or(jiff::Timestamp::MAX),
            None => jiff::Timestamp::now(),
        }
        .to_string();

        let mut entries = self.history;
        let described = entries.iter().filter(|h| !h.empty_layer).count();
        for _ in described..layers.len() {
            entries.push(HistoryEntry {
                created_by: Some("img build".into()),
                ..HistoryEntry::default()
            });
        }
        let mut history = config.history().clone().unwrap_or_default();
        for entry in entries {
            let mut h = History::default();
            h.set_created(Some(created.clone()));
            h.set_created_by(entry.created_by);
            h.set_comment(entry.comment);
            h.set_author(entry.author);
            h.set_empty_layer(entry.empty_layer.then_some(true));
            history.push(h);
        }
        config.set_history(Some(history));
        config.set_created(Some(created));
        config
            .rootfs_mut()
            .diff_ids_mut()
            .extend(layers.iter().map(|l| l.diff_id.to_string()));

        let config_descriptor = put_json(store, &config, "config", MediaType::ImageConfig)?;
        let mut all_layers = self.base_layers;
        all_layers.extend(layers.iter().map(|l| l.descriptor.clone()));
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config_descriptor.clone())
            .layers(all_layers)
            .build()
            .expect("a manifest with a config and layers is complete");
        let manifest_descriptor = put_json(store, &manifest, "manifest", MediaType::ImageManifest)?;
        let mut entry = manifest_descriptor.clone();
        if let Some(source) = self.source {
            entry.set_annotations(Some(HashMap::from([(
                SOURCE_ANNOTATION.to_string(),
                source,
            )])));
        }
        store.set_ref(&name, entry)?;
        Ok(Written {
            reference: name,
            manifest: manifest_descriptor,
            config: config_descriptor,
            layers,
        })
    }
}

/// Store a JSON document (keys sorted, so the same content gives the same digest).
fn put_json(
    store: &Store,
    value: &impl serde::Serialize,
    what: &'static str,
    media_type: MediaType,
) -> Result<Descriptor> {
    let json = |source| Error::Json { what, source };
    let value = serde_json::to_value(value).map_err(json)?;
    let bytes = serde_json::to_vec(&value).map_err(json)?;
    let mut ingest = store.ingest_new(DigestAlgorithm::Sha256)?;
    ingest.append(&bytes)?;
    let digest = ingest.commit()?;
    Ok(Descriptor::new(media_type, bytes.len() as u64, digest))
}

/// The stored name `input` means: a stored reference as typed or normalized, else an image
/// ID or a unique prefix of one.
fn find(store: &Store, input: &str) -> Result<String> {
    let normalized = Reference::parse(input).ok().map(|r| r.to_string());
    for name in normalized.as_deref().into_iter().chain([input]) {
        if store.find_ref(name)?.is_some() {
            return Ok(name.to_string());
        }
    }
    match store.find_image_id(input)? {
        IdMatch::One { names, .. } if !names.is_empty() => Ok(names[0].clone()),
        IdMatch::Ambiguous(_) => Err(Error::Ambiguous(input.to_string())),
        _ => Err(Error::NoImage(input.to_string())),
    }
}
