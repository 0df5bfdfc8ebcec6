//! A client for OCI distribution registries, and pulling images into an [`img_store::Store`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), img_registry::Error> {
//! use std::sync::Arc;
//! use img_registry::{Client, ClientOptions, PullOptions, Quiet, Reference, pull};
//!
//! let store = img_store::Store::open("/var/tmp/store")?;
//! let reference = Reference::parse("127.0.0.1:5000/redis:7")?;
//! let client = Client::new(ClientOptions::default());
//! let pulled = pull(&client, &store, &reference, &PullOptions::default(), Arc::new(Quiet)).await?;
//! println!("{} layers, config {}", pulled.layers.len(), pulled.config.digest());
//! # Ok(()) }
//! ```
//!
//! Built on reqwest (rustls with the `ring` provider) rather than oci-client: see
//! ARCHITECTURE.md for why.
#![warn(missing_docs)]

pub mod auth;
mod client;
mod conf;
mod copy;
mod error;
mod platform;
mod pull;
mod push;
mod reference;
mod retry;

pub use client::{
    BlobStream, Client, ClientOptions, Credentials, FetchedManifest, Log, MAX_MANIFEST, Registry,
};
pub use conf::{Mirror, RegistriesConf, RegistryEntry, Source};
pub use copy::{CopyOptions, copy};
pub use error::{Error, Result};
pub use platform::Platform;
pub use pull::{Progress, PullOptions, Pulled, Quiet, fetch_blob, pull};
pub use push::{PushOptions, Pushed, push};
pub use reference::{DOCKER_HUB, DOCKER_HUB_API, Reference, api_host, is_loopback};
pub use retry::RetryPolicy;

/// The parsers of registry answers, for the fuzz targets (`fuzz/`); not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::client::parse_challenge;
    pub use crate::pull::resume_start;
    pub use crate::retry::retry_after;
}
