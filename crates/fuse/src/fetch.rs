//! Reading files other members published: only the chunk groups a read
//! touches are fetched, verified, into the store. A read that finds its
//! bytes missing fetches them in [`DEMAND`]-sized windows (small, so the
//! first byte comes soon); sequential reads also fetch up to [`MAX_AHEAD`]
//! bytes ahead in [`WINDOW`]-sized windows, doubling as the pattern holds
//! (adaptive read-ahead), and later reads wait on those. A window in flight
//! is shared by every reader that needs it. Reads wait on tokio tasks,
//! never on the kernel's thread.
//!
//! A read waits at most [`READ_TIMEOUT`] from the moment it arrives, then
//! fails with `EIO`; a signal to the reading process ends it at once with
//! `EINTR`. A read returns as soon as its own bytes are here, whatever
//! else its window still fetches. A blob that no member could serve (a
//! fetch failed) is remembered: later reads of its missing bytes fail at
//! once (each starting a fetch in the background, not waited for) until
//! one of those fetches succeeds or a member connects to the room.

use std::{collections::HashMap, sync::Arc, time::Duration};

use fuser::Errno;
use p2pfs_proto::{Hash, RoomId};
use p2pfs_swarm::store::StoreError;
use tokio::sync::watch;

use crate::{
    fs::{Fs, lock, store_errno},
    tree::FileInfo,
};

/// Bytes fetched per read-ahead window (512 chunk groups).
pub(crate) const WINDOW: u64 = 8 << 20;
/// Bytes fetched per window for a read that waits (64 chunk groups).
pub(crate) const DEMAND: u64 = 1 << 20;
/// The most a sequential reader fetches ahead of what it reads.
pub(crate) const MAX_AHEAD: u64 = 32 << 20;
/// A read waits this long for its data, then fails with EIO.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a waiting read looks whether its bytes have arrived before
/// the window holding them has all arrived (it wakes at once when that
/// window ends).
const ARRIVAL_POLL: Duration = Duration::from_millis(5);
/// Reads this close to where the last one ended count as sequential (the
/// kernel's read-ahead sends several at once, not always in order).
const SEQUENTIAL_SLACK: u64 = 4 << 20;

/// A window: the blob, the window size, its number.
type WindowKey = (Hash, u64, u64);

/// Windows in flight: `Some(true)` once fetched, `Some(false)` if the
/// fetch failed.
#[derive(Debug, Default)]
pub(crate) struct Fetches {
    windows: std::sync::Mutex<HashMap<WindowKey, watch::Receiver<Option<bool>>>>,
    /// Blobs no member could serve a read of, with the room's
    /// [`Room::arrivals`](p2pfs_swarm::room::Room::arrivals) then.
    unavailable: std::sync::Mutex<HashMap<Hash, u64>>,
}

/// A reader's access pattern, for read-ahead.
#[derive(Debug, Default)]
pub(crate) struct Pattern {
    next: u64,
    ahead: u64,
    /// Windows up to here were started by this reader already.
    started_to: u64,
}

impl Pattern {
    /// Records a read; returns how far ahead of it to fetch.
    pub(crate) fn read(&mut self, offset: u64, len: u64) -> u64 {
        let sequential = offset == 0 || offset.abs_diff(self.next) <= SEQUENTIAL_SLACK;
        self.ahead = if sequential {
            (self.ahead * 2).clamp(WINDOW, MAX_AHEAD)
        } else {
            0
        };
        self.next = self.next.max(offset + len);
        if !sequential {
            self.next = offset + len;
            self.started_to = 0;
        }
        self.ahead
    }

    /// The windows not yet started for bytes up to `end`; marks them.
    fn claim(&mut self, from: u64, end: u64) -> std::ops::Range<u64> {
        let first = (from / WINDOW).max(self.started_to);
        let last = end.div_ceil(WINDOW);
        self.started_to = self.started_to.max(last);
        first..last.max(first)
    }
}

impl Fs {
    /// The window of `size` bytes number `w` of `file`, if in flight.
    fn in_flight(
        &self,
        file: &FileInfo,
        size: u64,
        w: u64,
    ) -> Option<watch::Receiver<Option<bool>>> {
        lock(&self.fetches.windows)
            .get(&(file.hash, size, w))
            .cloned()
    }

    /// Starts fetching the window of `size` bytes number `w` of `file`
    /// (from byte `from` on, if that is inside it) unless it is in flight.
    fn window(
        self: &Arc<Self>,
        room: RoomId,
        file: &FileInfo,
        size: u64,
        w: u64,
        from: u64,
    ) -> watch::Receiver<Option<bool>> {
        let key = (file.hash, size, w);
        let mut windows = lock(&self.fetches.windows);
        if let Some(rx) = windows.get(&key) {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(None);
        windows.insert(key, rx.clone());
        drop(windows);
        let (fs, hash, author) = (self.clone(), file.hash, file.author);
        let range = (w * size).max(from)..(w + 1) * size;
        self.rt.spawn(async move {
            let ok = match fs.room(&room) {
                Ok(r) => {
                    let arrivals = r.arrivals();
                    match fs.node.room_fetch_range(&r, hash, author, range).await {
                        Ok(()) => {
                            lock(&fs.fetches.unavailable).remove(&hash);
                            true
                        }
                        Err(e) => {
                            // No member could serve it (a member that came
                            // meanwhile may: then the mark is stale).
                            tracing::warn!(%hash, window = w, "fetching for a read: {e}");
                            lock(&fs.fetches.unavailable).insert(hash, arrivals);
                            false
                        }
                    }
                }
                Err(_) => false,
            };
            lock(&fs.fetches.windows).remove(&key);
            let _ = tx.send(Some(ok));
        });
        rx
    }

    /// Starts the windows ahead of a sequential reader (not waiting).
    pub(crate) fn prefetch(
        self: &Arc<Self>,
        room: RoomId,
        file: &FileInfo,
        pattern: &mut Pattern,
        from: u64,
        ahead: u64,
    ) {
        if ahead == 0 || from >= file.size {
            return;
        }
        let end = from.saturating_add(ahead).min(file.size);
        for w in pattern.claim(from, end) {
            self.window(room, file, WINDOW, w, from);
        }
    }

    /// Reads `len` bytes at `offset` of a file whose bytes are not all
    /// here, for process `pid`: fetches the windows that hold them (and
    /// `ahead` more bytes), waits for them, then reads from the store.
    pub(crate) async fn read_remote(
        self: Arc<Self>,
        room: RoomId,
        file: FileInfo,
        offset: u64,
        len: u32,
        pid: u32,
    ) -> Result<Vec<u8>, Errno> {
        let end = offset.saturating_add(u64::from(len)).min(file.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
        let arrivals = self.room(&room)?.arrivals();
        let known_unavailable = {
            let mut u = lock(&self.fetches.unavailable);
            match u.get(&file.hash) {
                Some(a) if *a == arrivals => true,
                Some(_) => {
                    u.remove(&file.hash);
                    false
                }
                None => false,
            }
        };
        let store = self.node.store();
        let mut buf = vec![0u8; (end - offset) as usize];
        let signalled = crate::interrupt::signalled(pid);
        tokio::pin!(signalled);
        let mut attempts = 0;
        loop {
            // A read-ahead window in flight, else a small one of our own.
            let mut waits: Vec<_> = (offset / DEMAND..end.div_ceil(DEMAND))
                .map(|d| {
                    self.in_flight(&file, WINDOW, d * DEMAND / WINDOW)
                        .unwrap_or_else(|| self.window(room, &file, DEMAND, d, 0))
                })
                .collect();
            if known_unavailable {
                // The fetches just started find out whether a member is back.
                return Err(Errno::EIO);
            }
            // The read's own bytes may arrive before the rest of a window:
            // it returns as soon as they are verified here.
            loop {
                match store.read_at(&file.hash, offset, &mut buf) {
                    Ok(n) => {
                        buf.truncate(n);
                        return Ok(buf);
                    }
                    Err(StoreError::NotPresent { .. } | StoreError::NotFound(_)) => {}
                    Err(e) => return Err(store_errno(&e)),
                }
                let Some(unfinished) = waits.iter_mut().find(|rx| rx.borrow().is_none()) else {
                    break;
                };
                tokio::select! {
                    // A window that ends wakes the read at once (a small
                    // file is one window: its read returns when it lands).
                    r = unfinished.changed() => {
                        if r.is_err() {
                            // Its task ended without a word: done with it.
                            break;
                        }
                    }
                    () = tokio::time::sleep(ARRIVAL_POLL) => {}
                    () = tokio::time::sleep_until(deadline) => {
                        tracing::warn!(hash = %file.hash, offset, "no member sent the bytes in time");
                        return Err(Errno::EIO);
                    }
                    () = &mut signalled => return Err(Errno::EINTR),
                }
            }
            // Every window ended and the bytes are not all here (one
            // failed, or raced with a commit): one more try, then the read
            // fails.
            if attempts > 0 {
                return Err(Errno::EIO);
            }
            attempts += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ahead_grows_on_sequential_reads_and_stops_on_random_ones() {
        let mut p = Pattern::default();
        assert_eq!(p.read(0, 1 << 20), WINDOW);
        assert_eq!(p.read(1 << 20, 1 << 20), 2 * WINDOW);
        assert_eq!(p.read(2 << 20, 1 << 20), 4 * WINDOW);
        assert_eq!(p.read(3 << 20, 1 << 20), MAX_AHEAD);
        assert_eq!(p.read(900 << 20, 1 << 20), 0);
        assert_eq!(p.read(901 << 20, 1 << 20), WINDOW);
        // Windows are claimed once.
        let mut p = Pattern::default();
        assert_eq!(p.claim(0, WINDOW * 3), 0..3);
        assert_eq!(p.claim(WINDOW, WINDOW * 4), 3..4);
        assert_eq!(p.claim(WINDOW, WINDOW * 4), 4..4);
    }
}
