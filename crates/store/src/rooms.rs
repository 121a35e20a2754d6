//! Rooms in the store: the rooms this node is in, each room's log (the
//! entries in the order they were accepted, indexed by hash, by author and
//! sequence number, and by head), and a key-value space for the views the
//! network layer derives from the log.
//!
//! The store knows nothing of what entries mean: it keeps bytes, indexes
//! and the invariants of an append-only log (an index is never reused, an
//! entry is never rewritten). Checking entries and deriving views is the
//! network layer's (`p2pfs_swarm::room`), which runs them inside one
//! [`RoomTxn`] so the log and its views commit together.

use std::ops::Bound;

use p2pfs_proto::{Hash, NodeAddr, NodeId, RoomId, RoomSecret, codec};
use redb::{ReadableTable, Table};
use serde::{Deserialize, Serialize};

use crate::{
    Store,
    error::{DbContext, StoreError},
    tables::{self, HashKey},
};

/// What the store keeps about a room this node is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    /// The room's secret.
    pub secret: RoomSecret,
    /// The local name (the directory name in the mount).
    pub name: String,
    /// Members to dial first (from the ticket, then as learned).
    pub nodes: Vec<NodeAddr>,
    /// When this node joined, in seconds since the Unix epoch.
    pub joined: u64,
}

/// A view key and its value.
pub type ViewPair = (Vec<u8>, Vec<u8>);

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

impl Store {
    /// Records (or replaces) a room.
    pub fn put_room(&self, info: &RoomInfo) -> Result<(), StoreError> {
        let bytes = codec::encode(info).map_err(|e| corrupt("room record", e))?;
        let txn = self.begin_write()?;
        {
            let mut t = txn.open_table(tables::ROOMS).db()?;
            t.insert(info.secret.id().as_bytes(), bytes.as_slice())
                .db()?;
        }
        txn.commit().db()
    }

    /// Replaces the members to dial first of `room`, if this node is still
    /// in it (one transaction: a room left meanwhile stays left). Returns
    /// whether it was.
    pub fn set_room_nodes(&self, room: &RoomId, nodes: Vec<NodeAddr>) -> Result<bool, StoreError> {
        let txn = self.begin_write()?;
        let found = {
            let mut t = txn.open_table(tables::ROOMS).db()?;
            let old: Option<RoomInfo> = match t.get(room.as_bytes()).db()? {
                Some(v) => Some(codec::decode(v.value()).map_err(|e| corrupt("room record", e))?),
                None => None,
            };
            match old {
                Some(mut info) => {
                    info.nodes = nodes;
                    let bytes = codec::encode(&info).map_err(|e| corrupt("room record", e))?;
                    t.insert(room.as_bytes(), bytes.as_slice()).db()?;
                    true
                }
                None => false,
            }
        };
        txn.commit().db()?;
        Ok(found)
    }

    /// Every room this node is in.
    pub fn rooms(&self) -> Result<Vec<RoomInfo>, StoreError> {
        let txn = self.begin_read()?;
        let t = txn.open_table(tables::ROOMS).db()?;
        let mut out = Vec::new();
        for item in t.iter().db()? {
            let (_, v) = item.db()?;
            out.push(codec::decode(v.value()).map_err(|e| corrupt("room record", e))?);
        }
        Ok(out)
    }

    /// Forgets a room: its record, its log and its views.
    pub fn remove_room(&self, room: &RoomId) -> Result<bool, StoreError> {
        let txn = self.begin_write()?;
        let existed = {
            let mut t = txn.open_table(tables::ROOMS).db()?;
            t.remove(room.as_bytes()).db()?.is_some()
        };
        let r = room.as_bytes();
        let (lo, hi) = ([0u8; 32], [0xffu8; 32]);
        txn.open_table(tables::ROOM_ENTRIES)
            .db()?
            .retain_in((r, &lo)..=(r, &hi), |_, _| false)
            .db()?;
        txn.open_table(tables::ROOM_LOG)
            .db()?
            .retain_in((r, 0)..=(r, u64::MAX), |_, _| false)
            .db()?;
        txn.open_table(tables::ROOM_SEQ)
            .db()?
            .retain_in((r, &lo, 0)..=(r, &hi, u64::MAX), |_, _| false)
            .db()?;
        txn.open_table(tables::ROOM_AUTHORS)
            .db()?
            .retain_in((r, &lo)..=(r, &hi), |_, _| false)
            .db()?;
        txn.open_table(tables::ROOM_HEADS)
            .db()?
            .retain_in((r, &lo)..=(r, &hi), |_, _| false)
            .db()?;
        txn.open_table(tables::ROOM_KEYS)
            .db()?
            .retain_in((r, &lo)..=(r, &hi), |_, _| false)
            .db()?;
        clear_views(&mut txn.open_table(tables::ROOM_VIEW).db()?, r)?;
        txn.commit().db()?;
        Ok(existed)
    }

    /// Keeps the key of `room`'s epoch `epoch` (the hash of its entry).
    pub fn put_room_key(
        &self,
        room: &RoomId,
        epoch: &Hash,
        key: &[u8; 32],
    ) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        txn.open_table(tables::ROOM_KEYS)
            .db()?
            .insert((room.as_bytes(), epoch.as_bytes()), key)
            .db()?;
        txn.commit().db()
    }

    /// The epoch keys of `room` this node holds.
    pub fn room_keys(&self, room: &RoomId) -> Result<Vec<(Hash, [u8; 32])>, StoreError> {
        let txn = self.begin_read()?;
        let t = txn.open_table(tables::ROOM_KEYS).db()?;
        let r = room.as_bytes();
        let mut out = Vec::new();
        for item in t.range((r, &[0u8; 32])..=(r, &[0xff; 32])).db()? {
            let (k, v) = item.db()?;
            out.push((Hash::from_bytes(*k.value().1), *v.value()));
        }
        Ok(out)
    }

    /// Runs `f` on `room`'s log and views in one durable write transaction.
    /// Nothing `f` did is kept if it fails.
    pub fn room_write<T>(
        &self,
        room: &RoomId,
        f: impl FnOnce(&mut RoomTxn<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let txn = self.begin_write()?;
        let out = {
            let mut t = RoomTxn {
                room: *room.as_bytes(),
                entries: txn.open_table(tables::ROOM_ENTRIES).db()?,
                log: txn.open_table(tables::ROOM_LOG).db()?,
                seq: txn.open_table(tables::ROOM_SEQ).db()?,
                authors: txn.open_table(tables::ROOM_AUTHORS).db()?,
                heads: txn.open_table(tables::ROOM_HEADS).db()?,
                view: txn.open_table(tables::ROOM_VIEW).db()?,
            };
            f(&mut t)?
        };
        txn.commit().db()?;
        Ok(out)
    }

    /// For each author of `room`, the time (its clock, ms) of its last
    /// entry, in one read.
    pub fn room_last_times(&self, room: &RoomId) -> Result<Vec<(NodeId, u64)>, StoreError> {
        let txn = self.begin_read()?;
        let r = room.as_bytes();
        let authors = txn.open_table(tables::ROOM_AUTHORS).db()?;
        let seq = txn.open_table(tables::ROOM_SEQ).db()?;
        let entries = txn.open_table(tables::ROOM_ENTRIES).db()?;
        let mut out = Vec::new();
        for item in authors.range((r, &[0u8; 32])..=(r, &[0xff; 32])).db()? {
            let (k, _) = item.db()?;
            let author = *k.value().1;
            let last = seq
                .range((r, &author, 0)..=(r, &author, u64::MAX))
                .db()?
                .next_back();
            let Some(item) = last else { continue };
            let (_, v) = item.db()?;
            let (hash, _) = v.value();
            let Some(e) = entries.get((r, hash)).db()? else {
                continue;
            };
            let body = codec::decode::<p2pfs_proto::room::Entry>(e.value().1)
                .ok()
                .and_then(|e| e.body().ok());
            if let Some(b) = body {
                out.push((NodeId::from_bytes(author), b.time));
            }
        }
        Ok(out)
    }

    /// The encoded entry `hash` of `room`'s log, if it is there.
    pub fn room_entry(&self, room: &RoomId, hash: &Hash) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.begin_read()?;
        let t = txn.open_table(tables::ROOM_ENTRIES).db()?;
        Ok(t.get((room.as_bytes(), hash.as_bytes()))
            .db()?
            .map(|v| v.value().1.to_vec()))
    }

    /// The log's summary: how many entries of each author it has.
    pub fn room_have(&self, room: &RoomId) -> Result<Vec<(NodeId, u64)>, StoreError> {
        let txn = self.begin_read()?;
        let t = txn.open_table(tables::ROOM_AUTHORS).db()?;
        have(&t, room.as_bytes())
    }

    /// The encoded entries of `room` that a member with `have` lacks, in
    /// the order this node accepted them (parents first), at most `limit`
    /// of them.
    pub fn room_entries_after(
        &self,
        room: &RoomId,
        have: &[(NodeId, u64)],
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let txn = self.begin_read()?;
        let r = room.as_bytes();
        let authors = txn.open_table(tables::ROOM_AUTHORS).db()?;
        let seq = txn.open_table(tables::ROOM_SEQ).db()?;
        let entries = txn.open_table(tables::ROOM_ENTRIES).db()?;
        let mut wanted: Vec<(u64, HashKey)> = Vec::new();
        for item in authors.range((r, &[0u8; 32])..=(r, &[0xff; 32])).db()? {
            let (k, _) = item.db()?;
            let author = *k.value().1;
            let from = have
                .iter()
                .find(|(a, _)| a.as_bytes() == &author)
                .map_or(0, |(_, n)| *n);
            for item in seq
                .range((r, &author, from)..=(r, &author, u64::MAX))
                .db()?
            {
                let (_, v) = item.db()?;
                let (hash, index) = v.value();
                wanted.push((index, *hash));
            }
        }
        wanted.sort_unstable();
        wanted.truncate(limit);
        let mut out = Vec::with_capacity(wanted.len());
        for (_, hash) in wanted {
            let v = entries
                .get((r, &hash))
                .db()?
                .ok_or_else(|| corrupt("room log", "an indexed entry is missing"))?;
            out.push(v.value().1.to_vec());
        }
        Ok(out)
    }

    /// The view values of `room` whose keys start with `prefix`, in key
    /// order, from `start` (a key, exclusive) on, at most `limit`.
    pub fn room_view_range(
        &self,
        room: &RoomId,
        prefix: &[u8],
        start: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<ViewPair>, StoreError> {
        let txn = self.begin_read()?;
        let t = txn.open_table(tables::ROOM_VIEW).db()?;
        view_range(&t, room.as_bytes(), prefix, start, limit)
    }

    /// One view value of `room`.
    pub fn room_view_get(&self, room: &RoomId, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.begin_read()?;
        let t = txn.open_table(tables::ROOM_VIEW).db()?;
        Ok(t.get((room.as_bytes(), key))
            .db()?
            .map(|v| v.value().to_vec()))
    }

    /// The rooms whose views hold `key` (one read transaction).
    pub fn rooms_referring(&self, key: &[u8]) -> Result<Vec<RoomId>, StoreError> {
        let txn = self.begin_read()?;
        let rooms = txn.open_table(tables::ROOMS).db()?;
        let view = txn.open_table(tables::ROOM_VIEW).db()?;
        let mut out = Vec::new();
        for item in rooms.iter().db()? {
            let (k, _) = item.db()?;
            let id = *k.value();
            if view.get((&id, key)).db()?.is_some() {
                out.push(RoomId::from_bytes(id));
            }
        }
        Ok(out)
    }

    /// The bytes of `room`'s log: every entry as sent, signature included.
    pub fn room_log_bytes(&self, room: &RoomId) -> Result<u64, StoreError> {
        let txn = self.begin_read()?;
        let entries = txn.open_table(tables::ROOM_ENTRIES).db()?;
        let r = room.as_bytes();
        let mut total = 0u64;
        for item in entries.range((r, &[0u8; 32])..=(r, &[0xff; 32])).db()? {
            let (_, v) = item.db()?;
            total += v.value().1.len() as u64;
        }
        Ok(total)
    }

    /// The encoded entries of `room`'s log from local index `from` on, in
    /// the order this node accepted them (parents first), at most `limit`
    /// of them.
    pub fn room_log(
        &self,
        room: &RoomId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let txn = self.begin_read()?;
        let log = txn.open_table(tables::ROOM_LOG).db()?;
        let entries = txn.open_table(tables::ROOM_ENTRIES).db()?;
        let r = room.as_bytes();
        let mut out = Vec::new();
        for item in log.range((r, from)..=(r, u64::MAX)).db()?.take(limit) {
            let (_, h) = item.db()?;
            let v = entries
                .get((r, h.value()))
                .db()?
                .ok_or_else(|| corrupt("room log", "a logged entry is missing"))?;
            out.push(v.value().1.to_vec());
        }
        Ok(out)
    }

    /// How many entries `room`'s log has.
    pub fn room_len(&self, room: &RoomId) -> Result<u64, StoreError> {
        let txn = self.begin_read()?;
        let log = txn.open_table(tables::ROOM_LOG).db()?;
        log_len(&log, room.as_bytes())
    }

    /// Drops every view of every room (they are rebuilt from the logs).
    pub fn drop_room_views(&self) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        txn.delete_table(tables::ROOM_VIEW).db()?;
        txn.open_table(tables::ROOM_VIEW).db()?;
        txn.commit().db()
    }
}

fn view_range(
    t: &impl ReadableTable<(&'static HashKey, &'static [u8]), &'static [u8]>,
    room: &HashKey,
    prefix: &[u8],
    start: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<ViewPair>, StoreError> {
    let lo = match start {
        Some(s) => Bound::Excluded((room, s)),
        None => Bound::Included((room, prefix)),
    };
    let mut out = Vec::new();
    for item in t.range::<(&HashKey, &[u8])>((lo, Bound::Unbounded)).db()? {
        let (k, v) = item.db()?;
        let (kr, key) = k.value();
        if kr != room || !key.starts_with(prefix) || out.len() >= limit {
            break;
        }
        out.push((key.to_vec(), v.value().to_vec()));
    }
    Ok(out)
}

fn log_len(
    t: &impl ReadableTable<(&'static HashKey, u64), &'static HashKey>,
    r: &HashKey,
) -> Result<u64, StoreError> {
    Ok(t.range((r, 0)..=(r, u64::MAX))
        .db()?
        .next_back()
        .transpose()
        .db()?
        .map_or(0, |(k, _)| k.value().1 + 1))
}

fn have(
    t: &impl ReadableTable<(&'static HashKey, &'static HashKey), u64>,
    r: &HashKey,
) -> Result<Vec<(NodeId, u64)>, StoreError> {
    let mut out = Vec::new();
    for item in t.range((r, &[0u8; 32])..=(r, &[0xff; 32])).db()? {
        let (k, v) = item.db()?;
        out.push((NodeId::from_bytes(*k.value().1), v.value()));
    }
    Ok(out)
}

fn clear_views(
    t: &mut Table<'_, (&'static HashKey, &'static [u8]), &'static [u8]>,
    room: &HashKey,
) -> Result<(), StoreError> {
    let lo: &[u8] = &[];
    t.retain_in::<(&HashKey, &[u8]), _>((Bound::Included((room, lo)), Bound::Unbounded), |k, _| {
        k.0 != room
    })
    .db()
}

/// One room's log and views inside a write transaction.
pub struct RoomTxn<'t> {
    room: HashKey,
    entries: Table<'t, (&'static HashKey, &'static HashKey), (u64, &'static [u8])>,
    log: Table<'t, (&'static HashKey, u64), &'static HashKey>,
    seq: Table<'t, (&'static HashKey, &'static HashKey, u64), (&'static HashKey, u64)>,
    authors: Table<'t, (&'static HashKey, &'static HashKey), u64>,
    heads: Table<'t, (&'static HashKey, &'static HashKey), ()>,
    view: Table<'t, (&'static HashKey, &'static [u8]), &'static [u8]>,
}

impl std::fmt::Debug for RoomTxn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RoomTxn({})", RoomId::from_bytes(self.room).fmt_short())
    }
}

impl RoomTxn<'_> {
    /// Whether the log has the entry `hash`.
    pub fn contains(&self, hash: &Hash) -> Result<bool, StoreError> {
        Ok(self
            .entries
            .get((&self.room, hash.as_bytes()))
            .db()?
            .is_some())
    }

    /// The encoded entry `hash`, with its local index.
    pub fn entry(&self, hash: &Hash) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        Ok(self
            .entries
            .get((&self.room, hash.as_bytes()))
            .db()?
            .map(|v| {
                let (i, b) = v.value();
                (i, b.to_vec())
            }))
    }

    /// How many of `author`'s entries the log has (the next `seq`).
    pub fn next_seq(&self, author: &NodeId) -> Result<u64, StoreError> {
        Ok(self
            .authors
            .get((&self.room, author.as_bytes()))
            .db()?
            .map_or(0, |v| v.value()))
    }

    /// The hash of `author`'s entry `seq`.
    pub fn by_seq(&self, author: &NodeId, seq: u64) -> Result<Option<Hash>, StoreError> {
        Ok(self
            .seq
            .get((&self.room, author.as_bytes(), seq))
            .db()?
            .map(|v| Hash::from_bytes(*v.value().0)))
    }

    /// The entries no other entry links to.
    pub fn heads(&self) -> Result<Vec<Hash>, StoreError> {
        let r = &self.room;
        let mut out = Vec::new();
        for item in self.heads.range((r, &[0u8; 32])..=(r, &[0xff; 32])).db()? {
            out.push(Hash::from_bytes(*item.db()?.0.value().1));
        }
        Ok(out)
    }

    /// How many entries the log has (the next local index).
    pub fn len(&self) -> Result<u64, StoreError> {
        log_len(&self.log, &self.room)
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }

    /// The log's summary: how many entries of each author it has.
    pub fn have(&self) -> Result<Vec<(NodeId, u64)>, StoreError> {
        have(&self.authors, &self.room)
    }

    /// Appends an entry the caller has checked: `seq` must be the author's
    /// next and every parent in the log. Returns its local index.
    pub fn append(
        &mut self,
        hash: &Hash,
        author: &NodeId,
        seq: u64,
        parents: &[Hash],
        bytes: &[u8],
    ) -> Result<u64, StoreError> {
        if self.next_seq(author)? != seq {
            return Err(StoreError::Invalid(format!(
                "room log: entry {seq} of {author} is out of order"
            )));
        }
        let index = self.len()?;
        let r = self.room;
        self.entries
            .insert((&r, hash.as_bytes()), (index, bytes))
            .db()?;
        self.log.insert((&r, index), hash.as_bytes()).db()?;
        self.seq
            .insert((&r, author.as_bytes(), seq), (hash.as_bytes(), index))
            .db()?;
        self.authors.insert((&r, author.as_bytes()), seq + 1).db()?;
        for p in parents {
            self.heads.remove((&r, p.as_bytes())).db()?;
        }
        self.heads.insert((&r, hash.as_bytes()), ()).db()?;
        Ok(index)
    }

    /// The entry at local index `index`: its hash and encoding.
    pub fn at(&self, index: u64) -> Result<Option<(Hash, Vec<u8>)>, StoreError> {
        let Some(h) = self.log.get((&self.room, index)).db()? else {
            return Ok(None);
        };
        let hash = Hash::from_bytes(*h.value());
        let (_, bytes) = self
            .entry(&hash)?
            .ok_or_else(|| corrupt("room log", "a logged entry is missing"))?;
        Ok(Some((hash, bytes)))
    }

    /// A view value.
    pub fn view_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .view
            .get((&self.room, key))
            .db()?
            .map(|v| v.value().to_vec()))
    }

    /// Sets a view value.
    pub fn view_put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let r = self.room;
        self.view.insert((&r, key), value).db()?;
        Ok(())
    }

    /// Removes a view value.
    pub fn view_remove(&mut self, key: &[u8]) -> Result<(), StoreError> {
        let r = self.room;
        self.view.remove((&r, key)).db()?;
        Ok(())
    }

    /// View values whose keys start with `prefix`, after `start`.
    pub fn view_range(
        &self,
        prefix: &[u8],
        start: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<ViewPair>, StoreError> {
        view_range(&self.view, &self.room, prefix, start, limit)
    }

    /// Removes every view value of this room.
    pub fn clear_views(&mut self) -> Result<(), StoreError> {
        let r = self.room;
        clear_views(&mut self.view, &r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        (dir, s)
    }

    #[test]
    fn log_indexes_heads_and_have() {
        let (_d, s) = store();
        let secret = RoomSecret([1; 32]);
        let room = secret.id();
        let a = NodeId::from_bytes([1; 32]);
        let b = NodeId::from_bytes([2; 32]);
        let (h0, h1, h2) = (Hash::of(b"0"), Hash::of(b"1"), Hash::of(b"2"));
        s.room_write(&room, |t| {
            assert_eq!(t.append(&h0, &a, 0, &[], b"e0")?, 0);
            assert_eq!(t.append(&h1, &b, 0, &[h0], b"e1")?, 1);
            assert_eq!(t.append(&h2, &a, 1, &[h0], b"e2")?, 2);
            assert!(t.append(&h2, &a, 5, &[h0], b"x").is_err());
            let mut heads = t.heads()?;
            heads.sort();
            let mut want = vec![h1, h2];
            want.sort();
            assert_eq!(heads, want);
            assert_eq!(t.by_seq(&a, 1)?, Some(h2));
            t.view_put(b"c/1", b"x")?;
            t.view_put(b"c/2", b"y")?;
            t.view_put(b"d/1", b"z")?;
            Ok(())
        })
        .unwrap();
        let mut have = s.room_have(&room).unwrap();
        have.sort();
        assert_eq!(have, vec![(a, 2), (b, 1)]);
        let all = s.room_entries_after(&room, &[], 100).unwrap();
        assert_eq!(all, vec![b"e0".to_vec(), b"e1".to_vec(), b"e2".to_vec()]);
        let some = s.room_entries_after(&room, &[(a, 1)], 100).unwrap();
        assert_eq!(some, vec![b"e1".to_vec(), b"e2".to_vec()]);
        let c = s.room_view_range(&room, b"c/", None, 10).unwrap();
        assert_eq!(c.len(), 2);
        let c = s.room_view_range(&room, b"c/", Some(b"c/1"), 10).unwrap();
        assert_eq!(c, vec![(b"c/2".to_vec(), b"y".to_vec())]);
        // Another room sees nothing of this one.
        let other = RoomSecret([2; 32]).id();
        assert!(s.room_entries_after(&other, &[], 100).unwrap().is_empty());
        assert!(s.room_view_range(&other, b"", None, 10).unwrap().is_empty());
        s.drop_room_views().unwrap();
        assert!(s.room_view_range(&room, b"", None, 10).unwrap().is_empty());
        assert_eq!(s.room_entries_after(&room, &[], 100).unwrap().len(), 3);
    }

    #[test]
    fn rooms_are_recorded_and_removed_with_their_logs() {
        let (_d, s) = store();
        let info = RoomInfo {
            secret: RoomSecret([3; 32]),
            name: "team".into(),
            nodes: vec![],
            joined: 5,
        };
        s.put_room(&info).unwrap();
        let room = info.secret.id();
        s.room_write(&room, |t| {
            t.append(&Hash::of(b"0"), &NodeId::from_bytes([1; 32]), 0, &[], b"e")?;
            t.view_put(b"k", b"v")
        })
        .unwrap();
        assert_eq!(s.rooms().unwrap(), vec![info.clone()]);
        let nodes = vec![NodeAddr {
            id: NodeId::from_bytes([4; 32]),
            addrs: vec!["127.0.0.1:9".parse().unwrap()],
        }];
        assert!(s.set_room_nodes(&room, nodes.clone()).unwrap());
        assert_eq!(s.rooms().unwrap()[0].nodes, nodes);
        assert!(s.remove_room(&room).unwrap());
        assert!(s.rooms().unwrap().is_empty());
        // Saving addresses of a room left does not bring it back.
        assert!(!s.set_room_nodes(&room, nodes).unwrap());
        assert!(s.rooms().unwrap().is_empty());
        assert!(s.room_entries_after(&room, &[], 10).unwrap().is_empty());
        assert!(s.room_view_get(&room, b"k").unwrap().is_none());
        assert!(s.room_have(&room).unwrap().is_empty());
    }
}
