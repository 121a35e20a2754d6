//! Moderated rooms over real daemons: the owner names a moderator, the
//! moderator removes a member, and from then on that member gets no new
//! entry, file or chat line, cannot write, is refused by every member and
//! blob server, and the old ticket admits no one while a new one does.

use std::time::Duration;

use p2pfs_tests::*;

const SYNC: Duration = Duration::from_secs(60);

fn members(d: &Daemon, room: &str) -> Vec<serde_json::Value> {
    let out = ok(&p2pfs(d.data_dir(), &["room", "members", room, "--json"]));
    serde_json::from_str::<serde_json::Value>(&out)
        .expect("members JSON")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn role_of(d: &Daemon, room: &str, name: &str) -> Option<String> {
    members(d, room)
        .iter()
        .find(|m| m["name"] == name)
        .and_then(|m| m["role"].as_str().map(str::to_string))
}

fn has_file(d: &Daemon, room: &str, path: &str) -> bool {
    ok(&p2pfs(d.data_dir(), &["room", "ls", room]))
        .lines()
        .any(|l| l.split_whitespace().next() == Some(path))
}

fn chat_has(d: &Daemon, room: &str, text: &str) -> bool {
    ok(&p2pfs(d.data_dir(), &["chat", room])).contains(text)
}

fn node_id(d: &Daemon) -> String {
    d.status()["node"].as_str().expect("an id").to_string()
}

#[test]
fn a_removed_member_gets_nothing_new_and_writes_nothing() {
    let t0 = std::time::Instant::now();
    let step = |s: &str| eprintln!("{:>6.1}s {s}", t0.elapsed().as_secs_f64());
    let root = temp_dir();
    let r = root.path();
    let a = Daemon::start(&r.join("a"), &["--no-lan", "--name", "alice"]);
    let b = Daemon::start(&r.join("b"), &["--no-lan", "--name", "bob"]);
    let c = Daemon::start(&r.join("c"), &["--no-lan", "--name", "carol"]);
    let ticket = ok(&p2pfs(a.data_dir(), &["room", "create", "club"]));
    let old_ticket = ticket.trim().to_string();
    // One copy of each file: carol never fetches early.bin for placement,
    // so what she gets of it later comes from a blob server.
    ok(&p2pfs(a.data_dir(), &["room", "set", "club", "copies=1"]));
    ok(&p2pfs(b.data_dir(), &["room", "join", &old_ticket]));
    ok(&p2pfs(c.data_dir(), &["room", "join", &old_ticket]));
    wait_for(SYNC, "three members everywhere", || {
        [&a, &b, &c]
            .iter()
            .all(|d| members(d, "club").len() == 3)
            .then_some(())
    });
    assert_eq!(role_of(&a, "club", "alice").as_deref(), Some("owner"));

    step("Only the owner names moderators.");
    // Only the owner names moderators.
    let err = fails(&p2pfs(b.data_dir(), &["room", "promote", "club", "carol"]));
    assert!(err.contains("only the room's owner"), "{err}");
    ok(&p2pfs(a.data_dir(), &["room", "promote", "club", "bob"]));
    wait_for(SYNC, "bob a moderator on bob's node", || {
        (role_of(&b, "club", "bob").as_deref() == Some("moderator")).then_some(())
    });
    step("A member removes no one.");
    // A member removes no one.
    let err = fails(&p2pfs(c.data_dir(), &["room", "remove", "club", "bob"]));
    assert!(err.contains("only the owner and moderators"), "{err}");

    step("Before the removal: a file carol has ");
    // Before the removal: a file carol has the entry of but never read.
    let early = r.join("early.bin");
    random_file(&early, 600_000, 1);
    ok(&p2pfs(
        a.data_dir(),
        &["room", "put", "club", early.to_str().unwrap()],
    ));
    ok(&p2pfs(c.data_dir(), &["chat", "club", "carol was here"]));
    wait_for(SYNC, "carol to see early.bin", || {
        has_file(&c, "club", "early.bin").then_some(())
    });

    step("Bob removes carol, by the short form ");
    // Bob removes carol, by the short form of her id.
    let carol = node_id(&c);
    let line = ok(&p2pfs(
        b.data_dir(),
        &["room", "remove", "club", &carol[..10]],
    ));
    assert!(
        line.contains("can no longer see new files or messages"),
        "{line}"
    );
    wait_for(SYNC, "carol gone from the members on alice's node", || {
        (members(&a, "club").len() == 2).then_some(())
    });

    step("Carol's writes are refused, with the ");
    // Carol's writes are refused, with the reason.
    let err = wait_for(SYNC, "carol to learn she was removed", || {
        let out = p2pfs(c.data_dir(), &["chat", "club", "let me in"]);
        (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).to_string())
    });
    assert!(err.contains("removed from room"), "{err}");

    step("New files and chat reach the others, ");
    // New files and chat reach the others, not carol.
    let after = r.join("after.txt");
    std::fs::write(&after, b"for members only").unwrap();
    ok(&p2pfs(
        a.data_dir(),
        &["room", "put", "club", after.to_str().unwrap()],
    ));
    ok(&p2pfs(a.data_dir(), &["chat", "club", "a secret plan"]));
    wait_for(SYNC, "bob to see after.txt and the line", || {
        (has_file(&b, "club", "after.txt") && chat_has(&b, "club", "a secret plan")).then_some(())
    });
    step("What carol had stays with her; nothin");
    // What carol had stays with her; nothing new arrives.
    assert!(has_file(&c, "club", "early.bin"));
    assert!(!has_file(&c, "club", "after.txt"));
    assert!(!chat_has(&c, "club", "a secret plan"));
    step("Her earlier line stays in everyone's ");
    // Her earlier line stays in everyone's chat.
    assert!(chat_has(&b, "club", "carol was here"));
    step("The blob servers refuse her a room fi");
    // The blob servers refuse her a room file she knew of.
    let err = fails(&p2pfs(
        c.data_dir(),
        &[
            "room",
            "get",
            "club",
            "early.bin",
            "-o",
            r.join("x").to_str().unwrap(),
        ],
    ));
    assert!(
        err.contains("does not have it") || err.contains("no provider"),
        "{err}"
    );
    // (As a member, bob gets it from the same servers.)
    let got = p2pfs(b.data_dir(), &["room", "get", "club", "early.bin"]);
    assert_eq!(got.stdout, std::fs::read(&early).unwrap());

    step("The old ticket admits no one new; a f");
    // The old ticket admits no one new; a fresh one does.
    let d = Daemon::start(&r.join("d"), &["--no-lan", "--name", "dave"]);
    ok(&p2pfs(d.data_dir(), &["room", "join", &old_ticket]));
    let fresh = ok(&p2pfs(a.data_dir(), &["room", "ticket", "club"]));
    assert_ne!(fresh.trim(), old_ticket);
    let e = Daemon::start(&r.join("e"), &["--no-lan", "--name", "erin"]);
    ok(&p2pfs(e.data_dir(), &["room", "join", fresh.trim()]));
    wait_for(SYNC, "erin to see after.txt", || {
        has_file(&e, "club", "after.txt").then_some(())
    });
    assert!(!has_file(&d, "club", "after.txt"));
    assert!(!has_file(&d, "club", "early.bin"));
    step("Erin reads what was published before ");
    // Erin reads what was published before she came.
    let got = p2pfs(e.data_dir(), &["room", "get", "club", "after.txt"]);
    assert_eq!(got.stdout, b"for members only");

    step("a member that leaves says so");
    ok(&p2pfs(e.data_dir(), &["room", "leave", "club"]));
    wait_for(SYNC, "erin shown as left on alice's node", || {
        members(&a, "club")
            .iter()
            .any(|m| m["name"] == "erin" && m["left"] == true)
            .then_some(())
    });
}

#[test]
fn a_member_removed_while_offline_learns_it_when_it_reconnects() {
    let root = temp_dir();
    let r = root.path();
    let a = Daemon::start(&r.join("a"), &["--no-lan", "--name", "alice"]);
    let f_dir = r.join("f");
    let mut f = Daemon::start(&f_dir, &["--no-lan", "--name", "frank"]);
    let ticket = ok(&p2pfs(a.data_dir(), &["room", "create", "club"]));
    ok(&p2pfs(f.data_dir(), &["room", "join", ticket.trim()]));
    wait_for(SYNC, "frank a member on alice's node", || {
        (members(&a, "club").len() == 2).then_some(())
    });
    let at = f.addr.to_string();
    assert!(f.terminate().success());
    ok(&p2pfs(a.data_dir(), &["room", "remove", "club", "frank"]));
    assert_eq!(members(&a, "club").len(), 1);
    // Back on the same address, where alice finds it: she refuses it,
    // and says why.
    let f = Daemon::start_in(None, &f_dir, &at, &["--no-lan", "--name", "frank"]);
    let err = wait_for(SYNC, "frank to learn he was removed", || {
        let out = p2pfs(f.data_dir(), &["chat", "club", "anyone?"]);
        (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).to_string())
    });
    assert!(err.contains("removed from room"), "{err}");
    assert!(
        err.contains("can no longer see new files or messages"),
        "{err}"
    );
}

/// Two moderators remove different members on the two sides of a
/// partition (hosts in network namespaces); after the heal every
/// remaining member is on one key that neither removed member has, and
/// both removed members are told when they write.
#[test]
fn removals_that_cross_in_a_partition_merge_after_the_heal() {
    p2pfs_tests::needs_root!();
    let net = Lan::new(21, 5);
    let root = temp_dir();
    let names = ["owner", "mod1", "mod2", "xavier", "yves"];
    let ds: Vec<Daemon> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            Daemon::start_on(
                &net,
                i,
                &root.path().join(name),
                &["--name", name, "--listen", &format!("{}:7000", net.ip(i))],
            )
        })
        .collect();
    let ticket = ok(&p2pfs(ds[0].data_dir(), &["room", "create", "club"]));
    for d in &ds[1..] {
        ok(&p2pfs(d.data_dir(), &["room", "join", ticket.trim()]));
    }
    wait_for(SYNC, "five members everywhere", || {
        ds.iter()
            .all(|d| members(d, "club").len() == 5)
            .then_some(())
    });
    for m in ["mod1", "mod2"] {
        ok(&p2pfs(ds[0].data_dir(), &["room", "promote", "club", m]));
    }
    wait_for(SYNC, "both moderators know it", || {
        (role_of(&ds[1], "club", "mod1").as_deref() == Some("moderator")
            && role_of(&ds[2], "club", "mod2").as_deref() == Some("moderator"))
        .then_some(())
    });

    // {owner, mod1, xavier} | {mod2, yves}: mod1 removes yves, mod2 xavier.
    net.partition(&[0, 1, 3], &[2, 4]);
    ok(&p2pfs(
        ds[1].data_dir(),
        &["room", "remove", "club", "yves"],
    ));
    ok(&p2pfs(
        ds[2].data_dir(),
        &["room", "remove", "club", "xavier"],
    ));
    wait_for(SYNC, "each side to have its removal", || {
        (members(&ds[0], "club").len() == 4 && members(&ds[2], "club").len() == 4).then_some(())
    });
    // Each side knows only its own removal: they crossed.
    let names_on = |d: &Daemon| -> Vec<String> {
        members(d, "club")
            .iter()
            .filter_map(|m| m["name"].as_str().map(str::to_string))
            .collect()
    };
    assert!(names_on(&ds[0]).contains(&"xavier".to_string()));
    assert!(names_on(&ds[2]).contains(&"yves".to_string()));
    let key = |d: &Daemon| -> Option<p2pfs_proto::moderation::EpochKey> {
        let t: p2pfs_proto::RoomTicket = ok(&p2pfs(d.data_dir(), &["room", "ticket", "club"]))
            .trim()
            .parse()
            .ok()?;
        t.key
    };
    let (side_a, side_b) = (key(&ds[0]), key(&ds[2]));
    assert!(side_a.is_some() && side_b.is_some() && side_a != side_b);
    net.heal();
    wait_for(
        SYNC,
        "the remaining three on one key, both removed gone",
        || {
            let three = [&ds[0], &ds[1], &ds[2]];
            let keys: Vec<_> = three.iter().map(|d| key(d)).collect();
            (three.iter().all(|d| members(d, "club").len() == 3)
                && keys[0].is_some()
                && keys.iter().all(|k| *k == keys[0]))
            .then_some(())
        },
    );
    // The merged key is neither side's: neither removed member holds it.
    let merged = key(&ds[0]);
    assert!(merged != side_a && merged != side_b);
    for d in [&ds[3], &ds[4]] {
        assert_ne!(key(d), merged);
    }
    for d in [&ds[3], &ds[4]] {
        let err = wait_for(SYNC, "a removed member to be told", || {
            let out = p2pfs(d.data_dir(), &["chat", "club", "hello?"]);
            (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).to_string())
        });
        assert!(err.contains("removed from room"), "{err}");
    }
}

/// A relay that is a member carries nothing more for a removed member:
/// `a` and `b` cannot reach each other but both reach `r`, which relays
/// between members only; `b` fetches from `a` through `r` until `r`
/// removes it, and then `r` refuses.
#[test]
fn a_relay_carries_nothing_for_a_removed_member() {
    p2pfs_tests::needs_root!();
    let net = Lan::new(22, 3);
    let root = temp_dir();
    let start = |i: usize, name: &str, extra: &[&str]| {
        let listen = format!("{}:7000", net.ip(i));
        let mut args = vec!["--name", name, "--listen", listen.as_str()];
        args.extend_from_slice(extra);
        Daemon::start_on(&net, i, &root.path().join(name), &args)
    };
    let r = start(0, "rita", &["--relay", "members"]);
    let a = start(1, "ann", &[]);
    let b = start(2, "bo", &[]);
    net.partition(&[1], &[2]);
    let ticket = ok(&p2pfs(r.data_dir(), &["room", "create", "club"]));
    for d in [&a, &b] {
        ok(&p2pfs(d.data_dir(), &["room", "join", ticket.trim()]));
    }
    wait_for(SYNC, "three members on ann's and bo's nodes", || {
        (members(&a, "club").len() == 3 && members(&b, "club").len() == 3).then_some(())
    });
    let a_peer = format!("{}@{}:7000", node_id(&a), net.ip(1));
    let add = |seed: u64| {
        let f = root.path().join(format!("public{seed}"));
        random_file(&f, 200_000, seed);
        ok(&p2pfs(a.data_dir(), &["add", f.to_str().unwrap()]))
            .split_whitespace()
            .next()
            .expect("a hash")
            .to_string()
    };
    // Through the relay while bo is a member.
    let h1 = add(1);
    let out = root.path().join("out");
    let out = out.to_str().unwrap();
    ok(&p2pfs(
        b.data_dir(),
        &["fetch", &h1, "--peer", &a_peer, "-o", out],
    ));
    // Removed: the relay refuses.
    ok(&p2pfs(r.data_dir(), &["room", "remove", "club", "bo"]));
    let h2 = add(2);
    let err = fails(&p2pfs(
        b.data_dir(),
        &["fetch", &h2, "--peer", &a_peer, "-o", out],
    ));
    // (The relay's refusal, or the direct path's silence reported instead.)
    assert!(
        err.contains("does not relay") || err.contains("no answer"),
        "{err}"
    );
    // Nothing of the second blob reached bo.
    assert_eq!(blake3_file(std::path::Path::new(out)), h1);
}
