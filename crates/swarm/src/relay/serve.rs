//! The relay protocol's handler: relaying circuits and punches between
//! others, and taking the circuits and punches a relay brings.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use p2pfs_proto::{
    NodeId,
    close::Code,
    relay::{MAX_PUNCH_ADDRS, MAX_RELAY_MESSAGE, RelayAnswer, RelayRefusal, RelayRequest},
};

use super::{
    EXCHANGE_TIMEOUT, MAX_CIRCUITS, MAX_PATHS, MAX_STRANGER_CIRCUITS, RelayMode, STRANGER_BYTES,
    STRANGER_SECS, circuit::pump, punch,
};
use crate::{
    frame,
    net::{
        Net,
        dial::{Conn, Target},
        paths::is_path_addr,
    },
    room::registry::Rooms,
    router::{ProtocolHandler, Serving},
};

/// Serves the relay protocol.
#[derive(Debug, Clone)]
pub(crate) struct RelayHandler {
    net: Net,
    rooms: Arc<Rooms>,
    mode: RelayMode,
    circuits: Arc<AtomicUsize>,
    strangers: Arc<AtomicUsize>,
}

/// How often a circuit relayed for members checks they still are, besides
/// when a room's moderation changes.
const MEMBERSHIP_CHECK: Duration = Duration::from_secs(5);

impl RelayHandler {
    pub(crate) fn new(net: Net, rooms: Arc<Rooms>, mode: RelayMode) -> Self {
        Self {
            net,
            rooms,
            mode,
            circuits: Arc::default(),
            strangers: Arc::default(),
        }
    }

    /// Whether `a` and `b` are both members of a room of this node.
    fn share_room(&self, a: &NodeId, b: &NodeId) -> bool {
        self.rooms
            .all()
            .iter()
            .any(|r| r.is_member(a) && r.is_member(b))
    }

    async fn handle(self, conn: Conn, mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
        let read = frame::read_request::<RelayRequest>(
            &mut send,
            &mut recv,
            MAX_RELAY_MESSAGE,
            EXCHANGE_TIMEOUT,
        )
        .await;
        let request = match read {
            Ok(r) if r.check().is_ok() => r,
            Ok(_) => {
                tracing::debug!(peer = %conn.peer, "relay request out of bounds");
                let _ = recv.stop(Code::Protocol.value().into());
                let _ = send.reset(Code::Protocol.value().into());
                return;
            }
            Err(e) => {
                tracing::debug!(peer = %conn.peer, "bad relay request: {e}");
                return;
            }
        };
        match request {
            RelayRequest::Circuit { to } => self.relay_circuit(conn, to, send, recv).await,
            RelayRequest::Incoming { from, .. } => self.take_circuit(conn, from, send, recv).await,
            RelayRequest::Punch { to, addrs } => self.relay_punch(conn, to, addrs, send).await,
            RelayRequest::PunchFrom { from, addrs } => self.take_punch(from, addrs, send).await,
        }
    }

    /// Whether this node relays between `from` and `to`, and within which
    /// limits (`Ok(None)`: none).
    fn admit(&self, from: &NodeId, to: &NodeId) -> Result<Option<(u64, u32)>, RelayRefusal> {
        if *from == *to || *to == self.net.id() {
            return Err(RelayRefusal::Invalid);
        }
        let members = self.share_room(from, to);
        match self.mode {
            RelayMode::Off => Err(RelayRefusal::NotOffered),
            RelayMode::Members if !members => Err(RelayRefusal::NotOffered),
            _ if members => Ok(None),
            _ => Ok(Some((STRANGER_BYTES, STRANGER_SECS))),
        }
    }

    /// The connection to `to` for the relay protocol, dialed at the
    /// address of a live direct connection with it (its NAT lets that
    /// address in).
    async fn reach(&self, to: NodeId) -> Result<Conn, RelayRefusal> {
        let Some(direct) = self
            .net
            .connections()
            .into_iter()
            .find(|c| c.peer == to && c.via.is_none())
        else {
            return Err(RelayRefusal::NotConnected);
        };
        let target = Target {
            id: Some(to),
            addrs: vec![direct.addr],
        };
        self.net
            .connect(&target, p2pfs_proto::relay::ALPN)
            .await
            .map_err(|_| RelayRefusal::NotConnected)
    }

    async fn relay_circuit(
        self,
        conn: Conn,
        to: NodeId,
        mut send: quinn::SendStream,
        recv: quinn::RecvStream,
    ) {
        let refuse = |reason| RelayAnswer::Refused { reason };
        let limits = match self.admit(&conn.peer, &to) {
            Ok(l) => l,
            Err(reason) => return answer(&mut send, &refuse(reason)).await,
        };
        let _slot = match Slot::take(&self.circuits, MAX_CIRCUITS) {
            Some(s) => s,
            None => return answer(&mut send, &refuse(RelayRefusal::Busy)).await,
        };
        let _stranger = match limits {
            Some(_) => match Slot::take(&self.strangers, MAX_STRANGER_CIRCUITS) {
                Some(s) => Some(s),
                None => return answer(&mut send, &refuse(RelayRefusal::Busy)).await,
            },
            None => None,
        };
        let target = match self.reach(to).await {
            Ok(c) => c,
            Err(reason) => return answer(&mut send, &refuse(reason)).await,
        };
        let (limit_bytes, limit_secs) = (limits.map(|l| l.0), limits.map(|l| l.1));
        let incoming = RelayRequest::Incoming {
            from: conn.peer,
            limit_bytes,
            limit_secs,
        };
        let Some((t_send, t_recv, RelayAnswer::Opened { .. })) =
            super::exchange(&target, &incoming).await.ok()
        else {
            return answer(&mut send, &refuse(RelayRefusal::TargetRefused)).await;
        };
        let opened = RelayAnswer::Opened {
            limit_bytes,
            limit_secs,
        };
        if frame::write(&mut send, &opened).await.is_err() {
            return;
        }
        tracing::debug!(from = %conn.peer, %to, ?limits, "relaying a circuit");
        let bridge = async {
            tokio::join!(
                copy(recv, t_send, limit_bytes),
                copy(t_recv, send, limit_bytes)
            )
        };
        let deadline = limit_secs.map_or(Duration::MAX, |s| Duration::from_secs(s.into()));
        let from = conn.peer;
        tokio::select! {
            _ = bridge => {},
            _ = tokio::time::sleep(deadline) => {},
            _ = self.net.cancel().cancelled() => {},
            // A circuit relayed for members ends when they no longer share
            // a room (one was removed): it would carry the room for a node
            // the room refuses. (As strangers they may ask again, within
            // the strangers' limits where this node offers them.)
            _ = self.until_strangers(from, to), if limits.is_none() => {
                tracing::info!(%from, %to, "ending a circuit: its ends no longer share a room");
            },
        }
    }

    /// Resolves once `a` and `b` no longer share a room of this node:
    /// looked at whenever a room's moderation changes (and, for rooms
    /// left, every [`MEMBERSHIP_CHECK`]).
    async fn until_strangers(&self, a: NodeId, b: NodeId) {
        let changed = self.rooms.membership();
        loop {
            let woken = changed.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if !self.share_room(&a, &b) {
                return;
            }
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep(MEMBERSHIP_CHECK) => {}
            }
        }
    }

    async fn take_circuit(
        self,
        relay: Conn,
        from: NodeId,
        mut send: quinn::SendStream,
        recv: quinn::RecvStream,
    ) {
        let paths = self.net.paths();
        if from == self.net.id() || from == relay.peer {
            return answer(
                &mut send,
                &RelayAnswer::Refused {
                    reason: RelayRefusal::Invalid,
                },
            )
            .await;
        }
        if paths.len() >= MAX_PATHS {
            return answer(
                &mut send,
                &RelayAnswer::Refused {
                    reason: RelayRefusal::Busy,
                },
            )
            .await;
        }
        let opened = RelayAnswer::Opened {
            limit_bytes: None,
            limit_secs: None,
        };
        if frame::write(&mut send, &opened).await.is_err() {
            return;
        }
        let path = paths.open(relay.peer, from);
        tracing::debug!(%from, relay = %relay.peer.fmt_short(), addr = %path.addr, "took a circuit");
        pump(self.net.clone(), path, send, recv).await;
    }

    async fn relay_punch(
        self,
        conn: Conn,
        to: NodeId,
        addrs: Vec<SocketAddr>,
        mut send: quinn::SendStream,
    ) {
        if let Err(reason) = self.admit(&conn.peer, &to) {
            return answer(&mut send, &RelayAnswer::Refused { reason }).await;
        }
        let target = match self.reach(to).await {
            Ok(c) => c,
            Err(reason) => return answer(&mut send, &RelayAnswer::Refused { reason }).await,
        };
        let from = RelayRequest::PunchFrom {
            from: conn.peer,
            addrs: candidates(conn.addr, addrs),
        };
        let reply = match super::exchange(&target, &from).await.ok() {
            Some((_, _, RelayAnswer::Punch { addrs })) => RelayAnswer::Punch {
                addrs: candidates(target.addr, addrs),
            },
            _ => RelayAnswer::Refused {
                reason: RelayRefusal::TargetRefused,
            },
        };
        answer(&mut send, &reply).await;
    }

    async fn take_punch(self, from: NodeId, addrs: Vec<SocketAddr>, mut send: quinn::SendStream) {
        if from == self.net.id() {
            return answer(
                &mut send,
                &RelayAnswer::Refused {
                    reason: RelayRefusal::Invalid,
                },
            )
            .await;
        }
        let mut mine = self.net.addrs();
        mine.truncate(MAX_PUNCH_ADDRS);
        answer(&mut send, &RelayAnswer::Punch { addrs: mine }).await;
        tracing::debug!(%from, ?addrs, "punching through to a peer");
        punch::dial_direct(&self.net, from, addrs).await;
    }
}

/// The addresses to punch at: where the relay sees the node's packets
/// come from, then those it gave, without relayed paths' addresses.
pub(crate) fn candidates(observed: SocketAddr, given: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for a in std::iter::once(observed).chain(given) {
        let a = crate::dht::service::canonical(a);
        if !is_path_addr(&a) && !a.ip().is_unspecified() && !out.contains(&a) {
            out.push(a);
        }
    }
    out.truncate(MAX_PUNCH_ADDRS);
    out
}

async fn answer(send: &mut quinn::SendStream, a: &RelayAnswer) {
    if frame::write(send, a).await.is_ok() {
        let _ = send.finish();
    }
}

/// Copies bytes from `from` to `to` (at most `limit`), then finishes `to`.
async fn copy(mut from: quinn::RecvStream, mut to: quinn::SendStream, limit: Option<u64>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    while let Ok(Some(n)) = from.read(&mut buf).await {
        total += n as u64;
        if limit.is_some_and(|l| total > l) {
            let _ = to.reset(Code::Limit.value().into());
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
    let _ = to.finish();
}

/// One of a bounded number of places, given back when dropped.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(count.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ProtocolHandler for RelayHandler {
    fn serve(&self, conn: Conn) -> Serving {
        let this = self.clone();
        Box::pin(async move {
            while let Some((send, recv)) = this.net.next_stream(&conn).await {
                let (h, c) = (this.clone(), conn.clone());
                this.net.spawn(async move { h.handle(c, send, recv).await });
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn punch_candidates_lead_with_the_observed_address() {
        let obs: SocketAddr = "198.18.0.101:7000".parse().unwrap();
        let given = vec![
            "10.0.0.2:7000".parse().unwrap(),
            "[::ffff:198.18.0.101]:7000".parse().unwrap(),
            "240.0.0.1:1".parse().unwrap(),
            "0.0.0.0:7000".parse().unwrap(),
        ];
        assert_eq!(
            candidates(obs, given),
            vec![obs, "10.0.0.2:7000".parse().unwrap()]
        );
    }

    #[test]
    fn slots_are_bounded_and_given_back() {
        let n = Arc::new(AtomicUsize::new(0));
        let a = Slot::take(&n, 2).unwrap();
        let _b = Slot::take(&n, 2).unwrap();
        assert!(Slot::take(&n, 2).is_none());
        drop(a);
        assert!(Slot::take(&n, 2).is_some());
    }
}
