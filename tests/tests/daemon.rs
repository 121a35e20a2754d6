//! `p2pfs daemon` and the commands that talk to it: real processes, real
//! QUIC between them on 127.0.0.1, the control socket in the data dir.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{process::Stdio, time::Duration};

use p2pfs_tests::{Daemon, blake3_file, fails, ok, p2pfs, random_file, temp_dir, wait_for};

#[test]
fn a_daemon_serves_add_share_fetch_and_status() {
    let root = temp_dir();
    let file = root.path().join("photo.jpg");
    random_file(&file, (3 << 20) + 11, 1);
    let hash = blake3_file(&file);
    let a_dir = root.path().join("a");
    let mut a = Daemon::start(&a_dir, &[]);
    let f = file.to_str().unwrap();

    // Through the control socket: stdout is exactly b3sum's line.
    assert_eq!(ok(&p2pfs(&a_dir, &["add", f])), format!("{hash}  {f}\n"));
    let ticket = ok(&p2pfs(&a_dir, &["share", f]));
    assert!(
        ticket.starts_with("blob") && ticket.lines().count() == 1,
        "{ticket}"
    );
    let with_ticket = ok(&p2pfs(&a_dir, &["add", "--ticket", f]));
    let lines: Vec<&str> = with_ticket.lines().collect();
    assert_eq!(lines[0], format!("{hash}  {f}"));
    assert!(lines[1].starts_with("blob"), "{with_ticket}");
    let status = a.status();
    assert_eq!(status["daemon"], true);
    assert_eq!(status["node"], a.id.as_str());

    // A ticket is enough; the file gets the ticket's name; nothing but
    // the file is written when not on a terminal.
    let b_dir = root.path().join("b");
    let out_dir = root.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let mut cmd = p2pfs_tests::p2pfs_command();
    cmd.current_dir(&out_dir)
        .arg("--data-dir")
        .arg(&b_dir)
        .args(["fetch", ticket.trim()]);
    let out = p2pfs_tests::run(cmd, None, Duration::from_secs(120));
    assert_eq!(ok(&out), "");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(blake3_file(&out_dir.join("photo.jpg")), hash);

    // A hash and a peer, to standard output.
    let c_dir = root.path().join("c");
    let out = p2pfs(&c_dir, &["fetch", &hash, "--peer", &a.peer(), "-o", "-"]);
    assert_eq!(blake3::hash(&out.stdout).to_hex().as_str(), hash);

    // Errors a user makes are one clear line.
    let d_dir = root.path().join("d");
    let wrong = format!("{}@{}", "a".repeat(52), a.addr);
    let line = fails(&p2pfs(
        &d_dir,
        &["fetch", &hash, "--peer", &wrong, "-o", "-"],
    ));
    assert!(line.contains(&a.id), "{line}");
    // With no peer and no DHT node known, the error says so.
    let line = fails(&p2pfs(&d_dir, &["fetch", &hash, "-o", "-"]));
    assert!(line.contains("no peers"), "{line}");
    fails(&p2pfs(&d_dir, &["fetch", "blobnotaticket"]));

    // A fetch run by another daemon keeps its connection: both list the
    // other as a peer.
    let e = Daemon::start(&root.path().join("e"), &[]);
    let copy = root.path().join("copy");
    ok(&p2pfs(
        e.data_dir(),
        &[
            "fetch",
            &hash,
            "--peer",
            &a.peer(),
            "-o",
            copy.to_str().unwrap(),
        ],
    ));
    assert_eq!(blake3_file(&copy), hash);
    let peers = |d: &Daemon| -> Vec<String> {
        d.status()["peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(peers(&e).contains(&a.id));
    wait_for(Duration::from_secs(10), "A to list E", || {
        peers(&a).contains(&e.id).then_some(())
    });

    // SIGTERM stops it cleanly, and the store is usable without it.
    assert!(a.terminate().success(), "{}", a.log());
    assert!(!a_dir.join("control.sock").exists());
    assert!(ok(&p2pfs(&a_dir, &["ls"])).contains(&hash[..16]));
}

#[test]
fn a_fetch_whose_node_is_killed_resumes_where_it_stopped() {
    let root = temp_dir();
    let size: u64 = 96 << 20;
    let file = root.path().join("big.bin");
    random_file(&file, size, 2);
    let hash = blake3_file(&file);
    let a_dir = root.path().join("a");
    ok(&p2pfs(&a_dir, &["add", file.to_str().unwrap()]));
    let a = Daemon::start(&a_dir, &["--max-upload-rate", "16M"]);

    // The fetcher is a daemon; the fetch command asks it over its socket.
    let b_dir = root.path().join("b");
    let mut b = Daemon::start(&b_dir, &[]);
    let out = root.path().join("out.bin");
    let mut fetch = p2pfs_tests::p2pfs_command()
        .arg("--data-dir")
        .arg(&b_dir)
        .args(["fetch", &hash, "--peer", &a.peer(), "-o"])
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill -9 the fetching node once a third of the blob is committed.
    let committed = wait_for(Duration::from_secs(120), "a third to be committed", || {
        let v: serde_json::Value =
            serde_json::from_slice(&p2pfs(&b_dir, &["ls", "--json"]).stdout).ok()?;
        let present =
            v.as_array()?.iter().find(|b| b["hash"] == hash.as_str())?["present"].as_u64()?;
        (present >= size / 3).then_some(present)
    });
    b.kill9();
    let _ = fetch.kill();
    let _ = fetch.wait();
    assert!(committed < size, "the kill came after the download");

    // Restarted, it fetches only what is missing.
    let b = Daemon::start(&b_dir, &[]);
    let out2 = root.path().join("out2.bin");
    let done = p2pfs(
        &b_dir,
        &[
            "fetch",
            &hash,
            "--peer",
            &a.peer(),
            "-v",
            "-o",
            out2.to_str().unwrap(),
        ],
    );
    ok(&done);
    assert_eq!(blake3_file(&out2), hash);
    let stderr = String::from_utf8_lossy(&done.stderr);
    let received: u64 = stderr
        .lines()
        .filter_map(|l| l.trim().strip_suffix(" bytes"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(received > 0, "{stderr}");
    assert!(
        received <= size - committed + (4 << 20),
        "fetched {received} bytes again though {committed} were stored: {stderr}"
    );
    drop(b);
}

#[test]
fn a_blob_already_here_is_written_out_with_no_network() {
    let root = temp_dir();
    let data = root.path().join("data");
    let file = root.path().join("notes.txt");
    random_file(&file, 200_000, 5);
    let hash = ok(&p2pfs(&data, &["add", file.to_str().unwrap()]))[..64].to_string();
    // No daemon and no peer known: no node is even started (a node makes
    // its key and saves its port).
    let out = root.path().join("out1");
    ok(&p2pfs(
        &data,
        &["fetch", &hash, "-o", out.to_str().unwrap()],
    ));
    assert_eq!(blake3_file(&out), hash);
    assert!(!data.join("node.key").exists() && !data.join("port").exists());
    let piped = p2pfs(&data, &["fetch", &hash, "-o", "-"]);
    assert!(piped.status.success());
    assert_eq!(blake3::hash(&piped.stdout).to_hex().as_str(), hash);
    // Through a daemon that knows no other node: no DHT lookup either.
    let _d = Daemon::start(&data, &["--no-lan"]);
    let out = root.path().join("out2");
    ok(&p2pfs(
        &data,
        &["fetch", &hash, "-o", out.to_str().unwrap()],
    ));
    assert_eq!(blake3_file(&out), hash);
}

/// Lists too long for one control-socket frame (1 MiB) arrive whole: a
/// room of 8,000 files through a mount's node, `room ls`, `room status`
/// and `ls` of its blobs. (They used to end with "the running node went
/// away" past about 7,000 files.)
#[test]
fn long_lists_come_back_whole_through_the_daemon() {
    let dir = temp_dir();
    let mnt = dir.path().join("mnt");
    let d = Daemon::mount(&dir.path().join("data"), &mnt, &[]);
    let room = mnt.join("team");
    std::fs::create_dir(&room).expect("a room");
    const FILES: usize = 8000;
    for i in 0..FILES {
        let sub = room.join(format!("d{:02}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir(&sub).expect("a folder");
        }
        std::fs::write(
            sub.join(format!("a-long-enough-file-name-{i:05}.txt")),
            format!("{i}\n"),
        )
        .expect("a file");
    }
    let count = |args: &[&str], pick: &dyn Fn(&serde_json::Value) -> Option<usize>| {
        let out = p2pfs(d.data_dir(), args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .ok()
            .and_then(|v| pick(&v))
    };
    let files = |v: &serde_json::Value| -> Option<usize> {
        Some(
            v.as_array()?
                .iter()
                .filter(|e| e["path"].as_str().is_some_and(|p| p.ends_with(".txt")))
                .count(),
        )
    };
    wait_for(Duration::from_secs(120), "every file in `room ls`", || {
        (count(&["room", "ls", "team", "--json"], &files) == Some(FILES)).then_some(())
    });
    let copies = |v: &serde_json::Value| v["files"].as_array().map(|f| f.len());
    assert_eq!(
        count(&["room", "status", "team", "--json"], &copies),
        Some(FILES)
    );
    let blobs = |v: &serde_json::Value| v.as_array().map(|b| b.len());
    assert!(count(&["ls", "--json"], &blobs).is_some_and(|n| n >= FILES));
}

/// `fetch` with its node in its own process writes the output as the
/// bytes arrive: the first MiB is out long before a slow provider could
/// have sent the whole blob. A fetch that fails leaves no partial file.
#[test]
fn fetch_writes_its_output_as_the_bytes_arrive() {
    use std::io::Read;
    let root = temp_dir();
    let size: u64 = 48 << 20;
    let file = root.path().join("slow.bin");
    random_file(&file, size, 5);
    let data = std::fs::read(&file).unwrap();
    let hash = blake3_file(&file);
    let a_dir = root.path().join("a");
    ok(&p2pfs(&a_dir, &["add", file.to_str().unwrap()]));
    // The whole blob takes 24 s at this rate.
    let mut a = Daemon::start(&a_dir, &["--max-upload-rate", "2M"]);
    let b_dir = root.path().join("b");
    let mut fetch = p2pfs_tests::p2pfs_command()
        .arg("--data-dir")
        .arg(&b_dir)
        .args(["fetch", &hash, "--peer", &a.peer(), "-o", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = fetch.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut first = vec![0u8; 1 << 20];
        let _ = tx.send(stdout.read_exact(&mut first).map(|_| first));
    });
    let first = rx
        .recv_timeout(Duration::from_secs(12))
        .expect("the first MiB comes out while the download runs")
        .unwrap();
    assert!(first == data[..1 << 20], "the first MiB is the blob's");
    let _ = fetch.kill();
    let _ = fetch.wait();

    // A fetch that fails (its only peer lacks the blob) leaves no file.
    a.terminate();
    let empty = Daemon::start(&root.path().join("c"), &[]);
    let out = root.path().join("out.bin");
    let fetch_from_empty = || {
        let args = ["fetch", &hash, "--peer", &empty.peer(), "-o"];
        let mut args: Vec<&str> = args.to_vec();
        args.push(out.to_str().unwrap());
        fails(&p2pfs(&root.path().join("b2"), &args));
    };
    fetch_from_empty();
    assert!(!out.exists(), "the output of a failed fetch is removed");
    // ... but only a file the fetch created: a file that was there (a
    // device such as /dev/null, a user's file) stays.
    std::fs::write(&out, b"mine").unwrap();
    fetch_from_empty();
    assert_eq!(
        std::fs::read(&out).unwrap(),
        b"mine",
        "a file that was there stays as it was"
    );
    let partials = std::fs::read_dir(root.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".p2pfs-partial"))
        })
        .count();
    assert_eq!(partials, 0, "no partial file is left");
}
