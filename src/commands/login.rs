//! `img login` / `img logout`: check credentials against a registry and keep them as docker
//! does (docker's config.json or `--authfile`, mode 0600, or the file's credential helper).

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use img_registry::{Credentials, DOCKER_HUB};

use super::pull::RegistryArgs;
use crate::Global;

/// Arguments of `img login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry (`host:port`) [default: docker.io]
    pub registry: Option<String>,
    /// The user name
    #[arg(short, long)]
    pub username: String,
    /// The password (prefer --password-stdin: a password here shows in `ps`)
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from standard input
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub registry_args: RegistryArgs,
}

/// Arguments of `img logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry (`host:port`) [default: docker.io]
    pub registry: Option<String>,
    #[command(flatten)]
    pub registry_args: RegistryArgs,
}

/// The registry part of what the user typed (`https://host:5000/` → `host:5000`).
fn registry_name(input: Option<&str>) -> String {
    let Some(input) = input else {
        return DOCKER_HUB.to_string();
    };
    let bare = input
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let host = bare.split('/').next().unwrap_or(bare);
    match host {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
        h => h.to_string(),
    }
}

/// Run `img login`: nothing is written unless the registry accepts the credentials.
pub fn run_login(global: &Global, args: LoginArgs) -> Result<ExitCode> {
    let registry = registry_name(args.registry.as_deref());
    let password = match (&args.password, args.password_stdin) {
        (Some(p), _) => p.clone(),
        (None, true) => {
            let mut p = String::new();
            std::io::stdin()
                .read_to_string(&mut p)
                .context("reading the password from standard input")?;
            p.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) if std::io::stdin().is_terminal() => {
            bail!("no password: give --password-stdin (and pipe it) or --password")
        }
        (None, false) => bail!("no password: give --password-stdin or --password"),
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    let creds = Credentials {
        username: args.username.clone(),
        password,
    };
    let client = args.registry_args.client(global)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // The error already says "login to REGISTRY: …".
    runtime.block_on(client.check_login(&registry, &creds))?;
    let file = client.options().auth_files.login_file();
    let place = img_registry::auth::store(&file, &registry, &creds)
        .with_context(|| format!("saving the credentials for {registry}"))?;
    if !global.quiet {
        println!("Login Succeeded (credentials kept in {place})");
    }
    Ok(ExitCode::SUCCESS)
}

/// Run `img logout`.
pub fn run_logout(global: &Global, args: LogoutArgs) -> Result<ExitCode> {
    let registry = registry_name(args.registry.as_deref());
    let client = args.registry_args.client(global)?;
    let file = client.options().auth_files.login_file();
    if img_registry::auth::erase(&file, &registry)
        .with_context(|| format!("removing the credentials for {registry}"))?
    {
        if !global.quiet {
            println!("Removed login credentials for {registry}");
        }
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("not logged in to {registry} (in {})", file.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_fold_like_docker() {
        assert_eq!(registry_name(None), "docker.io");
        assert_eq!(
            registry_name(Some("https://index.docker.io/v1/")),
            "docker.io"
        );
        assert_eq!(registry_name(Some("127.0.0.1:5001")), "127.0.0.1:5001");
        assert_eq!(registry_name(Some("http://host:5000/")), "host:5000");
    }
}
