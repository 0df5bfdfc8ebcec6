//! Layers made here: a directory, an overlayfs upper directory or a tar, written as a tar
//! stream through a compressor into the store in one pass, hashing the uncompressed bytes
//! (the diff_id) on the way.
//!
//! Reproducible: entries in byte order of their names (a directory before its contents),
//! owners and modes as on disk, no user or group names, mtimes clamped to the epoch when one
//! is given, gzip without a timestamp, zstd single-threaded.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use img_store::digest::Hasher;
use img_store::{Descriptor, Digest, DigestAlgorithm, Ingest, Store};

use crate::{Compression, Error, Result};

/// A layer in the store: its blob's descriptor and the digest of its uncompressed tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The compressed blob (media type, size, digest).
    pub descriptor: Descriptor,
    /// sha256 of the uncompressed tar, as the config's `rootfs.diff_ids` lists it.
    pub diff_id: Digest,
}

/// How a directory's files become tar entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tree {
    /// Every file as it is.
    Plain,
    /// An overlayfs upper directory: whiteouts (0:0 character devices) become `.wh.NAME`,
    /// opaque directories get a `.wh..wh..opq` entry, overlay's own xattrs are dropped;
    /// these paths (relative) are left out when they are an empty file or directory: the
    /// mount points a runtime made.
    OverlayUpper(HashSet<PathBuf>),
}

/// The media type of a layer with this compression.
pub(crate) fn media_type(compression: Compression) -> &'static str {
    match compression {
        Compression::None => "application/vnd.oci.image.layer.v1.tar",
        Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
    }
}

/// Write the tree under `dir` as a layer.
pub(crate) fn from_dir(
    store: &Store,
    dir: &Path,
    tree: &Tree,
    compression: Compression,
    epoch: Option<u64>,
) -> Result<Layer> {
    let meta = fs::metadata(dir).map_err(|source| Error::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(Error::Read {
            path: dir.to_path_buf(),
            source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        });
    }
    let what = dir.display().to_string();
    let mut sink = Sink::new(store, compression, &what)?;
    {
        let mut tar = tar::Builder::new(&mut sink);
        let mut walker = Walker {
            root: dir,
            tree,
            epoch,
            links: HashMap::new(),
            tar: &mut tar,
        };
        walker.dir(Path::new(""))?;
        tar.finish().map_err(|source| Error::Write {
            what: what.clone(),
            source,
        })?;
    }
    sink.commit(compression, &what)
}

/// Write the uncompressed tar read from `reader` as a layer, byte for byte.
pub(crate) fn from_tar(
    store: &Store,
    reader: &mut dyn Read,
    compression: Compression,
    what: &str,
) -> Result<Layer> {
    let mut sink = Sink::new(store, compression, what)?;
    io::copy(reader, &mut sink).map_err(|source| Error::Write {
        what: what.to_string(),
        source,
    })?;
    sink.commit(compression, what)
}

/// The compressor in front of the store, and the diff_id hasher in front of it.
struct Sink {
    encoder: Encoder,
    hasher: Hasher,
}

enum Encoder {
    None(Ingest),
    Gzip(flate2::write::GzEncoder<Ingest>),
    Zstd(zstd::stream::write::Encoder<'static, Ingest>),
}

impl Sink {
    fn new(store: &Store, compression: Compression, what: &str) -> Result<Sink> {
        let ingest = store.ingest_new(DigestAlgorithm::Sha256)?;
        let encoder = match compression {
            Compression::None => Encoder::None(ingest),
            // No file name and mtime 0 in the gzip header: the same tar gives the same blob.
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                ingest,
                flate2::Compression::default(),
            )),
            Compression::Zstd => Encoder::Zstd(
                zstd::stream::write::Encoder::new(ingest, 3).map_err(|source| Error::Write {
                    what: what.to_string(),
                    source,
                })?,
            ),
        };
        Ok(Sink {
            encoder,
            hasher: Hasher::new(&DigestAlgorithm::Sha256).expect("sha256 is supported"),
        })
    }

    fn commit(self, compression: Compression, what: &str) -> Result<Layer> {
        let write_err = |source| Error::Write {
            what: what.to_string(),
            source,
        };
        let mut ingest = match self.encoder {
            Encoder::None(i) => i,
            Encoder::Gzip(e) => e.finish().map_err(write_err)?,
            Encoder::Zstd(e) => e.finish().map_err(write_err)?,
        };
        ingest.flush().map_err(write_err)?;
        let size = ingest.written();
        let digest = ingest.commit()?;
        Ok(Layer {
            descriptor: Descriptor::new(media_type(compression).into(), size, digest),
            diff_id: self.hasher.finish(),
        })
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match &mut self.encoder {
            Encoder::None(w) => w.write(buf)?,
            Encoder::Gzip(w) => w.write(buf)?,
            Encoder::Zstd(w) => w.write(buf)?,
        };
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.encoder {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(w) => w.flush(),
            Encoder::Zstd(w) => w.flush(),
        }
    }
}

/// Walks a directory in name order, writing each file as a tar entry.
struct Walker<'a, W: Write> {
    root: &'a Path,
    tree: &'a Tree,
    epoch: Option<u64>,
    /// (device, inode) of files with several links → the first entry's name.
    links: HashMap<(u64, u64), PathBuf>,
    tar: &'a mut tar::Builder<W>,
}

const OPAQUE: &str = "trusted.overlay.opaque";

impl<W: Write> Walker<'_, W> {
    fn read_err(&self, rel: &Path) -> impl FnOnce(io::Error) -> Error {
        let path = self.root.join(rel);
        move |source| Error::Read { path, source }
    }

    fn write_err(&self, rel: &Path) -> impl FnOnce(io::Error) -> Error {
        let what = self.root.join(rel).display().to_string();
        move |source| Error::Write { what, source }
    }

    /// The entries of the directory `rel` (relative to the root; "" is the root), recursively.
    fn dir(&mut self, rel: &Path) -> Result<()> {
        let full = self.root.join(rel);
        let mut names: Vec<_> = fs::read_dir(&full)
            .map_err(self.read_err(rel))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .map_err(self.read_err(rel))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            self.entry(&rel.join(name))?;
        }
        Ok(())
    }

    fn entry(&mut self, rel: &Path) -> Result<()> {
        let full = self.root.join(rel);
        let meta = fs::symlink_metadata(&full).map_err(self.read_err(rel))?;
        let kind = meta.file_type();
        if kind.is_socket() {
            // A tar cannot hold a socket (docker skips them too).
            return Ok(());
        }
        if let Tree::OverlayUpper(skip) = self.tree
            && skip.contains(rel)
            && is_empty(&full, &meta)
        {
            return Ok(());
        }
        let xattrs = self.xattrs(rel)?;
        let upper = matches!(self.tree, Tree::OverlayUpper(_));
        if upper && kind.is_char_device() && meta.rdev() == 0 {
            // overlayfs' whiteout → `.wh.NAME`, a regular file as docker's overlay2 writes it.
            let name = rel.file_name().unwrap_or_default();
            let mut wh = std::ffi::OsString::from(".wh.");
            wh.push(name);
            let mut header = self.header(&meta, tar::EntryType::Regular);
            header.set_mode(0o600);
            header.set_size(0);
            return self
                .tar
                .append_data(&mut header, rel.with_file_name(wh), io::empty())
                .map_err(self.write_err(rel));
        }
        let opaque = upper
            && kind.is_dir()
            && xattrs
                .iter()
                .any(|(k, v)| k == OPAQUE && v.as_slice() == b"y");
        let kept: Vec<(String, Vec<u8>)> = xattrs
            .into_iter()
            .filter(|(k, _)| !k.starts_with("trusted.overlay."))
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v))
            .collect();
        if !kept.is_empty() {
            self.tar
                .append_pax_extensions(kept.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(self.write_err(rel))?;
        }
        if kind.is_dir() {
            let mut header = self.header(&meta, tar::EntryType::Directory);
            header.set_size(0);
            self.tar
                .append_data(&mut header, rel, io::empty())
                .map_err(self.write_err(rel))?;
            if opaque {
                let mut header = self.header(&meta, tar::EntryType::Regular);
                header.set_mode(meta.mode() & 0o777);
                header.set_size(0);
                self.tar
                    .append_data(&mut header, rel.join(".wh..wh..opq"), io::empty())
                    .map_err(self.write_err(rel))?;
            }
            return self.dir(rel);
        }
        if kind.is_symlink() {
            let target = fs::read_link(&full).map_err(self.read_err(rel))?;
            let mut header = self.header(&meta, tar::EntryType::Symlink);
            header.set_size(0);
            return self
                .tar
                .append_link(&mut header, rel, target)
                .map_err(self.write_err(rel));
        }
        if kind.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = self.links.get(&key) {
                    let first = first.clone();
                    let mut header = self.header(&meta, tar::EntryType::Link);
                    header.set_size(0);
                    return self
                        .tar
                        .append_link(&mut header, rel, first)
                        .map_err(self.write_err(rel));
                }
                self.links.insert(key, rel.to_path_buf());
            }
            let file = File::open(&full).map_err(self.read_err(rel))?;
            let mut header = self.header(&meta, tar::EntryType::Regular);
            header.set_size(meta.len());
            let exact = Exact {
                inner: file,
                left: meta.len(),
            };
            return self
                .tar
                .append_data(&mut header, rel, exact)
                .map_err(self.write_err(rel));
        }
        let entry_type = if kind.is_char_device() {
            tar::EntryType::Char
        } else if kind.is_block_device() {
            tar::EntryType::Block
        } else {
            tar::EntryType::Fifo
        };
        let mut header = self.header(&meta, entry_type);
        header.set_size(0);
        if !kind.is_fifo() {
            let rdev = meta.rdev();
            header
                .set_device_major(rustix::fs::major(rdev))
                .map_err(self.write_err(rel))?;
            header
                .set_device_minor(rustix::fs::minor(rdev))
                .map_err(self.write_err(rel))?;
        }
        self.tar
            .append_data(&mut header, rel, io::empty())
            .map_err(self.write_err(rel))
    }

    /// A header with the file's owner, mode and (clamped) mtime.
    fn header(&self, meta: &fs::Metadata, entry_type: tar::EntryType) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(entry_type);
        header.set_uid(u64::from(meta.uid()));
        header.set_gid(u64::from(meta.gid()));
        header.set_mode(meta.mode() & 0o7777);
        let mtime = u64::try_from(meta.mtime()).unwrap_or(0);
        header.set_mtime(self.epoch.map_or(mtime, |e| mtime.min(e)));
        header
    }

    /// The file's extended attributes, by name; an overlay feature a layer cannot carry is
    /// an error.
    fn xattrs(&self, rel: &Path) -> Result<Vec<(String, Vec<u8>)>> {
        let full = self.root.join(rel);
        let mut list = vec![0u8; 4096];
        let len = loop {
            match rustix::fs::llistxattr(&full, &mut list[..]) {
                Ok(n) => break n,
                Err(rustix::io::Errno::RANGE) => {
                    let need = rustix::fs::llistxattr_query(&full)
                        .map_err(|e| (self.read_err(rel))(e.into()))?;
                    list.resize(need.max(list.len() * 2), 0);
                }
                Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
                Err(e) => return Err((self.read_err(rel))(e.into())),
            }
        };
        let mut out = Vec::new();
        for name in list[..len].split(|b| *b == 0).filter(|n| !n.is_empty()) {
            let name = String::from_utf8_lossy(name).into_owned();
            if matches!(self.tree, Tree::OverlayUpper(_))
                && (name == "trusted.overlay.metacopy" || name == "trusted.overlay.redirect")
            {
                return Err(Error::Unsupported {
                    path: full,
                    reason: format!(
                        "overlayfs {} (mounted with metacopy or redirect_dir): a layer cannot express it",
                        name.trim_start_matches("trusted.overlay.")
                    ),
                });
            }
            let mut value = vec![0u8; 256];
            let n = loop {
                match rustix::fs::lgetxattr(&full, name.as_str(), &mut value[..]) {
                    Ok(n) => break n,
                    Err(rustix::io::Errno::RANGE) => {
                        let need = rustix::fs::lgetxattr_query(&full, name.as_str())
                            .map_err(|e| (self.read_err(rel))(e.into()))?;
                        value.resize(need.max(value.len() * 2), 0);
                    }
                    // Gone between listing and reading.
                    Err(rustix::io::Errno::NODATA) => break usize::MAX,
                    Err(e) => return Err((self.read_err(rel))(e.into())),
                }
            };
            if n != usize::MAX {
                value.truncate(n);
                out.push((name, value));
            }
        }
        out.sort();
        Ok(out)
    }
}

/// An empty regular file or an empty directory.
fn is_empty(path: &Path, meta: &fs::Metadata) -> bool {
    (meta.is_file() && meta.len() == 0)
        || (meta.is_dir() && fs::read_dir(path).is_ok_and(|mut d| d.next().is_none()))
}

/// A file's content, exactly `left` bytes: a file that shrinks while it is read is an error
/// (its tar entry would otherwise be cut short), one that grows is read to its old size.
struct Exact {
    inner: File,
    left: u64,
}

impl Read for Exact {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was read",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}
