//! Files being written through the mount.
//!
//! A [`Draft`] is a temporary file in `tmp/` that takes writes at any
//! offset, like a file on disk. Writes are handed to a thread of the
//! draft's own, which writes them to the file and hashes the bytes that
//! arrive in order (the common case: `cp`, `rsync`, an editor's save), so
//! the caller (the kernel's FUSE thread) only copies the bytes and goes on,
//! and at [`Draft::commit`] the hash and outboard are ready: the file is
//! simply moved into `data/`. Writes that arrive slightly out of order
//! (two kernel threads) wait in a bounded reorder buffer; beyond it, and
//! after rewrites of hashed bytes, hashing catches up at commit by reading
//! the file back (from the page cache, in practice).
//!
//! An error of the writer thread (a full disk) is returned by the next
//! call, and by the commit. Durability is the import's (see `import.rs`):
//! the file is fsynced before the rename, and the writer syncs every
//! [`WRITEBACK_STEP`] bytes on a third thread so that the final fsync has
//! little left. A draft dropped without commit removes its file; one left
//! by a crash is removed when the store next opens (`tmp/` is cleared).

use std::{
    collections::BTreeMap,
    fs::File,
    io,
    os::unix::fs::FileExt,
    sync::{Arc, Mutex, mpsc},
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
const WRITEBACK_STEP: u64 = 32 << 20;
/// Hash pairs are moved to the outboard spool in batches of this many bytes.
const PAIRS_BATCH: usize = 1 << 20;
/// Writes queued for the writer thread (each up to the caller's size).
const QUEUE: usize = 8;
/// Bytes that may wait for an earlier write before hashing gives up on
/// them (and catches up at commit).
const REORDER_MAX: usize = 16 << 20;

/// A file being written; see the module docs.
pub struct Draft {
    /// While the draft is small (up to the store's inline size), its bytes
    /// in memory: no file, no thread (most files people write are small,
    /// and creating both cost more than the rest of their life).
    mem: Option<Vec<u8>>,
    /// `None` while in memory, and once committed.
    file: Option<Arc<NamedTempFile>>,
    len: u64,
    store: Store,
    tx: Option<mpsc::SyncSender<Job>>,
    free: mpsc::Receiver<Vec<u8>>,
    thread: Option<JoinHandle<Hashing>>,
    /// The writer thread's first error.
    failed: Arc<Mutex<Option<StoreError>>>,
}

impl std::fmt::Debug for Draft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Draft")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

enum Job {
    Write(u64, Vec<u8>),
    /// The file was cut to this length.
    Truncated(u64),
    /// Answered once every job before it is done.
    Barrier(mpsc::SyncSender<()>),
}

/// What the writer thread hands back at the end.
struct Hashing {
    hasher: TreeHasher,
    pairs: Vec<u8>,
    outboard: Spool,
    flusher: Option<Flusher>,
}

impl Store {
    /// Makes the bytes of blob `hash` durable (after a lazy commit).
    pub fn sync_blob(&self, hash: &Hash) -> Result<(), StoreError> {
        let path = self.data_path(hash);
        match File::open(&path) {
            Ok(f) => f.sync_data().ctx(|| format!("syncing {}", path.display())),
            // Inline blobs live in the database, which is durable.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(crate::error::io_error(
                format!("opening {}", path.display()),
                e,
            )),
        }
    }

    /// A new, empty draft (in memory until it grows past the inline
    /// size).
    pub fn draft(&self) -> Result<Draft, StoreError> {
        let (_, free) = mpsc::channel();
        Ok(Draft {
            mem: Some(Vec::new()),
            file: None,
            len: 0,
            store: self.clone(),
            tx: None,
            free,
            thread: None,
            failed: Arc::new(Mutex::new(None)),
        })
    }

    /// A draft in a file of `tmp/`, with its writer thread.
    fn file_draft(&self) -> Result<Draft, StoreError> {
        let file = tempfile::Builder::new()
            .suffix(".draft")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(
                crate::FILE_MODE,
            ))
            .tempfile_in(&self.inner.tmp_dir)
            .ctx(|| format!("creating a file in {}", self.inner.tmp_dir.display()))?;
        let file = Arc::new(file);
        let (tx, jobs) = mpsc::sync_channel(QUEUE);
        let (give_back, free) = mpsc::channel();
        let failed = Arc::new(Mutex::new(None));
        let writer = Writer {
            file: file.clone(),
            store: self.clone(),
            hashing: Hashing::new(),
            waiting: BTreeMap::new(),
            waiting_bytes: 0,
            written: 0,
            failed: failed.clone(),
        };
        let thread = thread::Builder::new()
            .name("p2pfs-draft".into())
            .spawn(move || writer.run(jobs, give_back))
            .ctx(|| "starting a draft writer thread".into())?;
        Ok(Draft {
            mem: None,
            file: Some(file),
            len: 0,
            store: self.clone(),
            tx: Some(tx),
            free,
            thread: Some(thread),
            failed,
        })
    }

    /// A draft holding a copy of the complete blob `hash` (to change it).
    pub fn draft_from(&self, hash: &Hash) -> Result<Draft, StoreError> {
        let mut draft = self.draft()?;
        let reader = self.reader(hash)?;
        let mut buf = vec![
            0u8;
            CATCH_UP_BUF
                .min(usize::try_from(reader.size()).unwrap_or(CATCH_UP_BUF))
                .max(1)
        ];
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

fn tmp_error(what: &str, e: io::Error) -> StoreError {
    crate::error::io_error(format!("{what} a file in the store's tmp directory"), e)
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
    /// as zeros). The bytes are copied and written by the draft's thread.
    /// Writing no bytes changes nothing, as on a disk (even past the end).
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        if data.is_empty() {
            return Ok(());
        }
        let end = offset.saturating_add(data.len() as u64);
        if end > self.store.inner.opts.inline_max {
            self.spill()?;
        }
        if let Some(mem) = &mut self.mem {
            // (Within the inline size: fits in memory and in usize.)
            let (at, end) = (offset as usize, end as usize);
            if mem.len() < end {
                mem.resize(end, 0);
            }
            mem[at..end].copy_from_slice(data);
            self.len = self.len.max(end as u64);
            return Ok(());
        }
        self.check()?;
        let mut buf = self.buffer();
        buf.clear();
        buf.extend_from_slice(data);
        self.send(Job::Write(offset, buf))?;
        self.len = self.len.max(offset.saturating_add(data.len() as u64));
        Ok(())
    }

    /// Reads at `offset`; returns 0 at or past the end.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        if offset >= self.len {
            return Ok(0);
        }
        let n = buf.len().min((self.len - offset) as usize);
        if let Some(mem) = &self.mem {
            let at = offset as usize;
            buf[..n].copy_from_slice(&mem[at..at + n]);
            return Ok(n);
        }
        self.wait()?;
        self.file()?
            .read_exact_at(&mut buf[..n], offset)
            .map_err(|e| tmp_error("reading", e))?;
        Ok(n)
    }

    /// Truncates or extends the file to `len` bytes.
    pub fn set_len(&mut self, len: u64) -> Result<(), StoreError> {
        if len > self.store.inner.opts.inline_max {
            self.spill()?;
        }
        if let Some(mem) = &mut self.mem {
            mem.resize(len as usize, 0);
            self.len = len;
            return Ok(());
        }
        self.wait()?;
        self.file()?
            .set_len(len)
            .map_err(|e| tmp_error("resizing", e))?;
        self.send(Job::Truncated(len))?;
        self.len = len;
        Ok(())
    }

    /// Makes the draft a blob of the store, pinned under `pin` if given,
    /// its bytes on disk (fsynced) first.
    pub fn commit(self, pin: Option<&str>) -> Result<Imported, StoreError> {
        self.commit_inner(pin, true)
    }

    /// Like [`Draft::commit`] without waiting for the bytes to reach the
    /// disk: what `close` of a file on a local disk promises. The kernel
    /// writes them back soon after; [`Store::sync_blob`] is the `fsync`.
    /// A small blob (held in the database) is durable with the next
    /// durable commit of the database; a crash before loses it whole.
    /// If the machine loses power first, the blob's bytes may be wrong on
    /// disk: they are checked against the hash before they are ever
    /// served, and `p2pfs verify` reports them.
    pub fn commit_lazy(self, pin: Option<&str>) -> Result<Imported, StoreError> {
        self.commit_inner(pin, false)
    }

    fn commit_inner(mut self, pin: Option<&str>, durable: bool) -> Result<Imported, StoreError> {
        if let Some(bytes) = self.mem.take() {
            // Small: hashed here, held inline in the database.
            let mut h = Hashing::new();
            h.hash_more(&bytes, &self.store)?;
            let hash = h.hasher.finalize(&mut h.pairs);
            h.outboard.append(&h.pairs, &self.store)?;
            return self
                .store
                .commit_import(hash, Staged::Mem(bytes), h.outboard, pin, durable);
        }
        self.tx = None;
        let mut h = match self.thread.take().map(JoinHandle::join) {
            Some(Ok(h)) => h,
            _ => return Err(self.thread_error()),
        };
        self.check()?;
        // Catch up on what was written out of order (a buffer only then:
        // a small file's commit must not clear a megabyte).
        let mut buf = Vec::new();
        while h.hasher.len() < self.len {
            if buf.is_empty() {
                let rest = usize::try_from(self.len - h.hasher.len()).unwrap_or(CATCH_UP_BUF);
                buf = vec![0u8; CATCH_UP_BUF.min(rest)];
            }
            let at = h.hasher.len();
            let n = buf.len().min((self.len - at) as usize);
            self.file()?
                .read_exact_at(&mut buf[..n], at)
                .map_err(|e| tmp_error("reading", e))?;
            h.hash_more(&buf[..n], &self.store)?;
        }
        let hash = h.hasher.finalize(&mut h.pairs);
        h.outboard.append(&h.pairs, &self.store)?;
        if let Some(f) = h.flusher.take() {
            if durable {
                f.finish()?;
            } else {
                // Let it end on its own.
                drop(f.kick);
            }
        }
        let staged = if self.len <= self.store.inner.opts.inline_max {
            let mut bytes = vec![0u8; self.len as usize];
            self.file()?
                .read_exact_at(&mut bytes, 0)
                .map_err(|e| tmp_error("reading", e))?;
            Staged::Mem(bytes)
        } else {
            if durable {
                self.file()?
                    .sync_data()
                    .map_err(|e| tmp_error("syncing", e))?;
            }
            // The writer thread has ended: this is the last handle.
            let file = self
                .file
                .take()
                .and_then(|f| Arc::try_unwrap(f).ok())
                .ok_or_else(|| StoreError::Corrupt("a draft's file is still shared".into()))?;
            Staged::File {
                file,
                size: self.len,
            }
        };
        self.store
            .commit_import(hash, staged, h.outboard, pin, durable)
    }

    /// Moves a draft held in memory to a file (it grew past the inline
    /// size).
    fn spill(&mut self) -> Result<(), StoreError> {
        let Some(bytes) = self.mem.take() else {
            return Ok(());
        };
        let mut on_disk = self.store.file_draft()?;
        if !bytes.is_empty() {
            on_disk.write_at(0, &bytes)?;
        }
        on_disk.len = self.len;
        if self.len > bytes.len() as u64 {
            on_disk.set_len(self.len)?;
        }
        // (The in-memory draft has no file or thread to drop.)
        std::mem::swap(self, &mut on_disk);
        Ok(())
    }

    fn file(&self) -> Result<&File, StoreError> {
        match &self.file {
            Some(f) => Ok(f.as_file()),
            None => Err(StoreError::Corrupt("the draft was committed".into())),
        }
    }

    /// Waits until the writer thread has done every write so far.
    fn wait(&mut self) -> Result<(), StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Job::Barrier(tx))?;
        rx.recv().map_err(|_| self.thread_error())?;
        self.check()
    }

    fn send(&mut self, job: Job) -> Result<(), StoreError> {
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(job).is_ok());
        if sent {
            Ok(())
        } else {
            Err(self.thread_error())
        }
    }

    /// A buffer to copy a write into: a returned one, else a new one.
    /// (Buffers in use are bounded by the queue and the reorder buffer.)
    fn buffer(&mut self) -> Vec<u8> {
        self.free.try_recv().unwrap_or_default()
    }

    /// The writer thread's error, if it had one.
    fn check(&self) -> Result<(), StoreError> {
        match crate::lock(&self.failed).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn thread_error(&mut self) -> StoreError {
        self.tx = None;
        if let Some(e) = crate::lock(&self.failed).take() {
            return e;
        }
        StoreError::Io {
            context: "writing a file in the store's tmp directory".into(),
            source: io::Error::other("the draft's writer thread stopped"),
        }
    }
}

impl Drop for Draft {
    fn drop(&mut self) {
        // The thread holds the file too: once it has ended, the file is
        // removed with the last handle.
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The draft's thread: writes, and hashes what arrives in order.
struct Writer {
    file: Arc<NamedTempFile>,
    store: Store,
    hashing: Hashing,
    /// Writes ahead of the hashed bytes, waiting for the gap to fill.
    waiting: BTreeMap<u64, Vec<u8>>,
    waiting_bytes: usize,
    written: u64,
    failed: Arc<Mutex<Option<StoreError>>>,
}

impl Writer {
    fn run(mut self, jobs: mpsc::Receiver<Job>, give_back: mpsc::Sender<Vec<u8>>) -> Hashing {
        for job in jobs {
            if let Err(e) = self.job(job, &give_back) {
                let mut failed = crate::lock(&self.failed);
                if failed.is_none() {
                    *failed = Some(e);
                }
            }
        }
        self.hashing
    }

    fn job(&mut self, job: Job, give_back: &mpsc::Sender<Vec<u8>>) -> Result<(), StoreError> {
        match job {
            Job::Write(offset, buf) => {
                self.file
                    .as_file()
                    .write_all_at(&buf, offset)
                    .map_err(|e| tmp_error("writing", e))?;
                self.written += buf.len() as u64;
                if self.written >= WRITEBACK_STEP {
                    self.written = 0;
                    self.hashing.kick_writeback(&self.file)?;
                }
                self.hash(offset, buf, give_back)
            }
            Job::Truncated(len) => {
                if len < self.hashing.hasher.len() {
                    self.hashing.restart();
                }
                self.waiting.retain(|o, _| *o < len);
                self.waiting_bytes = self.waiting.values().map(Vec::len).sum();
                Ok(())
            }
            Job::Barrier(done) => {
                let _ = done.send(());
                Ok(())
            }
        }
    }

    /// Hashes `buf` if it is next, then whatever waited for it; keeps it
    /// waiting if it is ahead; starts over if it rewrote hashed bytes.
    fn hash(
        &mut self,
        offset: u64,
        buf: Vec<u8>,
        give_back: &mpsc::Sender<Vec<u8>>,
    ) -> Result<(), StoreError> {
        let hashed = self.hashing.hasher.len();
        if offset < hashed {
            self.hashing.restart();
            self.drop_waiting(give_back);
            let _ = give_back.send(buf);
            return Ok(());
        }
        if offset > hashed {
            if self.waiting_bytes + buf.len() > REORDER_MAX {
                // Too far ahead: hashing catches up at commit instead.
                self.drop_waiting(give_back);
                let _ = give_back.send(buf);
            } else {
                self.waiting_bytes += buf.len();
                if let Some(old) = self.waiting.insert(offset, buf) {
                    self.waiting_bytes -= old.len();
                    let _ = give_back.send(old);
                }
            }
            return Ok(());
        }
        self.hashing.hash_more(&buf, &self.store)?;
        let _ = give_back.send(buf);
        while let Some(next) = self.waiting.remove(&self.hashing.hasher.len()) {
            self.waiting_bytes -= next.len();
            self.hashing.hash_more(&next, &self.store)?;
            let _ = give_back.send(next);
        }
        Ok(())
    }

    fn drop_waiting(&mut self, give_back: &mpsc::Sender<Vec<u8>>) {
        for (_, b) in std::mem::take(&mut self.waiting) {
            let _ = give_back.send(b);
        }
        self.waiting_bytes = 0;
    }
}

impl Hashing {
    fn new() -> Self {
        Self {
            hasher: TreeHasher::new(),
            pairs: Vec::new(),
            outboard: Spool::default(),
            flusher: None,
        }
    }

    fn hash_more(&mut self, data: &[u8], store: &Store) -> Result<(), StoreError> {
        self.hasher.update(data, &mut self.pairs);
        if self.pairs.len() >= PAIRS_BATCH {
            self.outboard.append(&self.pairs, store)?;
            self.pairs.clear();
        }
        Ok(())
    }

    fn restart(&mut self) {
        self.hasher = TreeHasher::new();
        self.pairs.clear();
        self.outboard = Spool::default();
    }

    fn kick_writeback(&mut self, file: &NamedTempFile) -> Result<(), StoreError> {
        if self.flusher.is_none() {
            let file = file
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
            Ok(r) => r.map_err(|e| tmp_error("syncing", e)),
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
        for size in [
            0usize,
            1,
            16 * 1024,
            16 * 1024 + 1,
            300_000,
            3 << 20,
            20 << 20,
        ] {
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
            // Pairs swapped, as two kernel threads would deliver them.
            let mut d = store.draft().unwrap();
            for pair in pieces.chunks(2) {
                for (at, piece) in pair.iter().rev() {
                    d.write_at(*at as u64, piece).unwrap();
                }
            }
            assert_eq!(d.commit(None).unwrap().hash, want, "swapped, {size}");
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
        // Small at first (in memory), then past the inline size: moved to
        // a file with what it held, a gap of zeros between.
        let mut d = store.draft().unwrap();
        d.write_at(0, b"head").unwrap();
        let far = store.options().inline_max + 10;
        d.write_at(far, b"tail").unwrap();
        let mut want = b"head".to_vec();
        want.resize(far as usize, 0);
        want.extend_from_slice(b"tail");
        let mut back = vec![0u8; want.len()];
        assert_eq!(d.read_at(0, &mut back).unwrap(), want.len());
        assert_eq!(back, want);
        assert_eq!(
            d.commit(None).unwrap().hash,
            Hash::from(blake3::hash(&want))
        );
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
