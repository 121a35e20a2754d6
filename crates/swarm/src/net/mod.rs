//! The network seam: `Net` owns the QUIC endpoint (one UDP socket for
//! every peer), the connection table, the limits peers are held to, the
//! bans, and dialing. It knows nothing of the protocols: connections, in
//! either direction, go to the `Router` (`crate::router`), which
//! hands each to its protocol's handler by ALPN.
//!
//! - `endpoint`: binding the socket, QUIC and TLS settings.
//! - `dial`: the connection table (one connection per peer and protocol).
//! - `accept`: the accept loop and its admission limits.
//! - `portmap`: a port mapping on the home router (UPnP IGD, NAT-PMP).
//! - `paths`: relayed paths on the same socket (see [`crate::relay`]).
//! - [`ban`]: peers caught lying. [`link`]: an emulated link delay.

pub(crate) mod accept;
pub mod ban;
pub(crate) mod dial;
pub(crate) mod endpoint;
pub mod link;
pub(crate) mod paths;
pub(crate) mod portmap;
pub(crate) mod reflexive;

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, RwLock},
    time::Instant,
};

use p2pfs_proto::{NodeAddr, NodeId};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use self::dial::{Conn, Pool, Target};
use crate::{
    config::{Limits, NodeConfig},
    error::SwarmError,
    identity::SecretKey,
    router::Router,
    tls,
};

/// How peers outside reach a node (`p2pfs status`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Reach {
    /// Where peers outside see this node's packets come from (behind a
    /// NAT, its router's address), as most of them report it.
    pub reflexive: Option<SocketAddr>,
    /// A port the router maps to this node (UPnP IGD or NAT-PMP).
    pub mapped: Option<SocketAddr>,
    /// Whether a NAT is in the way.
    pub nat: NatKind,
    /// Whether nodes outside can dial this node unasked.
    pub reachable: bool,
    /// What this node relays for others.
    pub relay: crate::relay::RelayMode,
    /// Relayed paths open (circuits this node dialed or took).
    pub relayed_paths: usize,
}

/// Whether a NAT stands between a node and the peers outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NatKind {
    /// A peer outside saw the node at an address it listens on.
    None,
    /// Peers outside see another address (a router's).
    Behind,
    /// No peer outside has said yet.
    Unknown,
}

/// The protocols that reach a peer through a relay when no direct path
/// answers. The DHT does not: its nodes must be reachable to be useful.
const RELAYED: &[&[u8]] = &[p2pfs_proto::blobs::ALPN, p2pfs_proto::room::ALPN];

/// The endpoint, its connections and what peers may do. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Net {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    key: SecretKey,
    id: NodeId,
    endpoint: quinn::Endpoint,
    /// Relayed paths on the endpoint's socket.
    paths: Arc<paths::Paths>,
    pool: Pool,
    limits: Limits,
    bans: ban::Bans,
    /// Live inbound connections per IP address (admission).
    inbound_per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Where peers see this node's packets come from.
    reflexive: Mutex<reflexive::Reflexive>,
    /// The public address the home router maps to this node.
    mapped: Mutex<Option<SocketAddr>>,
    /// The root of the node's cancellation tree: every handler's token is
    /// a child of it.
    cancel: CancellationToken,
    tasks: TaskTracker,
    /// Set once the handlers are registered; taken at shutdown (handlers
    /// hold a `Net`, so this breaks the cycle).
    router: RwLock<Option<Arc<Router>>>,
}

impl Net {
    /// Binds the endpoint for `alpns` with `key`'s identity. Nothing is
    /// accepted until [`Net::start`].
    pub(crate) fn bind(
        key: SecretKey,
        config: &NodeConfig,
        alpns: &[&'static [u8]],
    ) -> Result<Self, SwarmError> {
        let id = key.public();
        let limits = config.limits.clone();
        let server = endpoint::server_config(tls::server_config(&key, alpns)?, &limits)?;
        let mut clients = HashMap::new();
        for alpn in alpns {
            clients.insert(*alpn, tls::client_config(&key, alpn)?);
        }
        let transport = Arc::new(endpoint::transport_config(&limits));
        let socket = endpoint::bind(config.listen, config.default_port)?;
        let (endpoint, paths) =
            endpoint::endpoint(socket, server, key.quic_keys(), config.link_delay)?;
        Ok(Self {
            inner: Arc::new(Inner {
                key,
                id,
                pool: Pool::new(endpoint.clone(), clients, transport, paths.clone()),
                endpoint,
                paths,
                limits,
                bans: ban::Bans::default(),
                inbound_per_ip: Mutex::new(HashMap::new()),
                reflexive: Mutex::default(),
                mapped: Mutex::default(),
                cancel: CancellationToken::new(),
                tasks: TaskTracker::new(),
                router: RwLock::new(None),
            }),
        })
    }

    /// Starts accepting connections, each served by `router`.
    pub(crate) fn start(&self, router: Router) {
        *self.inner.router.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(router));
        self.spawn(accept::accept_loop(self.clone()));
    }

    /// The router, while the node runs.
    fn router(&self) -> Option<Arc<Router>> {
        self.inner
            .router
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Serves `conn` (either direction) with its protocol's handler.
    pub(crate) async fn serve(&self, conn: Conn, alpn: &'static [u8]) {
        let serving = self.router().map(|r| r.serve(conn, alpn));
        if let Some(serving) = serving {
            serving.await;
        }
    }

    /// This node's id.
    pub(crate) fn id(&self) -> NodeId {
        self.inner.id
    }

    /// This node's key.
    pub(crate) fn key(&self) -> &SecretKey {
        &self.inner.key
    }

    /// What peers may do.
    pub(crate) fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The root cancellation token (cancelled when the node stops).
    pub(crate) fn cancel(&self) -> &CancellationToken {
        &self.inner.cancel
    }

    /// Whether the node is stopping.
    pub(crate) fn is_stopping(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// Runs `task` until the node stops (shutdown waits for it).
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.inner.tasks.spawn(task);
    }

    /// The address the endpoint is bound to.
    pub(crate) fn bound_addr(&self) -> SocketAddr {
        self.inner
            .endpoint
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Addresses peers can use to reach this node: those it listens on,
    /// then its reflexive ones (see [`reflexive`]).
    pub(crate) fn addrs(&self) -> Vec<SocketAddr> {
        let mut addrs = endpoint::reachable_addrs(self.bound_addr());
        // A mapped port reaches the node from anywhere: the best candidate.
        if let Some(m) = *crate::lock(&self.inner.mapped) {
            addrs.insert(0, m);
        }
        for a in crate::lock(&self.inner.reflexive).best() {
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
        addrs
    }

    /// Records the port the home router maps to this node.
    pub(crate) fn set_mapped(&self, addr: Option<SocketAddr>) {
        *crate::lock(&self.inner.mapped) = addr;
    }

    /// `peer` saw this node's packets come from `addr`.
    pub(crate) fn observed(&self, peer: NodeId, addr: SocketAddr) {
        if paths::is_path_addr(&addr) {
            return;
        }
        let local = endpoint::reachable_addrs(self.bound_addr());
        crate::lock(&self.inner.reflexive).observed(peer, addr, &local);
    }

    /// How peers outside reach this node.
    pub(crate) fn reach(&self, relay: crate::relay::RelayMode) -> Reach {
        let (reflexive, public) = {
            let r = crate::lock(&self.inner.reflexive);
            (r.best().first().copied(), r.is_public())
        };
        let nat = match (public, reflexive) {
            (true, _) => NatKind::None,
            (false, Some(_)) => NatKind::Behind,
            (false, None) => NatKind::Unknown,
        };
        let mapped = *crate::lock(&self.inner.mapped);
        Reach {
            reflexive,
            mapped,
            reachable: nat == NatKind::None || mapped.is_some(),
            nat,
            relay,
            relayed_paths: self.inner.paths.len(),
        }
    }

    /// This node's id and addresses, as a ticket carries them.
    pub(crate) fn node_addr(&self) -> NodeAddr {
        let mut addrs = self.addrs();
        addrs.truncate(p2pfs_proto::MAX_ADDRS);
        NodeAddr {
            id: self.id(),
            addrs,
        }
    }

    /// Every live connection.
    pub(crate) fn connections(&self) -> Vec<Conn> {
        self.inner.pool.all()
    }

    /// A connection to `target` for `alpn` (reused if one is live). A new
    /// connection is also served: the peer may ask us over it.
    pub(crate) async fn connect(
        &self,
        target: &Target,
        alpn: &'static [u8],
    ) -> Result<Conn, SwarmError> {
        Ok(self.connect_new(target, alpn).await?.0)
    }

    /// [`Net::connect`], and whether the connection was dialed now. The
    /// room and blob protocols reach a known node through a relay when its
    /// addresses do not answer within [`crate::relay::RELAY_AFTER`].
    async fn connect_new(
        &self,
        target: &Target,
        alpn: &'static [u8],
    ) -> Result<(Conn, bool), SwarmError> {
        if self.is_stopping() {
            return Err(SwarmError::Shutdown);
        }
        let (conn, new) = match target.id {
            Some(id) if RELAYED.contains(&alpn) && id != self.id() => {
                self.connect_or_relay(target, id, alpn).await?
            }
            _ => self.inner.pool.connect(target, alpn).await?,
        };
        if new {
            tracing::debug!(peer = %conn.peer, addr = %conn.addr, via = ?conn.via, "connected");
            let (net, c) = (self.clone(), conn.clone());
            self.spawn(async move { net.serve(c, alpn).await });
            if let Some(relay) = conn.via
                && conn.outbound
            {
                let net = self.clone();
                self.spawn(crate::relay::punch::upgrade(net, conn.peer, relay));
            }
        }
        Ok((conn, new))
    }

    /// Dials `target`'s addresses; if none has answered within
    /// [`crate::relay::RELAY_AFTER`], asks relays too, and keeps the first
    /// connection made.
    async fn connect_or_relay(
        &self,
        target: &Target,
        id: NodeId,
        alpn: &'static [u8],
    ) -> Result<(Conn, bool), SwarmError> {
        let pool = &self.inner.pool;
        let direct = pool.connect(target, alpn);
        // A peer reached through a relay already is tried there at once.
        let head_start = if self.paths().to(&id).is_some() {
            std::time::Duration::ZERO
        } else {
            crate::relay::RELAY_AFTER
        };
        let relayed = async {
            tokio::time::sleep(head_start).await;
            let path = crate::relay::circuit::path_to(self, id).await?;
            pool.connect(&path, alpn).await
        };
        tokio::pin!(direct, relayed);
        tokio::select! {
            r = &mut direct => match r {
                Ok(c) => Ok(c),
                // With no address to try, why no relay helped is the news.
                Err(_) if target.addrs.is_empty() => relayed.await,
                Err(e) => relayed.await.map_err(|r| {
                    tracing::debug!(peer = %id, "no relay either: {r}");
                    e
                }),
            },
            r = &mut relayed => match r {
                Ok(c) => Ok(c),
                Err(r) => {
                    tracing::debug!(peer = %id, "no relay: {r}");
                    direct.await
                }
            },
        }
    }

    /// Dials `target` for `alpn` anew, directly, even if a connection is
    /// pooled (it replaces a relayed one).
    pub(crate) async fn dial_direct(
        &self,
        target: &Target,
        alpn: &'static [u8],
    ) -> Result<Conn, SwarmError> {
        let conn = self.inner.pool.dial_insert(target, alpn).await?;
        let (net, c) = (self.clone(), conn.clone());
        self.spawn(async move { net.serve(c, alpn).await });
        Ok(conn)
    }

    /// The relayed paths of the endpoint.
    pub(crate) fn paths(&self) -> &Arc<paths::Paths> {
        &self.inner.paths
    }

    /// The protocols of the live relayed connections with `peer`.
    pub(crate) fn relayed(&self, peer: &NodeId) -> Vec<&'static [u8]> {
        self.inner.pool.relayed(peer)
    }

    /// A live direct connection with `peer`, if any.
    pub(crate) fn direct(&self, peer: &NodeId) -> Option<Conn> {
        self.connections()
            .into_iter()
            .find(|c| c.peer == *peer && c.via.is_none())
    }

    /// Runs `op` over a connection to `target` for `alpn`. A pooled
    /// connection can be dead before anyone knows it: the peer crashed and
    /// restarted, and its new run resets the connection at the first packet
    /// (see [`crate::identity::SecretKey::quic_keys`]). When `op` fails on a
    /// reused connection that has closed meanwhile, a new connection is
    /// dialed and `op` runs once more, on it.
    pub(crate) async fn with_conn<T, F, Fut>(
        &self,
        target: &Target,
        alpn: &'static [u8],
        mut op: F,
    ) -> Result<T, SwarmError>
    where
        F: FnMut(Conn) -> Fut,
        Fut: std::future::Future<Output = Result<T, SwarmError>>,
    {
        let (conn, new) = self.connect_new(target, alpn).await?;
        match op(conn.clone()).await {
            Err(e) if !new && conn.conn.close_reason().is_some() && !self.is_stopping() => {
                tracing::debug!(peer = %conn.peer, "a pooled connection had closed ({e}); dialing again");
                let (conn, _) = self.connect_new(target, alpn).await?;
                op(conn).await
            }
            r => r,
        }
    }

    /// The next stream the peer opens on `conn`; `None` once the connection
    /// closes or the node stops.
    pub(crate) async fn next_stream(
        &self,
        conn: &Conn,
    ) -> Option<(quinn::SendStream, quinn::RecvStream)> {
        tokio::select! {
            _ = self.inner.cancel.cancelled() => None,
            s = conn.conn.accept_bi() => s.ok(),
        }
    }

    /// Peers banned for sending data that does not verify.
    pub(crate) fn banned(&self) -> Vec<ban::BannedPeer> {
        self.inner.bans.list(Instant::now())
    }

    /// Bans `peer` from this node's downloads (see [`ban`]).
    pub(crate) fn ban(&self, peer: NodeId, reason: String) {
        tracing::warn!(%peer, "banned for {} s: {reason}", ban::BAN_FOR.as_secs());
        self.inner.bans.ban(peer, reason, Instant::now());
    }

    /// Whether `peer` is banned now.
    pub(crate) fn is_banned(&self, peer: &NodeId) -> bool {
        self.inner.bans.is_banned(peer, Instant::now())
    }

    /// The first half of the ordered shutdown: cancel every handler's
    /// token, close every connection (peers learn why), drop the router.
    pub(crate) fn close(&self) {
        let inner = &self.inner;
        inner.cancel.cancel();
        let code = p2pfs_proto::close::Code::Shutdown;
        inner
            .endpoint
            .close(code.value().into(), code.reason().as_bytes());
        inner.tasks.close();
        inner
            .router
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }

    /// The second half: wait (bounded) for every task, then for the peers
    /// to acknowledge the close.
    pub(crate) async fn wait_closed(&self) {
        let inner = &self.inner;
        if tokio::time::timeout(std::time::Duration::from_secs(5), inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some node tasks did not stop within 5 s");
        }
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            inner.endpoint.wait_idle(),
        )
        .await;
    }
}
