//! LAN discovery between hosts: two network namespaces joined by a bridge,
//! daemons started with no peer at all, find each other by the multicast
//! beacon, and one fetches by hash alone what the other added.

use std::time::Duration;

use p2pfs_tests::{Daemon, Lan, blake3_file, ok, p2pfs, random_file, temp_dir, wait_for};

/// A daemon with no peer given on every host of `lan`.
fn one_per_host(lan: &Lan, root: &std::path::Path) -> Vec<Daemon> {
    lan.hosts
        .iter()
        .enumerate()
        .map(|(i, h)| Daemon::start_in(Some(h), &root.join(format!("n{i}")), "0.0.0.0:0", &[]))
        .collect()
}

#[test]
fn nodes_on_one_lan_find_each_other_with_no_address_given() {
    p2pfs_tests::needs_root!();
    let lan = Lan::new(1, 3);
    let root = temp_dir();
    let nodes = one_per_host(&lan, root.path());
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

/// Where the beacon's port is filtered, nodes still find each other, by
/// mDNS/DNS-SD (`_p2pfs._udp`); and a plain mDNS client (`mdns_browse`,
/// as `avahi-browse` would) sees every node with its id.
#[test]
fn nodes_find_each_other_by_mdns_and_standard_tools_see_them() {
    p2pfs_tests::needs_root!();
    let lan = Lan::new(12, 2);
    for h in &lan.hosts {
        let rules = "table inet nobeacon {
            chain in { type filter hook input priority 0; udp dport 47474 drop; }
            chain out { type filter hook output priority 0; udp dport 47474 drop; }
        }";
        let mut nft = std::process::Command::new("ip")
            .args(["netns", "exec", h, "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        nft.stdin
            .take()
            .unwrap()
            .write_all(rules.as_bytes())
            .unwrap();
        assert!(nft.wait().unwrap().success());
    }
    let root = temp_dir();
    let nodes = one_per_host(&lan, root.path());
    for d in &nodes {
        wait_for(
            Duration::from_secs(60),
            "nodes to find each other by mDNS",
            || (d.status()["dht"]["table"].as_u64() == Some(1)).then_some(()),
        );
    }
    let seen = wait_for(
        Duration::from_secs(60),
        "an mDNS client to see both",
        || {
            let out = std::process::Command::new("nsenter")
                .arg(format!("--net=/run/netns/{}", lan.hosts[0]))
                .arg(env!("CARGO_BIN_EXE_mdns_browse"))
                .arg("4")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            nodes.iter().all(|n| text.contains(&n.id)).then_some(text)
        },
    );
    eprintln!("{seen}");
    drop(nodes);
    drop(lan);
}
