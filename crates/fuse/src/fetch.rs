//! Reading files other members published: only the chunk groups a read
//! touches are fetched, verified, into the store. A random read that finds
//! its bytes missing fetches them in [`DEMAND`]-sized windows (small, so
//! the first byte comes soon); a window in flight is shared by every
//! reader that needs it. A sequential reader is followed by one download
//! of the rest of the file, from where it reads on, which stays at most
//! [`WINDOW`] bytes ahead of it at first, doubling as the pattern holds up
//! to [`MAX_AHEAD`] (adaptive read-ahead): a whole file read in order is
//! one download, as `p2pfs fetch` makes it, not a download per window.
//! The download ends when the reader closes the file or reads elsewhere.
//! Reads wait on tokio tasks, never on the kernel's thread.
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

/// How far a new sequential reader's download runs ahead of it.
pub(crate) const WINDOW: u64 = 8 << 20;
/// Bytes fetched per window for a read that waits (64 chunk groups).
pub(crate) const DEMAND: u64 = 1 << 20;
/// The most a sequential reader fetches ahead of what it reads.
pub(crate) const MAX_AHEAD: u64 = 64 << 20;
/// A read waits this long for its data, then fails with EIO.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a waiting read looks whether its bytes have arrived before
/// the window holding them has all arrived (it wakes at once when that
/// window ends).
const ARRIVAL_POLL: Duration = Duration::from_millis(5);
/// Reads this close to where the last one ended count as sequential (the
/// kernel's read-ahead sends several at once, not always in order).
const SEQUENTIAL_SLACK: u64 = 4 << 20;

/// A window: the blob, its number.
type WindowKey = (Hash, u64);

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
    /// The download following this reader, if it reads in order.
    follow: Option<Follow>,
}

/// A download that follows a sequential reader.
#[derive(Debug)]
struct Follow {
    /// It fetches the file from here on.
    from: u64,
    /// How far it may go; dropping this ends it.
    limit: watch::Sender<u64>,
    /// `Some(true)` once it has ended well, `Some(false)` if it failed.
    state: watch::Receiver<Option<bool>>,
}

impl Follow {
    /// Whether it fetches the bytes at `offset` (and has not failed).
    fn covers(&self, offset: u64) -> bool {
        self.from <= offset && *self.state.borrow() != Some(false)
    }
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
        }
        self.ahead
    }

    /// What a read at `offset` whose bytes are missing waits on: the
    /// download following this reader, if it fetches them.
    pub(crate) fn follower(&self, offset: u64) -> Option<watch::Receiver<Option<bool>>> {
        self.follow
            .as_ref()
            .filter(|f| f.covers(offset) && offset < *f.limit.borrow())
            .map(|f| f.state.clone())
    }
}

impl Fs {
    /// Starts fetching the [`DEMAND`]-sized window number `w` of `file`
    /// unless it is in flight; what tells when it has ended.
    fn window(
        self: &Arc<Self>,
        room: RoomId,
        file: &FileInfo,
        w: u64,
    ) -> watch::Receiver<Option<bool>> {
        let key = (file.hash, w);
        let mut windows = lock(&self.fetches.windows);
        if let Some(rx) = windows.get(&key) {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(None);
        windows.insert(key, rx.clone());
        drop(windows);
        self.fetch_for_reads(
            room,
            file,
            w * DEMAND..(w + 1) * DEMAND,
            None,
            tx,
            move |fs| {
                lock(&fs.fetches.windows).remove(&key);
            },
        );
        rx
    }

    /// Keeps a sequential reader's download going up to `ahead` bytes past
    /// `from`, where it reads now: raises its limit, or starts one from
    /// there (a reader that moved, or one whose download failed). A random
    /// read (`ahead` 0) leaves the download as it is.
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
        match &pattern.follow {
            Some(f) if f.covers(from) => {
                f.limit.send_if_modified(|l| {
                    let raised = end > *l;
                    *l = (*l).max(end);
                    raised
                });
            }
            _ => pattern.follow = Some(self.follow(room, file, from, end)),
        }
    }

    /// Starts a download of `file` from byte `from` on, allowed up to
    /// `end` for now.
    fn follow(self: &Arc<Self>, room: RoomId, file: &FileInfo, from: u64, end: u64) -> Follow {
        let g = p2pfs_proto::chunk::CHUNK_GROUP_SIZE;
        let from = from / g * g;
        let (limit, limit_rx) = watch::channel(end);
        let (tx, state) = watch::channel(None);
        self.fetch_for_reads(room, file, from..file.size, Some(limit_rx), tx, |_| {});
        Follow { from, limit, state }
    }

    /// Fetches the bytes `range` of `file` for reads on a task (see
    /// [`Node::room_fetch_range`](p2pfs_swarm::Node::room_fetch_range) for
    /// `limit`), then runs `ended` and tells `tx` whether it went well. A
    /// blob no member could serve is marked so (a member that comes
    /// meanwhile makes the mark stale); one that was served is unmarked.
    fn fetch_for_reads(
        self: &Arc<Self>,
        room: RoomId,
        file: &FileInfo,
        range: std::ops::Range<u64>,
        limit: Option<watch::Receiver<u64>>,
        tx: watch::Sender<Option<bool>>,
        ended: impl FnOnce(&Fs) + Send + 'static,
    ) {
        let (fs, hash, author) = (self.clone(), file.hash, file.author);
        self.rt.spawn(async move {
            let ok = match fs.room(&room) {
                Ok(r) => {
                    let arrivals = r.arrivals();
                    let start = range.start;
                    match fs
                        .node
                        .room_fetch_range(&r, hash, author, range, limit)
                        .await
                    {
                        Ok(()) => {
                            lock(&fs.fetches.unavailable).remove(&hash);
                            true
                        }
                        Err(e) => {
                            tracing::warn!(%hash, from = start, "fetching for reads: {e}");
                            lock(&fs.fetches.unavailable).insert(hash, arrivals);
                            false
                        }
                    }
                }
                Err(_) => false,
            };
            ended(&fs);
            let _ = tx.send(Some(ok));
        });
    }

    /// Reads `len` bytes at `offset` of a file whose bytes are not all
    /// here, for process `pid`: waits for the reader's download
    /// (`follower`) if it fetches them, else fetches the windows that hold
    /// them; then reads from the store.
    pub(crate) async fn read_remote(
        self: Arc<Self>,
        room: RoomId,
        file: FileInfo,
        offset: u64,
        len: u32,
        pid: u32,
        follower: Option<watch::Receiver<Option<bool>>>,
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
        let mut follower = follower.filter(|f| f.borrow().is_none());
        loop {
            // The reader's download, else small windows of our own (or in
            // flight for another read).
            let mut waits: Vec<_> = match follower.take() {
                Some(f) => vec![f],
                None => (offset / DEMAND..end.div_ceil(DEMAND))
                    .map(|d| self.window(room, &file, d))
                    .collect(),
            };
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
            // failed, or raced with a commit, or the reader's download
            // ended first): one more try, then the read fails.
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
        assert_eq!(p.read(3 << 20, 1 << 20), 8 * WINDOW);
        assert_eq!(p.read(4 << 20, 1 << 20), MAX_AHEAD);
        assert_eq!(p.read(900 << 20, 1 << 20), 0);
        assert_eq!(p.read(901 << 20, 1 << 20), WINDOW);
    }

    #[test]
    fn a_follower_covers_reads_from_where_it_started_until_it_fails() {
        let (limit, _) = watch::channel(200 << 20);
        let (tx, state) = watch::channel(None);
        let p = Pattern {
            follow: Some(Follow {
                from: 1 << 20,
                limit,
                state,
            }),
            ..Default::default()
        };
        assert!(p.follower(0).is_none());
        assert!(p.follower(1 << 20).is_some());
        assert!(p.follower(100 << 20).is_some());
        // Not past how far it may go.
        assert!(p.follower(200 << 20).is_none());
        tx.send_replace(Some(true));
        assert!(p.follower(2 << 20).is_some());
        tx.send_replace(Some(false));
        assert!(p.follower(2 << 20).is_none());
    }
}
