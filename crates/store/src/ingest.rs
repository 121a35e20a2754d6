//! Accepting verified chunk ranges from peers into a partial blob.
//!
//! A [`PartialBlob`] is the handle a download writes through. Several
//! streams (from several peers) may feed the same blob at once. Every chunk
//! group is checked against the root hash (by bao-tree's decoder) before a
//! byte of it is written, and a group that fails ends the stream with
//! [`StoreError::Verification`], storing nothing of it.
//!
//! ## Size
//! The tree's shape depends on the blob's size, which a peer announces at
//! the start of its stream, and a liar's announcement can pass checks of
//! early groups. So the size is proven first: while it is unknown, a stream
//! may carry only the blob's *last* chunk group (a request for anything at
//! or past the end, see [`effective_ranges`]), and verifying that group
//! under the announced size proves the size. Only then does the store
//! record anything, lay out the outboard, or reserve disk space.

use std::{fs::File, io::Read, ops::Range, sync::Arc};

use bao_tree::{BaoTree, ChunkNum, TreeNode};
use bytes::Bytes;
use p2pfs_proto::{
    Hash,
    chunk::{CHUNK_GROUP_SIZE, group_byte_range, groups},
};

use crate::{
    BLOCK_SIZE, ChunkRanges, Store,
    error::{StoreError, io_error},
    lock,
    partial::{PartialShared, Target},
    ranges::effective_ranges,
    stream,
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
/// is safe from GC while any handle lives. Progress is committed in batches
/// (see [`PartialBlob::flush`]); the last handle to go commits the rest.
#[derive(Debug, Clone)]
pub struct PartialBlob {
    pub(crate) shared: Arc<PartialShared>,
}

impl PartialBlob {
    pub(crate) fn new(shared: Arc<PartialShared>) -> Self {
        Self { shared }
    }

    #[cfg(test)]
    pub(crate) fn shared(&self) -> &PartialShared {
        &self.shared
    }

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
        self.shared.is_complete()
    }

    /// The chunk ranges present (committed or not), or `None` while the size
    /// is unknown.
    pub fn have(&self) -> Option<ChunkRanges> {
        self.shared.have()
    }

    /// Reads one bao-tree encoded response from `stream` and stores every
    /// chunk group that verifies against the hash.
    ///
    /// `ranges` are the ranges the sender encoded (both sides turn them into
    /// [`effective_ranges`]). The stream is the 8-byte little-endian size
    /// followed by the pre-order encoding (docs/protocol.md §3.4). While the
    /// size is not proven, the ranges must be just the last chunk group.
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
        let mut report = IngestReport::default();
        let known = {
            let st = lock(&self.shared.state);
            if st.complete {
                report.complete = true;
                return Ok(report);
            }
            st.size
        };
        if let Some(size) = known
            && size != claimed
        {
            return Err(size_lie(hash, claimed, size));
        }
        if claimed == 0 {
            return self.ingest_empty(report);
        }
        let ranges = effective_ranges(ranges, claimed);
        if known.is_none() && ranges != last_group_range(claimed) {
            return Err(StoreError::Invalid(format!(
                "the size of blob {hash} is not proven yet: ask for its last chunk group alone first"
            )));
        }
        let tree = BaoTree::new(claimed, BLOCK_SIZE);
        let mut sink = IngestSink {
            blob: self,
            proving: known.is_none().then_some(claimed),
            proof_pairs: Vec::new(),
            report: &mut report,
        };
        let result = stream::decode(hash.into(), tree, &ranges, &mut stream, &mut sink);
        result.map_err(|e| match e {
            stream::DecodeError::Verification(detail) => StoreError::Verification { hash, detail },
            stream::DecodeError::Stream(source) => StoreError::Stream { hash, source },
            stream::DecodeError::Sink(e) => e,
        })?;
        report.complete = self.is_complete();
        Ok(report)
    }

    /// Bytes present from the start of the blob, or `None` while its size
    /// is unknown.
    pub fn present_prefix(&self) -> Option<u64> {
        lock(&self.shared.state).present_prefix()
    }

    /// Waits up to `timeout` until more than `at` bytes are present from
    /// the start of the blob, or its size is proven if `at` is 0 and it is
    /// not.
    pub fn wait_prefix(&self, at: u64, timeout: std::time::Duration) {
        let st = lock(&self.shared.state);
        let grown = |st: &mut crate::partial::State| {
            st.size.is_some() && st.present_prefix().is_some_and(|p| p > at || st.complete)
        };
        let _ = self
            .shared
            .grown
            .wait_timeout_while(st, timeout, |st| !grown(st));
    }

    /// Writes out and commits everything verified so far.
    pub fn flush(&self) -> Result<(), StoreError> {
        let committed = self.shared.commit();
        committed.and(self.shared.take_background_error())
    }

    /// Reads bytes at `offset` if every chunk group they touch is present.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        self.shared.read_at(offset, buf)
    }

    fn store(&self) -> &Store {
        &self.shared.store
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
        self.shared.commit()?;
        report.complete = true;
        Ok(report)
    }

    /// The last group verified under the claimed size: the size is proven.
    /// Sets up where the bytes go and records the group and its path.
    fn adopt_size(
        &self,
        size: u64,
        offset: u64,
        data: Bytes,
        pairs: &[(TreeNode, [u8; 64])],
        report: &mut IngestReport,
    ) -> Result<(), StoreError> {
        let hash = self.shared.hash;
        let small = size <= self.store().inner.opts.inline_max;
        {
            let mut st = lock(&self.shared.state);
            match st.size {
                // Another stream proved it first.
                Some(s) if s == size => {}
                Some(s) => return Err(size_lie(hash, size, s)),
                None if small => {
                    st.size = Some(size);
                    st.target = Target::Mem(vec![0; size as usize]);
                }
                None => st.size = Some(size),
            }
            st.pending_pairs.extend(pairs.iter().copied());
        }
        if !small {
            let file = self.shared.data_file()?;
            reserve(&file, size, hash, self.store())?;
        }
        let g = offset / CHUNK_GROUP_SIZE;
        self.write_groups(offset, g..g + 1, data, report)
    }

    /// Stores a run of verified groups of a blob of known size with one
    /// write, then commits if one is due (in the background unless the
    /// blob is now complete).
    fn write_groups(
        &self,
        offset: u64,
        groups: Range<u64>,
        data: Bytes,
        report: &mut IngestReport,
    ) -> Result<(), StoreError> {
        let size = self.size().unwrap_or(0);
        let file = {
            let mut st = lock(&self.shared.state);
            if groups.clone().all(|g| st.has(g)) {
                return Ok(());
            }
            match &mut st.target {
                Target::Mem(bytes) => {
                    let start = offset as usize;
                    let Some(slot) = bytes.get_mut(start..start + data.len()) else {
                        return Err(StoreError::Corrupt("inline buffer too small".into()));
                    };
                    slot.copy_from_slice(&data);
                    None
                }
                Target::File(f) => Some(f.clone()),
                Target::None | Target::Committed => return Ok(()),
            }
        };
        if let Some(file) = &file {
            self.shared.write_file(file, offset, &data).map_err(|e| {
                io_error(
                    format!("writing to the store at {}", self.store().path().display()),
                    e,
                )
            })?;
        }
        let (full, due) = {
            let mut st = lock(&self.shared.state);
            for g in groups {
                if !st.has(g) {
                    let (s, e) = group_byte_range(g, size);
                    st.add_pending(g, e - s);
                    report.new_groups += 1;
                    report.new_bytes += e - s;
                }
            }
            // What went to the data file is what a reader may want next.
            if let (Some(tap), Some(_)) = (&mut st.tap, &file) {
                tap.offer(offset, &data);
            }
            self.shared.grown.notify_all();
            (st.is_full(), st.commit_due(self.store()))
        };
        if full {
            self.shared.commit()
        } else {
            if due {
                self.shared.commit_in_background();
            }
            self.shared.take_background_error()
        }
    }
}

/// Receives what the decoder verified.
struct IngestSink<'a> {
    blob: &'a PartialBlob,
    /// The claimed size, while this stream is proving it.
    proving: Option<u64>,
    /// Hash pairs on the path to the last group, kept until it proves the size.
    proof_pairs: Vec<(TreeNode, [u8; 64])>,
    report: &'a mut IngestReport,
}

impl stream::Sink for IngestSink<'_> {
    fn pair(&mut self, node: TreeNode, pair: [u8; 64]) -> Result<(), StoreError> {
        if self.proving.is_some() {
            self.proof_pairs.push((node, pair));
        } else {
            lock(&self.blob.shared.state)
                .pending_pairs
                .insert(node, pair);
        }
        Ok(())
    }

    fn groups(&mut self, offset: u64, groups: Range<u64>, data: Bytes) -> Result<(), StoreError> {
        match self.proving.take() {
            // A proving stream carries only the last group.
            Some(size) => self
                .blob
                .adopt_size(size, offset, data, &self.proof_pairs, self.report),
            None => self.blob.write_groups(offset, groups, data, self.report),
        }
    }
}

/// The chunk range of the last group of a blob of `size` bytes.
fn last_group_range(size: u64) -> ChunkRanges {
    let last = (groups(size) - 1) << BLOCK_SIZE.chunk_log();
    ChunkRanges::from(ChunkNum(last)..ChunkNum::chunks(size))
}

fn size_lie(hash: Hash, claimed: u64, size: u64) -> StoreError {
    StoreError::Verification {
        hash,
        detail: format!("peer claims {claimed} bytes, the verified size is {size}"),
    }
}

/// Reserves disk space for the whole blob, so a full disk shows up as one
/// clear error at the start of a download rather than midway.
fn reserve(file: &File, size: u64, hash: Hash, store: &Store) -> Result<(), StoreError> {
    use rustix::fs::{FallocateFlags, fallocate, fstatvfs};
    let context = || {
        let free = fstatvfs(file)
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
            .unwrap_or(0);
        format!(
            "blob {hash} needs {size} bytes; the store at {} has {free} bytes free",
            store.path().display()
        )
    };
    match fallocate(file, FallocateFlags::empty(), 0, size) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::OPNOTSUPP => Ok(()),
        Err(e) if e == rustix::io::Errno::NOSPC || e == rustix::io::Errno::FBIG => {
            Err(StoreError::NoSpace { context: context() })
        }
        Err(e) => Err(io_error(context(), e.into())),
    }
}
