//! Credential files: containers' `auth.json` and docker's `config.json` (`auths` with `auth`,
//! `username`/`password` or `identitytoken`, `credHelpers`, `credsStore`), read for a lookup and
//! rewritten by `store`/`erase` (`img login`/`logout`). Credential helpers named by an input
//! cannot run (empty `PATH`, empty working directory: see `img_fuzz::no_helpers_dir`). Oracles:
//! no panic; no secret in an error message.
#![no_main]

use img_registry::Credentials;
use img_registry::auth::{self, AuthFiles};
use libfuzzer_sys::fuzz_target;

const REGISTRIES: [(&str, &str); 4] = [
    ("docker.io", "library/redis"),
    ("127.0.0.1:5000", "ns/app"),
    ("quay.io", "org/repo/sub"),
    ("localhost", "x"),
];

const PASSWORD: &str = "fuzz-s3cr3t-pw";

fuzz_target!(|data: &[u8]| {
    let dir = img_fuzz::no_helpers_dir();
    let Some((&op, json)) = data.split_first() else {
        return;
    };
    let file = dir.join("auth.json");
    std::fs::write(&file, json).expect("cannot write the auth file");
    let files = AuthFiles {
        authfile: Some(file.clone()),
    };
    for (registry, repository) in REGISTRIES {
        if let Err(e) = files.lookup(registry, repository) {
            let _ = e.to_string();
        }
    }
    let (registry, _) = REGISTRIES[usize::from(op >> 2) % REGISTRIES.len()];
    match op & 3 {
        1 => {
            let creds = Credentials {
                username: "fuzz".into(),
                password: PASSWORD.into(),
            };
            match auth::store(&file, registry, &creds) {
                Ok(_) => {
                    // What `img login` wrote, `img pull` finds (or a more specific entry
                    // of the file, which may be unreadable).
                    let found = files.lookup(registry, "some/repo");
                    assert!(!matches!(found, Ok(None)), "a stored login is not found");
                    if let Err(e) = found {
                        assert!(!e.to_string().contains(PASSWORD), "{e}");
                    }
                }
                Err(e) => assert!(!e.to_string().contains(PASSWORD), "{e}"),
            }
        }
        2 => {
            let erased = auth::erase(&file, registry);
            if erased.is_ok() {
                let _ = files.lookup(registry, "some/repo");
            }
        }
        _ => {}
    }
});
