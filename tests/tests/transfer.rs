//! Nodes in one process talking QUIC over 127.0.0.1: verified transfers
//! between real endpoints and real stores.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use p2pfs_proto::Hash;
use p2pfs_store::Store;
use p2pfs_swarm::{Limits, Node, NodeConfig, Target};
use p2pfs_tests::temp_dir;

struct TestNode {
    node: Node,
    _dir: tempfile::TempDir,
}

async fn node() -> TestNode {
    let dir = temp_dir();
    let store = Store::open(dir.path().join("store")).unwrap();
    let node = Node::spawn(
        NodeConfig {
            key_path: dir.path().join("node.key"),
            listen: Some("127.0.0.1:0".parse().unwrap()),
            default_port: 0,
            limits: Limits::default(),
        },
        store,
    )
    .await
    .unwrap();
    TestNode { node, _dir: dir }
}

fn target(n: &Node) -> Target {
    Target {
        id: Some(n.id()),
        addrs: vec![n.bound_addr()],
    }
}

fn random(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    fastrand::fill(&mut v);
    v
}

async fn import(n: &Node, data: &[u8]) -> Hash {
    let store = n.store().clone();
    let data = data.to_vec();
    tokio::task::spawn_blocking(move || store.import_bytes(&data, Some("user")).unwrap().hash)
        .await
        .unwrap()
}

async fn read(n: &Node, hash: Hash) -> Vec<u8> {
    let store = n.store().clone();
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        store.reader(&hash).unwrap().copy_to(&mut out).unwrap();
        out
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boundary_sizes_round_trip() {
    let a = node().await;
    let b = node().await;
    const G: usize = 16 * 1024;
    for size in [0, 1, 1024, G - 1, G, G + 1, 3 * G + 5, (5 << 20) + 3] {
        let data = random(size);
        let hash = import(&a.node, &data).await;
        let stats = tokio::time::timeout(
            Duration::from_secs(30),
            b.node.fetch(hash, vec![target(&a.node)], None),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(stats.size, size as u64);
        assert_eq!(read(&b.node, hash).await, data, "size {size}");
    }
    a.node.shutdown().await;
    b.node.shutdown().await;
}
