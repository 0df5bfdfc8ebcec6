//! Helpers shared by the fuzz targets in `fuzz_targets/`.
//!
//! The applier targets (`apply_flatten`, `apply_overlay`) run every input in a sandbox (see
//! [`applier`]): the oracle is that applying a layer never creates, changes or follows anything
//! outside its target directory.

pub mod applier;

/// Inputs of the text targets: the bytes as UTF-8, or nothing to do.
pub fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// Prepare a process that may run credential helpers: none can be found (an empty `PATH`,
/// an empty working directory), so a `credHelpers`/`credsStore` named by an input fails to
/// start instead of running `docker-credential-gcloud` or a relative path. Returns the empty
/// directory, on tmpfs when there is one (files written there are not worth an fsync).
pub fn no_helpers_dir() -> std::path::PathBuf {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            std::path::PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("img-fuzz-auth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("empty")).expect("cannot create the auth fuzz dir");
        // SAFETY: called once, from the fuzzing thread, before anything reads the environment
        // concurrently (libFuzzer runs inputs on one thread).
        unsafe {
            std::env::set_var("PATH", dir.join("empty"));
            std::env::remove_var("DOCKER_CONFIG");
            std::env::remove_var("XDG_RUNTIME_DIR");
            std::env::set_var("HOME", dir.join("empty"));
        }
        std::env::set_current_dir(dir.join("empty")).expect("cannot enter the auth fuzz dir");
        dir
    })
    .clone()
}
