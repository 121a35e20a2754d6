//! The node's side of moderated rooms (docs/protocol.md §8.11): the keys
//! of the room's epochs this node holds, the moderation state as the log
//! last left it (for the handshake, the privacy rule and relays), and the
//! entries that change it: roles, removals (a new epoch, its key wrapped
//! for each member that stays), merges of epochs that crossed, leaving.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
};

use p2pfs_proto::{
    Hash, NodeId, RoomSecret,
    moderation::{Epoch, EpochKey, Removal, Role, epoch_auth_key},
    room::{Entry, Meta, Op},
};
use p2pfs_store::{Store, StoreError};

use super::{Room, entry::Verified, moderation::Moderation, view, wrap};
use crate::{Node, SwarmError, blocking, error::RoomError, identity::SecretKey, net::Net};

/// What a running room knows of its epochs.
#[derive(Debug, Default)]
pub(crate) struct EpochState {
    moderation: Mutex<Arc<Moderation>>,
    /// The epoch keys this node holds, by epoch.
    keys: Mutex<BTreeMap<Hash, [u8; 32]>>,
    /// Set once this node learns it was removed: by whom, when.
    removed: Mutex<Option<(NodeId, u64)>>,
    /// A merge of crossed epochs is under way.
    merging: std::sync::atomic::AtomicBool,
    /// Woken when the moderation changes (the node's, for every room).
    changed: Mutex<Option<Arc<tokio::sync::Notify>>>,
}

impl EpochState {
    /// The moderation state as of the log's last change to it.
    pub(crate) fn moderation(&self) -> Arc<Moderation> {
        crate::lock(&self.moderation).clone()
    }

    /// Who removed this node, and when, if it was.
    pub(crate) fn removed(&self) -> Option<(NodeId, u64)> {
        *crate::lock(&self.removed)
    }

    /// The key of the current epoch, if there is one and this node holds
    /// it (what tickets carry).
    pub(crate) fn current_key(&self) -> Option<EpochKey> {
        let epoch = self.moderation().current()?;
        let key = *crate::lock(&self.keys).get(&epoch)?;
        Some(EpochKey { epoch, key })
    }

    /// The keys to prove membership with, the current epoch's first, then
    /// the other epochs' (newest first), then epoch 0's (the secret's):
    /// each with its epoch (`None` for epoch 0).
    pub(crate) fn auth_keys(&self, secret: &RoomSecret) -> Vec<(Option<Hash>, [u8; 32])> {
        let m = self.moderation();
        let keys = crate::lock(&self.keys).clone();
        let current = m.current();
        let mut out = Vec::new();
        if let Some(k) = current.and_then(|c| keys.get(&c)) {
            out.push((current, epoch_auth_key(k)));
        }
        let mut others: Vec<(u64, Hash, [u8; 32])> = keys
            .iter()
            .filter(|(h, _)| Some(**h) != current)
            .map(|(h, k)| (m.epochs.get(h).map_or(0, |e| e.time), *h, *k))
            .collect();
        others.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
        out.extend(
            others
                .into_iter()
                .map(|(_, h, k)| (Some(h), epoch_auth_key(&k))),
        );
        out.push((None, secret.auth_key()));
        out
    }

    /// Whether `epoch` is the current one (`None`: epoch 0).
    pub(crate) fn is_current(&self, epoch: Option<Hash>) -> bool {
        self.moderation().current() == epoch
    }

    /// Wakes `notify` whenever the moderation changes.
    pub(crate) fn notify_on(&self, notify: Arc<tokio::sync::Notify>) {
        *crate::lock(&self.changed) = Some(notify);
    }

    pub(crate) fn set_removed(&self, by: NodeId, time: u64) {
        *crate::lock(&self.removed) = Some((by, time));
    }
}

/// Reads the moderation state from the views, opens the wraps meant for
/// this node it has no key of yet (keeping the keys), and publishes both
/// in `room.epochs`. Returns the members the state says are removed.
pub(crate) fn refresh(room: &Room, store: &Store, key: &SecretKey) -> Result<(), StoreError> {
    let m: Moderation = match store.room_view_get(&room.id, view::MODERATION)? {
        Some(b) => p2pfs_proto::codec::decode(&b)
            .map_err(|e| StoreError::Corrupt(format!("room moderation view: {e}")))?,
        None => Moderation::default(),
    };
    let me = key.public();
    let mut keys: BTreeMap<Hash, [u8; 32]> = store.room_keys(&room.id)?.into_iter().collect();
    for (h, e) in &m.epochs {
        if keys.contains_key(h) || !e.recipients.contains(&me) {
            continue;
        }
        let Some(bytes) = store.room_entry(&room.id, h)? else {
            continue;
        };
        let Ok((_, body)) = Entry::decode(&bytes) else {
            continue;
        };
        let Op::Epoch(epoch) = body.op else {
            continue;
        };
        let Some(w) = epoch.wraps.iter().find(|w| w.member == me) else {
            continue;
        };
        match wrap::open(&room.id, key, w) {
            Ok(k) => {
                store.put_room_key(&room.id, h, &k)?;
                keys.insert(*h, k);
            }
            Err(e) => tracing::warn!(room = %room.id.fmt_short(), epoch = %h.fmt_short(), "{e}"),
        }
    }
    if let Some(r) = m.removal(&me) {
        room.epochs.set_removed(r.by, r.time);
    }
    *crate::lock(&room.epochs.keys) = keys;
    *crate::lock(&room.epochs.moderation) = Arc::new(m);
    if let Some(n) = crate::lock(&room.epochs.changed).as_ref() {
        n.notify_waiters();
    }
    Ok(())
}

/// After entries entered the log: if some concern moderation, refresh the
/// state, and end the sessions of members now removed.
pub(crate) async fn after_entries(
    room: &Arc<Room>,
    store: &Store,
    net: &Net,
    entries: &[Verified],
) {
    if !entries
        .iter()
        .any(|e| super::moderation::concerns(&e.body.op))
    {
        return;
    }
    for e in entries {
        if let Op::Meta(Meta::Leave) = e.body.op {
            // Its copies go elsewhere now, fetched from it while it stays.
            room.replica.heard_leaving(e.body.author);
        }
    }
    let before = room.epochs.moderation();
    let (r, s, n) = (room.clone(), store.clone(), net.clone());
    if let Err(e) = blocking(move || refresh(&r, &s, n.key())).await {
        tracing::warn!(room = %room.id.fmt_short(), "reading the room's moderation: {e}");
        return;
    }
    let now = room.epochs.moderation();
    let sessions = room.overlay.snapshot().sessions;
    for member in now.removed.keys() {
        if !before.is_removed(member)
            && let Some(h) = sessions.get(member)
        {
            tracing::info!(room = %room.id.fmt_short(), %member, "member removed: ending its session");
            h.cancel.cancel();
        }
    }
    maybe_merge(room, store, net);
}

/// An epoch removing `removed` (none: a merge) after the current heads,
/// with a new key wrapped for every member that stays (this node, `me`,
/// included: it keeps the key by opening its own wrap).
async fn build_epoch(
    room: &Room,
    store: &Store,
    me: NodeId,
    removed: Vec<Removal>,
) -> Result<Epoch, SwarmError> {
    let m = room.epochs.moderation();
    let (s, id) = (store.clone(), room.id);
    let authors = blocking(move || s.room_have(&id)).await?;
    let mut candidates: Vec<NodeId> = authors.into_iter().map(|(a, _)| a).collect();
    candidates.extend(room.overlay.snapshot().members.iter().copied());
    candidates.push(me);
    let recipients: Vec<NodeId> = m
        .recipients(candidates)
        .into_iter()
        .filter(|c| !removed.iter().any(|r| r.member == *c))
        .take(p2pfs_proto::moderation::MAX_WRAPS)
        .collect();
    let mut key = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
        .map_err(|_| crate::error::SetupError::Random)?;
    let room_id = room.id;
    let wraps = crate::off_thread(move || {
        recipients
            .iter()
            .filter_map(|r| match wrap::seal(&room_id, r, &key) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!("leaving {} out of the new room key: {e}", r.fmt_short());
                    None
                }
            })
            .collect::<Vec<_>>()
    })
    .await?;
    Ok(Epoch {
        removed,
        after: m.heads(),
        wraps,
    })
}

/// Whether `me` merges crossed epochs at once: it wrote the head with the
/// greatest hash (the others wait, so usually one merge is written).
pub(crate) fn merges_first(m: &Moderation, me: &NodeId) -> bool {
    m.heads()
        .last()
        .and_then(|h| m.epochs.get(h))
        .is_some_and(|e| e.author == *me)
}

/// How long a member that did not write the last of the crossed epochs waits before
/// it merges them itself (one of their authors, or the owner, does it at
/// once).
const MERGE_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Merges crossed epochs (docs/protocol.md §8.11) if they need it: at
/// once if this node wrote the head with the greatest hash, else after
/// [`MERGE_WAIT`] if no one did meanwhile. One merge at a time per room.
fn maybe_merge(room: &Arc<Room>, store: &Store, net: &Net) {
    let m = room.epochs.moderation();
    let me = net.key().public();
    if !m.needs_merge() || room.epochs.removed().is_some() || m.has_left(&me) {
        return;
    }
    if room
        .epochs
        .merging
        .swap(true, std::sync::atomic::Ordering::AcqRel)
    {
        return;
    }
    let first = merges_first(&m, &me);
    let (room, store) = (room.clone(), store.clone());
    net.spawn(async move {
        if !first {
            tokio::select! {
                _ = room.cancel.cancelled() => return,
                _ = tokio::time::sleep(MERGE_WAIT) => {}
            }
        }
        if room.epochs.moderation().needs_merge() {
            match build_epoch(&room, &store, me, Vec::new()).await {
                Ok(epoch) => {
                    tracing::info!(room = %room.id.fmt_short(), "merging epochs that crossed");
                    if let Err(e) = room.log.author(vec![Op::Epoch(epoch)]).await {
                        tracing::warn!(room = %room.id.fmt_short(), "merging epochs: {e}");
                    }
                }
                Err(e) => tracing::warn!(room = %room.id.fmt_short(), "merging epochs: {e}"),
            }
        }
        room.epochs
            .merging
            .store(false, std::sync::atomic::Ordering::Release);
    });
}

/// A member, as `room members` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemberInfo {
    /// Its node id.
    pub id: NodeId,
    /// Its display name in the room, if it gave one.
    pub name: Option<String>,
    /// Its role.
    pub role: Role,
    /// Online now.
    pub online: bool,
    /// When it was last seen: its last entry's time (ms since the Unix
    /// epoch), if it wrote one.
    pub last_seen_ms: Option<u64>,
    /// Whether it left the room.
    pub left: bool,
}

impl Node {
    /// The members of `room`: every author of its log and every member
    /// proven while this node runs, but the removed, with their roles.
    pub async fn room_members(&self, room: &Room) -> Result<Vec<MemberInfo>, SwarmError> {
        let (store, id) = (self.store().clone(), room.id);
        let (last, names) = blocking(move || {
            Ok((
                store.room_last_times(&id)?,
                super::query::member_names(&store, &id)?,
            ))
        })
        .await?;
        let last: BTreeMap<NodeId, u64> = last.into_iter().collect();
        let m = room.epochs.moderation();
        let online = room.online();
        let snap = room.overlay.snapshot();
        let mut ids: BTreeSet<NodeId> = last.keys().copied().collect();
        ids.extend(snap.members.iter().copied());
        ids.insert(self.id());
        let names: BTreeMap<NodeId, String> = names.into_iter().collect();
        let mut list: Vec<MemberInfo> = ids
            .into_iter()
            .filter(|i| !m.is_removed(i))
            .map(|i| MemberInfo {
                id: i,
                name: names.get(&i).cloned(),
                role: m.role(&i),
                online: i == self.id() || online.contains(&i),
                last_seen_ms: last.get(&i).copied(),
                left: m.has_left(&i),
            })
            .collect();
        // The owner first, then the moderators, then by name.
        list.sort_by(|a, b| b.role.cmp(&a.role).then_with(|| a.name.cmp(&b.name)));
        Ok(list)
    }

    /// The member of `room` that `who` names: its node id, a prefix of it
    /// (its short form, say), or its display name, if only one member
    /// matches.
    pub async fn resolve_member(&self, room: &Room, who: &str) -> Result<MemberInfo, SwarmError> {
        let mut members = self.room_members(room).await?;
        let lower = who.trim().to_lowercase();
        // By id prefix (4 characters at least), else by exact name, else
        // by name in any case: the first rule that matches decides.
        let rules: [&dyn Fn(&MemberInfo) -> bool; 3] = [
            &|m| lower.len() >= 4 && m.id.to_string().starts_with(&lower),
            &|m| m.name.as_deref() == Some(who),
            &|m| m.name.as_deref().map(str::to_lowercase).as_deref() == Some(lower.as_str()),
        ];
        let found: Vec<usize> = rules
            .iter()
            .map(|rule| {
                (0..members.len())
                    .filter(|&i| rule(&members[i]))
                    .collect::<Vec<_>>()
            })
            .find(|f| !f.is_empty())
            .unwrap_or_default();
        match found.as_slice() {
            [one] => Ok(members.swap_remove(*one)),
            [] => Err(RoomError::NoSuchMember(who.to_string()).into()),
            many => Err(RoomError::AmbiguousMember(
                who.to_string(),
                many.iter()
                    .map(|&i| members[i].id.fmt_short())
                    .collect::<Vec<_>>()
                    .join(", "),
            )
            .into()),
        }
    }

    /// Makes `member` a moderator (or a member again): the owner only.
    pub async fn room_set_role(
        &self,
        room: &Room,
        member: NodeId,
        role: Role,
    ) -> Result<(), SwarmError> {
        let m = room.epochs.moderation();
        if m.owner != Some(self.id()) {
            return Err(RoomError::NotAllowed(match m.owner {
                Some(o) => format!("only the room's owner ({}) names moderators", o.fmt_short()),
                None => "this room has no owner (it was created before roles)".into(),
            })
            .into());
        }
        if member == self.id() {
            return Err(RoomError::NotAllowed("the owner's role cannot change".into()).into());
        }
        if m.is_removed(&member) {
            return Err(
                RoomError::NotAllowed(format!("{} was removed", member.fmt_short())).into(),
            );
        }
        self.post(room, Op::Meta(Meta::Role { member, role }))
            .await?;
        Ok(())
    }

    /// Removes `member` from `room`: a new epoch whose key goes to every
    /// other member. Returns the epoch (its entry's hash).
    pub async fn room_remove(&self, room: &Room, member: NodeId) -> Result<Hash, SwarmError> {
        let m = room.epochs.moderation();
        let me = self.id();
        let role = m.role(&me);
        let refuse = |why: String| -> SwarmError { RoomError::NotAllowed(why).into() };
        if m.owner.is_none() {
            return Err(refuse(
                "this room has no owner (it was created before roles): no one can remove members"
                    .into(),
            ));
        }
        if role == Role::Member {
            return Err(refuse(
                "only the owner and moderators remove members".into(),
            ));
        }
        if member == me {
            return Err(refuse("to go, leave the room (p2pfs room leave)".into()));
        }
        if m.owner == Some(member) {
            return Err(refuse("the owner cannot be removed".into()));
        }
        if role != Role::Owner && m.role(&member) == Role::Moderator {
            return Err(refuse("only the owner removes a moderator".into()));
        }
        if m.is_removed(&member) {
            return Err(refuse(format!(
                "{} was removed already",
                member.fmt_short()
            )));
        }
        let (store, id) = (self.store().clone(), room.id);
        let keep = blocking(move || {
            Ok(store
                .room_have(&id)?
                .into_iter()
                .find(|(a, _)| *a == member)
                .map_or(0, |(_, n)| n))
        })
        .await?;
        self.write_epoch(room, vec![Removal { member, keep }]).await
    }

    /// Writes an epoch removing `removed` (none: a merge), after the
    /// current heads, its new key wrapped for every member that stays.
    pub(crate) async fn write_epoch(
        &self,
        room: &Room,
        removed: Vec<Removal>,
    ) -> Result<Hash, SwarmError> {
        let epoch = build_epoch(room, self.store(), self.id(), removed).await?;
        self.post(room, Op::Epoch(epoch)).await
    }

    /// Refuses a write to `room` by this node once it was removed.
    pub(crate) fn check_not_removed(&self, room: &Room) -> Result<(), SwarmError> {
        match room.epochs.removed() {
            Some((by, time)) => Err(RoomError::Removed {
                room: room.name(),
                by: by.fmt_short(),
                when: crate::room::render::rfc3339(time),
            }
            .into()),
            None => Ok(()),
        }
    }
}
