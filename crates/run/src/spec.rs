//! From an image config and docker-style flags to an OCI runtime [`Spec`]: the one interface
//! between "what to run" and the runtime, also written out as a bundle that runc can run.

use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::Spec;
use serde_json::{Value, json};

use crate::{Error, Result};

/// The annotation carrying `--user` (or the image's `User`) until it is resolved against the
/// image's `/etc/passwd` inside the container.
pub const USER_ANNOTATION: &str = "io.img.user";
/// The annotation that asks init to stay PID 1 (`--init`): `"true"`.
pub const INIT_ANNOTATION: &str = "io.img.init";

/// docker's default capability set.
pub const DEFAULT_CAPS: [&str; 14] = crate::capabilities::DEFAULT;

/// Paths docker hides from a container (moby's `oci/defaults.go`, docker 28), plus every
/// `/sys/devices/system/cpu/cpu*/thermal_throttle` (see [`masked_paths`]).
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths docker makes read-only in a container.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// docker's masked paths with the `thermal_throttle` directory of each CPU this machine has
/// (docker expands that glob on the host, as here: the container's sysfs is the same kernel's).
pub fn masked_paths() -> Vec<String> {
    let mut paths: Vec<String> = MASKED_PATHS.iter().map(|p| p.to_string()).collect();
    let cpus = std::fs::read_dir("/sys/devices/system/cpu")
        .into_iter()
        .flatten()
        .flatten();
    let mut throttles: Vec<String> = cpus
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("cpu"))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|e| e.path().join("thermal_throttle"))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    throttles.sort();
    paths.extend(throttles);
    paths
}

/// Which seccomp profile the container gets (`--security-opt seccomp=…`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SeccompChoice {
    /// docker's default profile.
    #[default]
    Default,
    /// None (`seccomp=unconfined`).
    Unconfined,
    /// A profile in docker's JSON format.
    Profile(PathBuf),
}

/// A host device given to the container (`--device HOST[:CTR][:PERMS]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The host's node.
    pub host: PathBuf,
    /// Where it appears in the container.
    pub container: PathBuf,
    /// What the device cgroup allows: some of `r`, `w`, `m`.
    pub access: String,
    /// `c` or `b`.
    pub kind: char,
    /// Major number.
    pub major: i64,
    /// Minor number.
    pub minor: i64,
    /// The host node's permission bits.
    pub mode: u32,
}

impl Device {
    /// Parse docker's `HOST[:CTR][:PERMS]`; the host path must be a device node.
    pub fn parse(s: &str) -> Result<Device> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let bad = |why: &str| Error::Config(format!("invalid device {s:?}: {why}"));
        let parts: Vec<&str> = s.split(':').collect();
        let is_access = |p: &str| !p.is_empty() && p.chars().all(|c| "rwm".contains(c));
        let (host, container, access) = match parts[..] {
            [h] => (h, h, "rwm"),
            [h, a] if is_access(a) => (h, h, a),
            [h, c] => (h, c, "rwm"),
            [h, c, a] if is_access(a) => (h, c, a),
            _ => return Err(bad("expected HOST[:CONTAINER][:rwm]")),
        };
        if !host.starts_with('/') || !container.starts_with('/') {
            return Err(bad("both paths must be absolute"));
        }
        let meta = std::fs::metadata(host).map_err(|e| bad(&format!("{host}: {e}")))?;
        let kind = if meta.file_type().is_char_device() {
            'c'
        } else if meta.file_type().is_block_device() {
            'b'
        } else {
            return Err(bad(&format!("{host} is not a device node")));
        };
        let rdev = meta.rdev();
        Ok(Device {
            host: host.into(),
            container: container.into(),
            access: access.into(),
            kind,
            major: i64::from(libc::major(rdev)),
            minor: i64::from(libc::minor(rdev)),
            mode: meta.mode() & 0o7777,
        })
    }
}

/// Which network namespace the container gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Network {
    /// A private namespace with only `lo` (up): docker's `none`, and our default.
    #[default]
    Private,
    /// The host's.
    Host,
}

/// A bind mount from the host (`-v HOST:CTR[:ro]`), or of a named volume (`-v NAME:CTR`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Volume {
    /// The host path (a named volume's `_data`, once [`Volume::resolve`] has placed it).
    pub host: PathBuf,
    /// Where it appears in the container.
    pub container: String,
    /// Mounted read-only.
    pub read_only: bool,
    /// The named volume's name, for one.
    #[serde(default)]
    pub name: Option<String>,
}

impl Volume {
    /// Parse `HOST:CTR[:ro|rw]` (the host path absolute and there) or `NAME:CTR[:ro|rw]` (a
    /// named volume, see [`crate::volumes`]).
    pub fn parse(s: &str) -> Result<Volume> {
        let parts: Vec<&str> = s.split(':').collect();
        let (host, container, read_only) = match parts[..] {
            [h, c] => (h, c, false),
            [h, c, "ro"] => (h, c, true),
            [h, c, "rw"] => (h, c, false),
            _ => {
                return Err(Error::Config(format!(
                    "invalid volume {s:?}: expected HOST:CONTAINER[:ro] or NAME:CONTAINER[:ro]"
                )));
            }
        };
        if crate::volumes::is_name(host) && container.starts_with('/') {
            return Ok(Volume {
                host: PathBuf::new(),
                container: container.to_string(),
                read_only,
                name: Some(host.to_string()),
            });
        }
        if !host.starts_with('/') || !container.starts_with('/') {
            return Err(Error::Config(format!(
                "invalid volume {s:?}: both paths must be absolute"
            )));
        }
        if !Path::new(host).exists() {
            return Err(Error::Config(format!(
                "invalid volume {s:?}: {host} does not exist"
            )));
        }
        Ok(Volume {
            host: PathBuf::from(host),
            container: container.to_string(),
            read_only,
            name: None,
        })
    }

    /// A named volume made (if new) in the store at `root`, and its `_data` as the host path.
    pub fn resolve(&mut self, root: &Path) -> Result<()> {
        if let Some(name) = &self.name {
            crate::volumes::create(root, name, false)?;
            self.host = crate::volumes::data(root, name);
        }
        Ok(())
    }
}

/// What the user asked for on the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Replaces the image's `Cmd` when not empty.
    pub cmd: Vec<String>,
    /// Replaces the image's `Entrypoint` (and clears its `Cmd`); `Some("")` clears it.
    pub entrypoint: Option<String>,
    /// `KEY=VALUE`, or `KEY` to take the value from our own environment.
    pub env: Vec<String>,
    /// Replaces the image's `WorkingDir`.
    pub workdir: Option<String>,
    /// Replaces the image's `User`.
    pub user: Option<String>,
    /// The container's hostname.
    pub hostname: String,
    /// Network namespace.
    pub network: Network,
    /// Memory limit in bytes.
    pub memory: Option<i64>,
    /// Maximum number of processes.
    pub pids: Option<i64>,
    /// CPUs (a fraction is a quota: 0.5 = half of one CPU).
    pub cpus: Option<f64>,
    /// Bind mounts.
    pub volumes: Vec<Volume>,
    /// The root filesystem is mounted read-only.
    pub read_only: bool,
    /// Give the process a terminal.
    pub tty: bool,
    /// `--cap-add` (docker's names, `ALL`).
    pub cap_add: Vec<String>,
    /// `--cap-drop`.
    pub cap_drop: Vec<String>,
    /// `--security-opt no-new-privileges`: off by default, as with docker, so setuid and
    /// file-capability programs work within the bounding set.
    pub no_new_privileges: bool,
    /// `--security-opt seccomp=…`.
    pub seccomp: SeccompChoice,
    /// `--privileged`: every capability, no seccomp, every device, nothing masked.
    pub privileged: bool,
    /// `--device`.
    pub devices: Vec<Device>,
    /// `--userns=remap`: a user namespace mapping the container's ids (uids, gids) onto a
    /// subordinate range, so its root is an unprivileged id on the host.
    pub remap: Option<(Vec<crate::userns::IdMap>, Vec<crate::userns::IdMap>)>,
    /// `--init`: init stays PID 1, forwarding signals to the command and reaping zombies.
    pub init: bool,
    /// `--add-host`: (host, ip) lines added to `/etc/hosts`.
    pub add_hosts: Vec<(String, String)>,
    /// `--tmpfs PATH[:OPTIONS]`.
    pub tmpfs: Vec<String>,
    /// `--ulimit`: (name as `RLIMIT_NOFILE`, soft, hard), only ever lowering ours.
    pub ulimits: Vec<(String, u64, u64)>,
    /// `--dns`, `--dns-search`, `--dns-option`: the container's `/etc/resolv.conf`.
    pub dns: Vec<String>,
    /// Search domains.
    pub dns_search: Vec<String>,
    /// Resolver options.
    pub dns_options: Vec<String>,
}

/// docker's `--mount`: `type=bind,source=S,target=T[,readonly]` becomes a [`Volume`],
/// `type=tmpfs,target=T[,tmpfs-size=N][,tmpfs-mode=M]` a `--tmpfs` argument.
pub fn parse_mount(text: &str) -> Result<std::result::Result<Volume, String>> {
    let bad = |why: &str| Error::Config(format!("invalid --mount {text:?}: {why}"));
    let mut kind = "volume";
    let (mut source, mut target, mut readonly) = (None, None, false);
    let mut tmpfs_options = Vec::new();
    for field in text.split(',') {
        let (key, value) = field.split_once('=').unwrap_or((field, ""));
        match key {
            "type" => kind = value,
            "source" | "src" => source = Some(value),
            "target" | "destination" | "dst" => target = Some(value),
            "readonly" | "ro" => readonly = value.is_empty() || value == "true" || value == "1",
            "tmpfs-size" => tmpfs_options.push(format!("size={value}")),
            "tmpfs-mode" => tmpfs_options.push(format!("mode={value}")),
            _ => return Err(bad(&format!("unknown field {key:?}"))),
        }
    }
    let target = target.ok_or_else(|| bad("no target"))?;
    match kind {
        "bind" => {
            let source = source.ok_or_else(|| bad("a bind needs a source"))?;
            let mode = if readonly { ":ro" } else { "" };
            Volume::parse(&format!("{source}:{target}{mode}")).map(Ok)
        }
        "tmpfs" => Ok(Err(if tmpfs_options.is_empty() {
            target.to_string()
        } else {
            format!("{target}:{}", tmpfs_options.join(","))
        })),
        "volume" => {
            let source = source.ok_or_else(|| {
                bad("a volume needs a source (its name; anonymous volumes are not supported)")
            })?;
            if !crate::volumes::is_name(source) {
                return Err(bad(&format!("{source:?} is not a volume name")));
            }
            let mode = if readonly { ":ro" } else { "" };
            Volume::parse(&format!("{source}:{target}{mode}")).map(Ok)
        }
        other => Err(bad(&format!("unknown type {other:?}"))),
    }
}

/// The resource number of a limit named as docker does (`nofile`), as the OCI spec does
/// (`RLIMIT_NOFILE`) or as oci-spec's Debug prints it (`RlimitNofile`).
pub(crate) fn rlimit_resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    let lower = name.to_ascii_lowercase();
    let short = lower
        .strip_prefix("rlimit")
        .unwrap_or(&lower)
        .trim_start_matches('_');
    Some(match short {
        "core" => libc::RLIMIT_CORE,
        "cpu" => libc::RLIMIT_CPU,
        "data" => libc::RLIMIT_DATA,
        "fsize" => libc::RLIMIT_FSIZE,
        "locks" => libc::RLIMIT_LOCKS,
        "memlock" => libc::RLIMIT_MEMLOCK,
        "msgqueue" => libc::RLIMIT_MSGQUEUE,
        "nice" => libc::RLIMIT_NICE,
        "nofile" => libc::RLIMIT_NOFILE,
        "nproc" => libc::RLIMIT_NPROC,
        "rss" => libc::RLIMIT_RSS,
        "rtprio" => libc::RLIMIT_RTPRIO,
        "rttime" => libc::RLIMIT_RTTIME,
        "sigpending" => libc::RLIMIT_SIGPENDING,
        "stack" => libc::RLIMIT_STACK,
        _ => return None,
    })
}

/// Parse docker's `--ulimit NAME=SOFT[:HARD]` (`nofile=1024:2048`; `-1` is unlimited) and
/// check it against our own limits: a container may get lower ones, never higher (raising a
/// hard limit needs CAP_SYS_RESOURCE, which img does not count on).
pub fn parse_ulimit(text: &str) -> Result<(String, u64, u64)> {
    let bad = |why: &str| Error::Config(format!("invalid --ulimit {text:?}: {why}"));
    let (name, values) = text
        .split_once('=')
        .ok_or_else(|| bad("expected NAME=SOFT[:HARD]"))?;
    let resource = rlimit_resource(name).ok_or_else(|| bad("unknown limit name"))?;
    let value = |v: &str| -> Result<u64> {
        if v == "-1" || v == "unlimited" {
            return Ok(libc::RLIM_INFINITY);
        }
        v.parse().map_err(|_| bad("a limit is a number or -1"))
    };
    let (soft, hard) = match values.split_once(':') {
        Some((s, h)) => (value(s)?, value(h)?),
        None => (value(values)?, value(values)?),
    };
    if soft > hard {
        return Err(bad("the soft limit is above the hard one"));
    }
    let mut ours = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit into a zeroed struct of ours.
    if unsafe { libc::getrlimit(resource, &mut ours) } != 0 {
        return Err(bad("cannot read our own limit"));
    }
    if hard > ours.rlim_max {
        return Err(bad(&format!(
            "the hard limit {hard} is above img's own ({}): limits can only be lowered",
            ours.rlim_max
        )));
    }
    Ok((format!("RLIMIT_{}", name.to_uppercase()), soft, hard))
}

/// Host files bind-mounted over the container's `/etc/hosts`, `/etc/hostname` and
/// `/etc/resolv.conf`.
#[derive(Debug, Clone)]
pub struct EtcFiles {
    /// For `/etc/hosts`.
    pub hosts: PathBuf,
    /// For `/etc/hostname`.
    pub hostname: PathBuf,
    /// For `/etc/resolv.conf`.
    pub resolv_conf: PathBuf,
}

/// The process to run, as docker computes it: entrypoint + cmd, env merged over the image's.
pub fn build_spec(config: &ImageConfiguration, opts: &RunOptions, etc: &EtcFiles) -> Result<Spec> {
    let image = config.config().clone().unwrap_or_default();
    let entrypoint: Vec<String> = match &opts.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => image.entrypoint().clone().unwrap_or_default(),
    };
    let cmd: Vec<String> = if !opts.cmd.is_empty() {
        opts.cmd.clone()
    } else if opts.entrypoint.is_some() {
        Vec::new()
    } else {
        image.cmd().clone().unwrap_or_default()
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(Error::Config(
            "no command specified: the image has neither Entrypoint nor Cmd".into(),
        ));
    }
    let mut env: Vec<String> = image.env().clone().unwrap_or_default();
    let mut set = |kv: String| {
        let key = kv.split('=').next().unwrap_or_default().to_string();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(kv);
    };
    if !image.env().iter().flatten().any(|e| e.starts_with("PATH=")) {
        set("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    set(format!("HOSTNAME={}", opts.hostname));
    if opts.tty {
        set("TERM=xterm".into());
    }
    for e in &opts.env {
        match e.split_once('=') {
            Some(_) => set(e.clone()),
            None => {
                if let Ok(v) = std::env::var(e) {
                    set(format!("{e}={v}"));
                }
            }
        }
    }
    let cwd = opts
        .workdir
        .clone()
        .or_else(|| image.working_dir().clone())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(Error::Config(format!(
            "the working directory {cwd:?} is not absolute"
        )));
    }
    let user = opts
        .user
        .clone()
        .or_else(|| image.user().clone())
        .unwrap_or_default();

    let mut spec = serde_json::to_value(Spec::default())
        .map_err(|e| Error::Config(format!("default spec: {e}")))?;
    let caps: Vec<String> = if opts.privileged {
        crate::capabilities::all()
    } else {
        crate::capabilities::adjust(&opts.cap_add, &opts.cap_drop)?
    };
    spec["process"] = json!({
        "terminal": opts.tty,
        "user": {"uid": 0, "gid": 0},
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": {
            "bounding": caps, "effective": caps, "permitted": caps,
        },
        "noNewPrivileges": opts.no_new_privileges,
    });
    spec["root"] = json!({"path": "rootfs", "readonly": opts.read_only});
    spec["hostname"] = json!(opts.hostname);
    spec["annotations"] = json!({ USER_ANNOTATION: user });
    let named: Vec<&PathBuf> = opts
        .volumes
        .iter()
        .filter(|v| v.name.is_some())
        .map(|v| &v.host)
        .collect();
    if !named.is_empty() {
        spec["annotations"][crate::volumes::ANNOTATION] = json!(json!(named).to_string());
    }
    if opts.init {
        spec["annotations"][INIT_ANNOTATION] = json!("true");
    }
    let mut mounts: Vec<Value> = spec["mounts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        // Our runtime does not mount cgroupfs into containers (the host's hierarchy is hybrid
        // here); runc reading the bundle mounts nothing there either.
        .filter(|m| m["type"] != "cgroup")
        .map(|mut m| {
            // docker's /proc: no setuid, no devices, nothing executable from it.
            if m["type"] == "proc" {
                m["options"] = json!(["nosuid", "noexec", "nodev"]);
            }
            m
        })
        .collect();
    let bind = |src: &Path, dst: &str, ro: bool| {
        let mut options = vec!["rbind", "rprivate"];
        if ro {
            options.push("ro");
        }
        json!({"destination": dst, "type": "bind", "source": src, "options": options})
    };
    mounts.push(bind(&etc.hosts, "/etc/hosts", false));
    mounts.push(bind(&etc.hostname, "/etc/hostname", false));
    mounts.push(bind(&etc.resolv_conf, "/etc/resolv.conf", false));
    for v in &opts.volumes {
        mounts.push(bind(&v.host, &v.container, v.read_only));
    }

    for t in &opts.tmpfs {
        let (path, given) = t.split_once(':').unwrap_or((t, ""));
        if !path.starts_with('/') {
            return Err(Error::Config(format!(
                "invalid --tmpfs {t:?}: the path must be absolute"
            )));
        }
        // docker's: nosuid, nodev, noexec unless the options say suid, dev or exec
        let given: Vec<&str> = given.split(',').filter(|o| !o.is_empty()).collect();
        let mut options: Vec<&str> = [("suid", "nosuid"), ("dev", "nodev"), ("exec", "noexec")]
            .into_iter()
            .filter(|(on, _)| !given.contains(on))
            .map(|(_, off)| off)
            .collect();
        options.extend(given);
        mounts.push(
            json!({"destination": path, "type": "tmpfs", "source": "tmpfs", "options": options}),
        );
    }
    spec["mounts"] = json!(mounts);
    if !opts.ulimits.is_empty() {
        spec["process"]["rlimits"] = json!(
            opts.ulimits
                .iter()
                .map(|(t, soft, hard)| json!({"type": t, "soft": soft, "hard": hard}))
                .collect::<Vec<_>>()
        );
    }
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    // A cgroup namespace of its own, where the kernel has them (4.6 and later).
    if Path::new("/proc/self/ns/cgroup").exists() {
        namespaces.push(json!({"type": "cgroup"}));
    }
    if opts.network == Network::Private {
        namespaces.push(json!({"type": "network"}));
    }
    if let Some((uids, gids)) = &opts.remap {
        if opts.privileged {
            return Err(Error::Config(
                "--privileged cannot be combined with --userns=remap (as with docker)".into(),
            ));
        }
        namespaces.push(json!({"type": "user"}));
        spec["linux"]["uidMappings"] = json!(uids);
        spec["linux"]["gidMappings"] = json!(gids);
    }
    spec["linux"]["namespaces"] = json!(namespaces);
    let mut resources = json!({});
    if let Some(m) = opts.memory {
        // No swap beyond the limit, as docker does when --memory-swap is not given... but
        // strictly: the memory is the limit.
        resources["memory"] = json!({"limit": m, "swap": m});
    }
    if let Some(p) = opts.pids {
        resources["pids"] = json!({"limit": p});
    }
    if let Some(c) = opts.cpus {
        let period = 100_000u64;
        resources["cpu"] = json!({"quota": (c * period as f64).round() as i64, "period": period});
    }
    let mut device_rules = if opts.privileged {
        vec![json!({"allow": true, "access": "rwm"})]
    } else {
        serde_json::to_value(crate::devices::default_rules())
            .map_err(|e| Error::Config(format!("device rules: {e}")))?
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let mut devices = Vec::new();
    for d in &opts.devices {
        device_rules.push(json!({
            "allow": true, "type": d.kind.to_string(), "major": d.major, "minor": d.minor,
            "access": d.access,
        }));
        devices.push(json!({
            "path": d.container, "type": d.kind.to_string(), "major": d.major,
            "minor": d.minor, "fileMode": d.mode, "uid": 0, "gid": 0,
        }));
    }
    resources["devices"] = json!(device_rules);
    spec["linux"]["resources"] = resources;
    spec["linux"]["devices"] = json!(devices);
    let (masked, readonly) = if opts.privileged {
        (Vec::new(), Vec::new())
    } else {
        (
            masked_paths(),
            READONLY_PATHS.iter().map(|p| p.to_string()).collect(),
        )
    };
    spec["linux"]["maskedPaths"] = json!(masked);
    spec["linux"]["readonlyPaths"] = json!(readonly);
    let seccomp = match (&opts.seccomp, opts.privileged) {
        (_, true) | (SeccompChoice::Unconfined, _) => None,
        (SeccompChoice::Default, false) => Some(crate::seccomp::Profile::docker_default()),
        (SeccompChoice::Profile(path), false) => {
            let bytes = std::fs::read(path)
                .map_err(|e| Error::Config(format!("seccomp profile {}: {e}", path.display())))?;
            Some(crate::seccomp::Profile::from_json(&bytes, path)?)
        }
    };
    // docker runs a profile with no default action (`{}`) unconfined.
    if let Some(profile) = seccomp.filter(|p| !p.is_unconfined()) {
        let resolved = profile.resolve(&caps)?;
        spec["linux"]["seccomp"] = serde_json::to_value(resolved)
            .map_err(|e| Error::Config(format!("seccomp profile: {e}")))?;
    }
    serde_json::from_value(spec)
        .map_err(|e| Error::Config(format!("building the runtime spec: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: Value) -> ImageConfiguration {
        serde_json::from_value(json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": json,
        }))
        .unwrap()
    }

    fn etc() -> EtcFiles {
        EtcFiles {
            hosts: "/h".into(),
            hostname: "/n".into(),
            resolv_conf: "/r".into(),
        }
    }

    fn opts() -> RunOptions {
        RunOptions {
            hostname: "abc".into(),
            ..RunOptions::default()
        }
    }

    #[test]
    fn entrypoint_and_cmd_combine_like_docker() {
        let c = config(
            json!({"Entrypoint": ["/e"], "Cmd": ["a"], "Env": ["A=1", "PATH=/x"], "WorkingDir": "/w"}),
        );
        let args = |o: &RunOptions| {
            build_spec(&c, o, &etc())
                .unwrap()
                .process()
                .as_ref()
                .unwrap()
                .args()
                .clone()
                .unwrap()
        };
        assert_eq!(args(&opts()), ["/e", "a"]);
        assert_eq!(
            args(&RunOptions {
                cmd: vec!["b".into()],
                ..opts()
            }),
            ["/e", "b"]
        );
        assert_eq!(
            args(&RunOptions {
                entrypoint: Some("/x".into()),
                ..opts()
            }),
            ["/x"]
        );
        assert_eq!(
            args(&RunOptions {
                entrypoint: Some(String::new()),
                cmd: vec!["sh".into()],
                ..opts()
            }),
            ["sh"]
        );
        let spec = build_spec(
            &c,
            &RunOptions {
                env: vec!["A=2".into(), "B=3".into()],
                ..opts()
            },
            &etc(),
        )
        .unwrap();
        let p = spec.process().as_ref().unwrap();
        let env = p.env().clone().unwrap();
        assert!(env.contains(&"A=2".to_string()) && !env.contains(&"A=1".to_string()));
        assert!(env.contains(&"PATH=/x".to_string()) && env.contains(&"HOSTNAME=abc".to_string()));
        assert_eq!(p.cwd(), &PathBuf::from("/w"));
        let none = config(json!({}));
        assert!(
            build_spec(&none, &opts(), &etc())
                .unwrap_err()
                .to_string()
                .contains("no command")
        );
    }

    #[test]
    fn limits_namespaces_and_mounts() {
        let c = config(json!({"Cmd": ["true"]}));
        let o = RunOptions {
            memory: Some(64 << 20),
            pids: Some(32),
            cpus: Some(0.5),
            network: Network::Host,
            ..opts()
        };
        let spec = serde_json::to_value(build_spec(&c, &o, &etc()).unwrap()).unwrap();
        assert_eq!(spec["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(spec["linux"]["resources"]["pids"]["limit"], 32);
        assert_eq!(spec["linux"]["resources"]["cpu"]["quota"], 50_000);
        let ns: Vec<&str> = spec["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert!(!ns.contains(&"network") && ns.contains(&"pid"));
        let dests: Vec<&str> = spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert!(
            dests.contains(&"/proc")
                && dests.contains(&"/etc/hosts")
                && !dests.contains(&"/sys/fs/cgroup")
        );
        assert!(
            spec["process"].get("rlimits").is_none(),
            "rlimits are inherited, never raised"
        );
    }

    #[test]
    fn security_defaults_and_their_switches() {
        let c = config(json!({"Cmd": ["true"]}));
        let spec =
            |o: &RunOptions| serde_json::to_value(build_spec(&c, o, &etc()).unwrap()).unwrap();
        let d = spec(&opts());
        assert_eq!(d["process"]["noNewPrivileges"], false);
        assert_eq!(
            d["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            14
        );
        assert_eq!(d["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        let devices = d["linux"]["resources"]["devices"].as_array().unwrap();
        assert_eq!(
            devices[0],
            json!({"allow": false, "type": "a", "access": "rwm"})
        );
        let masked = d["linux"]["maskedPaths"].to_string();
        assert!(masked.contains("/proc/interrupts") && masked.contains("powercap"));
        assert!(
            d["linux"]["readonlyPaths"]
                .to_string()
                .contains("/proc/sys")
        );
        let proc_opts = d["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["type"] == "proc");
        assert_eq!(
            proc_opts.unwrap()["options"],
            json!(["nosuid", "noexec", "nodev"])
        );

        let p = spec(&RunOptions {
            privileged: true,
            ..opts()
        });
        assert!(p["linux"].get("seccomp").is_none());
        assert_eq!(p["linux"]["maskedPaths"], json!([]));
        assert_eq!(
            p["linux"]["resources"]["devices"],
            json!([{"allow": true, "access": "rwm"}])
        );
        let u = spec(&RunOptions {
            seccomp: SeccompChoice::Unconfined,
            no_new_privileges: true,
            cap_drop: vec!["ALL".into()],
            ..opts()
        });
        assert!(u["linux"].get("seccomp").is_none());
        assert_eq!(u["process"]["noNewPrivileges"], true);
        assert_eq!(u["process"]["capabilities"]["bounding"], json!([]));
        let missing = RunOptions {
            seccomp: SeccompChoice::Profile("/nonexistent/profile.json".into()),
            ..opts()
        };
        let e = build_spec(&c, &missing, &etc()).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/profile.json"), "{e}");
    }
}
