//! Ingest: how a blob enters the store. Bytes go to a temp file inside the root, are hashed as
//! they are written, and are renamed under `blobs/` only once digest and size match.

use std::fs::{self, File};
use std::io::{self, BufWriter, Seek, Write};
use std::path::PathBuf;

use oci_spec::image::{Digest, DigestAlgorithm};

use crate::digest::Hasher;
use crate::error::IoContext;
use crate::{Error, Result, Store};

/// A blob being written. Dropping it without [`Ingest::commit`] removes the temp file, so a
/// failed or cancelled download leaves nothing behind.
///
/// An ingest either expects a digest (a blob named by a descriptor: the bytes must hash to it)
/// or learns it at commit ([`Store::ingest_new`]: content made here, a layer being compressed).
/// It is an [`io::Write`], so a tar builder or an encoder can write straight into the store:
///
/// ```
/// use std::io::Write;
/// # let dir = std::env::temp_dir().join(format!("img-doc-ingest-{}", std::process::id()));
/// let store = img_store::Store::open(&dir)?;
/// let mut ingest = store.ingest_new(img_store::DigestAlgorithm::Sha256)?;
/// writeln!(ingest, "hello")?;
/// let digest = ingest.commit()?;
/// assert_eq!(store.read_blob(&digest)?, b"hello\n");
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Ingest {
    file: BufWriter<File>,
    temp: PathBuf,
    blobs: PathBuf,
    expected: Option<Digest>,
    algorithm: DigestAlgorithm,
    expected_size: Option<u64>,
    hasher: Hasher,
    written: u64,
    /// Bytes already handed to the kernel's writeback (see [`WRITE_BEHIND`]).
    flushed: u64,
    done: bool,
}

/// Every this many bytes, start writing the blob back to disk, so the final fsync finds little
/// left to do and disk writes overlap the download.
pub const WRITE_BEHIND: u64 = 8 * 1024 * 1024;

impl Ingest {
    pub(crate) fn begin(
        store: &Store,
        expected: Option<&Digest>,
        algorithm: DigestAlgorithm,
        size: Option<u64>,
    ) -> Result<Ingest> {
        let hasher = match expected {
            Some(d) => Hasher::for_digest(d)?,
            None => Hasher::new(&algorithm).ok_or_else(|| Error::InvalidDigest {
                input: algorithm.to_string(),
                reason: "unsupported algorithm (sha256 and sha512 are supported)".into(),
            })?,
        };
        let dir = store.ingest_dir();
        let temp = dir.join(format!(
            "{}-{}-{}",
            expected.map_or("new", |d| d.digest()),
            std::process::id(),
            unique()
        ));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&temp)
            .at(&temp)?;
        Ok(Ingest {
            file: BufWriter::with_capacity(128 * 1024, file),
            temp,
            blobs: store.root().join("blobs"),
            expected: expected.cloned(),
            algorithm,
            expected_size: size,
            hasher,
            written: 0,
            flushed: 0,
            done: false,
        })
    }

    /// The digest this blob must hash to; `None` for one that learns it at commit.
    pub fn digest(&self) -> Option<&Digest> {
        self.expected.as_ref()
    }

    /// Bytes accepted so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Append bytes. Fails as soon as more bytes arrive than the descriptor's size allows, so a
    /// lying server cannot fill the disk.
    pub fn append(&mut self, bytes: &[u8]) -> Result<()> {
        let total = self.written + bytes.len() as u64;
        if let Some(size) = self.expected_size
            && total > size
        {
            return Err(Error::SizeMismatch {
                digest: self.named(),
                expected: size,
                actual: total,
            });
        }
        self.hasher.update(bytes);
        self.file.write_all(bytes).at(&self.temp)?;
        self.written = total;
        if self.written - self.flushed >= WRITE_BEHIND {
            self.file.flush().at(&self.temp)?;
            start_writeback(
                self.file.get_ref(),
                self.flushed,
                self.written - self.flushed,
            );
            self.flushed = self.written;
        }
        Ok(())
    }

    /// Drop everything written so far and start again from byte 0 (a server that ignored a
    /// range request sends the whole blob again).
    pub fn restart(&mut self) -> Result<()> {
        self.file.flush().at(&self.temp)?;
        let f = self.file.get_mut();
        f.set_len(0).at(&self.temp)?;
        f.rewind().at(&self.temp)?;
        self.hasher = self.fresh_hasher();
        self.written = 0;
        self.flushed = 0;
        Ok(())
    }

    /// Verify size and digest, make the bytes durable, and rename the blob into `blobs/`;
    /// returns its digest. On a mismatch the temp file is removed and nothing enters the
    /// store. The rename itself is made durable by the next [`Store::set_ref`] or
    /// [`Store::sync`], which fsync `blobs/` once for all the blobs committed before them.
    pub fn commit(mut self) -> Result<Digest> {
        if let Some(size) = self.expected_size
            && self.written != size
        {
            return Err(Error::SizeMismatch {
                digest: self.named(),
                expected: size,
                actual: self.written,
            });
        }
        let fresh = self.fresh_hasher();
        let hasher = std::mem::replace(&mut self.hasher, fresh);
        let actual = hasher.finish();
        if let Some(expected) = &self.expected
            && &actual != expected
        {
            return Err(Error::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        self.file.flush().at(&self.temp)?;
        self.file.get_ref().sync_all().at(&self.temp)?;
        let dir = self.blobs.join(actual.algorithm().as_ref());
        if self.expected.is_none() {
            // Made here: its algorithm's directory may not exist yet.
            fs::create_dir_all(&dir).at(&dir)?;
        }
        let target = dir.join(actual.digest());
        fs::rename(&self.temp, &target).at(&target)?;
        self.done = true;
        Ok(actual)
    }

    fn fresh_hasher(&self) -> Hasher {
        Hasher::new(&self.algorithm).expect("the algorithm was checked when the ingest began")
    }

    /// The digest for an error: the expected one, or what the bytes so far hash to.
    fn named(&self) -> Digest {
        self.expected
            .clone()
            .unwrap_or_else(|| self.hasher.clone().finish())
    }
}

impl Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.append(buf).map_err(io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("digest", &self.expected.as_ref().map(ToString::to_string))
            .field("written", &self.written)
            .field("temp", &self.temp)
            .finish()
    }
}

/// Ask the kernel to start writing a range of `file` to disk, without waiting (a hint: failure
/// only loses it). For files a later fsync or syncfs must find written: calling this every few
/// MiB overlaps the disk writes with the work that follows instead of leaving them all for the
/// sync.
pub fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: a plain syscall on a file descriptor we own; failure only loses the hint.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Make a directory entry (a rename or a new file in it) durable.
pub(crate) fn sync_dir(dir: &std::path::Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// A value unique within this process, for temp file names.
pub(crate) fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (u64::from(nanos) << 20) ^ NEXT.fetch_add(1, Ordering::Relaxed)
}
