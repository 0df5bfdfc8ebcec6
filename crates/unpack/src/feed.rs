//! A layer's snapshot made from its blob's bytes as they arrive, in the same pass that writes
//! the blob to the store: a pull hands each received chunk to a [`SnapshotFeed`], which
//! decompresses, hashes and applies it in threads of its own. Nothing is trusted until the
//! end: the snapshot is kept only once the blob has passed its digest check (the caller
//! commits the fed snapshot after the store has the blob) and the uncompressed bytes hash to
//! the config's diff_id ([`FedSnapshot::commit`]). Anything unusual — a download that starts
//! over, bytes out of order, a layer the applier refuses, a diff_id that differs — abandons the
//! feed, and the layer is prepared from the stored blob the usual way, which reports any error.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use bytes::{Buf, Bytes};
use img_store::digest::Hasher;
use img_store::{Descriptor, Digest, DigestAlgorithm, SnapshotTemp, Store};

use crate::stream::LayerStream;
use crate::{Mode, Result, Stats, apply, ready_lowers, settle};

/// Received bytes held for the applier at most, per layer: beyond this the download of that
/// layer waits for the applier (memory stays flat whatever the layer's size).
const BUDGET: usize = 2 * 1024 * 1024;

/// A snapshot being made from a layer blob as it downloads. Hand it the blob's bytes in order
/// ([`SnapshotFeed::push`]), [`SnapshotFeed::close`] it when the last byte is in, then
/// [`SnapshotFeed::wait`] for the result and commit that once the blob is verified.
///
/// ```
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("img-doc-feed-{}", std::process::id()));
/// let store = img_store::Store::open(&dir)?;
/// // A one-file layer (an uncompressed tar is a valid layer too).
/// let mut tar = tar::Builder::new(Vec::new());
/// let mut header = tar::Header::new_gnu();
/// header.set_size(3);
/// header.set_mode(0o644);
/// header.set_uid(0);
/// header.set_gid(0);
/// header.set_mtime(0);
/// tar.append_data(&mut header, "hello", &b"hi\n"[..])?;
/// let blob = tar.into_inner()?;
/// let diff_id = img_store::digest::sha256(&blob);
/// let layer = img_store::Descriptor::new(
///     "application/vnd.oci.image.layer.v1.tar".into(), blob.len() as u64, diff_id.clone());
///
/// let mut feed = img_unpack::SnapshotFeed::start(&store, &layer);
/// // As a download would: the bytes in pieces, at their offsets.
/// let (head, tail) = blob.split_at(700);
/// assert!(feed.push(0, bytes::Bytes::copy_from_slice(head)));
/// assert!(feed.push(700, bytes::Bytes::copy_from_slice(tail)));
/// feed.close();
/// // The blob enters the store the usual way (a pull's ingest); then the snapshot is kept.
/// let mut ingest = store.ingest(layer.digest(), Some(layer.size()))?;
/// ingest.append(&blob)?;
/// ingest.commit()?;
/// let fed = feed.wait().expect("the layer applied");
/// let kept = fed.commit(&store, &diff_id, &diff_id, &[])?;
/// assert!(matches!(kept, img_unpack::Settled::Kept));
/// assert_eq!(std::fs::read(store.snapshot_path(&diff_id).join("fs/hello"))?, b"hi\n");
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// # demo().unwrap();
/// ```
pub struct SnapshotFeed {
    pipe: Arc<Pipe>,
    worker: Option<JoinHandle<Result<Applied>>>,
    layer: Descriptor,
    /// The offset the next bytes must start at.
    next: u64,
}

/// What the feed's thread made: the snapshot (not named yet), the sha256 of the uncompressed
/// bytes, and what the applier saw.
struct Applied {
    temp: SnapshotTemp,
    diff_id: Digest,
    stats: Stats,
}

impl SnapshotFeed {
    /// Start a snapshot of `layer` in `store`, fed by [`SnapshotFeed::push`]. The work runs in
    /// threads of its own; a failure to start them only shows as an abandoned feed.
    pub fn start(store: &Store, layer: &Descriptor) -> SnapshotFeed {
        let pipe = Arc::new(Pipe::default());
        let reader = PipeReader {
            pipe: pipe.clone(),
            current: Bytes::new(),
        };
        let (store, digest) = (store.clone(), layer.digest().clone());
        let worker = std::thread::Builder::new()
            .name("img-feed".into())
            .spawn(move || apply_fed(&store, &digest, reader))
            .ok();
        if worker.is_none() {
            pipe.end(false);
        }
        SnapshotFeed {
            pipe,
            worker,
            layer: layer.clone(),
            next: 0,
        }
    }

    /// Hand over the blob's bytes that start at `offset`. Waits while the applier is more than
    /// a couple of MiB behind. Returns `false` once the feed is abandoned: bytes that do not
    /// continue the stream (a download that started over) abandon it.
    pub fn push(&mut self, offset: u64, bytes: Bytes) -> bool {
        if offset != self.next {
            self.pipe.end(false);
            return false;
        }
        self.next += bytes.len() as u64;
        self.pipe.push(bytes)
    }

    /// The last byte has been pushed.
    pub fn close(&mut self) {
        self.pipe.end(self.next == self.layer.size());
    }

    /// Give up on this snapshot (its download failed or starts over); its threads end and
    /// remove what they made.
    pub fn abandon(&mut self) {
        self.pipe.end(false);
    }

    /// Wait for the applier; the snapshot made, or `None` when the feed was abandoned or the
    /// layer did not apply on its own (the stored blob then decides, the usual way).
    pub fn wait(mut self) -> Option<FedSnapshot> {
        let applied = self.worker.take()?.join().ok()?.ok()?;
        Some(FedSnapshot {
            applied,
            layer: self.layer.clone(),
        })
    }
}

impl Drop for SnapshotFeed {
    fn drop(&mut self) {
        self.pipe.end(false);
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl std::fmt::Debug for SnapshotFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotFeed")
            .field("layer", &self.layer.digest().to_string())
            .field("next", &self.next)
            .finish()
    }
}

/// A layer applied from its downloaded bytes, waiting to be checked and named.
pub struct FedSnapshot {
    applied: Applied,
    layer: Descriptor,
}

impl FedSnapshot {
    /// The sha256 of the layer's uncompressed bytes.
    pub fn diff_id(&self) -> &Digest {
        &self.applied.diff_id
    }

    /// Keep the snapshot as `chain_id` if its bytes hash to `diff_id` and, where the layer
    /// depends on the layers below (`lower_chain_ids`, base first), their snapshots agree — as
    /// [`crate::prepare_snapshot`] would. Call it only once the blob is in the store, verified.
    pub fn commit(
        self,
        store: &Store,
        diff_id: &Digest,
        chain_id: &Digest,
        lower_chain_ids: &[Digest],
    ) -> Result<Settled> {
        if &self.applied.diff_id != diff_id {
            return Ok(Settled::Refused);
        }
        if store.has_snapshot(chain_id) {
            return Ok(Settled::Kept);
        }
        let lowers = || ready_lowers(store, lower_chain_ids);
        if !self.applied.stats.implied.is_empty() && lowers().is_none() {
            return Ok(Settled::Waiting(Box::new(self)));
        }
        let Applied {
            mut temp, stats, ..
        } = self.applied;
        temp.name(store, chain_id)?;
        let kept = settle(
            store,
            &self.layer,
            diff_id,
            chain_id,
            temp,
            Ok(stats),
            &|| Ok(lowers()),
        )?;
        Ok(if kept {
            Settled::Kept
        } else {
            Settled::Refused
        })
    }
}

/// What became of a [`FedSnapshot`] offered for commit.
#[derive(Debug)]
pub enum Settled {
    /// The snapshot is in the store under its chain ID.
    Kept,
    /// The layer goes through directories it does not list (or links to files it does not
    /// hold): it is checked against the snapshots of the layers below, not all there yet.
    /// Offer it again once they are.
    Waiting(Box<FedSnapshot>),
    /// Not kept (its bytes do not hash to the diff_id, or the layers below went away):
    /// prepare the layer from its blob, which reports any mismatch.
    Refused,
}

impl std::fmt::Debug for FedSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FedSnapshot")
            .field("layer", &self.layer.digest().to_string())
            .field("diff_id", &self.applied.diff_id.to_string())
            .finish()
    }
}

/// The feed's thread: decompress and hash (in a thread of its own) while applying.
fn apply_fed(store: &Store, layer: &Digest, reader: PipeReader) -> Result<Applied> {
    let temp = store.begin_unnamed_snapshot(layer)?;
    let hasher = Hasher::new(&DigestAlgorithm::Sha256).expect("sha256 is supported");
    let mut stream = LayerStream::from_reader(reader, hasher)?;
    let stats = apply::Applier::new(&temp.fs(), Mode::Overlay)?
        .apply(&mut stream)
        .map_err(|e| e.in_layer(layer))?;
    let (diff_id, _) = stream.finish()?;
    Ok(Applied {
        temp,
        diff_id,
        stats,
    })
}

/// The bytes [`crate::Compression::sniff`] looks at (zstd's magic is the longest).
const SNIFF: usize = 4;

/// Chunks on their way from the download to the decompressor, at most [`BUDGET`] bytes.
#[derive(Default)]
struct Pipe {
    state: Mutex<PipeState>,
    changed: Condvar,
}

#[derive(Default)]
struct PipeState {
    chunks: VecDeque<Bytes>,
    queued: usize,
    /// `Some(true)`: every byte was pushed; `Some(false)`: abandoned (either side).
    end: Option<bool>,
}

impl Pipe {
    fn lock(&self) -> MutexGuard<'_, PipeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, bytes: Bytes) -> bool {
        let mut s = self.lock();
        while s.queued >= BUDGET && s.end.is_none() {
            s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        if s.end.is_some() {
            return false;
        }
        s.queued += bytes.len();
        s.chunks.push_back(bytes);
        self.changed.notify_all();
        true
    }

    /// End the stream: complete (the first end only), or abandoned, which overrides a
    /// complete end (a closed feed that nobody will commit stops applying); what is queued
    /// is then dropped.
    fn end(&self, complete: bool) {
        let mut s = self.lock();
        if s.end.is_none() || !complete {
            s.end = Some(complete);
        }
        if s.end == Some(false) {
            s.chunks.clear();
            s.queued = 0;
        }
        self.changed.notify_all();
    }
}

/// The decompressor's end of a [`Pipe`].
struct PipeReader {
    pipe: Arc<Pipe>,
    current: Bytes,
}

impl io::BufRead for PipeReader {
    /// At least [`SNIFF`] bytes unless the stream ends first: the decompressor tells the
    /// compression from the first bytes it sees, and a download may hand them over one by one.
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.current.len() < SNIFF {
            let mut s = self.pipe.lock();
            while self.current.len() < SNIFF {
                if let Some(chunk) = s.chunks.pop_front() {
                    s.queued -= chunk.len();
                    self.pipe.changed.notify_all();
                    self.current = if self.current.is_empty() {
                        chunk
                    } else {
                        let mut joined =
                            bytes::BytesMut::with_capacity(self.current.len() + chunk.len());
                        joined.extend_from_slice(&self.current);
                        joined.extend_from_slice(&chunk);
                        joined.freeze()
                    };
                    continue;
                }
                match s.end {
                    Some(true) => break,
                    Some(false) => {
                        return Err(io::Error::other("the download was abandoned"));
                    }
                    None => s = self.pipe.changed.wait(s).unwrap_or_else(|p| p.into_inner()),
                }
            }
        }
        Ok(&self.current)
    }

    fn consume(&mut self, n: usize) {
        self.current.advance(n.min(self.current.len()));
    }
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = io::BufRead::fill_buf(self)?;
        let n = buf.len().min(available.len());
        buf[..n].copy_from_slice(&available[..n]);
        io::BufRead::consume(self, n);
        Ok(n)
    }
}

impl Drop for PipeReader {
    fn drop(&mut self) {
        // The decompressor stopped (the end, or an error): a download waiting to push more
        // must not wait for it.
        self.pipe.end(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer_of(blob: &[u8]) -> Descriptor {
        Descriptor::new(
            "application/vnd.oci.image.layer.v1.tar".into(),
            blob.len() as u64,
            img_store::digest::sha256(blob),
        )
    }

    fn one_file_tar(name: &str, body: &[u8]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        tar.append_data(&mut header, name, body).unwrap();
        tar.into_inner().unwrap()
    }

    fn store(name: &str) -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("img-feed-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        (Store::open(&dir).unwrap(), dir)
    }

    fn temps(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir.join("snapshots/tmp"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    #[test]
    fn bytes_out_of_order_abandon_the_feed_and_leave_nothing() {
        let (store, dir) = store("order");
        let blob = one_file_tar("a", b"abc");
        let mut feed = SnapshotFeed::start(&store, &layer_of(&blob));
        assert!(feed.push(0, Bytes::copy_from_slice(&blob[..100])));
        // A restart from 0 (a server that ignored the range) is not the next byte.
        assert!(!feed.push(0, Bytes::copy_from_slice(&blob)));
        assert!(feed.wait().is_none());
        assert_eq!(temps(&dir), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_gzip_layer_pushed_a_byte_at_a_time_is_recognised_and_applied() {
        use std::io::Write;
        let (store, dir) = store("bytes");
        let tar = one_file_tar("a", b"abc");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let blob = gz.finish().unwrap();
        let mut feed = SnapshotFeed::start(&store, &layer_of(&blob));
        for (i, byte) in blob.iter().enumerate() {
            assert!(feed.push(i as u64, Bytes::copy_from_slice(&[*byte])));
        }
        feed.close();
        let fed = feed.wait().expect("the layer applied");
        assert_eq!(fed.diff_id(), &img_store::digest::sha256(&tar));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_short_stream_is_not_a_snapshot() {
        let (store, dir) = store("short");
        let blob = one_file_tar("a", b"abc");
        let mut feed = SnapshotFeed::start(&store, &layer_of(&blob));
        assert!(feed.push(0, Bytes::copy_from_slice(&blob[..600])));
        feed.close();
        assert!(feed.wait().is_none());
        assert_eq!(temps(&dir), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_wrong_diff_id_keeps_nothing() {
        let (store, dir) = store("diffid");
        let blob = one_file_tar("a", b"abc");
        let mut feed = SnapshotFeed::start(&store, &layer_of(&blob));
        assert!(feed.push(0, Bytes::from(blob.clone())));
        feed.close();
        let fed = feed.wait().unwrap();
        assert_eq!(fed.diff_id(), &img_store::digest::sha256(&blob));
        let other = img_store::digest::sha256(b"another layer");
        assert!(matches!(
            fed.commit(&store, &other, &other, &[]).unwrap(),
            Settled::Refused
        ));
        assert!(!store.has_snapshot(&other));
        assert_eq!(temps(&dir), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_dropped_feed_does_not_hang_a_pusher() {
        let (store, dir) = store("drop");
        // More than the budget, never read to the end: the applier fails on garbage.
        let garbage = Bytes::from(vec![0x55u8; 3 * BUDGET]);
        let layer = Descriptor::new(
            "application/vnd.oci.image.layer.v1.tar".into(),
            6 * BUDGET as u64,
            img_store::digest::sha256(b"x"),
        );
        let mut feed = SnapshotFeed::start(&store, &layer);
        let mut offset = 0;
        while feed.push(offset, garbage.clone()) {
            offset += garbage.len() as u64;
            assert!(
                offset <= 6 * BUDGET as u64,
                "the applier should have given up"
            );
        }
        assert!(feed.wait().is_none());
        assert_eq!(temps(&dir), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
