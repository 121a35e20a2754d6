//! [`Node`]: builds the node from its parts and is their facade. The parts
//! own their state: [`Net`] the endpoint and connections, each protocol
//! handler (blobs, DHT, rooms) its protocol's state, [`Privacy`] the rule
//! of who may have which blob. Shutdown runs in order: rooms say goodbye,
//! the cancellation tree stops every handler, connections close, tasks
//! are awaited.

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use p2pfs_proto::{Hash, NodeAddr, NodeId, blobs};
use p2pfs_store::Store;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::{
    config::NodeConfig,
    dht::{DhtStatus, runtime::Dht},
    error::SwarmError,
    identity::SecretKey,
    net::{Net, dial::Target},
    policy::Privacy,
    room::{handler::RoomsHandler, registry::Rooms},
    router::Router,
    transfer::{
        download::{self, FetchProgress, FetchStats},
        provider::Blobs,
    },
};

/// Every ALPN the node speaks.
pub(crate) const ALPNS: &[&[u8]] = &[
    blobs::ALPN,
    p2pfs_proto::dht::ALPN,
    p2pfs_proto::room::ALPN,
    p2pfs_proto::relay::ALPN,
];

/// A peer with a live connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Its id.
    pub id: NodeId,
    /// Its address.
    pub addr: SocketAddr,
    /// Whether we dialed it.
    pub outbound: bool,
    /// Seconds since the connection opened.
    pub connected_secs: u64,
    /// `direct`, or `relay` (through `via`).
    pub path: PathKind,
    /// The relay, for a relayed path (`null` for a direct one; no
    /// `skip_serializing_if`: the control socket's encoding is postcard).
    pub via: Option<NodeId>,
}

/// How packets reach a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathKind {
    /// Straight to its address.
    Direct,
    /// Through a relay.
    Relay,
}

/// A running p2pfs node. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
}

/// The node's parts.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) net: Net,
    pub(crate) store: Store,
    /// The blob protocol: serving and downloading.
    pub(crate) blobs: Blobs,
    pub(crate) dht: Dht,
    pub(crate) rooms: Arc<Rooms>,
    pub(crate) replica: Option<crate::replica::NodeReplica>,
    /// What the node relays for others.
    pub(crate) relay_mode: crate::relay::RelayMode,
    /// The Mainline DHT client (`None`: turned off).
    pub(crate) mainline: Option<Arc<crate::mainline::Mainline>>,
}

impl Node {
    /// Starts a node: loads or creates its key, binds its endpoint,
    /// registers its protocols and starts serving peers. Must run inside a
    /// tokio runtime.
    pub async fn spawn(config: NodeConfig, store: Store) -> Result<Self, SwarmError> {
        let key = SecretKey::load_or_create(&config.key_path)?;
        let mainline = crate::mainline::Mainline::start(&config.mainline, &key).map(Arc::new);
        let net = Net::bind(key, &config, ALPNS)?;
        let id = net.id();
        let rooms = Arc::new(Rooms::new(
            config.display_name.unwrap_or_else(crate::room::host_name),
        ));
        let privacy = Privacy::new(store.clone(), rooms.clone());
        let blobs = Blobs::new(net.clone(), store.clone(), privacy.clone());
        let lan = config.dht.lan;
        let server = config.dht.server;
        let relay = crate::relay::RelayHandler::new(net.clone(), rooms.clone(), config.relay);
        let dht = Dht::new(
            net.clone(),
            store.clone(),
            privacy,
            config.dht,
            mainline.clone(),
        )?;
        let node = Self {
            inner: Arc::new(Inner {
                net: net.clone(),
                store,
                blobs: blobs.clone(),
                dht: dht.clone(),
                rooms,
                replica: config.replica.map(crate::replica::NodeReplica::new),
                relay_mode: config.relay,
                mainline: mainline.clone(),
            }),
        };
        net.start(
            Router::default()
                .accept(blobs::ALPN, Arc::new(blobs))
                .accept(p2pfs_proto::dht::ALPN, Arc::new(dht.clone()))
                .accept(p2pfs_proto::room::ALPN, Arc::new(RoomsHandler::new(&node)))
                .accept(p2pfs_proto::relay::ALPN, Arc::new(relay)),
        );
        net.spawn(crate::dht::runtime::run(dht.clone()));
        if server && config.port_mapping {
            net.spawn(crate::net::portmap::run(net.clone()));
        }
        if lan {
            net.spawn(crate::dht::lan::run(dht.clone()));
            net.spawn(crate::dht::mdns::run(dht));
        }
        if let (Some(ml), true) = (mainline, server) {
            net.spawn(crate::mainline::keep_record(ml, net.clone()));
        }
        if let Err(e) = node.start_rooms().await {
            node.shutdown().await;
            return Err(e);
        }
        tracing::info!(node = %id, addr = ?node.bound_addr(), "node started");
        Ok(node)
    }

    /// The network seam.
    pub(crate) fn net(&self) -> &Net {
        &self.inner.net
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.net.id()
    }

    /// This node's key.
    pub fn secret_key(&self) -> &SecretKey {
        self.inner.net.key()
    }

    /// The content store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The address the endpoint is bound to.
    pub fn bound_addr(&self) -> SocketAddr {
        self.inner.net.bound_addr()
    }

    /// Addresses peers can use to reach this node.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.inner.net.addrs()
    }

    /// This node's id and addresses, as a ticket carries them.
    pub fn node_addr(&self) -> NodeAddr {
        self.inner.net.node_addr()
    }

    /// Peers with a live connection.
    pub fn peers(&self) -> Vec<PeerInfo> {
        let mut seen: HashMap<NodeId, PeerInfo> = HashMap::new();
        for c in self.inner.net.connections() {
            let info = PeerInfo {
                id: c.peer,
                addr: c.addr,
                outbound: c.outbound,
                connected_secs: c.since.elapsed().as_secs(),
                path: if c.via.is_some() {
                    PathKind::Relay
                } else {
                    PathKind::Direct
                },
                via: c.via,
            };
            // A direct connection speaks for the peer over a relayed one.
            match seen.get(&c.peer) {
                Some(p) if p.path == PathKind::Direct || info.path == PathKind::Relay => {}
                _ => {
                    seen.insert(c.peer, info);
                }
            }
        }
        let mut peers: Vec<PeerInfo> = seen.into_values().collect();
        peers.sort_by_key(|p| p.id);
        peers
    }

    /// How peers outside reach this node: its NAT, its reflexive address,
    /// what it relays.
    pub fn reach(&self) -> crate::net::Reach {
        self.inner.net.reach(self.inner.relay_mode)
    }

    /// Peers banned for sending data that does not verify.
    pub fn banned(&self) -> Vec<crate::net::ban::BannedPeer> {
        self.inner.net.banned()
    }

    /// The downloads running now, oldest first.
    pub fn transfers(&self) -> Vec<crate::transfer::active::Transfer> {
        self.inner.blobs.active.list()
    }

    /// Whether `hash` is public: no room refers to it, or the user added
    /// or fetched it (pinned it) outside a room. What the HTTP gateway may
    /// serve to anyone. Blocking (reads the store).
    pub fn is_public(&self, hash: &Hash) -> bool {
        self.inner.blobs.privacy.is_public(hash)
    }

    /// Connects to `target` (reusing a live connection) and returns the
    /// id of the node that answered.
    pub async fn dial(&self, target: &Target, alpn: &'static [u8]) -> Result<NodeId, SwarmError> {
        Ok(self.inner.net.connect(target, alpn).await?.peer)
    }

    /// Downloads `hash` from `providers` into the store (resuming what is
    /// there), reporting progress on `progress`.
    pub async fn fetch(
        &self,
        hash: Hash,
        providers: Vec<Target>,
        progress: Option<watch::Sender<FetchProgress>>,
    ) -> Result<FetchStats, SwarmError> {
        let stats = download::run(&self.inner.blobs, hash, providers, None, None, progress).await?;
        self.provide(hash);
        Ok(stats)
    }

    /// Stops serving and closes every connection, then waits (briefly) for
    /// tasks to finish and peers to learn of the close.
    pub async fn shutdown(&self) {
        let net = &self.inner.net;
        if self.inner.replica.is_some() && !net.is_stopping() {
            // The rooms' members count this replica offline at once.
            self.goodbye().await;
        }
        net.close();
        net.wait_closed().await;
        tracing::info!(node = %self.id(), "node stopped");
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.net.is_stopping()
    }
}

/// The DHT, as the node's facade shows it.
impl Node {
    /// Pings `target` over the DHT protocol (it joins the routing table if
    /// it answers, and says where this node's packets come from).
    pub(crate) async fn ping(&self, target: &Target) {
        self.inner.dht.ping(target).await;
    }

    /// The providers of the public blob `hash` announced on the Mainline
    /// DHT (addresses only: their ids come from the handshake).
    pub async fn find_mainline_providers(&self, hash: Hash) -> Vec<Target> {
        let Some(ml) = &self.inner.mainline else {
            return Vec::new();
        };
        match ml.find_blob(&hash).await {
            Ok(found) => found
                .into_iter()
                .filter(|a| !self.addrs().contains(a))
                .map(|a| Target {
                    id: None,
                    addrs: vec![a],
                })
                .collect(),
            Err(e) => {
                tracing::debug!(%hash, "Mainline lookup: {e}");
                Vec::new()
            }
        }
    }

    /// Finds the providers of `hash` through the DHT (and the records this
    /// node holds itself).
    pub async fn find_providers(&self, hash: Hash) -> Result<Vec<NodeAddr>, SwarmError> {
        self.inner.dht.find_providers(hash).await
    }

    /// Announces that this node provides `hash`: a lookup of the hash,
    /// then `ADD_PROVIDER` to the k closest nodes. Returns how many stored
    /// the record.
    pub async fn announce(&self, hash: Hash) -> usize {
        self.inner.dht.announce(hash).await
    }

    /// Announces `hash` in the background (a server node that just got a
    /// blob), unless it was announced within [`REPUBLISH`].
    pub fn provide(&self, hash: Hash) {
        self.inner.dht.provide(hash);
    }

    /// Pings `seeds` over the DHT protocol (which adds those that answer to
    /// the routing table), then looks up this node's own id to fill the
    /// table. Returns the table's size.
    pub async fn join(&self, seeds: Vec<Target>) -> usize {
        self.inner.dht.join(seeds).await
    }

    /// What the DHT knows, for `p2pfs status`.
    pub fn dht_status(&self) -> DhtStatus {
        self.inner.dht.status()
    }

    /// Waits (briefly) for the first join to finish.
    pub async fn wait_joined(&self) {
        self.inner.dht.wait_joined().await;
    }
}
