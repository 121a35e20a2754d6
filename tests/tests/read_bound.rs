//! Reads no member can serve: they fail with `EIO` within the documented
//! 30 s, counted from the read, whether the only holder was killed or is
//! frozen; later reads of the same missing bytes fail at once until a
//! holder is back; and a signal to the reading process ends its wait.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use p2pfs_tests::{Daemon, ok, p2pfs, random_file, signal, temp_dir, wait_for};

const SYNC: Duration = Duration::from_secs(20);
/// The documented bound, and what a loaded machine may add to it.
const BOUND: Duration = Duration::from_secs(30);
const SLACK: Duration = Duration::from_secs(4);

struct Pair {
    root: tempfile::TempDir,
    a: Daemon,
    _b: Daemon,
    ra: PathBuf,
    rb: PathBuf,
}

/// Two mounts in a room with `copies=1`: B holds only what it reads.
fn pair() -> Pair {
    let root = temp_dir();
    let a = Daemon::mount(&root.path().join("a"), &root.path().join("mnt-a"), &[]);
    let b = Daemon::mount(&root.path().join("b"), &root.path().join("mnt-b"), &[]);
    let ra = a.mountpoint().join("r");
    fs::create_dir(&ra).unwrap();
    ok(&p2pfs(a.data_dir(), &["room", "set", "r", "copies=1"]));
    let rb = b.join_room_of(&a, "r");
    Pair {
        root,
        a,
        _b: b,
        ra,
        rb,
    }
}

/// Publishes `name` (1 MiB) on A and waits until B lists it.
fn publish(p: &Pair, name: &str, seed: u64) -> PathBuf {
    random_file(&p.ra.join(name), 1 << 20, seed);
    let f = p.rb.join(name);
    wait_for(SYNC, "the file listed on B", || {
        (fs::metadata(&f).ok()?.len() == 1 << 20).then_some(())
    });
    f
}

/// Reads `path`; returns the errno and how long it took.
fn read_err(path: &Path) -> (Option<i32>, Duration) {
    let t = Instant::now();
    let err = fs::read(path).expect_err("nobody can serve it");
    (err.raw_os_error(), t.elapsed())
}

fn check_bounded(f: &Path, what: &str) {
    let (errno, took) = read_err(f);
    assert_eq!(errno, Some(5), "{what}: EIO");
    assert!(took < BOUND + SLACK, "{what}: failed after {took:?}");
    // The same missing bytes again: at once.
    let (errno, again) = read_err(f);
    assert_eq!(errno, Some(5), "{what}: EIO again");
    assert!(
        again < Duration::from_secs(2),
        "{what}: again after {again:?}"
    );
    println!("{what}: EIO after {took:?}, again after {again:?}");
}

#[test]
fn a_read_of_a_killed_holders_file_fails_in_time_and_works_when_it_is_back() {
    p2pfs_tests::needs_root!();
    let mut p = pair();
    let f = publish(&p, "killed.bin", 1);
    let want = fs::read(p.ra.join("killed.bin")).unwrap();
    p.a.kill9();
    check_bounded(&f, "holder killed");
    // The holder comes back: the file reads again.
    let (data, mnt) = (p.root.path().join("a"), p.root.path().join("mnt-a"));
    p.a = Daemon::mount(&data, &mnt, &[]);
    let got = wait_for(Duration::from_secs(60), "the file to read on B", || {
        fs::read(&f).ok()
    });
    assert!(got == want, "the bytes read are the file's");
}

#[test]
fn a_read_of_a_frozen_holders_file_fails_in_time_and_a_signal_interrupts_it() {
    p2pfs_tests::needs_root!();
    let p = pair();
    let f = publish(&p, "frozen.bin", 2);
    let g = publish(&p, "interrupted.bin", 3);
    signal(p.a.pid(), "STOP");
    let resume = Resume(p.a.pid());

    // Ctrl-C to a reader waiting on the network ends it at once.
    let mut cat = Command::new("cat")
        .arg(&g)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // It is waiting once it is asleep in the read.
    wait_for(Duration::from_secs(10), "cat to block in its read", || {
        let stat = fs::read_to_string(format!("/proc/{}/stat", cat.id())).ok()?;
        let state = stat.rsplit_once(") ")?.1.chars().next()?;
        matches!(state, 'S' | 'D').then_some(())
    });
    let sent = Instant::now();
    signal(cat.id(), "INT");
    let status = wait_for(Duration::from_secs(10), "cat to exit on SIGINT", || {
        cat.try_wait().unwrap()
    });
    let took = sent.elapsed();
    assert!(!status.success());
    assert!(took < Duration::from_secs(3), "interrupted after {took:?}");
    println!("a reader waiting on a frozen holder: ended {took:?} after SIGINT");

    check_bounded(&f, "holder frozen");
    drop(resume);
    let got = wait_for(
        Duration::from_secs(90),
        "the file to read once A runs",
        || fs::read(&f).ok(),
    );
    assert_eq!(got.len(), 1 << 20);
}

/// Resumes a frozen process on drop (also when the test fails).
struct Resume(u32);

impl Drop for Resume {
    fn drop(&mut self) {
        signal(self.0, "CONT");
    }
}
