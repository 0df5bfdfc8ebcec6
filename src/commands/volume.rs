//! `img volume create|ls|inspect|rm|prune`: the store's named volumes (`img_run::volumes`).

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::Global;
use crate::output;

/// `img volume …`
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Make a named volume (an empty one; `run -v NAME:/dir` makes it too, filled from the image)
    Create(NameArgs),
    /// List volumes (docker's DRIVER and VOLUME NAME; -q names only)
    #[command(alias = "list")]
    Ls,
    /// A volume's document (docker's JSON array), or a --format template over it
    Inspect(InspectArgs),
    /// Remove volumes (refused while a container uses one)
    #[command(alias = "remove")]
    Rm(NamesArgs),
    /// Remove volumes no container uses (named ones, which all of img's are, only with -a,
    /// as docker ≥ 23)
    Prune(super::prune::PruneArgs),
}

/// A volume's name.
#[derive(Debug, Args)]
pub struct NameArgs {
    /// The name (letters, digits, '_', '.', '-')
    pub name: String,
}

/// Volumes' names.
#[derive(Debug, Args)]
pub struct NamesArgs {
    /// The names
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// Arguments of `img volume inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The name
    pub name: String,
    /// docker's -f/--format: a Go template over the document (`{{.Mountpoint}}`)
    #[arg(short, long)]
    pub format: Option<String>,
}

/// Run `img volume …`.
pub fn run(global: &Global, command: VolumeCommand) -> Result<ExitCode> {
    let store = super::store(global)?;
    let root = store.root();
    match command {
        VolumeCommand::Create(a) => {
            img_run::volumes::create(root, &a.name, true)?;
            println!("{}", a.name);
        }
        VolumeCommand::Ls => {
            let names = img_run::volumes::list(root);
            if global.quiet {
                for n in &names {
                    println!("{n}");
                }
            } else {
                let rows: Vec<Vec<String>> = names
                    .iter()
                    .map(|n| vec!["local".to_string(), n.clone()])
                    .collect();
                output::table(&["DRIVER", "VOLUME NAME"], &rows);
            }
        }
        VolumeCommand::Inspect(a) => {
            let dir = img_run::volumes::dir(root, &a.name);
            if !img_run::volumes::is_name(&a.name) || !dir.is_dir() {
                anyhow::bail!("no such volume: {}", a.name);
            }
            let created = std::fs::metadata(&dir)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| jiff::Timestamp::try_from(t).ok())
                .map(|t| t.to_string());
            let doc = serde_json::json!({
                "Name": a.name,
                "Driver": "local",
                "Mountpoint": img_run::volumes::data(root, &a.name),
                "CreatedAt": created,
                "Labels": {},
                "Scope": "local",
                "Options": {},
                "UsedBy": img_run::volumes::users(root, &a.name),
            });
            return super::inspect::print_document(&doc, a.format.as_deref());
        }
        VolumeCommand::Rm(a) => {
            for name in &a.names {
                img_run::volumes::remove(root, name)?;
                println!("{name}");
            }
        }
        VolumeCommand::Prune(a) => {
            // docker ≥ 23: named volumes only with --all (every volume here is named)
            let unused: Vec<String> = img_run::volumes::list(root)
                .into_iter()
                .filter(|n| a.all && img_run::volumes::users(root, n).is_empty())
                .collect();
            if !a.force
                && !super::prune::confirm("all local volumes not used by at least one container")
            {
                return Ok(ExitCode::SUCCESS);
            }
            if !unused.is_empty() {
                println!("Deleted Volumes:");
            }
            let mut freed = 0;
            for name in &unused {
                freed += super::prune::disk_usage(&img_run::volumes::dir(root, name));
                img_run::volumes::remove(root, name)?;
                println!("{name}");
            }
            if !unused.is_empty() {
                println!();
            }
            println!("Total reclaimed space: {}", output::size(freed));
        }
    }
    Ok(ExitCode::SUCCESS)
}
