//! img as an ordinary user: the test bed's account (`IMG_TB_ROOTLESS_USER`, with subordinate
//! ids in /etc/subuid and /etc/subgid) pulls, lists, inspects, unpacks, removes and collects in
//! its own default store (`$XDG_DATA_HOME/img`); the unpacked tree is checked against umoci's
//! rootless unpack run by the same user, the recorded owners with getfattr; a bundle written
//! without root runs under rootless runc; what needs root says so. The tests start as root (to
//! become the account), so they are skipped elsewhere.

mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::tree::Tree;
use support::{Run, assert_one_error_line, testbed, unique};

/// The account, a home of its own for this test (under the temp dir, which every user may
/// reach), and our binary where the account can run it.
struct Rootless {
    uid: u32,
    gid: u32,
    home: PathBuf,
    img: PathBuf,
}

impl Rootless {
    fn new(test: &str) -> Rootless {
        let name = &testbed().rootless_user;
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").args([flag, name]).output().unwrap();
            assert!(out.status.success(), "no account {name}");
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        let home = std::env::temp_dir().join(format!("img-rootless-{test}-{}", unique()));
        fs::create_dir_all(&home).unwrap();
        let img = home.join("img");
        let ours = Path::new(env!("CARGO_BIN_EXE_img"));
        if fs::hard_link(ours, &img).is_err() {
            fs::copy(ours, &img).unwrap();
        }
        std::os::unix::fs::chown(&home, Some(uid), Some(gid)).unwrap();
        Rootless {
            uid,
            gid,
            home,
            img,
        }
    }

    /// The account for `test` with busybox pulled into its store; busybox's reference.
    fn with_busybox(test: &str) -> (Rootless, String) {
        let me = Rootless::new(test);
        let busybox = format!("{}/busybox:latest", testbed().plain);
        me.ok(&["pull", "-q", &busybox]);
        (me, busybox)
    }

    fn data(&self) -> PathBuf {
        self.home.join("data")
    }

    /// `program args` as the account, with a minimal environment of its own.
    fn run(&self, program: &Path, args: &[&str]) -> Run {
        self.run_with(&[], program, args)
    }

    /// [`Rootless::run`] with `env` added to that environment.
    fn run_with(&self, env: &[(&str, &str)], program: &Path, args: &[&str]) -> Run {
        let out = Command::new(program)
            .args(args)
            .env_clear()
            .envs(env.iter().copied())
            .env("HOME", &self.home)
            .env("XDG_DATA_HOME", self.data())
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .current_dir(&self.home)
            .uid(self.uid)
            .gid(self.gid)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        Run::from_output(
            format!("({}) {} {}", self.uid, program.display(), args.join(" ")),
            out,
        )
    }

    fn img(&self, args: &[&str]) -> Run {
        self.run(&self.img, args)
    }

    fn ok(&self, args: &[&str]) -> String {
        self.img(args).assert_ok().stdout.clone()
    }
}

impl Drop for Rootless {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.home);
    }
}

/// The value of xattr `name` of `path`, read by getfattr (attr), not by us.
fn getfattr(path: &Path, name: &str) -> String {
    let out = Command::new("getfattr")
        .args(["--only-values", "-n", name])
        .arg(path)
        .output()
        .expect("getfattr (Debian's attr) is needed");
    assert!(
        out.status.success(),
        "getfattr -n {name} {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root to become the test bed's ordinary account: run as root, as tools/test does"
)]
fn an_ordinary_user_pulls_lists_unpacks_removes_and_collects_in_its_own_store() {
    let tb = testbed();
    let me = Rootless::new("store");
    let busybox = format!("{}/busybox:latest", tb.plain);
    let edge = format!("{}/edge:latest", tb.plain);
    me.ok(&["pull", "-q", &busybox]);
    me.ok(&["pull", "-q", &edge]);

    // the default store is the account's, under $XDG_DATA_HOME/img
    let index = me.data().join("img/index.json");
    let meta = fs::metadata(&index).unwrap_or_else(|e| panic!("{}: {e}", index.display()));
    assert_eq!((meta.uid(), meta.gid()), (me.uid, me.gid));
    let images = me.ok(&["images"]);
    assert!(
        images.contains("busybox") && images.contains("edge"),
        "{images}"
    );
    assert!(me.ok(&["inspect", &edge]).contains("edge"));
    assert!(!me.ok(&["layers", &edge]).trim().is_empty());
    me.ok(&["fsck"]);

    // unpack: the same tree as umoci's rootless unpack by the same user (owners aside: both
    // make every file the user's), with the image's owners kept in containers/storage's xattr
    let ours = me.home.join("ours");
    let umoci = me.home.join("umoci");
    me.ok(&["unpack", &edge, ours.to_str().unwrap()]);
    let layout = format!("{}:latest", tb.oci.join("edge").display());
    me.run(
        Path::new("umoci"),
        &[
            "unpack",
            "--rootless",
            "--image",
            &layout,
            umoci.to_str().unwrap(),
        ],
    )
    .assert_ok();
    let (a, b) = (Tree::read(&ours), Tree::read(&umoci.join("rootfs")));
    let mut differences = Vec::new();
    for (path, ea) in &a.entries {
        assert_eq!(
            (ea.uid, ea.gid),
            (me.uid, me.gid),
            "{path} is not the user's"
        );
        match b.get(path) {
            None => differences.push(format!("{path}: only in ours")),
            Some(eb) => {
                let key = |e: &support::tree::Entry| {
                    (e.kind, e.mode, e.size, e.sha256.clone(), e.target.clone())
                };
                if key(ea) != key(eb) {
                    differences.push(format!("{path}: {ea} vs umoci's {eb}"));
                }
            }
        }
    }
    differences.extend(
        b.entries
            .keys()
            .filter(|p| a.get(p).is_none())
            .map(|p| format!("{p}: only in umoci's")),
    );
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    assert_eq!(
        getfattr(
            &ours.join("home/user/mixed.txt"),
            "user.containers.override_stat"
        ),
        "1000:0:0600:file"
    );
    assert_eq!(
        getfattr(&ours.join("home/user"), "user.containers.override_stat"),
        "1000:1000:0750:dir"
    );

    // rmi and gc as the user; the store stays clean
    me.ok(&["rmi", &edge]);
    me.ok(&["gc"]);
    me.ok(&["fsck"]);
    let images = me.ok(&["images"]);
    assert!(
        !images.contains("edge") && images.contains("busybox"),
        "{images}"
    );
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root to become the test bed's ordinary account: run as root, as tools/test does"
)]
fn a_bundle_written_without_root_runs_under_rootless_runc() {
    let (me, busybox) = Rootless::with_busybox("bundle");
    let runc_root = me.home.join("runc");
    let runc = |bundle: &Path, id: &str| {
        me.run(
            Path::new("runc"),
            &[
                "--root",
                runc_root.to_str().unwrap(),
                "run",
                "-b",
                bundle.to_str().unwrap(),
                id,
            ],
        )
    };
    for (user, network, want_uid) in [
        (None, "none", 0),
        (Some("1000"), "none", 1000),
        (None, "host", 0),
    ] {
        let bundle = me.home.join(format!("bundle-{network}-{}", want_uid));
        let mut args = vec![
            "run",
            "--network",
            network,
            "--bundle",
            bundle.to_str().unwrap(),
        ];
        if let Some(u) = user {
            args.extend(["-u", u]);
        }
        args.extend([
            busybox.as_str(),
            "sh",
            "-c",
            "id -u; head -n1 /proc/self/uid_map; ls /sys/kernel >/dev/null && echo sys",
        ]);
        me.ok(&args);
        let run = runc(&bundle, &format!("rl-{network}-{want_uid}"));
        run.assert_ok();
        let lines: Vec<&str> = run.stdout.lines().collect();
        assert_eq!(lines.first(), Some(&want_uid.to_string().as_str()), "{run}");
        // container root is the user itself: nothing more
        let map: Vec<&str> = lines.get(1).unwrap_or(&"").split_whitespace().collect();
        assert_eq!(map, ["0", &me.uid.to_string(), "1"], "{run}");
        assert_eq!(lines.get(2), Some(&"sys"), "{run}");
    }
}

/// The first subordinate id `file` (/etc/subuid or /etc/subgid) gives `name`, read by us
/// as newuidmap reads it.
fn first_subordinate(file: &str, name: &str) -> u32 {
    let text = fs::read_to_string(file).unwrap();
    text.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() == 3 && f[0] == name).then(|| f[1].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("{file} has no range for {name}"))
}

/// `rel` under one of the directories in `parent` exists and is owned by `owner` (uid, gid),
/// as stat sees it on the host.
fn assert_owner_under(parent: &Path, rel: &str, owner: (u32, u32)) {
    let path = fs::read_dir(parent)
        .unwrap()
        .flatten()
        .map(|e| e.path().join(rel))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no {rel} under {}", parent.display()));
    let meta = fs::metadata(&path).unwrap();
    assert_eq!((meta.uid(), meta.gid()), owner, "{}", path.display());
}

/// Nothing is left in `dir` (or it is not there).
fn assert_empty(dir: &Path, what: &str) {
    let left: Vec<_> = fs::read_dir(dir).into_iter().flatten().flatten().collect();
    assert!(
        left.is_empty(),
        "{what} left in {}: {left:?}",
        dir.display()
    );
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root to become the test bed's ordinary account: run as root, as tools/test does"
)]
fn an_ordinary_user_runs_containers_whose_root_is_only_that_user() {
    let tb = testbed();
    let (me, busybox) = Rootless::with_busybox("run");
    let edge = format!("{}/edge:latest", tb.plain);
    // busybox's snapshots are prepared by run (img __snapshots), edge's by pull --unpack (run
    // again as a whole in a user namespace): both with the image's owners
    me.ok(&["pull", "-q", "--unpack", &edge]);
    let name = &testbed().rootless_user;
    let (sub_uid, sub_gid) = (
        first_subordinate("/etc/subuid", name),
        first_subordinate("/etc/subgid", name),
    );

    // The image's root is the user; its other ids are the user's subordinate ones.
    let out = me.ok(&[
        "run",
        "--rm",
        &busybox,
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map; cat /proc/self/gid_map",
    ]);
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let (uid, sub) = (me.uid.to_string(), sub_uid.to_string());
    assert_eq!(lines[0], ["0"], "{out}");
    assert_eq!(lines[1], ["0", uid.as_str(), "1"], "{out}");
    assert_eq!(lines[2], ["1", sub.as_str(), "65536"], "{out}");
    // that first run tried overlayfs in a user namespace (this kernel allows it) and kept
    // the answer for this kernel
    let probe = fs::read_to_string(me.data().join("img/rootless-overlay")).unwrap();
    assert!(probe.trim_end().ends_with(" yes"), "{probe}");

    // A file made by uid 1000 inside is subordinate id 999 past the range's start outside,
    // as stat (not img) sees it in the container's writable layer.
    let id = me
        .ok(&[
            "run",
            "-u",
            "1000:1000",
            &busybox,
            "sh",
            "-c",
            "touch /tmp/mine",
        ])
        .trim()
        .to_string();
    assert!(id.is_empty(), "a foreground run printed {id}");
    let containers = me.data().join("img/containers");
    assert_owner_under(
        &containers,
        "upper/tmp/mine",
        (sub_uid + 999, sub_gid + 999),
    );
    // ... and rm removes what the user could not remove by itself (subordinate owners).
    me.ok(&["container", "prune", "-f"]);
    assert_empty(&containers, "containers");

    // The attack: the container's root tries what host root could do. A host root-only
    // directory and file bound in stay closed; a device node cannot be made; the host
    // file is unchanged.
    let secret_dir = me.home.join("root-only");
    fs::create_dir(&secret_dir).unwrap();
    fs::write(secret_dir.join("secret"), "host secret\n").unwrap();
    fs::set_permissions(&secret_dir, fs::Permissions::from_mode(0o700)).unwrap();
    let victim = me.home.join("victim");
    fs::write(&victim, "untouched\n").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
    let run = me.img(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/secret", secret_dir.display()),
        "-v",
        &format!("{}:/victim", victim.display()),
        &busybox,
        "sh",
        "-c",
        "cat /secret/secret && echo READ; echo owned >> /victim && echo WROTE; \
         mknod /tmp/sda b 8 0 && echo MKNOD; chown 0 /victim && echo CHOWN; exit 0",
    ]);
    run.assert_ok();
    for word in ["READ", "WROTE", "MKNOD", "CHOWN"] {
        assert!(
            !run.stdout.contains(word),
            "the container could {word}: {run}"
        );
    }
    assert!(run.stderr.contains("Permission denied"), "{run}");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched\n");

    // The layers stack as the image says (whiteouts and an opaque directory, marked in
    // user.overlay.* for a rootless mount): edge has no shell, the host's static busybox
    // is bound in. The last word is the root's filesystem type.
    let look = |overlay: &str| -> Vec<String> {
        let out = me
            .run_with(
                &[("IMG_ROOTLESS_OVERLAY", overlay)],
                &me.img,
                &[
                    "run",
                    "--rm",
                    "-v",
                    "/usr/bin/busybox:/busybox:ro",
                    &edge,
                    "/busybox",
                    "sh",
                    "-c",
                    "/busybox ls /opq; /busybox ls /data; /busybox stat -c %u /home/user; \
                     /busybox awk '$5 == \"/\" {for (i = 6; i < NF; i++) \
                     if ($i == \"-\") print $(i + 1)}' /proc/self/mountinfo",
                ],
            )
            .assert_ok()
            .stdout
            .clone();
        out.split_whitespace().map(String::from).collect()
    };
    // /home/user is uid 1000's in the image, and in the container: the snapshots were
    // prepared in a user namespace with the container's mappings, so on the host it is the
    // subordinate id 999 past the range's start (stat's view, not img's).
    let want = ["c", "becomes-dir", "keep", "replaced", "1000"];
    let stacked = look("1");
    assert_eq!(stacked[..5], want, "{stacked:?}");
    assert_eq!(
        stacked.get(5).map(String::as_str),
        Some("overlay"),
        "{stacked:?}"
    );
    let snapshots = me.data().join("img/snapshots/sha256");
    assert_owner_under(&snapshots, "fs/home/user", (sub_uid + 999, sub_gid + 999));
    // Where overlayfs cannot be mounted in a user namespace (forced here: this kernel can),
    // the container gets a flattened copy made in the user namespace: the same files and
    // owners, its root not an overlay.
    let flat = look("0");
    assert_eq!(flat[..5], want, "{flat:?}");
    assert!(
        flat.len() == 6 && flat[5] != "overlay",
        "the root is still an overlay: {flat:?}"
    );
    // uid 1000 may write its home (0750 in the image), as with root's runtime
    let out = me.ok(&[
        "run",
        "--rm",
        "-u",
        "1000:1000",
        "-v",
        "/usr/bin/busybox:/busybox:ro",
        &edge,
        "/busybox",
        "sh",
        "-c",
        "/busybox touch /home/user/new && /busybox echo wrote",
    ]);
    assert_eq!(out.trim(), "wrote");

    // Detached, with a port, exec, stop and rm.
    let id = me
        .ok(&[
            "run",
            "-d",
            "--name",
            "web",
            "-p",
            "127.0.0.1:0:8080",
            &busybox,
            "sh",
            "-c",
            "echo served > /www; httpd -f -p 8080 -h /",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64, "{id}");
    let port: u16 = me
        .ok(&["port", "web", "8080"])
        .trim()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // Until httpd listens inside (the state, however long a loaded machine takes to get there;
    // the bound is only against a hang).
    let get = || -> Option<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.write_all(b"GET /www HTTP/1.0\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        text.contains("served").then_some(text)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let body = loop {
        if let Some(text) = get() {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the rootless container never served on port {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(body.starts_with("HTTP/1."), "{body}");
    assert_eq!(me.ok(&["exec", "web", "id", "-u"]).trim(), "0");
    // no cgroup: top finds the processes by their PID namespace
    let top = me.ok(&["top", "web"]);
    assert!(top.lines().skip(1).any(|l| l.contains("httpd")), "{top}");
    me.ok(&["stop", "-t", "1", "web"]);
    me.ok(&["rm", "web"]);
    assert_empty(&containers, "containers");

    // Snapshots owned by subordinate ids go with gc, as the user's own files do.
    me.ok(&["rmi", &edge, &busybox]);
    me.ok(&["gc"]);
    me.ok(&["fsck"]);
    assert_empty(&snapshots, "gc: snapshots");
}

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root to become the test bed's ordinary account: run as root, as tools/test does"
)]
fn without_root_limits_devices_and_remap_say_they_need_it() {
    let (me, busybox) = Rootless::with_busybox("refused");

    for (args, said) in [
        (
            &["--memory", "10m"][..],
            "--memory needs root or a cgroup v2 subtree delegated to you: ",
        ),
        (
            &["--pids-limit", "5"][..],
            "--pids-limit needs root or a cgroup v2 subtree delegated to you: ",
        ),
        (&["--device", "/dev/null"][..], "--device needs root"),
        (&["--userns", "remap"][..], "--userns=remap needs root"),
        (&["--privileged"][..], "--privileged needs root"),
    ] {
        let mut all = vec!["run", "--rm"];
        all.extend(args);
        all.extend([busybox.as_str(), "true"]);
        let run = me.img(&all);
        assert_eq!(run.code, 125, "{run}");
        assert!(assert_one_error_line(&run.stderr).contains(said), "{run}");
    }
    let containers = me.data().join("img/containers");
    assert_empty(&containers, "refused runs: containers");
    // Refused before anything is pulled.
    let edge = format!("{}/edge:latest", testbed().plain);
    let run = me.img(&["run", "--rm", "--memory", "10m", &edge, "true"]);
    assert_eq!(run.code, 125, "{run}");
    assert!(
        !me.ok(&["images", "--format", "{{.Repository}}"])
            .contains("edge"),
        "the image was pulled before the limit was refused"
    );

    let bundle = me.home.join("limited");
    let run = me.img(&[
        "run",
        "--memory",
        "10m",
        "--bundle",
        bundle.to_str().unwrap(),
        &busybox,
        "true",
    ]);
    assert_eq!(run.code, 125, "{run}");
    assert!(
        assert_one_error_line(&run.stderr).contains("--memory needs root"),
        "{run}"
    );
    assert!(
        !bundle.join("rootfs").exists(),
        "the image was unpacked before the limit was refused"
    );
}

/// Where cgroup v2 has the controllers (not on the hybrid layout, see build.rs), a user given a
/// cgroup of their own gets limits on rootless containers, as podman's users do: the test
/// delegates one as systemd's `Delegate=` would (the directory, `cgroup.procs` and
/// `cgroup.subtree_control` given to the account), starts img in it as the account, and checks
/// the kernel's files (img moved itself into its leaf; the container has its own cgroup with
/// the limits) and a fork bomb held at the limit.
#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root to become the test bed's ordinary account: run as root, as tools/test does"
)]
#[cfg_attr(
    not(img_cgroup2),
    ignore = "cgroup v2 has no memory/pids controllers on this machine (hybrid layout: they are on \
              cgroup v1, which is not delegated to users), so no subtree can be delegated"
)]
fn a_user_with_a_delegated_cgroup_v2_subtree_gets_limits() {
    let (me, busybox) = Rootless::with_busybox("delegated");
    let root = Path::new("/sys/fs/cgroup");
    let _ = fs::write(root.join("cgroup.subtree_control"), "+memory +pids");
    let top = root.join(format!("img-test-delegated-{}", unique()));
    let shell = top.join("shell");
    fs::create_dir(&top).unwrap();
    fs::write(top.join("cgroup.subtree_control"), "+memory +pids").unwrap();
    fs::create_dir(&shell).unwrap();
    for path in [
        shell.clone(),
        shell.join("cgroup.procs"),
        shell.join("cgroup.subtree_control"),
        shell.join("cgroup.threads"),
    ] {
        std::os::unix::fs::chown(&path, Some(me.uid), Some(me.gid)).unwrap();
    }
    // img as the account from inside `shell/` (its leaf once img made one, where the unit's
    // other processes then are): root moves the shell there, then becomes the account
    // (setpriv), as systemd would start a process of the unit.
    let as_account = |args: &[&str]| -> Run {
        let script = format!(
            "d={}; [ -d $d/img-leaf ] && d=$d/img-leaf; echo $$ > $d/cgroup.procs && \
             exec setpriv --reuid {} --regid {} --clear-groups -- \"$@\"",
            shell.display(),
            me.uid,
            me.gid
        );
        let mut all = vec!["-c", script.as_str(), "sh", me.img.to_str().unwrap()];
        all.extend(args);
        let out = Command::new("sh")
            .args(&all)
            .env_clear()
            .env("HOME", &me.home)
            .env("XDG_DATA_HOME", me.data())
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .current_dir(&me.home)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        Run::from_output(
            format!("(in {}) img {}", shell.display(), args.join(" ")),
            out,
        )
    };

    let id = as_account(&[
        "run",
        "-d",
        "--memory",
        "32m",
        "--pids-limit",
        "16",
        &busybox,
        "sleep",
        "600",
    ])
    .assert_ok()
    .stdout
    .trim()
    .to_string();
    let cgroup = shell.join(format!("img-{id}"));
    let read = |file: &str| {
        fs::read_to_string(cgroup.join(file))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(read("memory.max"), "33554432");
    assert_eq!(read("pids.max"), "16");
    assert!(
        !read("cgroup.procs").is_empty(),
        "the container is not in {}",
        cgroup.display()
    );
    as_account(&["rm", "-f", &id]).assert_ok();
    assert!(!cgroup.exists(), "{} left after rm", cgroup.display());

    // The attack: a fork bomb inside is held at the limit.
    let run = as_account(&[
        "run",
        "--rm",
        "--pids-limit",
        "16",
        &busybox,
        "sh",
        "-c",
        "i=0; while [ $i -lt 40 ]; do sleep 60 & i=$((i+1)); done; echo spawned",
    ]);
    assert!(
        run.stderr.contains("can't fork") || run.stdout.contains("can't fork"),
        "40 processes started under --pids-limit 16: {run}"
    );

    let _ = fs::remove_dir(shell.join("img-leaf"));
    let _ = fs::remove_dir(&shell);
    let _ = fs::remove_dir(&top);
}
