//! The user's story on a bad network: hosts in network namespaces on one
//! bridge, 50 ms round trips (each node delays what it sends by 25 ms) and
//! 1 % loss on every host's sends. Mounts on three hosts, a room created on
//! one and joined on the others with the ticket only (no `--peer`), files
//! copied in and read elsewhere, chat through `chat.log`, and a fourth host
//! that knows nothing but its LAN fetching a public file by hash.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{fs, time::Duration};

use p2pfs_tests::{Daemon, Lan, blake3_file, ok, p2pfs, random_file, temp_dir, wait_for};

const SLOW: Duration = Duration::from_secs(90);

fn sh(script: &str) {
    let s = std::process::Command::new("sh")
        .args(["-c", script])
        .status()
        .unwrap();
    assert!(s.success(), "{script}");
}

#[test]
fn the_story_over_50ms_and_1_percent_loss() {
    p2pfs_tests::needs_root!();
    let mut net = Lan::new(5, 4);
    net.delay("25ms~2ms");
    for i in 0..4 {
        net.loss(i, 1);
    }
    let root = temp_dir();
    let dir = |n: &str| root.path().join(n);
    let names = ["alice", "bob", "carol"];
    let mounts: Vec<Daemon> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            Daemon::mount_on(
                &net,
                i,
                &dir(n),
                &dir(&format!("mnt-{n}")),
                &["--name", n, "--listen", &format!("{}:7000", net.ip(i))],
            )
        })
        .collect();
    let room = |i: usize| mounts[i].mountpoint().join("team");

    // A room made with mkdir, joined with the ticket alone.
    fs::create_dir(room(0)).unwrap();
    let ticket = ok(&p2pfs(mounts[0].data_dir(), &["room", "ticket", "team"]));
    for m in &mounts[1..] {
        ok(&p2pfs(m.data_dir(), &["room", "join", ticket.trim()]));
    }
    for i in 1..3 {
        wait_for(SLOW, "the room on every host", || {
            room(i).join("chat.log").exists().then_some(())
        });
    }

    // Files copied in on alice, read on bob and carol.
    let work = dir("work");
    fs::create_dir_all(&work).unwrap();
    random_file(&work.join("big.bin"), 4_000_000, 1);
    random_file(&work.join("small.txt"), 1_000, 2);
    sh(&format!(
        "cp {}/big.bin {}/small.txt {}/",
        work.display(),
        work.display(),
        room(0).display()
    ));
    for i in 1..3 {
        let f = room(i).join("big.bin");
        wait_for(SLOW, "the files listed", || f.exists().then_some(()));
        assert_eq!(blake3_file(&f), blake3_file(&work.join("big.bin")));
        assert_eq!(
            blake3_file(&room(i).join("small.txt")),
            blake3_file(&work.join("small.txt"))
        );
    }

    // Chat: bob appends, alice and carol see it.
    sh(&format!(
        "echo 'hello over a bad link' >> {}",
        room(1).join("chat.log").display()
    ));
    for i in [0, 2] {
        wait_for(SLOW, "the chat line everywhere", || {
            fs::read_to_string(room(i).join("chat.log"))
                .ok()?
                .contains("bob: hello over a bad link")
                .then_some(())
        });
    }

    // A fourth host that knows nothing but its LAN fetches a public file
    // by hash.
    let public = work.join("public.bin");
    random_file(&public, 2_000_000, 3);
    let hash = blake3_file(&public);
    ok(&p2pfs(
        mounts[2].data_dir(),
        &["add", public.to_str().unwrap()],
    ));
    let dave = Daemon::start_on(
        &net,
        3,
        &dir("dave"),
        &["--listen", &format!("{}:7000", net.ip(3))],
    );
    let out = dir("got.bin");
    wait_for(SLOW, "dave to fetch by hash", || {
        let o = p2pfs(
            dave.data_dir(),
            &["fetch", &hash, "-o", out.to_str().unwrap()],
        );
        o.status.success().then_some(())
    });
    assert_eq!(blake3_file(&out), hash);
    // The link was what it claims: delayed, and lossy.
    assert!(
        mounts[0].log().contains("emulating a link delay"),
        "{}",
        mounts[0].log()
    );
    let dropped: u64 = (0..4).map(|i| net.dropped(i)).sum();
    assert!(dropped > 0, "no packet was dropped");
    drop(dave);
    drop(mounts);
    drop(net);
}
