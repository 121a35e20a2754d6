//! A room's log in the store: accepting checked entries (each after its
//! parents, each author's chain without gaps or forks), writing this
//! node's own entries, and keeping the views in step, all in the same
//! transaction as the log.

use std::collections::HashSet;

use p2pfs_proto::{
    Hash, NodeId, RoomId, RoomSecret,
    room::{Entry, EntryBody, MAX_PARENTS, Op},
};
use p2pfs_store::{RoomTxn, Store, StoreError};

use super::{
    entry::{self, Verified},
    moderation,
    view::{self, Kv, ViewError},
};
use crate::identity::SecretKey;

impl Kv for RoomTxn<'_> {
    type Error = StoreError;
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.view_get(key)
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.view_put(key, value)
    }
    fn remove(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.view_remove(key)
    }
}

impl view::KvRange for RoomTxn<'_> {
    fn keys(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self.view_range(prefix, after.as_deref(), 4096)?;
            if page.is_empty() {
                return Ok(out);
            }
            after = page.last().map(|(k, _)| k.clone());
            out.extend(page.into_iter().map(|(k, _)| k));
        }
    }
}

fn view_err(e: ViewError<StoreError>) -> StoreError {
    match e {
        ViewError::Storage(e) => e,
        ViewError::Corrupt(s) => StoreError::Corrupt(s),
    }
}

/// What became of a batch of entries.
#[derive(Debug, Default)]
pub(crate) struct Accepted {
    /// Entries new to the log, in the order they were added.
    pub(crate) new: Vec<Verified>,
    /// Entries whose parents (or earlier entries of their author) are not
    /// in the log yet.
    pub(crate) pending: Vec<Verified>,
    /// Entries refused, and why.
    pub(crate) rejected: Vec<(Hash, String)>,
    /// A removal came in after entries it cuts: the tree must be rebuilt
    /// without them ([`rebuild_tree_now`]).
    pub(crate) cut_applied: bool,
}

enum Check {
    Ready,
    Duplicate,
    Pending,
    Reject(String),
}

fn check(t: &RoomTxn<'_>, e: &Verified) -> Result<Check, StoreError> {
    if t.contains(&e.hash)? {
        return Ok(Check::Duplicate);
    }
    let b = &e.body;
    let next = t.next_seq(&b.author)?;
    if b.seq < next {
        return Ok(Check::Reject(format!(
            "{} signed two different entries number {}",
            b.author.fmt_short(),
            b.seq
        )));
    }
    if b.seq > next {
        return Ok(Check::Pending);
    }
    for p in &b.parents {
        if !t.contains(p)? {
            return Ok(Check::Pending);
        }
    }
    if b.seq > 0 {
        let prev = t.by_seq(&b.author, b.seq - 1)?;
        if !prev.is_some_and(|p| b.parents.contains(&p)) {
            return Ok(Check::Reject(format!(
                "entry {} of {} does not link to the author's previous entry",
                b.seq,
                b.author.fmt_short()
            )));
        }
    }
    // Checked whatever arrived first (the rules look at the entry's causal
    // past only); a removed member's entry after its cut is then taken in
    // like any other: members that took it in before the removal built on
    // it, and refusing it would leave their later entries waiting for a
    // parent for good. `view::apply` keeps it out of every view.
    if moderation::concerns(&b.op) {
        let m = view::moderation(t).map_err(view_err)?;
        let mut failed = None;
        let verdict = m.check(b, || match owner_seen(t, m.owner, &b.parents) {
            Ok(n) => n,
            Err(e) => {
                failed = Some(e);
                0
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        if let Err(why) = verdict {
            return Ok(Check::Reject(why));
        }
    }
    Ok(Check::Ready)
}

/// How many of `owner`'s entries the entry with these `parents` has in
/// its causal past (the owner's chain is numbered from 0, so one more than
/// the greatest number found). Walks the ancestors: epochs are rare.
fn owner_seen(t: &RoomTxn<'_>, owner: Option<NodeId>, parents: &[Hash]) -> Result<u64, StoreError> {
    let Some(owner) = owner else {
        return Ok(0);
    };
    let mut seen = 0u64;
    let mut visited: HashSet<Hash> = HashSet::new();
    let mut queue: Vec<Hash> = parents.to_vec();
    while let Some(h) = queue.pop() {
        if !visited.insert(h) {
            continue;
        }
        let Some((_, bytes)) = t.entry(&h)? else {
            continue;
        };
        let (_, body) = Entry::decode(&bytes)
            .map_err(|e| StoreError::Corrupt(format!("room log entry {h}: {e}")))?;
        if body.author == owner {
            // Everything before it in the owner's chain is in the past too,
            // and what that entry saw of others is seen through it: go on.
            seen = seen.max(body.seq + 1);
        }
        queue.extend(body.parents.iter().filter(|p| !visited.contains(p)));
    }
    Ok(seen)
}

fn append(t: &mut RoomTxn<'_>, e: &Verified) -> Result<(), StoreError> {
    let b = &e.body;
    let index = t.append(&e.hash, &b.author, b.seq, &b.parents, &e.bytes)?;
    view::apply(t, index, &e.hash, b).map_err(view_err)
}

/// Adds the entries to `room`'s log in one transaction, each once its
/// parents are in. Entries must have been checked with [`entry::verify`].
pub(crate) fn accept(
    store: &Store,
    room: &RoomId,
    entries: Vec<Verified>,
) -> Result<Accepted, StoreError> {
    store.room_write(room, |t| {
        let mut out = Accepted::default();
        let mut queue = entries;
        loop {
            let mut progress = false;
            let mut waiting = Vec::new();
            for e in queue {
                match check(t, &e)? {
                    Check::Ready => {
                        append(t, &e)?;
                        if let Op::Epoch(epoch) = &e.body.op {
                            for r in &epoch.removed {
                                if t.next_seq(&r.member)? > r.keep {
                                    out.cut_applied = true;
                                }
                            }
                        }
                        out.new.push(e);
                        progress = true;
                    }
                    Check::Duplicate => {}
                    Check::Pending => waiting.push(e),
                    Check::Reject(why) => out.rejected.push((e.hash, why)),
                }
            }
            queue = waiting;
            if !progress || queue.is_empty() {
                break;
            }
        }
        out.pending = queue;
        Ok(out)
    })
}

/// Writes, signs and adds an entry by this node.
#[cfg(test)]
pub(crate) fn author(
    store: &Store,
    key: &SecretKey,
    secret: &RoomSecret,
    op: Op,
) -> Result<Verified, StoreError> {
    let mut v = author_all(store, key, secret, vec![op])?;
    v.pop()
        .ok_or_else(|| StoreError::Invalid("no entry written".into()))
}

/// Writes, signs and adds entries by this node, in one transaction.
pub(crate) fn author_all(
    store: &Store,
    key: &SecretKey,
    secret: &RoomSecret,
    ops: Vec<Op>,
) -> Result<Vec<Verified>, StoreError> {
    store.room_write(&secret.id(), |t| {
        ops.into_iter()
            .map(|op| author_in(t, key, secret, op))
            .collect()
    })
}

fn author_in(
    t: &mut RoomTxn<'_>,
    key: &SecretKey,
    secret: &RoomSecret,
    op: Op,
) -> Result<Verified, StoreError> {
    let me = key.public();
    let seq = t.next_seq(&me)?;
    if view::is_cut(
        t,
        &EntryBody {
            author: me,
            seq,
            parents: vec![],
            time: 0,
            member: [0; 32],
            op: Op::Meta(p2pfs_proto::room::Meta::Leave),
        },
    )
    .map_err(view_err)?
    {
        return Err(StoreError::Invalid(
            "this node was removed from the room: it cannot write there".into(),
        ));
    }
    let prev = if seq > 0 {
        t.by_seq(&me, seq - 1)?
    } else {
        None
    };
    // Our own previous entry first, then the other heads; heads left out
    // beyond the limit are merged by a later entry.
    let mut heads = t.heads()?;
    heads.sort();
    let mut parents: Vec<Hash> = prev.into_iter().collect();
    parents.extend(heads.into_iter().filter(|h| Some(*h) != prev));
    parents.truncate(MAX_PARENTS);
    let e = entry::sign(key, secret, seq, parents, now_ms(), op)
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
    append(t, &e)?;
    Ok(e)
}

/// Applies to the views the log entries they have not seen (all of them
/// after the views were dropped), after rendering the chat again if the
/// views' chat is of another format ([`rerender_chat`]). Returns how many
/// entries it applied or replayed.
pub(crate) fn catch_up_views(store: &Store, room: &RoomId) -> Result<u64, StoreError> {
    // Read first: views that are up to date cost no write at start-up.
    let applied = match store.room_view_get(room, view::STATE)? {
        Some(b) => p2pfs_proto::codec::decode::<view::ViewState>(&b).map_or(0, |s| s.applied),
        None => 0,
    };
    let format = store.room_view_get(room, view::FORMAT_KEY)?;
    let mut replayed = 0;
    if !view::is_current(format.as_deref(), applied) {
        replayed = rerender_chat(store, room, applied)?;
    }
    let tree_format = store.room_view_get(room, view::TREE_FORMAT_KEY)?;
    if !view::tree_is_current(tree_format.as_deref(), applied) {
        replayed = replayed.max(rebuild_tree(store, room, applied)?);
    }
    if applied >= store.room_len(room)? {
        return Ok(replayed);
    }
    let mut total = replayed;
    loop {
        let n = store.room_write(room, |t| {
            let from = view::state(t).map_err(view_err)?.applied;
            let mut n = 0;
            while n < 4096 {
                let Some((hash, bytes)) = t.at(from + n)? else {
                    break;
                };
                let (_, body) = Entry::decode(&bytes)
                    .map_err(|e| StoreError::Corrupt(format!("room log entry {hash}: {e}")))?;
                view::apply(t, from + n, &hash, &body).map_err(view_err)?;
                n += 1;
            }
            Ok(n)
        })?;
        total += n;
        if n < 4096 {
            return Ok(total);
        }
    }
}

/// After a removal came in behind entries it cuts, which the views had
/// taken in: the moderation state again without them (a fixpoint: a cut
/// moderator's removals may no longer hold, so neither may their cuts),
/// then the tree. The chat keeps what it showed.
pub(crate) fn rebuild_after_cut(store: &Store, room: &RoomId) -> Result<(), StoreError> {
    let applied = match store.room_view_get(room, view::STATE)? {
        Some(b) => p2pfs_proto::codec::decode::<view::ViewState>(&b).map_or(0, |s| s.applied),
        None => 0,
    };
    // The entries that concern moderation, in log order.
    let mut entries: Vec<(Hash, EntryBody)> = Vec::new();
    let mut from = 0;
    while from < applied {
        let page = store.room_log(room, from, 4096)?;
        if page.is_empty() {
            break;
        }
        from += page.len() as u64;
        for bytes in page {
            let (e, body) = Entry::decode(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("room log entry: {e}")))?;
            if moderation::concerns(&body.op) {
                entries.push((e.hash(room), body));
            }
        }
    }
    let mut cuts: std::collections::BTreeMap<NodeId, u64> = Default::default();
    let mut state = moderation::Moderation::default();
    for _ in 0..8 {
        let mut next = moderation::Moderation::default();
        for (hash, body) in &entries {
            if cuts.get(&body.author).is_some_and(|keep| body.seq >= *keep) {
                continue;
            }
            next.apply(hash, body);
        }
        let next_cuts = next.removed.iter().map(|(m, r)| (*m, r.keep)).collect();
        state = next;
        if next_cuts == cuts {
            break;
        }
        cuts = next_cuts;
    }
    // A member that left is back once it wrote again (any entry, which
    // the replay above did not look at), unless what it wrote is cut.
    let have: std::collections::BTreeMap<NodeId, u64> =
        store.room_have(room)?.into_iter().collect();
    state.left.retain(|m, leave_seq| {
        let count = have.get(m).copied().unwrap_or(0);
        let kept = cuts.get(m).map_or(count, |keep| count.min(*keep));
        kept <= *leave_seq + 1
    });
    store.room_write(room, |t| view::set_moderation(t, &state).map_err(view_err))?;
    rebuild_tree(store, room, applied).map(|_| ())
}

/// Renders the chat of views written in another format again: drops its
/// lines and names, then replays the `applied` entries the views hold for
/// their chat and names only, in batches. The rest of the views stays as
/// it is throughout (the blobs the room refers to decide what this node
/// serves and announces, so they never go missing, even for a moment). The
/// format is written last: an interrupted run starts over at next start.
fn rerender_chat(store: &Store, room: &RoomId, applied: u64) -> Result<u64, StoreError> {
    store.room_write(room, |t| {
        drop_rows(t, &view::CHAT_PARTS)?;
        view::reset_chat(t).map_err(view_err)
    })?;
    replay(store, room, applied, |t, hash, body| {
        view::replay_chat(t, hash, body).map_err(view_err)
    })?;
    store.room_write(room, |t| t.view_put(view::FORMAT_KEY, view::FORMAT))?;
    Ok(applied)
}

/// Rebuilds the tree's rows of views written in another format: drops
/// them, then replays the `applied` entries for the tree only, in batches.
/// The format is written last: an interrupted run starts over at next
/// start.
fn rebuild_tree(store: &Store, room: &RoomId, applied: u64) -> Result<u64, StoreError> {
    store.room_write(room, |t| drop_rows(t, &view::TREE_PARTS))?;
    replay(store, room, applied, |t, hash, body| {
        view::replay_tree(t, hash, body).map_err(view_err)
    })?;
    store.room_write(room, |t| {
        t.view_put(view::TREE_FORMAT_KEY, view::TREE_FORMAT)
    })?;
    Ok(applied)
}

/// Removes every view row under `prefixes`.
fn drop_rows(t: &mut RoomTxn<'_>, prefixes: &[&[u8]]) -> Result<(), StoreError> {
    for prefix in prefixes {
        loop {
            let keys = t.view_range(prefix, None, 4096)?;
            if keys.is_empty() {
                break;
            }
            for (k, _) in keys {
                t.view_remove(&k)?;
            }
        }
    }
    Ok(())
}

/// Replays the first `applied` entries of the log through `f`, in log
/// order, in batches of one transaction each.
fn replay(
    store: &Store,
    room: &RoomId,
    applied: u64,
    f: impl Fn(&mut RoomTxn<'_>, &Hash, &EntryBody) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut from = 0;
    while from < applied {
        let n = store.room_write(room, |t| {
            let mut n = 0;
            while n < 4096 && from + n < applied {
                let Some((hash, bytes)) = t.at(from + n)? else {
                    return Err(StoreError::Corrupt(format!(
                        "room views applied {applied} entries of a shorter log"
                    )));
                };
                let (_, body) = Entry::decode(&bytes)
                    .map_err(|e| StoreError::Corrupt(format!("room log entry {hash}: {e}")))?;
                f(t, &hash, &body)?;
                n += 1;
            }
            Ok(n)
        })?;
        from += n;
    }
    Ok(())
}

/// The time now in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use p2pfs_proto::room::Meta;

    use super::*;

    fn setup() -> (tempfile::TempDir, Store, RoomSecret) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store, RoomSecret([9; 32]))
    }

    fn chat(text: &str) -> Op {
        Op::Chat { text: text.into() }
    }

    #[test]
    fn entries_wait_for_their_parents_and_forks_are_refused() {
        let (_d, a_store, s) = setup();
        let (_d2, b_store, _) = setup();
        let room = s.id();
        let ka = SecretKey::generate().unwrap();
        let e0 = author(&a_store, &ka, &s, Op::Meta(Meta::MemberName("a".into()))).unwrap();
        let e1 = author(&a_store, &ka, &s, chat("one")).unwrap();
        let e2 = author(&a_store, &ka, &s, chat("two")).unwrap();
        assert_eq!(e2.body.parents, vec![e1.hash]);
        // Out of order: e2 and e1 wait for e0, then all go in.
        let r = accept(&b_store, &room, vec![e2.clone(), e1.clone()]).unwrap();
        assert!(r.new.is_empty());
        assert_eq!(r.pending.len(), 2);
        let r = accept(&b_store, &room, vec![e0.clone(), e2.clone(), e1.clone()]).unwrap();
        assert_eq!(r.new.len(), 3);
        let r = accept(&b_store, &room, vec![e1.clone()]).unwrap();
        assert!(r.new.is_empty() && r.pending.is_empty() && r.rejected.is_empty());
        // A second entry number 1 by the same author is a fork.
        let fork = entry::sign(&ka, &s, 1, vec![e0.hash], now_ms(), chat("fork")).unwrap();
        let r = accept(&b_store, &room, vec![fork]).unwrap();
        assert_eq!(r.rejected.len(), 1);
        // An entry that skips its author's previous entry is refused.
        let skip = entry::sign(&ka, &s, 3, vec![e0.hash], now_ms(), chat("skip")).unwrap();
        let r = accept(&b_store, &room, vec![skip]).unwrap();
        assert_eq!(r.rejected.len(), 1);
        assert_eq!(
            a_store.room_entries_after(&room, &[], 100).unwrap(),
            b_store.room_entries_after(&room, &[], 100).unwrap()
        );
    }

    #[test]
    fn views_rebuild_identically_from_the_log() {
        let (_d, store, s) = setup();
        let room = s.id();
        let k = SecretKey::generate().unwrap();
        for i in 0..50 {
            let op = if i % 3 == 0 {
                Op::Put {
                    path: format!("dir/f{i}"),
                    hash: Hash::of(&[i]),
                    size: 1,
                    exec: false,
                    mtime: 0,
                    replaces: vec![],
                }
            } else {
                chat(&format!("line {i}"))
            };
            author(&store, &k, &s, op).unwrap();
        }
        let before = store.room_view_range(&room, b"", None, usize::MAX).unwrap();
        store.drop_room_views().unwrap();
        assert!(
            store
                .room_view_range(&room, b"", None, 10)
                .unwrap()
                .is_empty()
        );
        assert_eq!(catch_up_views(&store, &room).unwrap(), 50);
        let after = store.room_view_range(&room, b"", None, usize::MAX).unwrap();
        assert_eq!(before, after);
        assert_eq!(catch_up_views(&store, &room).unwrap(), 0);
    }

    #[test]
    fn the_tree_of_views_of_an_older_format_is_rebuilt() {
        let (_d, store, s) = setup();
        let room = s.id();
        let k = SecretKey::generate().unwrap();
        for (i, p) in ["a/x", "a/y", "b"].into_iter().enumerate() {
            author(
                &store,
                &k,
                &s,
                Op::Put {
                    path: p.into(),
                    hash: Hash::of(p.as_bytes()),
                    size: 1,
                    exec: i == 1,
                    mtime: 0,
                    replaces: vec![],
                },
            )
            .unwrap();
        }
        author(&store, &k, &s, chat("hi")).unwrap();
        let now = store.room_view_range(&room, b"", None, usize::MAX).unwrap();
        // Views as the format before left them: no tree format key, no
        // directory times, rows of another encoding.
        store
            .room_write(&room, |t| {
                t.view_remove(view::TREE_FORMAT_KEY)?;
                for (k, _) in t.view_range(view::DIR_TIMES, None, usize::MAX)? {
                    t.view_remove(&k)?;
                }
                t.view_put(b"t/a/x", b"\x01old")
            })
            .unwrap();
        assert_eq!(catch_up_views(&store, &room).unwrap(), 4);
        let rebuilt = store.room_view_range(&room, b"", None, usize::MAX).unwrap();
        assert_eq!(rebuilt, now);
        // Up to date: nothing is replayed.
        assert_eq!(catch_up_views(&store, &room).unwrap(), 0);
    }

    #[test]
    fn the_chat_of_views_of_an_older_format_is_rendered_again() {
        let (_d, store, s) = setup();
        let room = s.id();
        let k = SecretKey::generate().unwrap();
        let other = SecretKey::generate().unwrap();
        author(&store, &k, &s, Op::Meta(Meta::MemberName("ann".into()))).unwrap();
        author(&store, &k, &s, chat("\x1b[2J")).unwrap();
        author(&store, &other, &s, Op::Meta(Meta::MemberName("ANN".into()))).unwrap();
        author(&store, &k, &s, chat("two")).unwrap();
        author(
            &store,
            &k,
            &s,
            Op::Put {
                path: "f".into(),
                hash: Hash::of(b"f"),
                size: 1,
                exec: false,
                mtime: 0,
                replaces: vec![],
            },
        )
        .unwrap();
        author(&store, &k, &s, Op::Meta(Meta::MemberName("bo".into()))).unwrap();
        author(&store, &other, &s, Op::Meta(Meta::RoomName("team".into()))).unwrap();
        let now = store.room_view_range(&room, b"", None, usize::MAX).unwrap();
        // Views as the first format left them: no format key, raw text.
        store
            .room_write(&room, |t| {
                t.view_remove(view::FORMAT_KEY)?;
                // (Nor the suggested name that holds everywhere.)
                t.view_remove(view::ROOM_NAME)?;
                for (k, _) in t.view_range(b"k/", None, usize::MAX)? {
                    t.view_remove(&k)?;
                }
                let raw = view::ChatLine {
                    offset: 0,
                    text: "raw \x1b[2J\n".into(),
                };
                t.view_put(
                    &view::chat_key(0),
                    &p2pfs_proto::codec::encode(&raw).unwrap(),
                )
            })
            .unwrap();
        assert_eq!(catch_up_views(&store, &room).unwrap(), 7);
        let rebuilt = store.room_view_range(&room, b"", None, usize::MAX).unwrap();
        assert_eq!(rebuilt, now);
        let chat = super::super::query::chat(&store, &room, 0, 10)
            .unwrap()
            .concat();
        assert!(
            chat.contains(": \\x1b[2J\n") && !chat.contains('\x1b'),
            "{chat}"
        );
        assert_eq!(catch_up_views(&store, &room).unwrap(), 0);
    }
}
