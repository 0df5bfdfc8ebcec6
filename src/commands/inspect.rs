//! `img inspect`: an image's document as docker prints it (a JSON array; `-f` applies a
//! template; `--json` prints its config as stored), or a container's when the name is a
//! container's (docker looks both up).

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use crate::Global;
use crate::output;

/// Arguments of `img inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The image: as pulled (`redis:7`), by ID (the config digest, `sha256:` optional) or a
    /// unique ID prefix, or by a digest prefix
    pub image: String,
    /// docker's -f/--format: a Go template applied to the document (`{{.Config.Cmd}}`,
    /// `{{json .RootFS.Layers}}`); without it, the document as a JSON array, as docker prints it
    #[arg(short, long)]
    pub format: Option<String>,
}

/// Run `img inspect`.
pub fn run(global: &Global, args: InspectArgs) -> Result<ExitCode> {
    let store = super::store(global)?;
    // docker's one namespace: a stored image name first, then a container's name or id,
    // then an image ID (prefix).
    let is_image_name = super::find_stored(&store, &args.image)?.is_some_and(|f| f.id.is_none());
    if !is_image_name && img_run::ContainerState::find(store.root(), &args.image).is_ok() {
        return super::container::run_inspect(
            global,
            super::container::InspectArgs {
                container: args.image,
                format: args.format,
            },
        );
    }
    let image = super::stored_names(&store, &args.image)?.image(&store)?;
    let config: serde_json::Value = serde_json::from_slice(&image.config_json)
        .with_context(|| format!("config of {}", image.name))?;
    if global.json {
        output::json(&config)?;
        return Ok(ExitCode::SUCCESS);
    }
    let c = &image.config;
    let id = image.manifest.config().digest().to_string();
    // docker's RepoTags: every name of this image
    let mut tags = Vec::new();
    for (name, other) in store.images()? {
        if other.is_ok_and(|o| o.manifest.config().digest().to_string() == id) {
            let (repository, tag) = super::repo_and_tag(&name);
            tags.push(format!("{}:{tag}", super::save::familiar(&repository)));
        }
    }
    let (repository, _) = super::repo_and_tag(&image.name);
    let platform = image.platform.clone().unwrap_or_else(|| {
        let mut p = format!("{}/{}", c.os(), c.architecture());
        if let Some(v) = c.variant() {
            p.push('/');
            p.push_str(v);
        }
        p
    });
    let diff_ids: Vec<String> = image.diff_ids()?.iter().map(ToString::to_string).collect();
    // docker's document, with its field names, and what img adds (Name, Descriptor, Platform)
    let doc = serde_json::json!({
        "Id": id,
        "RepoTags": tags,
        "RepoDigests": [format!("{}@{}", super::save::familiar(&repository), image.registry_digest())],
        "Created": config["created"],
        "Author": config["author"],
        "Config": config["config"],
        "Architecture": config["architecture"],
        "Variant": config["variant"],
        "Os": config["os"],
        "Size": image.size(),
        "RootFS": {"Type": "layers", "Layers": diff_ids},
        "History": config["history"],
        "Name": image.name,
        "Platform": platform,
        "Descriptor": {
            "mediaType": image.descriptor.media_type().to_string(),
            "digest": image.descriptor.digest().to_string(),
            "size": image.descriptor.size(),
        },
        "ManifestDigest": image.registry_manifest_digest().to_string(),
    });
    print_document(&doc, args.format.as_deref())
}

/// An inspect document as docker prints it: a JSON array of one, or `format` applied to it.
pub fn print_document(doc: &serde_json::Value, format: Option<&str>) -> Result<ExitCode> {
    match format {
        Some(f) => print!(
            "{}",
            crate::format::Format::parse(f)?.render(std::slice::from_ref(doc), &[])?
        ),
        None => output::json(&[doc])?,
    }
    Ok(ExitCode::SUCCESS)
}
