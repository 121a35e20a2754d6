//! Names: lookups, listings, and the operations that change a room's tree
//! (`mkdir`, `rmdir`, `unlink`, `rename`, `create`). Each change is written
//! to the room's log as entries in one transaction, before the reply.

use std::{ffi::OsStr, sync::Arc};

use fuser::{Errno, FileAttr, FileType, INodeNo, RenameFlags};
use p2pfs_proto::{
    RoomId,
    room::{Attr, CHAT_FILE, Time, check_path},
};
use p2pfs_swarm::room::{Change, TreeLock, query};

use crate::{
    answer::{Answer, Created, Opened, Work},
    file::{Handle, WriteHandle},
    fs::{Found, Fs, lock, store_errno, swarm_errno},
    inode::{Place, join},
    tree::{Item, Tree},
    write::{WriteFile, now},
};

/// The name as UTF-8, or EINVAL (room paths are UTF-8).
pub(crate) fn utf8(name: &OsStr) -> Result<&str, Errno> {
    name.to_str().ok_or(Errno::EINVAL)
}

/// A path a change may name: valid in a room, or why not.
fn valid(path: &str) -> Result<(), Errno> {
    check_path(path).map_err(|_| {
        let long_name = path.split('/').any(|c| c.len() > NAME_MAX);
        if long_name || path.len() > p2pfs_proto::room::MAX_PATH {
            Errno::ENAMETOOLONG
        } else {
            Errno::EINVAL
        }
    })
}

/// The longest name in a directory, in bytes (what `statfs` says).
pub(crate) const NAME_MAX: usize = 255;

impl Fs {
    /// The room and directory path of a directory inode.
    fn dir_of(&self, parent: INodeNo) -> Result<(RoomId, String), Errno> {
        let place = self.place(parent)?;
        match &place {
            Place::Room(r) => Ok((*r, String::new())),
            Place::Path(r, p) => match self.find(r, p)? {
                Some(Found::Dir) => Ok((*r, p.clone())),
                Some(_) => Err(Errno::ENOTDIR),
                None => Err(Errno::ENOENT),
            },
            Place::Chat(_) => Err(Errno::ENOTDIR),
            Place::Root => Err(Errno::EPERM),
        }
    }

    pub(crate) fn lookup_name(
        &self,
        parent: INodeNo,
        name: &OsStr,
    ) -> Result<fuser::FileAttr, Errno> {
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let name = utf8(name).map_err(|_| Errno::ENOENT)?;
        let place = match self.place(parent)? {
            Place::Root => Place::Room(self.room_named(name).ok_or(Errno::ENOENT)?.id()),
            Place::Room(r) if name == CHAT_FILE => Place::Chat(r),
            Place::Chat(_) => return Err(Errno::ENOTDIR),
            p => {
                let (r, dir) = (p.room().ok_or(Errno::ENOENT)?, p.dir_path().unwrap_or(""));
                let path = join(dir, name);
                if self.find(&r, &path)?.is_none() {
                    return Err(Errno::ENOENT);
                }
                Place::Path(r, path)
            }
        };
        let ino = self.ino(place.clone());
        self.attr_of(ino, &place)
    }

    /// The entries of a directory, for `opendir`.
    pub(crate) fn list(&self, ino: INodeNo) -> Result<Vec<(INodeNo, FileType, String)>, Errno> {
        let place = self.place(ino)?;
        let mut out = vec![
            (ino, FileType::Directory, ".".to_string()),
            (
                INodeNo(crate::inode::ROOT),
                FileType::Directory,
                "..".to_string(),
            ),
        ];
        match &place {
            Place::Root => {
                let mut rooms = self.node.all_rooms();
                rooms.sort_by_key(|r| r.name());
                for r in rooms {
                    let n = self.ino(Place::Room(r.id()));
                    out.push((n, FileType::Directory, r.name()));
                }
            }
            Place::Chat(_) => return Err(Errno::ENOTDIR),
            Place::Room(r) | Place::Path(r, _) => {
                let dir = place.dir_path().unwrap_or("").to_string();
                if !dir.is_empty() {
                    match self.find(r, &dir)? {
                        Some(Found::Dir) => {}
                        Some(_) => return Err(Errno::ENOTDIR),
                        None => return Err(Errno::ENOENT),
                    }
                } else {
                    let n = self.ino(Place::Chat(*r));
                    out.push((n, FileType::RegularFile, CHAT_FILE.to_string()));
                }
                let tree = self.tree(r)?;
                let mut names: std::collections::BTreeMap<String, FileType> = tree
                    .children(&dir)
                    .map(|(name, item)| {
                        let kind = match item {
                            Item::Dir(_) => FileType::Directory,
                            Item::File(_) => FileType::RegularFile,
                            Item::Link(_) => FileType::Symlink,
                        };
                        (name.to_string(), kind)
                    })
                    .collect();
                // Files being written here, and directories they are in.
                let prefix = if dir.is_empty() {
                    String::new()
                } else {
                    format!("{dir}/")
                };
                for (dr, p) in lock(&self.drafts).keys() {
                    if dr != r || !p.starts_with(&prefix) {
                        continue;
                    }
                    let rest = &p[prefix.len()..];
                    match rest.split_once('/') {
                        Some((d, _)) => names.insert(d.to_string(), FileType::Directory),
                        None => names.insert(rest.to_string(), FileType::RegularFile),
                    };
                }
                // Special files made here (`crate::local`).
                for (name, kind) in self.locals.children(r, &dir) {
                    names.insert(name, kind);
                }
                for (name, kind) in names {
                    let n = self.ino(Place::Path(*r, join(&dir, &name)));
                    out.push((n, kind, name));
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn mkdir_name(
        self: &Arc<Self>,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
    ) -> Answer<FileAttr> {
        Answer::after(self.mkdir_work(parent, name, mode))
    }

    fn mkdir_work(
        self: &Arc<Self>,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
    ) -> Result<Work<FileAttr>, Errno> {
        let name = utf8(name)?.to_string();
        let fs = self.clone();
        if let Ok(Place::Root) = self.place(parent) {
            if self.room_named(&name).is_some() {
                return Err(Errno::EEXIST);
            }
            return Ok(Box::pin(async move {
                if let Err(e) = fs.node.create_room(&name).await {
                    tracing::warn!("creating room {name:?}: {e}");
                    return Err(Errno::EINVAL);
                }
                let r = fs.room_named(&name).ok_or(Errno::EIO)?;
                let place = Place::Room(r.id());
                let ino = fs.ino(place.clone());
                fs.attr_of(ino, &place)
            }));
        }
        let (room, dir) = self.dir_of(parent)?;
        let path = join(&dir, &name);
        valid(&path)?;
        if self.find(&room, &path)?.is_some() {
            return Err(Errno::EEXIST);
        }
        self.touch_parents(&room, [path.as_str()]);
        // A directory made in a setgid one is setgid too (its files take
        // the directory's group), as on a local disk.
        let mode = match self.place(parent).and_then(|p| self.attr_of(parent, &p)) {
            Ok(a) if a.perm & 0o2000 != 0 => mode | 0o2000,
            _ => mode,
        };
        Ok(Box::pin(async move {
            let locked = fs.lock_tree(&room).await?;
            let change = Change::Mkdir {
                path: path.clone(),
                attr: new_attr(mode),
            };
            fs.apply(&locked, room, vec![change]).await?;
            let place = Place::Path(room, path);
            let ino = fs.ino(place.clone());
            fs.attr_of(ino, &place)
        }))
    }

    pub(crate) fn rmdir_name(self: &Arc<Self>, parent: INodeNo, name: &OsStr) -> Answer<()> {
        Answer::after(self.rmdir_work(parent, name))
    }

    fn rmdir_work(self: &Arc<Self>, parent: INodeNo, name: &OsStr) -> Result<Work<()>, Errno> {
        let name = utf8(name)?;
        if let Ok(Place::Root) = self.place(parent) {
            // A room always holds its chat.log; `p2pfs room leave` leaves it.
            return Err(if self.room_named(name).is_some() {
                Errno::ENOTEMPTY
            } else {
                Errno::ENOENT
            });
        }
        let (room, dir) = self.dir_of(parent)?;
        if dir.is_empty() && name == CHAT_FILE {
            return Err(Errno::ENOTDIR);
        }
        let path = join(&dir, name);
        let tree = match self.find(&room, &path)? {
            Some(Found::Dir) => self.tree(&room)?,
            Some(_) => return Err(Errno::ENOTDIR),
            None => return Err(Errno::ENOENT),
        };
        if tree.has_children(&path)
            || self.has_drafts_under(&room, &path)
            || self.locals.any_under(&room, &path)
        {
            return Err(Errno::ENOTEMPTY);
        }
        self.touch_parents(&room, [path.as_str()]);
        let fs = self.clone();
        Ok(Box::pin(async move {
            let locked = fs.lock_tree(&room).await?;
            fs.apply(&locked, room, vec![Change::Delete { path, only: None }])
                .await
        }))
    }

    pub(crate) fn unlink_name(self: &Arc<Self>, parent: INodeNo, name: &OsStr) -> Answer<()> {
        Answer::after(self.unlink_work(parent, name))
    }

    fn unlink_work(self: &Arc<Self>, parent: INodeNo, name: &OsStr) -> Result<Work<()>, Errno> {
        let name = utf8(name)?;
        let (room, dir) = self.dir_of(parent)?;
        if dir.is_empty() && name == CHAT_FILE {
            return Err(Errno::EPERM);
        }
        let path = join(&dir, name);
        if self.locals.remove(&room, &path).is_some() {
            // Its number stays reachable through a name it still has.
            self.unlinked(&room, &path);
            self.touch_parents(&room, [path.as_str()]);
            return Ok(Box::pin(async { Ok(()) }));
        }
        let fs = self.clone();
        Ok(Box::pin(async move {
            let locked = fs.lock_tree(&room).await?;
            // A file being written is dropped: it is never published.
            let draft = lock(&fs.drafts).remove(&(room, path.clone()));
            if let Some(d) = &draft {
                d.unlink();
            }
            fs.touch_parents(&room, [path.as_str()]);
            let tree = fs.tree(&room)?;
            let changes = match tree.get(&path) {
                Some(item @ (Item::File(_) | Item::Link(_))) => {
                    fs.delete_changes(&room, &tree, &path, item)?
                }
                Some(Item::Dir(_)) => return Err(Errno::EISDIR),
                None if draft.is_some() => {
                    fs.unlinked(&room, &path);
                    return Ok(());
                }
                None => return Err(Errno::ENOENT),
            };
            fs.apply(&locked, room, changes).await?;
            fs.unlinked(&room, &path);
            Ok(())
        }))
    }

    /// The changes that remove the file shown at `path`, as on a disk: a
    /// conflict copy alone; the winner alone, its conflict copies staying
    /// under their names (published there as files of their own).
    fn delete_changes(
        &self,
        room: &RoomId,
        tree: &Tree,
        path: &str,
        shown: &Item,
    ) -> Result<Vec<Change>, Errno> {
        let Some(entry) = shown.entry() else {
            return Err(Errno::EISDIR);
        };
        let live =
            query::live_entries(self.node.store(), room, path).map_err(|e| store_errno(&e))?;
        if !live.contains(&entry) {
            // A conflict copy: remove only its entry, at the real path.
            let real = path.rsplit_once(".conflict-").map_or(path, |(p, _)| p);
            return Ok(vec![Change::Delete {
                path: real.to_string(),
                only: Some(vec![entry]),
            }]);
        }
        let mut changes = vec![Change::Delete {
            path: path.to_string(),
            only: None,
        }];
        if let Item::File(f) = shown {
            // Its other names (hard links) have one link fewer.
            changes.extend(crate::links::touch_other_names(tree, path, f, now()));
        }
        let prefix = format!("{path}.conflict-");
        for (name, item) in tree.items.range(prefix.clone()..) {
            if !name.starts_with(&prefix) {
                break;
            }
            if item.entry().is_some_and(|e| live.contains(&e))
                && let Some(c) = put_change(name.clone(), item)
            {
                changes.push(c);
            }
        }
        Ok(changes)
    }

    pub(crate) fn rename_name(
        self: &Arc<Self>,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Answer<()> {
        let room = match self.place(parent).map(|p| p.room()) {
            Ok(Some(r)) => r,
            Ok(None) => return Answer::Now(Err(Errno::EPERM)),
            Err(e) => return Answer::Now(Err(e)),
        };
        let (fs, name, newname) = (self.clone(), name.to_owned(), newname.to_owned());
        Answer::later(async move {
            let locked = fs.lock_tree(&room).await?;
            let (room, from, to, changes) =
                fs.rename_changes(parent, &name, newparent, &newname, flags)?;
            fs.apply(&locked, room, changes).await?;
            if flags.contains(RenameFlags::RENAME_EXCHANGE) {
                lock(&fs.inodes).exchange(room, &from, &to);
            } else {
                lock(&fs.inodes).rename(room, &from, &to);
            }
            Ok(())
        })
    }

    /// Checks a rename like a disk would, moves drafts, and returns the
    /// changes that move the published files.
    fn rename_changes(
        &self,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Result<(RoomId, String, String, Vec<Change>), Errno> {
        if flags.contains(RenameFlags::RENAME_WHITEOUT) {
            return Err(Errno::EINVAL);
        }
        let (name, newname) = (utf8(name)?, utf8(newname)?);
        if matches!(self.place(parent)?, Place::Root)
            || matches!(self.place(newparent)?, Place::Root)
        {
            // Room directories are named with `p2pfs room join --name`.
            return Err(Errno::EPERM);
        }
        let (room, dir) = self.dir_of(parent)?;
        let (room2, newdir) = self.dir_of(newparent)?;
        if room != room2 {
            return Err(Errno::EXDEV);
        }
        if (dir.is_empty() && name == CHAT_FILE) || (newdir.is_empty() && newname == CHAT_FILE) {
            return Err(Errno::EPERM);
        }
        let (from, to) = (join(&dir, name), join(&newdir, newname));
        valid(&to)?;
        let src = self.find(&room, &from)?.ok_or(Errno::ENOENT)?;
        if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            let changes = self.exchange_changes(&room, &from, &to)?;
            return Ok((room, from, to, changes));
        }
        if from == to {
            return Ok((room, from, to, Vec::new()));
        }
        if to.starts_with(&format!("{from}/")) {
            return Err(Errno::EINVAL);
        }
        let tree = self.tree(&room)?;
        let dst = self.find(&room, &to)?;
        if dst.is_some() && flags.contains(RenameFlags::RENAME_NOREPLACE) {
            return Err(Errno::EEXIST);
        }
        let same_ino = {
            let inodes = lock(&self.inodes);
            let ino = |p: &str| inodes.get(&Place::Path(room, p.to_string()));
            ino(&from).is_some() && ino(&from) == ino(&to)
        };
        let same_file = match (&src, &dst) {
            (Found::File(a), Some(Found::File(b))) => {
                a.inode.is_some() && a.inode == b.inode && crate::tree::same_file(a, b)
            }
            _ => false,
        };
        if same_ino || same_file {
            // Two names of one file: nothing to do (POSIX).
            return Ok((room, from.clone(), from, Vec::new()));
        }
        let src_is_dir = matches!(src, Found::Dir);
        match (&dst, src_is_dir) {
            (Some(Found::Dir), false) => return Err(Errno::EISDIR),
            (Some(Found::Dir), true)
                if tree.has_children(&to)
                    || self.has_drafts_under(&room, &to)
                    || self.locals.any_under(&room, &to) =>
            {
                return Err(Errno::ENOTEMPTY);
            }
            (Some(Found::File(_) | Found::Draft(_) | Found::Local(_) | Found::Link(_)), true) => {
                return Err(Errno::ENOTDIR);
            }
            _ => {}
        }
        let mut changes = Vec::new();
        if let Some(Found::File(f)) = &dst {
            // The file replaced keeps its other names, one link fewer.
            changes.extend(crate::links::touch_other_names(&tree, &to, f, now()));
        }
        if src_is_dir {
            let ino = self.ino(Place::Path(room, from.clone()));
            let a = self.attr_of(ino, &Place::Path(room, from.clone()))?;
            changes.push(Change::Mkdir {
                path: to.clone(),
                attr: Attr {
                    mode: a.perm,
                    mtime: Time::from_system(a.mtime),
                    atime: Time::from_system(a.atime),
                    ctime: now(),
                },
            });
            changes.push(Change::Delete {
                path: from.clone(),
                only: None,
            });
            let prefix = format!("{from}/");
            for (p, item) in tree.items.range(prefix.clone()..) {
                if !p.starts_with(&prefix) {
                    break;
                }
                let new = format!("{to}/{}", &p[prefix.len()..]);
                changes.push(match item {
                    Item::Dir(d) => Change::Mkdir {
                        path: new,
                        attr: d.attr.unwrap_or_else(|| new_attr(0o755)),
                    },
                    leaf => match put_change(new, leaf) {
                        Some(c) => c,
                        None => continue,
                    },
                });
                changes.push(Change::Delete {
                    path: p.clone(),
                    only: None,
                });
            }
        } else if let Some(item @ (Item::File(_) | Item::Link(_))) = tree.get(&from) {
            let mut moved = self.delete_changes(&room, &tree, &from, item)?;
            changes.extend(put_change(to.clone(), item));
            changes.append(&mut moved);
        }
        // Special files move with their names, here only; a published file
        // they replace is deleted.
        let src_local = matches!(src, Found::Local(_));
        if src_local {
            if let Some(item @ (Item::File(_) | Item::Link(_))) = tree.get(&to) {
                changes.extend(self.delete_changes(&room, &tree, &to, item)?);
            }
        } else if self.locals.get(&room, &to).is_some() {
            self.locals.remove(&room, &to);
        }
        if src_local || src_is_dir {
            self.locals.rename(&room, &from, &to);
        }
        // Drafts move with their names; one at the destination is replaced.
        let mut drafts = lock(&self.drafts);
        if let Some(old) = drafts.remove(&(room, to.clone())) {
            old.unlink();
        }
        let prefix = format!("{from}/");
        let keys: Vec<(RoomId, String)> = drafts
            .keys()
            .filter(|(r, p)| *r == room && (*p == from || p.starts_with(&prefix)))
            .cloned()
            .collect();
        for key in keys {
            if let Some(d) = drafts.remove(&key) {
                let new = format!("{to}{}", &key.1[from.len()..]);
                d.set_path(new.clone());
                drafts.insert((room, new), d);
            }
        }
        self.touch_parents(&room, [from.as_str(), to.as_str()]);
        Ok((room, from, to, changes))
    }

    /// `renameat2(RENAME_EXCHANGE)`: `a` and `b` (and what is under them)
    /// trade places, published as one transaction; drafts at either move
    /// with their names. Special files under them: `EBUSY`.
    fn exchange_changes(&self, room: &RoomId, a: &str, b: &str) -> Result<Vec<Change>, Errno> {
        if self.find(room, b)?.is_none() {
            return Err(Errno::ENOENT);
        }
        if a == b {
            return Ok(Vec::new());
        }
        if a.starts_with(&format!("{b}/")) || b.starts_with(&format!("{a}/")) {
            return Err(Errno::EINVAL);
        }
        let busy = |p: &str| {
            self.locals.get(room, p).is_some()
                || self.locals.any_under(room, p)
                || self.has_drafts_under(room, p)
        };
        if busy(a) || busy(b) {
            return Err(Errno::EBUSY);
        }
        let tree = self.tree(room)?;
        let under = |root: &str| -> Vec<(String, Item)> {
            let prefix = format!("{root}/");
            tree.get(root)
                .map(|i| (root.to_string(), i.clone()))
                .into_iter()
                .chain(
                    tree.items
                        .range(prefix.clone()..)
                        .take_while(|(p, _)| p.starts_with(&prefix))
                        .map(|(p, i)| (p.clone(), i.clone())),
                )
                .collect()
        };
        let moves: Vec<(String, String, Item)> = under(a)
            .into_iter()
            .map(|(p, i)| (format!("{b}{}", &p[a.len()..]), p, i))
            .chain(
                under(b)
                    .into_iter()
                    .map(|(p, i)| (format!("{a}{}", &p[b.len()..]), p, i)),
            )
            .collect();
        let targets: std::collections::HashSet<&str> =
            moves.iter().map(|(new, _, _)| new.as_str()).collect();
        let mut changes = Vec::new();
        for (new, _, item) in &moves {
            changes.extend(match item {
                Item::Dir(d) => Some(Change::Mkdir {
                    path: new.clone(),
                    attr: Attr {
                        ctime: now(),
                        ..d.attr.unwrap_or_else(|| new_attr(0o755))
                    },
                }),
                leaf => put_change(new.clone(), leaf),
            });
        }
        for (_, old, _) in &moves {
            if !targets.contains(old.as_str()) {
                changes.push(Change::Delete {
                    path: old.clone(),
                    only: None,
                });
            }
        }
        // Drafts at the two names trade them too.
        let mut drafts = lock(&self.drafts);
        let da = drafts.remove(&(*room, a.to_string()));
        let db = drafts.remove(&(*room, b.to_string()));
        for (d, to) in [(da, b), (db, a)] {
            if let Some(d) = d {
                d.set_path(to.to_string());
                drafts.insert((*room, to.to_string()), d);
            }
        }
        self.touch_parents(room, [a, b]);
        Ok(changes)
    }

    /// The room and path of the name `name` in directory `parent`, if a
    /// file may take it (a valid name; not the room's `chat.log`).
    fn name_in(&self, parent: INodeNo, name: &OsStr) -> Result<(RoomId, String), Errno> {
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let name = utf8(name)?;
        let (room, dir) = self.dir_of(parent)?;
        if dir.is_empty() && name == CHAT_FILE {
            return Err(Errno::EEXIST);
        }
        let path = join(&dir, name);
        valid(&path)?;
        Ok((room, path))
    }

    /// The room and path of a new name `name` in directory `parent`:
    /// valid, and free.
    pub(crate) fn new_name(
        &self,
        parent: INodeNo,
        name: &OsStr,
    ) -> Result<(RoomId, String), Errno> {
        let (room, path) = self.name_in(parent, name)?;
        if self.find(&room, &path)?.is_some() {
            return Err(Errno::EEXIST);
        }
        Ok((room, path))
    }

    /// `symlink`: a link at `name` in `parent` to `target` (kept as
    /// written), published before the reply.
    pub(crate) fn symlink_name(
        self: &Arc<Self>,
        parent: INodeNo,
        name: &OsStr,
        target: &std::path::Path,
    ) -> Answer<FileAttr> {
        let made = (|| {
            let (room, path) = self.new_name(parent, name)?;
            // (Link targets, like names, are UTF-8 here.)
            let target = target.to_str().ok_or(Errno::EINVAL)?.to_string();
            if target.is_empty() || target.len() > p2pfs_proto::room::MAX_TARGET {
                return Err(Errno::ENAMETOOLONG);
            }
            Ok((room, path, target))
        })();
        let (room, path, target) = match made {
            Ok(m) => m,
            Err(e) => return Answer::Now(Err(e)),
        };
        let fs = self.clone();
        Answer::later(async move {
            let locked = fs.lock_tree(&room).await?;
            fs.touch_parents(&room, [path.as_str()]);
            let change = Change::Symlink {
                path: path.clone(),
                target,
                attr: new_attr(0o777),
            };
            fs.apply(&locked, room, vec![change]).await?;
            let place = Place::Path(room, path);
            let ino = fs.ino(place.clone());
            fs.attr_of(ino, &place)
        })
    }

    /// `readlink`: what the link `ino` points to.
    pub(crate) fn link_target(&self, ino: INodeNo) -> Result<String, Errno> {
        let Place::Path(room, path) = self.place(ino)? else {
            return Err(Errno::EINVAL);
        };
        match self.find(&room, &path)? {
            Some(Found::Link(l)) => Ok(l.target),
            Some(_) => Err(Errno::EINVAL),
            None => Err(Errno::ENOENT),
        }
    }

    /// A new empty regular file at `path`, published as if created and
    /// closed (`mknod` of a regular file).
    pub(crate) fn create_closed(
        self: &Arc<Self>,
        room: RoomId,
        path: String,
        mode: u16,
        pid: u32,
    ) -> Result<(), Errno> {
        let store = self.node.store();
        let live = query::live_entries(store, &room, &path).map_err(|e| store_errno(&e))?;
        let draft = store.draft().map_err(|e| store_errno(&e))?;
        let wf = Arc::new(WriteFile::new(room, path.clone(), draft, mode, pid, live));
        lock(&self.drafts).insert((room, path), wf.clone());
        let handed = self.hand_over(wf.clone());
        let key = (room, wf.path());
        let mut drafts = lock(&self.drafts);
        wf.closed();
        if wf.is_idle() && drafts.get(&key).is_some_and(|d| Arc::ptr_eq(d, &wf)) {
            drafts.remove(&key);
        }
        handed
    }

    pub(crate) fn create_file(
        self: &Arc<Self>,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        pid: u32,
    ) -> Result<Created, Errno> {
        let (room, path) = self.name_in(parent, name)?;
        if let Some(Found::Dir) = self.find(&room, &path)? {
            return Err(Errno::EISDIR);
        }
        let store = self.node.store();
        // What the new file replaces: nothing shown here (deletes, or
        // a version this member has not seen listed yet stays live).
        let live = query::live_entries(store, &room, &path).map_err(|e| store_errno(&e))?;
        let draft = store.draft().map_err(|e| store_errno(&e))?;
        let wf = Arc::new(WriteFile::new(
            room,
            path.clone(),
            draft,
            (mode & u32::from(p2pfs_proto::room::MAX_MODE)) as u16,
            pid,
            live,
        ));
        if let Some(old) = lock(&self.drafts).insert((room, path.clone()), wf.clone()) {
            old.unlink();
        }
        self.touch_parents(&room, [path.as_str()]);
        let place = Place::Path(room, path);
        let ino = self.ino(place.clone());
        let attr = self.attr_of(ino, &place)?;
        let fh = self
            .handles
            .add(Handle::Write(WriteHandle::new(wf, true, true)));
        Ok(Created {
            attr,
            opened: Opened::new(fh),
        })
    }

    /// Writes tree changes to the room's log, its tree lock held.
    pub(crate) async fn apply(
        &self,
        tree: &TreeLock,
        room: RoomId,
        changes: Vec<Change>,
    ) -> Result<(), Errno> {
        if changes.is_empty() {
            return Ok(());
        }
        let r = self.room(&room)?;
        self.note_own(&room, changes.iter().map(change_path));
        self.node
            .room_apply_locked(&r, tree, changes)
            .await
            .map(drop)
            .map_err(|e| {
                tracing::warn!("changing room {}: {e}", r.name());
                match e {
                    p2pfs_swarm::SwarmError::Room(_) => Errno::EINVAL,
                    e => swarm_errno(&e),
                }
            })
    }
}

/// The path a change is about.
pub(crate) fn change_path(c: &Change) -> &str {
    c.path()
}

/// A put of what `shown` is (a file's content, a link) at `path`; `None`
/// for a directory.
pub(crate) fn put_change(path: String, shown: &Item) -> Option<Change> {
    match shown {
        // (A new name: a status change.)
        Item::File(file) => Some(file.put(
            path,
            Attr {
                ctime: now(),
                ..file.attr
            },
            None,
        )),
        Item::Link(l) => Some(Change::Symlink {
            path,
            target: l.target.clone(),
            attr: Attr {
                ctime: now(),
                ..l.attr
            },
        }),
        Item::Dir(_) => None,
    }
}

/// The attributes of a file or directory made now with `mode`.
pub(crate) fn new_attr(mode: u32) -> Attr {
    let t = now();
    Attr {
        mode: (mode & u32::from(p2pfs_proto::room::MAX_MODE)) as u16,
        mtime: t,
        atime: t,
        ctime: t,
    }
}
