//! In-process nodes for tests that drive the swarm API directly.

use std::{sync::Arc, time::Duration};

use p2pfs_store::{Options, Store};
use p2pfs_swarm::{Limits, Node, NodeConfig, identity::SecretKey, tls};

use crate::temp_dir;

/// A node and its directory, removed on drop.
#[derive(Debug)]
pub struct TestNode {
    pub node: Node,
    pub dir: tempfile::TempDir,
}

/// A node on 127.0.0.1 with default limits and store options.
pub async fn node() -> TestNode {
    node_with(Limits::default(), Options::default()).await
}

/// A node on 127.0.0.1 (a DHT server that knows no one).
pub async fn node_with(limits: Limits, options: Options) -> TestNode {
    node_joining(limits, options, Vec::new()).await
}

/// A node on 127.0.0.1 that joins the DHT through `bootstrap`.
pub async fn node_joining(
    limits: Limits,
    options: Options,
    bootstrap: Vec<p2pfs_swarm::Target>,
) -> TestNode {
    spawn(limits, options, bootstrap, Default::default()).await
}

/// A node on 127.0.0.1 that relays as `relay` says.
pub async fn node_relaying(relay: p2pfs_swarm::RelayMode) -> TestNode {
    spawn(Limits::default(), Options::default(), Vec::new(), relay).await
}

async fn spawn(
    limits: Limits,
    options: Options,
    bootstrap: Vec<p2pfs_swarm::Target>,
    relay: p2pfs_swarm::RelayMode,
) -> TestNode {
    let dir = temp_dir();
    let store = Store::open_with(dir.path().join("store"), options).unwrap();
    let node = Node::spawn(
        NodeConfig {
            key_path: dir.path().join("node.key"),
            listen: Some("127.0.0.1:0".parse().unwrap()),
            default_port: 0,
            limits,
            dht: p2pfs_swarm::dht::DhtConfig {
                bootstrap,
                ..Default::default()
            },
            display_name: None,
            replica: None,
            link_delay: None,
            relay,
            // Tests never reach the internet's DHT.
            mainline: p2pfs_swarm::mainline::MainlineConfig {
                enabled: false,
                bootstrap: None,
            },
            port_mapping: false,
        },
        store,
    )
    .await
    .unwrap();
    TestNode { node, dir }
}

/// A node that serves its data without re-checking it against the hash:
/// with [`corrupt`], a peer that lies.
pub async fn unchecked_node() -> TestNode {
    node_with(
        Limits::default(),
        Options {
            validate_uploads: false,
            ..Options::default()
        },
    )
    .await
}

/// Flips a byte in each chunk group `g` of blob `hash` (of `size` bytes)
/// for which `bad(g)` holds, in `n`'s data file; returns how many.
pub fn corrupt(
    n: &TestNode,
    hash: p2pfs_proto::Hash,
    size: usize,
    bad: impl Fn(usize) -> bool,
) -> usize {
    use std::os::unix::fs::FileExt;
    let path = n.dir.path().join("store/data").join(format!("{hash}.data"));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut flipped = 0;
    for g in (0..size.div_ceil(16384)).filter(|g| bad(*g)) {
        let off = (g * 16384 + 100).min(size - 1) as u64;
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, off).unwrap();
        f.write_all_at(&[b[0] ^ 0xa5], off).unwrap();
        flipped += 1;
    }
    f.sync_all().unwrap();
    flipped
}

/// How to reach `n` (its id and bound address).
pub fn target(n: &Node) -> p2pfs_swarm::Target {
    p2pfs_swarm::Target {
        id: Some(n.id()),
        addrs: vec![n.bound_addr()],
    }
}

/// Imports `data` into `n`'s store (pinned), returning its hash.
pub async fn import(n: &Node, data: &[u8]) -> p2pfs_proto::Hash {
    let store = n.store().clone();
    let data = data.to_vec();
    tokio::task::spawn_blocking(move || store.import_bytes(&data, Some("user")).unwrap().hash)
        .await
        .unwrap()
}

/// The whole blob `hash` from `n`'s store.
pub async fn read(n: &Node, hash: p2pfs_proto::Hash) -> Vec<u8> {
    let store = n.store().clone();
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        store.reader(&hash).unwrap().copy_to(&mut out).unwrap();
        out
    })
    .await
    .unwrap()
}

/// A blob-protocol request for all of `hash`, framed, to send raw.
pub fn get_all_frame(hash: p2pfs_proto::Hash) -> Vec<u8> {
    p2pfs_proto::codec::encode_frame(&p2pfs_proto::blobs::BlobRequest::Get {
        hash,
        ranges: p2pfs_proto::RangeSpec::all(),
    })
    .unwrap()
}

/// A raw QUIC connection with a fresh identity, for speaking the protocol
/// badly on purpose.
pub async fn raw_connect(to: &Node, alpn: &[u8]) -> Result<quinn::Connection, String> {
    raw_connect_as(&SecretKey::generate().unwrap(), to, alpn).await
}

/// A raw QUIC connection with identity `key`.
pub async fn raw_connect_as(
    key: &SecretKey,
    to: &Node,
    alpn: &[u8],
) -> Result<quinn::Connection, String> {
    let tls = tls::client_config(key, alpn).unwrap();
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(tls)).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let connecting = ep
        .connect(to.bound_addr(), &to.id().to_string())
        .map_err(|e| e.to_string())?;
    connecting.await.map_err(|e| e.to_string())
}

/// The close code a connection ended with, waiting up to 10 s.
pub async fn close_code(c: &quinn::Connection) -> Option<u64> {
    match tokio::time::timeout(Duration::from_secs(10), c.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(a)) => Some(a.error_code.into_inner()),
        _ => None,
    }
}
