//! [`Room`]: the shared handle to a running room, its state while the node
//! runs, and pushing to its sessions.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex, atomic::AtomicU64},
    time::Instant,
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
    mesh, sync,
    sync::Out,
};

/// A room this node is in, while the node runs.
#[derive(Debug)]
pub struct Room {
    pub(crate) secret: RoomSecret,
    pub(crate) id: RoomId,
    pub(crate) name: Mutex<String>,
    /// Members and where to reach them.
    pub(crate) nodes: Mutex<BTreeMap<NodeId, Vec<SocketAddr>>>,
    /// Live sessions, by member.
    pub(crate) sessions: Mutex<HashMap<NodeId, sync::Handle>>,
    /// Peers that proved membership while this node runs.
    pub(crate) members: Mutex<HashSet<NodeId>>,
    /// The task that owns the log: every entry in goes through it.
    pub(crate) log: LogHandle,
    /// Bumped whenever the log grows.
    pub(crate) changed: watch::Sender<u64>,
    /// Bumped whenever a session finishes a reconciliation.
    pub(crate) synced: watch::Sender<u64>,
    /// Wakes the runtime (a new address to dial).
    pub(crate) wake: tokio::sync::Notify,
    pub(crate) cancel: CancellationToken,
    /// Bytes of sync messages received (for the figures).
    pub(crate) bytes_in: AtomicU64,
    /// Bumped when a member or a new address is learned.
    pub(crate) nodes_version: AtomicU64,
    /// Bumped whenever a session with a member starts.
    pub(crate) arrivals: AtomicU64,
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
    pub(crate) replica: crate::replica::RoomReplica,
    /// Whom to keep sessions with, where pushes go, who is online.
    pub(crate) mesh: Mutex<mesh::Mesh>,
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

    /// A room and its log task (to run once the room is shared).
    pub(super) fn new(
        info: &RoomInfo,
        cancel: CancellationToken,
        me: NodeId,
        config: mesh::Config,
    ) -> (Self, LogTask) {
        let (log, task) = log_task();
        let mut nodes = BTreeMap::new();
        let mut mesh = mesh::Mesh::new(me, config);
        for n in &info.nodes {
            nodes.insert(n.id, n.addrs.clone());
            if !n.addrs.is_empty() {
                mesh.learn(n.id);
            }
        }
        let room = Self {
            id: info.secret.id(),
            secret: info.secret.clone(),
            name: Mutex::new(info.name.clone()),
            nodes: Mutex::new(nodes),
            sessions: Mutex::new(HashMap::new()),
            members: Mutex::new(HashSet::new()),
            log,
            changed: watch::Sender::new(0),
            synced: watch::Sender::new(0),
            wake: tokio::sync::Notify::new(),
            cancel,
            bytes_in: AtomicU64::new(0),
            nodes_version: AtomicU64::new(0),
            arrivals: AtomicU64::new(0),
            sync_before_write: std::sync::atomic::AtomicBool::new(false),
            tree_lock: Arc::new(tokio::sync::Mutex::new(())),
            touched: Mutex::new(Touched::default()),
            replica: crate::replica::RoomReplica::default(),
            mesh: Mutex::new(mesh),
            clock: Instant::now(),
        };
        (room, task)
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
        let sessions = crate::lock(&self.sessions);
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

    /// Sends `msg` on the sessions with `peers` (a session too slow to
    /// take it ends, and reconciles when it reconnects).
    pub(crate) fn send_to(&self, peers: &[NodeId], msg: &Arc<p2pfs_proto::room::SyncMsg>) {
        let sessions = crate::lock(&self.sessions);
        for peer in peers {
            if let Some(s) = sessions.get(peer)
                && s.tx.try_send(Out::Shared(msg.clone())).is_err()
            {
                s.cancel.cancel();
            }
        }
    }
}
