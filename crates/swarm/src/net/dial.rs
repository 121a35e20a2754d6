//! Connections: one per peer and protocol, dialed once and reused for many
//! streams; inbound connections join the same table, so a peer that dialed
//! us is asked over the connection it opened.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use p2pfs_proto::NodeId;
use tokio::task::JoinSet;

use crate::{
    error::{SetupError, SwarmError},
    tls::{node_id_of, server_name, with_witness},
};

/// Whom to dial: a node (if its id is known) at some addresses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The node expected to answer, checked in the handshake.
    pub id: Option<NodeId>,
    /// Addresses to try, in order of preference.
    pub addrs: Vec<SocketAddr>,
}

impl From<p2pfs_proto::PeerAddr> for Target {
    fn from(p: p2pfs_proto::PeerAddr) -> Self {
        Self {
            id: p.id,
            addrs: vec![p.addr],
        }
    }
}

impl From<p2pfs_proto::NodeAddr> for Target {
    fn from(p: p2pfs_proto::NodeAddr) -> Self {
        Self {
            id: Some(p.id),
            addrs: p.addrs,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.id, self.addrs.first()) {
            (Some(id), Some(a)) => write!(f, "{}@{a}", id.fmt_short()),
            (Some(id), None) => write!(f, "{}", id.fmt_short()),
            (None, Some(a)) => write!(f, "{a}"),
            (None, None) => f.write_str("(nowhere)"),
        }
    }
}

/// A live connection and what we know of it.
#[derive(Debug, Clone)]
pub(crate) struct Conn {
    pub(crate) conn: quinn::Connection,
    pub(crate) peer: NodeId,
    pub(crate) addr: SocketAddr,
    pub(crate) outbound: bool,
    pub(crate) since: Instant,
    /// The relay the connection goes through (`None`: direct).
    pub(crate) via: Option<NodeId>,
}

impl Conn {
    /// Closes the connection with `code` (and its reason).
    pub(crate) fn close_with(&self, code: p2pfs_proto::close::Code) {
        self.conn
            .close(code.value().into(), code.reason().as_bytes());
    }
}

type Key = (NodeId, &'static [u8]);

/// Two connections between the same nodes made within this time of each
/// other are a simultaneous dial; an older one is stale (the peer
/// restarted, or lost it).
pub(crate) const SIMULTANEOUS: Duration = Duration::from_secs(5);

/// How long a relayed connection replaced by a direct one stays open.
const UPGRADE_GRACE: Duration = Duration::from_secs(2);

/// The connection table.
#[derive(Debug)]
pub(crate) struct Pool {
    endpoint: quinn::Endpoint,
    clients: HashMap<&'static [u8], rustls::ClientConfig>,
    transport: Arc<quinn::TransportConfig>,
    paths: Arc<super::paths::Paths>,
    conns: Arc<Mutex<HashMap<Key, Conn>>>,
    /// One dial at a time per destination.
    dialing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The node id of a connection's peer, from its certificate.
pub(crate) fn peer_id(conn: &quinn::Connection) -> Option<NodeId> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    node_id_of(certs.first()?).ok()
}

impl Pool {
    pub(crate) fn new(
        endpoint: quinn::Endpoint,
        clients: HashMap<&'static [u8], rustls::ClientConfig>,
        transport: Arc<quinn::TransportConfig>,
        paths: Arc<super::paths::Paths>,
    ) -> Self {
        Self {
            endpoint,
            clients,
            transport,
            paths,
            conns: Arc::new(Mutex::new(HashMap::new())),
            dialing: Mutex::new(HashMap::new()),
        }
    }

    /// A live connection to `target` for `alpn`, and whether it is new
    /// (dialed now). Dials the target's addresses in parallel, a quarter
    /// second apart, and keeps the first that completes.
    pub(crate) async fn connect(
        &self,
        target: &Target,
        alpn: &'static [u8],
    ) -> Result<(Conn, bool), SwarmError> {
        if let Some(c) = self.find(target, alpn) {
            return Ok((c, false));
        }
        let lock = {
            let key = format!("{target}/{}", String::from_utf8_lossy(alpn));
            let mut d = crate::lock(&self.dialing);
            d.entry(key).or_default().clone()
        };
        let _one_dial = lock.lock().await;
        if let Some(c) = self.find(target, alpn) {
            return Ok((c, false));
        }
        let c = self.dial(target, alpn).await?;
        self.insert(alpn, c.clone());
        Ok((c, true))
    }

    /// Dials `target` anew and records the connection (replacing a pooled
    /// one).
    pub(crate) async fn dial_insert(
        &self,
        target: &Target,
        alpn: &'static [u8],
    ) -> Result<Conn, SwarmError> {
        let c = self.dial(target, alpn).await?;
        self.insert(alpn, c.clone());
        Ok(c)
    }

    /// The protocols of the live relayed connections with `peer`.
    pub(crate) fn relayed(&self, peer: &NodeId) -> Vec<&'static [u8]> {
        crate::lock(&self.conns)
            .iter()
            .filter(|((p, _), c)| p == peer && c.via.is_some() && c.conn.close_reason().is_none())
            .map(|((_, a), _)| *a)
            .collect()
    }

    fn find(&self, target: &Target, alpn: &'static [u8]) -> Option<Conn> {
        let conns = crate::lock(&self.conns);
        let live = |c: &&Conn| c.conn.close_reason().is_none();
        match target.id {
            Some(id) => conns.get(&(id, alpn)).filter(live).cloned(),
            None => conns
                .iter()
                .filter(|((_, a), c)| *a == alpn && target.addrs.contains(&c.addr))
                .map(|(_, c)| c)
                .find(live)
                .cloned(),
        }
    }

    async fn dial(&self, target: &Target, alpn: &'static [u8]) -> Result<Conn, SwarmError> {
        let Some(first) = target.addrs.first().copied() else {
            return Err(SetupError::NoAddress(target.to_string()).into());
        };
        let tls = self.clients.get(alpn).ok_or(SetupError::UnknownProtocol)?;
        let (tls, impostor) = with_witness(tls);
        let cfg = super::endpoint::client_config(tls, self.transport.clone())?;
        let name = server_name(target.id);
        let mut attempts = JoinSet::new();
        for (i, addr) in target.addrs.iter().copied().enumerate() {
            let connecting = self.endpoint.connect_with(cfg.clone(), addr, &name);
            attempts.spawn(async move {
                tokio::time::sleep(Duration::from_millis(250) * i as u32).await;
                let connecting = connecting.map_err(|e| (addr, e.to_string()))?;
                match tokio::time::timeout(super::endpoint::DIAL_TIMEOUT, connecting).await {
                    Ok(Ok(conn)) => Ok((addr, conn)),
                    Ok(Err(e)) => Err((addr, e.to_string())),
                    Err(_) => Err((addr, "timed out".to_string())),
                }
            });
        }
        let mut last = (first, "no answer".to_string());
        while let Some(res) = attempts.join_next().await {
            match res {
                Ok(Ok((addr, conn))) => {
                    let Some(peer) = peer_id(&conn) else {
                        conn.close(
                            p2pfs_proto::close::Code::Protocol.value().into(),
                            b"no identity",
                        );
                        last = (addr, "the peer presented no usable identity".into());
                        continue;
                    };
                    attempts.abort_all();
                    return Ok(Conn {
                        conn,
                        peer,
                        addr,
                        outbound: true,
                        since: Instant::now(),
                        via: self.paths.via(&addr).map(|(relay, _)| relay),
                    });
                }
                Ok(Err(e)) => last = e,
                Err(_) => {}
            }
        }
        if let (Some(expected), Some(actual)) = (target.id, impostor.get()) {
            return Err(SwarmError::WrongNode {
                addr: last.0,
                expected,
                actual: *actual,
            });
        }
        Err(SwarmError::Connect {
            addr: last.0,
            reason: last.1,
        })
    }

    /// Records a connection (dialed or accepted) and forgets it when it
    /// closes.
    /// Remembers connection `c` for `alpn`. A peer that opens a new
    /// connection for a protocol while we still hold a live one with it,
    /// made well before (not a simultaneous dial, see [`SIMULTANEOUS`]),
    /// has lost that one: it restarted, most likely, and our connections
    /// with it for other protocols, made before, are dead too (on loopback
    /// or a LAN, a restarted peer at the same address does not even reset
    /// them): they are closed, so the next request dials anew instead of
    /// waiting for their idle timeout.
    pub(crate) fn insert(&self, alpn: &'static [u8], c: Conn) {
        let key = (c.peer, alpn);
        let id = c.conn.stable_id();
        let conn = c.conn.clone();
        let (peer, since) = (c.peer, c.since);
        let direct = c.via.is_none();
        let mut conns = crate::lock(&self.conns);
        let old = conns.insert(key, c);
        let old = old.filter(|o| o.conn.stable_id() != id && o.conn.close_reason().is_none());
        let upgraded = old.as_ref().is_some_and(|o| o.via.is_some() && direct);
        let replaced = !upgraded
            && old
                .as_ref()
                .is_some_and(|o| since.saturating_duration_since(o.since) > SIMULTANEOUS);
        if let Some(old) = old.filter(|_| upgraded) {
            // A direct path replaces a relayed one: the relayed connection
            // is closed once what runs on it has had a moment to finish
            // (its users dial again, and get the direct one).
            tokio::spawn(async move {
                tokio::time::sleep(UPGRADE_GRACE).await;
                old.close_with(p2pfs_proto::close::Code::Ok);
            });
        }
        if replaced {
            for ((p, a), other) in conns.iter() {
                if *p == peer && *a != alpn && other.since < since {
                    other.close_with(p2pfs_proto::close::Code::Ok);
                }
            }
        }
        drop(conns);
        let conns = Arc::downgrade(&self.conns);
        tokio::spawn(async move {
            conn.closed().await;
            if let Some(conns) = conns.upgrade() {
                let mut conns = crate::lock(&conns);
                if conns.get(&key).is_some_and(|c| c.conn.stable_id() == id) {
                    conns.remove(&key);
                }
            }
        });
    }

    /// Every live connection.
    pub(crate) fn all(&self) -> Vec<Conn> {
        crate::lock(&self.conns)
            .values()
            .filter(|c| c.conn.close_reason().is_none())
            .cloned()
            .collect()
    }
}
