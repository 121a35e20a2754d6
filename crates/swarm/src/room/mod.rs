//! Rooms: groups of members sharing a file tree and a chat, with no server.
//!
//! - `entry`: signing and verifying log entries.
//! - `log`: the room's log in the store; accepting entries after their
//!   parents; this node's own entries.
//! - `view`: the file tree and the chat, derived from the log.
//! - `listing`: a room's listing kept up to date path by path (the
//!   mount's), at the cost of the paths that changed.
//! - `render`: chat text and names made safe to show, names that could
//!   pass for another member's qualified with the short id.
//! - `order`: one canonical order of the entries, the same on every member.
//! - `transcript`: the chat as `p2pfs chat` prints it, in that order.
//! - `sync`: the room protocol between two members (proof of membership
//!   bound to the connection, then reconciliation and live pushes).
//! - `runtime`: per room, finding members (ticket, learned addresses,
//!   the DHT under the room's key) and keeping sessions with them.
//! - `query`: reading rooms from the store, with or without a node.
//!
//! Privacy: only peers that proved membership get anything of a room, and
//! blobs that are only reachable through a room are served to members only
//! and never announced in the public DHT ([`Node::may_serve`]).

pub(crate) mod entry;
pub(crate) mod handler;
pub mod listing;
pub(crate) mod log;
pub(crate) mod mesh;
pub(crate) mod order;
pub mod query;
pub(crate) mod registry;
pub mod render;
pub(crate) mod runtime;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub(crate) mod sync;
pub(crate) mod transcript;
pub(crate) mod view;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use p2pfs_proto::{
    Hash, NodeAddr, NodeId, RoomId, RoomSecret, RoomTicket,
    room::{Attr, FileId, Meta, Op, Time, check_path, valid_display_name},
};
use p2pfs_store::RoomInfo;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use self::view::{FileEntry, FileKind};
use self::{entry::Verified, sync::Out};
use crate::{Node, SwarmError, Target, blocking};

/// Most entries kept waiting for their parents, per room.
const MAX_PENDING: usize = 10_000;
/// How long an entry may wait for its parents.
const PENDING_TTL: Duration = Duration::from_secs(120);

/// The pin name under which a room keeps its blobs.
pub fn pin_name(room: &RoomId) -> String {
    format!("room:{room}")
}

/// A room's tree lock, held ([`Node::lock_tree`]).
#[derive(Debug)]
pub struct TreeLock {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    room: RoomId,
}

/// A new file id: random, so two files never share one (content alone
/// cannot tell a hard link from a copy).
pub fn new_file_id() -> FileId {
    fastrand::u128(..).to_le_bytes()
}

/// A change to a room's tree, for [`Node::room_apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `path` now holds this content (replacing what it held).
    Put {
        /// The path in the room.
        path: String,
        /// The content.
        hash: Hash,
        /// Its size.
        size: u64,
        /// Permission bits and times.
        attr: Attr,
        /// Which file it is a name of (a new one if `None`).
        inode: Option<FileId>,
        /// The entries this version was made from (what was live at `path`
        /// when the writer opened it): only those are replaced, so a
        /// version another member published meanwhile stays, as a conflict
        /// copy. `None`: whatever is live at `path` now.
        base: Option<Vec<Hash>>,
    },
    /// `path` is removed: every live entry there, or `only` these.
    Delete {
        /// The path in the room.
        path: String,
        /// The entries to remove (a conflict copy); all if `None`.
        only: Option<Vec<Hash>>,
    },
    /// `path` is a directory (kept even when empty).
    Mkdir {
        /// The path in the room.
        path: String,
        /// Its permission bits and times.
        attr: Attr,
    },
    /// `path` is a symbolic link to `target` (replacing what it held).
    Symlink {
        /// The path in the room.
        path: String,
        /// What it points to.
        target: String,
        /// Its times (the mode is ignored).
        attr: Attr,
    },
}

impl Change {
    /// The path it is about.
    pub fn path(&self) -> &str {
        match self {
            Change::Put { path, .. }
            | Change::Delete { path, .. }
            | Change::Mkdir { path, .. }
            | Change::Symlink { path, .. } => path,
        }
    }
}

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
    /// Entries waiting for their parents.
    pub(crate) pending: Mutex<Vec<(Instant, Verified)>>,
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
    touched: Mutex<Touched>,
    /// Keeping the room's files on enough members.
    pub(crate) replica: crate::replica::RoomReplica,
    /// Whom to keep sessions with, where pushes go, who is online.
    pub(crate) mesh: Mutex<mesh::Mesh>,
    /// The mesh's clock starts here.
    clock: Instant,
}

/// See [`Room::touched`].
#[derive(Debug, Default)]
struct Touched {
    paths: std::collections::VecDeque<(u64, String)>,
    /// The newest version among the paths dropped to stay bounded.
    dropped: u64,
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

    fn new(info: &RoomInfo, cancel: CancellationToken, me: NodeId, config: mesh::Config) -> Self {
        let mut nodes = BTreeMap::new();
        let mut mesh = mesh::Mesh::new(me, config);
        for n in &info.nodes {
            nodes.insert(n.id, n.addrs.clone());
            if !n.addrs.is_empty() {
                mesh.learn(n.id);
            }
        }
        Self {
            id: info.secret.id(),
            secret: info.secret.clone(),
            name: Mutex::new(info.name.clone()),
            nodes: Mutex::new(nodes),
            sessions: Mutex::new(HashMap::new()),
            members: Mutex::new(HashSet::new()),
            pending: Mutex::new(Vec::new()),
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
        }
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

/// A room as `p2pfs room list` shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RoomSummary {
    /// The local name.
    pub name: String,
    /// The room id.
    pub id: RoomId,
    /// Entries in the log.
    pub entries: u64,
    /// Bytes of the log (every entry as sent).
    pub log_bytes: u64,
    /// Members that wrote to the log.
    pub members: usize,
    /// Files in the tree.
    pub files: usize,
    /// Members with a live session (none without a running node).
    pub online: usize,
}

fn now_secs() -> u64 {
    log::now_ms() / 1000
}

/// The host name, the default display name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| valid_display_name(s))
        .unwrap_or_else(|| "p2pfs".into())
}

impl Node {
    /// Starts the rooms in the store (at node start).
    pub(crate) async fn start_rooms(&self) -> Result<(), SwarmError> {
        let store = self.store().clone();
        let infos = blocking(move || store.rooms()).await?;
        for info in infos {
            self.start_room(&info).await?;
        }
        Ok(())
    }

    /// Tells every room this node is in its display name, where it is not
    /// the one this node last gave there (it changed while the node was
    /// stopped). A daemon does this at start; a node run for one command
    /// does not, so a name set for one command does not flip the name
    /// back and forth in the logs.
    pub async fn publish_name(&self) {
        for room in self.all_rooms() {
            if let Err(e) = self.publish_name_in(&room).await {
                tracing::warn!(room = %room.name(), "could not post the new display name: {e}");
            }
        }
    }

    /// Posts this node's display name in `room` unless it is the one this
    /// node last posted there.
    async fn publish_name_in(&self, room: &Room) -> Result<(), SwarmError> {
        let name = self.display_name();
        let (store, id, me) = (self.store().clone(), room.id, self.id());
        let last = blocking(move || query::member_name(&store, &id, &me)).await?;
        if last.as_deref() != Some(name.as_str()) {
            tracing::info!(room = %room.id.fmt_short(), %name, "display name changed: telling the room");
            self.post(room, Op::Meta(Meta::MemberName(name))).await?;
        }
        Ok(())
    }

    async fn start_room(&self, info: &RoomInfo) -> Result<Arc<Room>, SwarmError> {
        let id = info.secret.id();
        let (store, rid) = (self.store().clone(), id);
        let rebuilt = blocking(move || log::catch_up_views(&store, &rid)).await?;
        if rebuilt > 0 {
            tracing::info!(room = %info.name, entries = rebuilt, "room views rebuilt from the log");
        }
        let config = mesh::Config {
            offline_after_ms: u64::try_from(self.offline_after().as_millis()).unwrap_or(u64::MAX),
            ..mesh::Config::default()
        };
        let room = Arc::new(Room::new(
            info,
            self.net().cancel().child_token(),
            self.id(),
            config,
        ));
        {
            let (store, rid) = (self.store().clone(), id);
            let authors = blocking(move || store.room_have(&rid)).await?;
            crate::lock(&room.members).extend(authors.into_iter().map(|(a, _)| a));
        }
        self.inner.rooms.insert(room.clone());
        let net = self.net();
        net.spawn(runtime::run(self.clone(), room.clone()));
        if let Some(rep) = &self.inner.replica {
            net.spawn(crate::replica::runtime::run(self.clone(), room.clone()));
            net.spawn(crate::replica::presence::run(
                self.clone(),
                room.clone(),
                rep.config.heartbeat(),
            ));
        }
        Ok(room)
    }

    pub(crate) fn room(&self, id: &RoomId) -> Option<Arc<Room>> {
        self.inner.rooms.get(id)
    }

    /// The running room with this id, if this node is in it.
    pub fn find_room_now(&self, id: &RoomId) -> Option<Arc<Room>> {
        self.room(id)
    }

    /// A receiver that changes whenever a room starts or is left.
    pub fn room_set_changes(&self) -> watch::Receiver<u64> {
        self.inner.rooms.changes()
    }

    /// The rooms this node is in.
    pub fn all_rooms(&self) -> Vec<Arc<Room>> {
        self.inner.rooms.all()
    }

    /// Finds a room by local name, id or id prefix.
    pub async fn find_room(&self, name: &str) -> Result<Arc<Room>, SwarmError> {
        let rooms = self.all_rooms();
        if let Some(r) = rooms.iter().find(|r| r.name() == name) {
            return Ok(r.clone());
        }
        let by_id: Vec<&Arc<Room>> = rooms
            .iter()
            .filter(|r| name.len() >= 6 && r.id.to_string().starts_with(name))
            .collect();
        match by_id.as_slice() {
            [one] => Ok((*one).clone()),
            _ => Err(crate::error::RoomError::NoSuchRoom(name.to_string()).into()),
        }
    }

    /// This node's display name in rooms.
    pub fn display_name(&self) -> String {
        self.inner.rooms.display()
    }

    /// Creates a room named `name`; returns its ticket.
    pub async fn create_room(&self, name: &str) -> Result<RoomTicket, SwarmError> {
        if !valid_display_name(name) {
            return Err(crate::error::RoomError::BadName(name.to_string()).into());
        }
        self.check_name_free(name)?;
        let mut seed = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
            .map_err(|_| crate::error::SetupError::Random)?;
        let info = RoomInfo {
            secret: RoomSecret(seed),
            name: name.to_string(),
            nodes: vec![],
            joined: now_secs(),
        };
        let store = self.store().clone();
        let i = info.clone();
        blocking(move || store.put_room(&i)).await?;
        let room = self.start_room(&info).await?;
        self.post(&room, Op::Meta(Meta::RoomName(name.to_string())))
            .await?;
        self.post(&room, Op::Meta(Meta::MemberName(self.display_name())))
            .await?;
        Ok(self.room_ticket(&room))
    }

    fn check_name_free(&self, name: &str) -> Result<(), SwarmError> {
        if self.all_rooms().iter().any(|r| r.name() == name) {
            return Err(crate::error::RoomError::NameTaken(name.to_string()).into());
        }
        Ok(())
    }

    /// Joins the room of `ticket` under `name` (default: the ticket's).
    /// Returns the local name.
    pub async fn join_room(
        &self,
        ticket: &RoomTicket,
        name: Option<&str>,
    ) -> Result<String, SwarmError> {
        let id = ticket.secret.id();
        if let Some(r) = self.room(&id) {
            return Err(crate::error::RoomError::AlreadyIn(crate::lock(&r.name).clone()).into());
        }
        let name = name.unwrap_or(&ticket.name).to_string();
        if !valid_display_name(&name) {
            return Err(crate::error::RoomError::BadName(name).into());
        }
        self.check_name_free(&name)?;
        let info = RoomInfo {
            secret: ticket.secret.clone(),
            name: name.clone(),
            nodes: ticket
                .nodes
                .iter()
                .filter(|n| n.id != self.id())
                .cloned()
                .collect(),
            joined: now_secs(),
        };
        let store = self.store().clone();
        let i = info.clone();
        blocking(move || store.put_room(&i)).await?;
        let room = self.start_room(&info).await?;
        room.sync_before_write.store(true, Ordering::Relaxed);
        self.post(&room, Op::Meta(Meta::MemberName(self.display_name())))
            .await?;
        Ok(name)
    }

    /// Leaves a room: stops syncing it and forgets its log, views and pins.
    pub async fn leave_room(&self, room: &Arc<Room>) -> Result<(), SwarmError> {
        room.cancel.cancel();
        self.inner.rooms.remove(&room.id);
        let (store, id) = (self.store().clone(), room.id);
        blocking(move || {
            let mut blobs = Vec::new();
            for (k, _) in store.room_view_range(&id, view::BLOBS, None, usize::MAX)? {
                if let Ok(b) = <[u8; 32]>::try_from(&k[view::BLOBS.len()..]) {
                    blobs.push(Hash::from_bytes(b));
                }
            }
            store.set_pins(&blobs, &pin_name(&id), false)?;
            store.set_pins(&blobs, &crate::replica::keep_pin_name(&id), false)?;
            store.remove_room(&id)
        })
        .await?;
        Ok(())
    }

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

    /// Writes an entry to `room` and pushes it to the members online.
    pub(crate) async fn post(&self, room: &Room, op: Op) -> Result<Hash, SwarmError> {
        let hashes = self.post_all(room, vec![op]).await?;
        hashes
            .last()
            .copied()
            .ok_or(SwarmError::Room(crate::error::RoomError::NothingWritten))
    }

    /// Writes entries to `room` in one transaction and pushes them.
    pub(crate) async fn post_all(
        &self,
        room: &Room,
        ops: Vec<Op>,
    ) -> Result<Vec<Hash>, SwarmError> {
        if room.sync_before_write.swap(false, Ordering::Relaxed) {
            // A member that left and joined again continues its chain
            // rather than forking it.
            self.room_wait_synced(room, Duration::from_secs(5)).await;
        }
        let (store, secret) = (self.store().clone(), room.secret.clone());
        let node = self.clone();
        let entries =
            crate::off_thread(move || log::author_all(&store, node.secret_key(), &secret, ops))
                .await??;
        room.broadcast(&entries, None);
        Ok(entries.iter().map(|e| e.hash).collect())
    }

    /// Posts chat lines (one message per line; empty lines are skipped).
    pub async fn chat(&self, room: &Room, text: &str) -> Result<usize, SwarmError> {
        let mut ops = Vec::new();
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if line.is_empty() {
                continue;
            }
            if line.len() > p2pfs_proto::room::MAX_TEXT {
                return Err(crate::error::RoomError::LineTooLong.into());
            }
            ops.push(Op::Chat {
                text: line.to_string(),
            });
        }
        let n = ops.len();
        // Large posts in transactions of a few thousand lines.
        let mut rest = ops;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(4096));
            self.post_all(room, rest).await?;
            rest = tail;
        }
        Ok(n)
    }

    /// The live entries at `path`, which a new entry for it replaces.
    async fn live_at(&self, room: &Room, path: &str) -> Result<Vec<Hash>, SwarmError> {
        let (store, id, p) = (self.store().clone(), room.id, path.to_string());
        blocking(move || query::live_entries(&store, &id, &p)).await
    }

    /// Publishes the file at `file` (an absolute path) in `room` as `path`.
    pub async fn room_put(
        &self,
        room: &Room,
        file: &Path,
        path: &str,
    ) -> Result<(Hash, u64), SwarmError> {
        check_path(path).map_err(crate::error::RoomError::BadPath)?;
        let meta = std::fs::metadata(file)
            .map_err(|e| SwarmError::io(format!("reading {}", file.display()), e))?;
        if !meta.is_file() {
            return Err(crate::error::RoomError::NotAFile(file.to_path_buf()).into());
        }
        let (store, f, pin) = (self.store().clone(), file.to_path_buf(), pin_name(&room.id));
        let imported = blocking(move || store.import_file(&f, Some(&pin))).await?;
        use std::os::unix::fs::MetadataExt;
        let attr = Attr {
            mode: (meta.mode() & u32::from(p2pfs_proto::room::MAX_MODE)) as u16,
            mtime: Time {
                secs: meta.mtime(),
                nanos: meta.mtime_nsec().clamp(0, 999_999_999) as u32,
            },
            atime: Time {
                secs: meta.atime(),
                nanos: meta.atime_nsec().clamp(0, 999_999_999) as u32,
            },
            ctime: Time::from_system(std::time::SystemTime::now()),
        };
        let _tree = room.tree_lock.lock().await;
        self.check_shape(room, path).await?;
        let replaces = self.live_at(room, path).await?;
        self.post(
            room,
            Op::File {
                path: path.to_string(),
                hash: imported.hash,
                size: imported.size,
                attr,
                inode: new_file_id(),
                replaces,
            },
        )
        .await?;
        Ok((imported.hash, imported.size))
    }

    /// Checks that a file can be put at `path` as the room's tree stands:
    /// no file where a directory of the path is, no directory at it.
    async fn check_shape(&self, room: &Room, path: &str) -> Result<(), SwarmError> {
        let (store, id) = (self.store().clone(), room.id);
        let listing = blocking(move || query::ls(&store, &id)).await?;
        let kinds: HashMap<&str, bool> = listing
            .iter()
            .map(|e| (e.path.as_str(), matches!(e.kind, FileKind::Dir { .. })))
            .collect();
        for (i, _) in path.match_indices('/') {
            let dir = &path[..i];
            if kinds.get(dir) == Some(&false) {
                return Err(crate::error::RoomError::FileInTheWay(dir.to_string()).into());
            }
        }
        if kinds.get(path) == Some(&true) {
            return Err(crate::error::RoomError::IsADirectory(path.to_string()).into());
        }
        Ok(())
    }

    /// Applies tree changes to `room` as entries written in one
    /// transaction (the mount's writes, renames and deletes). Returns the
    /// entry each change wrote, in order (`None` for a delete of nothing).
    pub async fn room_apply(
        &self,
        room: &Room,
        changes: Vec<Change>,
    ) -> Result<Vec<Option<Hash>>, SwarmError> {
        let tree = self.lock_tree(room).await;
        self.room_apply_locked(room, &tree, changes).await
    }

    /// Takes `room`'s tree lock: no other change to its tree is worked
    /// out or written until the [`TreeLock`] is dropped. For a change made
    /// from what the tree shows (a rename, say), held from reading it to
    /// [`Node::room_apply_locked`].
    pub async fn lock_tree(&self, room: &Room) -> TreeLock {
        TreeLock {
            _guard: room.tree_lock.clone().lock_owned().await,
            room: room.id,
        }
    }

    /// [`Node::room_apply`] with the room's tree lock already held.
    pub async fn room_apply_locked(
        &self,
        room: &Room,
        lock: &TreeLock,
        changes: Vec<Change>,
    ) -> Result<Vec<Option<Hash>>, SwarmError> {
        if lock.room != room.id {
            return Err(crate::error::RoomError::WrongLock.into());
        }
        let mut ops = Vec::with_capacity(changes.len());
        // Whether each change became an op.
        let mut written = Vec::with_capacity(changes.len());
        for c in changes {
            let path = c.path().to_string();
            check_path(&path).map_err(crate::error::RoomError::BadPath)?;
            let replaces = match &c {
                Change::Delete {
                    only: Some(entries),
                    ..
                }
                | Change::Put {
                    base: Some(entries),
                    ..
                } => entries.clone(),
                _ => self.live_at(room, &path).await?,
            };
            let op = match c {
                Change::Put {
                    path,
                    hash,
                    size,
                    attr,
                    inode,
                    ..
                } => Op::File {
                    path,
                    hash,
                    size,
                    attr,
                    inode: inode.unwrap_or_else(new_file_id),
                    replaces,
                },
                Change::Delete { path, .. } if !replaces.is_empty() => {
                    Op::Delete { path, replaces }
                }
                Change::Delete { .. } => {
                    written.push(false);
                    continue;
                }
                Change::Mkdir { path, attr } => Op::Dir {
                    path,
                    attr,
                    replaces,
                },
                Change::Symlink { path, target, attr } => Op::SymlinkAt {
                    path,
                    target,
                    attr,
                    replaces,
                },
            };
            ops.push(op);
            written.push(true);
        }
        let mut hashes = if ops.is_empty() {
            Vec::new()
        } else {
            self.post_all(room, ops).await?
        }
        .into_iter();
        Ok(written
            .into_iter()
            .map(|w| if w { hashes.next() } else { None })
            .collect())
    }

    /// Removes `path` from `room`'s tree.
    pub async fn room_delete(&self, room: &Room, path: &str) -> Result<(), SwarmError> {
        check_path(path).map_err(crate::error::RoomError::BadPath)?;
        let _tree = room.tree_lock.lock().await;
        let replaces = self.live_at(room, path).await?;
        if replaces.is_empty() {
            return Err(crate::error::RoomError::NoSuchFile(path.to_string()).into());
        }
        self.post(
            room,
            Op::Delete {
                path: path.to_string(),
                replaces,
            },
        )
        .await?;
        Ok(())
    }

    /// Makes the file `path` of `room` complete in the store, fetching it
    /// from the members that have it. Returns its hash.
    pub async fn room_fetch(&self, room: &Room, path: &str) -> Result<Hash, SwarmError> {
        let (store, id, p) = (self.store().clone(), room.id, path.to_string());
        let file = blocking(move || query::file(&store, &id, &p)).await?;
        let Some(FileEntry {
            kind: FileKind::File { hash, author, .. },
            ..
        }) = file
        else {
            return Err(crate::error::RoomError::NoSuchFile(path.to_string()).into());
        };
        let (store, pin) = (self.store().clone(), pin_name(&room.id));
        let complete = blocking(move || {
            store.pin(&hash, &pin)?;
            Ok(store
                .info(&hash)?
                .is_some_and(|i| i.state == p2pfs_store::BlobState::Complete))
        })
        .await?;
        if complete {
            return Ok(hash);
        }
        let targets = self.room_providers(room, author, hash)?;
        crate::transfer::download::run(&self.inner.blobs, hash, targets, None, None).await?;
        Ok(hash)
    }

    /// Fetches the chunk groups of `hash` covering the bytes `want` from
    /// the members of `room` (`author` first), into the store.
    pub async fn room_fetch_range(
        &self,
        room: &Room,
        hash: Hash,
        author: NodeId,
        want: std::ops::Range<u64>,
    ) -> Result<(), SwarmError> {
        let targets = self.room_providers(room, author, hash)?;
        crate::transfer::download::run(&self.inner.blobs, hash, targets, Some(want), None).await?;
        Ok(())
    }

    /// Where to fetch a room file from: its author first, then the
    /// members online, then the others with a known address.
    fn room_providers(
        &self,
        room: &Room,
        author: NodeId,
        hash: Hash,
    ) -> Result<Vec<Target>, SwarmError> {
        let mut targets: Vec<Target> = Vec::new();
        let known = crate::lock(&room.nodes).clone();
        let online = room.online();
        let mut order: Vec<NodeId> = vec![author];
        order.extend(online.iter().copied());
        order.extend(known.keys().copied());
        let mut seen = HashSet::new();
        for id in order {
            if id == self.id() || !seen.insert(id) {
                continue;
            }
            let addrs = known.get(&id).cloned().unwrap_or_default();
            if addrs.is_empty() && !online.contains(&id) {
                continue;
            }
            targets.push(Target {
                id: Some(id),
                addrs,
            });
        }
        if targets.is_empty() {
            return Err(SwarmError::Unavailable {
                hash,
                reason: "no member of the room is known to be reachable".into(),
            });
        }
        Ok(targets)
    }

    /// The members `ids` as download targets (those with a known address
    /// or a session).
    pub(crate) fn room_targets(
        &self,
        room: &Room,
        ids: &[NodeId],
        hash: Hash,
    ) -> Result<Vec<Target>, SwarmError> {
        let known = crate::lock(&room.nodes).clone();
        let online = room.online();
        let mut seen = HashSet::new();
        let targets: Vec<Target> = ids
            .iter()
            .filter(|id| **id != self.id() && seen.insert(**id))
            .filter_map(|id| {
                let addrs = known.get(id).cloned().unwrap_or_default();
                (!addrs.is_empty() || online.contains(id)).then_some(Target {
                    id: Some(*id),
                    addrs,
                })
            })
            .collect();
        if targets.is_empty() {
            return Err(SwarmError::Unavailable {
                hash,
                reason: "no member online holds it".into(),
            });
        }
        Ok(targets)
    }

    /// Waits until every member online has the entries written so far
    /// (or `timeout`). Returns how many members confirmed.
    pub async fn room_flush(&self, room: &Room, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        let handles: Vec<sync::Handle> = crate::lock(&room.sessions).values().cloned().collect();
        let mut waits = Vec::new();
        for h in handles {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if h.tx.send(Out::Have(Some(tx))).await.is_ok() {
                waits.push(rx);
            }
        }
        // Each member counts if it confirms before the one deadline.
        let mut confirmed = 0;
        for w in waits {
            if let Ok(Ok(())) = tokio::time::timeout_at(deadline, w).await {
                confirmed += 1;
            }
        }
        confirmed
    }

    /// Waits until a first member is connected and reconciled (or
    /// `timeout`); false if none was.
    pub async fn room_wait_synced(&self, room: &Room, timeout: Duration) -> bool {
        let mut rx = room.synced.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|n| *n > 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The paths of `room`'s tree changed since the log's change counter
    /// (see [`Node::room_changes`]) was `since`; `None` if that is too
    /// long ago to tell (reload the whole view then).
    pub fn room_touched_since(&self, room: &Room, since: u64) -> Option<Vec<String>> {
        let touched = crate::lock(&room.touched);
        if since < touched.dropped {
            return None;
        }
        Some(
            touched
                .paths
                .iter()
                .filter(|(v, _)| *v > since)
                .map(|(_, p)| p.clone())
                .collect(),
        )
    }

    /// A receiver that changes whenever `room`'s log grows.
    pub fn room_changes(&self, room: &Room) -> watch::Receiver<u64> {
        room.changed.subscribe()
    }

    /// Rooms with their live session counts.
    pub async fn room_summaries(&self) -> Result<Vec<RoomSummary>, SwarmError> {
        let store = self.store().clone();
        let mut list = blocking(move || query::summaries(&store)).await?;
        for s in &mut list {
            if let Some(r) = self.room(&s.id) {
                s.online = r.online().len();
            }
        }
        Ok(list)
    }
}

/// Keeps the number of pending entries bounded and drops stale ones.
pub(crate) fn trim_pending(pending: &mut Vec<(Instant, Verified)>) {
    pending.retain(|(t, _)| t.elapsed() < PENDING_TTL);
    if pending.len() > MAX_PENDING {
        let extra = pending.len() - MAX_PENDING;
        pending.drain(..extra);
    }
}

/// Counter of sync bytes received in `room` (figures).
pub fn bytes_received(node: &Node, room: &RoomId) -> u64 {
    node.room(room)
        .map_or(0, |r| r.bytes_in.load(Ordering::Relaxed))
}

/// Checks an encoded entry for the room of `secret` (bounds, membership
/// tag, signature) and returns its hash. For tools, fuzzing and figures;
/// the node checks entries the same way.
pub fn verify_entry(
    secret: &RoomSecret,
    bytes: Vec<u8>,
) -> Result<Hash, p2pfs_proto::room::EntryError> {
    entry::verify(secret, &secret.id(), bytes).map(|v| v.hash)
}

/// Signs a chat entry (for tools and figures): `seq` in the author's
/// chain, after `parents`.
pub fn sign_chat(
    key: &crate::identity::SecretKey,
    secret: &RoomSecret,
    seq: u64,
    parents: Vec<Hash>,
    text: &str,
) -> Result<(Hash, Vec<u8>), p2pfs_proto::room::EntryError> {
    let e = entry::sign(
        key,
        secret,
        seq,
        parents,
        log::now_ms(),
        Op::Chat { text: text.into() },
    )?;
    Ok((e.hash, e.bytes))
}
