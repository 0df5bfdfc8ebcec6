//! `img`: pull, inspect, unpack and run OCI container images without a daemon.
//!
//! This file only parses arguments; each subcommand lives in `commands/<name>.rs` and calls
//! the library crates.

mod commands;
mod format;
mod output;
mod progress;
mod streaming;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Pull, inspect and store OCI container images; no daemon.
#[derive(Debug, Parser)]
#[command(name = "img", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand accepts, before or after its name.
#[derive(Debug, Args, Clone)]
pub struct Global {
    /// The store's root directory (an OCI image layout) [default: /var/lib/img as root,
    /// $XDG_DATA_HOME/img otherwise]
    #[arg(long, global = true, env = "IMG_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Print only what scripts need (a pull prints just the digest)
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Say more about what happens (on stderr); repeat for more
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Print data as JSON
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Pull an image from a registry into the store
    Pull(commands::pull::PullArgs),
    /// List stored images
    #[command(alias = "list")]
    Images(commands::images::ImagesArgs),
    /// Show an image's metadata (--json: its config)
    Inspect(commands::inspect::InspectArgs),
    /// List an image's layers
    Layers(commands::layers::LayersArgs),
    /// Unpack an image into a directory (a flattened rootfs)
    Unpack(commands::unpack::UnpackArgs),
    /// Mount an image: its layers read-only under a fresh writable layer; prints the directory
    Mount(commands::unpack::MountArgs),
    /// Unmount what `img mount` mounted and drop its writable layer
    #[command(alias = "unmount")]
    Umount(commands::unpack::UmountArgs),
    /// Run a command in a new container
    Run(Box<commands::run::RunArgs>),
    /// List containers
    Ps(commands::container::PsArgs),
    /// Print a detached container's output
    Logs(commands::container::LogsArgs),
    /// Stop running containers (SIGTERM, then SIGKILL)
    Stop(commands::container::StopArgs),
    /// Start stopped containers again (detached)
    Start(commands::container::Names),
    /// Send a signal (default KILL) to running containers
    Kill(commands::container::KillArgs),
    /// Remove containers
    Rm(commands::container::RmArgs),
    /// Run a command in a running container
    Exec(commands::container::ExecArgs),
    /// Join a running container's terminal (`run -dt`; ctrl-p ctrl-q detaches) or output
    Attach(commands::container::AttachArgs),
    /// Copy files between a container and the host (CONTAINER:PATH)
    Cp(commands::container::CpArgs),
    /// A running container's processes (the host's ps)
    Top(commands::container::TopArgs),
    /// Live CPU, memory, network and pids of running containers
    Stats(commands::container::StatsArgs),
    /// List a container's published ports
    Port(commands::container::PortArgs),
    /// Wait for containers to stop; print their exit codes
    Wait(commands::container::Names),
    /// Rename a container
    Rename(commands::container::RenameArgs),
    /// Show img's version and what this machine's kernel gives the runtime
    Version,
    /// Manage containers (docker-style)
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Manage named volumes (docker-style)
    #[command(subcommand)]
    Volume(commands::volume::VolumeCommand),
    /// (internal) a detached container's supervisor
    #[command(name = "__supervise", hide = true)]
    Supervise {
        /// The container's directory
        dir: std::path::PathBuf,
    },
    /// (internal) a process joining a running container (`img exec`)
    #[command(name = "__exec", hide = true)]
    ExecInside {
        /// The exec's config, removed once read
        config: std::path::PathBuf,
    },
    /// (internal) a rootless container's port forwarder, inside its network namespace
    #[command(name = "__dial", hide = true)]
    Dial,
    /// (internal) prepare an image's snapshots (rootless: in a user namespace)
    #[command(name = "__snapshots", hide = true)]
    Snapshots {
        /// The image's name in the store
        image: String,
        /// Unpack it flattened into this directory instead
        #[arg(long)]
        into: Option<std::path::PathBuf>,
    },
    /// (internal) a container's first process
    #[command(name = "__init", hide = true)]
    Init {
        /// init.json
        config: std::path::PathBuf,
    },
    /// Make a new image from a container's changes (its writable layer)
    Commit(commands::commit::CommitArgs),
    /// Push a stored image to a registry
    Push(commands::push::PushArgs),
    /// Give a stored image another name
    Tag(commands::tag::TagArgs),
    /// Copy an image between registries, layouts, archives and the store (skopeo's places)
    Copy(commands::copy::CopyArgs),
    /// Write stored images to an archive (docker ≥ 25's format: docker, podman, skopeo read it)
    Save(commands::save::SaveArgs),
    /// Read images from an archive (docker save's, legacy or ≥ 25; oci-archive; gzip/zstd too)
    Load(commands::load::LoadArgs),
    /// Remove image references (blobs stay until `img gc`)
    Rmi(commands::rmi::RmiArgs),
    /// Remove blobs no image reaches
    Gc,
    /// Check credentials against a registry and keep them (docker's config.json)
    Login(commands::login::LoginArgs),
    /// Forget a registry's credentials
    Logout(commands::login::LogoutArgs),
    /// Re-hash every blob and check every image is complete
    Fsck,
    /// Manage images (docker-style aliases)
    #[command(subcommand)]
    Image(ImageCommand),
    /// An image's history: how each layer was made
    History(commands::layers::HistoryArgs),
    /// Disk use and cleanup (docker's system df, system prune)
    #[command(subcommand)]
    System(SystemCommand),
}

#[derive(Debug, Subcommand)]
enum SystemCommand {
    /// What images and containers take on disk, and what could be reclaimed
    Df,
    /// Remove stopped containers and dangling (-a: unused) images
    Prune(commands::prune::PruneArgs),
}

#[derive(Debug, Subcommand)]
enum ContainerCommand {
    /// Show a container's state and configuration
    Inspect(commands::container::InspectArgs),
    /// List containers
    #[command(alias = "list", alias = "ps")]
    Ls(commands::container::PsArgs),
    /// Remove containers
    Rm(commands::container::RmArgs),
    /// Stop containers
    Stop(commands::container::StopArgs),
    /// Start containers
    Start(commands::container::Names),
    /// Send a signal to containers
    Kill(commands::container::KillArgs),
    /// Print a container's output
    Logs(commands::container::LogsArgs),
    /// Run a command in a running container
    Exec(commands::container::ExecArgs),
    /// Join a running container's terminal (`run -dt`; ctrl-p ctrl-q detaches) or output
    Attach(commands::container::AttachArgs),
    /// Copy files between a container and the host
    Cp(commands::container::CpArgs),
    /// A running container's processes
    Top(commands::container::TopArgs),
    /// Live resource use of containers
    Stats(commands::container::StatsArgs),
    /// List a container's published ports
    Port(commands::container::PortArgs),
    /// Wait for containers to stop
    Wait(commands::container::Names),
    /// Rename a container
    Rename(commands::container::RenameArgs),
    /// Make a new image from a container's changes
    Commit(commands::commit::CommitArgs),
    /// Remove stopped containers
    Prune(commands::prune::PruneArgs),
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// List stored images
    #[command(alias = "list")]
    Ls(commands::images::ImagesArgs),
    /// Show an image's metadata
    Inspect(commands::inspect::InspectArgs),
    /// Remove image references
    #[command(alias = "remove")]
    Rm(commands::rmi::RmiArgs),
    /// Pull an image
    Pull(commands::pull::PullArgs),
    /// List an image's layers
    Layers(commands::layers::LayersArgs),
    /// Push an image
    Push(commands::push::PushArgs),
    /// Give an image another name
    Tag(commands::tag::TagArgs),
    /// Write images to an archive
    Save(commands::save::SaveArgs),
    /// Read images from an archive
    Load(commands::load::LoadArgs),
    /// An image's history
    History(commands::layers::HistoryArgs),
    /// Remove dangling (-a: unused) images
    Prune(commands::prune::PruneArgs),
}

fn main() -> ExitCode {
    // Like other command-line tools, end quietly when the reader of our output goes away
    // (`img layers | head`); Rust ignores SIGPIPE by default.
    // SAFETY: setting a signal's disposition to the default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args = commands::run::docker_volume_flag(std::env::args_os().collect());
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        // docker exits 125 when `run`'s flags are wrong; elsewhere usage errors exit 2.
        Err(e) if e.use_stderr() && subcommand(&args) == Some("run") => {
            let _ = e.print();
            return ExitCode::from(125);
        }
        Err(e) => e.exit(),
    };
    let g = &cli.global;
    if let Some(code) = commands::rootless_reexec(g, &cli.command, &args) {
        return code;
    }
    let result = match cli.command {
        Command::Pull(a) | Command::Image(ImageCommand::Pull(a)) => commands::pull::run(g, a),
        Command::Images(a) | Command::Image(ImageCommand::Ls(a)) => commands::images::run(g, a),
        Command::Inspect(a) | Command::Image(ImageCommand::Inspect(a)) => {
            commands::inspect::run(g, a)
        }
        Command::Layers(a) | Command::Image(ImageCommand::Layers(a)) => commands::layers::run(g, a),
        Command::Rmi(a) | Command::Image(ImageCommand::Rm(a)) => commands::rmi::run(g, a),
        Command::Push(a) | Command::Image(ImageCommand::Push(a)) => commands::push::run(g, a),
        Command::Tag(a) | Command::Image(ImageCommand::Tag(a)) => commands::tag::run(g, a),
        Command::Save(a) | Command::Image(ImageCommand::Save(a)) => commands::save::run(g, a),
        Command::Load(a) | Command::Image(ImageCommand::Load(a)) => commands::load::run(g, a),
        Command::Copy(a) => commands::copy::run(g, a),
        Command::Commit(a) | Command::Container(ContainerCommand::Commit(a)) => {
            commands::commit::run(g, a)
        }
        Command::Unpack(a) => commands::unpack::run_unpack(g, a),
        Command::Mount(a) => commands::unpack::run_mount(g, a),
        Command::Umount(a) => commands::unpack::run_umount(g, a),
        Command::Run(a) => commands::run::run(g, *a),
        Command::Ps(a) | Command::Container(ContainerCommand::Ls(a)) => {
            commands::container::run_ps(g, a)
        }
        Command::Logs(a) | Command::Container(ContainerCommand::Logs(a)) => {
            commands::container::run_logs(g, a)
        }
        Command::Stop(a) | Command::Container(ContainerCommand::Stop(a)) => {
            commands::container::run_stop(g, a)
        }
        Command::Start(a) | Command::Container(ContainerCommand::Start(a)) => {
            commands::container::run_start(g, a)
        }
        Command::Rm(a) | Command::Container(ContainerCommand::Rm(a)) => {
            commands::container::run_rm(g, a)
        }
        Command::Kill(a) | Command::Container(ContainerCommand::Kill(a)) => {
            commands::container::run_kill(g, a)
        }
        Command::Container(ContainerCommand::Inspect(a)) => commands::container::run_inspect(g, a),
        Command::Attach(a) | Command::Container(ContainerCommand::Attach(a)) => {
            commands::container::run_attach(g, a)
        }
        Command::Exec(a) | Command::Container(ContainerCommand::Exec(a)) => {
            commands::container::run_exec(g, a)
        }
        Command::ExecInside { config } => img_run::exec::main(&config),
        Command::Cp(a) | Command::Container(ContainerCommand::Cp(a)) => {
            commands::container::run_cp(g, a)
        }
        Command::Top(a) | Command::Container(ContainerCommand::Top(a)) => {
            commands::container::run_top(g, a)
        }
        Command::Stats(a) | Command::Container(ContainerCommand::Stats(a)) => {
            commands::container::run_stats(g, a)
        }
        Command::Port(a) | Command::Container(ContainerCommand::Port(a)) => {
            commands::container::run_port(g, a)
        }
        Command::Wait(a) | Command::Container(ContainerCommand::Wait(a)) => {
            commands::container::run_wait(g, a)
        }
        Command::Rename(a) | Command::Container(ContainerCommand::Rename(a)) => {
            commands::container::run_rename(g, a)
        }
        Command::Version => commands::version::run(g),
        Command::Volume(v) => commands::volume::run(g, v),
        Command::Supervise { dir } => commands::container::run_supervise(&dir),
        Command::Init { config } => img_run::init::main(&config),
        Command::Dial => img_run::ports::dial_main(),
        Command::Snapshots { image, into } => {
            commands::prepare_snapshots(g, &image, into.as_deref())
        }
        Command::Gc => commands::gc::run(g),
        Command::History(a) | Command::Image(ImageCommand::History(a)) => {
            commands::layers::run_history(g, a)
        }
        Command::Container(ContainerCommand::Prune(a)) => {
            commands::prune::run_container_prune(g, a)
        }
        Command::Image(ImageCommand::Prune(a)) => commands::prune::run_image_prune(g, a),
        Command::System(SystemCommand::Prune(a)) => commands::prune::run_system_prune(g, a),
        Command::System(SystemCommand::Df) => commands::prune::run_df(g),
        Command::Login(a) => commands::login::run_login(g, a),
        Command::Logout(a) => commands::login::run_logout(g, a),
        Command::Fsck => commands::fsck::run(g),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            output::error(&e);
            ExitCode::FAILURE
        }
    }
}

/// The subcommand named on the command line: the first word that is not an option (the
/// global `--root` is the only option before it that takes a separate value).
fn subcommand(args: &[std::ffi::OsString]) -> Option<&str> {
    let mut words = args.iter().skip(1).filter_map(|a| a.to_str());
    while let Some(w) = words.next() {
        if w == "--root" {
            words.next();
        } else if !w.starts_with('-') {
            return Some(w);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap's own consistency checks (duplicate flags and the like), which otherwise only
    /// fire when the faulty subcommand is used.
    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_docker_volume_flag() {
        let args = |s: &str| {
            s.split(' ')
                .map(std::ffi::OsString::from)
                .collect::<Vec<_>>()
        };
        let out = super::commands::run::docker_volume_flag(args(
            "img -v run -v /a:/b --name x img sh -v /c:/d",
        ));
        assert_eq!(
            out,
            args("img -v run --volume /a:/b --name x img sh -v /c:/d")
        );
    }
}
