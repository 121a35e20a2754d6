//! The data directory is its owner's alone: everything p2pfs writes there
//! is created owner-only (directories 0700, files 0600) whatever the
//! umask, and a directory left open to others is tightened, with a
//! warning, by the next command that opens it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use p2pfs_tests::*;

/// Every path under `dir` (itself included) that others could use: a
/// directory not 0700, anything else not 0600.
fn open_to_others(dir: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        let want = if meta.is_dir() { 0o700 } else { 0o600 };
        if mode != want {
            bad.push(format!("{} {mode:04o}", p.display()));
        }
        if meta.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    bad
}

fn assert_private(dir: &Path, must_hold: &[&str]) {
    for f in must_hold {
        assert!(dir.join(f).exists(), "{} is missing", dir.join(f).display());
    }
    let bad = open_to_others(dir);
    assert!(bad.is_empty(), "open to others: {bad:#?}");
}

/// Opens every directory (0755) and file (0644) under `dir`, as an older
/// p2pfs left them.
fn loosen(dir: &Path) {
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let mode = if meta.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        if meta.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    assert!(open_to_others(dir).len() > 5);
}

/// Everything in this process (and the p2pfs it starts) creates files as
/// the system's defaults allow at most: 0666 and 0777.
fn no_umask() {
    rustix::process::umask(rustix::fs::Mode::empty());
}

/// Unmounts on drop, so a failing test leaves no mount behind.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        if is_mount_point(&self.0) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

#[test]
fn a_new_data_directory_is_owner_only_whatever_the_umask() {
    require_root();
    no_umask();
    let root = temp_dir();
    let file = root.path().join("photo.jpg");
    random_file(&file, 3 << 20, 1);
    let f = file.to_str().unwrap();

    // A daemon with blobs, a room and its chat.
    let a_dir = root.path().join("a");
    let a = Daemon::start(&a_dir, &["--no-lan", "--name", "alice"]);
    let hash = ok(&p2pfs(&a_dir, &["add", f]))[..64].to_string();
    ok(&p2pfs(&a_dir, &["room", "create", "team"]));
    ok(&p2pfs(&a_dir, &["chat", "team", "the secret plan"]));

    // Commands without a daemon: a complete fetch, a room of its own…
    let b_dir = root.path().join("b");
    let out = root.path().join("out");
    ok(&p2pfs(
        &b_dir,
        &[
            "fetch",
            &hash,
            "--peer",
            &a.peer(),
            "-o",
            out.to_str().unwrap(),
        ],
    ));
    ok(&p2pfs(&b_dir, &["room", "create", "mine"]));

    // A mount in the background (its log, its control socket), and a
    // download in it from a slow provider, caught halfway.
    let mnt = root.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let _unmount = Unmount(mnt.clone());
    let m = mnt.to_str().unwrap();
    ok(&p2pfs(
        &b_dir,
        &[
            "mount",
            m,
            "--daemon",
            "--listen",
            "127.0.0.1:0",
            "--no-lan",
        ],
    ));
    let c_dir = root.path().join("c");
    let c = Daemon::start(&c_dir, &["--no-lan", "--max-upload-rate", "256K"]);
    let big = root.path().join("big");
    random_file(&big, 8 << 20, 2);
    let big_hash = ok(&p2pfs(&c_dir, &["add", big.to_str().unwrap()]))[..64].to_string();
    let mut fetch = p2pfs_tests::p2pfs_command()
        .arg("--data-dir")
        .arg(&b_dir)
        .args(["fetch", &big_hash, "--peer", &c.peer(), "-o", "-"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(60), "a partial blob", || {
        let listed = ok(&p2pfs(&b_dir, &["ls"]));
        listed
            .lines()
            .any(|l| l.starts_with(&big_hash) && l.contains("partial:"))
            .then_some(())
    });

    assert_private(
        &a_dir,
        &["node.key", "name", "control.sock", "store/meta.redb"],
    );
    assert_private(
        &b_dir,
        &[
            "node.key",
            "port",
            "mount.log",
            "control.sock",
            "store/meta.redb",
            &format!("store/data/{hash}.data"),
            &format!("store/data/{big_hash}.data"),
        ],
    );
    ok(&p2pfs(&b_dir, &["umount", m]));
    let _ = fetch.kill();
    fetch.wait().unwrap();
}

#[test]
fn a_data_directory_open_to_others_is_tightened_with_a_warning() {
    no_umask();
    let root = temp_dir();
    let dir = root.path().join("p2pfs");
    let file = root.path().join("notes.txt");
    random_file(&file, 100_000, 3);
    ok(&p2pfs(&dir, &["add", file.to_str().unwrap()]));
    ok(&p2pfs(&dir, &["room", "create", "team"]));
    let must_hold = ["node.key", "port", "store/meta.redb"];
    assert_private(&dir, &must_hold);

    // Any command tightens it, and says what it did, once.
    loosen(&dir);
    let out = p2pfs(&dir, &["ls"]);
    let listed = ok(&out);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with(&format!(
            "warning: others could read the data directory {}; made owner-only: . 0755→0700",
            dir.display()
        )) && lines[0].contains(" more"),
        "{stderr}"
    );
    assert_private(&dir, &must_hold);
    let again = p2pfs(&dir, &["ls"]);
    assert!(again.stderr.is_empty(), "{again:?}");

    // So does a daemon starting, for everything down to the blob files.
    loosen(&dir);
    let mut d = Daemon::start(&dir, &["--no-lan"]);
    assert!(
        d.log().contains("made owner-only: . 0755→0700"),
        "{}",
        d.log()
    );
    assert_private(&dir, &["node.key", "control.sock", "store/meta.redb"]);
    assert!(d.terminate().success());
}
