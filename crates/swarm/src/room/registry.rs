//! Every room of a node, by id: what the privacy rule, the protocol
//! handler and the commands look rooms up in.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use p2pfs_proto::RoomId;
use tokio::sync::watch;

use super::handle::Room;

/// The rooms a node is in, and its display name in them.
#[derive(Debug)]
pub(crate) struct Rooms {
    rooms: Mutex<HashMap<RoomId, Arc<Room>>>,
    /// This node's display name.
    display: Mutex<String>,
    /// Bumped whenever a room starts or is left.
    set_changed: watch::Sender<u64>,
    /// Woken whenever a room's moderation changes (a member removed): the
    /// relay ends what it carried for members that no longer are.
    membership: Arc<tokio::sync::Notify>,
}

impl Rooms {
    /// No rooms yet, and this display name.
    pub(crate) fn new(display: String) -> Self {
        Self {
            rooms: Mutex::new(HashMap::new()),
            display: Mutex::new(display),
            set_changed: watch::Sender::new(0),
            membership: Arc::default(),
        }
    }

    /// The running room with this id.
    pub(crate) fn get(&self, id: &RoomId) -> Option<Arc<Room>> {
        crate::lock(&self.rooms).get(id).cloned()
    }

    /// Every running room.
    pub(crate) fn all(&self) -> Vec<Arc<Room>> {
        crate::lock(&self.rooms).values().cloned().collect()
    }

    /// A room started.
    pub(crate) fn insert(&self, room: Arc<Room>) {
        crate::lock(&self.rooms).insert(room.id, room);
        self.set_changed.send_modify(|n| *n += 1);
    }

    /// A room was left.
    pub(crate) fn remove(&self, id: &RoomId) {
        crate::lock(&self.rooms).remove(id);
        self.set_changed.send_modify(|n| *n += 1);
    }

    /// A receiver that changes whenever a room starts or is left.
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.set_changed.subscribe()
    }

    /// What wakes when a room's moderation changes.
    pub(crate) fn membership(&self) -> Arc<tokio::sync::Notify> {
        self.membership.clone()
    }

    /// This node's display name.
    pub(crate) fn display(&self) -> String {
        crate::lock(&self.display).clone()
    }
}
