//! `img images` / `img image ls`: list stored images.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use img_registry::Reference;

use crate::Global;
use crate::output;

/// Arguments of `img images`.
#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only images of this repository (`redis`, `redis:7`)
    pub name: Option<String>,
    /// Show the digest each name was pulled by
    #[arg(long)]
    pub digests: bool,
}

/// Run `img images`.
pub fn run(global: &Global, args: ImagesArgs) -> Result<ExitCode> {
    let store = super::store(global)?;
    let filter = args.name.as_deref().map(Reference::parse).transpose()?;
    let tag_given = args
        .name
        .as_deref()
        .is_some_and(|n| n.rsplit('/').next().is_some_and(|last| last.contains(':')));
    let mut rows = Vec::new();
    let mut records = Vec::new();
    let mut broken = false;
    for (name, image) in store.images()? {
        let (repository, tag) = super::repo_and_tag(&name);
        if let Some(f) = &filter
            && (f.name() != repository || (tag_given && f.tag() != Some(tag.as_str())))
        {
            continue;
        }
        let image = match image {
            Ok(i) => i,
            Err(e) => {
                eprintln!("img: image {name}: {e}");
                broken = true;
                continue;
            }
        };
        let created = image.config.created().clone();
        let id = img_store::digest::short(image.manifest.config().digest()).to_string();
        // docker's columns; Docker Hub's names as docker shortens them
        let mut row = vec![super::save::familiar(&repository), tag.clone()];
        if args.digests {
            row.push(image.registry_digest().to_string());
        }
        row.extend([
            id.clone(),
            output::age(created.as_deref()),
            output::size(image.size()),
        ]);
        rows.push(row);
        records.push(serde_json::json!({
            "name": name,
            "repository": repository,
            "tag": tag,
            "digest": image.registry_digest().to_string(),
            "stored": image.descriptor.digest().to_string(),
            "manifest": image.registry_manifest_digest().to_string(),
            "config": image.manifest.config().digest().to_string(),
            "platform": image.platform,
            "size": image.size(),
            "created": created,
            "id": id,
        }));
    }
    if global.json {
        output::json(&records)?;
    } else if global.quiet {
        // docker's -q: the image IDs, one per row
        for r in &records {
            println!("{}", r["id"].as_str().unwrap_or_default());
        }
    } else if args.digests {
        output::table(
            &["REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE"],
            &rows,
        );
    } else {
        output::table(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], &rows);
    }
    Ok(if broken {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
