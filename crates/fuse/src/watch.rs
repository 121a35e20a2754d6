//! Keeping the kernel's caches true: when a room's log grows (another
//! member wrote, or this one did), the names and attributes that changed
//! are invalidated at once, so `ls` and `stat` see them without waiting for
//! [`crate::fs::TTL`]. Rooms joined or left appear and vanish in the root.

use std::{
    collections::{HashMap, HashSet},
    ffi::OsStr,
    sync::Arc,
};

use fuser::{INodeNo, Notifier};
use p2pfs_proto::RoomId;
use tokio::sync::watch;

use crate::{
    fs::{Fs, lock},
    inode::{self, Place},
};

/// Stops the watch tasks once true (or dropped).
pub(crate) type Shutdown = watch::Receiver<bool>;

async fn stopped(stop: &mut Shutdown) {
    let _ = stop.wait_for(|v| *v).await;
}

/// Watches the room set and every room; runs until `stop`.
pub(crate) async fn run(fs: Arc<Fs>, notifier: Notifier, mut stop: Shutdown) {
    let notifier = Arc::new(notifier);
    let mut set = fs.node.room_set_changes();
    let mut rooms: HashMap<RoomId, (String, tokio::task::JoinHandle<()>)> = HashMap::new();
    loop {
        let now: HashMap<RoomId, String> = fs
            .node
            .all_rooms()
            .into_iter()
            .map(|r| (r.id(), r.name()))
            .collect();
        let mut names: HashSet<String> = HashSet::new();
        rooms.retain(|id, (name, task)| {
            if now.get(id) == Some(name) {
                return true;
            }
            task.abort();
            names.insert(name.clone());
            if !now.contains_key(id) {
                fs.forget_room(id);
            }
            false
        });
        for (id, name) in now {
            if rooms.contains_key(&id) {
                continue;
            }
            names.insert(name.clone());
            let task = tokio::spawn(room(fs.clone(), notifier.clone(), id, stop.clone()));
            rooms.insert(id, (name, task));
        }
        invalidate(
            &notifier,
            names
                .into_iter()
                .map(|n| (INodeNo(inode::ROOT), n))
                .collect(),
            Vec::new(),
        )
        .await;
        tokio::select! {
            r = set.changed() => if r.is_err() { break },
            _ = stopped(&mut stop) => break,
        }
    }
    for (_, (_, task)) in rooms {
        task.abort();
    }
}

/// Watches one room's log.
async fn room(fs: Arc<Fs>, notifier: Arc<Notifier>, id: RoomId, mut stop: Shutdown) {
    let Some(r) = fs.node.find_room_now(&id) else {
        return;
    };
    let mut changes = fs.node.room_changes(&r);
    loop {
        tokio::select! {
            c = changes.changed() => if c.is_err() { return },
            _ = stopped(&mut stop) => return,
        }
        let Ok(changed) = fs.changed_names(&id) else {
            continue;
        };
        let (mut entries, mut inodes) = (Vec::new(), Vec::new());
        {
            let table = lock(&fs.inodes);
            for path in changed.into_iter().filter(|p| !fs.is_own(&id, p)) {
                let (dir, name) = inode::split(&path);
                let parent = if dir.is_empty() {
                    Place::Room(id)
                } else {
                    Place::Path(id, dir.to_string())
                };
                if let Some(p) = table.get(&parent) {
                    entries.push((INodeNo(p), name.to_string()));
                    // (Its time changed too.)
                    if !inodes.contains(&INodeNo(p)) {
                        inodes.push(INodeNo(p));
                    }
                }
                if let Some(n) = table.get(&Place::Path(id, path.clone())) {
                    inodes.push(INodeNo(n));
                }
            }
        }
        invalidate(&notifier, entries, inodes).await;
    }
}

/// Sends invalidations (on a blocking thread: each is a write to the FUSE
/// device, which the kernel may hold while it takes a directory's lock).
async fn invalidate(
    notifier: &Arc<Notifier>,
    entries: Vec<(INodeNo, String)>,
    inodes: Vec<INodeNo>,
) {
    if entries.is_empty() && inodes.is_empty() {
        return;
    }
    let n = notifier.clone();
    let _ = p2pfs_swarm::off_thread(move || {
        for (parent, name) in entries {
            let _ = n.inval_entry(parent, OsStr::new(&name));
        }
        for ino in inodes {
            let _ = n.inval_inode(ino, 0, 0);
        }
    })
    .await;
}
