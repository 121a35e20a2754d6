//! The room privacy rule, as one object the blob and DHT handlers ask: a
//! blob that only rooms refer to is served only to those rooms' members
//! and never announced in the public DHT; a blob no room refers to, or one
//! the user pinned (`add`, `fetch`), is public.

use std::sync::Arc;

use p2pfs_proto::{Hash, NodeId};
use p2pfs_store::{Store, StoreError, USER_PIN};

use crate::room::{registry::Rooms, view::blob_key};

/// Who may have which blob.
#[derive(Debug, Clone)]
pub(crate) struct Privacy {
    store: Store,
    rooms: Arc<Rooms>,
}

impl Privacy {
    pub(crate) fn new(store: Store, rooms: Arc<Rooms>) -> Self {
        Self { store, rooms }
    }

    /// Whether `peer` may download `hash`: yes unless the blob is only
    /// reachable through rooms `peer` is not a member of. Blocking (reads
    /// the store).
    pub(crate) fn may_serve(&self, peer: &NodeId, hash: &Hash) -> Result<bool, StoreError> {
        let rooms = self.store.rooms_referring(&blob_key(hash))?;
        Ok(rooms.is_empty()
            || rooms
                .iter()
                .any(|id| self.rooms.get(id).is_some_and(|r| r.is_member(peer)))
            || self.store.pins(hash)?.iter().any(|p| p == USER_PIN))
    }

    /// Whether `hash` may be announced in the public DHT: no room refers
    /// to it, or the user pinned it. Blocking.
    pub(crate) fn is_public(&self, hash: &Hash) -> bool {
        self.store
            .rooms_referring(&blob_key(hash))
            .is_ok_and(|r| r.is_empty())
            || self
                .store
                .pins(hash)
                .is_ok_and(|p| p.iter().any(|p| p == USER_PIN))
    }
}
