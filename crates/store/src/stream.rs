//! The verified stream of docs/protocol.md §3.4, encoded and decoded in
//! large batches.
//!
//! bao-tree's [`ResponseIterRef`] says what comes next (a parent's hash
//! pair or a chunk group); this module moves the bytes. Encoding reads the
//! blob in windows of up to [`WINDOW`] bytes instead of one `pread` per
//! group and emits the stream as [`Bytes`] chunks that the network layer
//! sends without copying. Decoding reads each group straight into a batch
//! buffer, verifies it in place, and hands whole runs of verified groups to
//! the store, which writes each run with one `pwrite`.

use std::{
    io::{self, Read},
    ops::Range,
};

use bao_tree::{
    BaoTree, ChunkNum, ChunkRangesRef, TreeNode,
    io::sync::truncate_ranges,
    iter::{BaoChunk, ResponseIterRef},
};
use blake3::hazmat::{HasherExt, Mode, merge_subtrees_non_root, merge_subtrees_root};
use bytes::{Bytes, BytesMut};
use p2pfs_proto::chunk::CHUNK_GROUP_SIZE;

use crate::window;

/// Bytes read from the blob at a time when encoding; bytes of verified
/// groups written at a time when decoding.
pub(crate) const WINDOW: usize = window::SIZE;

/// Bytes per batch handed to the network when encoding.
pub(crate) const OUT_BATCH: usize = 256 * 1024;

/// The chaining value of a run of chunks starting at `start_chunk`.
pub(crate) fn subtree_cv(start_chunk: u64, data: &[u8], is_root: bool) -> blake3::Hash {
    if is_root {
        return blake3::hash(data);
    }
    let mut h = blake3::Hasher::new();
    h.set_input_offset(start_chunk * 1024);
    h.update(data);
    blake3::Hash::from(h.finalize_non_root())
}

/// The chaining value of a parent node.
pub(crate) fn parent_cv(pair: &[u8; 64], is_root: bool) -> blake3::Hash {
    let mut l = [0u8; 32];
    let mut r = [0u8; 32];
    l.copy_from_slice(&pair[..32]);
    r.copy_from_slice(&pair[32..]);
    if is_root {
        merge_subtrees_root(&l, &r, Mode::Hash)
    } else {
        blake3::Hash::from(merge_subtrees_non_root(&l, &r, Mode::Hash))
    }
}

/// The chaining values still to be checked, in pre-order: the state of a
/// walk over the tree that verifies each pair and group against the root.
struct Expected(Vec<blake3::Hash>);

impl Expected {
    fn new(root: blake3::Hash) -> Self {
        Self(vec![root])
    }

    fn pop(&mut self) -> blake3::Hash {
        self.0.pop().unwrap_or(blake3::Hash::from_bytes([0; 32]))
    }

    /// Checks a parent's hash pair; if it matches, the children the walk
    /// will visit are expected next.
    fn parent(&mut self, pair: &[u8; 64], is_root: bool, left: bool, right: bool) -> bool {
        if parent_cv(pair, is_root) != self.pop() {
            return false;
        }
        let (l, r) = crate::outboard::split_pair(pair);
        if right {
            self.0.push(r);
        }
        if left {
            self.0.push(l);
        }
        true
    }

    /// Checks a group's bytes.
    fn leaf(&mut self, start_chunk: u64, data: &[u8], is_root: bool) -> bool {
        subtree_cv(start_chunk, data, is_root) == self.pop()
    }
}

/// Where an encoder gets hash pairs and bytes.
pub(crate) trait Source {
    /// The hash pair of `node` (zeros if unknown).
    fn pair(&self, node: TreeNode) -> io::Result<[u8; 64]>;
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

/// Why encoding stopped.
#[derive(Debug)]
pub(crate) enum EncodeError {
    /// Local data or outboard does not match the hash.
    Corrupt(String),
    /// Reading local data failed.
    Read(io::Error),
    /// The sink refused a chunk (the peer went away).
    Sink(io::Error),
}

/// Encodes `ranges` (effective, see §3.3) of the blob with root `root`,
/// calling `sink` with chunks of the stream (after the size prefix, which
/// the caller writes). With `validate`, every pair and group is checked
/// against the root before it is sent.
pub(crate) fn encode(
    root: blake3::Hash,
    tree: BaoTree,
    ranges: &ChunkRangesRef,
    src: &dyn Source,
    validate: bool,
    sink: &mut dyn FnMut(Vec<Bytes>) -> io::Result<()>,
) -> Result<(), EncodeError> {
    let size = tree.size();
    // Output: runs of hash pairs copied into `pairs`, and groups as slices
    // of the read window (no copy), handed over in batches.
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batched = 0usize;
    let mut pairs = BytesMut::new();
    let mut expected = Expected::new(root);
    // The read-ahead window: bytes [window_start, window_start + window.len()).
    // Each refill takes another buffer: the previous one lives on in the
    // slices the network still holds, and is recycled when they are dropped.
    let mut window = Bytes::new();
    let mut window_start = 0u64;
    // A range reaching the last chunk becomes open-ended, as bao-tree
    // expects: otherwise the last group would be split into chunks.
    let ranges = truncate_ranges(ranges, size);
    for chunk in ResponseIterRef::new(tree, ranges) {
        match chunk {
            BaoChunk::Parent {
                node,
                is_root,
                left,
                right,
                ..
            } => {
                let pair = src.pair(node).map_err(EncodeError::Read)?;
                if validate && !expected.parent(&pair, is_root, left, right) {
                    let start = node.chunk_range().start.to_bytes();
                    return Err(EncodeError::Corrupt(format!(
                        "outboard is damaged near byte {start}"
                    )));
                }
                if pairs.capacity() - pairs.len() < 64 {
                    pairs.reserve(64 * 64);
                }
                pairs.extend_from_slice(&pair);
                batched += 64;
            }
            BaoChunk::Leaf {
                start_chunk,
                size: len,
                is_root,
                ..
            } => {
                let offset = start_chunk.to_bytes();
                let end = offset + len as u64;
                if offset < window_start || end > window_start + window.len() as u64 {
                    // Refill the window up to the end of this range.
                    let range_end = containing_range_end(ranges, start_chunk).min(size);
                    let want = (range_end.saturating_sub(offset) as usize).clamp(len, WINDOW);
                    window = window::POOL
                        .read(want, |buf| src.read_exact_at(offset, buf))
                        .map_err(|e| match e.kind() {
                            io::ErrorKind::UnexpectedEof => EncodeError::Corrupt(format!(
                                "data is shorter than its size (at byte {offset})"
                            )),
                            _ => EncodeError::Read(e),
                        })?;
                    window_start = offset;
                }
                let at = (offset - window_start) as usize;
                let data = window.slice(at..at + len);
                if validate && !expected.leaf(start_chunk.0, &data, is_root) {
                    return Err(EncodeError::Corrupt(format!(
                        "data is damaged at byte {offset}"
                    )));
                }
                if !pairs.is_empty() {
                    batch.push(pairs.split().freeze());
                }
                batch.push(data);
                batched += len;
            }
        }
        if batched >= OUT_BATCH {
            if !pairs.is_empty() {
                batch.push(pairs.split().freeze());
            }
            sink(std::mem::take(&mut batch)).map_err(EncodeError::Sink)?;
            batched = 0;
        }
    }
    if !pairs.is_empty() {
        batch.push(pairs.split().freeze());
    }
    if !batch.is_empty() {
        sink(batch).map_err(EncodeError::Sink)?;
    }
    Ok(())
}

/// The byte offset where the range of `ranges` containing `chunk` ends.
fn containing_range_end(ranges: &ChunkRangesRef, chunk: ChunkNum) -> u64 {
    let b = ranges.boundaries();
    // The first boundary above `chunk` ends its range (if at an odd index).
    let i = b.partition_point(|x| *x <= chunk);
    b.get(i).map_or(u64::MAX, |c| c.to_bytes())
}

/// What a decoder does with verified items.
pub(crate) trait Sink {
    /// A verified hash pair.
    fn pair(&mut self, node: TreeNode, pair: [u8; 64]) -> Result<(), crate::StoreError>;
    /// A run of verified groups: `data` starts at `offset` and covers
    /// groups `groups`.
    fn groups(
        &mut self,
        offset: u64,
        groups: Range<u64>,
        data: Bytes,
    ) -> Result<(), crate::StoreError>;
}

/// Why decoding stopped.
#[derive(Debug)]
pub(crate) enum DecodeError {
    /// The sender's bytes do not match the hash.
    Verification(String),
    /// The stream failed or ended early.
    Stream(io::Error),
    /// The sink failed (our own store).
    Sink(crate::StoreError),
}

/// Decodes a stream of `ranges` (effective) of the blob with root `root`
/// from `reader` (positioned after the size prefix), verifying each pair
/// and group before passing it to `sink`. Groups that verified before a
/// failure are passed on before the error is returned.
pub(crate) fn decode(
    root: blake3::Hash,
    tree: BaoTree,
    ranges: &ChunkRangesRef,
    mut reader: impl Read,
    sink: &mut dyn Sink,
) -> Result<(), DecodeError> {
    let mut expected = Expected::new(root);
    // Groups are read into a pooled window at an aligned address, so the
    // store can write it to disk directly and a follower can read it.
    let mut batch = Batch {
        window: None,
        len: 0,
        offset: 0,
        groups: 0..0,
    };
    let ranges = truncate_ranges(ranges, tree.size());
    let result = (|| {
        for chunk in ResponseIterRef::new(tree, ranges) {
            match chunk {
                BaoChunk::Parent {
                    node,
                    is_root,
                    left,
                    right,
                    ..
                } => {
                    let mut pair = [0u8; 64];
                    reader.read_exact(&mut pair).map_err(stream_error)?;
                    if !expected.parent(&pair, is_root, left, right) {
                        let r = node.chunk_range();
                        return Err(DecodeError::Verification(format!(
                            "hash pair for bytes {}..{} does not match",
                            r.start.to_bytes(),
                            r.end.to_bytes()
                        )));
                    }
                    sink.pair(node, pair).map_err(DecodeError::Sink)?;
                }
                BaoChunk::Leaf {
                    start_chunk,
                    size,
                    is_root,
                    ..
                } => {
                    let offset = start_chunk.to_bytes();
                    let group = offset / CHUNK_GROUP_SIZE;
                    let contiguous = batch.groups.end == group && batch.len > 0;
                    if !contiguous || batch.len + size > WINDOW {
                        batch.flush(sink)?;
                        batch.offset = offset;
                        batch.groups = group..group;
                    }
                    let at = batch.len;
                    let Some(slot) = batch
                        .window
                        .get_or_insert_with(|| window::POOL.take())
                        .as_mut()
                        .get_mut(at..at + size)
                    else {
                        return Err(DecodeError::Verification(format!(
                            "chunk group at byte {offset} is too large"
                        )));
                    };
                    reader.read_exact(slot).map_err(stream_error)?;
                    if !expected.leaf(start_chunk.0, slot, is_root) {
                        return Err(DecodeError::Verification(format!(
                            "chunk group at byte {offset} does not match"
                        )));
                    }
                    batch.len += size;
                    batch.groups.end = group + 1;
                }
            }
        }
        Ok(())
    })();
    // Keep what verified, whatever happened after it.
    let flushed = batch.flush(sink);
    result.and(flushed)
}

/// Verified groups gathered for one write.
struct Batch {
    /// The buffer being filled, taken from the pool when needed.
    window: Option<window::WindowMut>,
    len: usize,
    offset: u64,
    groups: Range<u64>,
}

impl Batch {
    fn flush(&mut self, sink: &mut dyn Sink) -> Result<(), DecodeError> {
        let Some(window) = self.window.take().filter(|_| self.len > 0) else {
            return Ok(());
        };
        let r = sink.groups(self.offset, self.groups.clone(), window.freeze(self.len));
        self.len = 0;
        self.groups = self.groups.end..self.groups.end;
        r.map_err(DecodeError::Sink)
    }
}

fn stream_error(e: io::Error) -> DecodeError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        DecodeError::Stream(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the stream ended before the requested ranges",
        ))
    } else {
        DecodeError::Stream(e)
    }
}

#[cfg(test)]
mod tests {
    use bao_tree::{BlockSize, io::outboard::PostOrderMemOutboard, io::sync::Outboard};

    use super::*;

    struct Mem {
        ob: PostOrderMemOutboard,
        data: Vec<u8>,
    }

    impl Source for Mem {
        fn pair(&self, node: TreeNode) -> io::Result<[u8; 64]> {
            Ok(self
                .ob
                .load(node)?
                .map(|p| crate::outboard::join_pair(&p))
                .unwrap_or([0; 64]))
        }
        fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
            let s = offset as usize;
            buf.copy_from_slice(&self.data[s..s + buf.len()]);
            Ok(())
        }
    }

    #[test]
    fn encodes_like_bao_tree() {
        for size in [1usize, 16384, 16385, 50_000, 200_000] {
            let mut data = vec![0u8; size];
            fastrand::fill(&mut data);
            let ob = PostOrderMemOutboard::create(&data, BlockSize::from_chunk_log(4));
            let root = ob.root;
            let tree = ob.tree;
            let ranges = crate::ChunkRanges::from(ChunkNum(0)..ChunkNum::chunks(size as u64));
            let mut want = Vec::new();
            bao_tree::io::sync::encode_ranges_validated(&data[..], &ob, &ranges, &mut want)
                .unwrap();
            let src = Mem { ob, data };
            // Twice each, and a different blob in between on this thread:
            // buffers kept between calls must not leak into the output.
            for validate in [false, true, false, true] {
                let mut got = Vec::new();
                encode(root, tree, &ranges, &src, validate, &mut |v| {
                    for b in v {
                        got.extend_from_slice(&b);
                    }
                    Ok(())
                })
                .unwrap_or_else(|e| panic!("size {size} validate {validate}: {e:?}"));
                assert_eq!(got, want, "size {size}");
            }
        }
    }
}
