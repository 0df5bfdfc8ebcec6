//! A layer blob as a stream of uncompressed tar bytes: compression is recognised by its magic
//! bytes (gzip, zstd, or none), decompression and the diff_id hash run in a thread of their
//! own, so that applying one layer overlaps decompressing it.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use img_store::Digest;
use img_store::digest::Hasher;

use crate::{Error, Result};

const CHUNK: usize = 256 * 1024;
/// Chunks buffered between the decompressing thread and the applier.
const DEPTH: usize = 8;

/// The compression of a layer blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (one or more members).
    Gzip,
    /// zstd (one or more frames).
    Zstd,
}

impl Compression {
    /// Recognise the compression from the first bytes of a blob.
    pub fn sniff(head: &[u8]) -> Compression {
        match head {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            _ => Compression::None,
        }
    }
}

/// The uncompressed bytes of one layer, produced by a background thread.
pub struct LayerStream {
    rx: Receiver<io::Result<Vec<u8>>>,
    /// Chunks read, back to the producer to fill again (no allocation, zeroing or page
    /// faults per chunk).
    spare: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    worker: Option<JoinHandle<io::Result<(Digest, u64)>>>,
}

impl LayerStream {
    /// Start decompressing `file`; the diff_id is computed with the algorithm of `diff_id`.
    pub fn spawn(file: File, diff_id: &Digest) -> Result<LayerStream> {
        LayerStream::with_hasher(file, Hasher::for_digest(diff_id)?)
    }

    /// Start decompressing `file`, hashing the uncompressed bytes with `hasher`.
    pub fn with_hasher(file: File, hasher: Hasher) -> Result<LayerStream> {
        LayerStream::from_reader(BufReader::with_capacity(CHUNK, file), hasher)
    }

    /// Start decompressing the blob bytes `input` gives (a buffered file, or bytes as they
    /// arrive), hashing the uncompressed bytes with `hasher`.
    pub fn from_reader(
        input: impl BufRead + Send + 'static,
        hasher: Hasher,
    ) -> Result<LayerStream> {
        let (tx, rx) = sync_channel(DEPTH);
        let (spare, spares) = sync_channel(DEPTH + 2);
        let worker = std::thread::Builder::new()
            .name("img-decompress".into())
            .spawn(move || produce(input, hasher, tx, spares))
            .map_err(|e| Error::Read(format!("cannot start a thread: {e}")))?;
        Ok(LayerStream {
            rx,
            spare,
            current: Vec::new(),
            pos: 0,
            worker: Some(worker),
        })
    }

    /// Read the stream to its end (trailing tar padding counts in the diff_id) and return
    /// the digest and length of the uncompressed bytes.
    pub fn finish(mut self) -> Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink()).map_err(|e| Error::Read(e.to_string()))?;
        let worker = self.worker.take().expect("finish is called once");
        match worker.join() {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Error::Read(e.to_string())),
            Err(_) => Err(Error::Read("the decompressing thread panicked".into())),
        }
    }
}

impl Read for LayerStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    let used = std::mem::replace(&mut self.current, chunk);
                    let _ = self.spare.try_send(used);
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for LayerStream {
    fn drop(&mut self) {
        // Unblock the worker (its sends fail once the receiver is gone), then reap it.
        let (_, dead) = sync_channel(0);
        drop(std::mem::replace(&mut self.rx, dead));
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

fn produce(
    mut input: impl BufRead + 'static,
    mut hasher: Hasher,
    tx: SyncSender<io::Result<Vec<u8>>>,
    spares: Receiver<Vec<u8>>,
) -> io::Result<(Digest, u64)> {
    let compression = Compression::sniff(input.fill_buf()?);
    let mut reader: Box<dyn Read> = match compression {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
    };
    let mut total = 0u64;
    loop {
        let mut chunk = spares.try_recv().unwrap_or_default();
        chunk.resize(CHUNK, 0);
        let mut filled = 0;
        while filled < CHUNK {
            match reader.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let msg = format!("{compression:?} stream: {e}").to_lowercase();
                    let _ = tx.send(Err(io::Error::new(e.kind(), msg.clone())));
                    return Err(io::Error::new(e.kind(), msg));
                }
            }
        }
        if filled == 0 {
            break;
        }
        chunk.truncate(filled);
        hasher.update(&chunk);
        total += filled as u64;
        if tx.send(Ok(chunk)).is_err() {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the reader went away",
            ));
        }
    }
    Ok((hasher.finish(), total))
}
