//! `pull --unpack`, streaming: each layer is unpacked from its bytes as they arrive, in the same
//! pass that writes its blob to the store (an [`img_unpack::SnapshotFeed`] per downloading
//! layer), and its snapshot is kept once the blob is verified and the config (which names its
//! diff_id) is in. A layer whose feed was abandoned (a download that started over, a layer that
//! needs the layers below) is prepared from its stored blob instead, while others download.
//! Wraps the progress display; the feeds and workers learn of bytes and finished blobs
//! through it.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use img_registry::Progress;
use img_store::{Descriptor, Digest, ImageConfiguration, Store};
use img_unpack::{FedSnapshot, Settled, SnapshotFeed};

/// What the workers know of the pull.
#[derive(Default)]
struct Plan {
    config: Option<Descriptor>,
    layers: Vec<Descriptor>,
    done: HashSet<Digest>,
    /// Per layer digest: (diff_id, chain_id, the chain IDs below it), once the config is in.
    ids: HashMap<Digest, Ids>,
    started: HashSet<Digest>,
    /// The feeds of layers downloading (taken out by the worker that finishes the layer).
    feeds: HashMap<Digest, Feed>,
    /// Layers unpacked from their feeds that wait for the snapshots of the layers below.
    waiting: Vec<(Descriptor, Ids, Box<FedSnapshot>)>,
}

/// Feeds alive at once, at most (twice the default `--jobs`).
const MAX_FEEDS: usize = 8;

/// A layer's feed, shared by the download that pushes to it and the plan.
type Feed = Arc<Mutex<Option<SnapshotFeed>>>;

/// A layer to finish: its descriptor, ids, and the feed that unpacked it as it arrived.
type Job = (Descriptor, Ids, Option<SnapshotFeed>);

/// A layer's diff_id, chain ID and the chain IDs of the layers below it (base first).
type Ids = (Digest, Digest, Vec<Digest>);

/// A [`Progress`] that forwards to `inner` and prepares snapshots as blobs arrive.
pub struct Unpacking {
    store: Store,
    /// Held until every worker and feed is done: gc must not sweep their temp snapshots (the
    /// pull's own guard ends when its downloads do).
    guard: Mutex<Option<img_store::PullGuard>>,
    inner: Arc<dyn Progress>,
    plan: Arc<Mutex<Plan>>,
    tx: Mutex<Option<Sender<()>>>,
    workers: Mutex<Vec<JoinHandle<Option<img_unpack::Error>>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Unpacking {
    /// Workers preparing snapshots in `store`, one per core.
    pub fn new(store: &Store, inner: Arc<dyn Progress>) -> img_store::Result<Arc<Unpacking>> {
        let guard = store.pull_guard()?;
        let (tx, rx) = channel::<()>();
        let rx = Arc::new(Mutex::new(rx));
        let plan = Arc::new(Mutex::new(Plan::default()));
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        let workers = (0..n)
            .map(|_| {
                let (store, rx, plan) = (store.clone(), rx.clone(), plan.clone());
                std::thread::spawn(move || work(&store, &rx, &plan))
            })
            .collect();
        Ok(Arc::new(Unpacking {
            store: store.clone(),
            guard: Mutex::new(Some(guard)),
            inner,
            plan,
            tx: Mutex::new(Some(tx)),
            workers: Mutex::new(workers),
        }))
    }

    /// Wait for every worker (one that is still unpacking must clean up its temp snapshot
    /// before the process exits); the first error any of them met.
    pub fn finish(&self) -> Option<img_unpack::Error> {
        lock(&self.tx).take();
        let workers = std::mem::take(&mut *lock(&self.workers));
        let errors: Vec<_> = workers
            .into_iter()
            .filter_map(|w| w.join().ok().flatten())
            .collect();
        // Fed snapshots still waiting for lower ones (left to `prepare_snapshots`) and feeds
        // no worker took (a failed pull): dropped, they remove what they made.
        lock(&self.plan).waiting.clear();
        let feeds = std::mem::take(&mut lock(&self.plan).feeds);
        for feed in feeds.values() {
            if let Some(mut feed) = lock(feed).take() {
                feed.abandon();
            }
        }
        lock(&self.guard).take();
        errors.into_iter().next()
    }

    /// The feed of `digest`, started when its first bytes arrive (if it is a layer whose
    /// snapshot is not known to be there).
    fn feed(&self, digest: &Digest, offset: u64) -> Option<Feed> {
        let mut p = lock(&self.plan);
        // At most MAX_FEEDS at once (the threads and buffers of each): a manifest of many
        // small layers on a fast registry would otherwise start them all; the others are
        // prepared from their stored blobs.
        if offset == 0
            && !p.feeds.contains_key(digest)
            && !p.done.contains(digest)
            && p.feeds.len() < MAX_FEEDS
        {
            let layer = p.layers.iter().find(|l| l.digest() == digest).cloned();
            let known = p
                .ids
                .get(digest)
                .is_some_and(|(_, chain_id, _)| self.store.has_snapshot(chain_id));
            if let Some(layer) = layer
                && !known
            {
                let feed = SnapshotFeed::start(&self.store, &layer);
                p.feeds
                    .insert(digest.clone(), Arc::new(Mutex::new(Some(feed))));
            }
        }
        p.feeds.get(digest).cloned()
    }

    /// Do `what` to the feed of `digest`, if it has one.
    fn with_feed(&self, digest: &Digest, what: impl FnOnce(&mut SnapshotFeed)) {
        let feed = lock(&self.plan).feeds.get(digest).cloned();
        if let Some(feed) = feed
            && let Some(feed) = lock(&feed).as_mut()
        {
            what(feed);
        }
    }

    fn wake(&self) {
        if let Some(tx) = &*lock(&self.tx) {
            let _ = tx.send(());
        }
    }
}

/// A worker: on every wake-up, take the layers that became ready and prepare them.
fn work(store: &Store, rx: &Mutex<Receiver<()>>, plan: &Mutex<Plan>) -> Option<img_unpack::Error> {
    loop {
        let woke = lock(rx).recv();
        // After the last wake-up, one more look: blobs may have finished meanwhile.
        let jobs = take_ready(store, plan);
        for (layer, ids, feed) in jobs {
            if let Err(e) = finish_layer(store, plan, layer, ids, feed) {
                return Some(e);
            }
        }
        if woke.is_err() {
            return None;
        }
    }
}

/// Keep the snapshot a layer's feed made, or else prepare it from its stored blob; then offer
/// again the fed snapshots that waited for it. A layer that needs the snapshots below it, not
/// there yet, is left for the `prepare_snapshots` that follows the pull.
fn finish_layer(
    store: &Store,
    plan: &Mutex<Plan>,
    layer: Descriptor,
    ids: Ids,
    feed: Option<SnapshotFeed>,
) -> img_unpack::Result<()> {
    match feed.and_then(SnapshotFeed::wait) {
        Some(fed) => commit_fed(store, plan, layer, ids, Box::new(fed))?,
        None => {
            let (diff_id, chain_id, lowers) = &ids;
            img_unpack::prepare_snapshot(store, &layer, diff_id, chain_id, lowers)?;
        }
    }
    // Also when this one waits: the lower snapshots may have been committed since its commit
    // looked, by a worker that found nothing waiting yet.
    offer_waiting(store, plan)
}

/// Commit a fed snapshot: kept, set aside to wait for its lower snapshots, or (refused)
/// prepared from the stored blob instead.
fn commit_fed(
    store: &Store,
    plan: &Mutex<Plan>,
    layer: Descriptor,
    ids: Ids,
    fed: Box<FedSnapshot>,
) -> img_unpack::Result<()> {
    let (diff_id, chain_id, lowers) = &ids;
    match fed.commit(store, diff_id, chain_id, lowers)? {
        Settled::Kept => {}
        Settled::Waiting(fed) => lock(plan).waiting.push((layer, ids, fed)),
        Settled::Refused => {
            img_unpack::prepare_snapshot(store, &layer, diff_id, chain_id, lowers)?;
        }
    }
    Ok(())
}

/// Offer the waiting fed snapshots whose lower snapshots are all there now, until none is.
fn offer_waiting(store: &Store, plan: &Mutex<Plan>) -> img_unpack::Result<()> {
    loop {
        let ready: Vec<_> = {
            let mut p = lock(plan);
            let (ready, waiting) = std::mem::take(&mut p.waiting)
                .into_iter()
                .partition(|(_, (_, _, lowers), _)| lowers.iter().all(|c| store.has_snapshot(c)));
            p.waiting = waiting;
            ready
        };
        if ready.is_empty() {
            return Ok(());
        }
        for (layer, ids, fed) in ready {
            commit_fed(store, plan, layer, ids, fed)?;
        }
    }
}

fn take_ready(store: &Store, plan: &Mutex<Plan>) -> Vec<Job> {
    let mut p = lock(plan);
    if p.ids.is_empty()
        && let Some(config) = p.config.clone()
        && p.done.contains(config.digest())
        && let Some(ids) = chain(store, &config, &p.layers)
    {
        p.ids = ids;
    }
    let ready: Vec<Descriptor> = p
        .layers
        .iter()
        .filter(|l| p.done.contains(l.digest()) && !p.started.contains(l.digest()))
        .filter(|l| p.ids.contains_key(l.digest()))
        .cloned()
        .collect();
    let mut jobs = Vec::new();
    for l in ready {
        p.started.insert(l.digest().clone());
        let ids = p.ids[l.digest()].clone();
        let feed = p.feeds.remove(l.digest()).and_then(|f| lock(&f).take());
        jobs.push((l, ids, feed));
    }
    jobs
}

/// diff_id and chain ID of each layer, from the config in the store.
fn chain(
    store: &Store,
    config: &Descriptor,
    layers: &[Descriptor],
) -> Option<HashMap<Digest, Ids>> {
    let bytes = store.read_blob(config.digest()).ok()?;
    let config: ImageConfiguration = serde_json::from_slice(&bytes).ok()?;
    let diff_ids: Vec<Digest> = config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| img_store::digest::parse(d).ok())
        .collect::<Option<_>>()?;
    if diff_ids.len() != layers.len() {
        return None;
    }
    let chain_ids = img_store::chain_ids(&diff_ids);
    Some(
        layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let ids = (
                    diff_ids[i].clone(),
                    chain_ids[i].clone(),
                    chain_ids[..i].to_vec(),
                );
                (l.digest().clone(), ids)
            })
            .collect(),
    )
}

impl Progress for Unpacking {
    fn blobs(&self, blobs: &[Descriptor], present: &[bool]) {
        self.inner.blobs(blobs, present);
        if let Some((config, layers)) = blobs.split_first() {
            let mut p = lock(&self.plan);
            p.config = Some(config.clone());
            p.layers = layers.to_vec();
            for (b, &here) in blobs.iter().zip(present) {
                if here {
                    p.done.insert(b.digest().clone());
                }
            }
        }
        self.wake();
    }

    fn advance(&self, digest: &Digest, bytes: u64) {
        self.inner.advance(digest, bytes);
    }

    fn received(&self, digest: &Digest, offset: u64, bytes: &bytes::Bytes) {
        self.inner.received(digest, offset, bytes);
        // A full pipe waits for its applier, on the runtime's thread: that is the flow
        // control that keeps memory flat (with `block_in_place` the runtime would start
        // another thread to go on downloading into other pipes: 57 MB peak instead of 35).
        if let Some(feed) = self.feed(digest, offset)
            && let Some(feed) = lock(&feed).as_mut()
        {
            feed.push(offset, bytes.clone());
        }
    }

    fn reset(&self, digest: &Digest, position: u64) {
        self.inner.reset(digest, position);
        self.with_feed(digest, SnapshotFeed::abandon);
    }

    fn done(&self, digest: &Digest) {
        self.inner.done(digest);
        self.with_feed(digest, SnapshotFeed::close);
        lock(&self.plan).done.insert(digest.clone());
        self.wake();
    }
}
