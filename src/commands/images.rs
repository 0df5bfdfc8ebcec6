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
    /// `--format` (fields ID, Repository, Tag, Digest, CreatedSince, CreatedAt, Size, Labels),
    /// `--filter` (reference=PATTERN with `*` globs, label=KEY[=VALUE], dangling=true|false),
    /// `--no-trunc`
    #[command(flatten)]
    pub list: crate::format::ListArgs,
}

/// The headers of `images`' columns, by field.
const HEADERS: [(&str, &str); 7] = [
    ("ID", "IMAGE ID"),
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("Digest", "DIGEST"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Size", "SIZE"),
];

/// Run `img images`.
pub fn run(global: &Global, args: ImagesArgs) -> Result<ExitCode> {
    let store = super::store(global)?;
    let filter = args.name.as_deref().map(Reference::parse).transpose()?;
    let tag_given = args
        .name
        .as_deref()
        .is_some_and(|n| n.rsplit('/').next().is_some_and(|last| last.contains(':')));
    let filters =
        crate::format::Filters::parse(&args.list.filter, &["reference", "label", "dangling"])?;
    let mut items = Vec::new();
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
        let familiar = super::save::familiar(&repository);
        let labels = image
            .config
            .config()
            .as_ref()
            .and_then(|c| c.labels().clone())
            .unwrap_or_default();
        // every name is a tag here: nothing stored is dangling
        let keep = filters.all(|key, value| match key {
            "reference" => [format!("{familiar}:{tag}"), familiar.clone(), name.clone()]
                .iter()
                .any(|r| crate::format::glob(value, r)),
            "label" => crate::format::label_matches(&labels, value),
            _ => value == "false",
        });
        if !keep {
            continue;
        }
        let created = image.config.created().clone();
        let config = image.manifest.config().digest();
        let id = img_store::digest::short(config).to_string();
        // docker's fields; Docker Hub's names as docker shortens them
        items.push(serde_json::json!({
            "ID": if args.list.no_trunc { config.to_string() } else { id.clone() },
            "Repository": familiar,
            "Tag": tag,
            "Digest": image.registry_digest().to_string(),
            "CreatedSince": output::age(created.as_deref()),
            "CreatedAt": created.clone().unwrap_or_default(),
            "Size": output::size(image.size()),
            "Labels": crate::format::labels_text(&labels),
        }));
        records.push(serde_json::json!({
            "name": name,
            "repository": repository,
            "tag": tag,
            "digest": image.registry_digest().to_string(),
            "stored": image.descriptor.digest().to_string(),
            "manifest": image.registry_manifest_digest().to_string(),
            "config": config.to_string(),
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
        for item in &items {
            println!("{}", item["ID"].as_str().unwrap_or_default());
        }
    } else {
        let default = if args.digests {
            "table {{.Repository}}\\t{{.Tag}}\\t{{.Digest}}\\t{{.ID}}\\t{{.CreatedSince}}\\t{{.Size}}"
        } else {
            "table {{.Repository}}\\t{{.Tag}}\\t{{.ID}}\\t{{.CreatedSince}}\\t{{.Size}}"
        };
        let format = crate::format::Format::parse(args.list.format.as_deref().unwrap_or(default))?;
        print!("{}", format.render(&items, &HEADERS)?);
    }
    Ok(if broken {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
