//! Publishing in batches: the files closed in a room go to its log as
//! entries written together, in one durable commit, so that many small
//! files cost one commit, not one each.
//!
//! `close` hands a file over: its draft is committed to the store (a
//! small one without waiting for the disk) and the file goes to the room's
//! queue; `close` returns then. The room's publisher writes whatever is
//! queued as one transaction of log entries, then takes what was queued
//! meanwhile (group commit: no timer, the commit's own time makes the
//! batches). Until its entry is written, the file stays in the mount's
//! drafts, so this member sees it at once. `fsync` waits for its file's
//! batch, which is durable. A file closed again before its batch is
//! written is published once, at its last version.
//!
//! After a crash, as on a local disk: a file closed without `fsync` is
//! either published whole (its batch was written, a few milliseconds
//! after its close) or not at all; never half of it.

use std::{collections::HashMap, sync::Arc, time::Duration};

use fuser::Errno;
use p2pfs_proto::RoomId;
use tokio::sync::{mpsc, oneshot};

use crate::{
    fs::{Fs, lock, swarm_errno},
    write::WriteFile,
};

/// Most files per batch (a batch is one transaction).
const MAX_BATCH: usize = 1024;
/// Waits before a failed batch is written again.
const RETRY: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_secs(1),
    Duration::from_secs(5),
];

/// Something for a room's publisher.
#[derive(Debug)]
pub(crate) enum Job {
    /// Publish this file's pending version; tell `done` once written.
    File {
        file: Arc<WriteFile>,
        done: Option<oneshot::Sender<Result<(), Errno>>>,
    },
    /// Tell `done` once everything queued before is written.
    Flush(oneshot::Sender<()>),
}

/// The publishers of the rooms, by room.
#[derive(Debug, Default)]
pub(crate) struct Publishers {
    queues: std::sync::Mutex<HashMap<RoomId, mpsc::UnboundedSender<Job>>>,
}

impl Fs {
    /// Queues `file` (whose draft was committed) for publishing; the
    /// receiver says when its entry is written.
    pub(crate) fn queue(
        self: &Arc<Self>,
        file: Arc<WriteFile>,
    ) -> oneshot::Receiver<Result<(), Errno>> {
        let (tx, rx) = oneshot::channel();
        file.queued();
        self.note_own(&file.room, [file.path().as_str()]);
        self.send(
            file.room,
            Job::File {
                file,
                done: Some(tx),
            },
        );
        rx
    }

    /// Waits until every file queued so far in every room is published.
    pub(crate) async fn flush_all(self: &Arc<Self>) {
        let rooms: Vec<RoomId> = lock(&self.publishers.queues).keys().copied().collect();
        for room in rooms {
            let (tx, rx) = oneshot::channel();
            self.send(room, Job::Flush(tx));
            let _ = rx.await;
        }
    }

    fn send(self: &Arc<Self>, room: RoomId, job: Job) {
        let mut queues = lock(&self.publishers.queues);
        let tx = queues.entry(room).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            self.rt.spawn(run(Arc::downgrade(self), room, rx));
            tx
        });
        if let Err(mpsc::error::SendError(job)) = tx.send(job) {
            // The publisher ended (the room was left): answer at once.
            match job {
                Job::File { done, .. } => {
                    if let Some(d) = done {
                        let _ = d.send(Err(Errno::ENOENT));
                    }
                }
                Job::Flush(d) => {
                    let _ = d.send(());
                }
            }
        }
    }

    /// Forgets a room's publisher (the room was left).
    pub(crate) fn drop_publisher(&self, room: &RoomId) {
        lock(&self.publishers.queues).remove(room);
    }
}

/// A room's publisher: takes what is queued, writes it, again.
async fn run(fs: std::sync::Weak<Fs>, room: RoomId, mut rx: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let Some(fs) = fs.upgrade() else {
            return;
        };
        fs.write_batch(room, jobs).await;
    }
}

impl Fs {
    /// Writes one batch: every queued file's pending version as entries
    /// of one transaction, then answers the jobs.
    async fn write_batch(self: &Arc<Self>, room: RoomId, jobs: Vec<Job>) {
        let locked = match self.lock_tree(&room).await {
            Ok(t) => t,
            Err(e) => {
                // The room was left: nothing to publish into.
                for job in jobs {
                    match job {
                        Job::File { file, done } => {
                            self.unqueued(&file);
                            if let Some(d) = done {
                                let _ = d.send(Err(e));
                            }
                        }
                        Job::Flush(d) => {
                            let _ = d.send(());
                        }
                    }
                }
                return;
            }
        };
        // Each file once, at its latest version (taken now: a rename since
        // its close moved it, an unlink dropped it).
        let mut files: Vec<Arc<WriteFile>> = Vec::new();
        let mut changes = Vec::new();
        for job in &jobs {
            if let Job::File { file, .. } = job
                && !files.iter().any(|f| Arc::ptr_eq(f, file))
            {
                files.push(file.clone());
            }
        }
        // The versions still in their drafts go to the store (blocking).
        let taken = p2pfs_swarm::off_thread(move || {
            files
                .into_iter()
                .filter_map(|f| match f.take_pending() {
                    Ok(change) => change.map(|c| (f, c)),
                    Err(e) => {
                        // As a disk's writeback would: lost, and said.
                        tracing::warn!("publishing {}: {e}", f.path());
                        None
                    }
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        let mut published = Vec::new();
        for (f, change) in taken {
            published.push(f);
            changes.push(change);
        }
        // Each file's other names (hard links) take the version too.
        if let Ok(tree) = self.tree(&room) {
            let more = crate::links::to_every_name(&tree, &changes);
            changes.extend(more);
        }
        let mut result = Ok(());
        if !changes.is_empty() {
            self.note_own(&room, changes.iter().map(crate::dir::change_path));
            result = self.apply_batch(&locked, room, changes).await.map(|wrote| {
                for (f, entry) in published.iter().zip(wrote) {
                    if let Some(e) = entry {
                        f.published_as(e);
                    }
                }
            });
            if result.is_err() {
                // Published at the next close or release.
                for f in &published {
                    f.unpublished();
                }
            }
        }
        for job in jobs {
            match job {
                Job::File { file, done } => {
                    self.unqueued(&file);
                    if let Some(d) = done {
                        let _ = d.send(result);
                    }
                }
                Job::Flush(d) => {
                    let _ = d.send(());
                }
            }
        }
    }

    /// Writes `changes` to the room's log, trying again a few times.
    async fn apply_batch(
        &self,
        tree: &p2pfs_swarm::room::TreeLock,
        room: RoomId,
        changes: Vec<p2pfs_swarm::room::Change>,
    ) -> Result<Vec<Option<p2pfs_proto::Hash>>, Errno> {
        let r = self.room(&room)?;
        let mut waits = RETRY.iter();
        loop {
            match self.node.room_apply_locked(&r, tree, changes.clone()).await {
                Ok(w) => return Ok(w),
                Err(e) => match waits.next() {
                    Some(wait) if !matches!(e, p2pfs_swarm::SwarmError::Room(_)) => {
                        tracing::warn!(room = %r.name(), "publishing {} files (again in {wait:?}): {e}", changes.len());
                        tokio::time::sleep(*wait).await;
                    }
                    _ => {
                        tracing::warn!(room = %r.name(), "publishing {} files: {e}", changes.len());
                        return Err(swarm_errno(&e));
                    }
                },
            }
        }
    }

    /// `file`'s job is done: it leaves the drafts once nothing holds it.
    fn unqueued(&self, file: &Arc<WriteFile>) {
        let key = (file.room, file.path());
        let mut drafts = lock(&self.drafts);
        if file.done_queued() && drafts.get(&key).is_some_and(|d| Arc::ptr_eq(d, file)) {
            drafts.remove(&key);
        }
    }
}
