//! Who a room's members are and how this node is connected to them: where
//! to reach each, the live sessions, the members proven, and the mesh
//! (whom to keep sessions with, presences, who is online).
//!
//! One task per room owns this state (the room's runtime, `runtime.rs`):
//! everything else sends it a [`Cmd`] through [`OverlayHandle`] and reads
//! the [`Snapshot`] it publishes after every change. Sessions tell it when
//! they start and end and hand it the presences and digests they receive;
//! it answers on the sessions' queues itself (it never waits on a session,
//! so a slow one cannot stall the room). [`Overlay::handle`] is the state
//! machine's step; it does no I/O beyond queueing messages on sessions.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    net::SocketAddr,
    sync::Arc,
};

use p2pfs_proto::{
    NodeAddr, NodeId,
    room::{Presence, PresenceBody, PresenceHead, PresencePhase, SyncMsg},
};
use tokio::sync::{mpsc, oneshot, watch};

use super::{
    mesh::{Apply, Heard, Mesh},
    sync::{self, Out},
};
use crate::{net::dial::SIMULTANEOUS, replica::RoomReplica};

/// Commands queued for a room's overlay before senders wait.
const QUEUE: usize = 1024;

/// What the overlay task is told or asked.
#[derive(Debug)]
pub(crate) enum Cmd {
    /// Where members can be reached (from a session, a `Peers` message, a
    /// dial or a DHT lookup).
    Learn(Vec<(NodeId, Vec<SocketAddr>)>),
    /// Members that wrote to the log.
    Authors(Vec<NodeId>),
    /// A session with `peer` proved membership: it is the room's unless a
    /// better one between the same members exists (the reply).
    Up {
        peer: NodeId,
        handle: sync::Handle,
        reply: oneshot::Sender<bool>,
    },
    /// The session `serial` with `peer` ended (`failed`: its connection
    /// was lost, not ended on purpose).
    Down {
        peer: NodeId,
        serial: u64,
        failed: bool,
    },
    /// A dial of `peer` ended without a session.
    DialEnded { peer: NodeId, failed: bool },
    /// A verified presence received on `from`'s session.
    Presence {
        from: NodeId,
        p: Arc<Presence>,
        body: PresenceBody,
    },
    /// This node's own presence: remembered for new sessions (it was sent
    /// already).
    Own {
        p: Arc<Presence>,
        run: u64,
        seq: u64,
        reset: bool,
    },
    /// Send `peer`'s session our presence digest.
    SendDigest { peer: NodeId },
    /// Send `peer`'s session the presences its digest lacks.
    AnswerDigest {
        peer: NodeId,
        heads: Vec<PresenceHead>,
    },
    /// Send `peer`'s session the members we know (`me` among them).
    SendPeers { peer: NodeId, me: NodeAddr },
}

/// What the rest of the node reads of the overlay, as of its last change.
/// Cheap to clone (shared parts).
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    /// Members and where to reach them.
    pub(crate) nodes: Arc<BTreeMap<NodeId, Vec<SocketAddr>>>,
    /// Live sessions, by member.
    pub(crate) sessions: Arc<HashMap<NodeId, sync::Handle>>,
    /// Members proven while this node runs, or authors in the log.
    pub(crate) members: Arc<HashSet<NodeId>>,
    /// Replicas heard through presences: online until then (room clock,
    /// ms; 0 once one said goodbye).
    pub(crate) heard: Arc<HashMap<NodeId, u64>>,
    /// Members with a known address.
    pub(crate) known: usize,
    /// Grows whenever a session starts.
    pub(crate) arrivals: u64,
    /// Grows whenever a member or an address is learned.
    pub(crate) nodes_version: u64,
}

impl Snapshot {
    /// Members online at `now`: with a session, or heard recently.
    pub(crate) fn online(&self, now: u64) -> BTreeSet<NodeId> {
        let mut out: BTreeSet<NodeId> = self.sessions.keys().copied().collect();
        out.extend(
            self.heard
                .iter()
                .filter(|(_, until)| **until > now)
                .map(|(id, _)| *id),
        );
        out
    }
}

/// The way to a room's overlay task, and its snapshots. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct OverlayHandle {
    tx: mpsc::Sender<Cmd>,
    snap: watch::Receiver<Snapshot>,
}

impl OverlayHandle {
    /// The overlay as of its last change.
    pub(crate) fn snapshot(&self) -> Snapshot {
        self.snap.borrow().clone()
    }

    /// Tells the overlay `cmd`, waiting for room in its queue (nothing
    /// happens once the room has stopped).
    pub(crate) async fn send(&self, cmd: Cmd) {
        let _ = self.tx.send(cmd).await;
    }

    /// Tells the overlay `cmd` if its queue has room (for what is only a
    /// hint, from code that cannot wait).
    pub(crate) fn try_send(&self, cmd: Cmd) {
        if self.tx.try_send(cmd).is_err() {
            tracing::debug!("room overlay busy: a hint dropped");
        }
    }

    /// Registers a session (see [`Cmd::Up`]); false if another session
    /// with that member stays, or the room stopped.
    pub(crate) async fn up(&self, peer: NodeId, handle: sync::Handle) -> bool {
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::Up {
            peer,
            handle,
            reply,
        })
        .await;
        rx.await.unwrap_or(false)
    }
}

/// The overlay task's end of the channel, and its state.
#[derive(Debug)]
pub(crate) struct Overlay {
    mesh: Mesh,
    snap: watch::Sender<Snapshot>,
    /// Placement, told what presences say.
    replica: Arc<RoomReplica>,
    offline_after: std::time::Duration,
}

/// A room's overlay: its task's state and channel, and the handle to it.
pub(crate) fn overlay(
    mut mesh: Mesh,
    nodes: BTreeMap<NodeId, Vec<SocketAddr>>,
    replica: Arc<RoomReplica>,
    offline_after: std::time::Duration,
) -> (Overlay, mpsc::Receiver<Cmd>, OverlayHandle) {
    for (id, addrs) in &nodes {
        if !addrs.is_empty() {
            mesh.learn(*id);
        }
    }
    let snap = Snapshot {
        known: mesh.known().count(),
        nodes: Arc::new(nodes),
        ..Snapshot::default()
    };
    let (snap_tx, snap_rx) = watch::channel(snap);
    let (tx, rx) = mpsc::channel(QUEUE);
    (
        Overlay {
            mesh,
            snap: snap_tx,
            replica,
            offline_after,
        },
        rx,
        OverlayHandle { tx, snap: snap_rx },
    )
}

impl Overlay {
    /// The mesh (for the runtime's dialing decisions).
    pub(crate) fn mesh(&mut self) -> &mut Mesh {
        &mut self.mesh
    }

    /// The current snapshot.
    pub(crate) fn snapshot(&self) -> Snapshot {
        self.snap.borrow().clone()
    }

    /// Carries out `cmd` at `now` (room clock, ms).
    pub(crate) fn handle(&mut self, cmd: Cmd, now: u64) {
        match cmd {
            Cmd::Learn(list) => {
                for (id, addrs) in list {
                    self.learn(id, addrs);
                }
            }
            Cmd::Authors(list) => {
                if list.iter().any(|a| !self.snap.borrow().members.contains(a)) {
                    self.snap.send_modify(|s| {
                        Arc::make_mut(&mut s.members).extend(list);
                    });
                }
            }
            Cmd::Up {
                peer,
                handle,
                reply,
            } => {
                let ours = self.up(peer, handle);
                let _ = reply.send(ours);
            }
            Cmd::Down {
                peer,
                serial,
                failed,
            } => self.down(peer, serial, failed, now),
            Cmd::DialEnded { peer, failed } => self.mesh.dial_ended(peer, failed, now),
            Cmd::Presence { from, p, body } => self.presence(from, p, &body, now),
            Cmd::Own { p, run, seq, reset } => {
                self.mesh.own(p, run, seq, reset);
            }
            Cmd::SendDigest { peer } => {
                let digest = self.mesh.digest();
                self.send(peer, Out::Msg(SyncMsg::PresenceDigest(digest)));
            }
            Cmd::AnswerDigest { peer, heads } => {
                for p in self.mesh.missing(peer, &heads) {
                    self.send(peer, Out::Msg(SyncMsg::Presence((*p).clone())));
                }
            }
            Cmd::SendPeers { peer, me } => {
                let peers = self.peers_for(peer, me);
                self.send(peer, Out::Msg(SyncMsg::Peers(peers)));
            }
        }
    }

    /// Queues `out` on `peer`'s session, if it has one; a session too slow
    /// to take it ends (and reconciles when it reconnects).
    fn send(&self, peer: NodeId, out: Out) {
        if let Some(s) = self.snap.borrow().sessions.get(&peer)
            && s.tx.try_send(out).is_err()
        {
            s.cancel.cancel();
        }
    }

    /// Remembers where a member can be reached: `addrs` first, then the
    /// addresses known before that are not among them (up to
    /// [`p2pfs_proto::MAX_ADDRS`]). Candidates from different sources add
    /// up: the address a member says it listens on (on its LAN, behind a
    /// NAT) does not replace the one its connections were seen to come
    /// from (its router's, which this node can reach).
    fn learn(&mut self, id: NodeId, addrs: Vec<SocketAddr>) {
        if addrs.is_empty() {
            return;
        }
        let merged = merge_addrs(addrs, self.snap.borrow().nodes.get(&id));
        if self.snap.borrow().nodes.get(&id) == Some(&merged) {
            return;
        }
        self.mesh.learn(id);
        let known = self.mesh.known().count();
        self.snap.send_modify(|s| {
            Arc::make_mut(&mut s.nodes).insert(id, merged);
            s.known = known;
            s.nodes_version += 1;
        });
    }

    /// Registers a session; false if a better one between the same
    /// members exists: of two, the one dialed by the lower id stays,
    /// unless the other's connection is older than a simultaneous dial
    /// (the old one is stale: the peer restarted).
    fn up(&mut self, peer: NodeId, h: sync::Handle) -> bool {
        if let Some(old) = self.snap.borrow().sessions.get(&peer) {
            let stale = old.conn != h.conn && h.started.duration_since(old.started) > SIMULTANEOUS;
            if !stale && old.dialer < h.dialer {
                return false;
            }
        }
        self.mesh.up(peer);
        let mut replaced = None;
        self.snap.send_modify(|s| {
            replaced = Arc::make_mut(&mut s.sessions).insert(peer, h);
            Arc::make_mut(&mut s.members).insert(peer);
            s.arrivals += 1;
        });
        if let Some(old) = replaced {
            old.cancel.cancel();
        }
        true
    }

    /// A session ended: if it was the room's, the mesh dials the member
    /// again later, and what the room says of that member counts for
    /// placement from now on (unless it said goodbye on the session).
    fn down(&mut self, peer: NodeId, serial: u64, failed: bool, now: u64) {
        let last = self
            .snap
            .borrow()
            .sessions
            .get(&peer)
            .is_some_and(|h| h.serial == serial);
        if !last {
            return;
        }
        self.snap.send_modify(|s| {
            Arc::make_mut(&mut s.sessions).remove(&peer);
        });
        self.mesh.down(peer, now, failed);
        if !self.mesh.is_online(&peer, now) || self.replica.is_gone(&peer) {
            return;
        }
        for p in self.mesh.chain(&peer) {
            if let Ok(body) = p.decode_body() {
                self.apply_presence(&body, true);
            }
        }
    }

    /// Takes in a verified presence from `from`'s session: forwards it if
    /// it is new, and tells placement what it says.
    fn presence(&mut self, from: NodeId, p: Arc<Presence>, body: &PresenceBody, now: u64) {
        let heard = self.mesh.presence(Some(from), p.clone(), body, now);
        let Heard::New { forward, apply } = heard else {
            return;
        };
        let until = self.mesh.heard_until(&body.origin);
        self.snap.send_modify(|s| {
            let heard = Arc::make_mut(&mut s.heard);
            match until {
                Some(t) => heard.insert(body.origin, t),
                None => heard.remove(&body.origin),
            };
        });
        let msg = Arc::new(SyncMsg::Presence((*p).clone()));
        for peer in forward {
            self.send(peer, Out::Shared(msg.clone()));
        }
        self.apply_presence(body, matches!(apply, Apply::Status(..)));
    }

    /// Forgets replicas silent for long.
    pub(crate) fn expire(&mut self, now: u64) {
        self.mesh.expire(now);
        let stale: Vec<NodeId> = self
            .snap
            .borrow()
            .heard
            .keys()
            .filter(|id| self.mesh.heard_until(id).is_none())
            .copied()
            .collect();
        if !stale.is_empty() {
            self.snap.send_modify(|s| {
                let heard = Arc::make_mut(&mut s.heard);
                for id in &stale {
                    heard.remove(id);
                }
            });
        }
    }

    /// Tells placement what a presence says, unless a session with its
    /// origin says it directly. `in_order`: its status follows what was
    /// known (else only that it lives counts).
    fn apply_presence(&self, body: &PresenceBody, in_order: bool) {
        if self.snap.borrow().sessions.contains_key(&body.origin) {
            return;
        }
        let mut status = body.status.clone();
        if !in_order {
            status.reset = false;
            status.add.clear();
            status.remove.clear();
        }
        let replica = &self.replica;
        match body.phase {
            PresencePhase::Running => replica.heard(body.origin, status, self.offline_after),
            PresencePhase::Leaving => {
                replica.heard(body.origin, status, self.offline_after);
                replica.heard_leaving(body.origin);
            }
            PresencePhase::Gone => replica.heard_goodbye(body.origin),
        }
    }

    /// The members this node knows how to reach (and `me`), for a `Peers`
    /// message to `to`: a different sample each time in a big room, so
    /// that every member comes to know every other.
    pub(crate) fn peers_for(&self, to: NodeId, me: NodeAddr) -> Vec<NodeAddr> {
        let ids = self
            .mesh
            .sample(to, p2pfs_proto::room::MAX_PEERS - 1, fastrand::u64(..));
        let snap = self.snap.borrow();
        ids.into_iter()
            .filter_map(|id| {
                let addrs = snap.nodes.get(&id)?;
                Some(NodeAddr {
                    id,
                    addrs: addrs.iter().take(p2pfs_proto::MAX_ADDRS).copied().collect(),
                })
            })
            .chain(std::iter::once(me))
            .collect()
    }

    /// Tells every session of the members this node knows (when it
    /// learned new ones), so that members meet each other.
    pub(crate) fn gossip(&self, me: &NodeAddr) {
        let peers: Vec<NodeId> = self.snap.borrow().sessions.keys().copied().collect();
        for peer in peers {
            let msg = SyncMsg::Peers(self.peers_for(peer, me.clone()));
            self.send(peer, Out::Msg(msg));
        }
    }
}

/// `new` first, then the addresses of `old` not among them, up to
/// [`p2pfs_proto::MAX_ADDRS`].
fn merge_addrs(new: Vec<SocketAddr>, old: Option<&Vec<SocketAddr>>) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::with_capacity(p2pfs_proto::MAX_ADDRS);
    for a in new.into_iter().chain(old.into_iter().flatten().copied()) {
        if out.len() == p2pfs_proto::MAX_ADDRS {
            break;
        }
        // A relayed path's address means nothing to anyone else.
        if !out.contains(&a) && !crate::net::paths::is_path_addr(&a) {
            out.push(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use p2pfs_proto::room::{Signature, Status};
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::room::mesh::Config;

    fn id(i: u8) -> NodeId {
        NodeId::from_bytes([i; 32])
    }

    fn addr(i: u8) -> Vec<SocketAddr> {
        vec![SocketAddr::from(([127, 0, 0, i], 4000))]
    }

    fn presence(origin: u8, seq: u64, phase: PresencePhase) -> (Arc<Presence>, PresenceBody) {
        let body = PresenceBody {
            origin: id(origin),
            member: [0; 32],
            run: 1,
            seq,
            phase,
            status: Status {
                reset: seq == 0,
                heartbeat_ms: 1000,
                ..Status::default()
            },
        };
        let p = Presence {
            body: p2pfs_proto::codec::encode(&body).unwrap_or_default(),
            sig: Signature([0; 64]),
        };
        (Arc::new(p), body)
    }

    fn new() -> Overlay {
        let config = Config {
            offline_after_ms: 10_000,
            ..Config::default()
        };
        overlay(
            Mesh::new(id(0), config),
            BTreeMap::new(),
            Arc::default(),
            Duration::from_secs(10),
        )
        .0
    }

    /// A session's handle, and what is queued on it.
    fn session(dialer: u8, conn: usize) -> (sync::Handle, mpsc::Receiver<Out>) {
        let (tx, rx) = mpsc::channel(64);
        let h = sync::Handle {
            tx,
            cancel: CancellationToken::new(),
            dialer: id(dialer),
            serial: fastrand::u64(..),
            conn,
            started: Instant::now(),
        };
        (h, rx)
    }

    fn up(o: &mut Overlay, peer: u8, h: &sync::Handle) -> bool {
        let (reply, mut rx) = oneshot::channel();
        o.handle(
            Cmd::Up {
                peer: id(peer),
                handle: h.clone(),
                reply,
            },
            0,
        );
        rx.try_recv().unwrap_or(false)
    }

    /// The presences queued on a session.
    fn queued(rx: &mut mpsc::Receiver<Out>) -> Vec<Presence> {
        let mut out = Vec::new();
        while let Ok(o) = rx.try_recv() {
            match o {
                Out::Msg(SyncMsg::Presence(p)) => out.push(p),
                Out::Shared(m) => {
                    if let SyncMsg::Presence(p) = &*m {
                        out.push(p.clone());
                    }
                }
                _ => {}
            }
        }
        out
    }

    #[test]
    fn of_two_sessions_with_a_member_the_lower_dialer_s_stays() {
        let mut o = new();
        let (a, _ra) = session(0, 1);
        let (b, _rb) = session(5, 2);
        assert!(up(&mut o, 5, &a));
        // Dialed by the member (higher id) on another connection, at once:
        // a simultaneous dial, and ours stays.
        assert!(!up(&mut o, 5, &b));
        assert!(!a.cancel.is_cancelled());
        let snap = o.snapshot();
        assert_eq!(snap.arrivals, 1);
        assert!(snap.members.contains(&id(5)));
        // Only the session the room holds ends it.
        o.handle(
            Cmd::Down {
                peer: id(5),
                serial: b.serial,
                failed: false,
            },
            1,
        );
        assert_eq!(o.snapshot().sessions.len(), 1);
        o.handle(
            Cmd::Down {
                peer: id(5),
                serial: a.serial,
                failed: false,
            },
            1,
        );
        assert!(o.snapshot().sessions.is_empty());
    }

    #[test]
    fn the_snapshot_s_online_members_agree_with_the_mesh() {
        let mut o = new();
        let (a, _ra) = session(0, 1);
        assert!(up(&mut o, 1, &a));
        let (p, body) = presence(2, 0, PresencePhase::Running);
        o.handle(
            Cmd::Presence {
                from: id(1),
                p,
                body,
            },
            100,
        );
        let (p, body) = presence(3, 0, PresencePhase::Running);
        o.handle(
            Cmd::Presence {
                from: id(1),
                p,
                body,
            },
            5_000,
        );
        let (p, body) = presence(3, 1, PresencePhase::Gone);
        o.handle(
            Cmd::Presence {
                from: id(1),
                p,
                body,
            },
            6_000,
        );
        for now in [0, 100, 5_000, 9_999, 10_100, 15_000, 30_000, 60_000] {
            o.expire(now);
            assert_eq!(o.snapshot().online(now), o.mesh.online(now), "at {now}");
        }
    }

    #[test]
    fn a_new_presence_goes_to_every_other_session_once() {
        let mut o = new();
        let (a, mut ra) = session(0, 1);
        let (b, mut rb) = session(0, 2);
        assert!(up(&mut o, 1, &a));
        assert!(up(&mut o, 2, &b));
        for _ in 0..2 {
            let (p, body) = presence(9, 0, PresencePhase::Running);
            o.handle(
                Cmd::Presence {
                    from: id(1),
                    p,
                    body,
                },
                10,
            );
        }
        assert!(queued(&mut ra).is_empty(), "not back where it came from");
        assert_eq!(queued(&mut rb).len(), 1, "forwarded once");
        // A new session asks for what it lacks: the presence held.
        o.handle(
            Cmd::AnswerDigest {
                peer: id(2),
                heads: Vec::new(),
            },
            20,
        );
        assert_eq!(queued(&mut rb).len(), 1);
    }

    #[test]
    fn addresses_from_different_sources_add_up() {
        let mut o = new();
        let seen = SocketAddr::from(([198, 18, 0, 100], 7000));
        let said = SocketAddr::from(([10, 0, 0, 2], 7000));
        o.handle(Cmd::Learn(vec![(id(4), vec![seen])]), 0);
        o.handle(Cmd::Learn(vec![(id(4), vec![said])]), 0);
        o.handle(Cmd::Learn(vec![(id(4), vec![said])]), 0);
        let snap = o.snapshot();
        assert_eq!(snap.nodes[&id(4)], vec![said, seen]);
        assert_eq!(snap.nodes_version, 2);
        let many: Vec<SocketAddr> = (0..40u16)
            .map(|p| SocketAddr::from(([10, 0, 0, 3], p)))
            .collect();
        o.handle(Cmd::Learn(vec![(id(4), many)]), 0);
        assert_eq!(o.snapshot().nodes[&id(4)].len(), p2pfs_proto::MAX_ADDRS);
    }

    #[test]
    fn addresses_learned_bump_the_version_once_and_feed_the_mesh() {
        let mut o = new();
        o.handle(Cmd::Learn(vec![(id(4), addr(4)), (id(5), Vec::new())]), 0);
        o.handle(Cmd::Learn(vec![(id(4), addr(4))]), 0);
        let snap = o.snapshot();
        assert_eq!(snap.nodes_version, 1);
        assert_eq!(snap.known, 1);
        assert_eq!(o.mesh.dials(0), vec![id(4)]);
    }
}
