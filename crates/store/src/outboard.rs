//! A blob's outboard (the hash pairs of its tree), kept in redb.
//!
//! The outboard is laid out in bao-tree's *post order* (the order
//! [`crate::tree::TreeHasher`] emits it) and cut into segments of
//! [`SEGMENT_PAIRS`] pairs, one redb value each, keyed by `(hash, segment)`.
//! Segments keep every value small (a 1 GiB blob has a 4 MiB outboard: 1024
//! segments of 4 KiB), so serving a few chunk groups reads a few pages, not
//! the whole outboard, and memory stays bounded whatever the blob's size.
//!
//! A partial blob has only some pairs; missing pairs read as zeros, which
//! never verify (bao-tree's convention for sparse outboards).

use std::{
    cell::RefCell,
    collections::BTreeMap,
    io,
    time::{Duration, Instant},
};

use bao_tree::{BaoTree, TreeNode, io::sync::Outboard};
use p2pfs_proto::Hash;
use redb::{ReadableTable, Table};

use crate::{
    error::{DbContext, StoreError},
    tables::{HashKey, SEGMENT_BYTES, SEGMENT_PAIRS},
};

/// How many recently used segments a [`DbOutboard`] keeps in memory.
const CACHED_SEGMENTS: usize = 16;

/// How long a [`DbOutboard`] keeps one redb snapshot. A read transaction
/// pins the pages it sees, so a slow peer must not hold one for the whole
/// transfer while downloads keep committing.
const SNAPSHOT_MAX_AGE: Duration = Duration::from_secs(1);

pub(crate) type OutboardTable = redb::ReadOnlyTable<(&'static HashKey, u64), &'static [u8]>;
pub(crate) type OutboardTableMut<'t> = Table<'t, (&'static HashKey, u64), &'static [u8]>;

/// Something that may know pairs not yet written to redb (a download in
/// progress), consulted before the database.
pub(crate) trait PendingPairs {
    fn pending_pair(&self, node: TreeNode) -> Option<[u8; 64]>;
}

/// Reads one blob's outboard from redb.
pub(crate) struct DbOutboard<'a> {
    hash: Hash,
    tree: BaoTree,
    /// The current snapshot and when it was taken.
    table: RefCell<(OutboardTable, Instant)>,
    /// Opens a fresh snapshot.
    reopen: &'a dyn Fn() -> Result<OutboardTable, StoreError>,
    pending: Option<&'a dyn PendingPairs>,
    cache: RefCell<Vec<(u64, Vec<u8>)>>,
}

impl std::fmt::Debug for DbOutboard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbOutboard")
            .field("hash", &self.hash)
            .field("size", &self.tree.size())
            .finish_non_exhaustive()
    }
}

impl<'a> DbOutboard<'a> {
    pub(crate) fn new(
        hash: Hash,
        tree: BaoTree,
        table: OutboardTable,
        reopen: &'a dyn Fn() -> Result<OutboardTable, StoreError>,
    ) -> Self {
        Self {
            hash,
            tree,
            table: RefCell::new((table, Instant::now())),
            reopen,
            pending: None,
            cache: RefCell::new(Vec::new()),
        }
    }

    /// Also consults the pairs of a download in progress.
    pub(crate) fn with_pending(mut self, pending: &'a dyn PendingPairs) -> Self {
        self.pending = Some(pending);
        self
    }

    /// Replaces the snapshot with a fresh one.
    fn refresh(&self) -> io::Result<()> {
        let table = (self.reopen)().map_err(io::Error::other)?;
        *self.table.borrow_mut() = (table, Instant::now());
        self.cache.borrow_mut().clear();
        Ok(())
    }

    /// The pair at post-order `offset`, from the segment cache or the snapshot.
    fn cached_pair(&self, offset: u64) -> io::Result<[u8; 64]> {
        let index = offset / SEGMENT_PAIRS;
        let mut cache = self.cache.borrow_mut();
        if let Some(pos) = cache.iter().position(|(i, _)| *i == index) {
            let entry = cache.remove(pos);
            let pair = pair_at(&entry.1, offset);
            cache.push(entry);
            return Ok(pair);
        }
        let bytes = read_segment(&self.table.borrow().0, &self.hash, index)?;
        let pair = pair_at(&bytes, offset);
        if cache.len() >= CACHED_SEGMENTS {
            cache.remove(0);
        }
        cache.push((index, bytes));
        Ok(pair)
    }

    fn load_pair(&self, node: TreeNode, offset: u64) -> io::Result<[u8; 64]> {
        if let Some(p) = self.pending.and_then(|p| p.pending_pair(node)) {
            return Ok(p);
        }
        if self.table.borrow().1.elapsed() > SNAPSHOT_MAX_AGE {
            self.refresh()?;
        }
        let pair = self.cached_pair(offset)?;
        if pair != [0; 64] || self.pending.is_none() {
            return Ok(pair);
        }
        // The download may have committed this pair since our snapshot.
        if let Some(p) = self.pending.and_then(|p| p.pending_pair(node)) {
            return Ok(p);
        }
        self.refresh()?;
        self.cached_pair(offset)
    }
}

impl Outboard for DbOutboard<'_> {
    fn root(&self) -> blake3::Hash {
        self.hash.into()
    }

    fn tree(&self) -> BaoTree {
        self.tree
    }

    fn load(&self, node: TreeNode) -> io::Result<Option<(blake3::Hash, blake3::Hash)>> {
        let Some(offset) = self.tree.post_order_offset(node) else {
            return Ok(None);
        };
        let pair = self.load_pair(node, offset.value())?;
        Ok(Some(split_pair(&pair)))
    }
}

fn read_segment(table: &OutboardTable, hash: &Hash, index: u64) -> io::Result<Vec<u8>> {
    let guard = table
        .get((hash.as_bytes(), index))
        .map_err(io::Error::other)?;
    Ok(guard.map(|g| g.value().to_vec()).unwrap_or_default())
}

fn pair_at(segment: &[u8], offset: u64) -> [u8; 64] {
    let start = ((offset % SEGMENT_PAIRS) * 64) as usize;
    segment
        .get(start..start + 64)
        .and_then(|s| s.try_into().ok())
        .unwrap_or([0; 64])
}

/// Splits a 64-byte pair into its left and right child hashes.
pub(crate) fn split_pair(pair: &[u8; 64]) -> (blake3::Hash, blake3::Hash) {
    let mut l = [0u8; 32];
    let mut r = [0u8; 32];
    l.copy_from_slice(&pair[..32]);
    r.copy_from_slice(&pair[32..]);
    (blake3::Hash::from_bytes(l), blake3::Hash::from_bytes(r))
}

/// Joins a left and right child hash into a 64-byte pair.
pub(crate) fn join_pair(pair: &(blake3::Hash, blake3::Hash)) -> [u8; 64] {
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(pair.0.as_bytes());
    out[32..].copy_from_slice(pair.1.as_bytes());
    out
}

/// Writes a whole post-order outboard (`bytes` may arrive in pieces of any
/// size) as segments.
pub(crate) struct SegmentWriter<'t, 'a> {
    table: &'a mut OutboardTableMut<'t>,
    hash: HashKey,
    buf: Vec<u8>,
    next: u64,
}

impl<'t, 'a> SegmentWriter<'t, 'a> {
    pub(crate) fn new(table: &'a mut OutboardTableMut<'t>, hash: &Hash) -> Self {
        Self {
            table,
            hash: *hash.as_bytes(),
            buf: Vec::with_capacity(SEGMENT_BYTES as usize),
            next: 0,
        }
    }

    pub(crate) fn write(&mut self, mut bytes: &[u8]) -> Result<(), StoreError> {
        while !bytes.is_empty() {
            let take = (SEGMENT_BYTES as usize - self.buf.len()).min(bytes.len());
            self.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.buf.len() == SEGMENT_BYTES as usize {
                self.flush_segment()?;
            }
        }
        Ok(())
    }

    pub(crate) fn finish(mut self) -> Result<(), StoreError> {
        if !self.buf.is_empty() {
            self.flush_segment()?;
        }
        Ok(())
    }

    fn flush_segment(&mut self) -> Result<(), StoreError> {
        self.table
            .insert((&self.hash, self.next), self.buf.as_slice())
            .db()?;
        self.buf.clear();
        self.next += 1;
        Ok(())
    }
}

/// Writes scattered pairs (`post-order offset → pair`) into the segments of
/// a blob whose outboard has `outboard_bytes` bytes in all.
pub(crate) fn patch_segments(
    table: &mut OutboardTableMut<'_>,
    hash: &Hash,
    outboard_bytes: u64,
    pairs: &BTreeMap<u64, [u8; 64]>,
) -> Result<(), StoreError> {
    let key = hash.as_bytes();
    let mut iter = pairs.iter().peekable();
    while let Some(&(&first, _)) = iter.peek() {
        let index = first / SEGMENT_PAIRS;
        let seg_start = index * SEGMENT_BYTES;
        let seg_len = SEGMENT_BYTES.min(outboard_bytes.saturating_sub(seg_start)) as usize;
        let mut seg = table
            .get((key, index))
            .db()?
            .map(|g| g.value().to_vec())
            .unwrap_or_default();
        seg.resize(seg_len, 0);
        while let Some((&offset, pair)) = iter.next_if(|(o, _)| **o / SEGMENT_PAIRS == index) {
            let start = ((offset % SEGMENT_PAIRS) * 64) as usize;
            let Some(slot) = seg.get_mut(start..start + 64) else {
                return Err(StoreError::Corrupt(format!(
                    "outboard pair {offset} lies past the end of blob {hash}'s tree"
                )));
            };
            slot.copy_from_slice(pair);
        }
        table.insert((key, index), seg.as_slice()).db()?;
    }
    Ok(())
}

/// Removes every segment of a blob.
pub(crate) fn delete_segments(
    table: &mut OutboardTableMut<'_>,
    hash: &Hash,
) -> Result<(), StoreError> {
    let key = hash.as_bytes();
    table
        .retain_in((key, 0)..=(key, u64::MAX), |_, _| false)
        .db()
}
