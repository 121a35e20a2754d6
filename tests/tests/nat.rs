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
    wait_for(SYNC, "the file on b", || {
        let out = p2pfs(
            b.data_dir(),
            &[
                "room",
                "get",
                "team",
                "doc.bin",
                "-o",
                got.to_str().unwrap(),
            ],
        );
        out.status.success().then_some(())
    });
    assert_eq!(blake3_file(&got), blake3_file(&g));
}
