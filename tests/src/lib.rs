//! Helpers for the end-to-end tests: the `p2pfs` binary, private
//! directories, commands with deadlines, and tmpfs mounts that always
//! unmount.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

pub mod browser;
pub mod inproc;
pub mod natlab;

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

/// The `p2pfs` binary of this build, built on first use.
pub fn p2pfs_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // target/<profile>/deps/<test binary> -> target/<profile>/p2pfs
        // (a tool of this crate, such as `nat_bench`, lives in
        // target/<profile> itself).
        let exe = std::env::current_exe().expect("test binary path");
        let parent = exe.parent().expect("test binary lives in target/<profile>");
        let profile_dir = if parent.ends_with("deps") {
            parent
                .parent()
                .expect("test binary lives in target/<profile>/deps")
        } else {
            parent
        };
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        // The binary as `cargo test --workspace` resolves features (this
        // crate's dependencies give it the test hooks: an emulated link
        // delay, crash points): the dependencies that build made are
        // reused and only the binary links; `-p p2pfs --features ...`
        // resolved them differently and built a second copy of most of
        // them (two minutes).
        cmd.args(["build", "-q", "--workspace", "--bin", "p2pfs"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        // Cargo gives this test process variables describing the test
        // crate; passed on, they change build-script fingerprints and
        // every run would rebuild the binary. Keep only the user's settings.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            let user = [
                "CARGO_HOME",
                "CARGO_TARGET_DIR",
                "CARGO_BUILD_",
                "CARGO_PROFILE_",
                "CARGO_REGISTRIES_",
                "CARGO_NET_",
                "CARGO_HTTP_",
                "CARGO_TERM_",
                "CARGO_INCREMENTAL",
            ]
            .iter()
            .any(|p| k.starts_with(p));
            if k.starts_with("CARGO_") && !user {
                cmd.env_remove(&k);
            }
        }
        let status = cmd
            .status()
            .expect("running cargo build for the p2pfs binary");
        assert!(status.success(), "cargo build of the p2pfs binary failed");
        let bin = profile_dir.join("p2pfs");
        assert!(bin.exists(), "{} missing after build", bin.display());
        bin
    })
}

/// A private temporary directory, removed on drop.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("p2pfs-test-")
        .tempdir()
        .expect("creating a temporary directory")
}

/// A command running the `p2pfs` binary, kept off the internet: tests
/// never use the BitTorrent Mainline DHT's public routers (a test that
/// wants the Mainline DHT runs a local testnet and passes
/// `--mainline-bootstrap`, which overrides this), and serves no web page
/// (tests run many nodes at once; a web test passes `--http`).
pub fn p2pfs_command() -> Command {
    let mut cmd = Command::new(p2pfs_bin());
    cmd.env("P2PFS_MAINLINE", "off");
    cmd.env("P2PFS_HTTP", "off");
    cmd
}

/// Runs `p2pfs --data-dir DATA ARGS...`, killing it after `timeout`.
pub fn p2pfs(data_dir: &Path, args: &[&str]) -> Output {
    p2pfs_with_input(data_dir, args, None)
}

/// Like [`p2pfs`], feeding `input` on standard input.
pub fn p2pfs_with_input(data_dir: &Path, args: &[&str], input: Option<&[u8]>) -> Output {
    let mut cmd = p2pfs_command();
    cmd.arg("--data-dir").arg(data_dir).args(args);
    run(cmd, input, Duration::from_secs(120))
}

/// Runs a command to completion with a deadline; panics if it is exceeded.
pub fn run(mut cmd: Command, input: Option<&[u8]>, timeout: Duration) -> Output {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    if let Some(bytes) = input {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(bytes).unwrap();
    }
    // Drain the pipes on threads so a chatty child cannot block on them.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut v).unwrap();
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut v).unwrap();
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    }
}

/// Asserts a command succeeded and returns its stdout as text.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts a command failed the way a user should see it fail: non-zero
/// exit, exactly one line on stderr starting with `error:`, no panic.
/// Returns that line.
pub fn fails(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "expected failure, got success");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "panic: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    lines[0].to_string()
}

/// Writes `size` pseudo-random bytes (from `seed`) to `path`.
pub fn random_file(path: &Path, size: u64, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    f.flush().unwrap();
}

/// BLAKE3 of a file, as `b3sum` would print it.
pub fn blake3_file(path: &Path) -> String {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(path).unwrap()).unwrap();
    h.finalize().to_hex().to_string()
}

/// Two mounts in one room (`team`), as two members: their daemons, the
/// room's directory on each, and a scratch directory that goes with them.
#[derive(Debug)]
pub struct TwoMounts {
    /// Scratch space outside the mounts (and the data directories).
    pub root: tempfile::TempDir,
    /// Member A (made the room).
    pub a: Daemon,
    /// Member B (joined it).
    pub b: Daemon,
    /// The room's directory on A.
    pub ra: PathBuf,
    /// The room's directory on B.
    pub rb: PathBuf,
}

/// Two mounts in one room.
pub fn two_mounts() -> TwoMounts {
    let root = temp_dir();
    let a = Daemon::mount(&root.path().join("a"), &root.path().join("mnt-a"), &[]);
    let b = Daemon::mount(&root.path().join("b"), &root.path().join("mnt-b"), &[]);
    let ra = a.mountpoint().join("team");
    std::fs::create_dir(&ra).unwrap();
    let rb = b.join_room_of(&a, "team");
    TwoMounts { root, a, b, ra, rb }
}

/// Runs `script` with `sh -c` in `dir`; returns its stdout, or panics with
/// its stderr.
pub fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A tmux server of a test's own (its socket in the test's directory) with
/// one pane, session `t`, running a command: a real terminal to drive;
/// killed on drop, even when the test fails.
#[derive(Debug)]
pub struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// Starts `cmd` in a `width`×`height` pane, in `cwd`, on the socket
    /// `socket`.
    pub fn start(socket: PathBuf, width: u16, height: u16, cwd: &Path, cmd: &str) -> Self {
        let t = Self { socket };
        let (w, h) = (width.to_string(), height.to_string());
        t.tmux(&[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            &w,
            "-y",
            &h,
            "-c",
            cwd.to_str().unwrap(),
            cmd,
        ]);
        t
    }

    /// Runs `tmux ARGS` on this server; its output.
    pub fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .env("TERM", "xterm-256color")
            .output()
            .expect("running tmux (scripts/test installs it)");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Sends keys (`-l`: literally).
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    /// What the pane shows.
    pub fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "t"])
    }

    /// The pane's title.
    pub fn title(&self) -> String {
        self.tmux(&["display-message", "-p", "-t", "t", "#{pane_title}"])
            .trim()
            .to_string()
    }

    /// Whether the session (its command) still runs.
    pub fn running(&self) -> bool {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["has-session", "-t", "t"])
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

/// Whether this process runs as root: mounts and network namespaces need
/// it (CI runs as root).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Skips the calling test unless it runs as root: it returns at once,
/// saying why, instead of failing in the middle.
#[macro_export]
macro_rules! needs_root {
    () => {
        if !$crate::is_root() {
            eprintln!(
                "skipped: this test mounts filesystems or makes network namespaces, \
                 which needs root (CI runs as root)"
            );
            return;
        }
    };
}

/// Panics unless running as root (mounts need it; CI runs as root).
pub fn require_root() {
    let out = Command::new("id").arg("-u").output().expect("running id");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "this test mounts filesystems and must run as root"
    );
}

/// A tmpfs mounted for one test, unmounted on drop.
#[derive(Debug)]
pub struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs with the given `mount -o` options (e.g. `size=4m`).
    pub fn mount(options: &str) -> Self {
        require_root();
        let dir = temp_dir();
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(&path)
            .status()
            .expect("running mount");
        assert!(status.success(), "mount -t tmpfs -o {options} failed");
        Self { path, _dir: dir }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// A `p2pfs daemon` (or `p2pfs mount`) process for one test, stopped on
/// drop (a mount is unmounted).
#[derive(Debug)]
pub struct Daemon {
    child: std::process::Child,
    data_dir: PathBuf,
    /// Where its rooms are mounted (`p2pfs mount`).
    mountpoint: Option<PathBuf>,
    /// Its node id (text form).
    pub id: String,
    /// The address it listens on.
    pub addr: std::net::SocketAddr,
}

impl Daemon {
    /// Starts `p2pfs --data-dir DATA daemon --listen 127.0.0.1:0 EXTRA...`
    /// and waits (up to a minute) until its control socket answers.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Self {
        Self::start_in(None, data_dir, "127.0.0.1:0", extra)
    }

    /// Like [`Daemon::start_in`] (no namespace), with `env` set.
    pub fn start_with_env(
        data_dir: &Path,
        listen: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::spawn_with(
            None,
            data_dir,
            &["daemon", "--listen", listen],
            extra,
            None,
            &env,
        )
    }

    /// Starts `p2pfs --data-dir DATA daemon --listen LISTEN EXTRA...`, in
    /// network namespace `netns` if given.
    pub fn start_in(netns: Option<&str>, data_dir: &Path, listen: &str, extra: &[&str]) -> Self {
        Self::spawn(
            netns,
            data_dir,
            &["daemon", "--listen", listen],
            extra,
            None,
        )
    }

    /// Starts `p2pfs --data-dir DATA mount MOUNTPOINT EXTRA...` on host
    /// `host` of `net` (its addresses and LAN; the mount is seen by the
    /// whole machine), with `env` set.
    pub fn mount_on(
        net: &Lan,
        host: usize,
        data_dir: &Path,
        mountpoint: &Path,
        extra: &[&str],
    ) -> Self {
        Self::mounted(&net.hosts[host], data_dir, mountpoint, &[], extra, &net.env)
    }

    /// Starts `p2pfs --data-dir DATA mount MOUNTPOINT --listen LISTEN
    /// EXTRA...` in network namespace `netns` (the mount is the
    /// machine's) and waits until the filesystem is mounted.
    pub fn mount_in(
        netns: &str,
        data_dir: &Path,
        mountpoint: &Path,
        listen: &str,
        extra: &[&str],
    ) -> Self {
        Self::mounted(
            netns,
            data_dir,
            mountpoint,
            &["--listen", listen],
            extra,
            &[],
        )
    }

    /// `p2pfs mount MOUNTPOINT ARGS... EXTRA...` in network namespace
    /// `netns`, once the filesystem is mounted.
    fn mounted(
        netns: &str,
        data_dir: &Path,
        mountpoint: &Path,
        args: &[&str],
        extra: &[&str],
        env: &[(String, String)],
    ) -> Self {
        require_root();
        let _ = std::fs::create_dir_all(mountpoint);
        let mnt = mountpoint.to_str().unwrap();
        let mut all = vec!["mount", mnt];
        all.extend_from_slice(args);
        let d = Self::spawn_with(Some(netns), data_dir, &all, extra, Some(mountpoint), env);
        wait_for(
            Duration::from_secs(30),
            "the filesystem to be mounted",
            || is_p2pfs_mount(mountpoint).then_some(()),
        );
        d
    }

    /// Starts `p2pfs --data-dir DATA daemon EXTRA...` on host `host` of
    /// `net`, with the network's environment.
    pub fn start_on(net: &Lan, host: usize, data_dir: &Path, extra: &[&str]) -> Self {
        Self::spawn_with(
            Some(&net.hosts[host]),
            data_dir,
            &["daemon"],
            extra,
            None,
            &net.env,
        )
    }

    /// The address its web page listens on (started with `--http`; it
    /// writes the address once serving).
    pub fn web_addr(&self) -> std::net::SocketAddr {
        let file = self.data_dir.join("web.addr");
        wait_for(Duration::from_secs(30), "the web page to start", || {
            std::fs::read_to_string(&file).ok()?.trim().parse().ok()
        })
    }

    /// Its web page's login token.
    pub fn web_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("web.token"))
            .expect("the web page's token")
            .trim()
            .to_string()
    }

    /// Its process id (to freeze it with SIGSTOP, say).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts `p2pfs --data-dir DATA mount MOUNTPOINT --listen 127.0.0.1:0
    /// --no-lan EXTRA...` (creating the mount point) and waits until the
    /// filesystem is mounted and the control socket answers.
    pub fn mount(data_dir: &Path, mountpoint: &Path, extra: &[&str]) -> Self {
        require_root();
        // A dead mount left there answers ENOTCONN, not a directory: the
        // mount cleans it up.
        let _ = std::fs::create_dir_all(mountpoint);
        let mnt = mountpoint.to_str().unwrap();
        let d = Self::spawn(
            None,
            data_dir,
            &["mount", mnt, "--listen", "127.0.0.1:0", "--no-lan"],
            extra,
            Some(mountpoint),
        );
        wait_for(
            Duration::from_secs(30),
            "the filesystem to be mounted",
            || is_p2pfs_mount(mountpoint).then_some(()),
        );
        d
    }

    /// Joins the room `name` of `host` (a running node) with its ticket,
    /// and waits until the room shows in this node's mount; returns the
    /// room's directory there.
    pub fn join_room_of(&self, host: &Daemon, name: &str) -> PathBuf {
        let ticket = ok(&p2pfs(host.data_dir(), &["room", "ticket", name]));
        ok(&p2pfs(self.data_dir(), &["room", "join", ticket.trim()]));
        let room = self.mountpoint().join(name);
        wait_for(
            Duration::from_secs(20),
            "the joined room to appear in the mount",
            || room.join("chat.log").exists().then_some(()),
        );
        room
    }

    /// Where its rooms are mounted.
    pub fn mountpoint(&self) -> &Path {
        self.mountpoint
            .as_deref()
            .expect("started with Daemon::mount")
    }

    fn spawn(
        netns: Option<&str>,
        data_dir: &Path,
        args: &[&str],
        extra: &[&str],
        mountpoint: Option<&Path>,
    ) -> Self {
        Self::spawn_with(netns, data_dir, args, extra, mountpoint, &[])
    }

    fn spawn_with(
        netns: Option<&str>,
        data_dir: &Path,
        args: &[&str],
        extra: &[&str],
        mountpoint: Option<&Path>,
        env: &[(String, String)],
    ) -> Self {
        // Owner-only, as p2pfs makes its data directory: anything looser
        // is tightened, with a warning.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(data_dir)
            .unwrap();
        let log = std::os::unix::fs::OpenOptionsExt::mode(
            std::fs::File::options().create(true).append(true),
            0o600,
        )
        .open(data_dir.join("daemon.log"))
        .unwrap();
        // nsenter enters the network namespace only: a mount made there is
        // the machine's (`ip netns exec` would hide it in a mount namespace).
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg(p2pfs_bin());
                c
            }
            None => Command::new(p2pfs_bin()),
        };
        cmd.env("P2PFS_MAINLINE", "off");
        cmd.env("P2PFS_HTTP", "off");
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        let child = cmd
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning p2pfs daemon");
        let mut d = Self {
            child,
            data_dir: data_dir.to_path_buf(),
            mountpoint: mountpoint.map(Path::to_path_buf),
            id: String::new(),
            addr: "0.0.0.0:0".parse().unwrap(),
        };
        let status = wait_for(Duration::from_secs(60), "the daemon to answer", || {
            if let Some(s) = d.child.try_wait().unwrap() {
                panic!("the daemon exited ({s}): {}", d.log());
            }
            // Only once the control socket accepts: before that, `status`
            // would only wait for the daemon.
            std::os::unix::net::UnixStream::connect(d.data_dir.join("control.sock")).ok()?;
            let out = p2pfs(&d.data_dir, &["status", "--json"]);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            (v["daemon"] == true).then_some(v)
        });
        d.id = status["node"].as_str().unwrap().to_string();
        d.addr = status["addrs"][0].as_str().unwrap().parse().unwrap();
        d
    }

    /// `NODEID@IP:PORT`, for `--peer`.
    pub fn peer(&self) -> String {
        format!("{}@{}", self.id, self.addr)
    }

    /// Its data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// What it wrote on stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("daemon.log")).unwrap_or_default()
    }

    /// Its `status --json`.
    pub fn status(&self) -> serde_json::Value {
        let out = p2pfs(&self.data_dir, &["status", "--json"]);
        serde_json::from_slice(&out.stdout).expect("status --json prints JSON")
    }

    /// Kills it with SIGKILL: no goodbye to its peers.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits (up to `timeout`) for it to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        wait_for(timeout, "the process to exit", || {
            self.child.try_wait().unwrap()
        })
    }

    /// Stops it with SIGTERM and returns its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        signal(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon ignored SIGTERM: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(m) = &self.mountpoint {
            // SIGTERM unmounts; a dead mount left by a killed process is
            // detached by hand (a live one is another process's).
            if self.child.try_wait().ok().flatten().is_none() {
                signal(self.child.id(), "TERM");
                let deadline = Instant::now() + Duration::from_secs(20);
                while Instant::now() < deadline && self.child.try_wait().ok().flatten().is_none() {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
            if is_mount_point(m) && std::fs::metadata(m).is_err() {
                let _ = Command::new("umount").arg("-l").arg(m).status();
            }
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a p2pfs filesystem is mounted at `path` (and answers).
pub fn is_p2pfs_mount(path: &Path) -> bool {
    mount_type(path).is_some_and(|t| t == "fuse p2pfs" || t == "fuse.p2pfs p2pfs")
        && std::fs::metadata(path).is_ok()
}

/// Whether anything (even a dead FUSE mount) is mounted at `path`.
pub fn is_mount_point(path: &Path) -> bool {
    mount_type(path).is_some()
}

fn mount_type(path: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = path.to_str()?;
    info.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        if f.get(4)? != &want {
            return None;
        }
        let dash = f.iter().position(|x| *x == "-")?;
        Some(format!("{} {}", f.get(dash + 1)?, f.get(dash + 2)?))
    })
}

/// Sends a signal (`TERM`, `KILL`, …) to a process this test started.
pub fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
}

/// Polls `f` every 20 ms until it returns `Some`, panicking after
/// `timeout` with `what` in the message.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Network namespaces for one test, joined by a bridge (in a namespace of
/// its own, so the host's network is never touched); deleted on drop.
/// Links can lose packets, be partitioned and be rate-limited
/// (nftables and `tbf` in each host), and delayed (the environment set
/// with [`Lan::delay`] makes daemons delay what they send).
#[derive(Debug)]
pub struct Lan {
    /// The hosts' namespace names, in order.
    pub hosts: Vec<String>,
    bridge: String,
    tag: u8,
    /// Environment for the daemons started on it ([`Daemon::start_on`]).
    pub env: Vec<(String, String)>,
}

impl Lan {
    /// `n` hosts at 10.(200 + tag).0.(i+1)/24 on one bridge. `tag` keeps
    /// concurrent tests apart (names and subnets).
    pub fn new(tag: u8, n: usize) -> Self {
        require_root();
        let pid = std::process::id();
        let bridge = format!("p2pfs-br-{pid}-{tag}");
        let lan = Self {
            hosts: (0..n).map(|i| format!("p2pfs-h{i}-{pid}-{tag}")).collect(),
            bridge,
            tag,
            env: Vec::new(),
        };
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("running ip");
            assert!(
                out.status.success(),
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let br = lan.bridge.as_str();
        ip(&["netns", "add", br]);
        ip(&["-n", br, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", br, "link", "set", "br0", "up"]);
        for (i, h) in lan.hosts.iter().enumerate() {
            ip(&["netns", "add", h]);
            let (inner, outer) = (format!("veth{i}"), format!("port{i}"));
            ip(&[
                "-n", h, "link", "add", &inner, "type", "veth", "peer", "name", &outer, "netns", br,
            ]);
            ip(&["-n", br, "link", "set", &outer, "master", "br0"]);
            ip(&["-n", br, "link", "set", &outer, "up"]);
            let addr = format!("10.{}.0.{}/24", 200 + u32::from(tag), i + 1);
            ip(&["-n", h, "addr", "add", &addr, "dev", &inner]);
            ip(&["-n", h, "link", "set", &inner, "up"]);
            ip(&["-n", h, "link", "set", "lo", "up"]);
        }
        lan
    }
}

impl Lan {
    /// Host `i`'s address.
    pub fn ip(&self, i: usize) -> String {
        format!("10.{}.0.{}", 200 + u32::from(self.tag), i + 1)
    }

    /// Runs `nft` in host `i`.
    fn nft(&self, i: usize, rule: &str) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.hosts[i], "nft", rule])
            .output()
            .expect("running nft (package nftables)");
        assert!(
            out.status.success(),
            "nft {rule}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn table(&self, i: usize) {
        self.nft(i, "add table inet p2pfs");
        // Loss on what arrives (the sender learns nothing, as on a real
        // path); partitions on what leaves.
        for (chain, hook) in [("loss", "input"), ("part", "output")] {
            self.nft(
                i,
                &format!(
                    "add chain inet p2pfs {chain} {{ type filter hook {hook} priority 0; policy accept; }}"
                ),
            );
        }
    }

    /// Daemons started from now on delay every datagram they send by
    /// `spec` (`25ms`, `25ms~5ms`): between two of them the round trip
    /// is twice that.
    pub fn delay(&mut self, spec: &str) {
        self.env.retain(|(k, _)| k != "P2PFS_LINK_DELAY");
        self.env.push(("P2PFS_LINK_DELAY".into(), spec.into()));
    }

    /// Host `i` drops `percent` of the packets it receives, at random.
    pub fn loss(&self, i: usize, percent: u32) {
        self.table(i);
        self.nft(i, "flush chain inet p2pfs loss");
        if percent > 0 {
            self.nft(
                i,
                &format!("add rule inet p2pfs loss numgen random mod 100 < {percent} counter drop"),
            );
        }
    }

    /// Packets host `i` dropped as loss so far.
    pub fn dropped(&self, i: usize) -> u64 {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.hosts[i],
                "nft",
                "list",
                "chain",
                "inet",
                "p2pfs",
                "loss",
            ])
            .output()
            .expect("running nft");
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Cuts every host of `a` off from every host of `b` (both ways).
    pub fn partition(&self, a: &[usize], b: &[usize]) {
        for (from, to) in [(a, b), (b, a)] {
            for &i in from {
                self.table(i);
                for &j in to {
                    self.nft(
                        i,
                        &format!("add rule inet p2pfs part ip daddr {} drop", self.ip(j)),
                    );
                }
            }
        }
    }

    /// Ends every partition.
    pub fn heal(&self) {
        for i in 0..self.hosts.len() {
            self.table(i);
            self.nft(i, "flush chain inet p2pfs part");
        }
    }

    /// Limits what host `i` sends to `rate` (`tc` syntax: `20mbit`).
    pub fn rate(&self, i: usize, rate: &str) {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.hosts[i],
                "tc",
                "qdisc",
                "replace",
                "dev",
            ])
            .arg(format!("veth{i}"))
            .args([
                "root", "tbf", "rate", rate, "burst", "64kb", "latency", "100ms",
            ])
            .output()
            .expect("running tc");
        assert!(
            out.status.success(),
            "tc: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in self.hosts.iter().chain([&self.bridge]) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
