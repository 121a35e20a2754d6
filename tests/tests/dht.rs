//! The DHT with real processes: nodes that each know one other find a file
//! by its hash alone; nodes remembered from the last run rejoin without
//! being told a peer; a node knowing nobody says so.

use std::time::Duration;

use p2pfs_tests::{Daemon, blake3_file, fails, ok, p2pfs, random_file, temp_dir, wait_for};

/// Nodes in the network: more than k, so records do not land everywhere.
const NODES: usize = 24;

fn table_size(d: &Daemon) -> u64 {
    d.status()["dht"]["table"].as_u64().unwrap_or(0)
}

#[test]
fn a_file_is_fetched_by_hash_alone_through_nodes_that_each_know_one_other() {
    let root = temp_dir();
    // Each node is told of the one started before it, and nothing else.
    let mut nodes: Vec<Daemon> = Vec::new();
    for i in 0..NODES {
        let peer = nodes.last().map(|d| d.peer());
        let args: Vec<&str> = match &peer {
            Some(p) => vec!["--peer", p],
            None => vec![],
        };
        nodes.push(Daemon::start(&root.path().join(format!("n{i}")), &args));
    }
    // The routing tables fill beyond the one node each was told of.
    for d in &nodes[1..] {
        wait_for(Duration::from_secs(30), "the routing table to fill", || {
            (table_size(d) >= 3).then_some(())
        });
    }

    // A file added on the first node…
    let file = root.path().join("file");
    random_file(&file, 3_000_000, 7);
    let hash = blake3_file(&file);
    let first = &nodes[0];
    let added = ok(&p2pfs(first.data_dir(), &["add", file.to_str().unwrap()]));
    assert!(added.starts_with(&hash), "{added}");
    wait_for(Duration::from_secs(30), "the blob to be announced", || {
        (first.status()["dht"]["announced"].as_u64() == Some(1)).then_some(())
    });
    let held: u64 = nodes
        .iter()
        .map(|d| d.status()["dht"]["records"].as_u64().unwrap_or(0))
        .sum();
    assert!(held >= 3, "the record is held by {held} nodes");

    // …is fetched by hash alone on the last, which never heard of it, nor
    // was ever told of the first node.
    let last = &nodes[NODES - 1];
    let out = root.path().join("out");
    ok(&p2pfs(
        last.data_dir(),
        &["fetch", &hash, "-o", out.to_str().unwrap()],
    ));
    assert_eq!(blake3_file(&out), hash);

    // The fetcher now provides it too: a third node gets it from either.
    let middle = &nodes[NODES / 2];
    let out2 = root.path().join("out2");
    ok(&p2pfs(
        middle.data_dir(),
        &["fetch", &hash, "-o", out2.to_str().unwrap()],
    ));
    assert_eq!(blake3_file(&out2), hash);
    wait_for(Duration::from_secs(30), "the fetcher to announce", || {
        (last.status()["dht"]["announced"].as_u64() == Some(1)).then_some(())
    });

    // A hash nobody has: a clear error, after asking the network.
    let unknown = "ab".repeat(32);
    let err = fails(&p2pfs(middle.data_dir(), &["fetch", &unknown]));
    assert!(err.contains("no provider found"), "{err}");

    // Restarted with no --peer, a node rejoins through the nodes it
    // remembered, and still finds providers.
    let mut last = nodes.pop().unwrap();
    assert!(last.terminate().success());
    let dir = last.data_dir().to_path_buf();
    drop(last);
    ok(&p2pfs(&dir, &["unpin", &hash]));
    ok(&p2pfs(&dir, &["gc"]));
    let again = Daemon::start(&dir, &[]);
    wait_for(
        Duration::from_secs(30),
        "the restarted node to rejoin",
        || (table_size(&again) >= 3).then_some(()),
    );
    let out3 = root.path().join("out3");
    ok(&p2pfs(
        again.data_dir(),
        &["fetch", &hash, "-o", out3.to_str().unwrap()],
    ));
    assert_eq!(blake3_file(&out3), hash);
}

#[test]
fn a_node_that_knows_nobody_says_so() {
    let dir = temp_dir();
    let d = Daemon::start(dir.path(), &[]);
    let status = ok(&p2pfs(d.data_dir(), &["status"]));
    assert!(status.contains("dht        no peers"), "{status}");
    let err = fails(&p2pfs(d.data_dir(), &["fetch", &"cd".repeat(32)]));
    assert!(err.contains("no peers"), "{err}");
    assert_eq!(d.status()["dht"]["table"], 0);
}
