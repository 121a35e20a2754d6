//! The shared state of a download: which groups are present, committed or
//! pending, where the bytes are, and the commit that makes them durable.
//!
//! One [`PartialShared`] exists per hash being downloaded; every
//! [`PartialBlob`](crate::PartialBlob) handle and every stream feeding it
//! share it. It protects its hash from GC while it lives and commits what is
//! pending when the last handle goes.
//!
//! ## Durability
//! Verified groups are written at once (and can be read and served at once)
//! but committed in batches: after [`Options::commit_bytes`](crate::Options)
//! or [`Options::commit_interval`](crate::Options), when the blob completes,
//! on [`PartialBlob::flush`](crate::PartialBlob::flush), and when the last
//! handle is dropped. A commit fsyncs the data file (and, the first time,
//! the data directory), then records the groups and their hash pairs in one
//! redb transaction, so the have-map never claims bytes the disk may lack.
//! A small blob (held in the database) completes in one transaction without
//! a sync of its own: the next durable commit makes it durable.
//! Commits run without holding the state lock, so reads and other streams go
//! on during an fsync.

use std::{
    collections::BTreeMap,
    fs::{File, OpenOptions},
    io,
    os::unix::fs::{FileExt, OpenOptionsExt},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use bao_tree::{BaoTree, TreeNode};
use p2pfs_proto::{
    Hash,
    chunk::{CHUNK_GROUP_SIZE, groups, groups_covering, outboard_size},
};
use range_collections::range_set::RangeSetRange;
use redb::ReadableTable;

use crate::{
    BLOCK_SIZE, ChunkRanges, Protect, Store,
    checked::{self, Stamp},
    crash,
    direct::{self, ALIGN},
    error::{DbContext, IoContext, StoreError, io_error},
    export::DataRef,
    lock,
    outboard::{PendingPairs, patch_segments},
    ranges::groups_to_chunks,
    tables::{self, BlobMeta, BlobState, GroupSet, decode_groups, encode_groups},
};

/// How long a new handle waits for a dying one to save its last batch.
const DYING_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub(crate) struct PartialShared {
    pub(crate) hash: Hash,
    /// A strong handle: the final commit in `Drop` needs the database even
    /// if every other `Store` is gone.
    pub(crate) store: Store,
    pub(crate) state: Mutex<State>,
    /// Serialises commits, which run without holding `state`.
    commit: Mutex<()>,
    /// A background commit is running.
    committing: AtomicBool,
    /// The error of the last background commit, for the next caller.
    background_error: Mutex<Option<StoreError>>,
    /// Writes to the data file, one at a time.
    writer: Mutex<Writer>,
    /// Signalled when groups are written or the blob completes.
    pub(crate) grown: std::sync::Condvar,
    _protect: Protect,
}

/// Bytes written to a data file go straight to the disk where they can
/// (`O_DIRECT`), not through the page cache: a download then costs no
/// copy into kernel pages and does not push the user's working set out of
/// memory, and its commits have little left to sync. Direct writes need
/// offsets, lengths and buffers aligned to [`ALIGN`]; the rest (the
/// blob's last group, a file system that refuses `O_DIRECT`) goes through
/// the page cache as before. The kernel keeps the two coherent.
///
/// Writers take turns: several streams writing one file at once would
/// only contend for its inode lock in the kernel, spinning.
#[derive(Debug, Default)]
struct Writer {
    direct: Option<File>,
    /// Direct writes were refused here: do not try again.
    buffered_only: bool,
}

#[derive(Debug)]
pub(crate) struct State {
    /// The verified size, once known.
    pub(crate) size: Option<u64>,
    /// Where the bytes go.
    pub(crate) target: Target,
    /// Groups recorded in redb.
    pub(crate) committed: GroupSet,
    /// Groups written but not yet committed.
    pub(crate) pending: GroupSet,
    /// Hash pairs verified but not yet committed.
    pub(crate) pending_pairs: BTreeMap<TreeNode, [u8; 64]>,
    pub(crate) pending_bytes: u64,
    last_commit: Instant,
    pub(crate) complete: bool,
    /// The data file was created and the directory not yet fsynced.
    dir_unsynced: bool,
    /// Verified windows kept for a reader following the download.
    pub(crate) tap: Option<crate::follow::Tap>,
}

#[derive(Debug)]
pub(crate) enum Target {
    /// Nothing written yet (the size is not proven).
    None,
    /// A blob small enough to be inlined: its bytes, zero-filled where absent.
    Mem(Vec<u8>),
    File(Arc<File>),
    /// The blob is complete and committed: read it through the store.
    Committed,
}

impl Store {
    /// Opens (or joins) the download of `hash`.
    pub fn partial(&self, hash: Hash) -> Result<crate::PartialBlob, StoreError> {
        let deadline = Instant::now() + DYING_WAIT;
        let mut live = self.live();
        while let Some(w) = live.partial.get(&hash) {
            if let Some(shared) = w.upgrade() {
                return Ok(crate::PartialBlob::new(shared));
            }
            // The last handle is being dropped and is saving its last
            // batch: wait, or we would load the state before it.
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StoreError::Invalid(format!(
                    "the previous download of {hash} is still saving its progress"
                )));
            }
            live = self
                .inner
                .live_changed
                .wait_timeout(live, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        // Holding `live` keeps a second loader of this hash, and GC, out.
        let state = self.load_state(&hash)?;
        *live.protected.entry(hash).or_insert(0) += 1;
        let protect = Protect {
            inner: Arc::downgrade(&self.inner),
            hash,
        };
        let shared = Arc::new(PartialShared {
            hash,
            store: self.clone(),
            state: Mutex::new(state),
            commit: Mutex::new(()),
            committing: AtomicBool::new(false),
            background_error: Mutex::new(None),
            writer: Mutex::new(Writer::default()),
            grown: std::sync::Condvar::new(),
            _protect: protect,
        });
        live.partial.insert(hash, Arc::downgrade(&shared));
        Ok(crate::PartialBlob::new(shared))
    }

    fn load_state(&self, hash: &Hash) -> Result<State, StoreError> {
        let mut state = State {
            size: None,
            target: Target::None,
            committed: GroupSet::empty(),
            pending: GroupSet::empty(),
            pending_pairs: BTreeMap::new(),
            pending_bytes: 0,
            last_commit: Instant::now(),
            complete: false,
            dir_unsynced: false,
            tap: None,
        };
        let txn = self.begin_read()?;
        let blobs = txn.open_table(tables::BLOBS).db()?;
        let Some(meta) = blobs.get(hash.as_bytes()).db()? else {
            return Ok(state);
        };
        let meta = BlobMeta::decode(meta.value())?;
        state.size = Some(meta.size);
        if meta.is_complete() {
            state.set_complete(meta.size);
            return Ok(state);
        }
        let have = txn.open_table(tables::HAVE).db()?;
        state.committed = match have.get(hash.as_bytes()).db()? {
            Some(g) => decode_groups(g.value())?,
            None => GroupSet::empty(),
        };
        let path = self.data_path(hash);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .ctx(|| format!("opening {}", path.display()))?;
        state.target = Target::File(Arc::new(file));
        Ok(state)
    }

    /// The download currently in progress for `hash`, if any.
    pub(crate) fn live_partial(&self, hash: &Hash) -> Option<Arc<PartialShared>> {
        self.live().partial.get(hash).and_then(|w| w.upgrade())
    }
}

impl State {
    /// Whether committed and pending groups cover the whole blob.
    pub(crate) fn is_full(&self) -> bool {
        let Some(size) = self.size else {
            return false;
        };
        let have = &self.committed | &self.pending;
        (&GroupSet::from(0..groups(size)) - &have).is_empty()
    }

    /// Bytes present from the start of the blob.
    pub(crate) fn present_prefix(&self) -> Option<u64> {
        let size = self.size?;
        if self.complete {
            return Some(size);
        }
        let have = &self.committed | &self.pending;
        let first_missing = match (&GroupSet::from(0..groups(size)) - &have).iter().next() {
            Some(RangeSetRange::Range(r)) => *r.start,
            Some(RangeSetRange::RangeFrom(r)) => *r.start,
            None => return Some(size),
        };
        Some((first_missing * CHUNK_GROUP_SIZE).min(size))
    }

    /// Whether `group` is present, committed or not.
    pub(crate) fn has(&self, group: u64) -> bool {
        self.complete || self.committed.contains(&group) || self.pending.contains(&group)
    }

    /// Records a written group.
    pub(crate) fn add_pending(&mut self, group: u64, bytes: u64) {
        self.pending |= GroupSet::from(group..group + 1);
        self.pending_bytes += bytes;
    }

    /// Whether a commit should run now.
    pub(crate) fn commit_due(&self, store: &Store) -> bool {
        let opts = &store.inner.opts;
        !self.pending.is_empty()
            && (self.is_full()
                || self.pending_bytes >= opts.commit_bytes
                || self.last_commit.elapsed() >= opts.commit_interval)
    }

    fn set_complete(&mut self, size: u64) {
        self.size = Some(size);
        self.complete = true;
        self.committed = GroupSet::from(0..groups(size));
        self.pending = GroupSet::empty();
        self.pending_pairs.clear();
        self.pending_bytes = 0;
        self.target = Target::Committed;
    }
}

/// A consistent copy of what a commit will record.
struct Snapshot {
    size: u64,
    groups: GroupSet,
    new_groups: GroupSet,
    pairs: BTreeMap<TreeNode, [u8; 64]>,
    bytes: u64,
    file: Option<Arc<File>>,
    sync_dir: bool,
    inline: Option<Vec<u8>>,
    complete: bool,
}

impl PartialShared {
    pub(crate) fn is_complete(&self) -> bool {
        lock(&self.state).complete
    }

    /// The blob was committed complete by other means (an import): stop
    /// writing and read the committed copy.
    pub(crate) fn mark_complete(&self, size: u64) {
        lock(&self.state).set_complete(size);
        self.grown.notify_all();
    }

    /// The data file, created on first use. Only for blobs with a file.
    pub(crate) fn data_file(&self) -> Result<Arc<File>, StoreError> {
        let mut st = lock(&self.state);
        match &st.target {
            Target::File(f) => return Ok(f.clone()),
            Target::None => {}
            Target::Mem(_) | Target::Committed => {
                return Err(StoreError::Invalid(format!(
                    "blob {} has no data file being written",
                    self.hash
                )));
            }
        }
        let path = self.store.data_path(&self.hash);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(crate::FILE_MODE)
            .open(&path)
            .ctx(|| format!("creating {}", path.display()))?;
        let file = Arc::new(file);
        st.target = Target::File(file.clone());
        st.dir_unsynced = true;
        Ok(file)
    }

    /// Writes `data` at `offset` of the data `file`: the aligned part
    /// directly, the rest through the page cache (see [`Writer`]).
    pub(crate) fn write_file(&self, file: &File, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut w = lock(&self.writer);
        let mut done = 0usize;
        let aligned = offset.is_multiple_of(ALIGN as u64)
            && (data.as_ptr() as usize).is_multiple_of(ALIGN)
            && data.len() >= ALIGN;
        if aligned && let Some(direct) = w.direct(&self.store.data_path(&self.hash)) {
            let len = data.len() / ALIGN * ALIGN;
            while done < len && done.is_multiple_of(ALIGN) {
                match direct.write_at(&data[done..len], offset + done as u64) {
                    Ok(0) => break,
                    Ok(n) => done += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if direct::refused(&e) => {
                        tracing::debug!(hash = %self.hash, "direct writes refused, writing through the page cache: {e}");
                        w.direct = None;
                        w.buffered_only = true;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        file.write_all_at(&data[done..], offset + done as u64)
    }

    /// Starts a commit on its own thread unless one is running, so the
    /// download goes on while the disk syncs.
    pub(crate) fn commit_in_background(self: &Arc<Self>) {
        if self.committing.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("p2pfs-commit".into())
            .spawn(move || {
                if let Err(e) = me.commit() {
                    *lock(&me.background_error) = Some(e);
                }
                me.committing.store(false, Ordering::Release);
            });
        if spawned.is_err() {
            self.committing.store(false, Ordering::Release);
        }
    }

    /// The error of a background commit, once.
    pub(crate) fn take_background_error(&self) -> Result<(), StoreError> {
        match lock(&self.background_error).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Records pending groups durably (see the module docs).
    pub(crate) fn commit(&self) -> Result<(), StoreError> {
        let _one_at_a_time = lock(&self.commit);
        let Some(snap) = self.snapshot() else {
            return Ok(());
        };
        let store = &self.store;
        crash::point("download.written");
        if let Some(f) = &snap.file
            && let Err(e) = f.sync_data()
        {
            // The kernel may have dropped the dirty pages with the error:
            // those groups must be downloaded again, not retried.
            let mut st = lock(&self.state);
            st.pending = &st.pending - &snap.new_groups;
            st.pending_bytes = st.pending_bytes.saturating_sub(snap.bytes);
            return Err(io_error(
                format!("syncing downloaded data of {}", self.hash),
                e,
            ));
        }
        if snap.sync_dir {
            store.sync_data_dir()?;
            lock(&self.state).dir_unsynced = false;
        }
        crash::point("download.synced");
        let mut txn = store.begin_write()?;
        if snap.inline.is_some() {
            // A small blob is recorded lazily, as a small file written
            // through the mount is (`Draft::commit_lazy`): its bytes are in
            // this transaction, the next durable commit of the database
            // (or closing it) makes it durable, and a crash before loses it
            // whole, to be fetched again. A sync each would cap reading a
            // room of small files at the disk's syncs per second.
            txn.set_durability(redb::Durability::None)
                .map_err(|e| StoreError::Corrupt(format!("setting durability: {e}")))?;
        }
        {
            let mut blobs = txn.open_table(tables::BLOBS).db()?;
            let existing = match blobs.get(self.hash.as_bytes()).db()? {
                Some(g) => Some(BlobMeta::decode(g.value())?),
                None => None,
            };
            if let Some(m) = existing
                && m.is_complete()
            {
                // Completed by an import meanwhile: our copy is redundant.
                drop(blobs);
                txn.abort().db()?;
                self.mark_complete(m.size);
                return Ok(());
            }
            if existing.is_none() && snap.groups != snap.new_groups {
                // Cannot happen while this download protects the hash: the
                // entry holding our committed groups is gone.
                return Err(StoreError::Corrupt(format!(
                    "the entry of blob {} vanished during its download",
                    self.hash
                )));
            }
            let tree = BaoTree::new(snap.size, BLOCK_SIZE);
            let pairs: BTreeMap<u64, [u8; 64]> = snap
                .pairs
                .iter()
                .filter_map(|(node, pair)| Some((tree.post_order_offset(*node)?.value(), *pair)))
                .collect();
            let mut segments = txn.open_table(tables::OUTBOARD).db()?;
            patch_segments(&mut segments, &self.hash, outboard_size(snap.size), &pairs)?;
            let mut have = txn.open_table(tables::HAVE).db()?;
            let state = if snap.complete {
                have.remove(self.hash.as_bytes()).db()?;
                // Every byte was verified before it was written.
                if let Some(f) = &snap.file {
                    let stamp =
                        Stamp::of(f).ctx(|| format!("reading the times of {}", self.hash))?;
                    checked::record(&txn, &self.hash, &stamp)?;
                }
                match &snap.inline {
                    Some(bytes) => {
                        let mut inline = txn.open_table(tables::INLINE).db()?;
                        inline.insert(self.hash.as_bytes(), bytes.as_slice()).db()?;
                        BlobState::CompleteInline
                    }
                    None => BlobState::CompleteFile,
                }
            } else {
                have.insert(
                    self.hash.as_bytes(),
                    encode_groups(&snap.groups)?.as_slice(),
                )
                .db()?;
                BlobState::Partial
            };
            let meta = BlobMeta {
                size: snap.size,
                state,
            };
            blobs
                .insert(self.hash.as_bytes(), meta.encode()?.as_slice())
                .db()?;
        }
        txn.commit().db()?;
        crash::point("download.committed");
        let mut st = lock(&self.state);
        if snap.complete {
            st.set_complete(snap.size);
            self.grown.notify_all();
        } else {
            st.pending = &st.pending - &snap.new_groups;
            for node in snap.pairs.keys() {
                st.pending_pairs.remove(node);
            }
            st.pending_bytes = st.pending_bytes.saturating_sub(snap.bytes);
            st.committed = snap.groups;
            st.last_commit = Instant::now();
        }
        tracing::trace!(hash = %self.hash, complete = snap.complete, "committed download progress");
        Ok(())
    }

    /// What the next commit records, or `None` if there is nothing to do.
    fn snapshot(&self) -> Option<Snapshot> {
        let st = lock(&self.state);
        let size = st.size?;
        if st.complete || (st.pending.is_empty() && st.pending_pairs.is_empty() && size > 0) {
            return None;
        }
        let complete = st.is_full();
        let (file, inline) = match &st.target {
            Target::File(f) => (Some(f.clone()), None),
            // A small blob is only recorded once complete.
            Target::Mem(_) if !complete => return None,
            Target::Mem(b) => (None, Some(b.clone())),
            Target::None | Target::Committed => (None, None),
        };
        Some(Snapshot {
            size,
            groups: &st.committed | &st.pending,
            new_groups: st.pending.clone(),
            pairs: st.pending_pairs.clone(),
            bytes: st.pending_bytes,
            sync_dir: st.dir_unsynced && file.is_some(),
            file,
            inline,
            complete,
        })
    }

    /// Reads bytes at `offset` if every group they touch is present: from
    /// the download's tap while it holds them (a reader of a live download
    /// starts one, see `follow`), else from the disk.
    pub(crate) fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        let (end, file, tapped) = {
            let mut st = lock(&self.state);
            if matches!(st.target, Target::Committed) {
                drop(st);
                return self
                    .store
                    .reader(&self.hash)?
                    .read_at(offset, buf)
                    .ctx(|| format!("reading blob {}", self.hash));
            }
            self.tap(&mut st);
            let requested_end = offset.saturating_add(buf.len() as u64);
            let Some(size) = st.size else {
                return Err(StoreError::NotPresent {
                    hash: self.hash,
                    start: offset,
                    end: requested_end,
                });
            };
            let end = size.min(requested_end);
            if offset >= end {
                return Ok(0);
            }
            let (first, last) = groups_covering(offset, end);
            let missing = &GroupSet::from(first..last) - &(&st.committed | &st.pending);
            if let Some(r) = missing.iter().next() {
                let start = match r {
                    RangeSetRange::Range(r) => *r.start,
                    RangeSetRange::RangeFrom(r) => *r.start,
                };
                return Err(StoreError::NotPresent {
                    hash: self.hash,
                    start: (start * CHUNK_GROUP_SIZE).max(offset),
                    end,
                });
            }
            let n = (end - offset) as usize;
            match &st.target {
                Target::Mem(bytes) => {
                    buf[..n].copy_from_slice(&bytes[offset as usize..end as usize]);
                    return Ok(n);
                }
                Target::File(f) => {
                    let file = f.clone();
                    (end, file, self.tap(&mut st).take_all(offset, end))
                }
                Target::None | Target::Committed => return Ok(0),
            }
        };
        let n = (end - offset) as usize;
        let mut done = 0;
        for w in tapped {
            buf[done..done + w.len()].copy_from_slice(&w);
            done += w.len();
        }
        if done < n {
            file.read_exact_at(&mut buf[done..n], offset + done as u64)
                .ctx(|| format!("reading blob {}", self.hash))?;
        }
        Ok(n)
    }

    /// The size, present ranges and data of a live download, for serving;
    /// `None` once complete: the committed blob is then the one to read.
    pub(crate) fn serving_view(&self) -> Option<ServingView> {
        let st = lock(&self.state);
        let size = st.size?;
        let have = groups_to_chunks(&(&st.committed | &st.pending), size);
        let data = match &st.target {
            Target::File(f) => DataRef::File(f.clone()),
            Target::Mem(b) => DataRef::Mem(b.clone()),
            Target::None | Target::Committed => return None,
        };
        Some(ServingView { size, have, data })
    }

    /// The present chunk ranges, or `None` while the size is unknown.
    pub(crate) fn have(&self) -> Option<ChunkRanges> {
        let st = lock(&self.state);
        let size = st.size?;
        Some(groups_to_chunks(&(&st.committed | &st.pending), size))
    }
}

impl Writer {
    /// The data file opened for direct writes, opened on first use; `None`
    /// where the file system does not take them.
    fn direct(&mut self, path: &std::path::Path) -> Option<&File> {
        if self.direct.is_none() && !self.buffered_only {
            match direct::open(path, true) {
                Ok(f) => self.direct = Some(f),
                Err(e) => {
                    tracing::debug!(path = %path.display(), "no direct writes: {e}");
                    self.buffered_only = true;
                }
            }
        }
        self.direct.as_ref()
    }
}

/// What a live download can serve.
pub(crate) struct ServingView {
    pub(crate) size: u64,
    pub(crate) have: ChunkRanges,
    pub(crate) data: DataRef,
}

impl PendingPairs for PartialShared {
    fn pending_pair(&self, node: TreeNode) -> Option<[u8; 64]> {
        lock(&self.state).pending_pairs.get(&node).copied()
    }
}

impl Drop for PartialShared {
    fn drop(&mut self) {
        if let Err(e) = self.commit() {
            tracing::warn!(hash = %self.hash, "could not save download progress: {e}");
        }
        let mut live = self.store.live();
        if live
            .partial
            .get(&self.hash)
            .is_some_and(|w| w.strong_count() == 0)
        {
            live.partial.remove(&self.hash);
        }
        drop(live);
        self.store.inner.live_changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct and buffered writes mix in one file: aligned runs, a run from
    /// an unaligned buffer, an unaligned tail, and a rewrite over a run
    /// read through the page cache all read back as written.
    #[test]
    fn direct_and_buffered_writes_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let hash = Hash::from(blake3::hash(b"x"));
        let blob = store.partial(hash).unwrap();
        let shared = blob.shared();
        let path = store.data_path(&hash);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap();
        let size = 5 * 16384 + 1000;
        let mut want = vec![0u8; size];
        fastrand::fill(&mut want);
        // An aligned buffer, as the decoder hands over.
        let mut backing = Vec::new();
        let base = direct::aligned(&mut backing, size);
        let aligned = &mut backing[base..base + size];
        aligned.copy_from_slice(&want);
        shared.write_file(&file, 0, &aligned[..2 * 16384]).unwrap();
        // Read through the page cache, then overwritten directly.
        let mut seen = vec![0u8; 16384];
        file.read_exact_at(&mut seen, 0).unwrap();
        assert_eq!(seen, want[..16384]);
        // An unaligned buffer: written through the page cache.
        let unaligned = want[2 * 16384..3 * 16384].to_vec();
        let mut odd = vec![0u8; unaligned.len() + 1];
        odd[1..].copy_from_slice(&unaligned);
        shared.write_file(&file, 2 * 16384, &odd[1..]).unwrap();
        // The rest, with the blob's unaligned tail.
        shared
            .write_file(&file, 3 * 16384, &aligned[3 * 16384..])
            .unwrap();
        let mut got = vec![0u8; size];
        file.read_exact_at(&mut got, 0).unwrap();
        assert!(got == want, "the file reads back as written");
        assert!(
            lock(&shared.writer).direct.is_some(),
            "this file system takes direct writes"
        );
    }
}
