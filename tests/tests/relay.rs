//! Relayed connections between in-process nodes on 127.0.0.1: a node
//! whose address the dialer does not know is reached through a node both
//! are connected to, then directly once the relay has coordinated a hole
//! punch. (Across real NATs: `nat.rs`.)

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use p2pfs_swarm::{Node, PathKind, Target};
use p2pfs_tests::inproc::{self, target};

/// Whether `f` holds within `timeout` (checked every 50 ms).
async fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A dialer `a`, a target `b` and the relay `r` between them: `r` is
/// connected to both, `a` knows only `r`.
async fn trio(r: inproc::TestNode) -> [inproc::TestNode; 3] {
    let (a, b) = (inproc::node().await, inproc::node().await);
    r.node
        .dial(&target(&b.node), p2pfs_proto::dht::ALPN)
        .await
        .unwrap();
    a.node
        .dial(&target(&r.node), p2pfs_proto::dht::ALPN)
        .await
        .unwrap();
    [a, b, r]
}

/// The path `from` reports for its connection with `to`.
fn path(from: &Node, to: &Node) -> Option<(PathKind, Option<p2pfs_proto::NodeId>)> {
    from.peers()
        .into_iter()
        .find(|p| p.id == to.id())
        .map(|p| (p.path, p.via))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_no_known_address_is_fetched_from_through_a_relay_then_directly() {
    let [a, b, _r] = trio(inproc::node().await).await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let hash = inproc::import(&b.node, &data).await;
    let only_id = Target {
        id: Some(b.node.id()),
        addrs: Vec::new(),
    };
    a.node.fetch(hash, vec![only_id], None).await.unwrap();
    assert_eq!(inproc::read(&a.node, hash).await, data);
    // The fetch went through the relay, and the relayed connection then
    // becomes direct (the relay passes a punch; on loopback it works).
    let became_direct = wait_until(Duration::from_secs(20), || {
        path(&a.node, &b.node) == Some((PathKind::Direct, None))
    })
    .await;
    assert!(
        became_direct,
        "the path stayed {:?}",
        path(&a.node, &b.node)
    );
    // And it serves: a second blob comes over the direct connection.
    let more = vec![7u8; 100_000];
    let h2 = inproc::import(&b.node, &more).await;
    let only_id = Target {
        id: Some(b.node.id()),
        addrs: Vec::new(),
    };
    a.node.fetch(h2, vec![only_id], None).await.unwrap();
    assert_eq!(inproc::read(&a.node, h2).await, more);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_path_is_reported_until_the_punch() {
    let [a, b, r] = trio(inproc::node().await).await;
    let only_id = Target {
        id: Some(b.node.id()),
        addrs: Vec::new(),
    };
    a.node
        .dial(&only_id, p2pfs_proto::blobs::ALPN)
        .await
        .unwrap();
    // Right after the dial, before the punch completes, or after it: the
    // peer is listed with a path, and a relayed one names the relay.
    match path(&a.node, &b.node) {
        Some((PathKind::Relay, via)) => assert_eq!(via, Some(r.node.id())),
        Some((PathKind::Direct, None)) => {}
        other => panic!("unexpected path {other:?}"),
    }
    let on_b = wait_until(Duration::from_secs(10), || path(&b.node, &a.node).is_some()).await;
    assert!(on_b, "b never listed a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_relays_for_nobody_refuses_with_a_reason() {
    let [a, b, _r] = trio(inproc::node_relaying(p2pfs_swarm::RelayMode::Off).await).await;
    let only_id = Target {
        id: Some(b.node.id()),
        addrs: Vec::new(),
    };
    let err = a
        .node
        .dial(&only_id, p2pfs_proto::blobs::ALPN)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not relay"), "{err}");
}
