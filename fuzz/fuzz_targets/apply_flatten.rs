//! The layer applier in `Mode::Flatten` (whiteouts applied; up to four layers in order into
//! one target) on arbitrary tar bytes, plain, gzip or zstd. Oracles: no panic, no hang, and
//! nothing outside the target created, changed or followed (see `img_fuzz::applier`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| img_fuzz::applier::run(data, img_unpack::Mode::Flatten));
