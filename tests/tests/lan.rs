//! LAN discovery between hosts: two network namespaces joined by a bridge,
//! daemons started with no peer at all, find each other by the multicast
//! beacon, and one fetches by hash alone what the other added.

use std::time::Duration;

use p2pfs_tests::{Daemon, Lan, blake3_file, ok, p2pfs, random_file, temp_dir, wait_for};

#[test]
fn nodes_on_one_lan_find_each_other_with_no_address_given() {
    p2pfs_tests::needs_root!();
    let lan = Lan::new(1, 3);
    let root = temp_dir();
    let nodes: Vec<Daemon> = lan
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            Daemon::start_in(
                Some(h),
                &root.path().join(format!("n{i}")),
                "0.0.0.0:0",
                &[],
            )
        })
        .collect();
    for d in &nodes {
        wait_for(Duration::from_secs(60), "nodes to find each other", || {
            (d.status()["dht"]["table"].as_u64() == Some(2)).then_some(())
        });
    }
    let file = root.path().join("file");
    random_file(&file, 1_000_000, 3);
    let hash = blake3_file(&file);
    ok(&p2pfs(
        nodes[0].data_dir(),
        &["add", file.to_str().unwrap()],
    ));
    wait_for(Duration::from_secs(30), "the blob to be announced", || {
        (nodes[0].status()["dht"]["announced"].as_u64() == Some(1)).then_some(())
    });
    let out = root.path().join("out");
    ok(&p2pfs(
        nodes[2].data_dir(),
        &["fetch", &hash, "-o", out.to_str().unwrap()],
    ));
    assert_eq!(blake3_file(&out), hash);
    drop(nodes);
    drop(lan);
}
