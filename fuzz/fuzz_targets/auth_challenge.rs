//! The `WWW-Authenticate` parser of the registry client (the challenge a 401 carries). Oracles:
//! no panic; the scheme and parameter names come back lower-case and trimmed, as the client
//! matches them (`basic`, `bearer`, `realm`, `service`, `scope`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(header) = img_fuzz::text(data) else {
        return;
    };
    let Some((scheme, params)) = img_registry::fuzzing::parse_challenge(header) else {
        return;
    };
    assert_eq!(scheme, scheme.to_ascii_lowercase());
    for key in params.keys() {
        assert_eq!(key, &key.to_ascii_lowercase());
        assert_eq!(key, key.trim());
    }
});
