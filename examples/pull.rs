//! What a build pipeline does with img's crates: pull an image into a store, then read its
//! config and open its layers, in a few lines.
//!
//! ```text
//! cargo run --example pull -- 127.0.0.1:5000/redis:7 target/example-store
//! ```

use std::error::Error;
use std::io::Read;
use std::sync::Arc;

use img_registry::{Client, ClientOptions, PullOptions, Quiet, Reference, pull};
use img_store::Store;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let reference = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:5000/busybox:latest".into());
    let root = args.next().unwrap_or_else(|| "target/example-store".into());

    let reference = Reference::parse(&reference)?;
    let store = Store::open(root)?;
    let client = Client::new(ClientOptions::default());
    let pulled = pull(
        &client,
        &store,
        &reference,
        &PullOptions::default(),
        Arc::new(Quiet),
    )
    .await?;
    println!("{} -> {}", pulled.reference, pulled.digest);

    let image = store.image(&pulled.reference.to_string())?;
    let config = image.config.config().clone().unwrap_or_default();
    println!("cmd: {:?}", config.cmd().clone().unwrap_or_default());
    println!("env: {:?}", config.env().clone().unwrap_or_default());
    for (layer, diff_id) in image
        .manifest
        .layers()
        .iter()
        .zip(image.config.rootfs().diff_ids())
    {
        // Layers are verified blobs in the store; a pipeline streams them from here.
        let mut magic = [0u8; 4];
        store.open_blob(layer.digest())?.read_exact(&mut magic)?;
        println!(
            "layer {} ({} bytes, {}, starts {:02x?}) -> diff_id {diff_id}",
            layer.digest(),
            layer.size(),
            layer.media_type(),
            magic
        );
    }
    Ok(())
}
