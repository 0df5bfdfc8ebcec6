//! The layer applier in `Mode::Overlay` (whiteouts as 0:0 devices, opaque directories as
//! `trusted.overlay.opaque`; each of up to four layers into a target of its own) on arbitrary
//! tar bytes, plain, gzip or zstd. Oracles: no panic, no hang, and nothing outside the target
//! created, changed or followed (see `img_fuzz::applier`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| img_fuzz::applier::run(data, img_unpack::Mode::Overlay));
