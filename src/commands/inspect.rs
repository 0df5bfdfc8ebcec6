//! `img inspect`: an image's metadata (`--json` prints its config), or a container's when
//! the name is a container's (docker looks both up).

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
            },
        );
    }
    let image = super::stored_names(&store, &args.image)?.image(&store)?;
    if global.json {
        let config: serde_json::Value = serde_json::from_slice(&image.config_json)
            .with_context(|| format!("config of {}", image.name))?;
        output::json(&config)?;
        return Ok(ExitCode::SUCCESS);
    }
    let c = &image.config;
    let cfg = c.config().clone().unwrap_or_default();
    let list = |v: &Option<Vec<String>>| match v {
        Some(v) if !v.is_empty() => serde_json::to_string(v).unwrap_or_default(),
        _ => String::new(),
    };
    let mut lines: Vec<(&str, String)> = vec![
        ("Name", image.name.clone()),
        ("Digest", image.registry_digest().to_string()),
        ("Media type", image.descriptor.media_type().to_string()),
    ];
    if &image.registry_digest() != image.descriptor.digest() {
        lines.push((
            "Stored as",
            format!(
                "{} (the OCI form of the registry's Docker document)",
                image.descriptor.digest()
            ),
        ));
    }
    if image.registry_manifest_digest() != image.registry_digest() {
        lines.push(("Manifest", image.registry_manifest_digest().to_string()));
    }
    lines.extend([
        ("Config", image.manifest.config().digest().to_string()),
        (
            "Platform",
            image.platform.clone().unwrap_or_else(|| {
                let mut p = format!("{}/{}", c.os(), c.architecture());
                if let Some(v) = c.variant() {
                    p.push('/');
                    p.push_str(v);
                }
                p
            }),
        ),
        (
            "Created",
            match c.created() {
                Some(t) => format!("{t} ({})", output::age(Some(t))),
                None => String::new(),
            },
        ),
        ("Author", c.author().clone().unwrap_or_default()),
        ("Entrypoint", list(cfg.entrypoint())),
        ("Cmd", list(cfg.cmd())),
        ("WorkingDir", cfg.working_dir().clone().unwrap_or_default()),
        ("User", cfg.user().clone().unwrap_or_default()),
    ]);
    for env in cfg.env().clone().unwrap_or_default() {
        lines.push(("Env", env));
    }
    if let Some(ports) = cfg.exposed_ports() {
        lines.push(("Exposed ports", ports.join(" ")));
    }
    let mut labels: Vec<_> = cfg
        .labels()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.sort();
    for (k, v) in labels {
        lines.push(("Label", format!("{k}={v}")));
    }
    let layers = image.manifest.layers();
    lines.push((
        "Layers",
        format!(
            "{} ({} compressed)",
            layers.len(),
            output::size(layers.iter().map(|l| l.size()).sum())
        ),
    ));
    for (k, v) in lines {
        if !v.is_empty() {
            println!("{:<14} {v}", format!("{k}:"));
        }
    }
    Ok(ExitCode::SUCCESS)
}
