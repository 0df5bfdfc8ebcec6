//! `img run`: a container from a stored image (pulled first if needed), docker's flags and
//! exit codes (the command's own; 125 for img's errors, 126 cannot execute, 127 not found).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use img_run::spec::{Device, SeccompChoice};
use img_run::{ContainerState, ContainerStatus, EtcFiles, Io, Network, Port, RunOptions, Volume};

use super::pull::ImageSource;
use crate::Global;

/// Arguments of `img run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Run in the background: print the container id; a small supervisor keeps its log and
    /// exit status
    #[arg(short, long)]
    pub detach: bool,
    /// Publish a port: [IP:][HOST:]CONTAINER (every address unless IP is given; a random
    /// host port unless HOST is)
    #[arg(short, long = "publish", value_name = "[IP:][HOST:]CTR")]
    pub publish: Vec<String>,
    /// User namespace: `remap` maps the container's ids onto img-remap's subordinate range
    /// (/etc/subuid, /etc/subgid), so its root is an unprivileged id on the host; `host`
    /// (the default) shares the host's
    #[arg(long, value_name = "host|remap", value_parser = ["host", "remap"])]
    pub userns: Option<String>,
    /// Run an init as PID 1 that forwards signals to the command and reaps zombies
    /// (docker's --init; img's own init stays, no binary is added to the container)
    #[arg(long)]
    pub init: bool,
    /// Read environment variables from a file (KEY=VALUE lines; # comments)
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Add a line to /etc/hosts: HOST:IP
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub add_host: Vec<String>,
    /// Set a label on the container: KEY=VALUE
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// The signal `img stop` sends first (default: the image's StopSignal, else SIGTERM)
    #[arg(long = "stop-signal", value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Seconds `img stop` waits before SIGKILL (default 10)
    #[arg(long = "stop-timeout", value_name = "SECONDS")]
    pub stop_timeout: Option<u64>,
    /// A health check run inside every interval (`/bin/sh -c CMD`; exit 0 is healthy)
    #[arg(long = "health-cmd", value_name = "CMD")]
    pub health_cmd: Option<String>,
    /// Between health checks (default 30s; 1m30s, 500ms…)
    #[arg(long = "health-interval", value_name = "DURATION")]
    pub health_interval: Option<String>,
    /// A health check taking longer fails (default 30s)
    #[arg(long = "health-timeout", value_name = "DURATION")]
    pub health_timeout: Option<String>,
    /// Failures in a row that make the container unhealthy (default 3)
    #[arg(long = "health-retries", value_name = "N")]
    pub health_retries: Option<u32>,
    /// Failures this early do not count until a check passed (default 0s)
    #[arg(long = "health-start-period", value_name = "DURATION")]
    pub health_start_period: Option<String>,
    /// No health check, not even the image's
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    /// Mount a tmpfs: PATH[:OPTIONS] (docker's default options rw,noexec,nosuid,size=65536k)
    #[arg(long = "tmpfs", value_name = "PATH[:OPTIONS]")]
    pub tmpfs: Vec<String>,
    /// Lower a resource limit: NAME=SOFT[:HARD] (nofile, nproc, core, …; never above img's)
    #[arg(long, value_name = "NAME=SOFT[:HARD]")]
    pub ulimit: Vec<String>,
    /// A DNS server for the container's /etc/resolv.conf
    #[arg(long, value_name = "IP")]
    pub dns: Vec<String>,
    /// A DNS search domain for /etc/resolv.conf
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// A DNS option for /etc/resolv.conf
    #[arg(long = "dns-option", value_name = "OPTION")]
    pub dns_option: Vec<String>,
    /// docker's --mount: type=bind,source=S,target=T[,readonly] or type=tmpfs,target=T[,tmpfs-size=N]
    #[arg(long, value_name = "SPEC")]
    pub mount: Vec<String>,
    /// Restart policy of a detached container: no, on-failure[:N], always, unless-stopped
    #[arg(long, value_name = "POLICY")]
    pub restart: Option<String>,
    /// Publish every port the image exposes, each on a random host port
    #[arg(short = 'P', long)]
    pub publish_all: bool,
    /// A name for the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to pass ours on)
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// User (name|uid[:group|gid]) inside the container
    #[arg(short, long)]
    pub user: Option<String>,
    /// Replace the image's entrypoint
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Container hostname [default: the short container id]
    #[arg(long)]
    pub hostname: Option<String>,
    /// Keep stdin open
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a terminal
    #[arg(short, long)]
    pub tty: bool,
    /// Network: none (a private namespace with lo, the default) or host
    #[arg(long, default_value = "none", value_parser = ["none", "host", "private"])]
    pub network: String,
    /// Memory limit (bytes, or with a k, m, g suffix)
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Maximum number of processes
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// CPUs (0.5 = half a CPU)
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Bind mount HOST:CONTAINER[:ro] (also -v, as docker spells it, among run's options)
    #[arg(long = "volume", value_name = "HOST:CTR[:ro]")]
    pub volume: Vec<String>,
    /// Mount the root filesystem read-only
    #[arg(long)]
    pub read_only: bool,
    /// Add a capability (docker's names: NET_ADMIN, CAP_SYS_TIME, ALL)
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability (docker's names, ALL)
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Security options: no-new-privileges[=true|false], seccomp=unconfined,
    /// seccomp=PROFILE.json (docker's format)
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// Give the container every capability, no seccomp filter, access to every device and
    /// nothing masked. WARNING: as with docker, a privileged container's root can take over
    /// the host; use it only for images you trust
    #[arg(long)]
    pub privileged: bool,
    /// Give the container a host device: HOST[:CONTAINER][:PERMS] (PERMS of r, w, m)
    #[arg(long = "device", value_name = "HOST[:CTR][:rwm]")]
    pub device: Vec<String>,
    /// Write an OCI runtime bundle (config.json + rootfs) to DIR instead of running
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    #[command(flatten)]
    pub source: ImageSource,
    /// The image
    pub image: String,
    /// The command and its arguments (replace the image's Cmd)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Options of `img run` that take a value (so the scanner below knows where the image is).
const VALUE_OPTIONS: [&str; 45] = [
    "--cap-add",
    "--cap-drop",
    "--security-opt",
    "--device",
    "--name",
    "-e",
    "--env",
    "-w",
    "--workdir",
    "-u",
    "--user",
    "--entrypoint",
    "--hostname",
    "--network",
    "-m",
    "--memory",
    "--pids-limit",
    "--cpus",
    "--volume",
    "--bundle",
    "--platform",
    "--creds",
    "--authfile",
    "--registries-conf",
    "--cert-dir",
    "--retry",
    "--stall-timeout",
    "--jobs",
    "--root",
    "-p",
    "--publish",
    "--userns",
    "--env-file",
    "--add-host",
    "-l",
    "--label",
    "--stop-signal",
    "--stop-timeout",
    "--tmpfs",
    "--restart",
    "--ulimit",
    "--dns",
    "--dns-search",
    "--dns-option",
    "--mount",
];

/// docker spells `--volume` as `-v`, which is our global `--verbose` everywhere else: among
/// `run`'s options (before the image), `-v` is rewritten to `--volume`.
pub fn docker_volume_flag(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let Some(run) = args.iter().position(|a| a == "run") else {
        return args;
    };
    let mut out: Vec<std::ffi::OsString> = args[..=run].to_vec();
    let mut rest = args[run + 1..].iter();
    while let Some(a) = rest.next() {
        let text = a.to_string_lossy();
        if text == "-v" {
            out.push("--volume".into());
            out.extend(rest.next().cloned());
        } else if VALUE_OPTIONS.contains(&text.as_ref()) {
            out.push(a.clone());
            out.extend(rest.next().cloned());
        } else if text.starts_with('-') {
            out.push(a.clone());
        } else {
            // The image: everything after it is the command.
            out.push(a.clone());
            out.extend(rest.cloned());
            break;
        }
    }
    out
}

/// Run `img run`; img's own failures exit 125, as docker's do.
pub fn run(global: &Global, args: RunArgs) -> Result<ExitCode> {
    match run_inner(global, args) {
        Ok(code) => Ok(ExitCode::from(u8::try_from(code).unwrap_or(255))),
        Err(e) => {
            let code = e
                .downcast_ref::<img_run::Error>()
                .and_then(|r| match r {
                    img_run::Error::Init { code, .. } => Some(*code),
                    _ => None,
                })
                .unwrap_or(125);
            crate::output::error(&e);
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(125)))
        }
    }
}

/// What `--security-opt` said.
#[derive(Debug, Default, PartialEq)]
struct SecurityOpts {
    no_new_privileges: bool,
    seccomp: SeccompChoice,
}

impl SecurityOpts {
    /// docker's spellings: `no-new-privileges[=true|false]` (also with `:`),
    /// `seccomp=unconfined|PROFILE.json`; AppArmor and SELinux options that only turn
    /// something off are accepted (img has neither), others are refused.
    fn parse(opts: &[String]) -> Result<SecurityOpts> {
        let mut out = SecurityOpts::default();
        for opt in opts {
            let (key, value) = match opt.split_once(['=', ':']) {
                Some((k, v)) => (k, Some(v)),
                None => (opt.as_str(), None),
            };
            match (key, value) {
                ("no-new-privileges", None | Some("true")) => out.no_new_privileges = true,
                ("no-new-privileges", Some("false")) => out.no_new_privileges = false,
                ("seccomp", Some("unconfined")) => out.seccomp = SeccompChoice::Unconfined,
                ("seccomp", Some(path)) if !path.is_empty() => {
                    out.seccomp = SeccompChoice::Profile(PathBuf::from(path));
                }
                ("apparmor", Some("unconfined")) | ("label", Some("disable")) => {}
                _ => bail!(
                    "invalid --security-opt {opt:?}: expected no-new-privileges[=true|false], \
                     seccomp=unconfined or seccomp=PROFILE.json"
                ),
            }
        }
        Ok(out)
    }
}

fn parse_size(s: &str) -> Result<i64> {
    let lower = s.trim().to_ascii_lowercase();
    let (digits, unit) = match lower.trim_end_matches('b').char_indices().last() {
        Some((i, c @ ('k' | 'm' | 'g'))) => (&lower[..i], c),
        _ => (lower.trim_end_matches('b'), ' '),
    };
    let n: f64 = digits
        .parse()
        .with_context(|| format!("invalid size {s:?}"))?;
    let mult = match unit {
        'k' => 1024.0,
        'm' => 1024.0 * 1024.0,
        'g' => 1024.0 * 1024.0 * 1024.0,
        _ => 1.0,
    };
    Ok((n * mult) as i64)
}

/// A new container id: 64 hex digits, docker's shape.
fn new_id() -> String {
    let seed = format!(
        "{:?}-{}-{:?}",
        std::time::SystemTime::now(),
        std::process::id(),
        std::thread::current().id()
    );
    img_store::digest::sha256(seed.as_bytes())
        .digest()
        .to_string()
}

fn run_inner(global: &Global, args: RunArgs) -> Result<i32> {
    // docker's check, for a terminal joined now (-dt's is joined by `img attach`)
    if args.tty && !args.detach && !std::io::stdin().is_terminal() {
        bail!("the input device is not a TTY (-t needs a terminal on stdin)");
    }
    let security = SecurityOpts::parse(&args.security_opt)?;
    let restart = args
        .restart
        .as_deref()
        .map(img_run::restart::RestartPolicy::parse)
        .transpose()?
        .filter(|p| *p != img_run::restart::RestartPolicy::No);
    if restart.is_some() && (!args.detach || args.rm) {
        bail!("--restart needs -d and cannot be combined with --rm (as with docker)");
    }
    if !img_run::userns::is_root() {
        // Rootless: what needs host root is refused, not dropped, before anything is pulled;
        // limits only where a cgroup v2 subtree is delegated (make_rootless keeps them then).
        let asked = [
            args.memory.is_some(),
            args.pids_limit.is_some(),
            args.cpus.is_some(),
        ];
        let limits: Vec<(&str, &str)> = img_run::cgroup::delegated::LIMITS
            .into_iter()
            .zip(asked)
            .filter_map(|(limit, asked)| asked.then_some(limit))
            .collect();
        let keep = if args.bundle.is_some() {
            img_run::userns::RootlessLimits::Refuse
        } else {
            img_run::userns::RootlessLimits::Delegated
        };
        img_run::userns::check_rootless_limits(&limits, keep)?;
        for (asked, flag) in [
            (args.userns.as_deref() == Some("remap"), "--userns=remap"),
            (args.privileged, "--privileged"),
            (!args.device.is_empty(), "--device"),
        ] {
            if asked {
                bail!("{flag} needs root (a rootless container has only what its user has)");
            }
        }
    }
    let (store, image) = args.source.image_announced(global, &args.image)?;
    let healthcheck = health_check(&args, &image)?;
    let id = new_id();
    let short = id[..12].to_string();
    let network = if args.network == "host" {
        Network::Host
    } else {
        Network::Private
    };
    let mut volumes: Vec<Volume> = args
        .volume
        .iter()
        .map(|v| Volume::parse(v))
        .collect::<Result<_, _>>()?;
    let mut tmpfs = args.tmpfs.clone();
    for m in &args.mount {
        match img_run::spec::parse_mount(m)? {
            Ok(volume) => volumes.push(volume),
            Err(t) => tmpfs.push(t),
        }
    }
    for v in &mut volumes {
        v.resolve(store.root())?;
    }
    for server in &args.dns {
        if server.parse::<std::net::IpAddr>().is_err() {
            bail!("invalid --dns {server:?}: expected an IP address");
        }
    }
    let mut env = Vec::new();
    for file in &args.env_file {
        env.extend(read_env_file(file)?);
    }
    env.extend(args.env.iter().cloned());
    let options = RunOptions {
        cmd: args.command.clone(),
        entrypoint: args.entrypoint.clone(),
        env,
        add_hosts: args
            .add_host
            .iter()
            .map(|h| parse_add_host(h))
            .collect::<Result<_>>()?,
        tmpfs,
        dns: args.dns.clone(),
        dns_search: args.dns_search.clone(),
        dns_options: args.dns_option.clone(),
        ulimits: args
            .ulimit
            .iter()
            .map(|u| img_run::spec::parse_ulimit(u))
            .collect::<Result<_, _>>()?,
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        hostname: args.hostname.clone().unwrap_or_else(|| short.clone()),
        network,
        memory: args.memory.as_deref().map(parse_size).transpose()?,
        pids: args.pids_limit,
        cpus: args.cpus,
        volumes,
        read_only: args.read_only,
        tty: args.tty,
        cap_add: args.cap_add.clone(),
        cap_drop: args.cap_drop.clone(),
        no_new_privileges: security.no_new_privileges,
        seccomp: security.seccomp,
        privileged: args.privileged,
        init: args.init,
        remap: match args.userns.as_deref() {
            Some("remap") => Some(img_run::userns::remap_mappings(Path::new("/"))?),
            _ => None,
        },
        devices: args
            .device
            .iter()
            .map(|d| Device::parse(d))
            .collect::<Result<_, _>>()?,
    };
    let mut ports = args
        .publish
        .iter()
        .map(|p| Port::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    if args.publish_all {
        ports.extend(exposed_ports(&image)?);
    }

    if let Some(bundle) = &args.bundle {
        if args.init {
            bail!("--init is img's own init, which a bundle run by another runtime does not have");
        }
        // runc fills no volume: a new one is empty
        for v in options.volumes.iter().filter_map(|v| v.name.as_deref()) {
            img_run::volumes::create(store.root(), v, true)?;
        }
        return write_bundle(&store, &image, &options, bundle).map(|()| 0);
    }

    img_run::reap(store.root());
    let existing = ContainerState::list(store.root());
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| img_run::names::generate(|n| existing.iter().any(|(_, s)| s.name == n)));
    img_run::state::check_name(&name)?;
    if existing.iter().any(|(_, s)| s.name == name) {
        bail!("the container name {name:?} is already in use");
    }
    // Held until state.json names the snapshots (gc keeps every container's): a gc between
    // their preparation and the record would take them if the image were removed meanwhile.
    let gc_guard = store.pull_guard()?;
    let rootless = !img_run::userns::is_root();
    // Rootless where overlayfs cannot be mounted in a user namespace: a flattened copy.
    let flattened = rootless && !super::rootless_overlay(global)?;
    let missing = || -> Result<bool> {
        let chain = img_store::chain_ids(&image.diff_ids()?);
        Ok(!chain.iter().all(|c| store.has_snapshot(c)))
    };
    let lowers = if flattened {
        Vec::new()
    } else {
        if rootless && missing()? {
            // Prepared where the image's owners can be set (see rootless_reexec).
            super::snapshots_in_user_namespace(global, &image.name, None)
                .with_context(|| format!("preparing the snapshots of {}", image.name))?;
        }
        img_unpack::prepare_snapshots(&store, &image)
            .with_context(|| format!("preparing the snapshots of {}", image.name))?
    };
    // Locked until state.json is written: a run killed before leaves a directory the next
    // reap removes.
    let (dir, creating) = ContainerState::create_dir(store.root(), &id)?;
    // Foreground --rm removes the directory here; a detached one's supervisor does.
    let guard = ContainerDir::create(&dir, args.rm && !args.detach)?;
    if flattened {
        let rootfs = dir.join(img_run::supervise::FLATTENED);
        super::snapshots_in_user_namespace(global, &image.name, Some(&rootfs))
            .with_context(|| format!("unpacking {} for the container", image.name))?;
    }
    let etc = write_etc_files(&options, &dir)?;
    let mut spec = img_run::build_spec(&image.config, &options, &etc)?;
    if !img_run::userns::is_root() {
        spec = rootless_spec(spec)?;
    }
    let config = dir.join("config.json");
    std::fs::write(&config, serde_json::to_vec_pretty(&spec)?)
        .with_context(|| format!("writing {}", config.display()))?;
    let state = ContainerState {
        id: id.clone(),
        name,
        image: image.name.clone(),
        command: spec
            .process()
            .as_ref()
            .and_then(|p| p.args().clone())
            .unwrap_or_default(),
        status: ContainerStatus::Created,
        pid: None,
        // Ours until it runs (a foreground run supervises it; a detached one's supervisor
        // records itself): a reap sees whether the maker of a "created" record is alive.
        supervisor: Some(img_run::state::Recorded::of(std::process::id())),
        exit_code: None,
        error: None,
        created: jiff::Timestamp::now().to_string(),
        started: None,
        finished: None,
        ports,
        network,
        auto_remove: args.rm,
        lowers,
        labels: args
            .label
            .iter()
            .map(|l| match l.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (l.clone(), String::new()),
            })
            .collect(),
        stop_signal: args.stop_signal.clone().or_else(|| {
            image
                .config
                .config()
                .as_ref()
                .and_then(|c| c.stop_signal().clone())
        }),
        stop_timeout: args.stop_timeout,
        restart_policy: restart.map(|p| p.as_string()),
        restart_count: 0,
        stopped_by_user: false,
        healthcheck,
    };
    state.save(&dir)?;
    drop(creating);
    drop(gc_guard);

    if args.detach {
        std::mem::forget(guard);
        let state = super::container::start_detached(&dir)?;
        println!("{}", state.id);
        return Ok(0);
    }
    let io = if args.tty {
        Io::Tty
    } else {
        Io::Inherit {
            stdin: args.interactive,
            // docker keeps a foreground container's output for `logs`, until `rm`
            log: (!args.rm).then(|| dir.join("log")),
        }
    };
    let exe = std::env::current_exe().context("finding our own binary")?;
    let code = img_run::supervise(&dir, io, exe, |_| {})?;
    drop(guard);
    Ok(code)
}

/// `--health-cmd` and its flags, else the image's `HEALTHCHECK` (unless `--no-healthcheck`).
fn health_check(
    args: &RunArgs,
    image: &img_store::Image,
) -> Result<Option<img_run::health::HealthCheck>> {
    use img_run::health::{HealthCheck, parse_duration};
    if args.no_healthcheck {
        if args.health_cmd.is_some() {
            bail!("--no-healthcheck conflicts with --health-cmd");
        }
        return Ok(None);
    }
    let duration = |d: &Option<String>| d.as_deref().map(parse_duration).transpose();
    let (interval, timeout, start) = (
        duration(&args.health_interval)?,
        duration(&args.health_timeout)?,
        duration(&args.health_start_period)?,
    );
    if let Some(cmd) = &args.health_cmd {
        return Ok(Some(HealthCheck::new(
            vec!["CMD-SHELL".into(), cmd.clone()],
            interval,
            timeout,
            args.health_retries,
            start,
        )));
    }
    let config: serde_json::Value = serde_json::from_slice(&image.config_json).unwrap_or_default();
    Ok(HealthCheck::of_image(&config).map(|c| HealthCheck {
        interval: interval.unwrap_or(c.interval),
        timeout: timeout.unwrap_or(c.timeout),
        retries: args.health_retries.unwrap_or(c.retries),
        start_period: start.unwrap_or(c.start_period),
        ..c
    }))
}

/// The spec of a container an ordinary user runs: the user as its root and its subordinate
/// ids from 1, in a user namespace that owns the others; limits only where a cgroup v2 subtree
/// is delegated to the user (else refused, saying why).
fn rootless_spec<S: serde::Serialize + serde::de::DeserializeOwned>(spec: S) -> Result<S> {
    let (uids, gids) = img_run::userns::rootless_mappings_of_caller()?;
    let mut value = serde_json::to_value(&spec)?;
    img_run::userns::make_rootless(
        &mut value,
        &uids,
        &gids,
        img_run::userns::RootlessLimits::Delegated,
    )?;
    Ok(serde_json::from_value(value)?)
}

/// The container's directory, removed on drop when `--rm` asked for it.
struct ContainerDir {
    dir: PathBuf,
    remove: bool,
}

impl ContainerDir {
    fn create(dir: &Path, remove: bool) -> Result<ContainerDir> {
        for sub in ["upper", "work", "merged"] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        }
        Ok(ContainerDir {
            dir: dir.to_path_buf(),
            remove,
        })
    }
}

impl Drop for ContainerDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = ContainerState::remove_dir(&self.dir);
        }
    }
}

/// `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf` for the container, in its directory.
fn write_etc_files(options: &RunOptions, dir: &Path) -> Result<EtcFiles> {
    let (hostname, network) = (options.hostname.as_str(), options.network);
    let etc = EtcFiles {
        hosts: dir.join("hosts"),
        hostname: dir.join("hostname"),
        resolv_conf: dir.join("resolv.conf"),
    };
    let mut hosts = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
    );
    for (host, ip) in &options.add_hosts {
        hosts.push_str(&format!("{ip}\t{host}\n"));
    }
    let dns_given = !(options.dns.is_empty()
        && options.dns_search.is_empty()
        && options.dns_options.is_empty());
    let resolv = if dns_given {
        // docker: the given servers, search domains and options replace the host's
        let mut text = String::new();
        for s in &options.dns {
            text.push_str(&format!("nameserver {s}\n"));
        }
        if !options.dns_search.is_empty() {
            text.push_str(&format!("search {}\n", options.dns_search.join(" ")));
        }
        if !options.dns_options.is_empty() {
            text.push_str(&format!("options {}\n", options.dns_options.join(" ")));
        }
        text
    } else {
        match network {
            Network::Host => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            Network::Private => String::new(),
        }
    };
    for (path, text) in [
        (&etc.hosts, hosts),
        (&etc.hostname, format!("{hostname}\n")),
        (&etc.resolv_conf, resolv),
    ] {
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        if let Some((uids, gids)) = &options.remap {
            // The container's root may write them, as docker gives them to it.
            let (uid, gid) = (
                img_run::idmap::outside(uids, 0),
                img_run::idmap::outside(gids, 0),
            );
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .with_context(|| format!("chown {}", path.display()))?;
        }
    }
    Ok(etc)
}

/// `--bundle DIR`: `DIR/rootfs` (the flattened image) and `DIR/config.json`, which runc runs.
fn write_bundle(
    store: &img_store::Store,
    image: &img_store::Image,
    options: &RunOptions,
    bundle: &Path,
) -> Result<()> {
    std::fs::create_dir_all(bundle).with_context(|| format!("creating {}", bundle.display()))?;
    // Paths written into config.json are absolute: runc resolves relative ones inside the
    // bundle, not where we were started.
    let bundle = &std::fs::canonicalize(bundle)
        .with_context(|| format!("resolving {}", bundle.display()))?;
    let rootfs = bundle.join("rootfs");
    let etc = write_etc_files(options, bundle)?;
    let mut spec = serde_json::to_value(img_run::build_spec(&image.config, options, &etc)?)?;
    if !img_run::userns::is_root() {
        // For an unprivileged runc: a user namespace mapping us (and our subordinate ids).
        // Refused limits are refused before anything is unpacked.
        let (uids, gids) = img_run::userns::caller_mappings(Path::new("/"));
        img_run::userns::make_rootless(
            &mut spec,
            &uids,
            &gids,
            img_run::userns::RootlessLimits::Refuse,
        )?;
    }
    img_unpack::unpack_image(store, image, &rootfs)
        .with_context(|| format!("unpacking {} into {}", image.name, rootfs.display()))?;
    if let Some((uids, gids)) = &options.remap {
        // The bundle's own copy: its owners moved into the range, so that inside the
        // namespace runc makes, each file has the owner the image gave it.
        img_run::idmap::shift_tree(&rootfs, uids, gids)
            .with_context(|| format!("moving the owners of {} into the range", rootfs.display()))?;
    }
    // runc knows nothing of our user annotation: resolve it against the bundle's rootfs.
    let user_spec = spec["annotations"][img_run::spec::USER_ANNOTATION]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let user = img_run::user::resolve(&rootfs, &user_spec)?;
    spec["process"]["user"] = serde_json::json!({
        "uid": user.uid, "gid": user.gid, "additionalGids": user.groups,
    });
    let env = spec["process"]["env"].as_array_mut();
    if let Some(env) = env
        && !env
            .iter()
            .any(|e| e.as_str().is_some_and(|e| e.starts_with("HOME=")))
    {
        env.push(format!("HOME={}", user.home).into());
    }
    let path = bundle.join("config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&spec)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("{}", bundle.display());
    Ok(())
}

/// `-P`: the image's `ExposedPorts` (`80/tcp`), each on a random host port of every address;
/// a udp one cannot be published.
fn exposed_ports(image: &img_store::Image) -> Result<Vec<Port>> {
    let exposed = image
        .config
        .config()
        .as_ref()
        .and_then(|c| c.exposed_ports().clone())
        .unwrap_or_default();
    exposed
        .iter()
        .map(|p| Port::parse(p).with_context(|| "publishing the image's exposed ports (-P)"))
        .collect()
}

/// `--env-file`: `KEY=VALUE` lines (a bare `KEY` takes our value, as docker does); blank
/// lines and `#` comments skipped.
fn read_env_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the env file {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = line.split('=').next().unwrap_or_default();
        if key.is_empty() || key.contains(char::is_whitespace) {
            bail!(
                "{}:{}: invalid variable name {key:?}",
                path.display(),
                n + 1
            );
        }
        out.push(line.to_string());
    }
    Ok(out)
}

/// `--add-host HOST:IP` (docker also takes `HOST=IP`); the IP may be IPv6.
fn parse_add_host(text: &str) -> Result<(String, String)> {
    let (host, ip) = text
        .split_once('=')
        .or_else(|| text.split_once(':'))
        .with_context(|| format!("invalid --add-host {text:?}: expected HOST:IP"))?;
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || ip.parse::<std::net::IpAddr>().is_err() {
        bail!("invalid --add-host {text:?}: expected HOST:IP");
    }
    Ok((host.to_string(), ip.to_string()))
}
