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

use imbl::OrdMap;
use p2pfs_proto::{Hash, NodeId, RoomId};
use p2pfs_swarm::{
    Node,
    room::{FileKind, listing::Listing, query},
    store::StoreError,
};
use tokio::sync::watch;

/// A published file, as the tree shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileInfo {
    pub(crate) hash: Hash,
    pub(crate) size: u64,
    pub(crate) exec: bool,
    pub(crate) mtime: SystemTime,
    pub(crate) author: NodeId,
    /// The entry that put it.
    pub(crate) entry: Hash,
}

/// A symbolic link, as the tree shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LinkInfo {
    pub(crate) target: String,
    pub(crate) mtime: SystemTime,
    pub(crate) author: NodeId,
    /// The entry that made it.
    pub(crate) entry: Hash,
}

/// A name in a room's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    Dir,
    File(FileInfo),
    Link(LinkInfo),
}

impl Item {
    /// The log entry that put a file or a link here.
    pub(crate) fn entry(&self) -> Option<Hash> {
        match self {
            Item::Dir => None,
            Item::File(f) => Some(f.entry),
            Item::Link(l) => Some(l.entry),
        }
    }
}

impl Item {
    fn of(kind: &FileKind) -> Self {
        match kind {
            FileKind::Dir => Item::Dir,
            FileKind::Symlink {
                target,
                mtime,
                author,
                entry,
            } => Item::Link(LinkInfo {
                target: target.clone(),
                mtime: SystemTime::UNIX_EPOCH + Duration::from_millis(*mtime),
                author: *author,
                entry: *entry,
            }),
            FileKind::File {
                hash,
                size,
                exec,
                mtime,
                author,
                entry,
            } => Item::File(FileInfo {
                hash: *hash,
                size: *size,
                exec: *exec,
                mtime: SystemTime::UNIX_EPOCH + Duration::from_millis(*mtime),
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
    /// When this version was built (the room directory's and chat's mtime).
    pub(crate) built: SystemTime,
}

impl Tree {
    /// The tree of a listing.
    fn of(listing: &Listing) -> Self {
        Self {
            items: listing
                .entries()
                .map(|e| (e.path, Item::of(&e.kind)))
                .collect(),
            built: SystemTime::now(),
        }
    }

    pub(crate) fn get(&self, path: &str) -> Option<&Item> {
        self.items.get(path)
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

/// The cached tree of one room, the listing it is made from, and the
/// receiver that says when it is stale.
#[derive(Debug)]
pub(crate) struct Cached {
    pub(crate) tree: Arc<Tree>,
    listing: Listing,
    changes: watch::Receiver<u64>,
    /// The log's change counter the listing is up to date with.
    seen: u64,
    /// Names changed since the watcher last asked (`crate::watch`), by
    /// whichever refresh saw them.
    unseen: BTreeSet<String>,
}

impl Cached {
    /// Loads the tree of `room`.
    pub(crate) fn load(node: &Node, room: &RoomId) -> Result<Self, StoreError> {
        let mut changes = match node.find_room_now(room) {
            Some(r) => node.room_changes(&r),
            None => watch::channel(0).1,
        };
        // Read the counter first: changes after it are read again later.
        let seen = *changes.borrow_and_update();
        let listing = query::load_listing(node.store(), room)?;
        Ok(Self {
            tree: Arc::new(Tree::of(&listing)),
            listing,
            changes,
            seen,
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
        if !self.changes.has_changed().unwrap_or(false) {
            return Ok(());
        }
        let now = *self.changes.borrow_and_update();
        let touched = node
            .find_room_now(room)
            .and_then(|r| node.room_touched_since(&r, self.seen));
        self.seen = now;
        let changed = match touched {
            Some(paths) => query::update_listing(&mut self.listing, node.store(), room, paths)?,
            None => {
                // Too much changed to tell: everything is read again.
                self.listing = query::load_listing(node.store(), room)?;
                let fresh = Tree::of(&self.listing);
                self.unseen.extend(diff(&self.tree.items, &fresh.items));
                self.tree = Arc::new(fresh);
                return Ok(());
            }
        };
        let mut tree = (*self.tree).clone();
        for name in &changed {
            match self.listing.get(name) {
                Some(kind) => {
                    tree.items.insert(name.clone(), Item::of(kind));
                }
                None => {
                    tree.items.remove(name);
                }
            }
        }
        tree.built = SystemTime::now();
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
            items: paths.iter().map(|p| (p.to_string(), Item::Dir)).collect(),
            built: SystemTime::UNIX_EPOCH,
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
    fn diff_names_every_changed_path() {
        let old = tree(&["a", "b", "c"]);
        let mut new = tree(&["a", "c", "d"]);
        new.items.insert(
            "c".into(),
            Item::File(FileInfo {
                hash: Hash::from(blake3::hash(b"x")),
                size: 1,
                exec: false,
                mtime: SystemTime::UNIX_EPOCH,
                author: NodeId::from_bytes([0; 32]),
                entry: Hash::from(blake3::hash(b"e")),
            }),
        );
        let d: Vec<String> = diff(&old.items, &new.items).into_iter().collect();
        assert_eq!(d, vec!["b", "c", "d"]);
    }
}
