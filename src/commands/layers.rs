//! `img layers`: one row per layer.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::Global;
use crate::output;

/// Arguments of `img layers`.
#[derive(Debug, Args)]
pub struct LayersArgs {
    /// The image, as pulled (`redis:7`), or a digest prefix
    pub image: String,
    /// Show whole digests and commands
    #[arg(long)]
    pub no_trunc: bool,
}

/// Run `img layers`.
pub fn run(global: &Global, args: LayersArgs) -> Result<ExitCode> {
    let store = super::store(global)?;
    let image = super::image(&store, &args.image)?;
    let diff_ids = image.config.rootfs().diff_ids().clone();
    // History entries marked empty_layer made no layer; the others match layers in order.
    let created_by: Vec<String> = image
        .config
        .history()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|h| !h.empty_layer().unwrap_or(false))
        .map(|h| h.created_by().clone().unwrap_or_default())
        .collect();
    let short = |s: &str| -> String {
        if args.no_trunc {
            return s.to_string();
        }
        match s.split_once(':') {
            Some((alg, hex)) if hex.len() > 12 => format!("{alg}:{}", &hex[..12]),
            _ => s.to_string(),
        }
    };
    let mut rows = Vec::new();
    let mut records = Vec::new();
    for (i, layer) in image.manifest.layers().iter().enumerate() {
        let diff_id = diff_ids.get(i).cloned().unwrap_or_default();
        let by = created_by.get(i).cloned().unwrap_or_default();
        records.push(serde_json::json!({
            "index": i,
            "digest": layer.digest().to_string(),
            "mediaType": layer.media_type().to_string(),
            "size": layer.size(),
            "diffID": diff_id,
            "createdBy": by,
        }));
        let by = if args.no_trunc || by.chars().count() <= 45 {
            by
        } else {
            by.chars().take(44).collect::<String>() + "…"
        };
        rows.push(vec![
            i.to_string(),
            short(layer.digest().as_ref()),
            layer.media_type().to_string(),
            output::size(layer.size()),
            short(&diff_id),
            by,
        ]);
    }
    if global.json {
        output::json(&records)?;
    } else {
        output::table(
            &[
                "INDEX",
                "DIGEST",
                "MEDIA TYPE",
                "SIZE",
                "DIFF ID",
                "CREATED BY",
            ],
            &rows,
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `img history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The image
    pub image: String,
    /// Show whole commands
    #[arg(long)]
    pub no_trunc: bool,
}

/// Run `img history`: docker's IMAGE CREATED CREATED BY SIZE COMMENT, newest first, from the
/// config's history (an entry that made a layer gets that layer's size; the newest row names
/// the image).
pub fn run_history(global: &Global, args: HistoryArgs) -> Result<ExitCode> {
    let store = super::store(global)?;
    let image = super::image(&store, &args.image)?;
    let layers = image.manifest.layers();
    let id = img_store::digest::short(image.manifest.config().digest()).to_string();
    let mut next_layer = 0;
    let mut rows = Vec::new();
    let mut records = Vec::new();
    for h in image.config.history().clone().unwrap_or_default() {
        let size = if h.empty_layer().unwrap_or(false) {
            0
        } else {
            next_layer += 1;
            layers.get(next_layer - 1).map_or(0, |l| l.size())
        };
        let by = h.created_by().clone().unwrap_or_default();
        records.push(serde_json::json!({
            "created": h.created(),
            "createdBy": by,
            "size": size,
            "comment": h.comment(),
            "emptyLayer": h.empty_layer().unwrap_or(false),
        }));
        let shown = if args.no_trunc || by.chars().count() <= 45 {
            by
        } else {
            by.chars().take(44).collect::<String>() + "…"
        };
        rows.push(vec![
            "<missing>".to_string(),
            output::age(h.created().as_deref()),
            shown,
            output::size(size),
            h.comment().clone().unwrap_or_default(),
        ]);
    }
    rows.reverse();
    records.reverse();
    if let Some(first) = rows.first_mut() {
        first[0] = id;
    }
    if global.json {
        output::json(&records)?;
    } else {
        output::table(
            &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
            &rows,
        );
    }
    Ok(ExitCode::SUCCESS)
}
