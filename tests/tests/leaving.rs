//! A file is safe once published, on default settings: the members
//! responsible for its second copy fetch it at once (not after the view
//! has been stable for two heartbeats), so the author can die seconds
//! later; a member that stops (`p2pfs umount`, SIGTERM) first hands what
//! only it keeps to the others, then says goodbye, and the others restore
//! the copies it kept at once rather than after the offline timeout.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::{
    fs,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use p2pfs_tests::{Daemon, blake3_file, ok, p2pfs, random_file, run, temp_dir, wait_for};
use serde_json::Value;

/// Well under the default heartbeat (30 s) and offline timeout (180 s).
const SOON: Duration = Duration::from_secs(20);

fn status(d: &Daemon) -> Value {
    let out = ok(&p2pfs(d.data_dir(), &["room", "status", "team", "--json"]));
    serde_json::from_str(&out).expect("room status --json prints JSON")
}

fn online(s: &Value) -> usize {
    s["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["online"] == true)
        .count()
}

/// Waits until `d` sees `n` members online.
fn all_online(d: &Daemon, n: usize) {
    wait_for(SOON, "every member online", || {
        (online(&status(d)) == n).then_some(())
    });
}

/// The file at `path` in `d`'s view of the room, once listed.
fn file(d: &Daemon, path: &str) -> Value {
    wait_for(SOON, "the file to be listed", || {
        status(d)["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == path)
            .cloned()
    })
}

fn copies(f: &Value) -> u64 {
    f["copies"].as_u64().unwrap()
}

/// Joins daemons `ds` to the room `team` of `a`.
fn join(a: &Daemon, ds: &[&Daemon]) {
    let ticket = ok(&p2pfs(a.data_dir(), &["room", "ticket", "team"]));
    for d in ds {
        ok(&p2pfs(d.data_dir(), &["room", "join", ticket.trim()]));
    }
}

/// `room get` of `path` on `d` to `out`, checked against `want`.
fn get(d: &Daemon, path: &str, out: &Path, want: &str) {
    let o = run(
        {
            let mut c = p2pfs_tests::p2pfs_command();
            c.arg("--data-dir")
                .arg(d.data_dir())
                .args(["room", "get", "team", path, "-o"])
                .arg(out);
            c
        },
        None,
        Duration::from_secs(60),
    );
    ok(&o);
    assert_eq!(blake3_file(out), want, "{path} read on {}", d.id);
    let _ = fs::remove_file(out);
}

#[test]
fn second_copies_are_made_at_publish_and_survive_the_author_killed() {
    p2pfs_tests::needs_root!();
    let root = temp_dir();
    let work = root.path().join("work");
    fs::create_dir_all(&work).unwrap();
    // Default settings: no --offline-after.
    let mut a = Daemon::mount(&root.path().join("a"), &root.path().join("mnt"), &[]);
    fs::create_dir(a.mountpoint().join("team")).unwrap();
    let others: Vec<Daemon> = ["b", "c", "d"]
        .iter()
        .map(|n| Daemon::start(&root.path().join(n), &["--no-lan"]))
        .collect();
    join(&a, &others.iter().collect::<Vec<_>>());
    all_online(&a, 4);

    // One file put from the command line, one copied into the mount.
    random_file(&work.join("put.bin"), 4 << 20, 1);
    random_file(&work.join("cp.bin"), 4 << 20, 2);
    let put = work.join("put.bin");
    let started = Instant::now();
    ok(&p2pfs(
        a.data_dir(),
        &["room", "put", "team", put.to_str().unwrap()],
    ));
    fs::copy(work.join("cp.bin"), a.mountpoint().join("team/cp.bin")).unwrap();
    for path in ["put.bin", "cp.bin"] {
        wait_for(SOON, "a second complete copy", || {
            (copies(&file(&others[0], path)) >= 2).then_some(())
        });
    }
    println!(
        "both files had 2 copies {:?} after the put",
        started.elapsed()
    );

    // The author dies: every other member still reads both files.
    a.kill9();
    for d in &others {
        for path in ["put.bin", "cp.bin"] {
            get(
                d,
                path,
                &root.path().join("out"),
                &blake3_file(&work.join(path)),
            );
        }
    }
}

#[test]
fn umount_hands_over_what_only_it_keeps_before_it_returns() {
    p2pfs_tests::needs_root!();
    let root = temp_dir();
    let mut a = Daemon::mount(&root.path().join("a"), &root.path().join("mnt"), &[]);
    let room = a.mountpoint().join("team");
    fs::create_dir(&room).unwrap();
    let b = Daemon::start(&root.path().join("b"), &["--no-lan"]);
    let c = Daemon::start(&root.path().join("c"), &["--no-lan"]);
    // One copy each: what A writes is kept by A alone.
    ok(&p2pfs(a.data_dir(), &["room", "set", "team", "copies=1"]));
    join(&a, &[&b, &c]);
    all_online(&a, 3);
    let mut want = Vec::new();
    for (i, size) in [(0u64, 1u64 << 20), (1, 3 << 20), (2, 100_000)] {
        let f = room.join(format!("f{i}"));
        random_file(&f, size, 10 + i);
        want.push((format!("f{i}"), blake3_file(&f)));
    }
    for (path, _) in &want {
        let f = file(&a, path);
        assert_eq!(copies(&f), 1);
        assert_eq!(f["only_here"], true, "{f}");
        let attr = Command::new("getfattr")
            .args(["--only-values", "-n", "user.p2pfs.copies"])
            .arg(room.join(path))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&attr.stdout), "1 (only here)");
    }
    let summary = ok(&p2pfs(a.data_dir(), &["room", "status", "team"]));
    assert!(summary.contains("3 only here"), "{summary}");

    let mnt = a.mountpoint().to_str().unwrap().to_string();
    let out = p2pfs(a.data_dir(), &["umount", &mnt]);
    ok(&out);
    // (It shows the files still being copied when it starts following.)
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!said.contains("warning"), "{said}");
    // Before umount returned, B or C had taken every file: A, gone now,
    // is not needed to read them.
    assert!(a.wait_exit(Duration::from_secs(30)).success());
    for (path, hash) in &want {
        get(&b, path, &root.path().join("out"), hash);
    }
}

#[test]
fn a_goodbye_starts_the_restores_at_once() {
    p2pfs_tests::needs_root!();
    let root = temp_dir();
    let work = root.path().join("work");
    fs::create_dir_all(&work).unwrap();
    let a = Daemon::start(&root.path().join("a"), &["--no-lan"]);
    ok(&p2pfs(a.data_dir(), &["room", "create", "team"]));
    let mut rest: Vec<Daemon> = ["b", "c"]
        .iter()
        .map(|n| Daemon::start(&root.path().join(n), &["--no-lan"]))
        .collect();
    join(&a, &rest.iter().collect::<Vec<_>>());
    all_online(&a, 3);
    random_file(&work.join("f"), 2 << 20, 3);
    ok(&p2pfs(
        a.data_dir(),
        &["room", "put", "team", work.join("f").to_str().unwrap()],
    ));
    let f = wait_for(SOON, "two copies", || {
        let f = file(&a, "f");
        (copies(&f) == 2).then_some(f)
    });
    // The other holder stops (SIGTERM): it says goodbye, and the third
    // member copies the file at once, not after the 180 s timeout.
    let holder = f["holders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| **h != a.id.as_str())
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    let i = rest.iter().position(|d| d.id == holder).unwrap();
    let mut gone = rest.remove(i);
    assert!(gone.terminate().success());
    let stopped = Instant::now();
    wait_for(SOON, "the copy restored on the third member", || {
        let s = status(&a);
        let f = file(&a, "f");
        (online(&s) == 2
            && copies(&f) == 2
            && f["holders"]
                .as_array()
                .unwrap()
                .contains(&Value::String(rest[0].id.clone())))
        .then_some(())
    });
    println!(
        "restored {:?} after the holder said goodbye",
        stopped.elapsed()
    );
}

#[test]
fn a_put_without_a_daemon_waits_until_a_member_keeps_the_file() {
    p2pfs_tests::needs_root!();
    let root = temp_dir();
    let work = root.path().join("work");
    fs::create_dir_all(&work).unwrap();
    let b = Daemon::start(&root.path().join("b"), &["--no-lan"]);
    let c = Daemon::start(&root.path().join("c"), &["--no-lan"]);
    ok(&p2pfs(b.data_dir(), &["room", "create", "team"]));
    join(&b, &[&c]);
    all_online(&b, 2);
    // A member with no daemon: each command runs a node of its own.
    let a = root.path().join("a");
    let ticket = ok(&p2pfs(b.data_dir(), &["room", "ticket", "team"]));
    ok(&p2pfs(&a, &["room", "join", ticket.trim()]));
    random_file(&work.join("f"), 3 << 20, 4);
    let out = p2pfs(
        &a,
        &["room", "put", "team", work.join("f").to_str().unwrap()],
    );
    ok(&out);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("warning"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The command is over: B and C read the file without A.
    let want = blake3_file(&work.join("f"));
    get(&b, "f", &root.path().join("out"), &want);
    get(&c, "f", &root.path().join("out"), &want);
}
