//! img as an ordinary user: the test bed's account (`IMG_TB_ROOTLESS_USER`, with subordinate
//! ids in /etc/subuid and /etc/subgid) pulls, lists, inspects, unpacks, removes and collects in
//! its own default store (`$XDG_DATA_HOME/img`); the unpacked tree is checked against umoci's
//! rootless unpack run by the same user, the recorded owners with getfattr; a bundle written
//! without root runs under rootless runc; what needs root says so. The tests start as root (to
//! become the account), so they are skipped elsewhere.

mod support;

use std::fs;
use std::os::unix::fs::MetadataExt;
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

    fn data(&self) -> PathBuf {
        self.home.join("data")
    }

    /// `program args` as the account, with a minimal environment of its own.
    fn run(&self, program: &Path, args: &[&str]) -> Run {
        let out = Command::new(program)
            .args(args)
            .env_clear()
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
    let tb = testbed();
    let me = Rootless::new("bundle");
    let busybox = format!("{}/busybox:latest", tb.plain);
    me.ok(&["pull", "-q", &busybox]);
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

#[test]
#[cfg_attr(
    not(img_root),
    ignore = "needs root to become the test bed's ordinary account: run as root, as tools/test does"
)]
fn without_root_run_and_limits_say_they_need_it() {
    let tb = testbed();
    let me = Rootless::new("refused");
    let busybox = format!("{}/busybox:latest", tb.plain);
    me.ok(&["pull", "-q", &busybox]);

    let run = me.img(&["run", "--rm", &busybox, "true"]);
    assert_eq!(run.code, 125, "{run}");
    assert!(
        assert_one_error_line(&run.stderr).contains("needs root"),
        "{run}"
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
