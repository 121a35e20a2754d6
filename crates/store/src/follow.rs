//! Copying a blob out as it arrives: `p2pfs fetch` writes its output while
//! the download runs, instead of copying the whole blob once it is done.
//!
//! A follower copies the bytes present from the start of the blob, then
//! waits for the download to extend them (a download fetches roughly in
//! order). Reads go straight from the disk into one aligned buffer
//! (`O_DIRECT`), as the download's writes do: the blob's bytes pass
//! through the page cache once, in the destination, not twice.

use std::{
    fs::File,
    io::{self, Write},
    os::unix::fs::FileExt,
    time::Duration,
};

use crate::{
    PartialBlob, Store, direct,
    error::{IoContext, StoreError},
};

/// Bytes read at a time.
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
