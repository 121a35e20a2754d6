//! [`Room`]: the shared handle to a running room, its state while the node
//! runs, and pushing to its sessions.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, atomic::AtomicU64},
    time::{Duration, Instant},
};

use p2pfs_proto::{
    NodeId, RoomId, RoomSecret,
    room::{Meta, Op},
};
use p2pfs_store::RoomInfo;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{
    actor::{LogHandle, LogTask, log_task},
    entry::Verified,
    mesh,
    overlay::{self, Cmd, Overlay, OverlayHandle},
    sync,
    sync::Out,
};

/// A room this node is in, while the node runs.
#[derive(Debug)]
pub struct Room {
    pub(crate) secret: RoomSecret,
    pub(crate) id: RoomId,
    pub(crate) name: Mutex<String>,
    /// The task that owns the log: every entry in goes through it.
    pub(crate) log: LogHandle,
    /// The task that owns the overlay: members, their addresses, the
    /// sessions, the mesh (the room's runtime).
    pub(crate) overlay: OverlayHandle,
    /// Bumped whenever the log grows.
    pub(crate) changed: watch::Sender<u64>,
    /// Bumped whenever a session finishes a reconciliation.
    pub(crate) synced: watch::Sender<u64>,
    pub(crate) cancel: CancellationToken,
    /// Bytes of sync messages received (for the figures).
    pub(crate) bytes_in: AtomicU64,
    /// Set on joining: this node's earlier entries (from before it left)
    /// may come back through sync, so its first write waits for one.
    pub(crate) sync_before_write: std::sync::atomic::AtomicBool,
    /// Held from reading what a tree change replaces until it is written,
    /// so two changes of one path never miss each other (the mount holds
    /// it while it works a change out from the tree it shows:
    /// [`Node::lock_tree`]).
    pub(crate) tree_lock: Arc<tokio::sync::Mutex<()>>,
    /// The paths recent entries changed, with the value of `changed` once
    /// each was in (oldest first, bounded): views kept in memory update
    /// just those paths.
    pub(super) touched: Mutex<Touched>,
    /// Keeping the room's files on enough members.
    pub(crate) replica: Arc<crate::replica::RoomReplica>,
    /// Roles, epochs and the keys this node holds (`super::epochs`).
    pub(crate) epochs: super::epochs::EpochState,
    /// The mesh's clock starts here.
    clock: Instant,
}

/// See [`Room::touched`].
#[derive(Debug, Default)]
pub(super) struct Touched {
    pub(super) paths: std::collections::VecDeque<(u64, String)>,
    /// The newest version among the paths dropped to stay bounded.
    pub(super) dropped: u64,
}

/// The most touched paths a room remembers (older ones: reload the view).
const MAX_TOUCHED: usize = 65_536;

impl Room {
    /// The room id.
    pub fn id(&self) -> RoomId {
        self.id
    }

    /// The local name.
    pub fn name(&self) -> String {
        crate::lock(&self.name).clone()
    }

    /// A room, its log task and its overlay's state and queue (to run once
    /// the room is shared).
    pub(super) fn new(
        info: &RoomInfo,
        cancel: CancellationToken,
        me: NodeId,
        config: mesh::Config,
        offline_after: Duration,
    ) -> (Self, LogTask, Overlay, tokio::sync::mpsc::Receiver<Cmd>) {
        let (log, task) = log_task();
        let nodes: BTreeMap<_, _> = info.nodes.iter().map(|n| (n.id, n.addrs.clone())).collect();
        let replica = Arc::new(crate::replica::RoomReplica::default());
        let (state, cmds, overlay) = overlay::overlay(
            mesh::Mesh::new(me, config),
            nodes,
            replica.clone(),
            offline_after,
        );
        let room = Self {
            id: info.secret.id(),
            secret: info.secret.clone(),
            name: Mutex::new(info.name.clone()),
            log,
            overlay,
            changed: watch::Sender::new(0),
            synced: watch::Sender::new(0),
            cancel,
            bytes_in: AtomicU64::new(0),
            sync_before_write: std::sync::atomic::AtomicBool::new(false),
            tree_lock: Arc::new(tokio::sync::Mutex::new(())),
            touched: Mutex::new(Touched::default()),
            replica,
            epochs: super::epochs::EpochState::default(),
            clock: Instant::now(),
        };
        (room, task, state, cmds)
    }

    /// Milliseconds on the mesh's clock.
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Sends new entries to every session but `except`'s.
    pub(crate) fn broadcast(&self, entries: &[Verified], except: Option<NodeId>) {
        if entries.is_empty() {
            return;
        }
        {
            let mut touched = crate::lock(&self.touched);
            let version = *self.changed.borrow() + entries.len() as u64;
            for e in entries {
                if let Some(path) = e.body.op.path() {
                    touched.paths.push_back((version, path.to_string()));
                    self.replica.wake.notify_one();
                } else if let Op::Meta(Meta::Copies(_)) = &e.body.op {
                    // Placement follows the tree and the policy, not chat.
                    self.replica.wake.notify_one();
                }
            }
            while touched.paths.len() > MAX_TOUCHED {
                if let Some((v, _)) = touched.paths.pop_front() {
                    touched.dropped = v;
                }
            }
            self.changed.send_modify(|n| *n = version);
        }
        let msgs: Vec<Arc<p2pfs_proto::room::SyncMsg>> =
            sync::batches(entries.iter().map(|e| e.bytes.clone()))
                .into_iter()
                .map(Arc::new)
                .collect();
        let sessions = self.overlay.snapshot().sessions;
        for (peer, s) in sessions.iter() {
            if Some(*peer) == except {
                continue;
            }
            for m in &msgs {
                if s.tx.try_send(Out::Shared(m.clone())).is_err() {
                    // A member too slow to take pushes reconciles on
                    // reconnect.
                    s.cancel.cancel();
                    break;
                }
            }
        }
    }

    /// The whole tree changed (rebuilt after a removal): views kept in
    /// memory reload it.
    pub(crate) fn tree_rebuilt(&self) {
        let mut touched = crate::lock(&self.touched);
        let version = *self.changed.borrow() + 1;
        touched.paths.clear();
        touched.dropped = version;
        self.changed.send_modify(|n| *n = version);
        self.replica.wake.notify_one();
    }

    /// Sends `msg` on every session (a session too slow to take it ends,
    /// and reconciles when it reconnects).
    pub(crate) fn send_all(&self, msg: &Arc<p2pfs_proto::room::SyncMsg>) {
        for s in self.overlay.snapshot().sessions.values() {
            if s.tx.try_send(Out::Shared(msg.clone())).is_err() {
                s.cancel.cancel();
            }
        }
    }
}
