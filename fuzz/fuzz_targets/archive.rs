//! `img_store::archive::load` (what `img load` runs) on arbitrary bytes: plain, gzip or zstd,
//! legacy docker, docker ≥ 25 or OCI archive, into a store of its own. Oracles: no panic;
//! nothing written outside the store (the working directory, an empty directory, stays
//! empty); no temp file left in `ingest/` whatever the outcome; a load that succeeds names
//! only images whose every blob is present (`fsck` finds no problem), and one that fails
//! names nothing.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use img_store::Store;
use img_store::archive::{LoadOptions, load};
use libfuzzer_sys::fuzz_target;

struct Dirs {
    store: PathBuf,
    outside: PathBuf,
}

fn dirs() -> &'static Dirs {
    static DIRS: OnceLock<Dirs> = OnceLock::new();
    DIRS.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let base = base.join(format!("img-fuzz-archive-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let outside = base.join("cwd");
        std::fs::create_dir_all(&outside).expect("cannot create the fuzz dir");
        // Relative paths an archive might smuggle in would land here.
        std::env::set_current_dir(&outside).expect("cannot enter the fuzz dir");
        Dirs {
            store: base.join("store"),
            outside,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let dirs = dirs();
    let _ = std::fs::remove_dir_all(&dirs.store);
    let store = Store::open(&dirs.store).expect("cannot open the fuzz store");
    let normalize =
        |s: &str| (!s.is_empty() && !s.contains(char::is_whitespace)).then(|| s.to_string());
    let (tag, compress) = match data.first() {
        Some(b) if b % 3 == 0 => (Some("fuzz/tagged:1"), b % 2 == 0),
        Some(b) => (None, b % 2 == 0),
        None => (None, false),
    };
    let options = LoadOptions {
        tag,
        compress,
        normalize: Some(&normalize),
        ..LoadOptions::default()
    };
    let result = load(&store, data, &options);
    let refs = store.refs().expect("index.json stays readable");
    match result {
        Ok(loaded) => {
            assert!(!loaded.is_empty(), "a successful load names something");
            let report = store.fsck().expect("fsck runs");
            assert!(report.problems.is_empty(), "{:?}", report.problems);
        }
        Err(e) => {
            assert!(refs.is_empty(), "a failed load ({e}) named {refs:?}");
            let msg = e.to_string();
            assert!(!msg.is_empty() && !msg.ends_with('.'), "{msg:?}");
        }
    }
    let left: Vec<_> = std::fs::read_dir(dirs.store.join("ingest"))
        .expect("ingest/ exists")
        .collect();
    assert!(left.is_empty(), "temp files left in ingest/: {left:?}");
    let outside: Vec<_> = std::fs::read_dir(&dirs.outside)
        .expect("the outside dir exists")
        .collect();
    assert!(outside.is_empty(), "written outside the store: {outside:?}");
});
