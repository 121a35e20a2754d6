//! A room's tree as the mount shows it: the room's listing (from the log's
//! view) cached in memory, rebuilt when the log grows, with lookups and
//! directory listings answered from the cache.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use p2pfs_proto::{Hash, NodeId, RoomId};
use p2pfs_swarm::{
    Node,
    room::{FileEntry, FileKind, query::TreeRows},
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

/// A name in a room's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    Dir,
    File(FileInfo),
}

/// One room's tree at one version of its log.
#[derive(Debug)]
pub(crate) struct Tree {
    pub(crate) items: BTreeMap<String, Item>,
    /// When this version was built (the room directory's and chat's mtime).
    pub(crate) built: SystemTime,
}

impl Tree {
    /// The tree of a room's listing.
    fn from_listing(entries: Vec<FileEntry>) -> Self {
        let mut items = BTreeMap::new();
        for e in entries {
            let item = match e.kind {
                FileKind::Dir => Item::Dir,
                FileKind::File {
                    hash,
                    size,
                    exec,
                    mtime,
                    author,
                    entry,
                } => Item::File(FileInfo {
                    hash,
                    size,
                    exec,
                    mtime: SystemTime::UNIX_EPOCH + Duration::from_millis(mtime),
                    author,
                    entry,
                }),
            };
            items.insert(e.path, item);
        }
        Self {
            items,
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

/// The cached tree of one room, the rows it is made from, and the
/// receiver that says when it is stale.
#[derive(Debug)]
pub(crate) struct Cached {
    pub(crate) tree: Arc<Tree>,
    rows: TreeRows,
    changes: watch::Receiver<u64>,
    /// The log's change counter the rows are up to date with.
    seen: u64,
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
        let rows = TreeRows::load(node.store(), room)?;
        Ok(Self {
            tree: Arc::new(Tree::from_listing(rows.listing())),
            rows,
            changes,
            seen,
        })
    }

    /// The current tree: the cached one, or a new one if the log grew
    /// (reading only the paths that changed, when the room can tell).
    /// Returns whether it was rebuilt.
    pub(crate) fn refresh(&mut self, node: &Node, room: &RoomId) -> Result<bool, StoreError> {
        if !self.changes.has_changed().unwrap_or(false) {
            return Ok(false);
        }
        let now = *self.changes.borrow_and_update();
        let touched = node
            .find_room_now(room)
            .and_then(|r| node.room_touched_since(&r, self.seen));
        match touched {
            Some(paths) => self.rows.update(node.store(), room, paths)?,
            None => self.rows = TreeRows::load(node.store(), room)?,
        }
        self.seen = now;
        self.tree = Arc::new(Tree::from_listing(self.rows.listing()));
        Ok(true)
    }
}

/// What changed between two trees: paths added, removed or different.
pub(crate) fn diff(old: &Tree, new: &Tree) -> Vec<String> {
    let mut out = Vec::new();
    for (p, item) in &old.items {
        if new.items.get(p) != Some(item) {
            out.push(p.clone());
        }
    }
    for p in new.items.keys() {
        if !old.items.contains_key(p) {
            out.push(p.clone());
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
        let mut d = diff(&old, &new);
        d.sort();
        assert_eq!(d, vec!["b", "c", "d"]);
    }
}
