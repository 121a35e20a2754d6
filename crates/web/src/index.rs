//! Each room's listing in memory, as the page reads it: a folder a page
//! at a time, a file by its path, and every name searched at once.
//!
//! The listing is the view derived from the room's log
//! ([`WatchedListing`]), brought up to date path by path when the log
//! grows. Beside it, each name in lower case, for the search: a
//! case-insensitive substring scan over 100,000 names takes a few
//! milliseconds, so no finer index is kept.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use p2pfs_proto::RoomId;
use p2pfs_store::StoreError;
use p2pfs_swarm::{
    Node, RoomError,
    room::{
        FileKind,
        watched::{Refresh, WatchedListing},
    },
};

use crate::{WebError, lock};

/// A page of a folder.
#[derive(Debug, Clone)]
pub(crate) struct Page {
    /// Names directly in the folder, in order, with what they are.
    pub(crate) entries: Vec<(String, FileKind)>,
    /// More follow the last one.
    pub(crate) more: bool,
}

/// A name the search found.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    pub(crate) room: String,
    pub(crate) path: String,
    pub(crate) kind: FileKind,
}

/// One room's listing and its names in lower case.
#[derive(Debug)]
struct RoomIndex {
    watched: WatchedListing,
    /// Path → its last component in lower case.
    names: BTreeMap<String, String>,
}

fn lower_name(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_lowercase()
}

impl RoomIndex {
    fn load(node: &Node, room: &RoomId) -> Result<Self, StoreError> {
        let watched = WatchedListing::load(node, room)?;
        let mut r = Self {
            watched,
            names: BTreeMap::new(),
        };
        r.rebuild_names();
        Ok(r)
    }

    fn rebuild_names(&mut self) {
        self.names = self
            .watched
            .listing()
            .entries()
            .map(|e| {
                let lower = lower_name(&e.path);
                (e.path, lower)
            })
            .collect();
    }

    fn refresh(&mut self, node: &Node, room: &RoomId) -> Result<(), StoreError> {
        match self.watched.refresh(node, room)? {
            Refresh::Same => {}
            Refresh::Reloaded => self.rebuild_names(),
            Refresh::Changed(names) => {
                for name in names {
                    if self.watched.listing().get(&name).is_some() {
                        let lower = lower_name(&name);
                        self.names.insert(name, lower);
                    } else {
                        self.names.remove(&name);
                    }
                }
            }
        }
        Ok(())
    }
}

/// The rooms' listings, loaded when first asked for.
#[derive(Debug)]
pub(crate) struct Index {
    node: Node,
    rooms: Mutex<HashMap<RoomId, Arc<Mutex<RoomIndex>>>>,
}

impl Index {
    pub(crate) fn new(node: Node) -> Self {
        Self {
            node,
            rooms: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `f` on the room's listing, up to date (blocking).
    fn with<T>(
        node: &Node,
        rooms: &Mutex<HashMap<RoomId, Arc<Mutex<RoomIndex>>>>,
        room: &RoomId,
        f: impl FnOnce(&RoomIndex) -> T,
    ) -> Result<T, StoreError> {
        let existing = lock(rooms).get(room).cloned();
        let entry = match existing {
            Some(e) => e,
            None => {
                let loaded = Arc::new(Mutex::new(RoomIndex::load(node, room)?));
                lock(rooms).entry(*room).or_insert(loaded).clone()
            }
        };
        let mut r = lock(&entry);
        r.refresh(node, room)?;
        Ok(f(&r))
    }

    /// Runs `f` on the listing of `room` off the async threads.
    async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        room: RoomId,
        f: impl FnOnce(&RoomIndex) -> T + Send + 'static,
    ) -> Result<T, WebError> {
        let me = self.clone();
        Ok(p2pfs_swarm::off_thread(move || Self::with(&me.node, &me.rooms, &room, f)).await??)
    }

    /// A page of folder `dir` ("" for the top) of `room`: at most `limit`
    /// names after `after`.
    pub(crate) async fn page(
        self: &Arc<Self>,
        room: RoomId,
        dir: String,
        after: Option<String>,
        limit: usize,
    ) -> Result<Page, WebError> {
        self.run(room, move |r| {
            let (entries, more) = r.watched.listing().children(&dir, after.as_deref(), limit);
            Page { entries, more }
        })
        .await
    }

    /// What `path` of `room` is, if anything.
    pub(crate) async fn get(
        self: &Arc<Self>,
        room: &RoomId,
        path: &str,
    ) -> Result<Option<FileKind>, WebError> {
        let p = path.to_string();
        self.run(*room, move |r| r.watched.listing().get(&p).cloned())
            .await
    }

    /// Whether a file can be put at `path` as the listing stands: no file
    /// where a folder of the path is, no folder at it (what the node's
    /// write path checks too, here in time proportional to the path's
    /// depth, before an upload is streamed).
    pub(crate) async fn check_put(
        self: &Arc<Self>,
        room: &RoomId,
        path: &str,
    ) -> Result<(), WebError> {
        let p = path.to_string();
        let refused = self
            .run(*room, move |r| {
                let listing = r.watched.listing();
                for (i, _) in p.match_indices('/') {
                    let dir = &p[..i];
                    if matches!(
                        listing.get(dir),
                        Some(FileKind::File { .. } | FileKind::Symlink { .. })
                    ) {
                        return Some(RoomError::FileInTheWay(dir.to_string()));
                    }
                }
                matches!(listing.get(&p), Some(FileKind::Dir { .. }))
                    .then(|| RoomError::IsADirectory(p.clone()))
            })
            .await?;
        match refused {
            Some(e) => Err(WebError::Swarm(e.into())),
            None => Ok(()),
        }
    }

    /// The files of `room` under folder `dir` ("" for all), with their
    /// paths, in order.
    pub(crate) async fn files_under(
        self: &Arc<Self>,
        room: &RoomId,
        dir: &str,
    ) -> Result<Vec<(String, FileKind)>, WebError> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        self.run(*room, move |r| {
            r.watched
                .listing()
                .entries()
                .filter(|e| e.path.starts_with(&prefix))
                .map(|e| (e.path, e.kind))
                .collect()
        })
        .await
    }

    /// The files of `room` (path, content, size, author), for its
    /// replication status without reading its tree from the store.
    pub(crate) async fn files(
        self: &Arc<Self>,
        room: &RoomId,
    ) -> Result<Vec<(String, p2pfs_proto::Hash, u64, p2pfs_proto::NodeId)>, WebError> {
        self.run(*room, |r| {
            r.watched
                .listing()
                .entries()
                .filter_map(|e| match e.kind {
                    FileKind::File {
                        hash, size, author, ..
                    } => Some((e.path, hash, size, author)),
                    _ => None,
                })
                .collect()
        })
        .await
    }

    /// Names in every room containing `query` (case-insensitive): at most
    /// `limit` of them, and how many matched in all.
    pub(crate) async fn search(
        self: &Arc<Self>,
        query: &str,
        limit: usize,
    ) -> Result<(Vec<Hit>, usize), WebError> {
        let needle = query.to_lowercase();
        let mut hits = Vec::new();
        let mut total = 0;
        let rooms = self.node.all_rooms();
        {
            // Rooms left since are forgotten.
            let ids: Vec<RoomId> = rooms.iter().map(|r| r.id()).collect();
            lock(&self.rooms).retain(|id, _| ids.contains(id));
        }
        for room in rooms {
            let (needle, name) = (needle.clone(), room.name());
            let room_hits = limit.saturating_sub(hits.len());
            let (found, n) = self
                .run(room.id(), move |r| {
                    let mut found = Vec::new();
                    let mut n = 0;
                    for (path, lower) in &r.names {
                        if lower.contains(&needle) {
                            n += 1;
                            if found.len() < room_hits
                                && let Some(kind) = r.watched.listing().get(path)
                            {
                                found.push(Hit {
                                    room: name.clone(),
                                    path: path.clone(),
                                    kind: kind.clone(),
                                });
                            }
                        }
                    }
                    (found, n)
                })
                .await?;
            hits.extend(found);
            total += n;
        }
        Ok((hits, total))
    }
}
