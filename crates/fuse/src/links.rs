//! Hard links between published files: the names of one file.
//!
//! A file published by this mount carries a file id (random, picked when
//! the file is made, kept by its later versions). `link` publishes the
//! file again under the new name with the same id, content and attributes.
//! Names with the same id and the same content and attributes are one
//! file here: one inode number, `nlink` = how many. A change through one
//! name (a write, `chmod`, `utimensat`) is published for every name in the
//! same transaction, so every member sees all of them change. Two members
//! writing through two names at once each publish over every name; each
//! name then keeps the other version as a conflict copy, and names whose
//! contents differ are separate files until one of them is written again.

use std::{ffi::OsStr, sync::Arc};

use fuser::{Errno, FileAttr, INodeNo};
use p2pfs_proto::{
    RoomId,
    room::{Attr, Time},
};
use p2pfs_swarm::room::{Change, new_file_id};

use crate::{
    answer::Answer,
    file::Until,
    fs::{Found, Fs, lock},
    inode::Place,
    tree::{FileInfo, Item, Tree},
};

impl Fs {
    /// `link`: another name for the file `ino`.
    pub(crate) fn link_ino(
        self: &Arc<Self>,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
    ) -> Answer<FileAttr> {
        let Ok(Place::Path(room, from)) = self.place(ino) else {
            return Answer::Now(Err(Errno::EPERM));
        };
        if self.locals.get(&room, &from).is_some() {
            return Answer::Now(self.link_name(ino, newparent, newname));
        }
        let (room2, path) = match self.new_name(newparent, newname) {
            Ok(n) => n,
            Err(e) => return Answer::Now(Err(e)),
        };
        if room2 != room {
            return Answer::Now(Err(Errno::EXDEV));
        }
        Answer::later(self.clone().link_published(ino, room, from, path))
    }

    async fn link_published(
        self: Arc<Self>,
        ino: INodeNo,
        room: RoomId,
        from: String,
        path: String,
    ) -> Result<fuser::FileAttr, Errno> {
        // A file being written is published first: a link names a version
        // every member can read.
        if let Some(Found::Draft(wf)) = self.find(&room, &from)? {
            self.clone().publish(wf, Until::Written).await?;
        }
        let locked = self.lock_tree(&room).await?;
        let tree = self.tree(&room)?;
        let changes = match tree.get(&from) {
            Some(Item::File(f)) => {
                // A status change for every name: each is published again.
                let attr = Attr {
                    ctime: crate::write::now(),
                    ..f.attr
                };
                let mut changes = Vec::new();
                let id = match f.inode {
                    Some(id) => {
                        changes.extend(touch_other_names(&tree, &from, f, attr.ctime));
                        id
                    }
                    // (A file put before files had ids: it gets one.)
                    None => new_file_id(),
                };
                for (p, base) in [(&from, Some(vec![f.entry])), (&path, None)] {
                    changes.push(Change::Put {
                        path: p.clone(),
                        hash: f.hash,
                        size: f.size,
                        attr,
                        inode: Some(id),
                        base,
                    });
                }
                changes
            }
            // A link to a symbolic link: another link with its target.
            Some(Item::Link(l)) => vec![Change::Symlink {
                path: path.clone(),
                target: l.target.clone(),
                attr: l.attr,
            }],
            Some(Item::Dir(_)) => return Err(Errno::EPERM),
            None => return Err(Errno::ENOENT),
        };
        self.touch_parents(&room, [path.as_str()]);
        self.apply(&locked, room, changes).await?;
        // One inode here (a link to a link too: renaming one name over
        // the other then does nothing, as on a disk).
        let place = Place::Path(room, path);
        lock(&self.inodes).alias(place.clone(), ino.0);
        self.attr_of(ino, &place)
    }

    /// The number of a name of a published file that has other names
    /// with the same content (hard links): theirs, if one has a number.
    pub(crate) fn linked_ino(&self, room: &RoomId, path: &str) -> Option<u64> {
        let tree = self.tree(room).ok()?;
        let Some(Item::File(f)) = tree.get(path) else {
            return None;
        };
        f.inode?;
        let names = tree.names_of(f);
        if names.len() < 2 {
            return None;
        }
        let inodes = lock(&self.inodes);
        names
            .iter()
            .filter(|n| n.as_str() != path)
            .find_map(|n| inodes.get(&Place::Path(*room, n.clone())))
    }

    /// After the name `path` is removed: a file made there later is
    /// another file; its number is reached through another name it has.
    pub(crate) fn unlinked(&self, room: &RoomId, path: &str) {
        lock(&self.inodes).unname(&Place::Path(*room, path.to_string()));
    }
}

/// The changes that publish `f`, shown at `path`, again under its other
/// names with the status change time `ctime` (a name added or removed
/// changes the file's link count: a status change for every name).
pub(crate) fn touch_other_names(tree: &Tree, path: &str, f: &FileInfo, ctime: Time) -> Vec<Change> {
    tree.names_of(f)
        .into_iter()
        .filter(|n| n != path)
        .filter_map(|n| {
            let Some(Item::File(g)) = tree.get(&n) else {
                return None;
            };
            Some(g.put(n, Attr { ctime, ..g.attr }, Some(vec![g.entry])))
        })
        .collect()
}

/// The changes that publish a new version of a file under its other
/// names too (its hard links in `tree`), for the puts among `changes`.
pub(crate) fn to_every_name(tree: &Tree, changes: &[Change]) -> Vec<Change> {
    let mut more: Vec<Change> = Vec::new();
    for c in changes {
        let Change::Put {
            path,
            hash,
            size,
            attr,
            inode: Some(id),
            ..
        } = c
        else {
            continue;
        };
        for name in tree.all_names(id) {
            let taken = |p: &str| changes.iter().chain(&more).any(|c| c.path() == p);
            if name == *path || taken(&name) {
                continue;
            }
            if let Some(Item::File(f)) = tree.get(&name) {
                more.push(Change::Put {
                    path: name,
                    hash: *hash,
                    size: *size,
                    attr: *attr,
                    inode: Some(*id),
                    base: Some(vec![f.entry]),
                });
            }
        }
    }
    more
}
