//! The task that owns a room's log: every entry that enters it, written
//! here (the CLI, the mount, chat, the room's settings) or received from a
//! member, goes through this one task, in order. It keeps the entries
//! waiting for their parents, stores what is new, marks the paths it
//! touched, and pushes it to the sessions. Everything else talks to it
//! through [`LogHandle`].

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use p2pfs_proto::{Hash, NodeId, room::Op};
use p2pfs_store::Store;
use tokio::sync::{mpsc, oneshot};

use super::{Room, entry::Verified, log, overlay};
use crate::{SwarmError, net::Net};

/// Requests queued for a room's log before writers wait.
const QUEUE: usize = 256;
/// Most entries kept waiting for their parents, per room.
const MAX_PENDING: usize = 10_000;
/// How long an entry may wait for its parents.
const PENDING_TTL: Duration = Duration::from_secs(120);

/// What the log task is asked.
enum Cmd {
    /// Sign `ops` as this node's next entries, in one transaction.
    Author {
        ops: Vec<Op>,
        reply: oneshot::Sender<Result<Vec<Hash>, SwarmError>>,
    },
    /// Accept verified entries `peer` sent.
    Accept {
        peer: NodeId,
        entries: Vec<Verified>,
        reply: oneshot::Sender<Result<bool, SwarmError>>,
    },
}

/// The way to a room's log task. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct LogHandle {
    tx: mpsc::Sender<Cmd>,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cmd::Author { ops, .. } => write!(f, "Author({} ops)", ops.len()),
            Cmd::Accept { peer, entries, .. } => {
                write!(
                    f,
                    "Accept({} entries from {})",
                    entries.len(),
                    peer.fmt_short()
                )
            }
        }
    }
}

impl LogHandle {
    /// Writes `ops` as this node's entries in one transaction and pushes
    /// them; returns their hashes.
    pub(crate) async fn author(&self, ops: Vec<Op>) -> Result<Vec<Hash>, SwarmError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Author { ops, reply })
            .await
            .map_err(|_| SwarmError::Shutdown)?;
        rx.await.map_err(|_| SwarmError::Shutdown)?
    }

    /// Accepts verified entries from `peer` (with those waiting for their
    /// parents) and pushes the new ones to the other members. True if some
    /// still wait for parents.
    pub(crate) async fn accept(
        &self,
        peer: NodeId,
        entries: Vec<Verified>,
    ) -> Result<bool, SwarmError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Accept {
                peer,
                entries,
                reply,
            })
            .await
            .map_err(|_| SwarmError::Shutdown)?;
        rx.await.map_err(|_| SwarmError::Shutdown)?
    }
}

/// A room's log task, before it runs.
pub(crate) struct LogTask {
    rx: mpsc::Receiver<Cmd>,
}

/// A handle and the task it talks to.
pub(crate) fn log_task() -> (LogHandle, LogTask) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (LogHandle { tx }, LogTask { rx })
}

impl LogTask {
    /// Runs until the room stops.
    pub(crate) async fn run(mut self, room: Arc<Room>, store: Store, net: Net) {
        // Entries waiting for their parents, with when they arrived.
        let mut pending: Vec<(Instant, Verified)> = Vec::new();
        loop {
            let cmd = tokio::select! {
                _ = room.cancel.cancelled() => break,
                cmd = self.rx.recv() => match cmd {
                    Some(c) => c,
                    None => break,
                },
            };
            match cmd {
                Cmd::Author { ops, reply } => {
                    let (s, n, secret) = (store.clone(), net.clone(), room.secret.clone());
                    let written =
                        crate::off_thread(move || log::author_all(&s, n.key(), &secret, ops)).await;
                    let result = match written {
                        Ok(Ok(entries)) => {
                            room.broadcast(&entries, None);
                            super::epochs::after_entries(&room, &store, &net, &entries).await;
                            Ok(entries.iter().map(|e| e.hash).collect())
                        }
                        Ok(Err(e)) => Err(e.into()),
                        Err(e) => Err(e.into()),
                    };
                    let _ = reply.send(result);
                }
                Cmd::Accept {
                    peer,
                    entries,
                    reply,
                } => {
                    let result = accept(&room, &store, &net, &mut pending, peer, entries).await;
                    let _ = reply.send(result);
                }
            }
        }
    }
}

/// Accepts `entries` from `peer` with the pending ones; keeps those still
/// waiting for parents and pushes the new ones on.
async fn accept(
    room: &Arc<Room>,
    store: &Store,
    net: &Net,
    pending: &mut Vec<(Instant, Verified)>,
    peer: NodeId,
    entries: Vec<Verified>,
) -> Result<bool, SwarmError> {
    let mut since: HashMap<Hash, Instant> = HashMap::new();
    let mut batch = entries;
    for (t, v) in pending.drain(..) {
        since.insert(v.hash, t);
        batch.push(v);
    }
    let (s, rid) = (store.clone(), room.id);
    let accepted = crate::blocking(move || log::accept(&s, &rid, batch)).await?;
    for (hash, why) in &accepted.rejected {
        tracing::warn!(room = %room.id.fmt_short(), %peer, %hash, "refused a room entry: {why}");
    }
    let waiting = !accepted.pending.is_empty();
    for v in accepted.pending {
        let t = since.get(&v.hash).copied().unwrap_or_else(Instant::now);
        pending.push((t, v));
    }
    trim_pending(pending);
    if !accepted.new.is_empty() {
        let authors = accepted.new.iter().map(|e| e.body.author).collect();
        room.overlay.send(overlay::Cmd::Authors(authors)).await;
        room.broadcast(&accepted.new, Some(peer));
        super::epochs::after_entries(room, store, net, &accepted.new).await;
    }
    if accepted.cut_applied {
        // A removal cut entries the views had taken in: the tree again,
        // without them.
        let (store, rid) = (store.clone(), room.id);
        match crate::blocking(move || log::rebuild_after_cut(&store, &rid)).await {
            Ok(()) => room.tree_rebuilt(),
            Err(e) => {
                tracing::warn!(room = %room.id.fmt_short(), "rebuilding the tree after a removal: {e}")
            }
        }
    }
    Ok(waiting)
}

/// Keeps the number of pending entries bounded and drops stale ones.
fn trim_pending(pending: &mut Vec<(Instant, Verified)>) {
    pending.retain(|(t, _)| t.elapsed() < PENDING_TTL);
    if pending.len() > MAX_PENDING {
        let extra = pending.len() - MAX_PENDING;
        pending.drain(..extra);
    }
}
