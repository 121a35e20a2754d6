//! The views of a room, derived from its log (the kappa architecture): the
//! file tree, the chat, the members' names, the blobs the room refers to.
//!
//! [`apply`] folds one entry into the views; entries are applied in the
//! order the log accepted them, which puts every entry after its parents.
//! The views live in a key-value space ([`Kv`]: the store's `room_view_v1`
//! in a node, a map in tests) and hold nothing that is not derived from the
//! log, so they can be dropped and rebuilt at any time.
//!
//! The file tree is a multi-value register per path (hyperkv's): each put,
//! delete or mkdir names the entries for its path that it replaces, and the
//! live entries of a path are those no entry for that path replaces. That
//! set does not depend on the order entries arrive in, so every member that
//! has the same entries shows the same tree. [`listing`] turns the live
//! entries into names: several live puts (made concurrently) are all
//! kept, the winner under the path and the others as
//! `PATH.conflict-<short author id>`; a put beats a concurrent delete.
//!
//! The chat is rendered line by line as messages are applied, and a line
//! once stored never changes (`chat.log` never rewrites bytes it showed):
//! text and names are escaped and labelled by [`super::render`], a name
//! qualified with the short id when another author has taken a name with
//! the same key before the line was applied (the index `k/`). Applied in
//! the same order, the same entries give the same bytes, so a rebuild
//! shows what was shown. [`FORMAT`] changes with the rendering: the chat
//! of views of another format is rendered again ([`is_current`],
//! [`replay_chat`]).
//!
//! Keys: `v` the views' [`FORMAT`]; `s` the [`ViewState`]; `t/PATH` the
//! live entries of a path; `x/HASH PATH` an entry replaced by an entry for
//! that path; `c/N` (N big-endian) chat line N; `n/AUTHOR` a member's
//! display name; `k/NAMEKEY` the authors that ever took a display name with
//! that [`super::render::name_key`]; `b/HASH` a blob the room refers to;
//! `r` the room's name; `p` the replication policy that holds (the latest
//! by time, then entry hash); `d/DIR` the latest `time` of the entries
//! that made or removed a name directly in directory DIR (its
//! modification time); `w` the
//! [`TREE_FORMAT`] of the `t/`, `x/` and `d/` rows.

use std::collections::{BTreeMap, BTreeSet};

use p2pfs_proto::{
    Hash, NodeId, codec,
    room::{Attr, EntryBody, FileId, Meta, Op, Time},
};
use serde::{Deserialize, Serialize};

use super::{moderation::Moderation, render};

/// Where views are kept.
pub(crate) trait Kv {
    /// The error of the underlying storage.
    type Error;
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error>;
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), Self::Error>;
    fn remove(&mut self, key: &[u8]) -> Result<(), Self::Error>;
}

/// How far the views have read the log, and the size of the chat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ViewState {
    /// The local index of the next entry to apply.
    pub(crate) applied: u64,
    /// Lines in the chat.
    pub(crate) chat_lines: u64,
    /// Bytes in the rendered chat.
    pub(crate) chat_bytes: u64,
}

/// A live entry of a path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LiveOp {
    pub(crate) entry: Hash,
    pub(crate) author: NodeId,
    pub(crate) time: u64,
    pub(crate) kind: LiveKind,
}

/// What a live entry says is at its path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum LiveKind {
    File {
        hash: Hash,
        size: u64,
        attr: Attr,
        /// `None` for a [`Op::Put`], which names no file.
        inode: Option<FileId>,
    },
    /// A directory: its attributes, `None` for a [`Op::Mkdir`].
    Dir {
        attr: Option<Attr>,
    },
    Deleted,
    /// A symbolic link: its times, `None` for a [`Op::Symlink`] (the
    /// entry's time).
    Symlink {
        target: String,
        attr: Option<Attr>,
    },
}

impl LiveKind {
    /// A leaf of the tree (a file or a link), shown under its path or as
    /// a conflict copy.
    pub(crate) fn is_leaf(&self) -> bool {
        matches!(self, LiveKind::File { .. } | LiveKind::Symlink { .. })
    }

    /// A directory.
    pub(crate) fn is_dir(&self) -> bool {
        matches!(self, LiveKind::Dir { .. })
    }
}

/// The attributes a [`Op::Put`] written at `time` stands for:
/// `rwxr-xr-x` or `rw-r--r--`, accessed when modified, changed when
/// written.
pub(crate) fn put_attr(exec: bool, mtime_ms: u64, time: u64) -> Attr {
    let t = Time::from_millis(mtime_ms);
    Attr {
        mode: if exec { 0o755 } else { 0o644 },
        mtime: t,
        atime: t,
        ctime: Time::from_millis(time),
    }
}

/// A chat line as stored: where it starts in the rendered chat, and its
/// text with the final newline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChatLine {
    pub(crate) offset: u64,
    pub(crate) text: String,
}

/// The key of the views' format.
pub(crate) const FORMAT_KEY: &[u8] = b"v";
/// The format of the views but the tree's: 3 keeps the suggested name
/// that holds on every member ([`ROOM_NAME`]); 2 escapes chat text and
/// names and qualifies shared names (1, unversioned, showed them raw).
pub(crate) const FORMAT: &[u8] = b"3";
pub(crate) const STATE: &[u8] = b"s";
pub(crate) const TREE: &[u8] = b"t/";
pub(crate) const CHAT: &[u8] = b"c/";
pub(crate) const NAMES: &[u8] = b"n/";
const NAME_CLAIMS: &[u8] = b"k/";
pub(crate) const BLOBS: &[u8] = b"b/";
const DEAD: &[u8] = b"x/";
/// The room's suggested name ([`Latest`]); `r`, the last in local log
/// order, is no longer written (members could hold different ones).
pub(crate) const ROOM_NAME: &[u8] = b"R";
pub(crate) const POLICY: &[u8] = b"p";
/// The key of the tree rows' format.
pub(crate) const TREE_FORMAT_KEY: &[u8] = b"w";
/// The format of the `t/`, `x/` and `d/` rows: 1 has attributes, file ids
/// and directory times (none, unversioned, had only the executable bit).
pub(crate) const TREE_FORMAT: &[u8] = b"1";
pub(crate) const DIR_TIMES: &[u8] = b"d/";
/// The key prefixes of the tree's part of the views: what replaying the
/// tree drops and rebuilds.
pub(crate) const TREE_PARTS: [&[u8]; 3] = [TREE, DEAD, DIR_TIMES];
/// The moderation state ([`super::moderation::Moderation`]).
pub(crate) const MODERATION: &[u8] = b"m";
/// Per removed member: the first of its entry numbers left out (u64 LE).
const CUT: &[u8] = b"xc/";
/// Per member that left: present while it has not written since.
const LEFT: &[u8] = b"xl/";

/// A room setting that holds (the policy, the suggested name): the entry
/// with the greatest time, then entry hash, so every member picks the
/// same whatever the order entries arrived in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Latest<T> {
    pub(crate) time: u64,
    pub(crate) entry: Hash,
    pub(crate) value: T,
}

/// Keeps `value`, set by entry `hash` of `body`, at `row` if it is the
/// setting that holds ([`Latest`]).
fn put_latest<K: Kv, T: Serialize + serde::de::DeserializeOwned>(
    kv: &mut K,
    row: &[u8],
    hash: &Hash,
    body: &EntryBody,
    value: T,
) -> Result<(), ViewError<K::Error>> {
    let new = Latest {
        time: body.time,
        entry: *hash,
        value,
    };
    let newer = match kv.get(row).map_err(ViewError::Storage)? {
        Some(b) => {
            let old: Latest<T> = decode(&b)?;
            (new.time, new.entry) > (old.time, old.entry)
        }
        None => true,
    };
    if newer {
        kv.put(row, &encode(&new)?).map_err(ViewError::Storage)?;
    }
    Ok(())
}

fn key(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + rest.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(rest);
    k
}

/// The key of chat line `n`.
pub(crate) fn chat_key(n: u64) -> Vec<u8> {
    key(CHAT, &n.to_be_bytes())
}

/// The key of a blob's reference.
pub(crate) fn blob_key(hash: &Hash) -> Vec<u8> {
    key(BLOBS, hash.as_bytes())
}

/// Errors of applying an entry: the storage's, or undecodable view data.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ViewError<E> {
    #[error("{0}")]
    Storage(E),
    #[error("damaged room view ({0}): drop the views to rebuild them")]
    Corrupt(String),
}

fn decode<T: serde::de::DeserializeOwned, E>(bytes: &[u8]) -> Result<T, ViewError<E>> {
    codec::decode(bytes).map_err(|e| ViewError::Corrupt(e.to_string()))
}

fn encode<T: Serialize + ?Sized, E>(v: &T) -> Result<Vec<u8>, ViewError<E>> {
    codec::encode(v).map_err(|e| ViewError::Corrupt(e.to_string()))
}

/// The views' progress.
pub(crate) fn state<K: Kv>(kv: &K) -> Result<ViewState, ViewError<K::Error>> {
    match kv.get(STATE).map_err(ViewError::Storage)? {
        Some(b) => decode(&b),
        None => Ok(ViewState::default()),
    }
}

/// Whether views holding `format` (the value at [`FORMAT_KEY`]) and
/// `applied` entries are of this code's format; views that applied
/// nothing yet are.
pub(crate) fn is_current(format: Option<&[u8]>, applied: u64) -> bool {
    applied == 0 || format == Some(FORMAT)
}

/// Whether views holding tree rows of `format` (the value at
/// [`TREE_FORMAT_KEY`]) and `applied` entries are of this code's format.
pub(crate) fn tree_is_current(format: Option<&[u8]>, applied: u64) -> bool {
    applied == 0 || format == Some(TREE_FORMAT)
}

/// How `author` is shown on a chat line applied now (see
/// [`super::render::label`]).
fn chat_label<K: Kv>(kv: &K, author: &NodeId) -> Result<String, ViewError<K::Error>> {
    let name = kv
        .get(&key(NAMES, author.as_bytes()))
        .map_err(ViewError::Storage)?
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let shared = match &name {
        Some(n) => claims(kv, n)?.iter().any(|a| a != author),
        None => false,
    };
    Ok(render::label(name.as_deref(), author, shared))
}

/// The authors that took a name with the key of `name`.
fn claims<K: Kv>(kv: &K, name: &str) -> Result<Vec<NodeId>, ViewError<K::Error>> {
    match kv
        .get(&key(NAME_CLAIMS, render::name_key(name).as_bytes()))
        .map_err(ViewError::Storage)?
    {
        Some(b) => decode(&b),
        None => Ok(Vec::new()),
    }
}

/// Folds the entry at local index `index` into the views. Entries must be
/// applied in log order; one already applied is skipped.
pub(crate) fn apply<K: Kv>(
    kv: &mut K,
    index: u64,
    hash: &Hash,
    body: &EntryBody,
) -> Result<(), ViewError<K::Error>> {
    let mut st = state(kv)?;
    if index != st.applied {
        return if index < st.applied {
            Ok(())
        } else {
            Err(ViewError::Corrupt(format!(
                "entry {index} applied before entry {}",
                st.applied
            )))
        };
    }
    let s = ViewError::Storage;
    if index == 0 {
        kv.put(FORMAT_KEY, FORMAT).map_err(s)?;
        kv.put(TREE_FORMAT_KEY, TREE_FORMAT).map_err(s)?;
    }
    if is_cut(kv, body)? {
        // A removed member's entry that came before its removal: in the
        // log, out of every view.
        st.applied += 1;
        return kv.put(STATE, &encode(&st)?).map_err(s);
    }
    apply_moderation(kv, hash, body)?;
    match &body.op {
        Op::Chat { .. } | Op::Meta(Meta::MemberName(_)) => apply_chat(kv, &mut st, body)?,
        Op::Meta(Meta::RoomName(n)) => put_latest(kv, ROOM_NAME, hash, body, n.clone())?,
        Op::Meta(Meta::Copies(copies)) => put_latest(kv, POLICY, hash, body, *copies)?,
        Op::Put { .. }
        | Op::Delete { .. }
        | Op::Mkdir { .. }
        | Op::Symlink { .. }
        | Op::File { .. }
        | Op::Dir { .. }
        | Op::SymlinkAt { .. } => apply_tree(kv, hash, body)?,
        Op::Epoch(_) | Op::Meta(Meta::Owner { .. } | Meta::Role { .. } | Meta::Leave) => {}
    }
    st.applied += 1;
    kv.put(STATE, &encode(&st)?).map_err(s)?;
    Ok(())
}

/// Whether `body` is by a removed member, numbered after what its removal
/// kept.
pub(crate) fn is_cut<K: Kv>(kv: &K, body: &EntryBody) -> Result<bool, ViewError<K::Error>> {
    Ok(
        match kv
            .get(&key(CUT, body.author.as_bytes()))
            .map_err(ViewError::Storage)?
        {
            Some(b) => {
                let keep = <[u8; 8]>::try_from(b.as_slice())
                    .map(u64::from_le_bytes)
                    .map_err(|_| ViewError::Corrupt("a cut row of the wrong size".into()))?;
                body.seq >= keep
            }
            None => false,
        },
    )
}

/// The moderation state the views hold.
pub(crate) fn moderation<K: Kv>(kv: &K) -> Result<Moderation, ViewError<K::Error>> {
    match kv.get(MODERATION).map_err(ViewError::Storage)? {
        Some(b) => decode(&b),
        None => Ok(Moderation::default()),
    }
}

/// Replaces the moderation state and the rows derived from it (after a
/// rebuild).
pub(crate) fn set_moderation<K: KvRange>(
    kv: &mut K,
    m: &Moderation,
) -> Result<(), ViewError<K::Error>> {
    let s = ViewError::Storage;
    for prefix in [CUT, LEFT] {
        for k in kv.keys(prefix).map_err(s)? {
            kv.remove(&k).map_err(s)?;
        }
    }
    for (member, r) in &m.removed {
        kv.put(&key(CUT, member.as_bytes()), &r.keep.to_le_bytes())
            .map_err(s)?;
    }
    for member in m.left.keys() {
        kv.put(&key(LEFT, member.as_bytes()), &[]).map_err(s)?;
    }
    kv.put(MODERATION, &encode(m)?).map_err(s)
}

/// Views that can list their keys under a prefix.
pub(crate) trait KvRange: Kv {
    /// Every key starting with `prefix`.
    fn keys(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, Self::Error>;
}

/// The moderation's part of [`apply`]: roles, epochs, removals and leaves
/// (with the rows that let every entry be checked cheaply: the cuts and
/// the members that left).
fn apply_moderation<K: Kv>(
    kv: &mut K,
    hash: &Hash,
    body: &EntryBody,
) -> Result<(), ViewError<K::Error>> {
    let s = ViewError::Storage;
    let left_key = key(LEFT, body.author.as_bytes());
    let was_left = kv.get(&left_key).map_err(s)?.is_some();
    if !was_left && !super::moderation::concerns(&body.op) {
        return Ok(());
    }
    let mut m = moderation(kv)?;
    let (cuts, changed) = m.apply(hash, body);
    if !changed {
        return Ok(());
    }
    for c in cuts {
        kv.put(&key(CUT, c.member.as_bytes()), &c.keep.to_le_bytes())
            .map_err(s)?;
    }
    match (was_left, m.has_left(&body.author)) {
        (false, true) => kv.put(&left_key, &[]).map_err(s)?,
        (true, false) => kv.remove(&left_key).map_err(s)?,
        _ => {}
    }
    kv.put(MODERATION, &encode(&m)?).map_err(s)
}

/// The tree's part of [`apply`]: the live entries of the entry's path,
/// the entries it replaces, its directory's time, the blob it names.
fn apply_tree<K: Kv>(kv: &mut K, hash: &Hash, body: &EntryBody) -> Result<(), ViewError<K::Error>> {
    let s = ViewError::Storage;
    let Some(path) = body.op.path() else {
        return Ok(());
    };
    let tkey = key(TREE, path.as_bytes());
    let mut live: Vec<LiveOp> = match kv.get(&tkey).map_err(s)? {
        Some(b) => decode(&b)?,
        None => Vec::new(),
    };
    let dead_key = |h: &Hash| {
        let mut k = key(DEAD, h.as_bytes());
        k.extend_from_slice(path.as_bytes());
        k
    };
    for r in body.op.replaces() {
        kv.put(&dead_key(r), &[]).map_err(s)?;
        live.retain(|l| l.entry != *r);
    }
    if let Op::Put { hash, .. } | Op::File { hash, .. } = &body.op {
        // Every blob a put names belongs to the room, live or not.
        kv.put(&blob_key(hash), &[]).map_err(s)?;
    }
    // The directory's time: the latest entry that made or removed a name
    // directly in it (one that replaces nothing, or a delete; a new
    // version or new attributes of a name leave it, as on a disk). The
    // maximum of a set, whatever the order.
    if matches!(body.op, Op::Delete { .. }) || body.op.replaces().is_empty() {
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        let dkey = key(DIR_TIMES, dir.as_bytes());
        let later = match kv.get(&dkey).map_err(s)? {
            Some(b) => decode::<u64, _>(&b)? < body.time,
            None => true,
        };
        if later {
            kv.put(&dkey, &encode(&body.time)?).map_err(s)?;
        }
    }
    let dead = kv.get(&dead_key(hash)).map_err(s)?.is_some();
    if !dead {
        let kind = match &body.op {
            Op::Put {
                hash,
                size,
                exec,
                mtime,
                ..
            } => LiveKind::File {
                hash: *hash,
                size: *size,
                attr: put_attr(*exec, *mtime, body.time),
                inode: None,
            },
            Op::File {
                hash,
                size,
                attr,
                inode,
                ..
            } => LiveKind::File {
                hash: *hash,
                size: *size,
                attr: *attr,
                inode: Some(*inode),
            },
            Op::Mkdir { .. } => LiveKind::Dir { attr: None },
            Op::Dir { attr, .. } => LiveKind::Dir { attr: Some(*attr) },
            Op::Symlink { target, .. } => LiveKind::Symlink {
                target: target.clone(),
                attr: None,
            },
            Op::SymlinkAt { target, attr, .. } => LiveKind::Symlink {
                target: target.clone(),
                attr: Some(*attr),
            },
            _ => LiveKind::Deleted,
        };
        live.push(LiveOp {
            entry: *hash,
            author: body.author,
            time: body.time,
            kind,
        });
        live.sort_by_key(|a| a.entry);
    }
    if live.is_empty() {
        kv.remove(&tkey).map_err(s)?;
    } else {
        kv.put(&tkey, &encode(&live)?).map_err(s)?;
    }
    Ok(())
}

/// Starts rebuilding the tree's rows, once its [`TREE_PARTS`] are removed.
/// The entries applied so far must be replayed in log order with
/// [`replay_tree`], and [`TREE_FORMAT`] written at the end.
pub(crate) fn replay_tree<K: Kv>(
    kv: &mut K,
    hash: &Hash,
    body: &EntryBody,
) -> Result<(), ViewError<K::Error>> {
    if is_cut(kv, body)? {
        return Ok(());
    }
    apply_tree(kv, hash, body)
}

/// The time of directory `dir` ("" for the room's top): the latest `time`
/// of the entries directly in it, if any (`super::query::dir_time` reads
/// it from the store).
#[cfg(test)]
pub(crate) fn dir_time<K: Kv>(kv: &K, dir: &str) -> Result<Option<u64>, ViewError<K::Error>> {
    match kv
        .get(&key(DIR_TIMES, dir.as_bytes()))
        .map_err(ViewError::Storage)?
    {
        Some(b) => Ok(Some(decode(&b)?)),
        None => Ok(None),
    }
}

/// The chat's part of [`apply`]: a message becomes a line, a display
/// name is recorded (and its key taken); other entries change nothing.
fn apply_chat<K: Kv>(
    kv: &mut K,
    st: &mut ViewState,
    body: &EntryBody,
) -> Result<(), ViewError<K::Error>> {
    let s = ViewError::Storage;
    match &body.op {
        Op::Chat { text } => {
            let label = chat_label(kv, &body.author)?;
            let line = render::chat_line(body.time, &label, text);
            let stored = ChatLine {
                offset: st.chat_bytes,
                text: line,
            };
            kv.put(&chat_key(st.chat_lines), &encode(&stored)?)
                .map_err(s)?;
            st.chat_lines += 1;
            st.chat_bytes += stored.text.len() as u64;
        }
        Op::Meta(Meta::MemberName(n)) => {
            kv.put(&key(NAMES, body.author.as_bytes()), n.as_bytes())
                .map_err(s)?;
            let mut authors = claims(kv, n)?;
            if !authors.contains(&body.author) {
                authors.push(body.author);
                authors.sort();
                let k = key(NAME_CLAIMS, render::name_key(n).as_bytes());
                kv.put(&k, &encode(&authors)?).map_err(s)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The key prefixes of the chat's part of the views (lines, names, name
/// keys): what re-rendering the chat drops and rebuilds.
pub(crate) const CHAT_PARTS: [&[u8]; 3] = [CHAT, NAMES, NAME_CLAIMS];

/// Starts re-rendering the chat, once its [`CHAT_PARTS`] are removed: an
/// empty chat.
pub(crate) fn reset_chat<K: Kv>(kv: &mut K) -> Result<(), ViewError<K::Error>> {
    let mut st = state(kv)?;
    st.chat_lines = 0;
    st.chat_bytes = 0;
    kv.put(STATE, &encode(&st)?).map_err(ViewError::Storage)
}

/// Re-renders the chat's part of entry `hash`, already applied, after
/// [`reset_chat`] (and keeps the suggested name it sets, if it does); the
/// entries applied so far must be replayed in log order, and [`FORMAT`]
/// written at the end.
pub(crate) fn replay_chat<K: Kv>(
    kv: &mut K,
    hash: &Hash,
    body: &EntryBody,
) -> Result<(), ViewError<K::Error>> {
    if is_cut(kv, body)? {
        return Ok(());
    }
    if let Op::Meta(Meta::RoomName(n)) = &body.op {
        return put_latest(kv, ROOM_NAME, hash, body, n.clone());
    }
    let mut st = state(kv)?;
    apply_chat(kv, &mut st, body)?;
    kv.put(STATE, &encode(&st)?).map_err(ViewError::Storage)
}

/// A file or directory in a room's tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Its path in the room.
    pub path: String,
    /// What it is.
    pub kind: FileKind,
}

/// A file's content, or a directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileKind {
    /// A file.
    File {
        /// Its content.
        hash: Hash,
        /// Its size.
        size: u64,
        /// Permission bits and times.
        attr: Attr,
        /// Which file this is a name of (`None`: a name of its own).
        inode: Option<FileId>,
        /// Who put it.
        author: NodeId,
        /// The entry that put it (what a replacing entry names).
        entry: Hash,
    },
    /// A directory.
    Dir {
        /// Its attributes, if a [`Op::Dir`] made it.
        attr: Option<Attr>,
        /// When the entry that made it was written (0 for a directory only
        /// implied by what is in it).
        ctime: u64,
    },
    /// A symbolic link.
    Symlink {
        /// What it points to.
        target: String,
        /// Its times, if its entry has them.
        attr: Option<Attr>,
        /// When it was made, ms since the Unix epoch (its entry's time).
        mtime: u64,
        /// Who made it.
        author: NodeId,
        /// The entry that made it.
        entry: Hash,
    },
}

/// What a live put or link shows (`None` for a directory or a delete).
pub(crate) fn file_kind(p: &LiveOp) -> Option<FileKind> {
    if let LiveKind::Symlink { target, attr } = &p.kind {
        return Some(FileKind::Symlink {
            target: target.clone(),
            attr: *attr,
            mtime: p.time,
            author: p.author,
            entry: p.entry,
        });
    }
    match p.kind {
        LiveKind::File {
            hash,
            size,
            attr,
            inode,
        } => Some(FileKind::File {
            hash,
            size,
            attr,
            inode,
            author: p.author,
            entry: p.entry,
        }),
        _ => None,
    }
}

/// What a directory's row shows: its latest live directory entry (by
/// `(time, author, entry)`, like a put), if any.
pub(crate) fn dir_kind(live: Option<&Vec<LiveOp>>) -> FileKind {
    let top = live.and_then(|l| {
        l.iter()
            .filter(|o| o.kind.is_dir())
            .max_by_key(|o| (o.time, o.author, o.entry))
    });
    match top {
        Some(LiveOp {
            time,
            kind: LiveKind::Dir { attr },
            ..
        }) => FileKind::Dir {
            attr: *attr,
            ctime: *time,
        },
        _ => FileKind::Dir {
            attr: None,
            ctime: 0,
        },
    }
}

/// The tree shown for a room, from each path's live entries (in any
/// order): names sorted, directories implied by the files in them.
pub(crate) fn listing(paths: impl IntoIterator<Item = (String, Vec<LiveOp>)>) -> Vec<FileEntry> {
    let mut files: BTreeMap<String, Vec<LiveOp>> = BTreeMap::new();
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    let mut explicit: BTreeMap<String, FileKind> = BTreeMap::new();
    for (path, live) in paths {
        if live.iter().any(|l| l.kind.is_dir()) {
            dirs.insert(path.clone());
            explicit.insert(path.clone(), dir_kind(Some(&live)));
        }
        let (puts, rest): (Vec<LiveOp>, Vec<LiveOp>) =
            live.into_iter().partition(|l| l.kind.is_leaf());
        let shown = !puts.is_empty() || rest.iter().any(|l| l.kind.is_dir());
        if shown {
            let mut p = path.as_str();
            while let Some((parent, _)) = p.rsplit_once('/') {
                dirs.insert(parent.to_string());
                p = parent;
            }
        }
        if !puts.is_empty() {
            files.insert(path, puts);
        }
    }
    let mut out: BTreeMap<String, FileKind> = BTreeMap::new();
    for d in &dirs {
        let kind = explicit.remove(d).unwrap_or_else(|| dir_kind(None));
        out.insert(d.clone(), kind);
    }
    let mut conflicts = Vec::new();
    for (path, mut puts) in files {
        // The winner: the latest, then the greatest author, then entry.
        puts.sort_by_key(|p| std::cmp::Reverse((p.time, p.author, p.entry)));
        for (i, p) in puts.into_iter().enumerate() {
            let Some(kind) = file_kind(&p) else {
                continue;
            };
            if i == 0 && !dirs.contains(&path) {
                out.insert(path.clone(), kind);
            } else {
                conflicts.push((format!("{path}.conflict-{}", p.author.fmt_short()), kind));
            }
        }
    }
    // A conflict copy never hides a real name.
    for (name, kind) in conflicts {
        out.entry(name).or_insert(kind);
    }
    out.into_iter()
        .map(|(path, kind)| FileEntry { path, kind })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::convert::Infallible;

    use super::*;
    use p2pfs_proto::room::Copies;

    /// Views in memory.
    #[derive(Debug, Default, Clone, PartialEq, Eq)]
    pub(crate) struct MapKv(pub(crate) BTreeMap<Vec<u8>, Vec<u8>>);

    impl Kv for MapKv {
        type Error = Infallible;
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Infallible> {
            Ok(self.0.get(key).cloned())
        }
        fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), Infallible> {
            self.0.insert(key.to_vec(), value.to_vec());
            Ok(())
        }
        fn remove(&mut self, key: &[u8]) -> Result<(), Infallible> {
            self.0.remove(key);
            Ok(())
        }
    }

    impl MapKv {
        pub(crate) fn listing(&self) -> Vec<FileEntry> {
            listing(self.0.iter().filter_map(|(k, v)| {
                let path = k.strip_prefix(TREE)?;
                Some((
                    String::from_utf8(path.to_vec()).ok()?,
                    codec::decode(v).ok()?,
                ))
            }))
        }

        pub(crate) fn chat(&self) -> String {
            self.0
                .iter()
                .filter(|(k, _)| k.starts_with(CHAT))
                .map(|(_, v)| codec::decode::<ChatLine>(v).unwrap().text)
                .collect()
        }
    }

    fn author(n: u8) -> NodeId {
        NodeId::from_bytes([n; 32])
    }

    fn entry(n: u8, a: u8, time: u64, op: Op) -> (Hash, EntryBody) {
        (
            Hash::of(&[n]),
            EntryBody {
                author: author(a),
                seq: 0,
                parents: vec![],
                time,
                member: [0; 32],
                op,
            },
        )
    }

    fn put(path: &str, content: &[u8], replaces: Vec<Hash>) -> Op {
        Op::Put {
            path: path.into(),
            hash: Hash::of(content),
            size: content.len() as u64,
            exec: false,
            mtime: 0,
            replaces,
        }
    }

    fn run(entries: &[(Hash, EntryBody)]) -> MapKv {
        let mut kv = MapKv::default();
        for (i, (h, b)) in entries.iter().enumerate() {
            apply(&mut kv, i as u64, h, b).unwrap();
        }
        kv
    }

    fn names(kv: &MapKv) -> Vec<String> {
        kv.listing().into_iter().map(|f| f.path).collect()
    }

    #[test]
    fn files_and_directories_keep_modes_and_times_and_directories_their_time() {
        let t = |secs| Time { secs, nanos: 7 };
        let attr = |mode, secs| Attr {
            mode,
            mtime: t(secs),
            atime: t(secs + 1),
            ctime: t(secs + 2),
        };
        let d = entry(
            0,
            1,
            10,
            Op::Dir {
                path: "d".into(),
                attr: attr(0o700, 5),
                replaces: vec![],
            },
        );
        let f = entry(
            1,
            1,
            20,
            Op::File {
                path: "d/f".into(),
                hash: Hash::of(b"f"),
                size: 1,
                attr: attr(0o4751, -3),
                inode: [9; 16],
                replaces: vec![],
            },
        );
        let g = entry(2, 2, 30, put("d/g", b"g", vec![]));
        // A new version of a name: not a change of its directory.
        let f2 = entry(
            4,
            1,
            50,
            Op::File {
                path: "d/f".into(),
                hash: Hash::of(b"f"),
                size: 1,
                attr: attr(0o4751, -3),
                inode: [9; 16],
                replaces: vec![Hash::of(&[1])],
            },
        );
        let gone = entry(
            3,
            1,
            40,
            Op::Delete {
                path: "d/g".into(),
                replaces: vec![g.0],
            },
        );
        let all = [d, f, g, gone, f2];
        let kv = run(&all);
        let mut other = all.clone();
        other.reverse();
        let kv2 = run(&other);
        assert_eq!(kv.listing(), kv2.listing());
        let l = kv.listing();
        assert_eq!(l.len(), 2, "{l:?}");
        assert_eq!(
            l[0].kind,
            FileKind::Dir {
                attr: Some(attr(0o700, 5)),
                ctime: 10
            }
        );
        assert_eq!(
            l[1].kind,
            FileKind::File {
                hash: Hash::of(b"f"),
                size: 1,
                attr: attr(0o4751, -3),
                inode: Some([9; 16]),
                author: author(1),
                entry: Hash::of(&[4]),
            }
        );
        // A directory's time: the latest entry directly in it, a delete
        // too, whatever the order.
        for kv in [&kv, &kv2] {
            assert_eq!(dir_time(kv, "d").unwrap(), Some(40));
            assert_eq!(dir_time(kv, "").unwrap(), Some(10));
            assert_eq!(dir_time(kv, "d/f").unwrap(), None);
        }
        // A put stands for rw-r--r-- at its mtime.
        let kv = run(&[entry(0, 1, 10, put("p", b"p", vec![]))]);
        assert!(matches!(
            kv.listing()[0].kind,
            FileKind::File {
                attr: Attr { mode: 0o644, .. },
                inode: None,
                ..
            }
        ));
    }

    #[test]
    fn concurrent_puts_keep_both_and_a_put_beats_a_delete() {
        let e0 = entry(0, 1, 10, put("a.txt", b"one", vec![]));
        let h0 = e0.0;
        // Two members replace e0 without seeing each other.
        let e1 = entry(1, 1, 20, put("a.txt", b"two", vec![h0]));
        let e2 = entry(2, 2, 30, put("a.txt", b"three", vec![h0]));
        let e3 = entry(
            3,
            3,
            40,
            Op::Delete {
                path: "a.txt".into(),
                replaces: vec![h0],
            },
        );
        let orders = [
            vec![e0.clone(), e1.clone(), e2.clone(), e3.clone()],
            vec![e0.clone(), e3.clone(), e2.clone(), e1.clone()],
            // A replacing entry may arrive before the one it replaces
            // (another author's chain): the result is the same.
            vec![e2.clone(), e3.clone(), e0.clone(), e1.clone()],
        ];
        let mut results = vec![];
        for o in &orders {
            let kv = run(o);
            results.push(kv.listing());
        }
        assert_eq!(results[0], results[1]);
        assert_eq!(results[0], results[2]);
        let n = names(&run(&orders[0]));
        assert_eq!(
            n,
            vec![
                "a.txt".to_string(),
                format!("a.txt.conflict-{}", author(1).fmt_short())
            ]
        );
        // The later put (time 30) keeps the name.
        let l = run(&orders[0]).listing();
        assert!(matches!(l[0].kind, FileKind::File { hash, .. } if hash == Hash::of(b"three")));
        // Resolving: a put replacing both leaves one file.
        let e4 = entry(4, 1, 50, put("a.txt", b"merged", vec![e1.0, e2.0, e3.0]));
        let mut all = orders[0].clone();
        all.push(e4);
        assert_eq!(names(&run(&all)), vec!["a.txt".to_string()]);
    }

    #[test]
    fn deletes_dirs_and_nesting() {
        let e0 = entry(0, 1, 1, put("d/x/f", b"f", vec![]));
        let e1 = entry(
            1,
            1,
            2,
            Op::Mkdir {
                path: "empty".into(),
                replaces: vec![],
            },
        );
        let kv = run(&[e0.clone(), e1.clone()]);
        assert_eq!(names(&kv), vec!["d", "d/x", "d/x/f", "empty"]);
        let e2 = entry(
            2,
            1,
            3,
            Op::Delete {
                path: "d/x/f".into(),
                replaces: vec![e0.0],
            },
        );
        let e3 = entry(
            3,
            1,
            4,
            Op::Delete {
                path: "empty".into(),
                replaces: vec![e1.0],
            },
        );
        let kv = run(&[e0, e1, e2, e3]);
        assert!(names(&kv).is_empty());
        // A replace naming an entry of another path changes nothing there.
        let a = entry(5, 1, 1, put("a", b"a", vec![]));
        let b = entry(
            6,
            2,
            2,
            Op::Delete {
                path: "b".into(),
                replaces: vec![a.0],
            },
        );
        assert_eq!(names(&run(&[a.clone(), b.clone()])), vec!["a"]);
        assert_eq!(names(&run(&[b, a])), vec!["a"]);
    }

    #[test]
    fn chat_renders_names_in_log_order() {
        let e0 = entry(0, 1, 0, Op::Meta(Meta::MemberName("ana".into())));
        let e1 = entry(
            1,
            1,
            1_700_000_000_000,
            Op::Chat {
                text: "hello".into(),
            },
        );
        let e2 = entry(
            2,
            2,
            1_700_000_001_000,
            Op::Chat {
                text: "hi ana".into(),
            },
        );
        let kv = run(&[e0, e1, e2]);
        assert_eq!(
            kv.chat(),
            format!(
                "2023-11-14T22:13:20Z ana: hello\n2023-11-14T22:13:21Z {}: hi ana\n",
                author(2).fmt_short()
            )
        );
        let st = state(&kv).unwrap();
        assert_eq!(st.chat_lines, 2);
        assert_eq!(st.chat_bytes, kv.chat().len() as u64);
    }

    #[test]
    fn chat_lines_are_escaped_and_shared_names_qualified_as_applied() {
        let name = |n: u8, a: u8, s: &str| entry(n, a, 0, Op::Meta(Meta::MemberName(s.into())));
        let say = |n: u8, a: u8, s: &str| entry(n, a, 1000, Op::Chat { text: s.into() });
        let short = |a: u8| author(a).fmt_short();
        let entries = [
            name(0, 1, "alice"),
            say(1, 1, "first \x1b[2J\x1b]0;title\x07"),
            // Another member takes the same name (case aside).
            name(2, 2, "Alice"),
            say(3, 2, "\u{202e}evil\x7f\u{9b}"),
            say(4, 1, "second"),
            // A rename leaves the old name taken.
            name(5, 1, "al"),
            say(6, 2, "still"),
            // A member named like a short id; one not named at all.
            name(7, 3, &short(4)),
            say(8, 3, "x"),
            say(9, 4, "y"),
        ];
        let kv = run(&entries);
        let t = "1970-01-01T00:00:01Z";
        assert_eq!(
            kv.chat(),
            [
                format!("{t} alice: first \\x1b[2J\\x1b]0;title\\x07\n"),
                format!("{t} Alice ({}): \\u{{202e}}evil\\x7f\\u{{9b}}\n", short(2)),
                format!("{t} alice ({}): second\n", short(1)),
                format!("{t} Alice ({}): still\n", short(2)),
                format!("{t} {} ({}): x\n", short(4), short(3)),
                format!("{t} {}: y\n", short(4)),
            ]
            .concat()
        );
        // Rebuilt from the same log, the same bytes.
        assert_eq!(run(&entries), kv);
    }

    #[test]
    fn views_of_another_format_are_not_current() {
        let kv = run(&[entry(0, 1, 0, Op::Chat { text: "x".into() })]);
        assert_eq!(kv.0.get(FORMAT_KEY).map(Vec::as_slice), Some(FORMAT));
        assert!(is_current(Some(FORMAT), 1));
        assert!(!is_current(None, 1));
        assert!(!is_current(Some(b"1"), 7));
        assert!(is_current(None, 0));
    }

    #[test]
    fn the_latest_policy_holds_in_any_order() {
        let set = |n, t, c| entry(n, 1, t, Op::Meta(Meta::Copies(c)));
        let a = set(10, 5, Copies::Min(3));
        let b = set(11, 7, Copies::Full);
        let c = set(12, 7, Copies::Min(1));
        // b and c tie on time: the greater entry hash holds.
        let want = if b.0 > c.0 {
            Copies::Full
        } else {
            Copies::Min(1)
        };
        let orders = [
            vec![a.clone(), b.clone(), c.clone()],
            vec![c.clone(), b.clone(), a.clone()],
            vec![b.clone(), a.clone(), c.clone()],
        ];
        for order in orders {
            let kv = run(&order);
            let row: Latest<Copies> = codec::decode(&kv.0[POLICY]).unwrap();
            assert_eq!(row.value, want);
        }
        assert!(!run(&[]).0.contains_key(POLICY));
    }

    #[test]
    fn the_latest_room_name_holds_in_any_order() {
        let name = |n, t, s: &str| entry(n, 1, t, Op::Meta(Meta::RoomName(s.into())));
        let a = name(10, 5, "team");
        let b = name(11, 7, "crew");
        let c = name(12, 7, "band");
        let want = if b.0 > c.0 { "crew" } else { "band" };
        for order in [
            vec![a.clone(), b.clone(), c.clone()],
            vec![c.clone(), b.clone(), a.clone()],
        ] {
            let kv = run(&order);
            let row: Latest<String> = codec::decode(&kv.0[ROOM_NAME]).unwrap();
            assert_eq!(row.value, want);
        }
    }

    #[test]
    fn a_policy_row_keeps_its_bytes() {
        // The row's layout before `Latest` (time, entry, copies): views
        // already stored still decode.
        let row = Latest {
            time: 7,
            entry: Hash::from_bytes([1; 32]),
            value: Copies::Min(3),
        };
        let mut old = codec::encode(&7u64).unwrap();
        old.extend(codec::encode(&Hash::from_bytes([1; 32])).unwrap());
        old.extend(codec::encode(&Copies::Min(3)).unwrap());
        assert_eq!(codec::encode(&row).unwrap(), old);
    }
}
