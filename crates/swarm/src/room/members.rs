//! A room's members, as its overlay sees them (`overlay`): where to reach
//! them, who is online (sessions and forwarded presences), and tickets
//! naming them.

use std::net::SocketAddr;

use p2pfs_proto::{NodeAddr, NodeId, RoomTicket};

use super::{Room, overlay::Cmd};
use crate::Node;

impl Room {
    /// Remembers where a member can be reached.
    pub(crate) async fn learn(&self, node: NodeId, addrs: Vec<SocketAddr>) {
        if !addrs.is_empty() {
            self.overlay.send(Cmd::Learn(vec![(node, addrs)])).await;
        }
    }

    /// Remembers the members of a `Peers` message (all but `me`).
    pub(crate) async fn learn_all(&self, peers: Vec<NodeAddr>, me: NodeId) {
        let list: Vec<_> = peers
            .into_iter()
            .filter(|p| p.id != me && !p.addrs.is_empty())
            .map(|p| (p.id, p.addrs))
            .collect();
        if !list.is_empty() {
            self.overlay.send(Cmd::Learn(list)).await;
        }
    }

    /// A number that grows whenever a member connects (a read that no
    /// member could serve is worth trying again once it has).
    pub fn arrivals(&self) -> u64 {
        self.overlay.snapshot().arrivals
    }

    /// Members online: with a live session, or a replica whose presence
    /// (forwarded through the room) is recent.
    pub fn online(&self) -> Vec<NodeId> {
        self.overlay
            .snapshot()
            .online(self.now_ms())
            .into_iter()
            .collect()
    }

    /// Whether `peer` proved membership (while this node runs) or wrote
    /// to the log, and was not removed.
    pub(crate) fn is_member(&self, peer: &NodeId) -> bool {
        self.overlay.snapshot().members.contains(peer) && !self.epochs.moderation().is_removed(peer)
    }

    /// Members with a live session.
    pub(crate) fn with_session(&self) -> Vec<NodeId> {
        self.overlay.snapshot().sessions.keys().copied().collect()
    }
}

impl Node {
    /// A ticket for `room`, naming this node and the members online.
    pub fn room_ticket(&self, room: &Room) -> RoomTicket {
        let mut nodes = vec![self.node_addr()];
        let snap = room.overlay.snapshot();
        for peer in snap.online(room.now_ms()) {
            if let Some(addrs) = snap.nodes.get(&peer) {
                nodes.push(NodeAddr {
                    id: peer,
                    addrs: addrs.clone(),
                });
            }
        }
        RoomTicket::new(room.secret.clone(), crate::lock(&room.name).clone(), nodes)
            .with_key(room.epochs.current_key())
    }
}
