//! Leaving: before a replica stops, what only it keeps reaches other
//! members, and then it says goodbye.
//!
//! [`Node::leave`] tells every room's members that this replica is leaving
//! (`SyncMsg::Leaving`): it is no longer a candidate, so placement gives
//! its files to others, who fetch them from it at once. It then waits, for
//! a bounded time, until every file it keeps is kept by another member
//! online too (or no member online could take it). [`Node::goodbye`],
//! called when the node shuts down, tells them it is gone
//! (`SyncMsg::Goodbye`), so they count it offline and copy again what it
//! kept without waiting for the offline timeout.
//!
//! A node started for one command is no replica, yet a file it puts is
//! kept nowhere else: [`Node::hand_over`] makes it a replica that keeps
//! just that file and is leaving at once, until a member keeps it too.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use p2pfs_proto::{
    Hash, NodeId,
    room::{Status, SyncMsg},
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::Phase;
use crate::{
    Node, blocking,
    room::{FileKind, Room, query, sync::Out},
};

/// How often the wait looks at what the members say they keep.
const POLL: Duration = Duration::from_millis(200);
/// How long a goodbye waits for the members online to take it in.
const GOODBYE_WAIT: Duration = Duration::from_secs(2);

/// How leaving goes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaveProgress {
    /// Files kept only here that a member online may still take.
    pub waiting: usize,
    /// Their bytes.
    pub waiting_bytes: u64,
    /// The wait is over.
    pub done: bool,
    /// When done: the files that still have no copy but this one.
    pub only_here: Vec<OnlyHere>,
}

/// A file whose only copy among the members online is this node's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnlyHere {
    /// The room's local name.
    pub room: String,
    /// The file's path in the room (the first, if several show it).
    pub path: String,
    /// Its size.
    pub size: u64,
}

/// A room's files kept here: hash → (path, size).
type Kept = HashMap<Hash, (String, u64)>;

/// What of `kept` no other member online keeps, and whether one online
/// could still take it (a member that is not leaving).
fn only_here(room: &Room, me: NodeId, kept: &Kept) -> (Vec<Hash>, bool) {
    let peers = crate::lock(&room.replica.peers);
    let now = std::time::Instant::now();
    let mut elsewhere: HashSet<Hash> = HashSet::new();
    let mut takers = false;
    for (_, p) in peers.online(now).filter(|(id, _)| **id != me) {
        if !p.leaving {
            takers |= !p.full;
            elsewhere.extend(p.holds.iter().copied());
        }
    }
    let alone = kept
        .keys()
        .filter(|h| !elsewhere.contains(h))
        .copied()
        .collect();
    (alone, takers)
}

impl Node {
    /// Starts leaving every room (once; later calls follow the same
    /// wait): waits at most `timeout` (default: the configured
    /// `leave_timeout`) for the files only this node keeps to reach
    /// another member. The receiver shows how it goes and ends with
    /// `done`. A node that is not a replica has nothing to wait for.
    pub fn leave(&self, timeout: Option<Duration>) -> watch::Receiver<LeaveProgress> {
        let Some(rep) = self.inner.replica.as_ref() else {
            return watch::channel(LeaveProgress {
                done: true,
                ..LeaveProgress::default()
            })
            .1;
        };
        let mut slot = crate::lock(&rep.leave);
        if let Some(rx) = slot.as_ref() {
            return rx.clone();
        }
        let timeout = timeout.unwrap_or(rep.config.leave_timeout);
        let (tx, rx) = watch::channel(LeaveProgress::default());
        *slot = Some(rx.clone());
        drop(slot);
        let node = self.clone();
        tokio::spawn(async move {
            let last = wait_for_copies(&node, timeout, &tx).await;
            tx.send_replace(last);
        });
        rx
    }

    /// Tells every room's members that this node is gone, and waits
    /// briefly until those online have taken it in.
    pub(crate) async fn goodbye(&self) {
        let mut waits = tokio::task::JoinSet::new();
        for room in self.all_rooms() {
            if room.replica.phase.send_replace(Phase::Gone) == Phase::Gone {
                continue;
            }
            if let Some(rep) = &self.inner.replica {
                super::presence::goodbye(self, &room, rep.config.heartbeat());
            }
            let sessions: Vec<_> = room.overlay.snapshot().sessions.values().cloned().collect();
            for s in sessions {
                let _ = s.tx.try_send(Out::Msg(SyncMsg::Goodbye));
            }
            let node = self.clone();
            waits.spawn(async move { node.room_flush(&room, GOODBYE_WAIT).await });
        }
        while waits.join_next().await.is_some() {}
    }
}

impl Node {
    /// For a node that is no replica (one started for a command): offers
    /// `hashes` of `room` to its members as a replica that is leaving, and
    /// waits at most `timeout` until a member online keeps each of them;
    /// then says goodbye. Returns those still kept only here (all of them
    /// if no member is online).
    pub async fn hand_over(&self, room: &Room, hashes: &[Hash], timeout: Duration) -> Vec<Hash> {
        if self.inner.replica.is_some() || hashes.is_empty() {
            return Vec::new();
        }
        let sessions: Vec<_> = room.overlay.snapshot().sessions.values().cloned().collect();
        if sessions.is_empty() {
            return hashes.to_vec();
        }
        let heartbeat_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        for s in &sessions {
            let status = Status {
                full: false,
                reset: true,
                heartbeat_ms,
                add: hashes.to_vec(),
                remove: Vec::new(),
            };
            let _ = s.tx.try_send(Out::Msg(SyncMsg::Status(status)));
            let _ = s.tx.try_send(Out::Msg(SyncMsg::Leaving));
        }
        let kept: Kept = hashes.iter().map(|h| (*h, (String::new(), 0))).collect();
        self.wait_then_goodbye(room, &sessions, &kept, timeout)
            .await
    }

    /// Waits at most `timeout` until nothing of `kept` is kept only here
    /// (while a member online could take it), then says goodbye on
    /// `sessions`. Returns what is still kept only here.
    async fn wait_then_goodbye(
        &self,
        room: &Room,
        sessions: &[crate::room::sync::Handle],
        kept: &Kept,
        timeout: Duration,
    ) -> Vec<Hash> {
        let deadline = tokio::time::Instant::now() + timeout;
        let alone = loop {
            let (alone, takers) = only_here(room, self.id(), kept);
            if alone.is_empty() || !takers || tokio::time::Instant::now() >= deadline {
                break alone;
            }
            tokio::time::sleep(POLL).await;
        };
        for s in sessions {
            let _ = s.tx.try_send(Out::Msg(SyncMsg::Goodbye));
        }
        self.room_flush(room, GOODBYE_WAIT).await;
        alone
    }
}

impl Node {
    /// Before this node leaves `room` for good (`room leave`): tells its
    /// members it is leaving, waits at most `timeout` until what only this
    /// node keeps of the room is kept by a member online (while one could
    /// take it), then says goodbye. Returns the files still kept only here.
    pub(crate) async fn hand_over_room(&self, room: &Room, timeout: Duration) -> Vec<OnlyHere> {
        let (store, id) = (self.store().clone(), room.id);
        let kept = blocking(move || kept_of(&store, &id))
            .await
            .unwrap_or_default();
        let sessions: Vec<_> = room.overlay.snapshot().sessions.values().cloned().collect();
        for s in &sessions {
            let _ = s.tx.try_send(Out::Msg(SyncMsg::Leaving));
        }
        self.wait_then_goodbye(room, &sessions, &kept, timeout)
            .await
            .into_iter()
            .filter_map(|h| {
                kept.get(&h).map(|(path, size)| OnlyHere {
                    room: room.name(),
                    path: path.clone(),
                    size: *size,
                })
            })
            .collect()
    }
}

/// The files of room `id` this node keeps: hash → (path, size).
fn kept_of(
    store: &p2pfs_store::Store,
    id: &p2pfs_proto::RoomId,
) -> Result<Kept, p2pfs_store::StoreError> {
    let mut kept = Kept::new();
    for e in query::ls(store, id)? {
        if let FileKind::File { hash, size, .. } = e.kind
            && !kept.contains_key(&hash)
            && store
                .info(&hash)?
                .is_some_and(|i| super::status::is_kept(&i, id))
        {
            kept.insert(hash, (e.path, size));
        }
    }
    Ok(kept)
}

/// The leave itself: announce, then wait until nothing kept here is
/// kept only here (while a member online could take it) or `timeout`.
async fn wait_for_copies(
    node: &Node,
    timeout: Duration,
    tx: &watch::Sender<LeaveProgress>,
) -> LeaveProgress {
    let deadline = tokio::time::Instant::now() + timeout;
    let me = node.id();
    let mut rooms: Vec<(Arc<Room>, Kept)> = Vec::new();
    for room in node.all_rooms() {
        room.replica.phase.send_if_modified(|p| {
            let running = *p == Phase::Running;
            if running {
                *p = Phase::Leaving;
            }
            running
        });
        // What the store keeps for the room now (the runtime's last
        // status may not show a file published a moment ago).
        let (store, id) = (node.store().clone(), room.id);
        let kept = blocking(move || kept_of(&store, &id))
            .await
            .unwrap_or_default();
        rooms.push((room, kept));
    }
    loop {
        let mut waiting = 0;
        let mut waiting_bytes = 0;
        let mut stranded = Vec::new();
        for (room, kept) in &rooms {
            let (alone, takers) = only_here(room, me, kept);
            for h in alone {
                let Some((path, size)) = kept.get(&h) else {
                    continue;
                };
                if takers {
                    waiting += 1;
                    waiting_bytes += size;
                }
                stranded.push(OnlyHere {
                    room: room.name(),
                    path: path.clone(),
                    size: *size,
                });
            }
        }
        let over = waiting == 0 || tokio::time::Instant::now() >= deadline;
        stranded.sort_by(|a, b| (&a.room, &a.path).cmp(&(&b.room, &b.path)));
        let progress = LeaveProgress {
            waiting,
            waiting_bytes,
            done: over,
            only_here: if over { stranded } else { Vec::new() },
        };
        if over {
            return progress;
        }
        tx.send_replace(progress);
        tokio::time::sleep(POLL).await;
    }
}
