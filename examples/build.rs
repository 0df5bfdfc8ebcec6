//! A build step in a pipeline, as `crane append` + `crane mutate` do it: pull a base, add a
//! directory as a layer, set an entrypoint and a label, write it to the store, push it.
//!
//! ```text
//! cargo run --example build -- 127.0.0.1:5000/busybox:latest ./app 127.0.0.1:5000/demo/app:1 target/example-store
//! ```

use std::error::Error;
use std::sync::Arc;

use img_build::Builder;
use img_registry::{Client, ClientOptions, PullOptions, PushOptions, Quiet, Reference, pull, push};
use img_store::Store;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, dir, destination, root] = &args[..] else {
        return Err("usage: build BASE DIR DESTINATION STORE".into());
    };
    let (store, client) = (Store::open(root)?, Client::new(ClientOptions::default()));
    let base = Reference::parse(base)?;
    pull(
        &client,
        &store,
        &base,
        &PullOptions::default(),
        Arc::new(Quiet),
    )
    .await?;

    let mut image = Builder::from_image(&store, &base.to_string())?;
    image
        .append_dir(dir)
        .entrypoint(["/app/run.sh"])
        .label("org.opencontainers.image.source", "examples/build.rs");
    let written = image.write(&store, destination)?;

    let to = Reference::parse(destination)?;
    let options = PushOptions::default();
    let pushed = push(
        &client,
        &store,
        &written.reference,
        &to,
        &options,
        Arc::new(Quiet),
    )
    .await?;
    println!("{} {}", pushed.reference, pushed.digest);
    Ok(())
}
