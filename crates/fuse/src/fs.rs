//! The filesystem's state and how a place becomes attributes: the part
//! every operation shares. The operations themselves are in `dir.rs`
//! (names), `file.rs` (contents), `chat.rs`, `xattr.rs`; `kernel.rs` is
//! the `fuser::Filesystem` glue that calls them.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use fuser::{Errno, FileAttr, FileType, INodeNo};
use p2pfs_proto::RoomId;
use p2pfs_swarm::{
    Node, SwarmError,
    room::{Room, TreeLock},
    store::StoreError,
};

use crate::{
    fetch::Fetches,
    file::Handles,
    inode::{Inodes, Place},
    tree::{Cached, DirInfo, FileInfo, Item, Tree, from_millis},
    write::WriteFile,
};

/// How long the kernel may keep names and attributes of files and
/// directories (changes also invalidate them at once, see `watch.rs`).
pub(crate) const TTL: Duration = Duration::from_secs(1);
/// `stat` block size: tools size their buffers from it (`cp` reads and
/// writes in blocks this large).
pub(crate) const BLKSIZE: u32 = 1 << 20;
/// How long a change this mount made is its own: when it comes back from
/// the log (within this time), the kernel already shows it and is left
/// alone.
const OWN_WINDOW: Duration = Duration::from_secs(2);

/// The paths this mount changed lately (see [`Fs::note_own`]).
#[derive(Debug, Default)]
struct Own {
    paths: HashMap<(RoomId, String), std::time::Instant>,
    /// When the old ones were last swept away.
    swept: Option<std::time::Instant>,
}

/// Everything the mount knows.
#[derive(Debug)]
pub(crate) struct Fs {
    pub(crate) node: Node,
    pub(crate) rt: tokio::runtime::Handle,
    pub(crate) inodes: Mutex<Inodes>,
    trees: Mutex<HashMap<RoomId, Cached>>,
    /// Files being written, by room and path, until published and closed.
    pub(crate) drafts: Mutex<HashMap<(RoomId, String), Arc<WriteFile>>>,
    pub(crate) handles: Handles,
    /// The content the kernel may have cached pages of, by inode.
    pub(crate) cached: Mutex<HashMap<u64, p2pfs_proto::Hash>>,
    pub(crate) fetches: Fetches,
    pub(crate) publishers: crate::publish::Publishers,
    pub(crate) locals: crate::local::Locals,
    /// Paths this mount changed lately, by room, and when.
    own: Mutex<Own>,
    /// Directories whose content this mount changed, and when (their
    /// time before the log has it: a draft made, a special file).
    touched: Mutex<HashMap<(RoomId, String), SystemTime>>,
    /// Owners set here (`chown`, or a file made by another user), by
    /// inode: uids and gids are this machine's, so they are not
    /// published; other members show their mount's user.
    pub(crate) owners: Mutex<HashMap<u64, (u32, u32)>>,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) started: SystemTime,
}

/// How long the kernel may keep the attributes `attr` of `place`: not at
/// all for `chat.log`, whose size grows as messages arrive, nor for a
/// special file (its names share one node: a change through one must show
/// through the others at once).
pub(crate) fn ttl(place: &Place, attr: &FileAttr) -> Duration {
    match place {
        Place::Chat(_) => Duration::ZERO,
        _ => attr_ttl(attr),
    }
}

/// How long the kernel may keep `attr` (zero for a special file).
pub(crate) fn attr_ttl(attr: &FileAttr) -> Duration {
    match attr.kind {
        FileType::NamedPipe | FileType::Socket | FileType::CharDevice | FileType::BlockDevice => {
            Duration::ZERO
        }
        _ => TTL,
    }
}

/// What a place in a room holds right now.
#[derive(Debug, Clone)]
pub(crate) enum Found {
    Dir,
    File(FileInfo),
    /// A file being written here (not yet published, or changed since).
    Draft(Arc<WriteFile>),
    /// A special file made here (`crate::local`).
    Local(crate::local::Shared),
    /// A symbolic link.
    Link(crate::tree::LinkInfo),
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The errno for a store error.
pub(crate) fn store_errno(e: &StoreError) -> Errno {
    match e {
        StoreError::NoSpace { .. } => Errno::ENOSPC,
        StoreError::NotFound(_) => Errno::ENOENT,
        StoreError::Io { source, .. } => source.raw_os_error().map_or(Errno::EIO, Errno::from_i32),
        _ => Errno::EIO,
    }
}

/// The errno for a node error.
pub(crate) fn swarm_errno(e: &SwarmError) -> Errno {
    match e {
        SwarmError::Store(s) => store_errno(s),
        _ => Errno::EIO,
    }
}

impl Fs {
    pub(crate) fn new(node: Node, rt: tokio::runtime::Handle) -> Self {
        Self {
            node,
            rt,
            inodes: Mutex::new(Inodes::default()),
            trees: Mutex::new(HashMap::new()),
            drafts: Mutex::new(HashMap::new()),
            handles: Handles::default(),
            cached: Mutex::new(HashMap::new()),
            fetches: Fetches::default(),
            publishers: crate::publish::Publishers::default(),
            locals: crate::local::Locals::default(),
            own: Mutex::new(Own::default()),
            touched: Mutex::new(HashMap::new()),
            owners: Mutex::new(HashMap::new()),
            uid: rustix::process::getuid().as_raw(),
            gid: rustix::process::getgid().as_raw(),
            started: SystemTime::now(),
        }
    }

    /// Notes that this mount is changing `paths` of `room` (before the
    /// change is written: the log may show it at once).
    pub(crate) fn note_own<'a>(&self, room: &RoomId, paths: impl IntoIterator<Item = &'a str>) {
        let now = std::time::Instant::now();
        let mut own = lock(&self.own);
        // (Old ones go now and then: not at every call, or a burst of
        // closes would each walk the whole map.)
        if own
            .swept
            .is_none_or(|t| now.duration_since(t) > OWN_WINDOW / 8)
        {
            own.swept = Some(now);
            own.paths.retain(|_, t| now.duration_since(*t) < OWN_WINDOW);
        }
        for p in paths {
            own.paths.insert((*room, p.to_string()), now);
        }
    }

    /// Whether `path` of `room` was changed by this mount lately: the
    /// kernel made that change itself, and invalidating it would throw
    /// away what processes hold (a new directory that is someone's working
    /// directory would show as deleted).
    pub(crate) fn is_own(&self, room: &RoomId, path: &str) -> bool {
        lock(&self.own)
            .paths
            .get(&(*room, path.to_string()))
            .is_some_and(|t| t.elapsed() < OWN_WINDOW)
    }

    /// Notes that the directories holding `paths` changed now (a name
    /// made or removed in them).
    pub(crate) fn touch_parents<'a>(
        &self,
        room: &RoomId,
        paths: impl IntoIterator<Item = &'a str>,
    ) {
        // (To the millisecond, as the log's times: a directory's own time
        // set in the same millisecond is later.)
        let now = from_millis(crate::write::now().as_millis());
        let mut t = lock(&self.touched);
        for p in paths {
            let (dir, _) = crate::inode::split(p);
            t.insert((*room, dir.to_string()), now);
        }
    }

    /// `chown`: the owner kept here for `ino` (`None` if neither is set).
    pub(crate) fn chown(
        &self,
        ino: INodeNo,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> Option<Result<(), Errno>> {
        if uid.is_none() && gid.is_none() {
            return None;
        }
        let place = match self.place(ino) {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        };
        let now = match self.attr_of(ino, &place) {
            Ok(a) => a,
            Err(e) => return Some(Err(e)),
        };
        let owner = (uid.unwrap_or(now.uid), gid.unwrap_or(now.gid));
        let mut owners = lock(&self.owners);
        if owner == (self.uid, self.gid) {
            owners.remove(&ino.0);
        } else {
            owners.insert(ino.0, owner);
        }
        Some(Ok(()))
    }

    /// The owner of a file or directory `name` about to be made in
    /// `parent` by `uid`/`gid`: the group is the directory's if it has
    /// the setgid bit (as on a local disk).
    pub(crate) fn own_new(&self, parent: INodeNo, name: &std::ffi::OsStr, uid: u32, gid: u32) {
        let Ok(place) = self.place(parent) else {
            return;
        };
        let Some(dir) = place.dir_path() else {
            return;
        };
        let Some(room) = place.room() else {
            return;
        };
        let Some(name) = name.to_str() else {
            return;
        };
        let gid = match self.attr_of(parent, &place) {
            Ok(a) if a.perm & 0o2000 != 0 => a.gid,
            _ => gid,
        };
        let ino = self.ino(Place::Path(room, crate::inode::join(dir, name)));
        let mut owners = lock(&self.owners);
        if (uid, gid) == (self.uid, self.gid) {
            owners.remove(&ino.0);
        } else {
            owners.insert(ino.0, (uid, gid));
        }
    }

    /// Takes the room's tree lock (the room's own: a change worked out
    /// from the tree is written before another is worked out).
    pub(crate) async fn lock_tree(&self, room: &RoomId) -> Result<TreeLock, Errno> {
        let r = self.room(room)?;
        Ok(self.node.lock_tree(&r).await)
    }

    pub(crate) fn place(&self, ino: INodeNo) -> Result<Place, Errno> {
        lock(&self.inodes).place(ino.0).ok_or(Errno::ENOENT)
    }

    pub(crate) fn ino(&self, place: Place) -> INodeNo {
        if let Place::Path(room, path) = &place
            && lock(&self.inodes).get(&place).is_none()
            && let Some(n) = self.linked_ino(room, path)
        {
            // Another name of a file that has a number (a hard link).
            lock(&self.inodes).alias(place, n);
            return INodeNo(n);
        }
        INodeNo(lock(&self.inodes).ino(place))
    }

    pub(crate) fn room(&self, id: &RoomId) -> Result<Arc<Room>, Errno> {
        self.node.find_room_now(id).ok_or(Errno::ENOENT)
    }

    /// The room whose directory is called `name`.
    pub(crate) fn room_named(&self, name: &str) -> Option<Arc<Room>> {
        self.node.all_rooms().into_iter().find(|r| r.name() == name)
    }

    /// The room's current tree.
    pub(crate) fn tree(&self, room: &RoomId) -> Result<Arc<Tree>, Errno> {
        self.with_tree(room, |c| c.tree.clone())
    }

    /// The names of `room` changed since the last call (the watcher's).
    pub(crate) fn changed_names(&self, room: &RoomId) -> Result<BTreeSet<String>, Errno> {
        self.with_tree(room, Cached::take_changed)
    }

    /// Runs `f` on the room's cached tree, brought up to date.
    fn with_tree<T>(&self, room: &RoomId, f: impl FnOnce(&mut Cached) -> T) -> Result<T, Errno> {
        let mut trees = lock(&self.trees);
        let errno = |e: StoreError| {
            tracing::warn!(%room, "reading the room's tree: {e}");
            store_errno(&e)
        };
        if let Some(c) = trees.get_mut(room) {
            c.refresh(&self.node, room).map_err(errno)?;
            return Ok(f(c));
        }
        let mut c = Cached::load(&self.node, room).map_err(errno)?;
        let out = f(&mut c);
        trees.insert(*room, c);
        Ok(out)
    }

    /// Forgets a room's cached tree (it was left).
    pub(crate) fn forget_room(&self, room: &RoomId) {
        lock(&self.trees).remove(room);
        lock(&self.inodes).forget_room(room);
        lock(&self.drafts).retain(|(r, _), _| r != room);
        self.locals.forget_room(room);
        self.drop_publisher(room);
    }

    /// What `path` in `room` holds: a draft first, then the tree.
    pub(crate) fn find(&self, room: &RoomId, path: &str) -> Result<Option<Found>, Errno> {
        if path.is_empty() {
            return Ok(Some(Found::Dir));
        }
        if let Some(d) = lock(&self.drafts).get(&(*room, path.to_string())) {
            return Ok(Some(Found::Draft(d.clone())));
        }
        if let Some(n) = self.locals.get(room, path) {
            return Ok(Some(Found::Local(n)));
        }
        let tree = self.tree(room)?;
        Ok(match tree.get(path) {
            Some(Item::Dir(_)) => Some(Found::Dir),
            Some(Item::File(f)) => Some(Found::File(f.clone())),
            Some(Item::Link(l)) => Some(Found::Link(l.clone())),
            None => (self.has_drafts_under(room, path) || self.locals.any_under(room, path))
                .then_some(Found::Dir),
        })
    }

    /// Whether a draft is being written somewhere under directory `dir`
    /// (which then exists here even if the tree does not have it yet).
    pub(crate) fn has_drafts_under(&self, room: &RoomId, dir: &str) -> bool {
        let prefix = format!("{dir}/");
        lock(&self.drafts)
            .keys()
            .any(|(r, p)| r == room && p.starts_with(&prefix))
    }

    pub(crate) fn attr_of(&self, ino: INodeNo, place: &Place) -> Result<FileAttr, Errno> {
        let mut a = match place {
            Place::Root => self.dir_attr(ino, self.started),
            Place::Room(r) => {
                self.room(r)?;
                let t = self.tree(r)?;
                self.path_dir_attr(ino, r, "", &t, DirInfo::default())
            }
            Place::Chat(r) => {
                self.room(r)?;
                let size = p2pfs_swarm::room::query::chat_size(self.node.store(), r)
                    .map_err(|e| store_errno(&e))?;
                let t = self.tree(r)?;
                self.file_attr(ino, size, 0o644, t.built)
            }
            Place::Path(r, p) => match self.find(r, p)? {
                None => return Err(Errno::ENOENT),
                Some(Found::Dir) => {
                    let t = self.tree(r)?;
                    let info = match t.get(p) {
                        Some(Item::Dir(d)) => *d,
                        _ => DirInfo::default(),
                    };
                    self.path_dir_attr(ino, r, p, &t, info)
                }
                Some(Found::File(f)) => {
                    let mut a =
                        self.file_attr(ino, f.size, self.shown_mode(&f), f.attr.mtime.to_system());
                    a.atime = f.attr.atime.to_system();
                    a.ctime = f.attr.ctime.to_system();
                    let names = self.tree(r)?.names_of(&f).len();
                    a.nlink = names.max(1) as u32;
                    a
                }
                Some(Found::Draft(d)) => {
                    let st = d.stat();
                    let mut a =
                        self.file_attr(ino, st.size, st.attr.mode, st.attr.mtime.to_system());
                    a.atime = st.attr.atime.to_system();
                    a.ctime = st.attr.ctime.to_system();
                    // (Its names: those of the version it was opened from.)
                    a.nlink = self.tree(r)?.all_names(&d.inode()).len().max(1) as u32;
                    a
                }
                Some(Found::Local(n)) => return Ok(lock(&n).attr(BLKSIZE)),
                Some(Found::Link(l)) => {
                    let mut a =
                        self.file_attr(ino, l.target.len() as u64, 0o777, l.attr.mtime.to_system());
                    a.atime = l.attr.atime.to_system();
                    a.ctime = l.attr.ctime.to_system();
                    a.kind = FileType::Symlink;
                    a
                }
            },
        };
        if let Some((uid, gid)) = lock(&self.owners).get(&ino.0) {
            (a.uid, a.gid) = (*uid, *gid);
        }
        Ok(a)
    }

    /// The attributes of `ino` and how long the kernel may keep them; an
    /// open file whose last name is gone has those its handles hold.
    pub(crate) fn shown(&self, ino: INodeNo) -> Result<(FileAttr, Duration), Errno> {
        let place = self.place(ino)?;
        match self.attr_of(ino, &place) {
            Ok(a) => Ok((a, ttl(&place, &a))),
            Err(Errno::ENOENT) => self
                .orphan_attr(ino)
                .map(|a| (a, Duration::ZERO))
                .ok_or(Errno::ENOENT),
            Err(e) => Err(e),
        }
    }

    /// The attributes of an open file whose last name is gone (`fstat`
    /// after `unlink`): what a handle on it holds, no link. `None` if
    /// none is open.
    pub(crate) fn orphan_attr(&self, ino: INodeNo) -> Option<FileAttr> {
        let place = self.place(ino).ok()?;
        let Place::Path(room, path) = &place else {
            return None;
        };
        let handle = self.handles.open_at(room, path)?;
        let (size, attr) = match &*handle {
            crate::file::Handle::Write(wh) => {
                let st = wh.file.stat();
                (st.size, st.attr)
            }
            crate::file::Handle::Blob(bh) => (bh.file.size, bh.file.attr),
            _ => return None,
        };
        let mut a = self.file_attr(ino, size, attr.mode, attr.mtime.to_system());
        a.atime = attr.atime.to_system();
        a.ctime = attr.ctime.to_system();
        a.nlink = 0;
        Some(a)
    }

    /// The permission bits a published file shows here: setuid and setgid
    /// only on the member that set them (a member cannot hand out a
    /// program that runs as another user of this machine).
    pub(crate) fn shown_mode(&self, f: &FileInfo) -> u16 {
        if f.author == self.node.id() {
            f.attr.mode
        } else {
            f.attr.mode & 0o1777
        }
    }

    /// The attributes of directory `path` of room `room`: its entry's mode
    /// and times, unless something in it changed later (the latest entry
    /// directly in it, or a change this mount made).
    fn path_dir_attr(
        &self,
        ino: INodeNo,
        room: &RoomId,
        path: &str,
        tree: &Tree,
        info: DirInfo,
    ) -> FileAttr {
        let logged = tree.dir_time(&self.node, room, path).map(from_millis);
        let local = lock(&self.touched).get(&(*room, path.to_string())).copied();
        let content = logged.max(local);
        let made = (info.ctime > 0).then(|| from_millis(info.ctime));
        let fallback = tree.built;
        let mut a = self.dir_attr(ino, content.or(made).unwrap_or(fallback));
        if let Some(attr) = info.attr {
            a.perm = attr.mode;
            if content.is_none_or(|c| made.is_some_and(|m| m >= c)) {
                a.mtime = attr.mtime.to_system();
                a.atime = attr.atime.to_system();
            }
        }
        a.ctime = content.max(made).unwrap_or(fallback);
        a.nlink = 2 + tree.subdir_count(path);
        a
    }

    pub(crate) fn dir_attr(&self, ino: INodeNo, mtime: SystemTime) -> FileAttr {
        FileAttr {
            ino,
            size: 4096,
            blocks: 8,
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind: FileType::Directory,
            perm: 0o755,
            nlink: 2,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: BLKSIZE,
            flags: 0,
        }
    }

    pub(crate) fn file_attr(
        &self,
        ino: INodeNo,
        size: u64,
        perm: u16,
        mtime: SystemTime,
    ) -> FileAttr {
        FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind: FileType::RegularFile,
            perm,
            nlink: 1,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: BLKSIZE,
            flags: 0,
        }
    }
}
