//! Pull progress on a terminal: one bar per blob and a total, drawn on stderr. Hidden when
//! stderr is not a terminal or `--quiet` is given.

use std::collections::HashMap;
use std::sync::Mutex;

use img_registry::Progress;
use img_store::{Descriptor, Digest};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Bars for one pull.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
    total: Mutex<Option<ProgressBar>>,
}

impl Bars {
    /// Bars drawn on stderr if `visible`.
    pub fn new(visible: bool) -> Bars {
        let target = if visible {
            ProgressDrawTarget::stderr_with_hz(10)
        } else {
            ProgressDrawTarget::hidden()
        };
        Bars {
            multi: MultiProgress::with_draw_target(target),
            bars: Mutex::new(HashMap::new()),
            total: Mutex::new(None),
        }
    }

    /// Remove the bars from the screen.
    pub fn clear(&self) {
        let _ = self.multi.clear();
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Progress for Bars {
    fn blobs(&self, blobs: &[Descriptor], present: &[bool]) {
        let blob_style = style(
            "{prefix:>12} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {msg}",
        );
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        let mut missing = 0;
        for (blob, &present) in blobs.iter().zip(present) {
            let bar = self.multi.add(ProgressBar::new(blob.size()));
            bar.set_style(blob_style.clone());
            bar.set_prefix(img_store::digest::short(blob.digest()).to_string());
            if present {
                bar.set_position(blob.size());
                bar.finish_with_message("already stored");
            } else {
                missing += blob.size();
                bars.insert(blob.digest().clone(), bar);
            }
        }
        let total = self.multi.add(ProgressBar::new(missing));
        total.set_style(style(
            "{prefix:>12} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {elapsed}",
        ));
        total.set_prefix("total");
        *self.total.lock().unwrap_or_else(|p| p.into_inner()) = Some(total);
    }

    fn advance(&self, digest: &Digest, bytes: u64) {
        if let Some(bar) = self
            .bars
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
        {
            bar.inc(bytes);
        }
        if let Some(total) = &*self.total.lock().unwrap_or_else(|p| p.into_inner()) {
            total.inc(bytes);
        }
    }

    fn reset(&self, digest: &Digest, position: u64) {
        if let Some(bar) = self
            .bars
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
        {
            let lost = bar.position().saturating_sub(position);
            bar.set_position(position);
            if let Some(total) = &*self.total.lock().unwrap_or_else(|p| p.into_inner()) {
                total.set_position(total.position().saturating_sub(lost));
            }
        }
    }

    fn done(&self, digest: &Digest) {
        if let Some(bar) = self
            .bars
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
        {
            bar.finish_with_message("verified");
        }
    }
}
