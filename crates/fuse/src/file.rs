//! File contents: open handles, reads (local or fetched), writes, and
//! `setattr`. A file opened for writing becomes a [`WriteFile`]
//! (`crate::write`: its states from open to publication); `close` hands
//! its version to the room's publisher (`crate::publish`), `fsync` waits
//! until it is written and on disk.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
};

use fuser::{Errno, FileType, FopenFlags, INodeNo};
use p2pfs_proto::{
    RoomId,
    room::{Attr, Time},
};
use p2pfs_swarm::{
    room::Change,
    store::{BlobReader, StoreError},
};

use crate::{
    answer::{Answer, Opened},
    chat::ChatHandle,
    fetch::Pattern,
    fs::{Found, Fs, lock, store_errno, swarm_errno},
    inode::Place,
    tree::{FileInfo, Item},
    write::{SetAttr, WriteFile, now},
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
        let waiting = p2pfs_swarm::off_thread(move || f.commit(&store, &pin, durable))
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
    pub(crate) fn flush_file(
        self: &Arc<Self>,
        file: Arc<WriteFile>,
        pid: u32,
    ) -> Result<(), Errno> {
        if !file.changed_by(pid) {
            return Ok(());
        }
        self.hand_over(file)
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
    pub(crate) fn fsync_file(self: &Arc<Self>, h: &WriteHandle) -> Answer<()> {
        if !h.writable {
            return Answer::Now(Ok(()));
        }
        Answer::later(self.clone().publish(h.file.clone(), Until::Durable))
    }

    /// `release` of a file handle (the last close of an open file): a
    /// handle that changed the file publishes it (its last writer may have
    /// been another process than the one that closed it).
    pub(crate) fn release_file(self: &Arc<Self>, h: &WriteHandle) -> Result<(), Errno> {
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
        result
    }

    /// `read` of a published file: from the store if the bytes are here,
    /// else fetched on a task.
    pub(crate) fn read_blob(
        self: &Arc<Self>,
        h: &BlobHandle,
        offset: u64,
        size: u32,
        pid: u32,
    ) -> Answer<Vec<u8>> {
        let store = self.node.store();
        if let Some(r) = h.reader.get() {
            return Answer::Now(read_complete(r, size, h.file.size, offset));
        }
        if let Ok(r) = store.reader(&h.file.hash) {
            let r = h.reader.get_or_init(|| r);
            return Answer::Now(read_complete(r, size, h.file.size, offset));
        }
        let ahead = lock(&h.pattern).read(offset, u64::from(size));
        let end = offset.saturating_add(u64::from(size)).min(h.file.size);
        let mut buf = vec![0u8; end.saturating_sub(offset) as usize];
        match store.read_at(&h.file.hash, offset, &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                let mut p = lock(&h.pattern);
                self.prefetch(h.room, &h.file, &mut p, end, ahead);
                Answer::Now(Ok(buf))
            }
            Err(StoreError::NotPresent { .. } | StoreError::NotFound(_)) => {
                let follower = {
                    // A sequential reader's download fetches this read's
                    // own bytes too, first.
                    let mut p = lock(&h.pattern);
                    self.prefetch(h.room, &h.file, &mut p, offset, ahead);
                    p.follower(offset)
                };
                let fs = self.clone();
                let (room, file) = (h.room, h.file.clone());
                Answer::later(async move {
                    fs.read_remote(room, file, offset, size, pid, follower)
                        .await
                })
            }
            Err(e) => Answer::Now(Err(store_errno(&e))),
        }
    }

    /// `write` to a file open for writing (local disk work, done here).
    pub(crate) fn write_file(
        &self,
        h: &WriteHandle,
        offset: u64,
        data: &[u8],
        pid: u32,
    ) -> Result<u32, Errno> {
        match h.file.write(self.node.store(), offset, data, pid) {
            Ok(()) => {
                h.wrote();
                Ok(data.len() as u32)
            }
            Err(e) => {
                tracing::warn!("writing {}: {e}", h.file.path());
                Err(store_errno(&e))
            }
        }
    }

    /// `fallocate` with mode 0: the file grows to `offset + length` if it
    /// is shorter (the new bytes read as zeros: a hole, stored as the
    /// chunks of zeros they are). `FALLOC_FL_KEEP_SIZE` alone changes
    /// nothing (the store takes space as bytes are written); punching
    /// holes and zeroing ranges: `EOPNOTSUPP`.
    pub(crate) fn fallocate_file(
        &self,
        h: &WriteHandle,
        offset: u64,
        length: u64,
        mode: i32,
        pid: u32,
    ) -> Result<(), Errno> {
        const KEEP_SIZE: i32 = 1;
        if mode & !KEEP_SIZE != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        if !h.writable {
            return Err(Errno::EBADF);
        }
        let end = offset.checked_add(length).ok_or(Errno::EFBIG)?;
        if mode & KEEP_SIZE != 0 || end <= h.file.stat().size {
            return Ok(());
        }
        h.file
            .change(self.node.store(), Some(end), SetAttr::default(), pid)
            .map_err(|e| store_errno(&e))?;
        h.wrote();
        Ok(())
    }

    /// Opens a published file for writing: its content must be here, so
    /// it is fetched first (on a task) unless the open truncates it.
    pub(crate) async fn open_published_for_write(
        self: Arc<Self>,
        room: RoomId,
        path: String,
        file: FileInfo,
        truncate: bool,
        pid: u32,
    ) -> Result<Opened, Errno> {
        if !truncate {
            let r = self.room(&room)?;
            let fetched = tokio::select! {
                r = self.node.room_fetch(&r, &path) => r,
                () = crate::interrupt::signalled(pid) => return Err(Errno::EINTR),
            };
            if let Err(e) = fetched {
                tracing::warn!("opening {path} to change it: {e}");
                return Err(swarm_errno(&e));
            }
        }
        let wf = {
            let mut drafts = lock(&self.drafts);
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
        if truncate && let Err(e) = wf.change(self.node.store(), Some(0), SetAttr::default(), pid) {
            wf.closed();
            return Err(store_errno(&e));
        }
        let fh = self
            .handles
            .add(Handle::Write(WriteHandle::new(wf, true, truncate)));
        Ok(Opened::new(fh))
    }
}

/// Reads up to `size` bytes at `offset` of a complete blob of `len`
/// bytes.
fn read_complete(r: &BlobReader, size: u32, len: u64, offset: u64) -> Result<Vec<u8>, Errno> {
    let n = u64::from(size).min(len.saturating_sub(offset)) as usize;
    let mut buf = vec![0u8; n];
    let mut done = 0;
    while done < n {
        match r.read_at(offset + done as u64, &mut buf[done..]) {
            Ok(0) => break,
            Ok(k) => done += k,
            Err(e) => return Err(Errno::from(e)),
        }
    }
    buf.truncate(done);
    Ok(buf)
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
    pub(crate) fn open_ino(self: &Arc<Self>, ino: INodeNo, flags: i32, pid: u32) -> Answer<Opened> {
        let writable = flags & oflags::ACCMODE != oflags::RDONLY;
        let truncate = writable && flags & oflags::TRUNC != 0;
        let place = match self.place(ino) {
            Ok(p) => p,
            Err(e) => return Answer::Now(Err(e)),
        };
        let direct = |fh| Opened {
            fh,
            flags: FopenFlags::FOPEN_DIRECT_IO,
        };
        Answer::Now(match place {
            Place::Root | Place::Room(_) => Err(Errno::EISDIR),
            Place::Chat(room) => {
                if truncate {
                    return Answer::Now(Err(Errno::EPERM));
                }
                let h = ChatHandle::new(room, flags & oflags::APPEND != 0);
                Ok(direct(self.handles.add(Handle::Chat(h))))
            }
            Place::Path(room, path) => match self.open_draft(&room, &path, writable, pid) {
                // Changes to a published file are the writer's until its
                // close: other readers read the published version, past
                // the kernel's cache (which the writer's pages are in).
                Some((_, false)) => match self.tree(&room).map(|t| t.get(&path).cloned()) {
                    Ok(Some(Item::File(f))) => {
                        let h = BlobHandle::new(room, path.clone(), f);
                        Ok(direct(self.handles.add(Handle::Blob(Box::new(h)))))
                    }
                    Ok(_) => Err(Errno::ENOENT),
                    Err(e) => Err(e),
                },
                Some((d, true)) => {
                    if truncate
                        && let Err(e) =
                            d.change(self.node.store(), Some(0), SetAttr::default(), pid)
                    {
                        d.closed();
                        return Answer::Now(Err(store_errno(&e)));
                    }
                    let h = WriteHandle::new(d, writable, truncate);
                    Ok(Opened::new(self.handles.add(Handle::Write(h))))
                }
                None => return self.open_published(ino, room, path, writable, truncate, pid),
            },
        })
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
    ) -> Answer<Opened> {
        let item = match self.tree(&room) {
            Ok(t) => t.get(&path).cloned(),
            Err(e) => return Answer::Now(Err(e)),
        };
        Answer::Now(match item {
            Some(Item::File(f)) if writable => {
                return Answer::later(
                    self.clone()
                        .open_published_for_write(room, path, f, truncate, pid),
                );
            }
            Some(Item::File(f)) => {
                // The kernel may keep cached pages if the content is the
                // one it cached them for.
                let same = lock(&self.cached).insert(ino.0, f.hash) == Some(f.hash);
                let h = BlobHandle::new(room, path.clone(), f);
                let fh = self.handles.add(Handle::Blob(Box::new(h)));
                let flags = if same {
                    FopenFlags::FOPEN_KEEP_CACHE
                } else {
                    FopenFlags::empty()
                };
                Ok(Opened { fh, flags })
            }
            Some(Item::Dir(_)) => Err(Errno::EISDIR),
            // (The kernel follows links itself: only an open that must not
            // follow one gets here.)
            Some(Item::Link(_)) => Err(Errno::ELOOP),
            None if self.has_drafts_under(&room, &path) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        })
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
    ) -> Answer<()> {
        let place = match self.place(ino) {
            Ok(p) => p,
            Err(e) => return Answer::Now(Err(e)),
        };
        let (room, path) = match place {
            Place::Chat(r) => {
                let current =
                    p2pfs_swarm::room::query::chat_size(self.node.store(), &r).unwrap_or(0);
                if size.is_some_and(|s| s != current) {
                    return Answer::Now(Err(Errno::EPERM));
                }
                return Answer::Now(Ok(()));
            }
            Place::Path(r, p) => (r, p),
            _ => return Answer::Now(Ok(())),
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
                Err(e) => return Answer::Now(Err(store_errno(&e))),
            };
            if by_path && !was_dirty {
                return Answer::later(self.clone().publish(wf, Until::Written));
            }
            return Answer::Now(Ok(()));
        }
        let file = match self.find(&room, &path) {
            Ok(Some(Found::File(f))) => f,
            Ok(Some(Found::Dir)) if !set.is_empty() => {
                return self.set_dir_attr(ino, room, path, set);
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
                return Answer::later(work);
            }
            Ok(Some(_)) => return Answer::Now(Ok(())),
            Ok(None) => return Answer::Now(Err(Errno::ENOENT)),
            Err(e) => return Answer::Now(Err(e)),
        };
        // (A `chmod` to the same mode, a `touch` to the same time: a
        // status change all the same, published for its time.)
        if size.is_none_or(|s| s == file.size) && set.is_empty() {
            return Answer::Now(Ok(()));
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
        Answer::later(work)
    }

    /// `chmod` or `utimensat` of a directory: a directory entry with the
    /// new attributes, published before the reply.
    fn set_dir_attr(
        self: &Arc<Self>,
        ino: INodeNo,
        room: RoomId,
        path: String,
        set: SetAttr,
    ) -> Answer<()> {
        let place = Place::Path(room, path.clone());
        let shown = match self.attr_of(ino, &place) {
            Ok(a) => a,
            Err(e) => return Answer::Now(Err(e)),
        };
        let attr = set.apply(Attr {
            mode: shown.perm,
            mtime: Time::from_system(shown.mtime),
            atime: Time::from_system(shown.atime),
            ctime: now(),
        });
        let fs = self.clone();
        let work = async move {
            let locked = fs.lock_tree(&room).await?;
            fs.apply(&locked, room, vec![Change::Mkdir { path, attr }])
                .await
        };
        Answer::later(work)
    }
}
