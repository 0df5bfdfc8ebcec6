//! `registries.conf` (containers' v2 TOML) parsing, and what the parsed configuration answers:
//! the entry for a name, the sources (mirrors, rewritten locations, blocks) of references,
//! among them references under each entry's own prefix and location. Oracle: no panic.
#![no_main]

use img_registry::{Reference, RegistriesConf};
use libfuzzer_sys::fuzz_target;

const REFERENCES: [&str; 6] = [
    "redis:7",
    "docker.io/library/busybox@sha256:0000000000000000000000000000000000000000000000000000000000000000",
    "quay.io/private/x",
    "example.com/old/app:1",
    "127.0.0.1:5000/ns/app",
    "sub.example.com/a",
];

fuzz_target!(|data: &[u8]| {
    let Some(text) = img_fuzz::text(data) else {
        return;
    };
    let Ok(conf) = RegistriesConf::parse(text) else {
        return;
    };
    let _ = conf.search_registries();
    let mut references: Vec<Reference> = REFERENCES
        .iter()
        .filter_map(|r| Reference::parse(r).ok())
        .collect();
    for entry in conf.registry.iter().take(8) {
        let _ = entry.prefix();
        for base in [Some(entry.prefix()), entry.location.as_deref()]
            .into_iter()
            .flatten()
        {
            let base = base
                .strip_prefix("*.")
                .map_or(base.to_string(), |d| format!("x.{d}"));
            for r in [format!("{base}/app:1"), format!("{base}:1"), base.clone()] {
                if let Ok(r) = Reference::parse(&r) {
                    references.push(r);
                }
            }
        }
    }
    for r in &references {
        let _ = conf.entry_for(&r.name());
        if let Ok(sources) = conf.sources(r) {
            for s in sources {
                let _ = (s.registry.len(), s.repository.len(), s.insecure, s.mirror);
            }
        }
    }
});
