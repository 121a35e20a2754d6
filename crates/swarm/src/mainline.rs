//! Discovery at internet scale on the BitTorrent Mainline DHT (the
//! `mainline` crate; docs/protocol.md §10). The p2pfs Kademlia (`dht`) is
//! the p2pfs network's own index: it needs p2pfs nodes to exist. The
//! Mainline DHT, about ten million nodes run by BitTorrent clients, is
//! there already, so a p2pfs node that knows no other finds what it needs
//! through it, and nobody has to run bootstrap servers:
//!
//! - its **address record**: a BEP 44 mutable item signed with the node's
//!   key, so a ticket naming a member by id reaches it after it moved;
//! - **rooms**: members announce themselves (BEP 5) under an info hash
//!   derived from the room secret and the day, which outsiders cannot
//!   compute, and a member look the others up there;
//! - **public blobs**: providers announce under a hash of the blob's hash.
//!
//! The `mainline` node runs on its own UDP socket and thread; this module
//! is its async facade, with every call bounded in time.

use std::{
    net::{SocketAddr, SocketAddrV4},
    time::Duration,
};

use futures_lite::StreamExt;
use p2pfs_proto::{
    Hash, NodeId, codec,
    mainline::{
        MAX_RECORD_ADDRS, MAX_RECORD_SIZE, NODE_SALT, NodeRecord, blob_info_hash, day,
        room_info_hash,
    },
    room::RoomSecret,
};

use crate::identity::SecretKey;

/// How to take part in the Mainline DHT.
#[derive(Debug, Clone)]
pub struct MainlineConfig {
    /// Use it at all (`--no-mainline` turns it off).
    pub enabled: bool,
    /// Nodes to join through, `HOST:PORT` (`None`: the well-known
    /// routers of the BitTorrent network).
    pub bootstrap: Option<Vec<String>>,
}

impl Default for MainlineConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bootstrap: None,
        }
    }
}

/// Longest wait for one Mainline operation (a lookup, a put).
pub(crate) const OP_TIMEOUT: Duration = Duration::from_secs(30);

/// Most peers taken from one lookup.
const MAX_FOUND: usize = 64;

/// The node's Mainline DHT client.
pub(crate) struct Mainline {
    dht: mainline::async_dht::AsyncDht,
    signer: mainline::SigningKey,
}

impl std::fmt::Debug for Mainline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mainline").finish_non_exhaustive()
    }
}

/// Whether a Mainline call gave up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MainlineError {
    /// No answer in time.
    #[error("the Mainline DHT did not answer within {0:?}")]
    Timeout(Duration),
    /// The DHT refused or failed the operation.
    #[error("the Mainline DHT: {0}")]
    Failed(String),
}

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> Result<T, MainlineError> {
    tokio::time::timeout(OP_TIMEOUT, f)
        .await
        .map_err(|_| MainlineError::Timeout(OP_TIMEOUT))
}

impl Mainline {
    /// Starts a Mainline node (its own socket and thread) signing with
    /// `key`. `None` when turned off, or when it cannot start (logged).
    pub(crate) fn start(config: &MainlineConfig, key: &SecretKey) -> Option<Self> {
        if !config.enabled {
            return None;
        }
        let mut builder = mainline::Dht::builder();
        if let Some(b) = &config.bootstrap {
            builder.bootstrap(b);
        }
        match builder.build() {
            Ok(dht) => Some(Self {
                dht: dht.as_async(),
                signer: mainline::SigningKey::from_bytes(key.seed()),
            }),
            Err(e) => {
                tracing::warn!("the Mainline DHT could not start: {e}");
                None
            }
        }
    }

    /// Whether the node has joined the DHT.
    pub(crate) async fn bootstrapped(&self) -> bool {
        bounded(self.dht.bootstrapped()).await.unwrap_or(false)
    }

    /// Publishes this node's address record (BEP 44), `seq` the time in
    /// seconds (a newer record replaces an older one).
    pub(crate) async fn publish_node(
        &self,
        addrs: &[SocketAddr],
        seq: i64,
    ) -> Result<(), MainlineError> {
        let mut addrs: Vec<SocketAddr> = addrs.to_vec();
        addrs.truncate(MAX_RECORD_ADDRS);
        let value = codec::encode(&NodeRecord { addrs })
            .map_err(|e| MainlineError::Failed(e.to_string()))?;
        debug_assert!(value.len() <= MAX_RECORD_SIZE);
        let item = mainline::MutableItem::new(self.signer.clone(), &value, seq, Some(NODE_SALT));
        bounded(self.dht.put_mutable(item, None))
            .await?
            .map(|_| ())
            .map_err(|e| MainlineError::Failed(e.to_string()))
    }

    /// The newest address record of `node`, if any was found. (Items are
    /// verified by the crate: signed by the node's key.)
    pub(crate) async fn resolve_node(
        &self,
        node: &NodeId,
    ) -> Result<Vec<SocketAddr>, MainlineError> {
        let item = bounded(
            self.dht
                .get_mutable_most_recent(node.as_bytes(), Some(NODE_SALT)),
        )
        .await?;
        let Some(item) = item else {
            return Ok(Vec::new());
        };
        let record: NodeRecord = codec::decode(item.value())
            .map_err(|e| MainlineError::Failed(format!("a bad record: {e}")))?;
        record
            .check()
            .map_err(|e| MainlineError::Failed(format!("a bad record: {e}")))?;
        Ok(record.addrs)
    }

    /// Announces this node (its QUIC `port`) under `info_hash`.
    async fn announce(&self, info_hash: [u8; 20], port: u16) -> Result<(), MainlineError> {
        bounded(
            self.dht
                .announce_peer(mainline::Id::from(info_hash), Some(port)),
        )
        .await?
        .map(|_| ())
        .map_err(|e| MainlineError::Failed(e.to_string()))
    }

    /// The peers announced under `info_hash` (at most [`MAX_FOUND`]).
    async fn peers(&self, info_hash: [u8; 20]) -> Result<Vec<SocketAddr>, MainlineError> {
        let mut stream = self.dht.get_peers(mainline::Id::from(info_hash));
        let mut out: Vec<SocketAddr> = Vec::new();
        let collect = async {
            while let Some(batch) = stream.next().await {
                for a in batch {
                    let a = SocketAddr::V4(SocketAddrV4::new(*a.ip(), a.port()));
                    if !out.contains(&a) {
                        out.push(a);
                    }
                }
                if out.len() >= MAX_FOUND {
                    break;
                }
            }
        };
        bounded(collect).await?;
        out.truncate(MAX_FOUND);
        Ok(out)
    }

    /// Announces this node as a member of the room today.
    pub(crate) async fn announce_room(
        &self,
        secret: &RoomSecret,
        port: u16,
        unix_secs: u64,
    ) -> Result<(), MainlineError> {
        self.announce(room_info_hash(secret, day(unix_secs)), port)
            .await
    }

    /// The members announced today and yesterday (clocks disagree around
    /// midnight).
    pub(crate) async fn find_room(
        &self,
        secret: &RoomSecret,
        unix_secs: u64,
    ) -> Result<Vec<SocketAddr>, MainlineError> {
        let today = day(unix_secs);
        let (now, before) = tokio::join!(
            self.peers(room_info_hash(secret, today)),
            self.peers(room_info_hash(secret, today.saturating_sub(1)))
        );
        let mut all = now?;
        for a in before.unwrap_or_default() {
            if !all.contains(&a) {
                all.push(a);
            }
        }
        Ok(all)
    }

    /// Announces this node as a provider of the public blob `hash`.
    pub(crate) async fn announce_blob(&self, hash: &Hash, port: u16) -> Result<(), MainlineError> {
        self.announce(blob_info_hash(hash), port).await
    }

    /// The providers of the public blob `hash` announced there.
    pub(crate) async fn find_blob(&self, hash: &Hash) -> Result<Vec<SocketAddr>, MainlineError> {
        self.peers(blob_info_hash(hash)).await
    }
}

/// The port to announce: where peers outside reach the node's QUIC
/// socket (its router's, behind a NAT that keeps ports), else the port it
/// is bound to.
pub(crate) fn announced_port(net: &crate::net::Net) -> u16 {
    net.addrs()
        .iter()
        .find(|a| crate::net::reflexive::worth_asking(a))
        .map_or_else(|| net.bound_addr().port(), |a| a.port())
}

/// Seconds since the Unix epoch now.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Publishes the node's address record when it joins, whenever its
/// addresses change, and every 30 minutes (BEP 44 items expire after
/// about two hours), until the node stops.
pub(crate) async fn keep_record(ml: std::sync::Arc<Mainline>, net: crate::net::Net) {
    const REPUBLISH: Duration = Duration::from_secs(30 * 60);
    const CHECK: Duration = Duration::from_secs(10);
    let mut published: Option<(Vec<SocketAddr>, std::time::Instant)> = None;
    loop {
        let addrs = net.addrs();
        let due = published
            .as_ref()
            .is_none_or(|(a, at)| *a != addrs || at.elapsed() > REPUBLISH);
        if due && !addrs.is_empty() && ml.bootstrapped().await {
            let seq = i64::try_from(unix_now()).unwrap_or(i64::MAX);
            match ml.publish_node(&addrs, seq).await {
                Ok(()) => {
                    tracing::debug!(?addrs, "published the address record on the Mainline DHT");
                    published = Some((addrs, std::time::Instant::now()));
                }
                Err(e) => tracing::debug!("publishing the address record: {e}"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(CHECK) => {},
            _ = net.cancel().cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two clients of a local testnet (never the internet's DHT).
    fn pair(testnet: &mainline::Testnet) -> (Mainline, Mainline, SecretKey) {
        let config = MainlineConfig {
            enabled: true,
            bootstrap: Some(testnet.bootstrap.clone()),
        };
        let ka = SecretKey::from_seed([1; 32]).unwrap();
        let kb = SecretKey::from_seed([2; 32]).unwrap();
        let a = Mainline::start(&config, &ka).unwrap();
        let b = Mainline::start(&config, &kb).unwrap();
        (a, b, ka)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_rooms_and_blobs_are_found_on_a_testnet() {
        let testnet = mainline::Testnet::builder(10).build().unwrap();
        let (a, b, ka) = pair(&testnet);
        let t = std::time::Instant::now();
        assert!(a.bootstrapped().await && b.bootstrapped().await);
        eprintln!("bootstrapped in {:?}", t.elapsed());

        // An address record, newest wins, verified against the node key.
        let v1: Vec<SocketAddr> = vec!["198.18.0.1:7000".parse().unwrap()];
        let v2: Vec<SocketAddr> = vec!["198.18.0.1:7001".parse().unwrap()];
        let t = std::time::Instant::now();
        a.publish_node(&v1, 100).await.unwrap();
        eprintln!("published in {:?}", t.elapsed());
        let t = std::time::Instant::now();
        assert_eq!(b.resolve_node(&ka.public()).await.unwrap(), v1);
        eprintln!("resolved in {:?}", t.elapsed());
        a.publish_node(&v2, 200).await.unwrap();
        assert_eq!(b.resolve_node(&ka.public()).await.unwrap(), v2);
        let nobody = SecretKey::from_seed([3; 32]).unwrap().public();
        assert!(b.resolve_node(&nobody).await.unwrap().is_empty());

        // A room, found today and tomorrow (yesterday's hash is asked too),
        // not the day after, nor under another room's secret.
        let room = RoomSecret([9; 32]);
        let now = 20_000 * 86_400 + 5;
        let t = std::time::Instant::now();
        a.announce_room(&room, 7000, now).await.unwrap();
        eprintln!("announced in {:?}", t.elapsed());
        let t = std::time::Instant::now();
        let found = b.find_room(&room, now).await.unwrap();
        eprintln!("found in {:?}", t.elapsed());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].port(), 7000);
        assert_eq!(b.find_room(&room, now + 86_400).await.unwrap(), found);
        assert!(
            b.find_room(&room, now + 2 * 86_400)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            b.find_room(&RoomSecret([8; 32]), now)
                .await
                .unwrap()
                .is_empty()
        );

        // A public blob.
        let hash = Hash::from_bytes([5; 32]);
        a.announce_blob(&hash, 7002).await.unwrap();
        let found = b.find_blob(&hash).await.unwrap();
        assert_eq!(
            found.iter().map(|a| a.port()).collect::<Vec<_>>(),
            vec![7002]
        );
    }
}
