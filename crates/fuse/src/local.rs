//! Special files made in a room (FIFOs, sockets, device nodes): kept by
//! this mount alone, never published. A socket or a FIFO only works on the
//! machine whose kernel holds it (the kernel does all their I/O; the mount
//! serves no byte of them), and a device node must never reach another
//! member (the mount is `nodev`: here it opens nothing either). Each keeps
//! its own mode, owner, times and names (hard links), as on a local disk,
//! for as long as the mount runs.
//!
//! They live beside the room's tree, like drafts: a lookup finds them
//! before the tree, a listing shows them, `unlink`, `rename`, `link`,
//! `chmod`, `chown` and `utimensat` change them here only.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use fuser::{FileAttr, FileType, INodeNo};
use p2pfs_proto::RoomId;

use crate::fs::lock;

/// One special file (shared by its names).
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) kind: FileType,
    pub(crate) rdev: u32,
    pub(crate) perm: u16,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) atime: SystemTime,
    pub(crate) mtime: SystemTime,
    pub(crate) ctime: SystemTime,
    /// Its names.
    pub(crate) nlink: u32,
    /// Its inode number (one for all its names).
    pub(crate) ino: u64,
}

/// A special file's shared state.
pub(crate) type Shared = Arc<Mutex<Node>>;

/// The special files of every room, by room and path.
#[derive(Debug, Default)]
pub(crate) struct Locals {
    by_path: Mutex<HashMap<(RoomId, String), Shared>>,
}

/// The file type of a `mknod` mode, if it is a special file.
pub(crate) fn special_kind(mode: u32) -> Option<FileType> {
    match mode & 0o170_000 {
        0o010_000 => Some(FileType::NamedPipe),
        0o140_000 => Some(FileType::Socket),
        0o020_000 => Some(FileType::CharDevice),
        0o060_000 => Some(FileType::BlockDevice),
        _ => None,
    }
}

impl Node {
    /// A new special file made by `uid`/`gid` now, numbered `ino`.
    pub(crate) fn new(kind: FileType, perm: u16, rdev: u32, uid: u32, gid: u32, ino: u64) -> Self {
        let now = SystemTime::now();
        Self {
            kind,
            rdev,
            perm,
            uid,
            gid,
            atime: now,
            mtime: now,
            ctime: now,
            nlink: 1,
            ino,
        }
    }

    /// Its attributes.
    pub(crate) fn attr(&self, blksize: u32) -> FileAttr {
        FileAttr {
            ino: INodeNo(self.ino),
            size: 0,
            blocks: 0,
            atime: self.atime,
            mtime: self.mtime,
            ctime: self.ctime,
            crtime: self.ctime,
            kind: self.kind,
            perm: self.perm,
            nlink: self.nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: self.rdev,
            blksize,
            flags: 0,
        }
    }
}

impl Locals {
    /// The special file at `path` of `room`.
    pub(crate) fn get(&self, room: &RoomId, path: &str) -> Option<Shared> {
        lock(&self.by_path).get(&(*room, path.to_string())).cloned()
    }

    /// Adds a name for `node` (a new one, or a hard link).
    pub(crate) fn insert(&self, room: RoomId, path: String, node: Shared) {
        lock(&self.by_path).insert((room, path), node);
    }

    /// Removes the name `path`; returns the node it named.
    pub(crate) fn remove(&self, room: &RoomId, path: &str) -> Option<Shared> {
        let node = lock(&self.by_path).remove(&(*room, path.to_string()))?;
        {
            let mut n = lock(&node);
            n.nlink = n.nlink.saturating_sub(1);
            n.ctime = SystemTime::now();
        }
        Some(node)
    }

    /// Moves the name `from` to `to` (and the names under `from`, a
    /// directory renamed); what `to` named is gone.
    pub(crate) fn rename(&self, room: &RoomId, from: &str, to: &str) {
        let mut map = lock(&self.by_path);
        if let Some(old) = map.remove(&(*room, to.to_string())) {
            let mut o = lock(&old);
            o.nlink = o.nlink.saturating_sub(1);
            o.ctime = SystemTime::now();
        }
        let prefix = format!("{from}/");
        let keys: Vec<(RoomId, String)> = map
            .keys()
            .filter(|(r, p)| r == room && (p == from || p.starts_with(&prefix)))
            .cloned()
            .collect();
        for key in keys {
            if let Some(n) = map.remove(&key) {
                lock(&n).ctime = SystemTime::now();
                map.insert((*room, format!("{to}{}", &key.1[from.len()..])), n);
            }
        }
    }

    /// The names directly in directory `dir` of `room`, with their kinds,
    /// and the directories that only special files make exist.
    pub(crate) fn children(&self, room: &RoomId, dir: &str) -> Vec<(String, FileType)> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        lock(&self.by_path)
            .iter()
            .filter(|((r, p), _)| r == room && p.starts_with(&prefix))
            .map(|((_, p), n)| {
                let rest = &p[prefix.len()..];
                match rest.split_once('/') {
                    Some((d, _)) => (d.to_string(), FileType::Directory),
                    None => (rest.to_string(), lock(n).kind),
                }
            })
            .collect()
    }

    /// Whether a special file is under directory `dir` of `room`.
    pub(crate) fn any_under(&self, room: &RoomId, dir: &str) -> bool {
        let prefix = format!("{dir}/");
        lock(&self.by_path)
            .keys()
            .any(|(r, p)| r == room && p.starts_with(&prefix))
    }

    /// Forgets a room's special files (it was left).
    pub(crate) fn forget_room(&self, room: &RoomId) {
        lock(&self.by_path).retain(|(r, _), _| r != room);
    }
}

impl crate::fs::Fs {
    /// `mknod`: a special file (kept here, see the module docs), or an
    /// empty regular file (published, as `touch` would).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn mknod_name(
        self: &Arc<Self>,
        parent: INodeNo,
        name: &std::ffi::OsStr,
        mode: u32,
        rdev: u32,
        uid: u32,
        gid: u32,
        pid: u32,
    ) -> Result<FileAttr, fuser::Errno> {
        let (room, path) = self.new_name(parent, name)?;
        let perm = (mode & 0o7777) as u16;
        match special_kind(mode) {
            Some(kind) => {
                let ino = self.ino(crate::inode::Place::Path(room, path.clone())).0;
                let node = Arc::new(Mutex::new(Node::new(kind, perm, rdev, uid, gid, ino)));
                self.locals.insert(room, path.clone(), node);
                self.touch_parents(&room, [path.as_str()]);
            }
            None if mode & 0o170_000 == 0o100_000 || mode & 0o170_000 == 0 => {
                self.create_closed(room, path.clone(), perm, pid)?;
            }
            None => return Err(fuser::Errno::EINVAL),
        }
        let place = crate::inode::Place::Path(room, path);
        let ino = self.ino(place.clone());
        self.attr_of(ino, &place)
    }

    /// `link`: another name for a special file (published files:
    /// `crate::links`).
    pub(crate) fn link_name(
        self: &Arc<Self>,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &std::ffi::OsStr,
    ) -> Result<FileAttr, fuser::Errno> {
        let crate::inode::Place::Path(room, from) = self.place(ino)? else {
            return Err(fuser::Errno::EPERM);
        };
        let Some(node) = self.locals.get(&room, &from) else {
            return Err(fuser::Errno::EPERM);
        };
        let (room2, path) = self.new_name(newparent, newname)?;
        if room2 != room {
            return Err(fuser::Errno::EXDEV);
        }
        let attr = {
            let mut n = lock(&node);
            n.nlink += 1;
            n.ctime = SystemTime::now();
            n.attr(crate::fs::BLKSIZE)
        };
        self.touch_parents(&room, [path.as_str()]);
        self.locals.insert(room, path.clone(), node);
        lock(&self.inodes).alias(crate::inode::Place::Path(room, path), attr.ino.0);
        Ok(attr)
    }

    /// `setattr` of a special file: its mode, owner and times, here.
    /// `None` if `ino` is not one.
    pub(crate) fn setattr_local(
        &self,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        atime: Option<fuser::TimeOrNow>,
        mtime: Option<fuser::TimeOrNow>,
    ) -> Option<Result<FileAttr, fuser::Errno>> {
        let crate::inode::Place::Path(room, path) = self.place(ino).ok()? else {
            return None;
        };
        let node = self.locals.get(&room, &path)?;
        let at = |t: fuser::TimeOrNow| match t {
            fuser::TimeOrNow::SpecificTime(t) => t,
            fuser::TimeOrNow::Now => SystemTime::now(),
        };
        let mut n = lock(&node);
        if let Some(m) = mode {
            n.perm = (m & 0o7777) as u16;
        }
        if let Some(u) = uid {
            n.uid = u;
        }
        if let Some(g) = gid {
            n.gid = g;
        }
        if let Some(t) = atime {
            n.atime = at(t);
        }
        if let Some(t) = mtime {
            n.mtime = at(t);
        }
        n.ctime = SystemTime::now();
        Some(Ok(n.attr(crate::fs::BLKSIZE)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_of_mknod_modes() {
        assert_eq!(special_kind(0o010_644), Some(FileType::NamedPipe));
        assert_eq!(special_kind(0o140_755), Some(FileType::Socket));
        assert_eq!(special_kind(0o020_600), Some(FileType::CharDevice));
        assert_eq!(special_kind(0o060_600), Some(FileType::BlockDevice));
        assert_eq!(special_kind(0o100_644), None);
    }

    #[test]
    fn names_share_a_node_and_move_with_renames() {
        let l = Locals::default();
        let r = RoomId::from_bytes([1; 32]);
        let n: Shared = Arc::new(Mutex::new(Node::new(
            FileType::NamedPipe,
            0o644,
            0,
            0,
            0,
            7,
        )));
        l.insert(r, "d/p".into(), n.clone());
        lock(&n).nlink += 1;
        l.insert(r, "q".into(), n.clone());
        assert_eq!(lock(&n).nlink, 2);
        l.rename(&r, "d", "e");
        assert!(l.get(&r, "e/p").is_some() && l.get(&r, "d/p").is_none());
        assert!(l.any_under(&r, "e"));
        l.remove(&r, "q");
        assert_eq!(lock(&n).nlink, 1);
        let kids = l.children(&r, "");
        assert_eq!(kids, vec![("e".to_string(), FileType::Directory)]);
    }
}
