//! Reading rooms from the store: what `p2pfs room list`, `room ls` and
//! `chat` show. Works on a store with no node running.

use std::collections::{BTreeMap, BTreeSet};

use p2pfs_proto::{
    Hash, NodeId, RoomId, codec,
    room::{Copies, DEFAULT_COPIES, Entry, EntryBody},
};
use p2pfs_store::{Store, StoreError};

use super::{
    RoomSummary,
    listing::Listing,
    transcript::Transcript,
    view::{self, ChatLine, FileEntry, LiveOp},
};

/// Every room with its counts (`online` is left at 0).
pub fn summaries(store: &Store) -> Result<Vec<RoomSummary>, StoreError> {
    let mut out = Vec::new();
    for info in store.rooms()? {
        let id = info.secret.id();
        let have = store.room_have(&id)?;
        out.push(RoomSummary {
            name: info.name.clone(),
            id,
            entries: have.iter().map(|(_, n)| n).sum(),
            log_bytes: store.room_log_bytes(&id)?,
            members: have.len(),
            files: ls(store, &id)?
                .iter()
                .filter(|f| matches!(f.kind, view::FileKind::File { .. }))
                .count(),
            online: 0,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn decode<T: serde::de::DeserializeOwned>(v: &[u8]) -> Result<T, StoreError> {
    codec::decode(v).map_err(|e| StoreError::Corrupt(format!("room view: {e}")))
}

/// The room's tree: files and directories, sorted by path.
pub fn ls(store: &Store, room: &RoomId) -> Result<Vec<FileEntry>, StoreError> {
    Ok(view::listing(rows(store, room)?))
}

/// Every row of the room's tree: each path's live entries.
fn rows(store: &Store, room: &RoomId) -> Result<BTreeMap<String, Vec<LiveOp>>, StoreError> {
    let mut rows = BTreeMap::new();
    for (k, v) in store.room_view_range(room, view::TREE, None, usize::MAX)? {
        let path = String::from_utf8_lossy(&k[view::TREE.len()..]).into_owned();
        rows.insert(path, decode::<Vec<LiveOp>>(&v)?);
    }
    Ok(rows)
}

/// The room's listing, to keep in memory and bring up to date with
/// [`update_listing`].
pub fn load_listing(store: &Store, room: &RoomId) -> Result<Listing, StoreError> {
    Ok(Listing::new(rows(store, room)?))
}

/// Reads the rows of `paths` again into `listing`; returns the names
/// whose entry appeared, changed or went.
pub fn update_listing(
    listing: &mut Listing,
    store: &Store,
    room: &RoomId,
    paths: impl IntoIterator<Item = String>,
) -> Result<BTreeSet<String>, StoreError> {
    let mut rows = Vec::new();
    for path in paths {
        let live = live(store, room, &path)?;
        rows.push((path, live));
    }
    Ok(listing.update(rows))
}

/// The entry shown at `path` (a conflict copy's name works too).
pub fn file(store: &Store, room: &RoomId, path: &str) -> Result<Option<FileEntry>, StoreError> {
    Ok(ls(store, room)?.into_iter().find(|f| f.path == path))
}

/// The live entries of `path` (what a new entry for it replaces).
pub(crate) fn live(store: &Store, room: &RoomId, path: &str) -> Result<Vec<LiveOp>, StoreError> {
    let mut key = view::TREE.to_vec();
    key.extend_from_slice(path.as_bytes());
    match store.room_view_get(room, &key)? {
        Some(v) => decode(&v),
        None => Ok(Vec::new()),
    }
}

/// The time of directory `dir` of the room ("" for its top), ms since the
/// Unix epoch: the latest `time` of the entries directly in it (a file
/// put, a name removed or renamed away), if any.
pub fn dir_time(store: &Store, room: &RoomId, dir: &str) -> Result<Option<u64>, StoreError> {
    let mut key = view::DIR_TIMES.to_vec();
    key.extend_from_slice(dir.as_bytes());
    match store.room_view_get(room, &key)? {
        Some(v) => decode(&v).map(Some),
        None => Ok(None),
    }
}

/// Chat lines of `chat.log` (arrival order) from line `from` on (at most
/// `limit`), each with its newline.
pub fn chat(
    store: &Store,
    room: &RoomId,
    from: u64,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    let start = view::chat_key(from);
    let mut out = Vec::new();
    let first = store.room_view_get(room, &start)?;
    if let Some(v) = first {
        out.push(decode::<ChatLine>(&v)?.text);
    } else {
        return Ok(out);
    }
    for (_, v) in store.room_view_range(room, view::CHAT, Some(&start), limit.saturating_sub(1))? {
        out.push(decode::<ChatLine>(&v)?.text);
    }
    Ok(out)
}

/// The chat as `p2pfs chat` prints it (see [`super::transcript`]): what
/// the log holds in canonical order, then what arrives later.
#[derive(Debug)]
pub struct ChatReader {
    room: RoomId,
    transcript: Transcript,
    /// How many entries of each author have been read.
    have: BTreeMap<NodeId, u64>,
}

impl ChatReader {
    /// Reads the whole log: the reader, and the chat so far, one line per
    /// message (with its newline) in canonical order.
    pub fn open(store: &Store, room: &RoomId) -> Result<(Self, Vec<String>), StoreError> {
        let mut reader = Self {
            room: *room,
            transcript: Transcript::default(),
            have: BTreeMap::new(),
        };
        let entries = reader.read(store, usize::MAX)?;
        let (transcript, lines) = Transcript::new(&entries);
        reader.transcript = transcript;
        Ok((reader, lines))
    }

    /// Reads up to `limit` entries that arrived since the last read, in
    /// the order they arrived: the lines they add, or `None` when there
    /// was no new entry.
    pub fn more(&mut self, store: &Store, limit: usize) -> Result<Option<Vec<String>>, StoreError> {
        let entries = self.read(store, limit)?;
        if entries.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            entries
                .iter()
                .filter_map(|(_, body)| self.transcript.push(body))
                .collect(),
        ))
    }

    fn read(&mut self, store: &Store, limit: usize) -> Result<Vec<(Hash, EntryBody)>, StoreError> {
        let have: Vec<(NodeId, u64)> = self.have.iter().map(|(a, n)| (*a, *n)).collect();
        let mut out = Vec::new();
        for bytes in store.room_entries_after(&self.room, &have, limit)? {
            let (entry, body) = Entry::decode(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("room log entry: {e}")))?;
            let n = self.have.entry(body.author).or_default();
            *n = (*n).max(body.seq + 1);
            out.push((entry.hash(&self.room), body));
        }
        Ok(out)
    }
}

/// The hashes of the entries live at `path` (what a change there replaces).
pub fn live_entries(store: &Store, room: &RoomId, path: &str) -> Result<Vec<Hash>, StoreError> {
    Ok(live(store, room, path)?
        .into_iter()
        .map(|l| l.entry)
        .collect())
}

/// The members that set a display name, with it.
pub fn member_names(store: &Store, room: &RoomId) -> Result<Vec<(NodeId, String)>, StoreError> {
    let mut out = Vec::new();
    for (k, v) in store.room_view_range(room, view::NAMES, None, usize::MAX)? {
        if let Ok(b) = <[u8; 32]>::try_from(&k[view::NAMES.len()..]) {
            out.push((
                NodeId::from_bytes(b),
                String::from_utf8_lossy(&v).into_owned(),
            ));
        }
    }
    Ok(out)
}

/// The display name `member` last set in the room, if any.
pub fn member_name(
    store: &Store,
    room: &RoomId,
    member: &NodeId,
) -> Result<Option<String>, StoreError> {
    let mut key = view::NAMES.to_vec();
    key.extend_from_slice(member.as_bytes());
    Ok(store
        .room_view_get(room, &key)?
        .map(|v| String::from_utf8_lossy(&v).into_owned()))
}

/// The room's replication policy ([`DEFAULT_COPIES`] if its log sets none).
pub fn policy(store: &Store, room: &RoomId) -> Result<Copies, StoreError> {
    match store.room_view_get(room, view::POLICY)? {
        Some(v) => Ok(decode::<view::Latest<Copies>>(&v)?.value),
        None => Ok(DEFAULT_COPIES),
    }
}

/// The room's suggested name: the `RoomName` that holds (the same on every
/// member once synced), if the log has one.
pub fn suggested_name(store: &Store, room: &RoomId) -> Result<Option<String>, StoreError> {
    match store.room_view_get(room, view::ROOM_NAME)? {
        Some(v) => Ok(Some(decode::<view::Latest<String>>(&v)?.value)),
        None => Ok(None),
    }
}

/// The size of the rendered chat (`chat.log`) in bytes.
pub fn chat_size(store: &Store, room: &RoomId) -> Result<u64, StoreError> {
    match store.room_view_get(room, view::STATE)? {
        Some(v) => Ok(decode::<view::ViewState>(&v)?.chat_bytes),
        None => Ok(0),
    }
}

/// The number of lines of the rendered chat (`chat.log`): the next
/// line's number for [`chat`].
pub fn chat_lines(store: &Store, room: &RoomId) -> Result<u64, StoreError> {
    match store.room_view_get(room, view::STATE)? {
        Some(v) => Ok(decode::<view::ViewState>(&v)?.chat_lines),
        None => Ok(0),
    }
}

/// Up to `len` bytes of the rendered chat from byte `offset`.
pub fn chat_read(
    store: &Store,
    room: &RoomId,
    offset: u64,
    len: usize,
) -> Result<Vec<u8>, StoreError> {
    let lines = match store.room_view_get(room, view::STATE)? {
        Some(v) => decode::<view::ViewState>(&v)?.chat_lines,
        None => 0,
    };
    let line = |n: u64| -> Result<Option<ChatLine>, StoreError> {
        store
            .room_view_get(room, &view::chat_key(n))?
            .map(|v| decode::<ChatLine>(&v))
            .transpose()
    };
    // The last line starting at or before `offset`.
    let (mut lo, mut hi) = (0u64, lines);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match line(mid)? {
            Some(l) if l.offset <= offset => lo = mid,
            Some(_) => hi = mid,
            None => return Err(StoreError::Corrupt(format!("chat line {mid} is missing"))),
        }
    }
    let mut out = Vec::with_capacity(len.min(1 << 20));
    let Some(first) = line(lo)? else {
        return Ok(out);
    };
    let skip = offset.saturating_sub(first.offset) as usize;
    let mut text = first.text.into_bytes();
    if skip >= text.len() {
        // At or past the end of the last line.
        if lo + 1 >= lines {
            return Ok(out);
        }
        text.clear();
    }
    out.extend_from_slice(&text[skip.min(text.len())..]);
    // The range starts after its `start` key: the lines after `lo`.
    let start = view::chat_key(lo);
    if out.len() < len && lo + 1 < lines {
        for (_, v) in store.room_view_range(room, view::CHAT, Some(&start), len / 16 + 2)? {
            out.extend_from_slice(decode::<ChatLine>(&v)?.text.as_bytes());
            if out.len() >= len {
                break;
            }
        }
    }
    out.truncate(len);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use p2pfs_proto::{Hash, RoomSecret, room::Op};
    use p2pfs_store::Store;

    use super::*;
    use crate::{identity::SecretKey, room::log};

    #[test]
    fn a_listing_updated_by_path_matches_a_full_reload() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let secret = RoomSecret([4; 32]);
        let room = secret.id();
        let (a, b) = (
            SecretKey::generate().unwrap(),
            SecretKey::generate().unwrap(),
        );
        let mut listing = load_listing(&store, &room).unwrap();
        let mut rng = fastrand::Rng::with_seed(11);
        let names = ["a", "b", "d/x", "d/y", "d/e/z", "d", "d/e"];
        for round in 0..60 {
            let key = if rng.bool() { &a } else { &b };
            let path = names[rng.usize(..names.len())].to_string();
            let replaces = live_entries(&store, &room, &path).unwrap();
            // Sometimes replace nothing: a concurrent write (a conflict).
            let replaces = if rng.u8(..4) == 0 {
                Vec::new()
            } else {
                replaces
            };
            let content = Hash::from_bytes([round as u8; 32]);
            let op = match rng.u8(..4) {
                0 => Op::Delete {
                    path: path.clone(),
                    replaces,
                },
                1 => Op::Mkdir {
                    path: path.clone(),
                    replaces,
                },
                _ => Op::Put {
                    path: path.clone(),
                    hash: content,
                    size: round,
                    exec: false,
                    mtime: round,
                    replaces,
                },
            };
            if matches!(&op, Op::Delete { replaces, .. } if replaces.is_empty()) {
                continue;
            }
            log::author_all(&store, key, &secret, vec![op]).unwrap();
            update_listing(&mut listing, &store, &room, [path]).unwrap();
            let got: Vec<FileEntry> = listing.entries().collect();
            assert_eq!(got, ls(&store, &room).unwrap(), "round {round}");
        }
    }

    #[test]
    fn chat_reads_at_any_offset_match_the_whole_chat() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let secret = RoomSecret([3; 32]);
        let room = secret.id();
        let key = SecretKey::generate().unwrap();
        let ops = ["one", "two", "a longer third line", "4", "five ✓"]
            .iter()
            .map(|t| Op::Chat {
                text: t.to_string(),
            })
            .collect();
        log::author_all(&store, &key, &secret, ops).unwrap();
        let whole: Vec<u8> = chat(&store, &room, 0, usize::MAX)
            .unwrap()
            .concat()
            .into_bytes();
        assert_eq!(chat_size(&store, &room).unwrap(), whole.len() as u64);
        for offset in 0..=whole.len() + 2 {
            for len in [1, 3, 17, 64, 10_000] {
                let got = chat_read(&store, &room, offset as u64, len).unwrap();
                let end = (offset + len).min(whole.len());
                let want = whole.get(offset..end).unwrap_or_default();
                assert_eq!(got, want, "offset {offset} len {len}");
            }
        }
    }
}
