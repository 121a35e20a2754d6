//! Rooms with real daemons on 127.0.0.1: A creates a room, B joins with
//! the ticket, C is an outsider. Chat and files converge both ways, C gets
//! nothing, a partition heals with both sides' writes kept, and the views
//! rebuild identically from the log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::Path, time::Duration};

use p2pfs_tests::{Daemon, blake3_file, fails, ok, p2pfs, random_file, temp_dir, wait_for};

const SYNC: Duration = Duration::from_secs(20);

fn ls(d: &Daemon, room: &str) -> serde_json::Value {
    let out = ok(&p2pfs(d.data_dir(), &["room", "ls", room, "--json"]));
    serde_json::from_str(&out).expect("room ls --json prints JSON")
}

fn paths(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect()
}

fn chat(d: &Daemon, room: &str) -> String {
    ok(&p2pfs(d.data_dir(), &["chat", room]))
}

fn put(d: &Daemon, room: &str, file: &Path, name: &str) -> String {
    let out = ok(&p2pfs(
        d.data_dir(),
        &["room", "put", room, file.to_str().unwrap(), name],
    ));
    out.split_whitespace().next().unwrap().to_string()
}

fn get(d: &Daemon, room: &str, name: &str, to: &Path) {
    ok(&p2pfs(
        d.data_dir(),
        &["room", "get", room, name, "-o", to.to_str().unwrap()],
    ));
}

/// Waits until both members list the same tree and show the same chat.
fn converged(a: &Daemon, b: &Daemon, room: &str, files: usize, lines: usize) {
    wait_for(SYNC, "the members to converge", || {
        let (la, lb) = (ls(a, room), ls(b, room));
        let (ca, cb) = (chat(a, room), chat(b, room));
        (la == lb
            && la.as_array().unwrap().len() == files
            && ca.lines().count() == lines
            && cb.lines().count() == lines)
            .then_some(())
    });
}

#[test]
fn members_converge_both_ways_and_an_outsider_gets_nothing() {
    let root = temp_dir();
    let a = Daemon::start(&root.path().join("a"), &["--name", "alice"]);
    let b = Daemon::start(&root.path().join("b"), &["--name", "bob"]);
    // (Its log says when a member refuses it.)
    let c = Daemon::start_with_env(
        &root.path().join("c"),
        "127.0.0.1:0",
        &["--name", "carol"],
        &[("P2PFS_LOG", "warn,p2pfs_swarm::room=debug")],
    );

    let ticket = ok(&p2pfs(a.data_dir(), &["room", "create", "team"]));
    let ticket = ticket.trim();
    assert!(ticket.starts_with("p2pfs1"), "{ticket}");
    let joined = ok(&p2pfs(b.data_dir(), &["room", "join", ticket]));
    assert!(joined.contains("team"), "{joined}");
    // Joining twice is refused with a clear error.
    let again = fails(&p2pfs(b.data_dir(), &["room", "join", ticket]));
    assert!(again.contains("already in that room"), "{again}");

    // B follows the chat, as `tail -f` would.
    let mut follow = p2pfs_tests::p2pfs_command()
        .arg("--data-dir")
        .arg(b.data_dir())
        .args(["chat", "team", "--follow"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (tx, followed) = std::sync::mpsc::channel::<String>();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Chat both ways.
    ok(&p2pfs(a.data_dir(), &["chat", "team", "hello from alice"]));
    ok(&p2pfs(b.data_dir(), &["chat", "team", "hello from bob"]));
    // Files both ways, one in a directory.
    let f1 = root.path().join("f1");
    let f2 = root.path().join("f2");
    random_file(&f1, 2_500_000, 1);
    random_file(&f2, 40_000, 2);
    let h1 = put(&a, "team", &f1, "big.bin");
    let h2 = put(&b, "team", &f2, "docs/notes.txt");
    assert_eq!(h1, blake3_file(&f1));
    converged(&a, &b, "team", 3, 2);

    let tree = ls(&a, "team");
    assert_eq!(paths(&tree), vec!["big.bin", "docs", "docs/notes.txt"]);
    // The follower printed both messages as they arrived, and goes on.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.push(followed.recv_timeout(SYNC).expect("a followed chat line"));
    }
    ok(&p2pfs(a.data_dir(), &["chat", "team", "one more"]));
    let more = followed.recv_timeout(SYNC).expect("a new chat line");
    assert!(more.ends_with(" alice: one more"), "{more}");
    let _ = follow.kill();
    let _ = follow.wait();
    let chat_a = chat(&a, "team");
    assert!(chat_a.contains(" alice: hello from alice\n"), "{chat_a}");
    assert!(chat_a.contains(" bob: hello from bob\n"), "{chat_a}");
    let line = chat_a.lines().next().unwrap();
    // `2026-11-21T10:00:00Z alice: …`
    assert_eq!(&line[4..5], "-");
    assert_eq!(&line[19..21], "Z ");

    // Each reads the other's file, fetched and verified.
    let got1 = root.path().join("got1");
    let got2 = root.path().join("got2");
    get(&b, "team", "big.bin", &got1);
    get(&a, "team", "docs/notes.txt", &got2);
    assert_eq!(blake3_file(&got1), h1);
    assert_eq!(blake3_file(&got2), h2);

    // The outsider knows the hash and both members' addresses: no blob…
    let out = root.path().join("stolen");
    for member in [&a, &b] {
        let e = fails(&p2pfs(
            c.data_dir(),
            &[
                "fetch",
                &h1,
                "--peer",
                &member.peer(),
                "-o",
                out.to_str().unwrap(),
            ],
        ));
        assert!(e.contains("does not have it"), "{e}");
    }
    assert!(!out.exists());
    // …and with a ticket of its own making for a room at those addresses
    // (any secret but the room's), no entry and no member list.
    let forged = forged_ticket(&a);
    ok(&p2pfs(
        c.data_dir(),
        &["room", "join", &forged, "--name", "spy"],
    ));
    wait_for(
        Duration::from_secs(60),
        "a member to refuse the spy",
        || {
            c.log()
                .contains("is not a member of this room")
                .then_some(())
        },
    );
    assert!(paths(&ls(&c, "spy")).is_empty());
    assert_eq!(chat(&c, "spy"), "");
    let rooms: serde_json::Value =
        serde_json::from_str(&ok(&p2pfs(c.data_dir(), &["room", "list", "--json"]))).unwrap();
    assert_eq!(rooms[0]["online"], 0);
    assert_eq!(rooms[0]["members"], 1, "only the outsider itself");
    let log = a.log();
    assert!(!log.contains("panicked"), "{log}");

    // A ticket from B works like A's; leaving forgets the room.
    let t2 = ok(&p2pfs(b.data_dir(), &["room", "ticket", "team"]));
    assert!(t2.trim().parse::<p2pfs_proto::RoomTicket>().is_ok(), "{t2}");
    ok(&p2pfs(b.data_dir(), &["room", "leave", "team"]));
    let left = ok(&p2pfs(b.data_dir(), &["room", "list"]));
    assert!(!left.contains("team"), "{left}");
    let e = fails(&p2pfs(b.data_dir(), &["room", "ls", "team"]));
    assert!(e.contains("no room named"), "{e}");
}

/// A ticket with a random secret naming member `a`'s address.
fn forged_ticket(a: &Daemon) -> String {
    let mut secret = [0u8; 32];
    fastrand::fill(&mut secret);
    let t = p2pfs_proto::RoomTicket::new(
        p2pfs_proto::RoomSecret(secret),
        "spy".into(),
        vec![p2pfs_proto::NodeAddr {
            id: a.id.parse().unwrap(),
            addrs: vec![a.addr],
        }],
    );
    t.to_string()
}

#[test]
fn a_partition_heals_with_both_sides_writes_kept_and_views_rebuild() {
    let root = temp_dir();
    let (da, db) = (root.path().join("a"), root.path().join("b"));
    let mut a = Daemon::start(&da, &["--name", "alice"]);
    let mut b = Daemon::start(&db, &["--name", "bob"]);
    let (addr_a, addr_b) = (a.addr.to_string(), b.addr.to_string());
    let ticket = ok(&p2pfs(a.data_dir(), &["room", "create", "team"]));
    ok(&p2pfs(b.data_dir(), &["room", "join", ticket.trim()]));
    let f0 = root.path().join("f0");
    random_file(&f0, 10_000, 3);
    put(&a, "team", &f0, "shared.txt");
    ok(&p2pfs(a.data_dir(), &["chat", "team", "before"]));
    converged(&a, &b, "team", 1, 1);
    let before = chat(&b, "team");

    // The partition: B goes away; A writes; A goes away; B writes.
    b.terminate();
    let fa = root.path().join("fa");
    random_file(&fa, 20_000, 4);
    put(&a, "team", &fa, "shared.txt");
    put(&a, "team", &fa, "only-a.txt");
    ok(&p2pfs(a.data_dir(), &["chat", "team", "a alone"]));
    a.terminate();
    let mut b = Daemon::start_in(None, &db, &addr_b, &["--name", "bob"]);
    let fb = root.path().join("fb");
    random_file(&fb, 30_000, 5);
    // B removes the file it knew, then puts its own version: the put
    // replaces the delete, and A's concurrent version is kept beside it.
    ok(&p2pfs(b.data_dir(), &["room", "rm", "team", "shared.txt"]));
    put(&b, "team", &fb, "shared.txt");
    ok(&p2pfs(b.data_dir(), &["chat", "team", "b alone"]));
    let b_alone = chat(&b, "team");
    assert!(b_alone.starts_with(&before), "the chat only grows");

    // Healed.
    let a = Daemon::start_in(None, &da, &addr_a, &["--name", "alice"]);
    converged(&a, &b, "team", 3, 3);
    let tree = ls(&a, "team");
    let names = paths(&tree);
    assert!(names.contains(&"only-a.txt".to_string()), "{names:?}");
    assert!(names.contains(&"shared.txt".to_string()), "{names:?}");
    let conflict: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("shared.txt.conflict-"))
        .collect();
    assert_eq!(conflict.len(), 1, "both versions are kept: {names:?}");
    let hashes: Vec<&str> = tree
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["path"].as_str().unwrap().starts_with("shared.txt"))
        .map(|f| f["kind"]["File"]["hash"].as_str().unwrap())
        .collect();
    let mut want = vec![blake3_file(&fa), blake3_file(&fb)];
    want.sort();
    let mut got: Vec<String> = hashes.iter().map(|s| s.to_string()).collect();
    got.sort();
    assert_eq!(got, want);
    // Both print the chat in the same order: each side's message after
    // what it had seen, the concurrent ones by their authors' clocks (A's
    // first), whatever order each member got them in.
    let chat_b = chat(&b, "team");
    assert_eq!(chat(&a, "team"), chat_b);
    let texts: Vec<&str> = chat_b
        .lines()
        .map(|l| l.split_once(": ").unwrap().1)
        .collect();
    assert_eq!(texts, ["before", "a alone", "b alone"], "{chat_b}");
    assert!(chat_b.contains("alice: a alone"), "{chat_b}");

    // Views dropped and rebuilt from the log give the same result.
    let (tree_before, chat_before) = (ls(&b, "team"), chat(&b, "team"));
    b.terminate();
    {
        let store = p2pfs_store::Store::open(db.join("store")).unwrap();
        store.drop_room_views().unwrap();
    }
    let b = Daemon::start_in(None, &db, &addr_b, &["--name", "bob"]);
    assert_eq!(ls(&b, "team"), tree_before);
    assert_eq!(chat(&b, "team"), chat_before);
    drop(a);
}
