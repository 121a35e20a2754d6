//! `p2pfs room status`: each file with its number of kept copies
//! among the members online, against the number placement asks for; and
//! the members, as this node hears them.

use std::{
    collections::{BTreeMap, HashSet},
    sync::atomic::Ordering,
    time::Instant,
};

use p2pfs_proto::{Hash, NodeId, room::Copies};
use p2pfs_store::BlobState;
use serde::{Deserialize, Serialize};

use super::placement::{Candidate, responsible};
use crate::{
    Node, SwarmError, blocking,
    room::{FileKind, Room, query},
};

/// A room's replication, as this node sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoomStatus {
    /// The room's local name.
    pub room: String,
    /// The policy its log sets.
    pub policy: Copies,
    /// Seconds without a status after which a member is offline.
    pub offline_after_secs: u64,
    /// Every member this node knows of.
    pub members: Vec<MemberStatus>,
    /// Every file of the tree.
    pub files: Vec<FileCopies>,
    /// Bytes this node fetched to keep copies since it started.
    pub fetched_bytes: u64,
    /// Bytes of blob data in this node's store.
    pub stored_bytes: u64,
    /// This node's storage cap.
    pub max_storage: Option<u64>,
}

/// A member of the room.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Its id.
    pub id: NodeId,
    /// Its display name.
    pub name: String,
    /// This node.
    pub me: bool,
    /// A replica heard from within the offline timeout (this node: it is
    /// a replica, a daemon or a mount).
    pub online: bool,
    /// At its storage cap.
    pub full: bool,
    /// Files of the room it keeps (as last heard).
    pub holds: usize,
    /// Seconds since its last status, if one was heard.
    pub last_heard_secs: Option<u64>,
}

/// A file and its copies.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileCopies {
    /// Its path (the first, if several show the same content).
    pub path: String,
    /// Its content.
    pub hash: Hash,
    /// Its size.
    pub size: u64,
    /// Complete copies on members online.
    pub copies: usize,
    /// Copies placement asks for with the members online.
    pub target: usize,
    /// The members online that hold it.
    pub holders: Vec<NodeId>,
    /// This node's copy is the only one on the members online: stopping
    /// this node now would leave the file unreadable.
    pub only_here: bool,
}

impl FileCopies {
    /// Fewer copies than the target.
    pub fn below_target(&self) -> bool {
        self.copies < self.target
    }
}

impl Node {
    /// The replication status of `room` (`only`: just the files with this
    /// content).
    pub async fn room_status(
        &self,
        room: &Room,
        only: Option<Hash>,
    ) -> Result<RoomStatus, SwarmError> {
        let (store, id) = (self.store().clone(), room.id);
        let files = blocking(move || {
            Ok(query::ls(&store, &id)?
                .into_iter()
                .filter_map(|e| match e.kind {
                    FileKind::File {
                        hash, size, author, ..
                    } if only.is_none_or(|h| h == hash) => Some((e.path, hash, size, author)),
                    _ => None,
                })
                .collect())
        })
        .await?;
        self.room_status_of(room, files, only.is_none()).await
    }

    /// The replication status of `room` for `files` (path, content, size,
    /// author: the files of its tree, as a listing the caller keeps shows
    /// them), with the store's usage if `usage`.
    pub async fn room_status_of(
        &self,
        room: &Room,
        files: Vec<(String, Hash, u64, NodeId)>,
        usage: bool,
    ) -> Result<RoomStatus, SwarmError> {
        let rep = self.inner.replica.as_ref();
        let offline_after = self.offline_after();
        let (store, id) = (self.store().clone(), room.id);
        let (files, kept, policy, names, stored) = blocking(move || {
            let hashes: Vec<Hash> = files.iter().map(|f| f.1).collect();
            let kept: HashSet<Hash> = hashes
                .iter()
                .zip(store.infos(&hashes)?)
                .filter(|(_, i)| i.as_ref().is_some_and(|i| is_kept(i, &id)))
                .map(|(h, _)| *h)
                .collect();
            let stored = if usage { store.usage()? } else { 0 };
            Ok((
                files,
                kept,
                query::policy(&store, &id)?,
                query::member_names(&store, &id)?,
                stored,
            ))
        })
        .await?;
        let now = Instant::now();
        let me = self.id();
        let me_full = rep.is_some_and(|r| r.full.load(Ordering::Relaxed));
        let peers = crate::lock(&room.replica.peers);
        let view = View::new(self, &peers, now);
        let mut out_files = Vec::with_capacity(files.len());
        let mut seen = HashSet::new();
        for (path, hash, size, author) in files {
            if !seen.insert(hash) {
                continue;
            }
            let (holders, target) = view.copies(hash, author, kept.contains(&hash), policy);
            out_files.push(FileCopies {
                path,
                hash,
                size,
                copies: holders.len(),
                target,
                only_here: holders == [me],
                holders,
            });
        }
        let mut members: BTreeMap<NodeId, MemberStatus> = BTreeMap::new();
        let name_of = |id: &NodeId| {
            names
                .iter()
                .find(|(n, _)| n == id)
                .map_or_else(|| id.fmt_short(), |(_, s)| s.clone())
        };
        for (id, _) in &names {
            members.insert(*id, member(*id, name_of(id)));
        }
        for id in room.overlay.snapshot().members.iter() {
            members
                .entry(*id)
                .or_insert_with(|| member(*id, name_of(id)));
        }
        for (id, p) in peers.all() {
            let m = members
                .entry(*id)
                .or_insert_with(|| member(*id, name_of(id)));
            m.online = p.is_online(now);
            m.full = p.full;
            m.holds = p.holds.len();
            m.last_heard_secs = Some(now.saturating_duration_since(p.last_heard).as_secs());
        }
        drop(peers);
        let m = members
            .entry(me)
            .or_insert_with(|| member(me, self.display_name()));
        m.me = true;
        m.online = rep.is_some();
        m.full = me_full;
        m.holds = if rep.is_some() { kept.len() } else { 0 };
        Ok(RoomStatus {
            room: room.name(),
            policy,
            offline_after_secs: offline_after.as_secs(),
            members: members.into_values().collect(),
            files: out_files,
            fetched_bytes: room.replica.fetched(),
            stored_bytes: stored,
            max_storage: rep.and_then(|r| r.config.max_storage),
        })
    }
}

impl Node {
    /// The complete copies of blob `hash` (put by `author`) of `room` on
    /// the members online, how many placement asks for, and whether this
    /// node's is the only one. Blocking (reads the store).
    pub fn room_copies(
        &self,
        room: &Room,
        hash: Hash,
        author: NodeId,
    ) -> Result<(usize, usize, bool), p2pfs_store::StoreError> {
        let store = self.store();
        let policy = query::policy(store, &room.id)?;
        let mine = store.info(&hash)?.is_some_and(|i| is_kept(&i, &room.id));
        let peers = crate::lock(&room.replica.peers);
        let (holders, target) =
            View::new(self, &peers, Instant::now()).copies(hash, author, mine, policy);
        Ok((holders.len(), target, holders == [self.id()]))
    }
}

/// Whether this node keeps `info`'s blob for room `id`: complete, and
/// pinned for the room or by the user (a cached or let-go copy is not).
pub(crate) fn is_kept(info: &p2pfs_store::BlobInfo, id: &p2pfs_proto::RoomId) -> bool {
    info.state == BlobState::Complete
        && info
            .pins
            .iter()
            .any(|p| *p == crate::room::pin_name(id) || *p == super::keep_pin_name(id))
}

/// The replicas online as this node sees them at one instant.
struct View<'a> {
    me: NodeId,
    /// This node is a replica (its copies count, it is a candidate).
    replica: bool,
    me_full: bool,
    now: Instant,
    online: Vec<(NodeId, &'a super::peers::Peer)>,
}

impl<'a> View<'a> {
    fn new(node: &Node, peers: &'a super::peers::Peers, now: Instant) -> Self {
        let rep = node.inner.replica.as_ref();
        let me = node.id();
        Self {
            me,
            replica: rep.is_some(),
            me_full: rep.is_some_and(|r| r.full.load(Ordering::Relaxed)),
            now,
            online: peers
                .online(now)
                .filter(|(id, _)| **id != me)
                .map(|(id, p)| (*id, p))
                .collect(),
        }
    }

    /// The members online holding `hash` complete (`mine`: this node
    /// does), and the number placement asks for.
    fn copies(
        &self,
        hash: Hash,
        author: NodeId,
        mine: bool,
        policy: Copies,
    ) -> (Vec<NodeId>, usize) {
        let mine = self.replica && mine;
        let mut holders: Vec<NodeId> = self
            .online
            .iter()
            .filter(|(_, p)| p.holds.contains(&hash))
            .map(|(id, _)| *id)
            .collect();
        if mine {
            holders.push(self.me);
        }
        let mut cands: Vec<Candidate> = self
            .online
            .iter()
            .filter(|(_, p)| p.admitted(self.now))
            .map(|(id, p)| Candidate {
                id: *id,
                full: p.full,
                holds: p.holds.contains(&hash),
            })
            .collect();
        if self.replica {
            cands.push(Candidate {
                id: self.me,
                full: self.me_full,
                holds: mine,
            });
        }
        let target = responsible(&hash, author, &cands, policy).len();
        (holders, target)
    }
}

fn member(id: NodeId, name: String) -> MemberStatus {
    MemberStatus {
        id,
        name,
        me: false,
        online: false,
        full: false,
        holds: 0,
        last_heard_secs: None,
    }
}
