//! Copying a blob out as it arrives: `p2pfs fetch` writes its output while
//! the download runs, instead of copying the whole blob once it is done.
//!
//! A follower copies the bytes present from the start of the blob, then
//! waits for the download to extend them (a download fetches roughly in
//! order).
//!
//! Once a reader (a follower, or a read of the mount) reads a blob being
//! downloaded, the download keeps the windows it verified and wrote at or
//! past the reader's position in a [`Tap`] (up to [`TAP_MAX`] bytes), and
//! the reader copies those from memory: the bytes are read from the
//! network once and never read back from the disk. What the tap
//! did not keep (the follower fell behind) is read from the disk straight
//! into one aligned buffer (`O_DIRECT`), as the download's writes are made:
//! the blob's bytes pass through the page cache once, in the destination,
//! not twice.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{self, Write},
    os::unix::fs::FileExt,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;

use crate::{
    PartialBlob, Store, direct,
    error::{IoContext, StoreError},
    lock,
    partial::{PartialShared, State},
};

/// The most bytes a tap keeps for its follower.
pub(crate) const TAP_MAX: usize = 32 << 20;

/// The most bytes all the taps of a store keep at once (many files read
/// while they download share it).
pub(crate) const TAPS_MAX: usize = 64 << 20;

/// The bytes all the taps of one store keep.
#[derive(Debug, Default)]
pub(crate) struct TapBudget(AtomicUsize);

/// Verified windows of a blob kept for the reader following its download:
/// those it has not read yet, at most [`TAP_MAX`] bytes from where it reads
/// and what the store's [`TapBudget`] has left.
#[derive(Debug)]
pub(crate) struct Tap {
    /// Where the follower reads.
    at: u64,
    /// Windows by offset.
    windows: BTreeMap<u64, Bytes>,
    bytes: usize,
    budget: Arc<TapBudget>,
}

impl Tap {
    pub(crate) fn new(budget: Arc<TapBudget>) -> Self {
        Self {
            at: 0,
            windows: BTreeMap::new(),
            bytes: 0,
            budget,
        }
    }

    /// Keeps `data`, written at `offset`, if the follower has yet to read
    /// it and there is room.
    pub(crate) fn offer(&mut self, offset: u64, data: &Bytes) {
        let (end, len) = (offset + data.len() as u64, data.len());
        if end <= self.at || offset >= self.at + TAP_MAX as u64 || self.bytes + len > TAP_MAX {
            return;
        }
        if self.budget.0.fetch_add(len, Ordering::AcqRel) + len > TAPS_MAX {
            self.budget.0.fetch_sub(len, Ordering::AcqRel);
            return;
        }
        if let Some(old) = self.windows.insert(offset, data.clone()) {
            self.release(old.len());
        }
        self.bytes += len;
    }

    fn release(&mut self, len: usize) {
        self.bytes -= len;
        self.budget.0.fetch_sub(len, Ordering::AcqRel);
    }

    /// The bytes from `at` on, up to `end` and as far as one kept window
    /// holds them; forgets the windows that end before `at`.
    pub(crate) fn take(&mut self, at: u64, end: u64) -> Option<Bytes> {
        self.at = at;
        while let Some(e) = self.windows.first_entry() {
            if *e.key() + e.get().len() as u64 > at {
                break;
            }
            let len = e.remove().len();
            self.release(len);
        }
        let (&offset, w) = self.windows.range(..=at).next_back()?;
        let from = (at - offset) as usize;
        let to = (end.min(offset + w.len() as u64) - offset) as usize;
        (to > from).then(|| w.slice(from..to))
    }

    /// The bytes from `at` on, up to `end`, as far as kept windows hold
    /// them without a gap.
    pub(crate) fn take_all(&mut self, mut at: u64, end: u64) -> Vec<Bytes> {
        let mut out = Vec::new();
        while at < end
            && let Some(w) = self.take(at, end)
        {
            at += w.len() as u64;
            out.push(w);
        }
        out
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.budget.0.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl PartialShared {
    /// The download's tap, started if a reader had not yet: it keeps
    /// verified windows from now on until the download ends.
    pub(crate) fn tap<'a>(&self, st: &'a mut State) -> &'a mut Tap {
        st.tap
            .get_or_insert_with(|| Tap::new(self.store.inner.taps.clone()))
    }
}

impl PartialBlob {
    /// What the tap holds from `at` on, up to `end`, in one window.
    fn tapped(&self, at: u64, end: u64) -> Option<Bytes> {
        let mut st = lock(&self.shared.state);
        self.shared.tap(&mut st).take(at, end)
    }
}

/// Bytes read from the disk at a time.
const STEP: usize = 1 << 20;

/// How long one wait for more bytes lasts before `stop` is asked again.
const WAIT: Duration = Duration::from_millis(100);

impl Store {
    /// Copies the blob `partial` is downloading to `out` as its bytes
    /// arrive, until all are written or `stop` says the download ended
    /// without them (then the error says how far it got).
    pub fn follow(
        &self,
        partial: &PartialBlob,
        out: &mut impl Write,
        stop: impl Fn() -> bool,
    ) -> Result<u64, StoreError> {
        let hash = partial.hash();
        let stopped = |at: u64| StoreError::NotPresent {
            hash,
            start: at,
            end: partial.size().unwrap_or(at),
        };
        // The size is proven first.
        let size = loop {
            if let Some(s) = partial.size() {
                break s;
            }
            if stop() {
                return Err(stopped(0));
            }
            partial.wait_prefix(0, WAIT);
        };
        if size <= self.inner.opts.inline_max {
            // Held in memory until complete, then in the database.
            while !partial.is_complete() {
                if stop() {
                    return Err(stopped(0));
                }
                partial.wait_prefix(size, WAIT);
            }
            return self
                .reader(&hash)?
                .copy_to(out)
                .ctx(|| format!("writing blob {hash}"));
        }
        partial.shared.tap(&mut lock(&partial.shared.state));
        let path = self.data_path(&hash);
        let mut file = Direct::open(&path).ctx(|| format!("opening {}", path.display()))?;
        let mut backing = Vec::new();
        let base = direct::aligned(&mut backing, STEP);
        let buf = &mut backing[base..base + STEP];
        let mut at = 0u64;
        while at < size {
            let present = partial.present_prefix().unwrap_or(0);
            if present <= at {
                if stop() && partial.present_prefix().unwrap_or(0) <= at {
                    return Err(stopped(at));
                }
                partial.wait_prefix(at, WAIT);
                continue;
            }
            if let Some(w) = partial.tapped(at, present) {
                out.write_all(&w).map_err(|source| StoreError::Io {
                    context: format!("writing blob {hash}"),
                    source,
                })?;
                at += w.len() as u64;
                continue;
            }
            let want = ((present - at) as usize).min(STEP);
            let n = file
                .read_at(buf, want, at)
                .ctx(|| format!("reading blob {hash}"))?;
            if n == 0 {
                return Err(StoreError::Corrupt(format!(
                    "{hash}: its data file ends at byte {at} of {size}"
                )));
            }
            out.write_all(&buf[..n]).map_err(|source| StoreError::Io {
                context: format!("writing blob {hash}"),
                source,
            })?;
            at += n as u64;
        }
        Ok(size)
    }
}

/// A data file read directly where the file system allows it.
struct Direct {
    file: File,
    direct: bool,
}

impl Direct {
    fn open(path: &std::path::Path) -> io::Result<Self> {
        match direct::open(path, false) {
            Ok(file) => Ok(Self { file, direct: true }),
            Err(_) => Ok(Self {
                file: File::open(path)?,
                direct: false,
            }),
        }
    }

    /// Reads up to `want` bytes at `offset` (an aligned offset: the present
    /// prefix ends on a chunk group, or at the end of the blob) into `buf`,
    /// an aligned buffer.
    fn read_at(&mut self, buf: &mut [u8], want: usize, offset: u64) -> io::Result<usize> {
        if self.direct {
            // A direct read takes whole blocks; at the end of the file it
            // returns what there is.
            let len = want.next_multiple_of(direct::ALIGN).min(buf.len());
            match self.file.read_at(&mut buf[..len], offset) {
                Ok(n) => return Ok(n.min(want)),
                Err(e) if direct::refused(&e) => {
                    self.direct = false;
                }
                Err(e) => return Err(e),
            }
        }
        self.file.read_at(&mut buf[..want], offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(offset: u64, len: usize) -> (u64, Bytes) {
        let data: Vec<u8> = (0..len).map(|i| (offset as usize + i) as u8).collect();
        (offset, Bytes::from(data))
    }

    #[test]
    fn a_tap_hands_out_what_the_follower_has_yet_to_read() {
        let mut tap = Tap::new(Default::default());
        let (o1, w1) = window(0, 1000);
        let (o2, w2) = window(1000, 500);
        tap.offer(o2, &w2);
        assert_eq!(tap.take(0, 2000), None, "the first window is not here yet");
        tap.offer(o1, &w1);
        assert_eq!(
            tap.take(0, 600).as_deref(),
            Some(&w1[..600]),
            "only up to `end`"
        );
        assert_eq!(tap.take(600, 2000).as_deref(), Some(&w1[600..]));
        assert_eq!(tap.take(1000, 2000).as_deref(), Some(&w2[..]));
        assert_eq!(tap.windows.len(), 1, "the window read through is forgotten");
        assert_eq!(tap.take(1500, 2000), None);
        assert_eq!((tap.windows.len(), tap.bytes), (0, 0));
        // Behind the follower: not kept.
        tap.offer(o1, &w1);
        assert_eq!(tap.bytes, 0);
    }

    #[test]
    fn a_tap_keeps_at_most_its_bound() {
        let mut tap = Tap::new(Default::default());
        let mb = 1 << 20;
        for i in 0..(TAP_MAX / mb + 8) as u64 {
            let (o, w) = window(i * mb as u64, mb);
            tap.offer(o, &w);
        }
        assert_eq!(tap.bytes, TAP_MAX);
        // Too far ahead of the follower, even with room.
        tap.take(0, 1);
        let (o, w) = window(TAP_MAX as u64 + (64 << 20), 10);
        let mut tap = Tap::new(Default::default());
        tap.take(0, 1);
        tap.offer(o, &w);
        assert_eq!(tap.bytes, 0);
    }

    #[test]
    fn the_taps_of_a_store_share_one_bound() {
        let budget = Arc::new(TapBudget::default());
        let mb = 1 << 20;
        let mut taps: Vec<Tap> = (0..3).map(|_| Tap::new(budget.clone())).collect();
        for tap in &mut taps {
            for i in 0..(TAP_MAX / mb) as u64 {
                let (o, w) = window(i * mb as u64, mb);
                tap.offer(o, &w);
            }
        }
        let kept: Vec<usize> = taps.iter().map(|t| t.bytes).collect();
        assert_eq!(kept, vec![TAP_MAX, TAPS_MAX - TAP_MAX, 0]);
        assert_eq!(budget.0.load(Ordering::Acquire), TAPS_MAX);
        // Read through, or dropped with its download: the room comes back.
        taps[0].take(TAP_MAX as u64, u64::MAX);
        drop(taps.remove(1));
        assert_eq!(budget.0.load(Ordering::Acquire), 0);
        let (o, w) = window(0, mb);
        taps[1].offer(o, &w);
        assert_eq!(taps[1].bytes, mb);
    }
}
