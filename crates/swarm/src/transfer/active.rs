//! The downloads running on a node, with where each stands: what the
//! status page shows as transfers. A download registers when it starts
//! and is gone when it ends, however it ends (the entry is a guard).

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use p2pfs_proto::Hash;
use serde::{Deserialize, Serialize};

use super::download::FetchProgress;

/// A download running now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    /// The blob.
    pub hash: Hash,
    /// Where it stands.
    pub progress: FetchProgress,
    /// How long it has run.
    pub running: Duration,
}

#[derive(Debug)]
struct Entry {
    hash: Hash,
    started: Instant,
    progress: FetchProgress,
}

/// The node's running downloads.
#[derive(Debug, Clone, Default)]
pub(crate) struct Active {
    next: Arc<AtomicU64>,
    running: Arc<Mutex<BTreeMap<u64, Entry>>>,
}

impl Active {
    /// Registers a download of `hash` until the guard is dropped.
    pub(crate) fn start(&self, hash: Hash) -> Running {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        crate::lock(&self.running).insert(
            id,
            Entry {
                hash,
                started: Instant::now(),
                progress: FetchProgress::default(),
            },
        );
        Running {
            id,
            active: self.clone(),
        }
    }

    /// The downloads running now, oldest first.
    pub(crate) fn list(&self) -> Vec<Transfer> {
        crate::lock(&self.running)
            .values()
            .map(|e| Transfer {
                hash: e.hash,
                progress: e.progress.clone(),
                running: e.started.elapsed(),
            })
            .collect()
    }
}

/// One registered download; dropping it ends the entry.
#[derive(Debug)]
pub(crate) struct Running {
    id: u64,
    active: Active,
}

impl Running {
    /// Records where the download stands.
    pub(crate) fn update(&self, progress: &FetchProgress) {
        if let Some(e) = crate::lock(&self.active.running).get_mut(&self.id) {
            e.progress = progress.clone();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        crate::lock(&self.active.running).remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_download_is_listed_until_its_guard_drops() {
        let active = Active::default();
        let h = Hash::of(b"x");
        let a = active.start(h);
        let b = active.start(h);
        a.update(&FetchProgress {
            size: Some(10),
            present: 4,
            peers: 2,
            rate: 1.0,
        });
        let list = active.list();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].progress.present, 4);
        assert_eq!(list[1].progress.present, 0);
        drop(a);
        assert_eq!(active.list().len(), 1);
        drop(b);
        assert!(active.list().is_empty());
    }
}
