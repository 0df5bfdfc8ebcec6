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
        rows.push(vec![
            repository.clone(),
            tag.clone(),
            img_store::digest::short(&image.registry_digest()).to_string(),
            output::size(image.size()),
            output::age(created.as_deref()),
        ]);
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
        }));
    }
    if global.json {
        output::json(&records)?;
    } else if global.quiet {
        for r in &records {
            println!("{}", r["name"].as_str().unwrap_or_default());
        }
    } else {
        output::table(&["REPOSITORY", "TAG", "DIGEST", "SIZE", "CREATED"], &rows);
    }
    Ok(if broken {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
