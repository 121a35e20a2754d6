//! [`Node`]: the endpoint, the connection table, the store, and the tasks
//! serving peers, with an ordered shutdown.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use p2pfs_proto::{Hash, NodeAddr, NodeId, blobs, close::Code};
use p2pfs_store::Store;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, watch};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    dht::{
        DhtConfig,
        runtime::{self, Dht},
    },
    dial::{Conn, Pool, Target},
    endpoint,
    error::SwarmError,
    identity::SecretKey,
    router, tls,
    transfer::{
        download::{self, FetchProgress, FetchStats},
        rate::RateLimit,
    },
};

/// Every ALPN the node speaks.
pub(crate) const ALPNS: &[&[u8]] = &[blobs::ALPN, p2pfs_proto::dht::ALPN, p2pfs_proto::room::ALPN];

/// What a node allows its peers, so that none can cost it unbounded memory
/// or starve the others.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Inbound connections in all.
    pub max_connections: usize,
    /// Inbound connections from one IP address.
    pub max_connections_per_ip: usize,
    /// Concurrent streams (requests) a peer may open on a connection.
    pub max_streams_per_connection: u32,
    /// Time a peer has to send its request after opening a stream.
    pub request_timeout: Duration,
    /// Time a transfer may make no progress before it is abandoned.
    pub stall_timeout: Duration,
    /// A connection with no traffic at all is closed after this.
    pub idle_timeout: Duration,
    /// Uploads (encoding and sending ranges) running at once, in all.
    pub max_uploads: usize,
    /// Uploads running at once for one peer.
    pub max_uploads_per_peer: usize,
    /// Bytes per second sent to all peers together (`None`: no limit).
    pub max_upload_rate: Option<u64>,
    /// The congestion controller of every connection.
    pub congestion: Congestion,
}

/// A QUIC congestion controller.
///
/// BBR is the default: on a path with 50 ms round trips and 1 % random
/// loss (`bench/net.sh`) CUBIC, which reads every loss as congestion,
/// fetched at 0.02× a 100 Mbit/s link and BBR at 0.71–0.85×. On loopback
/// BBR costs a little: `bench/transfer.sh 3` measured 0.81× a bare quinn
/// transfer and 1.43× libtorrent with BBR, 0.89× and 1.48× with CUBIC
/// (two runs minutes apart). `P2PFS_CONGESTION=cubic` goes
/// back to quinn's default (BBR does not yield to other traffic the way
/// a loss-based controller does; `--max-upload-rate` caps it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Congestion {
    /// CUBIC (RFC 9438), loss-based: quinn's default.
    Cubic,
    /// BBR (v1, quinn's port of quiche's, marked experimental there),
    /// model-based: keeps a lossy path full.
    #[default]
    Bbr,
}

impl std::str::FromStr for Congestion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "cubic" => Ok(Self::Cubic),
            "bbr" => Ok(Self::Bbr),
            _ => Err(format!("{s:?}: expected cubic or bbr")),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            max_connections_per_ip: 32,
            max_streams_per_connection: 64,
            request_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(30),
            max_uploads: 32,
            max_uploads_per_peer: 8,
            max_upload_rate: None,
            congestion: Congestion::default(),
        }
    }
}

/// How to start a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The identity key file (created if missing).
    pub key_path: PathBuf,
    /// Where to listen; `None` for the IPv6+IPv4 wildcard on `default_port`.
    pub listen: Option<SocketAddr>,
    /// The port to try first when `listen` is `None` (0: any).
    pub default_port: u16,
    /// Limits on what peers may do.
    pub limits: Limits,
    /// How the node takes part in the DHT.
    pub dht: DhtConfig,
    /// The name shown for this node in rooms (`None`: the host name).
    pub display_name: Option<String>,
    /// Take part in keeping rooms' files (a daemon or a mount); `None` for
    /// a node started for one command.
    pub replica: Option<crate::replica::ReplicaConfig>,
    /// Delay every datagram sent (an emulated link, for tests on one
    /// machine; see [`crate::link`]).
    pub link_delay: Option<crate::link::LinkDelay>,
}

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
}

/// A running p2pfs node. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) key: SecretKey,
    pub(crate) id: NodeId,
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) store: Store,
    pub(crate) pool: Pool,
    pub(crate) limits: Limits,
    pub(crate) cancel: CancellationToken,
    pub(crate) tasks: TaskTracker,
    pub(crate) uploads: Arc<Semaphore>,
    pub(crate) upload_rate: Option<RateLimit>,
    pub(crate) inbound_per_ip: Mutex<HashMap<IpAddr, usize>>,
    pub(crate) bans: crate::ban::Bans,
    pub(crate) dht: Dht,
    pub(crate) rooms: crate::room::Rooms,
    pub(crate) replica: Option<crate::replica::NodeReplica>,
}

impl Node {
    /// Starts a node: loads or creates its key, binds its endpoint and
    /// starts serving peers. Must run inside a tokio runtime.
    pub async fn spawn(config: NodeConfig, store: Store) -> Result<Self, SwarmError> {
        let key = SecretKey::load_or_create(&config.key_path)?;
        let id = key.public();
        let limits = config.limits.clone();
        let server = endpoint::server_config(tls::server_config(&key, ALPNS)?, &limits)?;
        let mut clients = HashMap::new();
        for alpn in ALPNS {
            clients.insert(*alpn, tls::client_config(&key, alpn)?);
        }
        let transport = Arc::new(endpoint::transport_config(&limits));
        let socket = endpoint::bind(config.listen, config.default_port)?;
        let endpoint = endpoint::endpoint(socket, server, config.link_delay)?;
        let lan = config.dht.lan;
        let dht = Dht::new(id, &store, config.dht)?;
        let node = Self {
            inner: Arc::new(Inner {
                key,
                id,
                pool: Pool::new(endpoint.clone(), clients, transport),
                endpoint,
                store,
                uploads: Arc::new(Semaphore::new(limits.max_uploads)),
                upload_rate: limits.max_upload_rate.map(RateLimit::new),
                limits,
                cancel: CancellationToken::new(),
                tasks: TaskTracker::new(),
                inbound_per_ip: Mutex::new(HashMap::new()),
                bans: crate::ban::Bans::default(),
                dht,
                rooms: crate::room::Rooms::new(
                    config.display_name.unwrap_or_else(crate::room::host_name),
                ),
                replica: config.replica.map(crate::replica::NodeReplica::new),
            }),
        };
        node.inner.tasks.spawn(router::accept_loop(node.clone()));
        node.inner.tasks.spawn(runtime::run(node.clone()));
        if lan {
            node.inner.tasks.spawn(crate::dht::lan::run(node.clone()));
        }
        if let Err(e) = node.start_rooms().await {
            node.shutdown().await;
            return Err(e);
        }
        tracing::info!(node = %id, addr = ?node.bound_addr(), "node started");
        Ok(node)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// This node's key.
    pub fn secret_key(&self) -> &SecretKey {
        &self.inner.key
    }

    /// The content store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The address the endpoint is bound to.
    pub fn bound_addr(&self) -> SocketAddr {
        self.inner
            .endpoint
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Addresses peers can use to reach this node.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        endpoint::reachable_addrs(self.bound_addr())
    }

    /// This node's id and addresses, as a ticket carries them.
    pub fn node_addr(&self) -> NodeAddr {
        let mut addrs = self.addrs();
        addrs.truncate(p2pfs_proto::MAX_ADDRS);
        NodeAddr {
            id: self.id(),
            addrs,
        }
    }

    /// Peers with a live connection.
    pub fn peers(&self) -> Vec<PeerInfo> {
        let mut seen = HashMap::new();
        for c in self.inner.pool.all() {
            seen.entry(c.peer).or_insert(PeerInfo {
                id: c.peer,
                addr: c.addr,
                outbound: c.outbound,
                connected_secs: c.since.elapsed().as_secs(),
            });
        }
        let mut peers: Vec<PeerInfo> = seen.into_values().collect();
        peers.sort_by_key(|p| p.id);
        peers
    }

    /// Peers banned for sending data that does not verify.
    pub fn banned(&self) -> Vec<crate::ban::BannedPeer> {
        self.inner.bans.list(std::time::Instant::now())
    }

    /// Bans `peer` from this node's downloads (see [`crate::ban`]).
    pub(crate) fn ban(&self, peer: NodeId, reason: String) {
        tracing::warn!(%peer, "banned for {} s: {reason}", crate::ban::BAN_FOR.as_secs());
        self.inner.bans.ban(peer, reason, std::time::Instant::now());
    }

    pub(crate) fn is_banned(&self, peer: &NodeId) -> bool {
        self.inner.bans.is_banned(peer, std::time::Instant::now())
    }

    /// A connection to `target` for `alpn` (reused if one is live). A new
    /// connection is also served: the peer may ask us over it.
    pub(crate) async fn connect(
        &self,
        target: &Target,
        alpn: &'static [u8],
    ) -> Result<Conn, SwarmError> {
        if self.inner.cancel.is_cancelled() {
            return Err(SwarmError::Shutdown);
        }
        let (conn, new) = self.inner.pool.connect(target, alpn).await?;
        if new {
            tracing::debug!(peer = %conn.peer, addr = %conn.addr, "connected");
            let node = self.clone();
            let c = conn.clone();
            self.inner
                .tasks
                .spawn(async move { router::serve(node, c, alpn).await });
        }
        Ok(conn)
    }

    /// Connects to `target` (reusing a live connection) and returns the
    /// id of the node that answered.
    pub async fn dial(&self, target: &Target, alpn: &'static [u8]) -> Result<NodeId, SwarmError> {
        Ok(self.connect(target, alpn).await?.peer)
    }

    /// Downloads `hash` from `providers` into the store (resuming what is
    /// there), reporting progress on `progress`.
    pub async fn fetch(
        &self,
        hash: Hash,
        providers: Vec<Target>,
        progress: Option<watch::Sender<FetchProgress>>,
    ) -> Result<FetchStats, SwarmError> {
        let stats = download::run(self, hash, providers, None, progress).await?;
        self.provide(hash);
        Ok(stats)
    }

    /// Stops serving and closes every connection, then waits (briefly) for
    /// tasks to finish and peers to learn of the close.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        if inner.replica.is_some() && !inner.cancel.is_cancelled() {
            // The rooms' members count this replica offline at once.
            self.goodbye().await;
        }
        inner.cancel.cancel();
        inner.endpoint.close(
            Code::Shutdown.value().into(),
            Code::Shutdown.reason().as_bytes(),
        );
        inner.tasks.close();
        if tokio::time::timeout(Duration::from_secs(5), inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some node tasks did not stop within 5 s");
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), inner.endpoint.wait_idle()).await;
        tracing::info!(node = %inner.id, "node stopped");
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }
}
