//! `pull --unpack`, streaming: each layer's snapshot is prepared as soon as its blob (and the
//! config, which names its diff_id) is in the store, while other layers still download.
//! Wraps the progress display; the workers learn of finished blobs through it.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use img_registry::Progress;
use img_store::{Descriptor, Digest, ImageConfiguration, Store};

/// What the workers know of the pull.
#[derive(Default)]
struct Plan {
    config: Option<Descriptor>,
    layers: Vec<Descriptor>,
    done: HashSet<Digest>,
    /// Per layer digest: (diff_id, chain_id, the chain IDs below it), once the config is in.
    ids: HashMap<Digest, Ids>,
    started: HashSet<Digest>,
}

/// A layer's diff_id, chain ID and the chain IDs of the layers below it (base first).
type Ids = (Digest, Digest, Vec<Digest>);

/// A [`Progress`] that forwards to `inner` and prepares snapshots as blobs arrive.
pub struct Unpacking {
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
    pub fn new(store: &Store, inner: Arc<dyn Progress>) -> Arc<Unpacking> {
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
        Arc::new(Unpacking {
            inner,
            plan,
            tx: Mutex::new(Some(tx)),
            workers: Mutex::new(workers),
        })
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
        errors.into_iter().next()
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
        // A layer that needs the snapshots below it, not there yet, is left for the
        // `prepare_snapshots` that follows the pull.
        for (layer, (diff_id, chain_id, lowers)) in jobs {
            if let Err(e) =
                img_unpack::prepare_snapshot(store, &layer, &diff_id, &chain_id, &lowers)
            {
                return Some(e);
            }
        }
        if woke.is_err() {
            return None;
        }
    }
}

fn take_ready(store: &Store, plan: &Mutex<Plan>) -> Vec<(Descriptor, Ids)> {
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
        jobs.push((l, ids));
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

    fn reset(&self, digest: &Digest, position: u64) {
        self.inner.reset(digest, position);
    }

    fn done(&self, digest: &Digest) {
        self.inner.done(digest);
        lock(&self.plan).done.insert(digest.clone());
        self.wake();
    }
}
