//! A room's members: where to reach them, whom to tell about whom, who
//! is online (sessions and forwarded presences), and tickets naming them.

use std::{net::SocketAddr, sync::atomic::Ordering};

use p2pfs_proto::{NodeAddr, NodeId, RoomTicket};

use super::{Room, sync, sync::Out};
use crate::Node;

impl Room {
    /// Remembers where a member can be reached.
    pub(crate) fn learn(&self, node: NodeId, addrs: Vec<SocketAddr>) {
        if addrs.is_empty() {
            return;
        }
        let mut nodes = crate::lock(&self.nodes);
        let new = nodes.get(&node) != Some(&addrs);
        nodes.insert(node, addrs);
        drop(nodes);
        crate::lock(&self.mesh).learn(node);
        if new {
            self.nodes_version.fetch_add(1, Ordering::Relaxed);
            self.wake.notify_one();
        }
    }

    /// Remembers the members of a `Peers` message (all but `me`).
    pub(crate) fn learn_all(&self, peers: Vec<NodeAddr>, me: NodeId) {
        for p in peers.into_iter().filter(|p| p.id != me) {
            self.learn(p.id, p.addrs);
        }
    }

    /// The members this node knows how to reach (and itself), for a
    /// `Peers` message to `to`.
    pub(crate) fn peers_for(&self, to: NodeId, me: NodeAddr) -> Vec<NodeAddr> {
        // A different sample each time in a big room, so that every member
        // comes to know every other.
        let ids =
            crate::lock(&self.mesh).sample(to, p2pfs_proto::room::MAX_PEERS - 1, fastrand::u64(..));
        let nodes = crate::lock(&self.nodes);
        ids.into_iter()
            .filter_map(|id| {
                let addrs = nodes.get(&id)?;
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
        let sessions: Vec<(NodeId, sync::Handle)> = crate::lock(&self.sessions)
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        for (peer, h) in sessions {
            let _ = h.tx.try_send(Out::Msg(p2pfs_proto::room::SyncMsg::Peers(
                self.peers_for(peer, me.clone()),
            )));
        }
    }

    /// A number that grows whenever a member connects (a read that no
    /// member could serve is worth trying again once it has).
    pub fn arrivals(&self) -> u64 {
        self.arrivals.load(Ordering::Relaxed)
    }

    /// Members online: with a live session, or a replica whose presence
    /// (forwarded through the room) is recent.
    pub fn online(&self) -> Vec<NodeId> {
        let now = self.now_ms();
        crate::lock(&self.mesh).online(now).into_iter().collect()
    }

    /// Whether `peer` proved membership (while this node runs) or wrote
    /// to the log.
    pub(crate) fn is_member(&self, peer: &NodeId) -> bool {
        crate::lock(&self.members).contains(peer)
    }

    /// Members with a live session.
    pub(crate) fn with_session(&self) -> Vec<NodeId> {
        crate::lock(&self.sessions).keys().copied().collect()
    }
}

impl Node {
    /// A ticket for `room`, naming this node and the members online.
    pub fn room_ticket(&self, room: &Room) -> RoomTicket {
        let mut nodes = vec![self.node_addr()];
        let known = crate::lock(&room.nodes);
        for peer in room.online() {
            if let Some(addrs) = known.get(&peer) {
                nodes.push(NodeAddr {
                    id: peer,
                    addrs: addrs.clone(),
                });
            }
        }
        RoomTicket::new(room.secret.clone(), crate::lock(&room.name).clone(), nodes)
    }
}
