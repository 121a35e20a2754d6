//! The room protocol's handler (ALPN `p2pfs/room/1`): each connection is a
//! sync session, once the peer proves it is a member of a room this node
//! is in (docs/protocol.md §8).

use std::sync::{Arc, Weak};

use crate::{
    Node,
    net::dial::Conn,
    node::Inner,
    router::{ProtocolHandler, Serving},
};

/// Serves room sessions. A session works with the whole node (the store,
/// the rooms, replication, dialing), so the handler reaches it through a
/// weak reference: the node owns the router, not the other way round.
#[derive(Debug)]
pub(crate) struct RoomsHandler {
    node: Weak<Inner>,
}

impl RoomsHandler {
    pub(crate) fn new(node: &Node) -> Self {
        Self {
            node: Arc::downgrade(&node.inner),
        }
    }
}

impl ProtocolHandler for RoomsHandler {
    fn serve(&self, conn: Conn) -> Serving {
        let node = self.node.upgrade().map(|inner| Node { inner });
        Box::pin(async move {
            if let Some(node) = node {
                super::sync::serve(node, conn).await;
            }
        })
    }
}
