//! Real tools inside a room, as people use a shared folder: a new
//! directory stays the working directory of the process that made it (the
//! mount's own changes, coming back from the log, never invalidate what
//! the kernel holds), `git init` and `sqlite3` in fresh directories.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use p2pfs_tests::{Daemon, temp_dir, wait_for};

struct Two {
    _root: tempfile::TempDir,
    _a: Daemon,
    _b: Daemon,
    ra: PathBuf,
    rb: PathBuf,
}

/// Two mounts in one room.
fn two() -> Two {
    let root = temp_dir();
    let a = Daemon::mount(&root.path().join("a"), &root.path().join("mnt-a"), &[]);
    let b = Daemon::mount(&root.path().join("b"), &root.path().join("mnt-b"), &[]);
    let ra = a.mountpoint().join("team");
    fs::create_dir(&ra).unwrap();
    let rb = b.join_room_of(&a, "team");
    Two {
        _root: root,
        _a: a,
        _b: b,
        ra,
        rb,
    }
}

/// Runs `script` with `sh -c` in `dir`; returns its stdout, or panics with
/// its stderr.
fn sh(dir: &Path, script: &str) -> String {
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

#[test]
fn a_new_directory_stays_the_working_directory() {
    let t = two();
    for i in 0..40 {
        // `pwd -P` asks the kernel (getcwd): "(deleted)" or an error if
        // the directory was invalidated under the process.
        let got = sh(
            &t.ra,
            &format!("mkdir d{i} && cd d{i} && sleep 0.05 && pwd -P && touch f"),
        );
        assert_eq!(
            got.trim(),
            t.ra.join(format!("d{i}")).to_str().unwrap(),
            "round {i}"
        );
    }
    wait_for(Duration::from_secs(20), "B to list the directories", || {
        (1..40)
            .all(|i| t.rb.join(format!("d{i}/f")).exists())
            .then_some(())
    });
}

#[test]
fn git_and_sqlite_work_in_fresh_directories() {
    let t = two();
    for i in 0..8 {
        let repo = format!("repo{i}");
        sh(
            &t.ra,
            &format!(
                "mkdir {repo} && cd {repo} && git init -q && \
                 git -c user.name=a -c user.email=a@x commit -q --allow-empty -m first && \
                 git rev-parse HEAD"
            ),
        );
        let db = format!("db{i}");
        let rows = sh(
            &t.ra,
            &format!(
                "mkdir {db} && cd {db} && sqlite3 new.db \
                 'create table t(x); insert into t values (1),(2); select count(*) from t;'"
            ),
        );
        assert_eq!(rows.trim(), "2", "{db}");
    }
    wait_for(Duration::from_secs(30), "B to see the databases", || {
        t.rb.join("db7/new.db").exists().then_some(())
    });
    let rows = sh(&t.rb.join("db7"), "sqlite3 new.db 'select sum(x) from t;'");
    assert_eq!(rows.trim(), "3");
}
