//! Faults on the namespace network (hosts on one bridge, 20 ms round
//! trips): a partition both halves keep writing through, then healed; a
//! host frozen for 30 s; a node restarted on its data directory; a
//! provider killed in the middle of a rate-limited transfer; a disk
//! filling up mid-download; a mount process killed with SIGKILL in the
//! middle of a write, and remounted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::Path, time::Duration, time::Instant};

use p2pfs_tests::{Daemon, Lan, blake3_file, ok, p2pfs, random_file, signal, temp_dir, wait_for};
use serde_json::Value;

const SLOW: Duration = Duration::from_secs(90);

/// A new network of `n` hosts with 20 ms round trips.
fn network(tag: u8, n: usize) -> Lan {
    let mut net = Lan::new(tag, n);
    net.delay("10ms");
    net
}

/// Daemons on every host of `net`, in one room, in step.
fn members(net: &Lan, root: &Path, n: usize) -> Vec<Daemon> {
    let ds = daemons(net, root, n);
    room(&ds);
    converged(&ds.iter().collect::<Vec<_>>(), 0, 0);
    ds
}

/// Daemons on every host of a new network, listening on port 7000.
fn daemons(net: &Lan, root: &Path, n: usize) -> Vec<Daemon> {
    (0..n).map(|i| start(net, root, i)).collect()
}

fn start(net: &Lan, root: &Path, i: usize) -> Daemon {
    let name = format!("n{i}");
    Daemon::start_on(
        net,
        i,
        &root.join(&name),
        &["--name", &name, "--listen", &format!("{}:7000", net.ip(i))],
    )
}

/// A room made on `ds[0]` and joined by the others with the ticket.
fn room(ds: &[Daemon]) {
    let ticket = ok(&p2pfs(ds[0].data_dir(), &["room", "create", "team"]));
    for d in &ds[1..] {
        ok(&p2pfs(d.data_dir(), &["room", "join", ticket.trim()]));
    }
}

fn ls(d: &Daemon) -> Value {
    serde_json::from_str(&ok(&p2pfs(d.data_dir(), &["room", "ls", "team", "--json"]))).unwrap()
}

fn chat(d: &Daemon) -> String {
    ok(&p2pfs(d.data_dir(), &["chat", "team"]))
}

fn put(d: &Daemon, file: &Path, name: &str) {
    ok(&p2pfs(
        d.data_dir(),
        &["room", "put", "team", file.to_str().unwrap(), name],
    ));
}

/// Waits until every daemon lists the same tree of `files` entries and
/// holds `lines` chat lines; returns how long that took.
fn converged(ds: &[&Daemon], files: usize, lines: usize) -> Duration {
    let t = Instant::now();
    wait_for(SLOW, "the members to converge", || {
        let first = ls(ds[0]);
        (first.as_array().unwrap().len() == files
            && ds.iter().all(|d| ls(d) == first)
            && ds.iter().all(|d| chat(d).lines().count() == lines))
        .then_some(())
    });
    t.elapsed()
}

#[test]
fn a_partition_heals_and_both_halves_writes_are_kept() {
    p2pfs_tests::needs_root!();
    let net = network(6, 4);
    let root = temp_dir();
    let ds = members(&net, root.path(), 4);
    let all: Vec<&Daemon> = ds.iter().collect();

    net.partition(&[0, 1], &[2, 3]);
    let work = root.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    for (i, d) in ds.iter().enumerate() {
        let f = work.join(format!("from-{i}"));
        random_file(&f, 50_000 + i as u64, i as u64);
        put(d, &f, &format!("from-{i}"));
        ok(&p2pfs(
            d.data_dir(),
            &["chat", "team", &format!("line from {i}")],
        ));
    }
    // The same name written on both sides.
    let (x, y) = (work.join("x"), work.join("y"));
    std::fs::write(&x, "left side\n").unwrap();
    std::fs::write(&y, "right side\n").unwrap();
    put(&ds[0], &x, "shared.txt");
    put(&ds[2], &y, "shared.txt");
    // Each half converges on its own writes.
    converged(&[&ds[0], &ds[1]], 3, 2);
    converged(&[&ds[2], &ds[3]], 3, 2);

    net.heal();
    let took = converged(&all, 6, 4);
    eprintln!("converged {took:?} after the partition healed");
    let names: Vec<String> = ls(&ds[3])
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    assert!(names.contains(&"shared.txt".to_string()), "{names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("shared.txt.conflict-")),
        "both versions kept: {names:?}"
    );
}

#[test]
fn a_host_frozen_for_30s_catches_up_when_resumed() {
    p2pfs_tests::needs_root!();
    let net = network(7, 3);
    let root = temp_dir();
    let ds = members(&net, root.path(), 3);
    let all: Vec<&Daemon> = ds.iter().collect();

    signal(ds[2].pid(), "STOP");
    let frozen = Instant::now();
    let work = root.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let f = work.join("while-frozen");
    random_file(&f, 300_000, 1);
    put(&ds[0], &f, "while-frozen");
    ok(&p2pfs(
        ds[0].data_dir(),
        &["chat", "team", "posted while n2 sleeps"],
    ));
    // The others go on: n1 sees the new file and reads it from n0.
    wait_for(SLOW, "n1 to list the new file", || {
        let listed = ls(&ds[1]);
        let has = |v: &Value| v["path"] == "while-frozen";
        listed.as_array().unwrap().iter().any(has).then_some(())
    });
    let got = work.join("got");
    ok(&p2pfs(
        ds[1].data_dir(),
        &[
            "room",
            "get",
            "team",
            "while-frozen",
            "-o",
            got.to_str().unwrap(),
        ],
    ));
    assert_eq!(blake3_file(&got), blake3_file(&f));
    let rest = Duration::from_secs(30).saturating_sub(frozen.elapsed());
    std::thread::sleep(rest);
    signal(ds[2].pid(), "CONT");
    let took = converged(&all, 1, 1);
    eprintln!("the frozen host caught up {took:?} after it resumed");
}

#[test]
fn a_node_restarted_on_its_data_dir_keeps_its_identity_and_catches_up() {
    p2pfs_tests::needs_root!();
    let net = network(8, 2);
    let root = temp_dir();
    let mut ds = daemons(&net, root.path(), 2);
    room(&ds);
    let id = ds[1].id.clone();
    let work = root.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let f = work.join("before");
    random_file(&f, 100_000, 1);
    put(&ds[0], &f, "before");
    let all: Vec<&Daemon> = ds.iter().collect();
    converged(&all, 1, 0);

    ds[1].terminate();
    let g = work.join("during");
    random_file(&g, 100_000, 2);
    put(&ds[0], &g, "during");
    ok(&p2pfs(
        ds[0].data_dir(),
        &["chat", "team", "while n1 was down"],
    ));
    ds[1] = start(&net, root.path(), 1);
    assert_eq!(ds[1].id, id, "the same identity");
    let all: Vec<&Daemon> = ds.iter().collect();
    converged(&all, 2, 1);
    let got = work.join("got");
    ok(&p2pfs(
        ds[1].data_dir(),
        &["room", "get", "team", "during", "-o", got.to_str().unwrap()],
    ));
    assert_eq!(blake3_file(&got), blake3_file(&g));
}

#[test]
fn a_provider_killed_mid_transfer_over_slow_links_is_replaced() {
    p2pfs_tests::needs_root!();
    let net = network(9, 3);
    // 40 Mbit/s out of each provider: 24 MiB takes several seconds.
    net.rate(0, "40mbit");
    net.rate(1, "40mbit");
    let root = temp_dir();
    let mut ds = daemons(&net, root.path(), 3);
    let file = root.path().join("blob");
    random_file(&file, 24 << 20, 4);
    let hash = blake3_file(&file);
    for d in &ds[..2] {
        ok(&p2pfs(d.data_dir(), &["add", file.to_str().unwrap()]));
    }
    let out = root.path().join("out");
    let mut fetch = p2pfs_tests::p2pfs_command()
        .arg("--data-dir")
        .arg(ds[2].data_dir())
        .args(["fetch", &hash, "-o", out.to_str().unwrap()])
        .args(["--peer", &ds[0].peer(), "--peer", &ds[1].peer()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the first provider once the download is under way.
    let at = wait_for(SLOW, "the download to start", || {
        let b = ds[2].status()["bytes"].as_u64().unwrap_or(0);
        (b > 2 << 20).then_some(b)
    });
    ds[0].kill9();
    assert!(
        at < 20 << 20,
        "killed mid-transfer, not after ({at} bytes in)"
    );
    let done = wait_for(SLOW, "the fetch to finish", || fetch.try_wait().unwrap());
    assert!(done.success(), "the fetch failed");
    assert_eq!(blake3_file(&out), hash);
}

#[test]
fn a_disk_filling_up_mid_download_is_a_clear_error_and_the_download_resumes() {
    p2pfs_tests::needs_root!();
    let net = Lan::new(10, 2);
    let root = temp_dir();
    // The downloader's data directory on a 12 MiB filesystem.
    let disk = p2pfs_tests::Tmpfs::mount("size=12m");
    let provider = start(&net, root.path(), 0);
    let downloader = Daemon::start_on(
        &net,
        1,
        &disk.path().join("n1"),
        &["--name", "n1", "--listen", &format!("{}:7000", net.ip(1))],
    );
    let file = root.path().join("blob");
    random_file(&file, 20 << 20, 10);
    let hash = blake3_file(&file);
    // 32 Mbit/s out of the provider: the download lasts seconds.
    net.rate(0, "32mbit");
    ok(&p2pfs(
        provider.data_dir(),
        &["add", file.to_str().unwrap()],
    ));
    let peer = provider.peer();
    let fetch = || {
        p2pfs(
            downloader.data_dir(),
            &["fetch", &hash, "--peer", &peer, "-o", "-"],
        )
    };

    let present = || -> u64 {
        let ls: Value =
            serde_json::from_str(&ok(&p2pfs(downloader.data_dir(), &["ls", "--json"]))).unwrap();
        ls.as_array()
            .unwrap()
            .iter()
            .map(|b| b["present"].as_u64().unwrap())
            .sum()
    };

    // Too big for the disk: the store reserves a blob's space before the
    // first byte, so this fails at once with one clear line.
    let err = p2pfs_tests::fails(&fetch());
    assert!(err.contains("no space left on device"), "{err}");
    assert!(downloader.status()["daemon"].as_bool().unwrap());
    ok(&p2pfs(downloader.data_dir(), &["verify"]));

    // Room for it, then the disk fills up (another program) mid-download.
    let resize = |size: &str| {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(disk.path())
            .status()
            .unwrap();
        assert!(status.success());
    };
    resize("26m");
    let mut child = p2pfs_tests::p2pfs_command()
        .arg("--data-dir")
        .arg(downloader.data_dir())
        .args(["fetch", &hash, "--peer", &peer, "-o", "-"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(SLOW, "the download to start", || {
        (present() > 1 << 20).then_some(())
    });
    let filler = disk.path().join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![7u8; 64 << 10];
    let full = loop {
        if let Err(e) = std::io::Write::write_all(&mut f, &block) {
            break e;
        }
    };
    assert_eq!(full.raw_os_error(), Some(28), "{full}");
    drop(f);
    let out = wait_for(SLOW, "the fetch to end", || child.try_wait().unwrap());
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    // Either its space was reserved and it completes, or it stops with
    // one clear line; never a panic, and the node lives on.
    assert!(!stderr.contains("panicked"), "{stderr}");
    if !out.success() {
        assert!(stderr.contains("no space left on device"), "{stderr}");
    }
    assert!(downloader.status()["daemon"].as_bool().unwrap());
    // Nothing stored is corrupt.
    ok(&p2pfs(downloader.data_dir(), &["verify"]));
    let kept = present();
    eprintln!("disk full mid-download: fetch {out}, {kept} bytes kept: {stderr}");

    // With room again, the download resumes where it stopped.
    std::fs::remove_file(&filler).unwrap();
    ok(&fetch());
    ok(&p2pfs(downloader.data_dir(), &["verify", &hash]));
    assert_eq!(present(), 20 << 20);
    drop(downloader);
    drop(provider);
}

#[test]
fn a_mount_killed_9_mid_write_is_remounted_with_nothing_acknowledged_lost() {
    p2pfs_tests::needs_root!();
    let net = Lan::new(11, 2);
    let root = temp_dir();
    let dir = |n: &str| root.path().join(n);
    let mount = |i: usize, n: &str| {
        Daemon::mount_on(
            &net,
            i,
            &dir(n),
            &dir(&format!("mnt-{n}")),
            &["--name", n, "--listen", &format!("{}:7000", net.ip(i))],
        )
    };
    let mut a = mount(0, "a");
    let b = mount(1, "b");
    let room = |d: &Daemon| d.mountpoint().join("team");
    std::fs::create_dir(room(&a)).unwrap();
    let ticket = ok(&p2pfs(a.data_dir(), &["room", "ticket", "team"]));
    ok(&p2pfs(b.data_dir(), &["room", "join", ticket.trim()]));

    // Files written through the mount one after another (each published
    // when its close returns) and chat lines, until the kill.
    let work = dir("work");
    std::fs::create_dir_all(&work).unwrap();
    let mut written = Vec::new();
    for i in 0..6u64 {
        let src = work.join(format!("f{i}"));
        random_file(&src, 300_000 * (i + 1), 20 + i);
        std::fs::copy(&src, room(&a).join(format!("f{i}"))).unwrap();
        written.push((format!("f{i}"), blake3_file(&src)));
        let mut chat = std::fs::OpenOptions::new()
            .append(true)
            .open(room(&a).join("chat.log"))
            .unwrap();
        std::io::Write::write_all(&mut chat, format!("line {i}\n").as_bytes()).unwrap();
    }
    // A big write in flight when the mount process dies.
    let big = work.join("big");
    random_file(&big, 64 << 20, 30);
    let cp = std::process::Command::new("cp")
        .arg(&big)
        .arg(room(&a).join("big"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(SLOW, "the big write to be under way", || {
        let len = std::fs::metadata(room(&a).join("big")).map_or(0, |m| m.len());
        (len > 0).then_some(())
    });
    a.kill9();
    let mut cp = cp;
    let _ = cp.wait();

    // Remounted on the same data directory: the dead mount is replaced,
    // every acknowledged file and line is there, on both members, and the
    // interrupted file was never published half-written.
    let stale = std::fs::read_dir(room(&a)).map_err(|e| e.raw_os_error());
    assert_eq!(
        stale.err(),
        Some(Some(107)),
        "a dead mount answers ENOTCONN"
    );
    let a2 = mount(0, "a");
    drop(a);
    let a = a2;
    for d in [&a, &b] {
        for (name, hash) in &written {
            let f = room(d).join(name);
            wait_for(SLOW, "the files after the remount", || {
                f.exists().then_some(())
            });
            assert_eq!(&blake3_file(&f), hash, "{name}");
        }
        let chat = std::fs::read_to_string(room(d).join("chat.log")).unwrap();
        for i in 0..6 {
            assert!(chat.contains(&format!("line {i}")), "{chat}");
        }
        let bigf = room(d).join("big");
        if bigf.exists() {
            assert_eq!(blake3_file(&bigf), blake3_file(&big), "a half-written file");
        }
    }
    ok(&p2pfs(a.data_dir(), &["verify"]));
}
