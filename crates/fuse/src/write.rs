//! A file being written, from `open` to its publication: the state
//! machine behind the mount's writes. A [`WriteFile`] holds a store draft
//! that takes the writes (hashed as they arrive) and stands in for the
//! path while it is open, so this member sees its own bytes at once.
//!
//! - `write`, a truncation, `chmod`, `utimensat` change the draft (made
//!   from the published version at the first change) and mark the file
//!   dirty, remembering which processes changed it.
//! - `close` by a process that changed it ([`WriteFile::commit`]) turns
//!   the draft into the version waiting to be published (`pending`): in
//!   the draft still, or committed to the store for an `fsync`.
//! - The room's publisher takes it ([`WriteFile::take_pending`]: the
//!   change to write, over the entries this version replaces) and says
//!   how it went: [`WriteFile::published_as`] (the next version replaces
//!   this entry) or [`WriteFile::unpublished`] (it waits again).
//! - `unlink` before that: never published. `rename`: published at the
//!   new path, over whatever is there then.
//!
//! Other processes read the published version until the writer publishes
//! (an overwrite is atomic for everyone else). No I/O but the store's.

use std::{sync::Mutex, time::SystemTime};

use p2pfs_proto::{
    Hash, RoomId,
    room::{Attr, FileId, Time},
};
use p2pfs_swarm::{
    room::Change,
    store::{Draft, Store, StoreError},
};

use crate::{fs::lock, tree::FileInfo};

/// A file being written; see the module docs.
#[derive(Debug)]
pub(crate) struct WriteFile {
    pub(crate) room: RoomId,
    state: Mutex<WriteState>,
}

#[derive(Debug)]
struct WriteState {
    /// Its path in the room now (renames move it).
    path: String,
    /// The bytes, once written to (or truncated).
    draft: Option<Draft>,
    /// The published content the draft starts from, if any.
    base: Option<(Hash, u64)>,
    /// The log entries this version replaces when published: those live
    /// at the path when it was opened, then the entry of each publish
    /// (`None` after a rename: whatever is live at the new path then).
    replaces: Option<Vec<Hash>>,
    /// Changed since published.
    dirty: bool,
    /// Deleted: never published.
    unlinked: bool,
    /// Permission bits and times.
    attr: Attr,
    /// The file it is a name of.
    inode: FileId,
    /// Open handles.
    opens: usize,
    /// Processes that changed it since it was published: a `close` by one
    /// of them publishes. (A forked child closing its copy of the
    /// descriptor must not publish a half-written file.)
    writers: Vec<u32>,
    /// A closed version waiting for the room's publisher
    /// (`crate::publish`).
    pending: Option<Pending>,
    /// The version the publisher is writing now (back to `pending` if
    /// that fails).
    inflight: Option<Stored>,
    /// Jobs queued for it at the publisher.
    queued: usize,
}

/// A closed version, to publish.
#[derive(Debug)]
enum Pending {
    /// Its draft, not yet in the store: the publisher commits it (so that
    /// `close` costs no store transaction), or the next change does.
    Draft { draft: Draft, attr: Attr },
    /// In the store.
    Stored(Stored),
}

/// A version in the store.
#[derive(Debug, Clone, Copy)]
struct Stored {
    hash: Hash,
    size: u64,
    attr: Attr,
}

/// What `stat` shows of a file being written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DraftStat {
    pub(crate) size: u64,
    pub(crate) attr: Attr,
}

/// The time now.
pub(crate) fn now() -> Time {
    Time::from_system(SystemTime::now())
}

/// The most writer processes remembered per file.
const MAX_WRITERS: usize = 16;

impl WriteState {
    fn changed_by(&mut self, pid: u32) {
        self.dirty = true;
        if !self.writers.contains(&pid) {
            if self.writers.len() >= MAX_WRITERS {
                self.writers.remove(0);
            }
            self.writers.push(pid);
        }
    }
}

impl WriteFile {
    /// A new empty file at `path` with permission bits `mode`, where the
    /// entries `replaces` are live (none shown: deletes).
    pub(crate) fn new(
        room: RoomId,
        path: String,
        draft: Draft,
        mode: u16,
        pid: u32,
        replaces: Vec<Hash>,
    ) -> Self {
        let t = now();
        Self {
            room,
            state: Mutex::new(WriteState {
                path,
                draft: Some(draft),
                base: None,
                replaces: Some(replaces),
                dirty: true,
                unlinked: false,
                attr: Attr {
                    mode,
                    mtime: t,
                    atime: t,
                    ctime: t,
                },
                inode: p2pfs_swarm::room::new_file_id(),
                opens: 1,
                writers: vec![pid],
                pending: None,
                inflight: None,
                queued: 0,
            }),
        }
    }

    /// A published file opened for writing: the draft is made from its
    /// content (which must be here) at the first write. Publishing it
    /// replaces that version only.
    pub(crate) fn from_published(room: RoomId, path: String, file: &FileInfo) -> Self {
        Self {
            room,
            state: Mutex::new(WriteState {
                path,
                draft: None,
                base: Some((file.hash, file.size)),
                replaces: Some(vec![file.entry]),
                dirty: false,
                unlinked: false,
                attr: file.attr,
                inode: file.inode.unwrap_or_else(p2pfs_swarm::room::new_file_id),
                opens: 1,
                writers: Vec::new(),
                pending: None,
                inflight: None,
                queued: 0,
            }),
        }
    }

    /// Size, permission bits and times.
    pub(crate) fn stat(&self) -> DraftStat {
        let st = lock(&self.state);
        let size = match (&st.draft, &st.pending, st.base) {
            (Some(d), _, _) => d.len(),
            (None, Some(Pending::Draft { draft, .. }), _) => draft.len(),
            (None, _, Some((_, size))) => size,
            (None, _, None) => 0,
        };
        DraftStat {
            size,
            attr: st.attr,
        }
    }

    /// The file it is a name of.
    pub(crate) fn inode(&self) -> FileId {
        lock(&self.state).inode
    }

    /// The published content, if the file has not changed since (and its
    /// hash is known: a version just closed is hashed by its commit).
    pub(crate) fn published(&self) -> Option<Hash> {
        let st = lock(&self.state);
        let hashed = !matches!(st.pending, Some(Pending::Draft { .. }));
        (!st.dirty && hashed)
            .then_some(st.base.map(|b| b.0))
            .flatten()
    }

    pub(crate) fn path(&self) -> String {
        lock(&self.state).path.clone()
    }

    /// Moved by a rename: publishing it replaces whatever is at the new
    /// path then (as the rename itself did).
    pub(crate) fn set_path(&self, path: String) {
        let mut st = lock(&self.state);
        st.path = path;
        st.replaces = None;
    }

    /// Whether it holds changes to a published version that process
    /// `pid` did not make (it reads the published version, like everyone
    /// else, until the writer publishes).
    pub(crate) fn hides_changes_from(&self, pid: u32) -> bool {
        let st = lock(&self.state);
        st.dirty && st.base.is_some() && !st.writers.contains(&pid)
    }

    /// Writing the in-flight version failed: it waits again (the next
    /// close or release queues it), unless a newer one does.
    pub(crate) fn unpublished(&self) {
        let mut st = lock(&self.state);
        if let Some(p) = st.inflight.take()
            && st.pending.is_none()
        {
            st.pending = Some(Pending::Stored(p));
        }
    }

    /// Its version was published as log entry `entry`: the next publish
    /// replaces that one.
    pub(crate) fn published_as(&self, entry: Hash) {
        let mut st = lock(&self.state);
        st.replaces = Some(vec![entry]);
        st.inflight = None;
    }

    pub(crate) fn unlink(&self) {
        lock(&self.state).unlinked = true;
    }

    pub(crate) fn opened(&self) {
        lock(&self.state).opens += 1;
    }

    /// One handle closed; returns how many remain.
    pub(crate) fn closed(&self) -> usize {
        let mut st = lock(&self.state);
        st.opens = st.opens.saturating_sub(1);
        st.opens
    }

    /// Commits a closed version still in its draft (to the store, not
    /// waiting for the disk unless `durable`), so that it can be read from
    /// the store and changed.
    fn store_closed(st: &mut WriteState, pin: &str, durable: bool) -> Result<(), StoreError> {
        if !matches!(st.pending, Some(Pending::Draft { .. })) {
            return Ok(());
        }
        if let Some(Pending::Draft { draft, attr }) = st.pending.take() {
            let imported = if durable {
                draft.commit(Some(pin))
            } else {
                draft.commit_lazy(Some(pin))
            }?;
            st.base = Some((imported.hash, imported.size));
            st.pending = Some(Pending::Stored(Stored {
                hash: imported.hash,
                size: imported.size,
                attr,
            }));
        }
        Ok(())
    }

    fn draft<'a>(
        st: &'a mut WriteState,
        store: &Store,
        pin: &str,
    ) -> Result<&'a mut Draft, StoreError> {
        if st.draft.is_none() {
            // Changed again before the publisher took the closed version:
            // it goes to the store first (the new draft starts from it).
            Self::store_closed(st, pin, false)?;
            st.draft = Some(match st.base {
                Some((hash, _)) => store.draft_from(&hash)?,
                None => store.draft()?,
            });
        }
        match st.draft.as_mut() {
            Some(d) => Ok(d),
            None => Err(StoreError::Corrupt("draft vanished".into())),
        }
    }

    pub(crate) fn write(
        &self,
        store: &Store,
        offset: u64,
        data: &[u8],
        pid: u32,
    ) -> Result<(), StoreError> {
        let pin = p2pfs_swarm::room::pin_name(&self.room);
        let mut st = lock(&self.state);
        Self::draft(&mut st, store, &pin)?.write_at(offset, data)?;
        st.changed_by(pid);
        st.attr.mtime = now();
        st.attr.ctime = st.attr.mtime;
        Ok(())
    }

    pub(crate) fn read(
        &self,
        store: &Store,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, StoreError> {
        let mut st = lock(&self.state);
        let base = st.base;
        let WriteState { draft, pending, .. } = &mut *st;
        match (draft, pending, base) {
            (Some(d), _, _) => d.read_at(offset, buf),
            (None, Some(Pending::Draft { draft, .. }), _) => draft.read_at(offset, buf),
            (None, _, Some((hash, _))) => store.read_at(&hash, offset, buf),
            (None, _, None) => Ok(0),
        }
    }

    /// Size, permission bits and times changed at once (`setattr`, or a
    /// truncating open). Returns whether the file had changed since it was
    /// last published (if not, the caller publishes it: nothing else will).
    pub(crate) fn change(
        &self,
        store: &Store,
        len: Option<u64>,
        set: SetAttr,
        pid: u32,
    ) -> Result<bool, StoreError> {
        let pin = p2pfs_swarm::room::pin_name(&self.room);
        let mut st = lock(&self.state);
        let was_dirty = st.dirty;
        if let Some(len) = len {
            if len == 0 && st.draft.is_none() {
                // (A closed version still in its draft: nothing of it is
                // needed, but it is published first, as closed.)
                Self::store_closed(&mut st, &pin, false)?;
                st.draft = Some(store.draft()?);
            } else {
                Self::draft(&mut st, store, &pin)?.set_len(len)?;
            }
            st.changed_by(pid);
            st.attr.mtime = now();
            st.attr.ctime = st.attr.mtime;
        }
        let attr = set.apply(st.attr);
        if attr != st.attr {
            st.attr = attr;
            st.changed_by(pid);
        }
        if !set.is_empty() {
            st.attr.ctime = now();
        }
        Ok(was_dirty)
    }

    /// A status change by process `pid` that changes nothing else (`chmod`
    /// to the same mode): it is published all the same, for its time.
    pub(crate) fn touched(&self, pid: u32) {
        let mut st = lock(&self.state);
        if !st.dirty {
            st.changed_by(pid);
            st.attr.ctime = now();
        }
    }

    /// Whether process `pid` changed the file since it was published.
    pub(crate) fn changed_by(&self, pid: u32) -> bool {
        let st = lock(&self.state);
        st.dirty && st.writers.contains(&pid)
    }

    /// Closes a version: a changed file's draft becomes the version to
    /// publish. For `durable` (`fsync`) it is committed to the store, on
    /// disk, now (blocking); else the publisher commits it. Returns whether
    /// a version waits to be published (this one, or one before).
    pub(crate) fn commit(
        &self,
        store: &Store,
        pin: &str,
        durable: bool,
    ) -> Result<bool, StoreError> {
        let mut st = lock(&self.state);
        if !st.dirty || st.unlinked {
            if durable {
                Self::store_closed(&mut st, pin, true)?;
                if let Some((hash, _)) = st.base {
                    store.sync_blob(&hash)?;
                }
            }
            return Ok(!st.unlinked && (st.pending.is_some() || st.queued > 0));
        }
        let attr = st.attr;
        let pending = match (st.draft.take(), st.pending.take(), st.base) {
            (Some(draft), _, _) => Pending::Draft { draft, attr },
            // Only its mode or time changed: the closed version waiting
            // takes them, else the one in the store.
            (None, Some(Pending::Draft { draft, .. }), _) => Pending::Draft { draft, attr },
            (None, Some(Pending::Stored(p)), _) => Pending::Stored(Stored { attr, ..p }),
            (None, None, Some((hash, size))) => Pending::Stored(Stored { hash, size, attr }),
            (None, None, None) => Pending::Draft {
                draft: store.draft()?,
                attr,
            },
        };
        st.pending = Some(pending);
        if durable {
            Self::store_closed(&mut st, pin, true)?;
        }
        st.dirty = false;
        st.writers.clear();
        Ok(true)
    }

    /// The change that publishes the pending version (committing it to
    /// the store first if it is still a draft: blocking), at the file's
    /// path and over what it replaces as they are now; `None` if there is
    /// none (or the file was deleted: it is never published).
    pub(crate) fn take_pending(&self) -> Result<Option<Change>, StoreError> {
        let mut st = lock(&self.state);
        if st.unlinked {
            st.pending = None;
            return Ok(None);
        }
        let pin = p2pfs_swarm::room::pin_name(&self.room);
        Self::store_closed(&mut st, &pin, false)?;
        let Some(Pending::Stored(p)) = st.pending.take() else {
            return Ok(None);
        };
        st.inflight = Some(p);
        Ok(Some(Change::Put {
            path: st.path.clone(),
            hash: p.hash,
            size: p.size,
            attr: p.attr,
            inode: Some(st.inode),
            base: st.replaces.clone(),
        }))
    }

    /// A job for it was queued at the publisher.
    pub(crate) fn queued(&self) {
        lock(&self.state).queued += 1;
    }

    /// A job for it is done; returns whether nothing holds the file in the
    /// drafts any more (no open handle, no job, no version to publish).
    pub(crate) fn done_queued(&self) -> bool {
        let mut st = lock(&self.state);
        st.queued = st.queued.saturating_sub(1);
        st.opens == 0 && st.queued == 0 && st.pending.is_none() && !st.dirty
    }

    /// Whether nothing but the drafts holds it (for a release).
    pub(crate) fn is_idle(&self) -> bool {
        let st = lock(&self.state);
        st.opens == 0 && st.queued == 0 && st.pending.is_none() && !st.dirty
    }
}

/// A change of permission bits and times (`chmod`, `utimensat`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SetAttr {
    pub(crate) mode: Option<u16>,
    pub(crate) mtime: Option<Time>,
    pub(crate) atime: Option<Time>,
}

impl SetAttr {
    /// From a `setattr` request (`UTIME_NOW` is now; `UTIME_OMIT` is no
    /// change).
    pub(crate) fn of(
        mode: Option<u32>,
        atime: Option<fuser::TimeOrNow>,
        mtime: Option<fuser::TimeOrNow>,
    ) -> Self {
        let at = |t: fuser::TimeOrNow| match t {
            fuser::TimeOrNow::SpecificTime(t) => Time::from_system(t),
            fuser::TimeOrNow::Now => now(),
        };
        Self {
            mode: mode.map(|m| (m & u32::from(p2pfs_proto::room::MAX_MODE)) as u16),
            mtime: mtime.map(at),
            atime: atime.map(at),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `attr` with these changes.
    pub(crate) fn apply(&self, attr: Attr) -> Attr {
        Attr {
            mode: self.mode.unwrap_or(attr.mode),
            mtime: self.mtime.unwrap_or(attr.mtime),
            atime: self.atime.unwrap_or(attr.atime),
            ctime: attr.ctime,
        }
    }
}

#[cfg(test)]
mod tests {
    use p2pfs_proto::NodeId;

    use super::*;

    const PIN: &str = "test";

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    fn room() -> RoomId {
        RoomId::from_bytes([7; 32])
    }

    /// A published file of `bytes` at `path`, put by entry `entry`.
    fn published(store: &Store, bytes: &[u8], entry: u8) -> FileInfo {
        let imported = store.import_bytes(bytes, Some(PIN)).unwrap();
        FileInfo {
            hash: imported.hash,
            size: imported.size,
            attr: Attr {
                mode: 0o644,
                ..Attr::default()
            },
            inode: Some([entry; 16]),
            author: NodeId::from_bytes([1; 32]),
            entry: Hash::of(&[entry]),
        }
    }

    /// The put a publisher would write now.
    fn put(wf: &WriteFile) -> Option<(String, Hash, Attr, Option<Vec<Hash>>)> {
        match wf.take_pending().unwrap()? {
            Change::Put {
                path,
                hash,
                attr,
                base,
                ..
            } => Some((path, hash, attr, base)),
            other => panic!("not a put: {other:?}"),
        }
    }

    fn content(store: &Store, hash: &Hash, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        let n = store.read_at(hash, 0, &mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn a_new_file_is_published_at_close_over_what_it_replaced() {
        let (_d, store) = store();
        let old = Hash::of(b"a delete");
        let wf = WriteFile::new(
            room(),
            "f".into(),
            store.draft().unwrap(),
            0o640,
            10,
            vec![old],
        );
        wf.write(&store, 0, b"hello", 10).unwrap();
        // Open: nothing to publish yet.
        assert!(put(&wf).is_none());
        assert!(wf.commit(&store, PIN, false).unwrap());
        let (path, hash, attr, base) = put(&wf).unwrap();
        assert_eq!(path, "f");
        assert_eq!(hash, Hash::of(b"hello"));
        assert_eq!(attr.mode, 0o640);
        assert_eq!(base, Some(vec![old]));
        assert_eq!(content(&store, &hash, 5), b"hello");
        // Written as an entry: the next version replaces that one.
        wf.published_as(Hash::of(b"e1"));
        wf.write(&store, 5, b"!", 10).unwrap();
        assert!(wf.commit(&store, PIN, false).unwrap());
        let (_, hash, _, base) = put(&wf).unwrap();
        assert_eq!(hash, Hash::of(b"hello!"));
        assert_eq!(base, Some(vec![Hash::of(b"e1")]));
    }

    #[test]
    fn a_close_that_changed_nothing_publishes_nothing() {
        let (_d, store) = store();
        let f = published(&store, b"same", 1);
        let wf = WriteFile::from_published(room(), "f".into(), &f);
        assert!(!wf.commit(&store, PIN, false).unwrap());
        assert!(put(&wf).is_none());
        assert_eq!(wf.published(), Some(f.hash));
        // Its last handle closed: nothing holds it any more.
        assert_eq!(wf.closed(), 0);
        assert!(wf.is_idle());
    }

    #[test]
    fn others_read_the_published_version_until_the_writer_publishes() {
        let (_d, store) = store();
        let f = published(&store, b"old", 1);
        let wf = WriteFile::from_published(room(), "f".into(), &f);
        // Truncated at open (O_TRUNC), then written by process 10.
        wf.change(&store, Some(0), SetAttr::default(), 10).unwrap();
        wf.write(&store, 0, b"new!", 10).unwrap();
        assert!(wf.hides_changes_from(11));
        assert!(!wf.hides_changes_from(10));
        assert!(wf.changed_by(10) && !wf.changed_by(11));
        let mut buf = [0; 8];
        let n = wf.read(&store, 0, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"new!");
        assert!(wf.commit(&store, PIN, false).unwrap());
        assert!(!wf.hides_changes_from(11));
        let (_, hash, _, base) = put(&wf).unwrap();
        assert_eq!(hash, Hash::of(b"new!"));
        // Only the version it was opened from is replaced: one another
        // member published meanwhile stays (as a conflict copy).
        assert_eq!(base, Some(vec![f.entry]));
    }

    #[test]
    fn a_file_unlinked_before_its_close_is_never_published() {
        let (_d, store) = store();
        let wf = WriteFile::new(
            room(),
            "f".into(),
            store.draft().unwrap(),
            0o644,
            10,
            vec![],
        );
        wf.write(&store, 0, b"scratch", 10).unwrap();
        wf.unlink();
        assert!(!wf.commit(&store, PIN, false).unwrap());
        assert!(put(&wf).is_none());
        // Closed after a close handed it over, then unlinked: dropped too.
        let wf = WriteFile::new(
            room(),
            "g".into(),
            store.draft().unwrap(),
            0o644,
            10,
            vec![],
        );
        wf.write(&store, 0, b"x", 10).unwrap();
        assert!(wf.commit(&store, PIN, false).unwrap());
        wf.unlink();
        assert!(put(&wf).is_none());
    }

    #[test]
    fn a_renamed_file_is_published_at_its_new_path_over_what_is_there() {
        let (_d, store) = store();
        let wf = WriteFile::new(
            room(),
            "a".into(),
            store.draft().unwrap(),
            0o644,
            10,
            vec![],
        );
        wf.write(&store, 0, b"x", 10).unwrap();
        wf.set_path("d/b".into());
        assert!(wf.commit(&store, PIN, false).unwrap());
        let (path, _, _, base) = put(&wf).unwrap();
        assert_eq!((path.as_str(), base), ("d/b", None));
    }

    #[test]
    fn a_version_that_failed_to_publish_waits_for_the_next_close_unless_a_newer_one_does() {
        let (_d, store) = store();
        let wf = WriteFile::new(
            room(),
            "f".into(),
            store.draft().unwrap(),
            0o644,
            10,
            vec![],
        );
        wf.write(&store, 0, b"one", 10).unwrap();
        assert!(wf.commit(&store, PIN, false).unwrap());
        let first = put(&wf).unwrap();
        // The log write failed: the same version waits again.
        wf.unpublished();
        assert_eq!(put(&wf).unwrap(), first);
        // It failed again, but a newer version was closed meanwhile: that
        // one is published, not the older.
        wf.write(&store, 0, b"two", 10).unwrap();
        assert!(wf.commit(&store, PIN, false).unwrap());
        wf.unpublished();
        let (_, hash, _, _) = put(&wf).unwrap();
        assert_eq!(hash, Hash::of(b"two"));
    }

    #[test]
    fn chmod_and_utimensat_publish_the_same_content_with_new_attributes() {
        let (_d, store) = store();
        let f = published(&store, b"keep", 1);
        let wf = WriteFile::from_published(room(), "f".into(), &f);
        let t = Time {
            secs: 1_000_000_000,
            nanos: 5,
        };
        let set = SetAttr {
            mode: Some(0o4755),
            mtime: Some(t),
            atime: None,
        };
        wf.change(&store, None, set, 10).unwrap();
        assert!(wf.commit(&store, PIN, false).unwrap());
        let (_, hash, attr, _) = put(&wf).unwrap();
        assert_eq!(hash, f.hash, "no data moves");
        assert_eq!(
            (attr.mode, attr.mtime, attr.atime),
            (0o4755, t, f.attr.atime)
        );
        assert!(attr.ctime > f.attr.ctime, "a status change");
        // UTIME_OMIT for both and no mode: no change at all.
        assert!(SetAttr::default().is_empty());
        assert_eq!(SetAttr::default().apply(attr), attr);
    }

    #[test]
    fn fsync_commits_the_version_to_the_store_before_it_returns() {
        let (_d, store) = store();
        let wf = WriteFile::new(
            room(),
            "f".into(),
            store.draft().unwrap(),
            0o644,
            10,
            vec![],
        );
        wf.write(&store, 0, b"durable", 10).unwrap();
        assert!(wf.commit(&store, PIN, true).unwrap());
        // In the store now, before the publisher took it.
        assert_eq!(wf.published(), Some(Hash::of(b"durable")));
        assert_eq!(content(&store, &Hash::of(b"durable"), 7), b"durable");
    }

    #[test]
    fn a_writer_killed_before_its_close_leaves_the_published_version() {
        let (_d, store) = store();
        let f = published(&store, b"old", 1);
        let wf = WriteFile::from_published(room(), "f".into(), &f);
        wf.change(&store, Some(0), SetAttr::default(), 10).unwrap();
        wf.write(&store, 0, b"half", 10).unwrap();
        // The process dies: its release comes, not from a writer that
        // closed it (`flush` by that pid never came), and the mount drops
        // the draft. Nothing was handed over: nothing is published.
        assert!(put(&wf).is_none());
        drop(wf);
        assert_eq!(content(&store, &f.hash, 3), b"old");
    }
}
