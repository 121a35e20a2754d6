//! Replication: each file of a room is kept complete on at least N
//! members while N are online, and the count is restored when one goes
//! away, with no coordinator (docs/protocol.md §8.9).
//!
//! Every replica (a node running as a daemon or a mount) sends its members
//! a status at the start of each session, when it changes and at every
//! heartbeat: whether it is at its storage cap and which of the room's
//! files it holds. From the statuses it hears, its own store and the
//! room's policy, each member computes who is responsible for each file
//! (the same answer everywhere), fetches and pins what it is responsible
//! for, and lets go of a copy it is no longer responsible for once the
//! members that are hold it.
//!
//! - `placement`: who is responsible for a file.
//! - `peers`: the statuses heard, and who counts as online.
//! - `plan`: what to pin, fetch and let go of.
//! - `feed`: sending this member's status on a session.
//! - `presence`: sending it, signed, to the whole room (forwarded by
//!   every member).
//! - `leave`: before stopping, waiting until what only this member keeps
//!   is kept elsewhere, then saying goodbye.
//! - `runtime`: per room, gathering the inputs and carrying the plan out.
//! - `status`: `p2pfs room status` and the xattr `user.p2pfs.copies`.

pub(crate) mod copies;
pub(crate) mod feed;
pub(crate) mod leave;
pub(crate) mod peers;
pub(crate) mod placement;
pub(crate) mod plan;
pub(crate) mod presence;
pub(crate) mod runtime;
pub(crate) mod status;

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use p2pfs_proto::{Hash, NodeId, RoomId, room::Status};
use tokio::sync::{Notify, Semaphore, watch};

pub use crate::config::{DEFAULT_LEAVE_TIMEOUT, DEFAULT_OFFLINE_AFTER, ReplicaConfig};

pub use self::{
    leave::{LeaveProgress, OnlyHere},
    status::{FileCopies, MemberStatus, RoomStatus},
};

/// Blobs fetched for replication at once, over all rooms.
const FETCHES: usize = 4;

/// A node's replication state, shared by its rooms.
#[derive(Debug)]
pub(crate) struct NodeReplica {
    pub(crate) config: ReplicaConfig,
    pub(crate) fetches: Arc<Semaphore>,
    /// At the storage cap: takes on no new copies.
    pub(crate) full: AtomicBool,
    /// Bytes the fetches running may still add.
    pub(crate) reserved: AtomicU64,
    /// The smallest fetch that did not fit since `full` was set: `full`
    /// clears once that much (and a tenth of the cap) is free.
    pub(crate) blocked: AtomicU64,
    /// When the store was last collected to make room.
    pub(crate) last_gc: Mutex<Option<Instant>>,
    /// Leaving, once started ([`crate::Node::leave`]).
    pub(crate) leave: Mutex<Option<watch::Receiver<leave::LeaveProgress>>>,
}

impl NodeReplica {
    pub(crate) fn new(config: ReplicaConfig) -> Self {
        Self {
            config,
            fetches: Arc::new(Semaphore::new(FETCHES)),
            full: AtomicBool::new(false),
            reserved: AtomicU64::new(0),
            blocked: AtomicU64::new(0),
            last_gc: Mutex::new(None),
            leave: Mutex::new(None),
        }
    }
}

/// What this member holds of a room, as its status says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Local {
    pub(crate) holds: HashSet<Hash>,
    pub(crate) full: bool,
}

/// Where this replica is in its life, as its sessions tell the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Running,
    /// Stopping: no longer a candidate, still serving (`SyncMsg::Leaving`).
    Leaving,
    /// Stopped: no more statuses (`SyncMsg::Goodbye` was sent).
    Gone,
}

/// A room's replication state.
#[derive(Debug)]
pub(crate) struct RoomReplica {
    pub(crate) peers: Mutex<peers::Peers>,
    /// This member's status (`None` until first computed).
    pub(crate) local: watch::Sender<Option<Arc<Local>>>,
    /// This member's phase.
    pub(crate) phase: watch::Sender<Phase>,
    /// Wakes the runtime: a tree or policy entry, a status that changed
    /// something, a pin.
    pub(crate) wake: Notify,
    /// Bytes fetched to keep copies (for status and figures).
    pub(crate) fetched: AtomicU64,
    /// This replica's presences in the room.
    pub(crate) presence: Mutex<presence::Emitter>,
}

impl Default for RoomReplica {
    fn default() -> Self {
        Self {
            peers: Mutex::new(peers::Peers::default()),
            local: watch::Sender::new(None),
            phase: watch::Sender::new(Phase::Running),
            wake: Notify::new(),
            fetched: AtomicU64::new(0),
            presence: Mutex::new(presence::Emitter::default()),
        }
    }
}

impl RoomReplica {
    /// Takes in a status from `peer`.
    pub(crate) fn heard(&self, peer: NodeId, status: Status, offline_after: Duration) {
        if crate::lock(&self.peers).heard(peer, status, Instant::now(), offline_after) {
            self.wake.notify_one();
        }
    }

    /// `peer` said it is leaving.
    pub(crate) fn heard_leaving(&self, peer: NodeId) {
        if crate::lock(&self.peers).leaving(peer) {
            self.wake.notify_one();
        }
    }

    /// `peer` said goodbye.
    pub(crate) fn heard_goodbye(&self, peer: NodeId) {
        if crate::lock(&self.peers).goodbye(peer, Instant::now()) {
            self.wake.notify_one();
        }
    }

    /// Whether `peer` said goodbye (and has not come back).
    pub(crate) fn is_gone(&self, peer: &NodeId) -> bool {
        crate::lock(&self.peers).is_gone(peer)
    }

    /// Bytes fetched so far to keep copies.
    pub(crate) fn fetched(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }
}

/// The pin name under which a member keeps a room file at the user's
/// request (`user.p2pfs.pin`), whatever the placement.
pub fn keep_pin_name(room: &RoomId) -> String {
    format!("room:{room}:keep")
}
