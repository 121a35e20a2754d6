//! Accepting verified chunk ranges from peers into a partial blob.
//!
//! A [`PartialBlob`] is the handle a download writes through. Several
//! streams (from several peers) may feed the same blob at once; they share
//! one in-memory state per hash. Every chunk group is checked against the
//! root hash (by bao-tree's decoder) before a byte of it is written, and a
//! group that fails ends the stream with [`StoreError::Verification`],
//! storing nothing of it.
//!
//! ## Size
//! The tree's shape depends on the blob's size, which a peer announces at
//! the start of its stream. The announcement is only trusted once the
//! blob's *last* chunk group has verified against the hash under it. Until
//! then a stream keeps what it verified to itself (data already sits at its
//! final offset in the data file, which is harmless: verified bytes are the
//! true bytes), and a stream that never proves its size leaves nothing
//! behind. So a download asks for the last group first, or in its first
//! request.
//!
//! ## Durability
//! Verified groups are written at once (and served to others at once) but
//! committed in batches: after [`Options::commit_bytes`](crate::Options) or
//! [`Options::commit_interval`](crate::Options), when the blob completes, on
//! [`PartialBlob::flush`], and when the last handle is dropped. A commit
//! fsyncs the data file, then records the groups and their hash pairs in one
//! redb transaction, so the have-map never claims bytes the disk may lack.

use std::{
    collections::BTreeMap,
    fs::{File, OpenOptions},
    io::Read,
    os::unix::fs::FileExt,
    sync::{Arc, Mutex},
    time::Instant,
};

use bao_tree::{
    BaoTree, ChunkNum, TreeNode,
    io::{BaoContentItem, DecodeError, Leaf, Parent, sync::DecodeResponseIter},
};
use bytes::Bytes;
use p2pfs_proto::{
    Hash,
    chunk::{CHUNK_GROUP_SIZE, group_byte_range, groups, groups_covering, outboard_size},
};
use redb::ReadableTable;

use crate::{
    BLOCK_SIZE, ChunkRanges, Protect, Store, crash,
    error::{DbContext, IoContext, StoreError, io_error},
    export::DataRef,
    lock,
    outboard::{PendingPairs, join_pair, patch_segments},
    ranges::{effective_ranges, group_count, groups_to_chunks},
    tables::{self, BlobMeta, BlobState, GroupSet, decode_groups, encode_groups},
};

/// What one [`PartialBlob::ingest`] call stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IngestReport {
    /// Chunk groups that were new to the store.
    pub new_groups: u64,
    /// Bytes in those groups.
    pub new_bytes: u64,
    /// Whether the blob is complete now.
    pub complete: bool,
}

/// A handle for writing a blob that arrives from peers.
///
/// Cheap to clone; all handles for one hash share their state, and the hash
/// is safe from GC while any handle lives.
#[derive(Debug, Clone)]
pub struct PartialBlob {
    store: Store,
    shared: Arc<PartialShared>,
}

#[derive(Debug)]
pub(crate) struct PartialShared {
    hash: Hash,
    state: Mutex<State>,
    /// Serialises commits, which run without holding `state`.
    commit: Mutex<()>,
    store: std::sync::Weak<crate::Inner>,
    _protect: Protect,
}

#[derive(Debug)]
struct State {
    /// The verified size, once known.
    size: Option<u64>,
    /// Where the bytes go.
    target: Target,
    /// Groups recorded in redb.
    committed: GroupSet,
    /// Groups written but not yet committed.
    pending: GroupSet,
    /// Hash pairs verified but not yet committed.
    pending_pairs: BTreeMap<TreeNode, [u8; 64]>,
    pending_bytes: u64,
    last_commit: Instant,
    complete: bool,
    /// The data file exists (its directory entry is durable).
    file_created: bool,
}

#[derive(Debug)]
enum Target {
    /// Nothing written yet.
    None,
    /// A blob small enough to be inlined: its bytes, zero-filled where absent.
    Mem(Vec<u8>),
    File(Arc<File>),
}

impl Store {
    /// Opens (or joins) the download of `hash`.
    pub fn partial(&self, hash: Hash) -> Result<PartialBlob, StoreError> {
        let mut live = self.live();
        if let Some(shared) = live.partial.get(&hash).and_then(|w| w.upgrade()) {
            return Ok(PartialBlob {
                store: self.clone(),
                shared,
            });
        }
        // Holding `live` keeps a second loader of this hash out.
        let state = self.load_state(&hash)?;
        *live.protected.entry(hash).or_insert(0) += 1;
        let protect = Protect {
            inner: Arc::downgrade(&self.inner),
            hash,
        };
        let shared = Arc::new(PartialShared {
            hash,
            state: Mutex::new(state),
            commit: Mutex::new(()),
            store: Arc::downgrade(&self.inner),
            _protect: protect,
        });
        live.partial.insert(hash, Arc::downgrade(&shared));
        Ok(PartialBlob {
            store: self.clone(),
            shared,
        })
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
            file_created: false,
        };
        let txn = self.begin_read()?;
        let blobs = txn.open_table(tables::BLOBS).db()?;
        let Some(meta) = blobs.get(hash.as_bytes()).db()? else {
            return Ok(state);
        };
        let meta = BlobMeta::decode(meta.value())?;
        state.size = Some(meta.size);
        if meta.is_complete() {
            state.complete = true;
            state.committed = GroupSet::from(0..groups(meta.size));
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
        state.file_created = true;
        Ok(state)
    }

    /// The partial blob currently being written for `hash`, if any.
    pub(crate) fn live_partial(&self, hash: &Hash) -> Option<Arc<PartialShared>> {
        self.live().partial.get(hash).and_then(|w| w.upgrade())
    }
}

/// What a stream whose size claim is not yet proven keeps to itself.
#[derive(Default)]
struct Unproven {
    groups: GroupSet,
    pairs: BTreeMap<TreeNode, [u8; 64]>,
    bytes: u64,
    /// Leaves of a small blob, which has no data file.
    small: Vec<(u64, Bytes)>,
}

impl PartialBlob {
    /// The blob's hash.
    pub fn hash(&self) -> Hash {
        self.shared.hash
    }

    /// The verified size, once known.
    pub fn size(&self) -> Option<u64> {
        lock(&self.shared.state).size
    }

    /// Whether every byte is present.
    pub fn is_complete(&self) -> bool {
        lock(&self.shared.state).complete
    }

    /// The chunk ranges present (committed or not), or `None` while the size
    /// is unknown.
    pub fn have(&self) -> Option<ChunkRanges> {
        let st = lock(&self.shared.state);
        let size = st.size?;
        Some(groups_to_chunks(&(&st.committed | &st.pending), size))
    }

    /// Reads one bao-tree encoded response from `stream` and stores every
    /// chunk group that verifies against the hash.
    ///
    /// `ranges` must be the ranges that were asked for (rounded up to whole
    /// chunk groups here, as the sender does). The stream is the 8-byte
    /// little-endian size followed by the pre-order encoding. If the size is
    /// not yet verified, `ranges` must include the blob's last chunk group.
    pub fn ingest(
        &self,
        ranges: &ChunkRanges,
        mut stream: impl Read,
    ) -> Result<IngestReport, StoreError> {
        let hash = self.shared.hash;
        let mut size_buf = [0u8; 8];
        stream
            .read_exact(&mut size_buf)
            .map_err(|source| StoreError::Stream { hash, source })?;
        let claimed = u64::from_le_bytes(size_buf);
        let (known, complete) = {
            let st = lock(&self.shared.state);
            (st.size, st.complete)
        };
        let mut report = IngestReport::default();
        if complete {
            report.complete = true;
            return Ok(report);
        }
        if let Some(size) = known
            && size != claimed
        {
            return Err(StoreError::Verification {
                hash,
                detail: format!("peer claims {claimed} bytes, the verified size is {size}"),
            });
        }
        if claimed == 0 {
            return self.ingest_empty(report);
        }
        let last_group = groups(claimed).saturating_sub(1);
        let ranges = effective_ranges(ranges, claimed);
        if known.is_none() && !ranges.contains(&ChunkNum(last_group << BLOCK_SIZE.chunk_log())) {
            return Err(StoreError::Invalid(format!(
                "the size of blob {hash} is not verified yet: the request must include its last chunk group"
            )));
        }
        let tree = BaoTree::new(claimed, BLOCK_SIZE);
        let mut unproven = known.is_none().then(Unproven::default);
        for item in DecodeResponseIter::new(hash.into(), tree, &mut stream, &ranges) {
            let item = item.map_err(|e| decode_error(hash, e))?;
            match item {
                BaoContentItem::Parent(Parent { node, pair }) => {
                    let pair = join_pair(&pair);
                    match &mut unproven {
                        Some(u) => {
                            u.pairs.insert(node, pair);
                        }
                        None => {
                            lock(&self.shared.state).pending_pairs.insert(node, pair);
                        }
                    }
                }
                BaoContentItem::Leaf(Leaf { offset, data }) => {
                    let group = check_leaf(hash, claimed, offset, data.len())?;
                    if let Some(u) = &mut unproven {
                        self.write_unproven(u, claimed, offset, data)?;
                        u.groups |= GroupSet::from(group..group + 1);
                        if group == last_group {
                            // The size is proven: share what this stream verified.
                            let u = std::mem::take(u);
                            unproven = None;
                            self.adopt(claimed, u, &mut report)?;
                        }
                    } else if self.write_leaf(group, offset, &data, &mut report)? {
                        self.commit()?;
                    }
                }
            }
        }
        if !self.is_complete() && self.commit_due() {
            self.commit()?;
        }
        report.complete = self.is_complete();
        Ok(report)
    }

    /// Writes out and commits everything verified so far.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.commit()
    }

    /// Reads bytes at `offset` if every chunk group they touch is present.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        self.shared.read_at(offset, buf)
    }

    fn ingest_empty(&self, mut report: IngestReport) -> Result<IngestReport, StoreError> {
        let hash = self.shared.hash;
        if hash != Hash::EMPTY {
            return Err(StoreError::Verification {
                hash,
                detail: "peer claims the blob is empty, which does not match its hash".into(),
            });
        }
        {
            let mut st = lock(&self.shared.state);
            st.size = Some(0);
            st.target = Target::Mem(Vec::new());
        }
        self.commit()?;
        report.complete = true;
        Ok(report)
    }

    /// Stores a leaf of a stream whose size claim is unproven.
    fn write_unproven(
        &self,
        u: &mut Unproven,
        claimed: u64,
        offset: u64,
        data: Bytes,
    ) -> Result<(), StoreError> {
        if let Some(size) = self.size()
            && size != claimed
        {
            // Another stream proved the size meanwhile: this one lied.
            return Err(StoreError::Verification {
                hash: self.shared.hash,
                detail: format!("peer claims {claimed} bytes, the verified size is {size}"),
            });
        }
        u.bytes += data.len() as u64;
        if claimed <= self.store.inner.opts.inline_max {
            u.small.push((offset, data));
            return Ok(());
        }
        let file = self.shared_file()?;
        write_all_at(&file, offset, &data, &self.store)
    }

    /// The shared data file, created on first use.
    fn shared_file(&self) -> Result<Arc<File>, StoreError> {
        let mut st = lock(&self.shared.state);
        match &st.target {
            Target::File(f) => return Ok(f.clone()),
            Target::Mem(_) => {
                return Err(StoreError::Invalid(format!(
                    "blob {} is small and has no data file",
                    self.shared.hash
                )));
            }
            Target::None => {}
        }
        let path = self.store.data_path(&self.shared.hash);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .ctx(|| format!("creating {}", path.display()))?;
        self.store.sync_data_dir()?;
        let file = Arc::new(file);
        st.target = Target::File(file.clone());
        st.file_created = true;
        Ok(file)
    }

    /// Makes a proven stream's groups and pairs part of the shared state.
    fn adopt(&self, size: u64, u: Unproven, report: &mut IngestReport) -> Result<(), StoreError> {
        let small = size <= self.store.inner.opts.inline_max;
        let file = if small {
            None
        } else {
            Some(self.shared_file()?)
        };
        if let Some(f) = &file {
            reserve(f, size, &self.store)?;
        }
        let full = {
            let mut st = lock(&self.shared.state);
            if st.complete {
                return Ok(());
            }
            match st.size {
                Some(s) if s != size => {
                    return Err(StoreError::Corrupt(format!(
                        "two different sizes of blob {} verified",
                        self.shared.hash
                    )));
                }
                _ => st.size = Some(size),
            }
            if small {
                let mut bytes = match std::mem::replace(&mut st.target, Target::None) {
                    Target::Mem(b) => b,
                    _ => Vec::new(),
                };
                bytes.resize(size as usize, 0);
                for (offset, data) in &u.small {
                    let start = *offset as usize;
                    bytes[start..start + data.len()].copy_from_slice(data);
                }
                st.target = Target::Mem(bytes);
            }
            let new = &u.groups - &(&st.committed | &st.pending);
            report.new_groups += group_count(&new);
            report.new_bytes += u.bytes;
            st.pending |= u.groups;
            st.pending_bytes += u.bytes;
            st.pending_pairs.extend(u.pairs);
            st.is_full() || st.pending_bytes >= self.store.inner.opts.commit_bytes
        };
        if full { self.commit() } else { Ok(()) }
    }

    /// Stores a verified leaf of a blob of known size. Returns whether a
    /// commit is due.
    fn write_leaf(
        &self,
        group: u64,
        offset: u64,
        data: &[u8],
        report: &mut IngestReport,
    ) -> Result<bool, StoreError> {
        let dest = {
            let mut st = lock(&self.shared.state);
            if st.complete || st.committed.contains(&group) || st.pending.contains(&group) {
                return Ok(false);
            }
            match &mut st.target {
                Target::Mem(bytes) => {
                    let start = offset as usize;
                    let Some(slot) = bytes.get_mut(start..start + data.len()) else {
                        return Err(StoreError::Corrupt("inline buffer too small".into()));
                    };
                    slot.copy_from_slice(data);
                    None
                }
                Target::File(f) => Some(Some(f.clone())),
                Target::None => Some(None),
            }
        };
        if let Some(file) = dest {
            let file = match file {
                Some(f) => f,
                None => self.shared_file()?,
            };
            write_all_at(&file, offset, data, &self.store)?;
        }
        let mut st = lock(&self.shared.state);
        if st.pending.contains(&group) {
            return Ok(false);
        }
        st.pending |= GroupSet::from(group..group + 1);
        st.pending_bytes += data.len() as u64;
        report.new_groups += 1;
        report.new_bytes += data.len() as u64;
        Ok(st.is_full()
            || st.pending_bytes >= self.store.inner.opts.commit_bytes
            || st.last_commit.elapsed() >= self.store.inner.opts.commit_interval)
    }

    fn commit_due(&self) -> bool {
        let st = lock(&self.shared.state);
        !st.pending.is_empty()
            && (st.pending_bytes >= self.store.inner.opts.commit_bytes
                || st.last_commit.elapsed() >= self.store.inner.opts.commit_interval)
    }

    fn commit(&self) -> Result<(), StoreError> {
        self.shared.commit(&self.store)
    }
}

impl State {
    /// Whether committed and pending groups cover the whole blob.
    fn is_full(&self) -> bool {
        let Some(size) = self.size else {
            return false;
        };
        let have = &self.committed | &self.pending;
        (&GroupSet::from(0..groups(size)) - &have).is_empty()
    }
}

/// A consistent copy of what a commit will record.
struct Snapshot {
    size: u64,
    groups: GroupSet,
    pairs: BTreeMap<TreeNode, [u8; 64]>,
    bytes: u64,
    file: Option<Arc<File>>,
    inline: Option<Vec<u8>>,
    complete: bool,
}

impl PartialShared {
    pub(crate) fn is_complete(&self) -> bool {
        lock(&self.state).complete
    }

    /// The blob was committed complete by other means (an import): stop
    /// writing and serve the committed copy.
    pub(crate) fn mark_complete(&self) {
        let mut st = lock(&self.state);
        st.complete = true;
        st.pending = GroupSet::empty();
        st.pending_pairs.clear();
        st.pending_bytes = 0;
    }

    /// Records pending groups durably (see the module docs).
    fn commit(&self, store: &Store) -> Result<(), StoreError> {
        let _one_at_a_time = lock(&self.commit);
        let Some(snap) = self.snapshot() else {
            return Ok(());
        };
        crash::point("download.written");
        if let Some(f) = &snap.file {
            f.sync_data()
                .map_err(|e| io_error(format!("syncing downloaded data of {}", self.hash), e))?;
        }
        crash::point("download.synced");
        let txn = store.begin_write()?;
        {
            let mut blobs = txn.open_table(tables::BLOBS).db()?;
            let existing = match blobs.get(self.hash.as_bytes()).db()? {
                Some(g) => Some(BlobMeta::decode(g.value())?),
                None => None,
            };
            if existing.is_some_and(|m| m.is_complete()) {
                // Completed by an import meanwhile: our copy is redundant.
                drop(blobs);
                txn.abort().db()?;
                self.mark_complete();
                return Ok(());
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
        st.pending = &st.pending - &snap.groups;
        for node in snap.pairs.keys() {
            st.pending_pairs.remove(node);
        }
        st.pending_bytes = st.pending_bytes.saturating_sub(snap.bytes);
        st.committed = snap.groups;
        st.last_commit = Instant::now();
        if snap.complete {
            st.complete = true;
            st.pending_pairs.clear();
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
            Target::None => (None, None),
        };
        Some(Snapshot {
            size,
            groups: &st.committed | &st.pending,
            pairs: st.pending_pairs.clone(),
            bytes: st.pending_bytes,
            file,
            inline,
            complete,
        })
    }

    /// Reads bytes at `offset` if every group they touch is present.
    pub(crate) fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        let (end, file) = {
            let st = lock(&self.state);
            let Some(size) = st.size else {
                return Err(StoreError::NotPresent {
                    hash: self.hash,
                    start: offset,
                    end: offset + buf.len() as u64,
                });
            };
            let end = size.min(offset.saturating_add(buf.len() as u64));
            if offset >= end {
                return Ok(0);
            }
            let (first, last) = groups_covering(offset, end);
            let needed = GroupSet::from(first..last);
            let have = &st.committed | &st.pending;
            let missing = &needed - &have;
            if let Some(r) = missing.iter().next() {
                let start = match r {
                    range_collections::range_set::RangeSetRange::Range(r) => *r.start,
                    range_collections::range_set::RangeSetRange::RangeFrom(r) => *r.start,
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
                Target::File(f) => (end, f.clone()),
                Target::None => return Ok(0),
            }
        };
        let n = (end - offset) as usize;
        file.read_exact_at(&mut buf[..n], offset)
            .ctx(|| format!("reading blob {}", self.hash))?;
        Ok(n)
    }

    /// The size, present ranges and data of a live download, for serving;
    /// `None` once complete: the committed blob is then the one to read.
    pub(crate) fn serving_view(&self) -> Option<ServingView> {
        let st = lock(&self.state);
        if st.complete {
            return None;
        }
        let size = st.size?;
        let have = groups_to_chunks(&(&st.committed | &st.pending), size);
        let data = match &st.target {
            Target::File(f) => DataRef::File(f.clone()),
            Target::Mem(b) => DataRef::Mem(b.clone()),
            Target::None => return None,
        };
        Some(ServingView { size, have, data })
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
        let Some(inner) = self.store.upgrade() else {
            return;
        };
        let store = Store { inner };
        if let Err(e) = self.commit(&store) {
            tracing::warn!(hash = %self.hash, "could not save download progress: {e}");
        }
        let mut live = store.live();
        if live
            .partial
            .get(&self.hash)
            .is_some_and(|w| w.strong_count() == 0)
        {
            live.partial.remove(&self.hash);
        }
    }
}

/// Checks a leaf is one whole chunk group (or the short last one) and
/// returns its index.
fn check_leaf(hash: Hash, size: u64, offset: u64, len: usize) -> Result<u64, StoreError> {
    let group = offset / CHUNK_GROUP_SIZE;
    let (start, end) = group_byte_range(group, size);
    if offset != start || len as u64 != end - start {
        return Err(StoreError::Invalid(format!(
            "stream for blob {hash} has a partial chunk group at byte {offset}"
        )));
    }
    Ok(group)
}

fn decode_error(hash: Hash, e: DecodeError) -> StoreError {
    match e {
        DecodeError::ParentHashMismatch(node) => StoreError::Verification {
            hash,
            detail: format!(
                "hash pair for bytes {}..{} does not match",
                node.chunk_range().start.to_bytes(),
                node.chunk_range().end.to_bytes()
            ),
        },
        DecodeError::LeafHashMismatch(chunk) => StoreError::Verification {
            hash,
            detail: format!("chunk group at byte {} does not match", chunk.to_bytes()),
        },
        DecodeError::ParentNotFound(_) | DecodeError::LeafNotFound(_) => StoreError::Stream {
            hash,
            source: std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the stream ended before the requested ranges",
            ),
        },
        DecodeError::Io(source) => StoreError::Stream { hash, source },
    }
}

fn write_all_at(file: &File, offset: u64, data: &[u8], store: &Store) -> Result<(), StoreError> {
    file.write_all_at(data, offset).map_err(|e| {
        io_error(
            format!("writing to the store at {}", store.path().display()),
            e,
        )
    })
}

/// Reserves disk space for the whole blob, so a full disk shows up as one
/// clear error at the start of a download rather than midway.
fn reserve(file: &File, size: u64, store: &Store) -> Result<(), StoreError> {
    use rustix::fs::{FallocateFlags, fallocate};
    match fallocate(file, FallocateFlags::empty(), 0, size) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::OPNOTSUPP => Ok(()),
        Err(e) => Err(io_error(
            format!(
                "reserving {size} bytes in the store at {}",
                store.path().display()
            ),
            e.into(),
        )),
    }
}
