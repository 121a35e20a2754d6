//! Reading a room's files: fetching them from the members that hold
//! them, and following the log's changes.

use std::{collections::HashSet, time::Duration};

use p2pfs_proto::{Hash, NodeId};
use tokio::sync::watch;

use super::{FileEntry, FileKind, Room, pin_name, query, sync, sync::Out};
use crate::{Node, SwarmError, Target, blocking};

impl Node {
    /// Makes the file `path` of `room` complete in the store, fetching it
    /// from the members that have it. Returns its hash.
    pub async fn room_fetch(&self, room: &Room, path: &str) -> Result<Hash, SwarmError> {
        let (store, id, p) = (self.store().clone(), room.id, path.to_string());
        let file = blocking(move || query::file(&store, &id, &p)).await?;
        let Some(FileEntry {
            kind: FileKind::File { hash, author, .. },
            ..
        }) = file
        else {
            return Err(crate::error::RoomError::NoSuchFile(path.to_string()).into());
        };
        let (store, pin) = (self.store().clone(), pin_name(&room.id));
        let complete = blocking(move || {
            store.pin(&hash, &pin)?;
            Ok(store
                .info(&hash)?
                .is_some_and(|i| i.state == p2pfs_store::BlobState::Complete))
        })
        .await?;
        if complete {
            return Ok(hash);
        }
        let targets = self.room_providers(room, author, hash)?;
        crate::transfer::download::run(&self.inner.blobs, hash, targets, None, None, None).await?;
        Ok(hash)
    }

    /// Fetches the chunk groups of `hash` covering the bytes `want` from
    /// the members of `room` (`author` first), into the store, in order.
    /// With `limit`, for a reader the fetch follows: never past the byte
    /// it holds, which the reader raises as it reads; the fetch then also
    /// ends, keeping what arrived, when the reader drops its sender.
    pub async fn room_fetch_range(
        &self,
        room: &Room,
        hash: Hash,
        author: NodeId,
        want: std::ops::Range<u64>,
        limit: Option<tokio::sync::watch::Receiver<u64>>,
    ) -> Result<(), SwarmError> {
        let targets = self.room_providers(room, author, hash)?;
        crate::transfer::download::run(&self.inner.blobs, hash, targets, Some(want), limit, None)
            .await?;
        Ok(())
    }

    /// Where to fetch a room file from: its author first, then the
    /// members online, then the others with a known address.
    fn room_providers(
        &self,
        room: &Room,
        author: NodeId,
        hash: Hash,
    ) -> Result<Vec<Target>, SwarmError> {
        let mut order = vec![author];
        order.extend(room.online());
        order.extend(room.overlay.snapshot().nodes.keys().copied());
        self.room_targets(room, &order, hash)
    }

    /// The members `ids` as download targets, in that order (those with a
    /// known address or online).
    pub(crate) fn room_targets(
        &self,
        room: &Room,
        ids: &[NodeId],
        hash: Hash,
    ) -> Result<Vec<Target>, SwarmError> {
        let online = room.online();
        let known = room.overlay.snapshot().nodes;
        let mut seen = HashSet::new();
        let targets: Vec<Target> = ids
            .iter()
            .filter(|id| **id != self.id() && seen.insert(**id))
            .filter_map(|id| {
                let addrs = known.get(id).cloned().unwrap_or_default();
                (!addrs.is_empty() || online.contains(id)).then_some(Target {
                    id: Some(*id),
                    addrs,
                })
            })
            .collect();
        if targets.is_empty() {
            return Err(SwarmError::Unavailable {
                hash,
                reason: "no member that holds it is known to be reachable".into(),
            });
        }
        Ok(targets)
    }

    /// Waits until every member online has the entries written so far
    /// (or `timeout`). Returns how many members confirmed.
    pub async fn room_flush(&self, room: &Room, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        let handles: Vec<sync::Handle> =
            room.overlay.snapshot().sessions.values().cloned().collect();
        let mut waits = Vec::new();
        for h in handles {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if h.tx.send(Out::Have(Some(tx))).await.is_ok() {
                waits.push(rx);
            }
        }
        // Each member counts if it confirms before the one deadline.
        let mut confirmed = 0;
        for w in waits {
            if let Ok(Ok(())) = tokio::time::timeout_at(deadline, w).await {
                confirmed += 1;
            }
        }
        confirmed
    }

    /// Waits until a first member is connected and reconciled (or
    /// `timeout`); false if none was.
    pub async fn room_wait_synced(&self, room: &Room, timeout: Duration) -> bool {
        let mut rx = room.synced.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|n| *n > 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The paths of `room`'s tree changed since the log's change counter
    /// (see [`Node::room_changes`]) was `since`; `None` if that is too
    /// long ago to tell (reload the whole view then).
    pub fn room_touched_since(&self, room: &Room, since: u64) -> Option<Vec<String>> {
        let touched = crate::lock(&room.touched);
        if since < touched.dropped {
            return None;
        }
        Some(
            touched
                .paths
                .iter()
                .filter(|(v, _)| *v > since)
                .map(|(_, p)| p.clone())
                .collect(),
        )
    }

    /// A receiver that changes whenever `room`'s log grows.
    pub fn room_changes(&self, room: &Room) -> watch::Receiver<u64> {
        room.changed.subscribe()
    }
}
