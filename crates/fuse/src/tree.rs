//! A room's tree as the mount shows it: the room's listing (from the log's
//! view) in memory, brought up to date path by path when the log grows
//! (only the paths the new entries touched are read again, and only the
//! names they change are redone: see `p2pfs_swarm::room::listing`), with
//! lookups and directory listings answered from it. Each version is a
//! persistent map: taking one costs nothing, and the next shares all it
//! did not change.

use std::{
    collections::BTreeSet,
    sync::Arc,
    time::{Duration, SystemTime},
};

use imbl::{OrdMap, OrdSet};
use p2pfs_proto::{
    Hash, NodeId, RoomId,
    room::{Attr, FileId, Time},
};
use p2pfs_swarm::{
    Node,
    room::{
        Change, FileKind,
        listing::Listing,
        query,
        watched::{Refresh, WatchedListing},
    },
    store::StoreError,
};

/// A published file, as the tree shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileInfo {
    pub(crate) hash: Hash,
    pub(crate) size: u64,
    /// Permission bits and times, as published.
    pub(crate) attr: Attr,
    /// The file it is a name of (hard links share it).
    pub(crate) inode: Option<FileId>,
    pub(crate) author: NodeId,
    /// The entry that put it.
    pub(crate) entry: Hash,
}

impl FileInfo {
    /// A put of this file at `path` with `attr`, over `base`.
    pub(crate) fn put(&self, path: String, attr: Attr, base: Option<Vec<Hash>>) -> Change {
        Change::Put {
            path,
            hash: self.hash,
            size: self.size,
            attr,
            inode: self.inode,
            base,
        }
    }
}

/// Whether two names show one file: the same content, bits and times (a
/// name's status change time is its own entry's).
pub(crate) fn same_file(a: &FileInfo, b: &FileInfo) -> bool {
    (a.hash, a.size, a.attr.mode, a.attr.mtime, a.attr.atime)
        == (b.hash, b.size, b.attr.mode, b.attr.mtime, b.attr.atime)
}

/// A symbolic link, as the tree shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LinkInfo {
    pub(crate) target: String,
    /// Its times (the entry's time for a link made without them).
    pub(crate) attr: Attr,
    pub(crate) author: NodeId,
    /// The entry that made it.
    pub(crate) entry: Hash,
}

/// A directory, as the tree shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct DirInfo {
    /// Its attributes, if an entry set them (else the defaults).
    pub(crate) attr: Option<Attr>,
    /// When that entry was written, ms since the Unix epoch.
    pub(crate) ctime: u64,
}

/// A name in a room's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    Dir(DirInfo),
    File(FileInfo),
    Link(LinkInfo),
}

/// The directory `path` is in ("" for the room's top).
fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// A time in ms since the Unix epoch.
pub(crate) fn from_millis(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

impl Item {
    /// The log entry that put a file or a link here.
    pub(crate) fn entry(&self) -> Option<Hash> {
        match self {
            Item::Dir(_) => None,
            Item::File(f) => Some(f.entry),
            Item::Link(l) => Some(l.entry),
        }
    }
}

impl Item {
    fn of(kind: &FileKind) -> Self {
        match kind {
            FileKind::Dir { attr, ctime } => Item::Dir(DirInfo {
                attr: *attr,
                ctime: *ctime,
            }),
            FileKind::Symlink {
                target,
                attr,
                mtime,
                author,
                entry,
            } => Item::Link(LinkInfo {
                target: target.clone(),
                attr: attr.unwrap_or_else(|| {
                    let t = Time::from_millis(*mtime);
                    Attr {
                        mode: 0o777,
                        mtime: t,
                        atime: t,
                        ctime: t,
                    }
                }),
                author: *author,
                entry: *entry,
            }),
            FileKind::File {
                hash,
                size,
                attr,
                inode,
                author,
                entry,
            } => Item::File(FileInfo {
                hash: *hash,
                size: *size,
                attr: *attr,
                inode: *inode,
                author: *author,
                entry: *entry,
            }),
        }
    }
}

/// One room's tree at one version of its log.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    pub(crate) items: OrdMap<String, Item>,
    /// The names of each file that has an id, by id (hard links).
    links: OrdSet<(FileId, String)>,
    /// Per directory ("" for the room's top), how many directories are
    /// directly in it: its link count, without a walk of its names (a
    /// folder of 70,000 files is asked for it at every create in it).
    subdirs: OrdMap<String, u32>,
    /// When this version was built (the room directory's and chat's mtime).
    pub(crate) built: SystemTime,
    /// Directory times read from the log's view for this version (a
    /// directory's `getattr` reads the store once per version).
    dir_times: Arc<std::sync::Mutex<std::collections::HashMap<String, Option<u64>>>>,
}

impl Tree {
    /// The tree of a listing.
    fn of(listing: &Listing) -> Self {
        let mut t = Self {
            items: OrdMap::new(),
            links: OrdSet::new(),
            subdirs: OrdMap::new(),
            built: SystemTime::now(),
            dir_times: Arc::default(),
        };
        for e in listing.entries() {
            t.insert(e.path, Item::of(&e.kind));
        }
        t
    }

    pub(crate) fn get(&self, path: &str) -> Option<&Item> {
        self.items.get(path)
    }

    fn insert(&mut self, path: String, item: Item) {
        self.remove(&path);
        match &item {
            Item::File(FileInfo {
                inode: Some(id), ..
            }) => {
                self.links.insert((*id, path.clone()));
            }
            Item::Dir(_) => *self.subdirs.entry(parent(&path).to_string()).or_insert(0) += 1,
            _ => {}
        }
        self.items.insert(path, item);
    }

    fn remove(&mut self, path: &str) {
        match self.items.remove(path) {
            Some(Item::File(FileInfo {
                inode: Some(id), ..
            })) => {
                self.links.remove(&(id, path.to_string()));
            }
            Some(Item::Dir(_)) => {
                let dir = parent(path);
                match self.subdirs.get(dir).copied() {
                    Some(n) if n > 1 => {
                        self.subdirs.insert(dir.to_string(), n - 1);
                    }
                    _ => {
                        self.subdirs.remove(dir);
                    }
                }
            }
            _ => {}
        }
    }

    /// How many directories are directly in directory `dir`.
    pub(crate) fn subdir_count(&self, dir: &str) -> u32 {
        self.subdirs.get(dir).copied().unwrap_or(0)
    }

    /// The names of file `id` with the same content as `file` (its hard
    /// links, itself included), in order.
    pub(crate) fn names_of(&self, file: &FileInfo) -> Vec<String> {
        let Some(id) = file.inode else {
            return Vec::new();
        };
        let mut names = self.all_names(&id);
        names.retain(|p| matches!(self.items.get(p), Some(Item::File(f)) if same_file(f, file)));
        names
    }

    /// The time of directory `dir` of `room` ("" for its top) in this
    /// version: the latest entry that made or removed a name in it.
    pub(crate) fn dir_time(&self, node: &Node, room: &RoomId, dir: &str) -> Option<u64> {
        let mut times = crate::fs::lock(&self.dir_times);
        if let Some(t) = times.get(dir) {
            return *t;
        }
        let t = query::dir_time(node.store(), room, dir).ok().flatten();
        times.insert(dir.to_string(), t);
        t
    }

    /// Every name of file `id`, whatever its content.
    pub(crate) fn all_names(&self, id: &FileId) -> Vec<String> {
        self.links
            .range((*id, String::new())..)
            .take_while(|(i, _)| i == id)
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// The names directly in directory `dir` ("" for the room's top).
    pub(crate) fn children<'a>(&'a self, dir: &str) -> impl Iterator<Item = (&'a str, &'a Item)> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let start = prefix.clone();
        self.items
            .range(start..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .filter_map(move |(k, v)| {
                let rest = &k[k.len().min(dir.len() + usize::from(!dir.is_empty()))..];
                (!rest.contains('/')).then_some((rest, v))
            })
    }

    /// Whether directory `dir` has anything in it.
    pub(crate) fn has_children(&self, dir: &str) -> bool {
        self.children(dir).next().is_some()
    }
}

/// The cached tree of one room and the listing it is made from.
#[derive(Debug)]
pub(crate) struct Cached {
    pub(crate) tree: Arc<Tree>,
    listing: WatchedListing,
    /// Names changed since the watcher last asked (`crate::watch`), by
    /// whichever refresh saw them.
    unseen: BTreeSet<String>,
}

impl Cached {
    /// Loads the tree of `room`.
    pub(crate) fn load(node: &Node, room: &RoomId) -> Result<Self, StoreError> {
        let listing = WatchedListing::load(node, room)?;
        Ok(Self {
            tree: Arc::new(Tree::of(listing.listing())),
            listing,
            unseen: BTreeSet::new(),
        })
    }

    /// The names changed since the last call (after a refresh).
    pub(crate) fn take_changed(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.unseen)
    }

    /// Brings the tree up to date if the log grew (reading only the
    /// paths that changed, when the room can tell), noting the names that
    /// changed for the watcher.
    pub(crate) fn refresh(&mut self, node: &Node, room: &RoomId) -> Result<(), StoreError> {
        let changed = match self.listing.refresh(node, room)? {
            Refresh::Same => return Ok(()),
            Refresh::Changed(names) => names,
            Refresh::Reloaded => {
                let fresh = Tree::of(self.listing.listing());
                self.unseen.extend(diff(&self.tree.items, &fresh.items));
                self.tree = Arc::new(fresh);
                return Ok(());
            }
        };
        let mut tree = (*self.tree).clone();
        for name in &changed {
            match self.listing.listing().get(name) {
                Some(kind) => tree.insert(name.clone(), Item::of(kind)),
                None => tree.remove(name),
            }
        }
        tree.built = SystemTime::now();
        tree.dir_times = Arc::default();
        self.tree = Arc::new(tree);
        self.unseen.extend(changed);
        Ok(())
    }
}

/// What changed between two trees: paths added, removed or different.
pub(crate) fn diff(old: &OrdMap<String, Item>, new: &OrdMap<String, Item>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (p, item) in old {
        if new.get(p) != Some(item) {
            out.insert(p.clone());
        }
    }
    for p in new.keys() {
        if !old.contains_key(p) {
            out.insert(p.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(paths: &[&str]) -> Tree {
        Tree {
            items: paths
                .iter()
                .map(|p| (p.to_string(), Item::Dir(DirInfo::default())))
                .collect(),
            links: OrdSet::new(),
            subdirs: OrdMap::new(),
            built: SystemTime::UNIX_EPOCH,
            dir_times: Arc::default(),
        }
    }

    #[test]
    fn children_are_one_level_deep() {
        let t = tree(&["a", "a/b", "a/b/c", "a/d", "ab", "z"]);
        let names = |d: &str| {
            t.children(d)
                .map(|(n, _)| n.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(""), vec!["a", "ab", "z"]);
        assert_eq!(names("a"), vec!["b", "d"]);
        assert_eq!(names("a/b"), vec!["c"]);
        assert!(names("z").is_empty());
        assert!(t.has_children("a/b"));
        assert!(!t.has_children("ab"));
    }

    #[test]
    fn subdirectories_are_counted_as_names_come_and_go() {
        let mut t = tree(&[]);
        let dir = || Item::Dir(DirInfo::default());
        for p in ["a", "a/b", "a/c", "a/b/d", "z"] {
            t.insert(p.to_string(), dir());
        }
        let file = Item::Link(LinkInfo {
            target: "x".into(),
            attr: Attr::default(),
            author: NodeId::from_bytes([0; 32]),
            entry: Hash::from(blake3::hash(b"e")),
        });
        t.insert("a/f".to_string(), file.clone());
        let counts = |t: &Tree| ["", "a", "a/b", "z"].map(|d| t.subdir_count(d));
        assert_eq!(counts(&t), [2, 2, 1, 0]);
        // A directory replaced by a link, one removed, one put again.
        t.insert("a/c".to_string(), file);
        t.remove("a/b/d");
        t.insert("z".to_string(), dir());
        assert_eq!(counts(&t), [2, 1, 0, 0]);
        for (d, n) in [("", 2), ("a", 1), ("a/b", 0)] {
            let walked = t
                .children(d)
                .filter(|(_, i)| matches!(i, Item::Dir(_)))
                .count();
            assert_eq!(walked as u32, n, "{d}");
        }
    }

    #[test]
    fn diff_names_every_changed_path() {
        let old = tree(&["a", "b", "c"]);
        let mut new = tree(&["a", "c", "d"]);
        new.items.insert(
            "c".into(),
            Item::File(FileInfo {
                hash: Hash::from(blake3::hash(b"x")),
                size: 1,
                attr: Attr::default(),
                inode: None,
                author: NodeId::from_bytes([0; 32]),
                entry: Hash::from(blake3::hash(b"e")),
            }),
        );
        let d: Vec<String> = diff(&old.items, &new.items).into_iter().collect();
        assert_eq!(d, vec!["b", "c", "d"]);
    }
}
