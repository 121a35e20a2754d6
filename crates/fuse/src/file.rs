//! File contents: open handles, reads (local or fetched), and writes that
//! publish.
//!
//! A file opened for writing becomes a [`WriteFile`]: a store draft that
//! takes the writes (hashed as they arrive) and stands in for the path
//! while it is open, so this member sees its own bytes at once. When the
//! last writer flushes (`close`), the draft is committed to the store and
//! a put entry is written to the room's log: the file is published when
//! `close` returns. A draft renamed before close is published under its
//! new name; one deleted before close is never published.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::SystemTime,
};

use fuser::{Errno, FileType, FopenFlags, INodeNo, ReplyData, ReplyEmpty, ReplyWrite};
use p2pfs_proto::{
    Hash, RoomId,
    room::{Attr, FileId, Time},
};
use p2pfs_swarm::{
    room::Change,
    store::{BlobReader, Draft, Store, StoreError},
};

use crate::{
    chat::ChatHandle,
    fetch::Pattern,
    fs::{Found, Fs, lock, store_errno, swarm_errno},
    inode::Place,
    tree::{FileInfo, Item},
};

/// Open handles by number.
#[derive(Debug, Default)]
pub(crate) struct Handles {
    next: AtomicU64,
    map: Mutex<HashMap<u64, Arc<Handle>>>,
}

impl Handles {
    pub(crate) fn add(&self, h: Handle) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        lock(&self.map).insert(fh, Arc::new(h));
        fh
    }

    pub(crate) fn get(&self, fh: u64) -> Result<Arc<Handle>, Errno> {
        lock(&self.map).get(&fh).cloned().ok_or(Errno::EBADF)
    }

    pub(crate) fn remove(&self, fh: u64) -> Option<Arc<Handle>> {
        lock(&self.map).remove(&fh)
    }

    /// An open handle on the file at `path` of `room` (a draft, or a
    /// published version), whatever its name now.
    pub(crate) fn open_at(&self, room: &RoomId, path: &str) -> Option<Arc<Handle>> {
        lock(&self.map)
            .values()
            .find(|h| match &***h {
                Handle::Write(wh) => wh.file.room == *room && wh.file.path() == path,
                Handle::Blob(bh) => bh.room == *room && bh.path == path,
                _ => false,
            })
            .cloned()
    }
}

/// What an open handle reads and writes.
#[derive(Debug)]
pub(crate) enum Handle {
    /// A published file, read-only.
    Blob(Box<BlobHandle>),
    /// A file open for writing (or a draft opened for reading).
    Write(WriteHandle),
    /// A room's `chat.log`.
    Chat(ChatHandle),
    /// A directory listing, taken at `opendir`.
    Dir(Vec<(INodeNo, FileType, String)>),
}

/// A published file open for reading.
#[derive(Debug)]
pub(crate) struct BlobHandle {
    pub(crate) room: RoomId,
    /// The name it was opened by.
    pub(crate) path: String,
    pub(crate) file: FileInfo,
    /// Set once the blob is complete here: reads then go straight to it.
    reader: OnceLock<BlobReader>,
    pattern: Mutex<Pattern>,
}

impl BlobHandle {
    pub(crate) fn new(room: RoomId, path: String, file: FileInfo) -> Self {
        Self {
            room,
            path,
            file,
            reader: OnceLock::new(),
            pattern: Mutex::new(Pattern::default()),
        }
    }
}

/// An open handle on a file being written.
#[derive(Debug)]
pub(crate) struct WriteHandle {
    pub(crate) file: Arc<WriteFile>,
    /// Opened for writing: a read-only handle never publishes.
    writable: bool,
    /// Changed through this handle (written, truncated, created): its
    /// release publishes.
    wrote: std::sync::atomic::AtomicBool,
}

impl WriteHandle {
    pub(crate) fn new(file: Arc<WriteFile>, writable: bool, wrote: bool) -> Self {
        Self {
            file,
            writable,
            wrote: std::sync::atomic::AtomicBool::new(wrote),
        }
    }

    /// Marks a change made through this handle.
    pub(crate) fn wrote(&self) {
        self.wrote.store(true, Ordering::Relaxed);
    }
}

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
    fn commit(&self, store: &Store, pin: &str, durable: bool) -> Result<bool, StoreError> {
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

impl Fs {
    /// Publishes `file` if it changed: closes its version (committed to
    /// the store now for [`Until::Durable`]) and queues it at the room's
    /// publisher (`crate::publish`); returns once `until` holds.
    pub(crate) async fn publish(
        self: Arc<Self>,
        file: Arc<WriteFile>,
        until: Until,
    ) -> Result<(), Errno> {
        let durable = until == Until::Durable;
        let store = self.node.store().clone();
        let pin = p2pfs_swarm::room::pin_name(&file.room);
        let f = file.clone();
        let waiting = tokio::task::spawn_blocking(move || f.commit(&store, &pin, durable))
            .await
            .map_err(|_| Errno::EIO)?
            .map_err(|e| {
                tracing::warn!("publishing {}: {e}", file.path());
                store_errno(&e)
            })?;
        if !waiting {
            return Ok(());
        }
        let written = self.queue(file);
        written.await.unwrap_or(Err(Errno::EIO))
    }

    /// `flush` (each `close`) of a file open for writing: publishes if
    /// the closing process changed it.
    pub(crate) fn flush_file(self: &Arc<Self>, file: Arc<WriteFile>, pid: u32, reply: ReplyEmpty) {
        if !file.changed_by(pid) {
            return reply.ok();
        }
        match self.hand_over(file) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    /// Closes `file`'s version and queues it at the room's publisher,
    /// here and now: with no `fsync`, closing touches no store (the
    /// publisher commits the draft), so `close` returns at once.
    pub(crate) fn hand_over(self: &Arc<Self>, file: Arc<WriteFile>) -> Result<(), Errno> {
        let pin = p2pfs_swarm::room::pin_name(&file.room);
        match file.commit(self.node.store(), &pin, false) {
            Ok(true) => {
                // (Answered by the publisher later; nobody waits here.)
                drop(self.queue(file));
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(e) => {
                tracing::warn!("publishing {}: {e}", file.path());
                Err(store_errno(&e))
            }
        }
    }

    /// `fsync`: publishes, with the bytes on disk (of a handle open for
    /// writing: a reader's `fsync` publishes nothing).
    pub(crate) fn fsync_file(self: &Arc<Self>, h: &WriteHandle, reply: ReplyEmpty) {
        if !h.writable {
            return reply.ok();
        }
        self.reply_when(self.clone().publish(h.file.clone(), Until::Durable), reply);
    }

    /// Replies once `work` is done, from a task.
    pub(crate) fn reply_when(
        &self,
        work: impl std::future::Future<Output = Result<(), Errno>> + Send + 'static,
        reply: ReplyEmpty,
    ) {
        self.rt.spawn(async move {
            match work.await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }

    /// `release` of a file handle (the last close of an open file): a
    /// handle that changed the file publishes it (its last writer may have
    /// been another process than the one that closed it).
    pub(crate) fn release_file(self: &Arc<Self>, h: &WriteHandle, reply: ReplyEmpty) {
        let file = h.file.clone();
        let result = if h.wrote.load(Ordering::Relaxed) {
            self.hand_over(file.clone())
        } else {
            Ok(())
        };
        {
            // Under the map's lock: an open finds the draft (and counts
            // itself) either before it is dropped or not at all.
            let key = (file.room, file.path());
            let mut drafts = lock(&self.drafts);
            file.closed();
            if file.is_idle() && drafts.get(&key).is_some_and(|d| Arc::ptr_eq(d, &file)) {
                drafts.remove(&key);
            }
        }
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    /// `read` of a published file: from the store if the bytes are here,
    /// else fetched on a task.
    pub(crate) fn read_blob(
        self: &Arc<Self>,
        h: &BlobHandle,
        offset: u64,
        size: u32,
        pid: u32,
        reply: ReplyData,
    ) {
        let store = self.node.store();
        if let Some(r) = h.reader.get() {
            return reply_read(reply, r, size, h.file.size, offset);
        }
        if let Ok(r) = store.reader(&h.file.hash) {
            let r = h.reader.get_or_init(|| r);
            return reply_read(reply, r, size, h.file.size, offset);
        }
        let ahead = lock(&h.pattern).read(offset, u64::from(size));
        let end = offset.saturating_add(u64::from(size)).min(h.file.size);
        let mut buf = vec![0u8; end.saturating_sub(offset) as usize];
        match store.read_at(&h.file.hash, offset, &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                reply.data(&buf);
                let mut p = lock(&h.pattern);
                self.prefetch(h.room, &h.file, &mut p, end, ahead);
            }
            Err(StoreError::NotPresent { .. } | StoreError::NotFound(_)) => {
                {
                    // Read-ahead starts after this read's own bytes.
                    let mut p = lock(&h.pattern);
                    let from = end.div_ceil(crate::fetch::DEMAND) * crate::fetch::DEMAND;
                    self.prefetch(h.room, &h.file, &mut p, from, ahead);
                }
                let fs = self.clone();
                let (room, file) = (h.room, h.file.clone());
                self.rt.spawn(async move {
                    match fs.read_remote(room, file, offset, size, pid).await {
                        Ok(data) => reply.data(&data),
                        Err(e) => reply.error(e),
                    }
                });
            }
            Err(e) => reply.error(store_errno(&e)),
        }
    }

    /// `write` to a file open for writing (local disk work, done here).
    pub(crate) fn write_file(
        &self,
        h: &WriteHandle,
        offset: u64,
        data: &[u8],
        pid: u32,
        reply: ReplyWrite,
    ) {
        match h.file.write(self.node.store(), offset, data, pid) {
            Ok(()) => {
                h.wrote();
                reply.written(data.len() as u32)
            }
            Err(e) => {
                tracing::warn!("writing {}: {e}", h.file.path());
                reply.error(store_errno(&e));
            }
        }
    }

    /// Opens a published file for writing: its content must be here, so
    /// it is fetched first (on a task) unless the open truncates it.
    pub(crate) fn open_published_for_write(
        self: &Arc<Self>,
        room: RoomId,
        path: String,
        file: FileInfo,
        truncate: bool,
        pid: u32,
        reply: fuser::ReplyOpen,
    ) {
        let fs = self.clone();
        self.rt.spawn(async move {
            if !truncate {
                let r = match fs.room(&room) {
                    Ok(r) => r,
                    Err(e) => return reply.error(e),
                };
                let fetched = tokio::select! {
                    r = fs.node.room_fetch(&r, &path) => r,
                    () = crate::interrupt::signalled(pid) => return reply.error(Errno::EINTR),
                };
                if let Err(e) = fetched {
                    tracing::warn!("opening {path} to change it: {e}");
                    return reply.error(swarm_errno(&e));
                }
            }
            let wf = {
                let mut drafts = lock(&fs.drafts);
                match drafts.get(&(room, path.clone())) {
                    // Someone opened it for writing meanwhile: share theirs.
                    Some(existing) => {
                        existing.opened();
                        existing.clone()
                    }
                    None => {
                        let wf = Arc::new(WriteFile::from_published(room, path.clone(), &file));
                        drafts.insert((room, path), wf.clone());
                        wf
                    }
                }
            };
            // (The kernel has emptied its copy already: the draft that
            // stands for the file must be emptied too, whichever it is.)
            if truncate && let Err(e) = wf.change(fs.node.store(), Some(0), SetAttr::default(), pid)
            {
                wf.closed();
                return reply.error(store_errno(&e));
            }
            let fh = fs
                .handles
                .add(Handle::Write(WriteHandle::new(wf, true, truncate)));
            reply.opened(fuser::FileHandle(fh), FopenFlags::empty());
        });
    }
}

/// Reads up to `size` bytes at `offset` of a complete blob of `len` bytes
/// and replies.
fn reply_read(reply: ReplyData, r: &BlobReader, size: u32, len: u64, offset: u64) {
    let n = u64::from(size).min(len.saturating_sub(offset)) as usize;
    let mut buf = vec![0u8; n];
    let mut done = 0;
    while done < n {
        match r.read_at(offset + done as u64, &mut buf[done..]) {
            Ok(0) => break,
            Ok(k) => done += k,
            Err(e) => return reply.error(Errno::from(e)),
        }
    }
    buf.truncate(done);
    reply.data(&buf);
}

/// How far [`Fs::publish`] goes before it returns (a `close` only hands
/// the file over: `Fs::hand_over`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Until {
    /// In the room's log (a change by path to a closed file: the next
    /// operation by path, a rename say, must find it there).
    Written,
    /// In the log and on disk (`fsync`).
    Durable,
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

/// `open(2)` flags the mount looks at.
pub(crate) mod oflags {
    use rustix::fs::OFlags;
    pub(crate) const TRUNC: i32 = OFlags::TRUNC.bits() as i32;
    pub(crate) const APPEND: i32 = OFlags::APPEND.bits() as i32;
    pub(crate) const ACCMODE: i32 = 0o3;
    pub(crate) const RDONLY: i32 = 0;
}

impl Fs {
    /// `open` of a file.
    pub(crate) fn open_ino(
        self: &Arc<Self>,
        ino: INodeNo,
        flags: i32,
        pid: u32,
        reply: fuser::ReplyOpen,
    ) {
        let writable = flags & oflags::ACCMODE != oflags::RDONLY;
        let truncate = writable && flags & oflags::TRUNC != 0;
        let place = match self.place(ino) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        match place {
            Place::Root | Place::Room(_) => reply.error(Errno::EISDIR),
            Place::Chat(room) => {
                if truncate {
                    return reply.error(Errno::EPERM);
                }
                let h = ChatHandle::new(room, flags & oflags::APPEND != 0);
                let fh = self.handles.add(Handle::Chat(h));
                reply.opened(fuser::FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO);
            }
            Place::Path(room, path) => match self.open_draft(&room, &path, writable, pid) {
                // Changes to a published file are the writer's until its
                // close: other readers read the published version, past
                // the kernel's cache (which the writer's pages are in).
                Some((_, false)) => match self.tree(&room).map(|t| t.get(&path).cloned()) {
                    Ok(Some(Item::File(f))) => {
                        let fh = self.handles.add(Handle::Blob(Box::new(BlobHandle::new(
                            room,
                            path.clone(),
                            f,
                        ))));
                        reply.opened(fuser::FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO);
                    }
                    Ok(_) => reply.error(Errno::ENOENT),
                    Err(e) => reply.error(e),
                },
                Some((d, true)) => {
                    if truncate
                        && let Err(e) =
                            d.change(self.node.store(), Some(0), SetAttr::default(), pid)
                    {
                        d.closed();
                        return reply.error(store_errno(&e));
                    }
                    let h = WriteHandle::new(d, writable, truncate);
                    let fh = self.handles.add(Handle::Write(h));
                    reply.opened(fuser::FileHandle(fh), FopenFlags::empty());
                }
                None => self.open_published(ino, room, path, writable, truncate, pid, reply),
            },
        }
    }

    /// The draft at `path`, if one is being written, counted as opened
    /// (`true`) unless `pid` is to read the published version instead
    /// (`false`). Under the drafts' lock, so a release cannot drop it
    /// between the lookup and the count.
    fn open_draft(
        &self,
        room: &RoomId,
        path: &str,
        writable: bool,
        pid: u32,
    ) -> Option<(Arc<WriteFile>, bool)> {
        let drafts = lock(&self.drafts);
        let d = drafts.get(&(*room, path.to_string()))?;
        if !writable && d.hides_changes_from(pid) {
            return Some((d.clone(), false));
        }
        d.opened();
        Some((d.clone(), true))
    }

    /// `open` of a path no draft stands for.
    #[allow(clippy::too_many_arguments)]
    fn open_published(
        self: &Arc<Self>,
        ino: INodeNo,
        room: RoomId,
        path: String,
        writable: bool,
        truncate: bool,
        pid: u32,
        reply: fuser::ReplyOpen,
    ) {
        let item = match self.tree(&room) {
            Ok(t) => t.get(&path).cloned(),
            Err(e) => return reply.error(e),
        };
        match item {
            Some(Item::File(f)) if writable => {
                self.open_published_for_write(room, path, f, truncate, pid, reply);
            }
            Some(Item::File(f)) => {
                // The kernel may keep cached pages if the content is the
                // one it cached them for.
                let same = lock(&self.cached).insert(ino.0, f.hash) == Some(f.hash);
                let fh = self.handles.add(Handle::Blob(Box::new(BlobHandle::new(
                    room,
                    path.clone(),
                    f,
                ))));
                let flags = if same {
                    FopenFlags::FOPEN_KEEP_CACHE
                } else {
                    FopenFlags::empty()
                };
                reply.opened(fuser::FileHandle(fh), flags);
            }
            Some(Item::Dir(_)) => reply.error(Errno::EISDIR),
            // (The kernel follows links itself: only an open that must not
            // follow one gets here.)
            Some(Item::Link(_)) => reply.error(Errno::ELOOP),
            None if self.has_drafts_under(&room, &path) => reply.error(Errno::EISDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    /// `setattr`: size, permission bits and times of files and
    /// directories, published (owners are kept here: `Fs::owners`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn setattr_ino(
        self: &Arc<Self>,
        ino: INodeNo,
        size: Option<u64>,
        set: SetAttr,
        fh: Option<fuser::FileHandle>,
        pid: u32,
        reply: fuser::ReplyAttr,
    ) {
        let place = match self.place(ino) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let (room, path) = match place {
            Place::Chat(r) => {
                let current =
                    p2pfs_swarm::room::query::chat_size(self.node.store(), &r).unwrap_or(0);
                if size.is_some_and(|s| s != current) {
                    return reply.error(Errno::EPERM);
                }
                return self.reply_attr(ino, reply);
            }
            Place::Path(r, p) => (r, p),
            _ => return self.reply_attr(ino, reply),
        };
        // A file open for writing: the change goes into its draft and is
        // published at close.
        let by_handle = fh
            .and_then(|fh| self.handles.get(fh.0).ok())
            .and_then(|h| match &*h {
                Handle::Write(wh) => {
                    wh.wrote();
                    Some(wh.file.clone())
                }
                _ => None,
            });
        let (open, by_path) = match by_handle {
            Some(wf) => (Some(wf), false),
            None => (lock(&self.drafts).get(&(room, path.clone())).cloned(), true),
        };
        if let Some(wf) = open {
            // A draft found by path with nothing left to publish has been
            // closed, its release maybe under way: a change to it now (the
            // `utimensat` rsync makes right after `close`, before its
            // `rename`) is published before the reply, as for any closed
            // file. Else it goes out with the pending close.
            let was_dirty = match wf.change(self.node.store(), size, set, pid) {
                Ok(d) => d,
                Err(e) => return reply.error(store_errno(&e)),
            };
            if by_path && !was_dirty {
                return self.reply_when_attr(self.clone().publish(wf, Until::Written), ino, reply);
            }
            return self.reply_attr(ino, reply);
        }
        let file = match self.find(&room, &path) {
            Ok(Some(Found::File(f))) => f,
            Ok(Some(Found::Dir)) if !set.is_empty() => {
                return self.set_dir_attr(ino, room, path, set, reply);
            }
            Ok(Some(Found::Link(l))) if !set.is_empty() => {
                // `utimensat(AT_SYMLINK_NOFOLLOW)`: the link's own times.
                let attr = Attr {
                    ctime: now(),
                    ..set.apply(l.attr)
                };
                let change = Change::Symlink {
                    path,
                    target: l.target,
                    attr,
                };
                let fs = self.clone();
                let work = async move {
                    let locked = fs.lock_tree(&room).await?;
                    fs.apply(&locked, room, vec![change]).await
                };
                return self.reply_when_attr(work, ino, reply);
            }
            Ok(Some(_)) => return self.reply_attr(ino, reply),
            Ok(None) => return reply.error(Errno::ENOENT),
            Err(e) => return reply.error(e),
        };
        // (A `chmod` to the same mode, a `touch` to the same time: a
        // status change all the same, published for its time.)
        if size.is_none_or(|s| s == file.size) && set.is_empty() {
            return self.reply_attr(ino, reply);
        }
        // A closed file: changed and published now.
        let fs = self.clone();
        let len = size.filter(|s| *s != file.size);
        let work = async move {
            let wf = Arc::new(WriteFile::from_published(room, path.clone(), &file));
            if len.is_some_and(|l| l > 0) {
                let r = fs.room(&room)?;
                tokio::select! {
                    r = fs.node.room_fetch(&r, &path) => r.map_err(|e| swarm_errno(&e))?,
                    () = crate::interrupt::signalled(pid) => return Err(Errno::EINTR),
                };
            }
            wf.change(fs.node.store(), len, set, pid)
                .map_err(|e| store_errno(&e))?;
            wf.touched(pid);
            fs.publish(wf, Until::Written).await
        };
        self.reply_when_attr(work, ino, reply);
    }

    /// `chmod` or `utimensat` of a directory: a directory entry with the
    /// new attributes, published before the reply.
    fn set_dir_attr(
        self: &Arc<Self>,
        ino: INodeNo,
        room: RoomId,
        path: String,
        set: SetAttr,
        reply: fuser::ReplyAttr,
    ) {
        let place = Place::Path(room, path.clone());
        let now = match self.attr_of(ino, &place) {
            Ok(a) => a,
            Err(e) => return reply.error(e),
        };
        let attr = set.apply(Attr {
            mode: now.perm,
            mtime: Time::from_system(now.mtime),
            atime: Time::from_system(now.atime),
            ctime: self::now(),
        });
        let fs = self.clone();
        let work = async move {
            let locked = fs.lock_tree(&room).await?;
            fs.apply(&locked, room, vec![Change::Mkdir { path, attr }])
                .await
        };
        self.reply_when_attr(work, ino, reply);
    }

    /// Replies with the attributes once `work` is done, from a task.
    fn reply_when_attr(
        self: &Arc<Self>,
        work: impl std::future::Future<Output = Result<(), Errno>> + Send + 'static,
        ino: INodeNo,
        reply: fuser::ReplyAttr,
    ) {
        let fs = self.clone();
        self.rt.spawn(async move {
            match work.await {
                Ok(()) => fs.reply_attr(ino, reply),
                Err(e) => reply.error(e),
            }
        });
    }

    pub(crate) fn reply_attr(&self, ino: INodeNo, reply: fuser::ReplyAttr) {
        let place = match self.place(ino) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        match self.attr_of(ino, &place) {
            Ok(a) => reply.attr(&crate::fs::ttl(&place, &a), &a),
            Err(e) => reply.error(e),
        }
    }
}
