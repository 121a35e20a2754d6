//! One data directory, many commands: a daemon starting while commands
//! run, commands run together without a daemon, and commands started
//! while a daemon starts each wait their turn (and say for whom) instead
//! of failing because another process holds the store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, ChildStdin, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use p2pfs_tests::*;

/// `p2pfs add -` holding the store until its standard input is closed.
struct Holder {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Holder {
    /// Starts it on `data` and waits until it has the store.
    fn start(data: &Path) -> Self {
        let mut child = p2pfs_tests::p2pfs_command()
            .arg("--data-dir")
            .arg(data)
            .args(["add", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let me = format!("p2pfs add (pid {})", child.id());
        wait_for(Duration::from_secs(30), "the add to hold the store", || {
            let line = std::fs::read_to_string(data.join("store/lock")).ok()?;
            (line.trim() == me).then_some(())
        });
        Self { child, stdin }
    }

    fn name(&self) -> String {
        format!("p2pfs add (pid {})", self.child.id())
    }

    /// Ends its input: it adds the empty blob and exits.
    fn finish(mut self) {
        drop(self.stdin.take());
        let mut stdout = String::new();
        std::io::Read::read_to_string(&mut self.child.stdout.take().unwrap(), &mut stdout).unwrap();
        assert!(self.child.wait().unwrap().success());
        assert!(stdout.ends_with("  -\n"), "{stdout}");
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `p2pfs ARGS…` in the background, its stderr lines sent as they come.
fn spawn_watched(
    data: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Child, mpsc::Receiver<String>) {
    let mut child = p2pfs_tests::p2pfs_command()
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits for a line starting with `prefix` on `rx`.
fn wait_line(rx: &mpsc::Receiver<String>, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.starts_with(prefix) => return line,
            Ok(_) => {}
            Err(_) => panic!("no line {prefix:?} within 30 s"),
        }
    }
}

fn finish(child: Child) -> std::process::Output {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    out
}

#[test]
fn commands_run_together_without_a_daemon_all_succeed() {
    // `find … | xargs -P4 p2pfs add`: 4 at a time, 24 files.
    let root = temp_dir();
    let data = root.path().join("data");
    let files = root.path().join("files");
    std::fs::create_dir(&files).unwrap();
    let mut want: Vec<String> = (0..24)
        .map(|i| {
            let p = files.join(format!("f{i}"));
            random_file(&p, 1000 + i * 3000, i);
            blake3_file(&p)
        })
        .collect();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("find \"$1\" -type f | xargs -P4 -n1 \"$0\" --data-dir \"$2\" add")
        .arg(p2pfs_bin())
        .arg(&files)
        .arg(&data);
    let out = run(cmd, None, Duration::from_secs(120));
    let printed = ok(&out);
    assert_eq!(printed.lines().count(), 24, "{printed}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut listed: Vec<String> = ok(&p2pfs(&data, &["ls"]))
        .lines()
        .map(|l| l[..64].to_string())
        .collect();
    listed.sort();
    want.sort();
    assert_eq!(listed, want);
}

#[test]
fn a_command_waits_for_the_store_and_says_for_whom() {
    let root = temp_dir();
    let data = root.path().join("data");
    ok(&p2pfs_with_input(&data, &["add", "-"], Some(b"first")));
    let holder = Holder::start(&data);
    let (ls, stderr) = spawn_watched(&data, &["ls"], &[]);
    let line = wait_line(&stderr, "waiting for");
    assert_eq!(
        line,
        format!(
            "waiting for {} to finish with {}",
            holder.name(),
            data.join("store").display()
        )
    );
    holder.finish();
    let out = finish(ls);
    // The first blob and the empty one the holder added.
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);

    // The wait is bounded.
    let holder = Holder::start(&data);
    let (ls, stderr) = spawn_watched(&data, &["ls"], &[("P2PFS_WAIT", "2")]);
    let out = ls.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<String> = stderr.iter().collect();
    assert_eq!(
        lines.last().unwrap(),
        &format!(
            "error: the store at {} is still in use by {} after 2 s",
            data.join("store").display(),
            holder.name()
        ),
        "{lines:?}"
    );
    holder.finish();
}

#[test]
fn a_daemon_waits_for_a_command_and_commands_wait_for_the_daemon() {
    let root = temp_dir();
    let data = root.path().join("data");
    let holder = Holder::start(&data);
    let (daemon, daemon_err) = spawn_watched(
        &data,
        &["daemon", "--listen", "127.0.0.1:0", "--no-lan"],
        &[],
    );
    let mut daemon = KillOnDrop(daemon);
    let line = wait_line(&daemon_err, "waiting for");
    assert_eq!(
        line,
        format!(
            "waiting for {} to finish with {}",
            holder.name(),
            data.join("store").display()
        )
    );
    // A second node fails at once; a command waits for the first.
    let err = fails(&p2pfs(
        &data,
        &["daemon", "--listen", "127.0.0.1:0", "--no-lan"],
    ));
    assert!(
        err.contains("already running or starting")
            && err.contains(&format!("(pid {})", daemon.0.id())),
        "{err}"
    );
    let (status, status_err) = spawn_watched(&data, &["status", "--json"], &[]);
    let line = wait_line(&status_err, "waiting for");
    assert_eq!(
        line,
        format!(
            "waiting for the p2pfs node starting for {} (pid {}) to answer",
            data.display(),
            daemon.0.id()
        )
    );
    holder.finish();
    let out = finish(status);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["daemon"], true, "the command ran in the daemon");
    signal(daemon.0.id(), "TERM");
    let status = wait_for(Duration::from_secs(30), "the daemon to stop", || {
        daemon.0.try_wait().unwrap()
    });
    assert!(status.success());
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Daemon starts in [`daemons_start_while_commands_run`]:
/// `P2PFS_TURNS_STARTS` (bench/turns.sh runs 50).
fn starts() -> usize {
    std::env::var("P2PFS_TURNS_STARTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
}

#[test]
fn daemons_start_while_commands_run() {
    // As a script polls for readiness: a daemon started and stopped over
    // and over while two threads run commands on the same directory.
    let root = temp_dir();
    let data = root.path().join("data");
    ok(&p2pfs_with_input(&data, &["add", "-"], Some(b"seed")));
    let stop = Arc::new(AtomicBool::new(false));
    let ran = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..2)
        .map(|w| {
            let (data, stop, ran) = (data.clone(), stop.clone(), ran.clone());
            let file = root.path().join(format!("w{w}"));
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    std::fs::write(&file, format!("worker {w} file {i}")).unwrap();
                    let f = file.to_str().unwrap();
                    let args: &[&str] = match i % 3 {
                        0 => &["status"],
                        1 => &["ls"],
                        _ => &["add", f],
                    };
                    let out = p2pfs(&data, args);
                    if !out.status.success() {
                        failures.push(format!(
                            "{args:?}: {}",
                            String::from_utf8_lossy(&out.stderr).trim()
                        ));
                    }
                    ran.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
                failures
            })
        })
        .collect();
    let started = Instant::now();
    let n = starts();
    for _ in 0..n {
        let mut d = Daemon::start(&data, &["--no-lan"]);
        assert!(d.terminate().success(), "{}", d.log());
    }
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let failures: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    eprintln!(
        "{n} daemon starts in {:.1} s ({:.0} ms each) beside {} commands",
        took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / n as f64,
        ran.load(Ordering::Relaxed)
    );
    assert!(failures.is_empty(), "{failures:#?}");
    let log = std::fs::read_to_string(data.join("daemon.log")).unwrap();
    assert!(!log.contains("in use"), "{log}");
}

#[test]
fn a_stopping_daemon_finishes_its_commands_and_a_new_one_waits_for_it() {
    let root = temp_dir();
    let data = root.path().join("data");
    let mut first = Daemon::start(&data, &["--no-lan"]);
    // A command the daemon has accepted: an add whose input is still
    // coming when the daemon is told to stop.
    let mut add = p2pfs_tests::p2pfs_command()
        .arg("--data-dir")
        .arg(&data)
        .args(["add", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = add.stdin.take().unwrap();
    // More than a blob kept in the database: the import spills to a file.
    let mut sent = vec![0u8; 100_000];
    fastrand::fill(&mut sent);
    std::io::Write::write_all(&mut input, &sent).unwrap();
    wait_for(Duration::from_secs(30), "the daemon to import it", || {
        // The import writes to a file in store/tmp/ as the bytes come.
        let importing = std::fs::read_dir(data.join("store/tmp")).ok()?.count();
        (importing > 0).then_some(())
    });
    signal(first.pid(), "TERM");
    wait_for(Duration::from_secs(30), "the daemon to be stopping", || {
        let state = std::fs::read_to_string(data.join("daemon.lock")).ok()?;
        (state.trim() == "stopping").then_some(())
    });
    // A new daemon waits for the stopping one instead of failing.
    let (second, second_err) = spawn_watched(
        &data,
        &["daemon", "--listen", "127.0.0.1:0", "--no-lan"],
        &[],
    );
    let mut second = KillOnDrop(second);
    let line = wait_line(&second_err, "waiting for");
    assert_eq!(
        line,
        format!(
            "waiting for the p2pfs node stopping for {} (pid {}) to exit",
            data.display(),
            first.pid()
        )
    );
    // The add finishes in the stopping daemon, then it exits.
    std::io::Write::write_all(&mut input, b"finished after").unwrap();
    drop(input);
    let out = add.wait_with_output().unwrap();
    sent.extend_from_slice(b"finished after");
    let want = blake3::hash(&sent);
    assert_eq!(ok(&out), format!("{}  -\n", want.to_hex()));
    assert!(first.wait_exit(Duration::from_secs(30)).success());
    wait_line(&second_err, "listening on");
    let listed = ok(&p2pfs(&data, &["ls"]));
    assert!(listed.starts_with(want.to_hex().as_str()), "{listed}");
    signal(second.0.id(), "TERM");
    let status = wait_for(Duration::from_secs(30), "the daemon to stop", || {
        second.0.try_wait().unwrap()
    });
    assert!(status.success());
}
