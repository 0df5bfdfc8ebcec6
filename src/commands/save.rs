//! `img save`: stored images as one archive (docker ≥ 25's format, read by docker, podman and
//! skopeo as `docker-archive:` and `oci-archive:`).

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use img_store::Store;
use img_store::archive::{self, SaveImage};

use crate::Global;

/// Arguments of `img save`.
#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Write the archive to FILE (`-` for stdout) [default: stdout, unless it is a terminal]
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The stored images (references or image IDs)
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// Run `img save`.
pub fn run(global: &Global, args: SaveArgs) -> Result<ExitCode> {
    let to_stdout = args.output.as_deref().is_none_or(|o| o == Path::new("-"));
    if to_stdout && std::io::stdout().is_terminal() {
        bail!("refusing to write an archive to a terminal: give -o FILE or redirect stdout");
    }
    let store = super::store(global)?;
    let images = args
        .images
        .iter()
        .map(|input| to_save(&store, input))
        .collect::<Result<Vec<_>>>()?;
    if to_stdout {
        let stdout = std::io::stdout();
        let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
        archive::save(&store, &images, &mut out).context("saving to stdout")?;
        out.flush().context("writing to stdout")?;
    } else if let Some(path) = &args.output {
        write_file(&store, &images, path)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Save into `path`, removing what was written when the save fails.
pub fn write_file(store: &Store, images: &[SaveImage], path: &Path) -> Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let result = archive::save(store, images, &mut out)
        .map_err(anyhow::Error::from)
        .and_then(|_| {
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            Ok(())
        })
        .with_context(|| format!("saving to {}", path.display()));
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    result
}

/// The stored image `input` names, saved under its name (docker's short spelling in
/// `RepoTags`); by image ID it gets every name the store has for it.
pub fn to_save(store: &Store, input: &str) -> Result<SaveImage> {
    let found = super::stored_names(store, input)?;
    let name = found.names[0].clone();
    let mut save = SaveImage::named(&name);
    save.repo_tags = found
        .names
        .iter()
        .filter(|n| !n.contains('@'))
        .map(|n| familiar(n))
        .collect();
    Ok(save)
}

/// docker's short spelling of a name: without `docker.io/` and `library/`.
pub fn familiar(name: &str) -> String {
    let short = name.strip_prefix("docker.io/").unwrap_or(name);
    short.strip_prefix("library/").unwrap_or(short).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn familiar_names_as_docker_writes_them() {
        assert_eq!(super::familiar("docker.io/library/redis:7"), "redis:7");
        assert_eq!(super::familiar("docker.io/team/redis:7"), "team/redis:7");
        assert_eq!(
            super::familiar("127.0.0.1:5000/library/x:1"),
            "127.0.0.1:5000/library/x:1"
        );
    }
}
