//! Files being written through the mount.
//!
//! A [`Draft`] is a temporary file in `tmp/` that takes writes at any
//! offset, like a file on disk. Bytes that arrive in order (the common
//! case: `cp`, `rsync`, an editor's save) are hashed as they arrive, so at
//! [`Draft::commit`] the hash and outboard are ready and the file is
//! simply moved into `data/`. Writes out of order are caught up at commit
//! by reading the file back (from the page cache, in practice).
//!
//! Durability is the import's (see `import.rs`): the file is fsynced
//! before the rename, and a background thread syncs every
//! [`WRITEBACK_STEP`] bytes so that the final fsync has little left.
//! A draft that is dropped without commit removes its file; one left by a
//! crash is removed when the store next opens (`tmp/` is cleared).

use std::{
    fs::File,
    io,
    os::unix::fs::FileExt,
    sync::mpsc,
    thread::{self, JoinHandle},
};

use p2pfs_proto::Hash;
use tempfile::NamedTempFile;

use crate::{
    Imported, Store,
    error::{IoContext, StoreError},
    import::{Spool, Staged},
    tree::TreeHasher,
};

/// Bytes read back per step when hashing catches up at commit.
const CATCH_UP_BUF: usize = 1 << 20;
/// A background fsync is started every this many bytes written.
const WRITEBACK_STEP: u64 = 64 << 20;
/// Hash pairs are moved to the outboard spool in batches of this many bytes.
const PAIRS_BATCH: usize = 1 << 20;

/// A file being written; see the module docs.
pub struct Draft {
    store: Store,
    file: NamedTempFile,
    len: u64,
    /// Covers `[0, hasher.len())` of the file, which no write has changed
    /// since it was hashed.
    hasher: TreeHasher,
    pairs: Vec<u8>,
    outboard: Spool,
    written: u64,
    flusher: Option<Flusher>,
}

impl std::fmt::Debug for Draft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Draft")
            .field("len", &self.len)
            .field("hashed", &self.hasher.len())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// A new, empty draft.
    pub fn draft(&self) -> Result<Draft, StoreError> {
        let file = tempfile::Builder::new()
            .suffix(".draft")
            .tempfile_in(&self.inner.tmp_dir)
            .ctx(|| format!("creating a file in {}", self.inner.tmp_dir.display()))?;
        Ok(Draft {
            store: self.clone(),
            file,
            len: 0,
            hasher: TreeHasher::new(),
            pairs: Vec::new(),
            outboard: Spool::default(),
            written: 0,
            flusher: None,
        })
    }

    /// A draft holding a copy of the complete blob `hash` (to change it).
    pub fn draft_from(&self, hash: &Hash) -> Result<Draft, StoreError> {
        let mut draft = self.draft()?;
        let reader = self.reader(hash)?;
        let mut buf = vec![0u8; CATCH_UP_BUF];
        let mut offset = 0;
        loop {
            let n = reader
                .read_at(offset, &mut buf)
                .ctx(|| format!("reading blob {hash}"))?;
            if n == 0 {
                break;
            }
            draft.write_at(offset, &buf[..n])?;
            offset += n as u64;
        }
        Ok(draft)
    }
}

impl Draft {
    /// The file's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes `data` at `offset`, growing the file if needed (a gap reads
    /// as zeros).
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        self.file
            .as_file()
            .write_all_at(data, offset)
            .ctx(|| "writing a file in the store's tmp directory".into())?;
        let end = offset.saturating_add(data.len() as u64);
        self.len = self.len.max(end);
        let hashed = self.hasher.len();
        if offset == hashed {
            self.hash_more(data)?;
        } else if offset < hashed {
            // Hashed bytes changed: hash again from the start at commit.
            self.restart_hash();
        }
        self.written += data.len() as u64;
        if self.written >= WRITEBACK_STEP {
            self.written = 0;
            self.kick_writeback()?;
        }
        Ok(())
    }

    /// Reads at `offset`; returns 0 at or past the end.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        if offset >= self.len {
            return Ok(0);
        }
        let n = buf.len().min((self.len - offset) as usize);
        self.file
            .as_file()
            .read_exact_at(&mut buf[..n], offset)
            .ctx(|| "reading a file in the store's tmp directory".into())?;
        Ok(n)
    }

    /// Truncates or extends the file to `len` bytes.
    pub fn set_len(&mut self, len: u64) -> Result<(), StoreError> {
        self.file
            .as_file()
            .set_len(len)
            .ctx(|| "resizing a file in the store's tmp directory".into())?;
        if len < self.hasher.len() {
            self.restart_hash();
        }
        self.len = len;
        Ok(())
    }

    /// Makes the draft a blob of the store, pinned under `pin` if given.
    pub fn commit(mut self, pin: Option<&str>) -> Result<Imported, StoreError> {
        // Catch up on what was written out of order.
        let mut buf = vec![0u8; CATCH_UP_BUF];
        while self.hasher.len() < self.len {
            let at = self.hasher.len();
            let n = buf.len().min((self.len - at) as usize);
            self.file
                .as_file()
                .read_exact_at(&mut buf[..n], at)
                .ctx(|| "reading a file in the store's tmp directory".into())?;
            self.hash_more(&buf[..n])?;
        }
        let hasher = std::mem::replace(&mut self.hasher, TreeHasher::new());
        let hash = hasher.finalize(&mut self.pairs);
        let pairs = std::mem::take(&mut self.pairs);
        let mut outboard = std::mem::take(&mut self.outboard);
        outboard.append(&pairs, &self.store)?;
        if let Some(f) = self.flusher.take() {
            f.finish()?;
        }
        let staged = if self.len <= self.store.inner.opts.inline_max {
            let mut bytes = vec![0u8; self.len as usize];
            self.file
                .as_file()
                .read_exact_at(&mut bytes, 0)
                .ctx(|| "reading a file in the store's tmp directory".into())?;
            Staged::Mem(bytes)
        } else {
            self.file
                .as_file()
                .sync_data()
                .ctx(|| "syncing a file in the store's tmp directory".into())?;
            Staged::File {
                file: self.file,
                size: self.len,
            }
        };
        self.store.commit_import(hash, staged, outboard, pin)
    }

    fn hash_more(&mut self, data: &[u8]) -> Result<(), StoreError> {
        self.hasher.update(data, &mut self.pairs);
        if self.pairs.len() >= PAIRS_BATCH {
            self.outboard.append(&self.pairs, &self.store)?;
            self.pairs.clear();
        }
        Ok(())
    }

    fn restart_hash(&mut self) {
        self.hasher = TreeHasher::new();
        self.pairs.clear();
        self.outboard = Spool::default();
    }

    fn kick_writeback(&mut self) -> Result<(), StoreError> {
        if self.flusher.is_none() {
            let file = self
                .file
                .as_file()
                .try_clone()
                .ctx(|| "duplicating a file handle".into())?;
            self.flusher = Some(Flusher::start(file)?);
        }
        if let Some(f) = &self.flusher {
            f.kick();
        }
        Ok(())
    }
}

/// A thread that fsyncs a file when kicked, so writeback runs alongside the
/// writes.
struct Flusher {
    kick: mpsc::SyncSender<()>,
    thread: JoinHandle<io::Result<()>>,
}

impl Flusher {
    fn start(file: File) -> Result<Self, StoreError> {
        let (kick, kicks) = mpsc::sync_channel::<()>(1);
        let thread = thread::Builder::new()
            .name("p2pfs-flush".into())
            .spawn(move || {
                while kicks.recv().is_ok() {
                    file.sync_data()?;
                }
                Ok(())
            })
            .ctx(|| "starting a writeback thread".into())?;
        Ok(Self { kick, thread })
    }

    fn kick(&self) {
        // A full channel means a sync is queued already.
        let _ = self.kick.try_send(());
    }

    fn finish(self) -> Result<(), StoreError> {
        drop(self.kick);
        match self.thread.join() {
            Ok(r) => r.ctx(|| "syncing a file in the store's tmp directory".into()),
            Err(_) => Err(StoreError::Io {
                context: "syncing a file in the store's tmp directory".into(),
                source: io::Error::other("the writeback thread panicked"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 1000) as u8).collect()
    }

    #[test]
    fn in_order_out_of_order_and_rewritten_drafts_hash_like_b3sum() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for size in [0usize, 1, 16 * 1024, 16 * 1024 + 1, 300_000, 3 << 20] {
            let bytes = data(size);
            let want = Hash::from(blake3::hash(&bytes));
            // In order, in uneven pieces.
            let mut d = store.draft().unwrap();
            let mut at = 0;
            for piece in bytes.chunks(100_000 - 1) {
                d.write_at(at, piece).unwrap();
                at += piece.len() as u64;
            }
            assert_eq!(d.commit(None).unwrap().hash, want, "in order, {size}");
            // Back to front.
            let mut d = store.draft().unwrap();
            let pieces: Vec<(usize, &[u8])> = bytes
                .chunks(70_000)
                .enumerate()
                .map(|(i, c)| (i * 70_000, c))
                .collect();
            for (at, piece) in pieces.iter().rev() {
                d.write_at(*at as u64, piece).unwrap();
            }
            assert_eq!(d.len(), size as u64);
            assert_eq!(d.commit(None).unwrap().hash, want, "reversed, {size}");
            // Garbage first, then overwritten; then truncated and grown.
            let mut d = store.draft().unwrap();
            d.write_at(0, &vec![9u8; size + 5000]).unwrap();
            d.set_len(size as u64 / 2).unwrap();
            d.write_at(0, &bytes).unwrap();
            let mut back = vec![0u8; size];
            assert_eq!(d.read_at(0, &mut back).unwrap(), size);
            assert_eq!(back, bytes);
            let imported = d.commit(Some("test")).unwrap();
            assert_eq!(imported.hash, want, "rewritten, {size}");
            let mut out = Vec::new();
            store.reader(&want).unwrap().copy_to(&mut out).unwrap();
            assert_eq!(out, bytes);
            // A copy to change.
            let mut d = store.draft_from(&want).unwrap();
            d.write_at(size as u64, b"+").unwrap();
            let mut more = bytes.clone();
            more.push(b'+');
            let h = Hash::from(blake3::hash(&more));
            assert_eq!(d.commit(None).unwrap().hash, h);
        }
        // A dropped draft leaves nothing behind.
        let mut d = store.draft().unwrap();
        d.write_at(0, b"gone").unwrap();
        drop(d);
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }
}
