//! Containers after `img run`: `ps`, `logs`, `stop`, `kill`, `start`, `rm`, `container
//! inspect`, and the detached supervisor (`img __supervise DIR`). No daemon: each command reads
//! the container's `state.json`; the supervisor process records the exit. A recorded pid is
//! signalled only through [`img_run::state::Recorded::signal`], which checks that it is still
//! the recorded process (its start time), never by its number alone.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use img_run::lifecycle;
use img_run::state::NotSignalled;
use img_run::{ContainerState, ContainerStatus};

use crate::{Global, output};

/// The binds img itself adds to every container (left out of inspect's Mounts, as docker does).
const ETC_BINDS: [&str; 3] = ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"];

/// Arguments of `img ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (default: running ones); `-q` (global) prints only ids
    #[arg(short, long)]
    pub all: bool,
    /// `--format` (fields ID, Image, Command, CreatedAt, RunningFor, Ports, State, Status,
    /// Names, Labels), `--filter` (status, name, label, ancestor, id, exited: a status or exited
    /// filter looks at all containers, as docker's does), `--no-trunc`
    #[command(flatten)]
    pub list: crate::format::ListArgs,
}

/// The headers of `ps`' columns, by field.
const PS_HEADERS: [(&str, &str); 10] = [
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Ports", "PORTS"),
    ("State", "STATE"),
    ("Status", "STATUS"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
];

/// Arguments naming containers.
#[derive(Debug, Args)]
pub struct Names {
    /// Containers, by name or (a prefix of) id
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// Arguments of `img stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait after the stop signal before SIGKILL (default: the container's
    /// --stop-timeout, else 10)
    #[arg(short, long)]
    pub time: Option<u64>,
    /// The signal sent first (default: the container's --stop-signal, else SIGTERM)
    #[arg(short, long)]
    pub signal: Option<String>,
    #[command(flatten)]
    pub names: Names,
}

/// Arguments of `img kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// The signal: a name (`KILL`, `SIGTERM`, …) or a number
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    #[command(flatten)]
    pub names: Names,
}

/// Arguments of `img rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill a running container first
    #[arg(short, long)]
    pub force: bool,
    #[command(flatten)]
    pub names: Names,
}

/// Arguments of `img logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new output until the container exits
    #[arg(short, long)]
    pub follow: bool,
    /// The container
    pub container: String,
}

/// Arguments of `img exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep stdin open
    #[arg(short, long)]
    pub interactive: bool,
    /// A terminal for the command
    #[arg(short, long)]
    pub tty: bool,
    /// Run it in the background
    #[arg(short, long)]
    pub detach: bool,
    /// The user (name or uid[:gid]) instead of the container's
    #[arg(short, long)]
    pub user: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to pass ours on)
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// The working directory instead of the container's
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// The container
    pub container: String,
    /// The command and its arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Arguments of `img top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// The container
    pub container: String,
    /// Options for ps (default -ef), as docker passes them
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_options: Vec<String>,
}

/// Arguments of `img stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print one table and end (default: refresh every second)
    #[arg(long)]
    pub no_stream: bool,
    /// Containers (default: every running one)
    pub containers: Vec<String>,
}

/// Arguments of `img cp`.
#[derive(Debug, Args)]
pub struct CpArgs {
    /// Keep owners (uid and gid) as they are at the source
    #[arg(short, long)]
    pub archive: bool,
    /// CONTAINER:PATH or a host path
    pub source: String,
    /// CONTAINER:PATH or a host path
    pub destination: String,
}

/// Arguments of `img port`.
#[derive(Debug, Args)]
pub struct PortArgs {
    /// The container
    pub container: String,
    /// Only this container port (`80` or `80/tcp`)
    pub port: Option<String>,
}

/// Arguments of `img rename`.
#[derive(Debug, Args)]
pub struct RenameArgs {
    /// The container
    pub container: String,
    /// Its new name
    pub new_name: String,
}

/// Arguments of `img container inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The container
    pub container: String,
    /// docker's -f/--format: a Go template applied to the document (`{{.State.Pid}}`);
    /// without it, the document as a JSON array, as docker prints it
    #[arg(short, long)]
    pub format: Option<String>,
}

fn root(global: &Global) -> Result<PathBuf> {
    Ok(super::store(global)?.root().to_path_buf())
}

fn find(root: &Path, what: &str) -> Result<(PathBuf, ContainerState)> {
    Ok(ContainerState::find(root, what)?)
}

/// Start the supervisor of the container in `dir` in the background and wait until its
/// command runs (or fails to start).
pub fn start_detached(dir: &Path) -> Result<ContainerState> {
    let exe = std::env::current_exe().context("finding our own binary")?;
    Ok(lifecycle::start_detached(dir, &exe)?)
}

/// `img __supervise DIR`: run the container in DIR to its end, its output in DIR/log.
pub fn run_supervise(dir: &Path) -> Result<ExitCode> {
    let exe = std::env::current_exe().context("finding our own binary")?;
    let mut result;
    loop {
        let began = Instant::now();
        result = img_run::supervise(dir, img_run::Io::Log(dir.join("log")), exe.clone(), |_| {});
        // The restart policy, as the record has it now (`img stop` marks it stopped).
        let Ok(state) = ContainerState::load(dir) else {
            break;
        };
        let policy = state
            .restart_policy
            .as_deref()
            .map(img_run::restart::RestartPolicy::parse)
            .transpose()?
            .unwrap_or_default();
        let code = match (&result, state.exit_code) {
            (Ok(code), _) => *code,
            (Err(_), _) if state.status == ContainerStatus::Created => break,
            (Err(_), code) => code.unwrap_or(125),
        };
        // Decided under the container's lock: an `img stop` marks it at the same time.
        let (state, again) = ContainerState::update(dir, |s| {
            let again = policy.restarts(code, s.restart_count, s.stopped_by_user);
            if again {
                s.status = ContainerStatus::Restarting;
            }
            again
        })?;
        if !again {
            break;
        }
        std::thread::sleep(img_run::restart::backoff(
            state.restart_count,
            began.elapsed(),
        ));
        // Stopped or removed while we waited: no more runs.
        let Ok((_, stopped)) = ContainerState::update(dir, |s| {
            if s.stopped_by_user {
                s.status = ContainerStatus::Exited;
            } else {
                s.restart_count += 1;
                s.status = ContainerStatus::Created;
            }
            s.stopped_by_user
        }) else {
            break;
        };
        if stopped {
            break;
        }
    }
    match (&result, ContainerState::load(dir)) {
        // It never started (a busy port, a mount that failed): the record says why, for
        // `run -d` or `start` waiting on it (which also removes an `--rm` one then).
        (Err(e), Ok(state)) if state.status == ContainerStatus::Created => {
            let _ = ContainerState::update(dir, |s| {
                s.status = ContainerStatus::Exited;
                s.exit_code = Some(125);
                s.error = Some(format!("{e:#}"));
                s.finished = Some(jiff::Timestamp::now().to_string());
            });
        }
        (_, Ok(state)) if state.auto_remove => {
            let _ = ContainerState::remove_dir(dir);
        }
        _ => {}
    }
    result?;
    Ok(ExitCode::SUCCESS)
}

/// Run `img ps`.
pub fn run_ps(global: &Global, args: PsArgs) -> Result<ExitCode> {
    let root = root(global)?;
    img_run::reap(&root);
    let filters = crate::format::Filters::parse(
        &args.list.filter,
        &[
            "status", "name", "label", "ancestor", "id", "exited", "health",
        ],
    )?;
    let all = args.all || filters.has("status") || filters.has("exited");
    let list: Vec<(PathBuf, ContainerState)> = ContainerState::list(&root)
        .into_iter()
        .filter(|(_, s)| all || s.is_running())
        .filter(|(dir, s)| {
            let state = state_word(s);
            filters.all(|key, value| match key {
                "health" => health_of(s, dir).as_deref().unwrap_or("none") == value,
                "status" => state == value,
                "name" => s.name.contains(value),
                "label" => crate::format::label_matches(&s.labels, value),
                "ancestor" => {
                    let familiar = super::save::familiar(&s.image);
                    [s.image.as_str(), familiar.as_str()].iter().any(|i| {
                        *i == value || i.strip_prefix(value).is_some_and(|t| t.starts_with(':'))
                    })
                }
                "id" => s.id.starts_with(value),
                _ => {
                    state == "exited"
                        && s.exit_code.map(|c| c.to_string()).as_deref() == Some(value)
                }
            })
        })
        .collect();
    let id = |s: &ContainerState| {
        if args.list.no_trunc {
            s.id.clone()
        } else {
            s.id[..12].to_string()
        }
    };
    if global.quiet {
        for (_, s) in &list {
            println!("{}", id(s));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if global.json {
        let states: Vec<&ContainerState> = list.iter().map(|(_, s)| s).collect();
        output::json(&states)?;
        return Ok(ExitCode::SUCCESS);
    }
    let items: Vec<serde_json::Value> = list
        .iter()
        .map(|(dir, s)| {
            let mut command = s.command.join(" ");
            if !args.list.no_trunc && command.chars().count() > 24 {
                command = command.chars().take(23).collect::<String>() + "…";
            }
            serde_json::json!({
                "ID": id(s),
                "Image": super::save::familiar(&s.image),
                "Command": format!("\"{command}\""),
                "CreatedAt": s.created,
                "RunningFor": output::age(Some(&s.created)),
                "Ports": s.ports.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                "State": state_word(s),
                "Status": status(s, dir),
                "Names": s.name,
                "Labels": crate::format::labels_text(&s.labels),
            })
        })
        .collect();
    // docker's column order
    let default = "table {{.ID}}\\t{{.Image}}\\t{{.Command}}\\t{{.RunningFor}}\\t{{.Status}}\\t{{.Ports}}\\t{{.Names}}";
    let format = crate::format::Format::parse(args.list.format.as_deref().unwrap_or(default))?;
    print!("{}", format.render(&items, &PS_HEADERS)?);
    Ok(ExitCode::SUCCESS)
}

/// docker's STATUS column: `Up 5 seconds`, `Exited (0) 3 minutes ago`, `Created`.
fn status(s: &ContainerState, dir: &Path) -> String {
    if s.is_running() {
        let since = output::age(s.started.as_deref());
        let health = match health_of(s, dir).as_deref() {
            Some("starting") => " (health: starting)".to_string(),
            Some(h) => format!(" ({h})"),
            None => String::new(),
        };
        return format!("Up {}{health}", since.trim_end_matches(" ago"));
    }
    match s.status {
        ContainerStatus::Created => "Created".into(),
        ContainerStatus::Restarting => format!(
            "Restarting ({}) {}",
            s.exit_code.map_or("?".into(), |c| c.to_string()),
            output::age(s.finished.as_deref())
        ),
        _ => format!(
            "Exited ({}) {}",
            s.exit_code.map_or("?".into(), |c| c.to_string()),
            output::age(s.finished.as_deref())
        ),
    }
}

/// A running container's health (`starting`, `healthy`, `unhealthy`), when it is checked.
fn health_of(s: &ContainerState, dir: &Path) -> Option<String> {
    s.healthcheck.as_ref()?;
    Some(img_run::health::Health::load(dir).map_or_else(|| "starting".into(), |h| h.status))
}

/// Run `img logs`.
pub fn run_logs(global: &Global, args: LogsArgs) -> Result<ExitCode> {
    let root = root(global)?;
    let (dir, _) = find(&root, &args.container)?;
    let path = dir.join("log");
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "{}: no log: it ran with a terminal (-t), whose output is not kept",
                args.container
            )
        }
        Err(e) => return Err(e).with_context(|| path.display().to_string()),
    };
    copy_log(&dir, &mut file, args.follow)?;
    Ok(ExitCode::SUCCESS)
}

/// Copy the container's log from where `file` is to stdout; with `follow`, until the
/// container is no longer running.
fn copy_log(dir: &Path, file: &mut std::fs::File, follow: bool) -> Result<()> {
    let path = dir.join("log");
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| path.display().to_string())?;
        if n > 0 {
            out.write_all(&buf[..n])?;
            continue;
        }
        out.flush()?;
        if !follow || !ContainerState::load(dir).is_ok_and(|s| s.is_running()) {
            // One more read: what was written between the last read and the exit.
            std::io::copy(file, &mut out)?;
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Say on stderr that a container's recorded pid is another process's now.
fn warn_recycled(what: &str, e: &NotSignalled) {
    eprintln!("img: warning: container {what}: {e}");
}

/// Run `f` for each container named, printing its name when it succeeds and the error when
/// it fails; fails if one did.
fn each(names: &[String], mut f: impl FnMut(&str) -> Result<()>) -> ExitCode {
    let mut failed = false;
    for what in names {
        match f(what) {
            Ok(()) => println!("{what}"),
            Err(e) => {
                output::error(&e);
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Run `img stop`: SIGTERM (or the container's stop signal), then SIGKILL after `-t` seconds.
pub fn run_stop(global: &Global, args: StopArgs) -> Result<ExitCode> {
    let root = root(global)?;
    let signal = args
        .signal
        .as_deref()
        .map(lifecycle::signal_number)
        .transpose()?;
    Ok(each(&args.names.containers, |what| {
        let (dir, _) = find(&root, what)?;
        Ok(lifecycle::stop(&dir, signal, args.time, |e| {
            warn_recycled(what, e)
        })?)
    }))
}

/// Run `img kill`: send a signal (default SIGKILL) to running containers; it does not wait.
pub fn run_kill(global: &Global, args: KillArgs) -> Result<ExitCode> {
    let root = root(global)?;
    let signal = lifecycle::signal_number(&args.signal)?;
    Ok(each(&args.names.containers, |what| {
        let (dir, _) = find(&root, what)?;
        Ok(lifecycle::kill(&dir, signal)?)
    }))
}

/// Run `img start`: the container again, detached, on its kept writable layer.
pub fn run_start(global: &Global, args: Names) -> Result<ExitCode> {
    let root = root(global)?;
    img_run::reap(&root);
    let exe = std::env::current_exe().context("finding our own binary")?;
    for what in &args.containers {
        let (dir, _) = find(&root, what)?;
        lifecycle::start(&dir, &exe, |e| warn_recycled(what, e))
            .with_context(|| format!("starting {what}"))?;
        println!("{what}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Run `img rm`.
pub fn run_rm(global: &Global, args: RmArgs) -> Result<ExitCode> {
    let root = root(global)?;
    img_run::reap(&root);
    Ok(each(&args.names.containers, |what| {
        let (dir, _) = find(&root, what)?;
        Ok(lifecycle::remove(&dir, args.force, |e| {
            warn_recycled(what, e)
        })?)
    }))
}

/// Run `img container inspect`.
pub fn run_inspect(global: &Global, args: InspectArgs) -> Result<ExitCode> {
    let root = root(global)?;
    img_run::reap(&root);
    let (dir, state) = find(&root, &args.container)?;
    let spec: serde_json::Value = std::fs::read(dir.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let running = state.is_running();
    let doc = serde_json::json!({
        "Id": state.id,
        "Name": state.name,
        "Image": state.image,
        "State": {
            "Status": if running { "running" } else { state.status.as_str() },
            "Running": running,
            "Pid": if running { state.pid.map(|p| p.pid) } else { None },
            "ExitCode": state.exit_code,
            "Error": state.error,
            "StartedAt": state.started,
            "FinishedAt": state.finished,
            "Health": state.healthcheck.as_ref().map(|_| {
                let h = img_run::health::Health::load(&dir).unwrap_or_default();
                serde_json::json!({
                    "Status": health_of(&state, &dir).unwrap_or_default(),
                    "FailingStreak": h.failing_streak,
                    "Log": h.log.iter().map(|p| serde_json::json!({
                        "Start": p.start, "End": p.end, "ExitCode": p.exit_code, "Output": p.output,
                    })).collect::<Vec<_>>(),
                })
            }),
        },
        "Created": state.created,
        "Config": {
            "Cmd": spec["process"]["args"],
            "Env": spec["process"]["env"],
            "WorkingDir": spec["process"]["cwd"],
            "User": spec["annotations"][img_run::spec::USER_ANNOTATION],
            "Hostname": spec["hostname"],
            "Tty": spec["process"]["terminal"],
            "Labels": state.labels,
            "StopSignal": state.stop_signal,
            "StopTimeout": state.stop_timeout,
        },
        "RestartCount": state.restart_count,
        "Mounts": spec["mounts"].as_array().map(|m| m.iter().filter(|m| m["type"] == "bind" && !ETC_BINDS.contains(&m["destination"].as_str().unwrap_or_default())).cloned().collect::<Vec<_>>()),
        "HostConfig": {
            "NetworkMode": match state.network { img_run::Network::Host => "host", img_run::Network::Private => "none" },
            "Memory": spec["linux"]["resources"]["memory"]["limit"],
            "PidsLimit": spec["linux"]["resources"]["pids"]["limit"],
            "CpuQuota": spec["linux"]["resources"]["cpu"]["quota"],
            "CpuPeriod": spec["linux"]["resources"]["cpu"]["period"],
            "PortBindings": state.ports.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "AutoRemove": state.auto_remove,
            "ReadonlyRootfs": spec["root"]["readonly"],
        },
        "GraphDriver": {
            "Name": "overlay",
            "Data": {
                "LowerDir": state.lowers,
                "UpperDir": dir.join("upper"),
                "MergedDir": dir.join("merged"),
            },
        },
    });
    if global.json {
        output::json(&doc)?;
        return Ok(ExitCode::SUCCESS);
    }
    super::inspect::print_document(&doc, args.format.as_deref())
}

/// docker's one-word state: created, running, restarting, exited.
fn state_word(s: &ContainerState) -> &'static str {
    if s.is_running() {
        "running"
    } else if s.status == ContainerStatus::Running {
        "exited"
    } else {
        s.status.as_str()
    }
}

/// Run `img port`: docker's lines, `80/tcp -> 0.0.0.0:8080` (only the host side when a port
/// is named).
pub fn run_port(global: &Global, args: PortArgs) -> Result<ExitCode> {
    let root = root(global)?;
    let (_, state) = find(&root, &args.container)?;
    let wanted = match &args.port {
        None => None,
        Some(p) => {
            let number = p.strip_suffix("/tcp").unwrap_or(p);
            Some(number.parse::<u16>().map_err(|_| {
                anyhow::anyhow!("invalid port {p:?}: expected a number (tcp ports only)")
            })?)
        }
    };
    let mut any = false;
    for port in &state.ports {
        if wanted.is_some_and(|w| w != port.container_port) {
            continue;
        }
        for address in port.host_addresses() {
            any = true;
            match wanted {
                Some(_) => println!("{address}:{}", port.host_port),
                None => println!(
                    "{}/tcp -> {address}:{}",
                    port.container_port, port.host_port
                ),
            }
        }
    }
    if let (Some(w), false) = (wanted, any) {
        bail!(
            "no public port '{w}/tcp' published for container {}",
            args.container
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `img attach`.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// The container (running)
    pub container: String,
}

/// Run `img attach`: with a terminal (`run -dt`), ours in raw mode joined to the container's
/// (ctrl-p ctrl-q detaches, leaving it running); without, its output from now on. Either
/// way, until it ends, with its exit code.
pub fn run_attach(global: &Global, args: AttachArgs) -> Result<ExitCode> {
    let root = root(global)?;
    img_run::reap(&root);
    let (dir, state) = find(&root, &args.container)?;
    if !state.is_running() {
        bail!("you cannot attach to a stopped container, start it first");
    }
    let spec: serde_json::Value = std::fs::read(dir.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if spec["process"]["terminal"] != true {
        let path = dir.join("log");
        let mut file = std::fs::File::open(&path).with_context(|| path.display().to_string())?;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0))?;
        copy_log(&dir, &mut file, true)?;
        let code = lifecycle::wait(&dir)?;
        return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
    }
    use img_run::attach::{Client, Frame, Keys};
    use std::io::IsTerminal;
    let client = std::sync::Arc::new(Client::connect(&dir)?);
    let size = || img_run::tty::window_size().map(|(rows, cols)| Frame::Size(rows, cols));
    if let Some(frame) = size() {
        client.send(&frame)?;
    }
    let raw = std::io::stdin()
        .is_terminal()
        .then(img_run::tty::RawMode::enter);
    img_run::runtime::block_signals();
    let winch = client.clone();
    // (is_running above: there is a pid)
    if let Some(pid) = state.pid {
        // Through its recorded identity: once it has exited, its pid may be another's.
        img_run::runtime::forward_signals_with(
            Box::new(move |sig| {
                let _ = pid.signal(sig);
            }),
            Some(Box::new(move || {
                if let Some(frame) = size() {
                    let _ = winch.send(&frame);
                }
            })),
        );
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel::<bool>();
    let mut output = client.output()?;
    let ended = done_tx.clone();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut output, &mut std::io::stdout());
        let _ = ended.send(false);
    });
    let input = client.clone();
    std::thread::spawn(move || {
        let mut keys = Keys::default();
        let mut buf = [0u8; 4096];
        let mut stdin = std::io::stdin();
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 {
                return;
            }
            let (bytes, detached) = keys.feed(&buf[..n]);
            if !bytes.is_empty() && input.send(&Frame::Input(bytes)).is_err() {
                return;
            }
            if detached {
                let _ = done_tx.send(true);
                return;
            }
        }
    });
    let detached = done_rx.recv().unwrap_or(false);
    drop(raw);
    let _ = std::io::stdout().flush();
    if detached {
        return Ok(ExitCode::SUCCESS);
    }
    let code = lifecycle::wait(&dir)?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// Run `img wait`: block until each container stops, printing its exit code (docker's).
pub fn run_wait(global: &Global, args: Names) -> Result<ExitCode> {
    let root = root(global)?;
    let mut failed = false;
    for what in &args.containers {
        let code = find(&root, what).and_then(|(dir, _)| Ok(lifecycle::wait(&dir)?));
        match code {
            Ok(code) => println!("{code}"),
            Err(e) => {
                output::error(&e);
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Run `img rename`.
pub fn run_rename(global: &Global, args: RenameArgs) -> Result<ExitCode> {
    let root = root(global)?;
    img_run::state::check_name(&args.new_name)?;
    let (dir, state) = find(&root, &args.container)?;
    if state.name == args.new_name {
        bail!(
            "renaming container {}: it is already called {:?}",
            args.container,
            args.new_name
        );
    }
    if ContainerState::list(&root)
        .iter()
        .any(|(_, s)| s.name == args.new_name)
    {
        bail!("the container name {:?} is already in use", args.new_name);
    }
    ContainerState::update(&dir, |s| s.name = args.new_name)?;
    Ok(ExitCode::SUCCESS)
}

/// Run `img exec`: the command in the running container, with its confinement (see
/// `img_run::exec`); exits with the command's code.
pub fn run_exec(global: &Global, args: ExecArgs) -> Result<ExitCode> {
    use std::io::IsTerminal;
    let root = root(global)?;
    let (dir, state) = find(&root, &args.container)?;
    let pid = match state.pid {
        Some(pid) if state.is_running() => pid,
        _ => bail!("container {} is not running", args.container),
    };
    if args.tty && !args.detach && !std::io::stdin().is_terminal() {
        bail!("the input device is not a TTY (-t needs a terminal on stdin)");
    }
    let env = args
        .env
        .iter()
        .map(|e| match e.split_once('=') {
            Some(_) => e.clone(),
            None => format!("{e}={}", std::env::var(e).unwrap_or_default()),
        })
        .collect();
    let config = img_run::exec::ExecConfig {
        id: state.id.clone(),
        spec: dir.join("config.json"),
        pid: pid.pid,
        start_time: pid.start_time,
        args: args.command.clone(),
        env,
        user: args.user.clone(),
        workdir: args.workdir.clone(),
        tty: args.tty && !args.detach,
    };
    let path = img_run::exec::write_config(&dir, &config)?;
    let exe = std::env::current_exe().context("finding our own binary")?;
    let mut cmd = Command::new(exe);
    cmd.arg("__exec").arg(&path);
    if args.detach {
        lifecycle::detached(&mut cmd);
        cmd.spawn().context("starting img __exec")?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut console = None;
    if config.tty {
        let (ours, theirs) = img_run::tty::console_socket()?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&theirs);
        // SAFETY: dup2 between fork and exec, onto the descriptor __exec reads.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(fd, img_run::init::CONSOLE_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        console = Some((ours, theirs));
    } else if !args.interactive {
        cmd.stdin(Stdio::null());
    }
    img_run::runtime::block_signals();
    let mut child = cmd.spawn().context("starting img __exec")?;
    let mut output = None;
    let mut _raw = None;
    match console {
        Some((ours, theirs)) => {
            drop(theirs);
            let master = img_run::tty::receive_master(&ours)?;
            img_run::tty::resize(&master);
            _raw = Some(img_run::tty::RawMode::enter());
            let winch = master.try_clone().context("pty")?;
            img_run::runtime::forward_signals(
                child.id(),
                Some(Box::new(move || img_run::tty::resize(&winch))),
            );
            output = Some(img_run::tty::proxy(master)?);
        }
        None => img_run::runtime::forward_signals(child.id(), None),
    }
    let status = child.wait().context("waiting for img __exec")?;
    if let Some(out) = output {
        let _ = out.join();
    }
    let code = status.code().unwrap_or(125);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(125)))
}

/// Run `img top`: the host's `ps` (default `-ef`), only the container's processes (those of
/// its cgroup), as docker does.
pub fn run_top(global: &Global, args: TopArgs) -> Result<ExitCode> {
    let root = root(global)?;
    let (_, state) = find(&root, &args.container)?;
    if !state.is_running() {
        bail!("container {} is not running", args.container);
    }
    let pids = state.pids();
    let options = if args.ps_options.is_empty() {
        vec!["-ef".to_string()]
    } else {
        args.ps_options.clone()
    };
    let out = Command::new("ps")
        .args(&options)
        .output()
        .context("running ps (Debian's procps)")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}",
            options.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let column = header
        .split_whitespace()
        .position(|c| c == "PID")
        .with_context(|| format!("ps {} prints no PID column", options.join(" ")))?;
    println!("{header}");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(column)
            .and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            println!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// docker's binary sizes for stats: `1.5MiB`.
fn binary_size(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.2}{}", units[unit])
    }
}

/// Bytes received and sent on the interfaces of process `pid`'s network namespace, `lo`
/// left out (as docker counts).
fn net_io(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            if name.trim() == "lo" {
                return None;
            }
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            Some((*f.first()?, *f.get(8)?))
        })
        .fold((0, 0), |(r, t), (a, b)| (r + a, t + b))
}

/// Run `img stats`: CPU %, memory usage / limit, network and pids of running containers, from
/// their cgroups (v1, v2 or hybrid) and /proc.
pub fn run_stats(global: &Global, args: StatsArgs) -> Result<ExitCode> {
    let root = root(global)?;
    let total_memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024);
    let pick = || -> Result<Vec<ContainerState>> {
        if args.containers.is_empty() {
            Ok(ContainerState::list(&root)
                .into_iter()
                .map(|(_, s)| s)
                .filter(|s| s.is_running())
                .collect())
        } else {
            args.containers
                .iter()
                .map(|c| Ok(find(&root, c)?.1))
                .collect()
        }
    };
    let sample = |list: &[ContainerState]| -> Vec<img_run::cgroup::Usage> {
        list.iter()
            .map(|s| img_run::cgroup::Cgroup::of_container(&s.id, s.pid.map(|p| p.pid)).usage())
            .collect()
    };
    let interval = Duration::from_millis(if args.no_stream { 500 } else { 1000 });
    let mut list = pick()?;
    let mut before = sample(&list);
    let mut at = Instant::now();
    loop {
        std::thread::sleep(interval);
        let now = sample(&list);
        let elapsed = at.elapsed().as_nanos().max(1) as f64;
        let rows: Vec<Vec<String>> = list
            .iter()
            .zip(before.iter().zip(&now))
            .map(|(s, (a, b))| {
                let running = s.is_running();
                let cpu = match (a.cpu_ns, b.cpu_ns, running) {
                    (Some(x), Some(y), true) => {
                        format!("{:.2}%", y.saturating_sub(x) as f64 / elapsed * 100.0)
                    }
                    _ => "--".into(),
                };
                let limit = b.memory_limit.unwrap_or(total_memory);
                let (mem, mem_pct) = match (b.memory, running) {
                    (Some(m), true) => (
                        format!("{} / {}", binary_size(m), binary_size(limit)),
                        format!("{:.2}%", m as f64 / limit.max(1) as f64 * 100.0),
                    ),
                    _ => ("-- / --".into(), "--".into()),
                };
                let net = match s.pid {
                    Some(p) if running => {
                        let (rx, tx) = net_io(p.pid);
                        format!("{} / {}", output::size(rx), output::size(tx))
                    }
                    _ => "-- / --".into(),
                };
                vec![
                    s.id[..12].to_string(),
                    s.name.clone(),
                    cpu,
                    mem,
                    mem_pct,
                    net,
                    b.pids
                        .filter(|_| running)
                        .map_or("--".into(), |p| p.to_string()),
                ]
            })
            .collect();
        if !args.no_stream {
            // docker's refresh: clear the screen, home the cursor
            print!("\x1b[2J\x1b[H");
        }
        output::table(
            &[
                "CONTAINER ID",
                "NAME",
                "CPU %",
                "MEM USAGE / LIMIT",
                "MEM %",
                "NET I/O",
                "PIDS",
            ],
            &rows,
        );
        if args.no_stream {
            return Ok(ExitCode::SUCCESS);
        }
        std::io::stdout().flush().ok();
        if args.containers.is_empty() {
            list = pick()?;
            before = sample(&list);
        } else {
            before = now;
        }
        at = Instant::now();
    }
}

/// `CONTAINER:PATH`, when `arg` names a container of `root` that way (a host path with a
/// colon stays a host path when no container has the name before it).
fn container_path(root: &Path, arg: &str) -> Option<(PathBuf, ContainerState, PathBuf)> {
    let (name, path) = arg.split_once(':')?;
    if name.is_empty() || name.contains('/') {
        return None;
    }
    let (dir, state) = find(root, name).ok()?;
    let path = if path.starts_with('/') {
        PathBuf::from(path)
    } else {
        Path::new("/").join(path)
    };
    Some((dir, state, path))
}

/// Run `img cp`: between the host and a container, running or stopped (its layers mounted
/// for the copy), paths inside resolved in its root (see `img_run::copy`).
pub fn run_cp(global: &Global, args: CpArgs) -> Result<ExitCode> {
    let root = root(global)?;
    let from = container_path(&root, &args.source);
    let to = container_path(&root, &args.destination);
    let ((dir, state, inside), outward) = match (from, to) {
        (Some(c), None) => (c, true),
        (None, Some(c)) => (c, false),
        (Some(_), Some(_)) => {
            bail!("img cp copies between the host and a container, not between containers")
        }
        (None, None) => bail!(
            "img cp: one of {:?} and {:?} must be CONTAINER:PATH naming a container",
            args.source,
            args.destination
        ),
    };
    let copy = |container_root: &Path| -> Result<()> {
        if outward {
            img_run::copy::copy_out(
                container_root,
                &inside,
                Path::new(&args.destination),
                args.archive,
            )?;
        } else {
            img_run::copy::copy_in(
                Path::new(&args.source),
                container_root,
                &inside,
                args.archive,
            )?;
        }
        Ok(())
    };
    let running = state
        .pid
        .filter(|p| state.is_running() && p.check().is_ok());
    match running {
        // Its root as it sees it, through its PID 1.
        Some(pid) => copy(Path::new(&format!("/proc/{}/root", pid.pid))),
        None => {
            // Stopped: its layers and writable layer mounted for the copy, then unmounted.
            let merged = dir.join("merged");
            img_unpack::overlay::mount_overlay(
                &state.lowers,
                &dir.join("upper"),
                &dir.join("work"),
                &merged,
            )
            .with_context(|| format!("mounting the layers of {}", args.source))?;
            let result = copy(&merged);
            let _ = img_unpack::overlay::unmount_path(&merged);
            result
        }
    }
    .with_context(|| format!("copying {} to {}", args.source, args.destination))?;
    Ok(ExitCode::SUCCESS)
}
