//! Members behind home routers (`p2pfs_tests::natlab`): a public member on
//! the WAN, and members each behind a router that masquerades and drops
//! new inbound packets, as home routers do.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use p2pfs_tests::{
    Daemon, blake3_file, fails, natlab::Nat, natlab::NatLab, ok, p2pfs, random_file, temp_dir,
    wait_for,
};

const SYNC: Duration = Duration::from_secs(60);

/// P on the WAN, A and B each behind an easy NAT (no room yet).
fn across_nats(lab: &NatLab, root: &std::path::Path) -> [Daemon; 3] {
    let port = ":7000";
    let p = Daemon::start_in(
        Some(&lab.public[0]),
        &root.join("p"),
        &format!("{}{port}", lab.public_ip(0)),
        &["--no-lan", "--name", "p"],
    );
    let start = |i: usize, name: &str| {
        Daemon::start_in(
            Some(&lab.homes[i].host),
            &root.join(name),
            &format!("{}{port}", lab.home_ip(i)),
            &["--no-lan", "--name", name],
        )
    };
    [p, start(0, "a"), start(1, "b")]
}

/// Room `team`, created on `p`, joined by the others with its ticket
/// alone.
fn room(p: &Daemon, others: &[&Daemon]) {
    let ticket = ok(&p2pfs(p.data_dir(), &["room", "create", "team"]));
    for d in others {
        ok(&p2pfs(d.data_dir(), &["room", "join", ticket.trim()]));
    }
}

/// P, A and B of [`across_nats`] in room `team`, all three online.
fn in_a_room(lab: &NatLab, root: &std::path::Path) -> [Daemon; 3] {
    let [p, a, b] = across_nats(lab, root);
    room(&p, &[&a, &b]);
    for d in [&p, &a, &b] {
        wait_for(SYNC, "all three online", || (online(d) == 3).then_some(()));
    }
    [p, a, b]
}

/// Waits until `d` reads `name` of room `team` into `out`.
fn room_get(d: &Daemon, name: &str, out: &std::path::Path) {
    let out = out.to_str().unwrap();
    wait_for(SYNC, "the room file readable", || {
        let args = ["room", "get", "team", name, "-o", out];
        p2pfs(d.data_dir(), &args).status.success().then_some(())
    });
}

/// `p2pfs status --json` of `d`.
fn status(d: &Daemon) -> Option<serde_json::Value> {
    serde_json::from_str(&ok(&p2pfs(d.data_dir(), &["status", "--json"]))).ok()
}

/// Members `d` counts online, itself included (`room status`).
fn online(d: &Daemon) -> usize {
    let out = p2pfs(d.data_dir(), &["room", "status", "team", "--json"]);
    let Ok(s) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        return 0;
    };
    s["members"]
        .as_array()
        .map_or(0, |m| m.iter().filter(|m| m["online"] == true).count())
}

#[test]
fn behind_home_routers_members_meet_through_a_public_member() {
    p2pfs_tests::needs_root!();
    let lab = NatLab::new(61, 1, &[Nat::Easy, Nat::Easy]);
    let root = temp_dir();
    let [p, a, b] = across_nats(&lab, root.path());

    // The lab's routers do firewall: B, behind its router, cannot be
    // dialed from A at the router's address, unsolicited (before the room
    // makes them dial each other).
    let f = root.path().join("on-b");
    random_file(&f, 50_000, 1);
    let hash = ok(&p2pfs(b.data_dir(), &["add", f.to_str().unwrap()]));
    let hash = hash.split_whitespace().next().unwrap().to_string();
    let e = fails(&p2pfs(
        a.data_dir(),
        &[
            "fetch",
            &hash,
            "--peer",
            &format!("{}@{}:7000", b.id, lab.router_ip(1)),
            "-o",
            root.path().join("x").to_str().unwrap(),
        ],
    ));
    assert!(e.contains("could not"), "{e}");

    // In a room made on the public member: everyone online, the listing
    // and the chat both ways, a file read back identical on the other
    // side.
    room(&p, &[&a, &b]);
    for d in [&p, &a, &b] {
        wait_for(SYNC, "all three online", || (online(d) == 3).then_some(()));
    }
    // Each member behind a NAT learns its router's address from the
    // public member and gives it out: in its status and in its tickets.
    let public_face = format!("{}:7000", lab.router_ip(0));
    wait_for(SYNC, "a's reflexive address", || {
        let status = status(&a).unwrap();
        status["addrs"]
            .as_array()?
            .iter()
            .any(|x| x == public_face.as_str())
            .then_some(())
    });
    let ticket: p2pfs_proto::RoomTicket = ok(&p2pfs(a.data_dir(), &["room", "ticket", "team"]))
        .trim()
        .parse()
        .unwrap();
    let me = ticket
        .nodes
        .iter()
        .find(|n| n.id.to_string() == a.id)
        .unwrap();
    assert!(
        me.addrs.iter().any(|x| x.to_string() == public_face),
        "{me:?}"
    );
    // The two members behind NATs connect directly (each dials the other
    // at its router's address as the room's mesh asks: a simultaneous open
    // through both easy NATs).
    wait_for(SYNC, "a direct connection between a and b", || {
        let status = status(&a).unwrap();
        let peers = status["peers"].as_array()?.clone();
        peers
            .iter()
            .any(|x| x["id"] == b.id.as_str() && x["addr"] == format!("{}:7000", lab.router_ip(1)))
            .then_some(())
    });
    let g = root.path().join("from-a");
    random_file(&g, 700_000, 2);
    ok(&p2pfs(
        a.data_dir(),
        &["room", "put", "team", g.to_str().unwrap(), "doc.bin"],
    ));
    ok(&p2pfs(b.data_dir(), &["chat", "team", "hello from b"]));
    ok(&p2pfs(a.data_dir(), &["chat", "team", "hello from a"]));
    for d in [&a, &b] {
        wait_for(SYNC, "both lines", || {
            let chat = ok(&p2pfs(d.data_dir(), &["chat", "team"]));
            (chat.contains("hello from a") && chat.contains("hello from b")).then_some(())
        });
    }
    let got = root.path().join("got");
    room_get(&b, "doc.bin", &got);
    assert_eq!(blake3_file(&got), blake3_file(&g));
}

/// Bytes of the files under `dir`.
fn bytes_under(dir: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => bytes_under(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// A home router that forgets its mappings (`conntrack -F`: a reboot, a
/// timeout) in the middle of a download: the member's next packet out
/// makes a new one (on a new port behind a symmetric NAT: QUIC follows the
/// member there), and the download completes, verified.
#[test]
fn a_download_survives_its_router_forgetting_the_mapping() {
    p2pfs_tests::needs_root!();
    for nat in [Nat::Easy, Nat::Hard] {
        let lab = NatLab::new(62, 1, &[nat]);
        let root = temp_dir();
        let f = root.path().join("big");
        random_file(&f, 48 << 20, 3);
        let hash = ok(&p2pfs(
            &root.path().join("p"),
            &["add", f.to_str().unwrap()],
        ));
        let hash = hash.split_whitespace().next().unwrap().to_string();
        // A slow upload, so that the flush lands mid-download.
        let p = Daemon::start_in(
            Some(&lab.public[0]),
            &root.path().join("p"),
            &format!("{}:7000", lab.public_ip(0)),
            &["--no-lan", "--max-upload-rate", "8M"],
        );
        let a = Daemon::start_in(
            Some(&lab.homes[0].host),
            &root.path().join("a"),
            &format!("{}:7000", lab.home_ip(0)),
            &["--no-lan"],
        );
        let store = a.data_dir().join("store");
        let before = bytes_under(&store);
        let got = root.path().join("got");
        let mut fetch = p2pfs_tests::p2pfs_command()
            .arg("--data-dir")
            .arg(a.data_dir())
            .args(["fetch", &hash, "--peer", &p.peer(), "-o"])
            .arg(&got)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        wait_for(Duration::from_secs(60), "a third of the download", || {
            (bytes_under(&store) > before + (16 << 20)).then_some(())
        });
        let flushed = std::time::Instant::now();
        lab.flush_mappings(0);
        let status = wait_for(Duration::from_secs(120), "the download", || {
            fetch.try_wait().unwrap()
        });
        let err = fetch.wait_with_output().unwrap().stderr;
        assert!(
            status.success(),
            "{nat:?}: {}",
            String::from_utf8_lossy(&err)
        );
        assert_eq!(blake3_file(&got), blake3_file(&f), "{nat:?}");
        eprintln!("{nat:?}: done {:?} after the flush", flushed.elapsed());
    }
}

/// The path `from`'s status reports for its connection with `to`:
/// `"direct"`, or `"relay"` with the relay's id.
fn path_to(from: &Daemon, to: &Daemon) -> Option<(String, Option<String>)> {
    let status = status(from)?;
    let peer = status["peers"]
        .as_array()?
        .iter()
        .find(|x| x["id"] == to.id.as_str())?
        .clone();
    Some((
        peer["path"].as_str()?.to_string(),
        peer["via"].as_str().map(str::to_string),
    ))
}

/// The user's story across NATs, and the punch matrix. P is public; A and
/// B sit behind symmetric NATs (no hole punch can work between them), C
/// and D behind easy ones. No node is given another: they all use the
/// Mainline DHT (a local testnet on the WAN), as people at home would. A
/// mounts and makes a room with `mkdir`; the others join with its ticket
/// alone (A's addresses in it cannot be dialed from outside: they find
/// each other through the room's info hash); a `cp` on A reads back
/// identical on B's mount, through the relay; `chat.log` works both ways.
/// Paths: C↔D direct (a coordinated punch, or the mesh's simultaneous
/// dials), A↔B and A↔C relayed through P, and working.
#[test]
fn across_nats_the_mount_works_direct_where_possible_and_relayed_elsewhere() {
    p2pfs_tests::needs_root!();
    let lab = NatLab::new(63, 2, &[Nat::Hard, Nat::Hard, Nat::Easy, Nat::Easy]);
    let root = temp_dir();
    let testnet = Testnet::start(&lab.public[1], &lab.public_ip(1), 8);
    let with_peer = |name: &'static str| {
        let mut o = vec!["--no-lan", "--name", name];
        for b in &testnet.bootstrap {
            o.extend(["--mainline-bootstrap", b.as_str()]);
        }
        o
    };
    let p = Daemon::start_in(
        Some(&lab.public[0]),
        &root.path().join("p"),
        &format!("{}:7000", lab.public_ip(0)),
        &with_peer("p"),
    );
    let listen = |i: usize| format!("{}:7000", lab.home_ip(i));
    let (ma, mb) = (root.path().join("mnt-a"), root.path().join("mnt-b"));
    let a = Daemon::mount_in(
        &lab.homes[0].host,
        &root.path().join("a"),
        &ma,
        &listen(0),
        &with_peer("a"),
    );
    let b = Daemon::mount_in(
        &lab.homes[1].host,
        &root.path().join("b"),
        &mb,
        &listen(1),
        &with_peer("b"),
    );
    let c = Daemon::start_in(
        Some(&lab.homes[2].host),
        &root.path().join("c"),
        &listen(2),
        &with_peer("c"),
    );
    let d = Daemon::start_in(
        Some(&lab.homes[3].host),
        &root.path().join("d"),
        &listen(3),
        &with_peer("d"),
    );

    // A makes the room in its mount; the others join with the ticket.
    std::fs::create_dir(ma.join("team")).unwrap();
    let ticket = ok(&p2pfs(a.data_dir(), &["room", "ticket", "team"]));
    for m in [&p, &b, &c, &d] {
        ok(&p2pfs(m.data_dir(), &["room", "join", ticket.trim()]));
    }
    let joined = std::time::Instant::now();
    for m in [&p, &a, &b, &c, &d] {
        wait_for(Duration::from_secs(120), "all five online", || {
            (online(m) == 5).then_some(())
        });
    }
    eprintln!("all five online {:?} after the joins", joined.elapsed());
    // `cp` on A, read on B (behind another symmetric NAT) byte-identical.
    let src = root.path().join("src.bin");
    random_file(&src, 3_000_000, 7);
    std::fs::copy(&src, ma.join("team/big.bin")).unwrap();
    let on_b = mb.join("team/big.bin");
    wait_for(SYNC, "the file in b's listing", || {
        on_b.exists().then_some(())
    });
    let read = wait_for(SYNC, "the file readable on b", || std::fs::read(&on_b).ok());
    assert_eq!(
        blake3::hash(&read),
        blake3::hash(&std::fs::read(&src).unwrap())
    );
    // chat.log both ways.
    use std::io::Write;
    for (from, line) in [(&ma, "hello from a"), (&mb, "hello from b")] {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(from.join("team/chat.log"))
            .unwrap();
        writeln!(f, "{line}").unwrap();
    }
    for m in [&ma, &mb] {
        wait_for(SYNC, "both lines in chat.log", || {
            let log = std::fs::read_to_string(m.join("team/chat.log")).ok()?;
            (log.contains("hello from a") && log.contains("hello from b")).then_some(())
        });
    }

    // The punch matrix, as `status` reports the paths.
    let direct = || Some(("direct".to_string(), None));
    let via_p = || Some(("relay".to_string(), Some(p.id.clone())));
    wait_for(SYNC, "C and D direct", || {
        (path_to(&c, &d) == direct()).then_some(())
    });
    for (x, y) in [(&a, &b), (&b, &a), (&a, &c), (&c, &a)] {
        wait_for(SYNC, "a relayed path through P", || {
            (path_to(x, y) == via_p()).then_some(())
        });
    }
    // Everyone reaches P directly, and sees its own situation.
    for m in [&a, &b, &c, &d] {
        assert_eq!(path_to(m, &p), direct());
        wait_for(SYNC, "a home to know it is behind a NAT", || {
            let s = status(m)?;
            (s["reach"]["nat"] == "behind" && s["reach"]["reachable"] == false).then_some(())
        });
    }
    // P learns it has no NAT from a member's answer to its ping.
    wait_for(SYNC, "p to know it is public", || {
        (status(&p)?["reach"]["nat"] == "none").then_some(())
    });
    eprintln!("punch matrix: C-D direct; A-B, A-C relayed through P");
}

/// A local Mainline DHT on the WAN (`mainline_testnet`), stopped on drop.
struct Testnet {
    child: std::process::Child,
    bootstrap: Vec<String>,
}

impl Testnet {
    fn start(netns: &str, ip: &str, nodes: usize) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new("nsenter")
            .arg(format!("--net=/run/netns/{netns}"))
            .arg(env!("CARGO_BIN_EXE_mainline_testnet"))
            .args([ip, &nodes.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let bootstrap: Vec<String> = out
            .lines()
            .map_while(Result::ok)
            .take_while(|l| !l.is_empty())
            .collect();
        assert_eq!(bootstrap.len(), nodes, "{bootstrap:?}");
        Self { child, bootstrap }
    }
}

impl Drop for Testnet {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A member that knows no node at all (its ticket names none) finds the
/// room's members through the Mainline DHT (a local testnet on the
/// emulated WAN): the public member announced itself under the room's
/// info hash of the day. Then the public member moves to another port; the
/// member behind its NAT finds it again there (its address record and the
/// room's announcement both say where).
#[test]
fn a_member_that_knows_no_node_finds_the_room_on_the_mainline_dht() {
    p2pfs_tests::needs_root!();
    let lab = NatLab::new(64, 2, &[Nat::Easy]);
    let root = temp_dir();
    let testnet = Testnet::start(&lab.public[1], &lab.public_ip(1), 8);
    let mut ml: Vec<&str> = Vec::new();
    for b in &testnet.bootstrap {
        ml.extend(["--mainline-bootstrap", b.as_str()]);
    }
    let opts = |name: &'static str| {
        let mut o = vec!["--no-lan", "--name", name];
        o.extend(ml.iter().copied());
        o
    };
    let mut p = Daemon::start_in(
        Some(&lab.public[0]),
        &root.path().join("p"),
        &format!("{}:7000", lab.public_ip(0)),
        &opts("p"),
    );
    let a = Daemon::start_in(
        Some(&lab.homes[0].host),
        &root.path().join("a"),
        &format!("{}:7000", lab.home_ip(0)),
        &opts("a"),
    );
    let ticket: p2pfs_proto::RoomTicket = ok(&p2pfs(p.data_dir(), &["room", "create", "team"]))
        .trim()
        .parse()
        .unwrap();
    let secret_only =
        p2pfs_proto::RoomTicket::new(ticket.secret.clone(), ticket.name.clone(), vec![]);
    let joined = std::time::Instant::now();
    ok(&p2pfs(
        a.data_dir(),
        &["room", "join", &secret_only.to_string()],
    ));
    wait_for(Duration::from_secs(120), "a to find p", || {
        (online(&a) == 2).then_some(())
    });
    eprintln!(
        "found through the Mainline DHT {:?} after joining",
        joined.elapsed()
    );
    ok(&p2pfs(a.data_dir(), &["chat", "team", "found you"]));
    wait_for(SYNC, "a's line on p", || {
        ok(&p2pfs(p.data_dir(), &["chat", "team"]))
            .contains("found you")
            .then_some(())
    });

    // P moves to another port; A finds it again.
    p.terminate();
    let moved = std::time::Instant::now();
    let p = Daemon::start_in(
        Some(&lab.public[0]),
        &root.path().join("p"),
        &format!("{}:7002", lab.public_ip(0)),
        &opts("p"),
    );
    ok(&p2pfs(p.data_dir(), &["chat", "team", "moved"]));
    wait_for(
        Duration::from_secs(120),
        "p's line on a after the move",
        || {
            ok(&p2pfs(a.data_dir(), &["chat", "team"]))
                .contains("moved")
                .then_some(())
        },
    );
    eprintln!("found again {:?} after the move", moved.elapsed());
}

/// A member behind a symmetric NAT whose router maps it a port (UPnP
/// IGD, or NAT-PMP alone; `miniupnpd` in the lab) is reachable from
/// anywhere: its status shows the mapping, and a member behind another
/// symmetric NAT, where no punch works, reaches it directly, not through
/// the relay.
#[test]
fn a_mapped_port_makes_a_member_directly_reachable() {
    p2pfs_tests::needs_root!();
    for (tag, nat) in [(65, Nat::Mapped), (67, Nat::Pmp)] {
        let lab = NatLab::new(tag, 1, &[nat, Nat::Hard]);
        let root = temp_dir();
        let [_p, a, b] = in_a_room(&lab, root.path());
        let mapped = wait_for(SYNC, "a's port mapping", || {
            let status = status(&a)?;
            let m = status["reach"]["mapped"].as_str()?.to_string();
            (status["reach"]["reachable"] == true).then_some(m)
        });
        assert!(mapped.starts_with(&lab.router_ip(0)), "{nat:?}: {mapped}");
        let direct = || Some(("direct".to_string(), None));
        for (x, y) in [(&a, &b), (&b, &a)] {
            wait_for(SYNC, "a direct path to the mapped member", || {
                (path_to(x, y) == direct()).then_some(())
            });
        }
        eprintln!("{nat:?}: mapped at {mapped}; b reaches a directly");
    }
}

/// A member behind two NATs in a row (a carrier-grade NAT in front of its
/// home router, both keeping ports and firewalling) learns its public face
/// (the carrier's address), and a punch through both layers connects it
/// directly to a member behind a home router; a file crosses.
#[test]
fn behind_a_carrier_grade_nat_a_member_punches_through_both_layers() {
    p2pfs_tests::needs_root!();
    let lab = NatLab::new(66, 1, &[Nat::Double, Nat::Easy]);
    let root = temp_dir();
    let [_p, a, b] = in_a_room(&lab, root.path());
    wait_for(SYNC, "a's public face, the carrier's address", || {
        let status = status(&a)?;
        let seen = status["reach"]["reflexive"].as_str()?.to_string();
        seen.starts_with(&lab.router_ip(0)).then_some(())
    });
    let direct = || Some(("direct".to_string(), None));
    for (x, y) in [(&a, &b), (&b, &a)] {
        wait_for(SYNC, "a direct path through both NATs", || {
            (path_to(x, y) == direct()).then_some(())
        });
    }
    let g = root.path().join("doc");
    random_file(&g, 500_000, 9);
    ok(&p2pfs(
        a.data_dir(),
        &["room", "put", "team", g.to_str().unwrap(), "doc.bin"],
    ));
    let got = root.path().join("got");
    room_get(&b, "doc.bin", &got);
    assert_eq!(blake3_file(&got), blake3_file(&g));
}
