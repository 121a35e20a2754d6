//! The one write path into a room's log. Tree changes, from the CLI
//! (`room put`, `room rm`) and from the mount (writes, renames, deletes),
//! are [`Change`]s worked out by [`Node::room_apply_locked`] under the
//! room's tree lock; they, chat lines and the room's settings (names,
//! `copies`) become [`Op`]s that `post_all` signs and stores in one
//! transaction, then pushes to the members.

use std::{collections::HashMap, path::Path, sync::atomic::Ordering, time::Duration};

use p2pfs_proto::{
    Hash, RoomId,
    room::{Attr, FileId, Op, Time, check_path},
};

use super::{FileKind, Room, pin_name, query};
use crate::{Node, SwarmError, blocking};

/// A room's tree lock, held ([`Node::lock_tree`]).
#[derive(Debug)]
pub struct TreeLock {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    room: RoomId,
}

/// A new file id: random, so two files never share one (content alone
/// cannot tell a hard link from a copy).
pub fn new_file_id() -> FileId {
    fastrand::u128(..).to_le_bytes()
}

/// A change to a room's tree, for [`Node::room_apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `path` now holds this content (replacing what it held).
    Put {
        /// The path in the room.
        path: String,
        /// The content.
        hash: Hash,
        /// Its size.
        size: u64,
        /// Permission bits and times.
        attr: Attr,
        /// Which file it is a name of (a new one if `None`).
        inode: Option<FileId>,
        /// The entries this version was made from (what was live at `path`
        /// when the writer opened it): only those are replaced, so a
        /// version another member published meanwhile stays, as a conflict
        /// copy. `None`: whatever is live at `path` now.
        base: Option<Vec<Hash>>,
    },
    /// `path` is removed: every live entry there, or `only` these.
    Delete {
        /// The path in the room.
        path: String,
        /// The entries to remove (a conflict copy); all if `None`.
        only: Option<Vec<Hash>>,
    },
    /// `path` is a directory (kept even when empty).
    Mkdir {
        /// The path in the room.
        path: String,
        /// Its permission bits and times.
        attr: Attr,
    },
    /// `path` is a symbolic link to `target` (replacing what it held).
    Symlink {
        /// The path in the room.
        path: String,
        /// What it points to.
        target: String,
        /// Its times (the mode is ignored).
        attr: Attr,
    },
}

impl Change {
    /// The path it is about.
    pub fn path(&self) -> &str {
        match self {
            Change::Put { path, .. }
            | Change::Delete { path, .. }
            | Change::Mkdir { path, .. }
            | Change::Symlink { path, .. } => path,
        }
    }
}

impl Node {
    /// Writes an entry to `room` and pushes it to the members online.
    pub(crate) async fn post(&self, room: &Room, op: Op) -> Result<Hash, SwarmError> {
        let hashes = self.post_all(room, vec![op]).await?;
        hashes
            .last()
            .copied()
            .ok_or(SwarmError::Room(crate::error::RoomError::NothingWritten))
    }

    /// Writes entries to `room` in one transaction and pushes them.
    pub(crate) async fn post_all(
        &self,
        room: &Room,
        ops: Vec<Op>,
    ) -> Result<Vec<Hash>, SwarmError> {
        self.check_not_removed(room)?;
        if room.sync_before_write.swap(false, Ordering::Relaxed) {
            // A member that left and joined again continues its chain
            // rather than forking it.
            self.room_wait_synced(room, Duration::from_secs(5)).await;
        }
        room.log.author(ops).await
    }

    /// Posts chat lines (one message per line; empty lines are skipped).
    pub async fn chat(&self, room: &Room, text: &str) -> Result<usize, SwarmError> {
        let mut ops = Vec::new();
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if line.is_empty() {
                continue;
            }
            if line.len() > p2pfs_proto::room::MAX_TEXT {
                return Err(crate::error::RoomError::LineTooLong.into());
            }
            ops.push(Op::Chat {
                text: line.to_string(),
            });
        }
        let n = ops.len();
        // Large posts in transactions of a few thousand lines.
        let mut rest = ops;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(4096));
            self.post_all(room, rest).await?;
            rest = tail;
        }
        Ok(n)
    }

    /// The live entries at `path`, which a new entry for it replaces.
    async fn live_at(&self, room: &Room, path: &str) -> Result<Vec<Hash>, SwarmError> {
        let (store, id, p) = (self.store().clone(), room.id, path.to_string());
        blocking(move || query::live_entries(&store, &id, &p)).await
    }

    /// Publishes the file at `file` (an absolute path) in `room` as `path`.
    pub async fn room_put(
        &self,
        room: &Room,
        file: &Path,
        path: &str,
    ) -> Result<(Hash, u64), SwarmError> {
        check_path(path).map_err(crate::error::RoomError::BadPath)?;
        let meta = std::fs::metadata(file)
            .map_err(|e| SwarmError::io(format!("reading {}", file.display()), e))?;
        if !meta.is_file() {
            return Err(crate::error::RoomError::NotAFile(file.to_path_buf()).into());
        }
        let (store, f, pin) = (self.store().clone(), file.to_path_buf(), pin_name(&room.id));
        let imported = blocking(move || store.import_file(&f, Some(&pin))).await?;
        use std::os::unix::fs::MetadataExt;
        let attr = Attr {
            mode: (meta.mode() & u32::from(p2pfs_proto::room::MAX_MODE)) as u16,
            mtime: Time {
                secs: meta.mtime(),
                nanos: meta.mtime_nsec().clamp(0, 999_999_999) as u32,
            },
            atime: Time {
                secs: meta.atime(),
                nanos: meta.atime_nsec().clamp(0, 999_999_999) as u32,
            },
            ctime: Time::from_system(std::time::SystemTime::now()),
        };
        self.room_put_blob(room, path, imported.hash, imported.size, attr)
            .await?;
        Ok((imported.hash, imported.size))
    }

    /// Publishes blob `hash` (`size` bytes, already in the store and
    /// pinned for the room: see [`pin_name`]) in `room` as `path`, with
    /// `attr`. Fails if a file is where a directory of the path is, or a
    /// directory is at it.
    pub async fn room_put_blob(
        &self,
        room: &Room,
        path: &str,
        hash: Hash,
        size: u64,
        attr: Attr,
    ) -> Result<(), SwarmError> {
        check_path(path).map_err(crate::error::RoomError::BadPath)?;
        let tree = self.lock_tree(room).await;
        self.check_shape(room, path).await?;
        let change = Change::Put {
            path: path.to_string(),
            hash,
            size,
            attr,
            inode: None,
            base: None,
        };
        self.room_apply_locked(room, &tree, vec![change]).await?;
        Ok(())
    }

    /// Checks that a file can be put at `path` as the room's tree stands:
    /// no file where a directory of the path is, no directory at it.
    async fn check_shape(&self, room: &Room, path: &str) -> Result<(), SwarmError> {
        let (store, id) = (self.store().clone(), room.id);
        let listing = blocking(move || query::ls(&store, &id)).await?;
        let kinds: HashMap<&str, bool> = listing
            .iter()
            .map(|e| (e.path.as_str(), matches!(e.kind, FileKind::Dir { .. })))
            .collect();
        for (i, _) in path.match_indices('/') {
            let dir = &path[..i];
            if kinds.get(dir) == Some(&false) {
                return Err(crate::error::RoomError::FileInTheWay(dir.to_string()).into());
            }
        }
        if kinds.get(path) == Some(&true) {
            return Err(crate::error::RoomError::IsADirectory(path.to_string()).into());
        }
        Ok(())
    }

    /// Applies tree changes to `room` as entries written in one
    /// transaction (the mount's writes, renames and deletes). Returns the
    /// entry each change wrote, in order (`None` for a delete of nothing).
    pub async fn room_apply(
        &self,
        room: &Room,
        changes: Vec<Change>,
    ) -> Result<Vec<Option<Hash>>, SwarmError> {
        let tree = self.lock_tree(room).await;
        self.room_apply_locked(room, &tree, changes).await
    }

    /// Takes `room`'s tree lock: no other change to its tree is worked
    /// out or written until the [`TreeLock`] is dropped. For a change made
    /// from what the tree shows (a rename, say), held from reading it to
    /// [`Node::room_apply_locked`].
    pub async fn lock_tree(&self, room: &Room) -> TreeLock {
        TreeLock {
            _guard: room.tree_lock.clone().lock_owned().await,
            room: room.id,
        }
    }

    /// [`Node::room_apply`] with the room's tree lock already held.
    pub async fn room_apply_locked(
        &self,
        room: &Room,
        lock: &TreeLock,
        changes: Vec<Change>,
    ) -> Result<Vec<Option<Hash>>, SwarmError> {
        if lock.room != room.id {
            return Err(crate::error::RoomError::WrongLock.into());
        }
        let mut ops = Vec::with_capacity(changes.len());
        // Whether each change became an op.
        let mut written = Vec::with_capacity(changes.len());
        for c in changes {
            let path = c.path().to_string();
            check_path(&path).map_err(crate::error::RoomError::BadPath)?;
            let replaces = match &c {
                Change::Delete {
                    only: Some(entries),
                    ..
                }
                | Change::Put {
                    base: Some(entries),
                    ..
                } => entries.clone(),
                _ => self.live_at(room, &path).await?,
            };
            let op = match c {
                Change::Put {
                    path,
                    hash,
                    size,
                    attr,
                    inode,
                    ..
                } => Op::File {
                    path,
                    hash,
                    size,
                    attr,
                    inode: inode.unwrap_or_else(new_file_id),
                    replaces,
                },
                Change::Delete { path, .. } if !replaces.is_empty() => {
                    Op::Delete { path, replaces }
                }
                Change::Delete { .. } => {
                    written.push(false);
                    continue;
                }
                Change::Mkdir { path, attr } => Op::Dir {
                    path,
                    attr,
                    replaces,
                },
                Change::Symlink { path, target, attr } => Op::SymlinkAt {
                    path,
                    target,
                    attr,
                    replaces,
                },
            };
            ops.push(op);
            written.push(true);
        }
        let mut hashes = if ops.is_empty() {
            Vec::new()
        } else {
            self.post_all(room, ops).await?
        }
        .into_iter();
        Ok(written
            .into_iter()
            .map(|w| if w { hashes.next() } else { None })
            .collect())
    }

    /// Removes `path` from `room`'s tree.
    pub async fn room_delete(&self, room: &Room, path: &str) -> Result<(), SwarmError> {
        let tree = self.lock_tree(room).await;
        let change = Change::Delete {
            path: path.to_string(),
            only: None,
        };
        match self.room_apply_locked(room, &tree, vec![change]).await?[..] {
            [Some(_)] => Ok(()),
            _ => Err(crate::error::RoomError::NoSuchFile(path.to_string()).into()),
        }
    }
}
