//! Container names as docker makes them when none is given: `adjective_surname` (an
//! adjective, and the surname of someone who shaped computing or science), with a digit added
//! when the name is taken.

use std::hash::{BuildHasher, Hasher};

const ADJECTIVES: [&str; 40] = [
    "agile", "bold", "brave", "bright", "calm", "careful", "clever", "cosmic", "curious", "daring",
    "eager", "earnest", "fearless", "focused", "gentle", "happy", "honest", "humble", "jolly",
    "keen", "kind", "lively", "loyal", "lucid", "merry", "modest", "nimble", "patient", "plucky",
    "quiet", "rapid", "serene", "sharp", "steady", "sunny", "swift", "tender", "tidy", "vivid",
    "witty",
];

const SURNAMES: [&str; 40] = [
    "allen",
    "babbage",
    "backus",
    "bell",
    "berners_lee",
    "boole",
    "cerf",
    "church",
    "codd",
    "curie",
    "dijkstra",
    "engelbart",
    "euler",
    "faraday",
    "gauss",
    "goldberg",
    "hamilton",
    "hopper",
    "kahn",
    "knuth",
    "lamport",
    "liskov",
    "lovelace",
    "maxwell",
    "mccarthy",
    "meitner",
    "noether",
    "pascal",
    "perlman",
    "ritchie",
    "shannon",
    "sutherland",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "wirth",
    "wozniak",
    "yonath",
    "zuse",
];

/// A random number, from the standard library's per-process random hash keys.
fn random() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// A docker-style name that `taken` says is free.
///
/// ```
/// let name = img_run::names::generate(|n| n.starts_with('z'));
/// let (adjective, surname) = name.split_once('_').unwrap();
/// assert!(!adjective.is_empty() && !surname.is_empty());
/// assert!(img_run::state::check_name(&name).is_ok());
/// ```
pub fn generate(taken: impl Fn(&str) -> bool) -> String {
    for attempt in 0..1000u32 {
        let r = random();
        let name = format!(
            "{}_{}",
            ADJECTIVES[(r % ADJECTIVES.len() as u64) as usize],
            SURNAMES[((r >> 32) % SURNAMES.len() as u64) as usize]
        );
        // docker adds a digit once a few plain names were taken
        let name = if attempt < 10 {
            name
        } else {
            format!("{name}{}", r % 10)
        };
        if !taken(&name) {
            return name;
        }
    }
    format!("container_{:016x}", random())
}
