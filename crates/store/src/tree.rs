//! Incremental construction of a blob's hash tree, one pass over the bytes.
//!
//! [`TreeHasher`] consumes a blob as it arrives (a file being imported, a
//! stream from stdin, writes through the mount) and produces two things at
//! once: the BLAKE3 root hash, identical to `b3sum`, and the *post-order
//! outboard*, the hash pairs of every tree node above the 16 KiB chunk
//! groups, in the order bao-tree's `PostOrderOutboard` lays them out.
//!
//! Post order is the order in which subtrees complete, so pairs can be
//! emitted as soon as their right child is known, with no need to know the
//! blob's size in advance. The rule is BLAKE3's own chaining-value stack: a
//! group's chaining value is pushed only once more input is known to follow
//! (so the last group can still become the root), and before a push the
//! stack is merged down to `popcount(groups so far)` entries.

use blake3::hazmat::{
    ChainingValue, HasherExt, Mode, merge_subtrees_non_root, merge_subtrees_root,
};
use p2pfs_proto::{Hash, chunk::CHUNK_GROUP_SIZE};

const GROUP: usize = CHUNK_GROUP_SIZE as usize;

/// Hashes a blob incrementally and emits its post-order outboard.
pub(crate) struct TreeHasher {
    /// Chaining values of completed subtrees, largest (leftmost) first.
    stack: Vec<ChainingValue>,
    /// Groups whose chaining values went onto the stack.
    groups_done: u64,
    /// The newest group's bytes, held back until we know whether more follow.
    buf: Box<[u8; GROUP]>,
    buf_len: usize,
}

impl std::fmt::Debug for TreeHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeHasher")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl TreeHasher {
    pub(crate) fn new() -> Self {
        Self {
            stack: Vec::with_capacity(64),
            groups_done: 0,
            buf: Box::new([0; GROUP]),
            buf_len: 0,
        }
    }

    /// Bytes consumed so far.
    pub(crate) fn len(&self) -> u64 {
        self.groups_done * CHUNK_GROUP_SIZE + self.buf_len as u64
    }

    /// Consumes `data`, appending every completed hash pair (64 bytes: left
    /// then right child) to `pairs`.
    pub(crate) fn update(&mut self, mut data: &[u8], pairs: &mut Vec<u8>) {
        while !data.is_empty() {
            if self.buf_len == GROUP {
                // More input follows, so the held-back group is not the root.
                let cv = group_cv(&self.buf[..], self.groups_done);
                self.push(cv, pairs);
                self.buf_len = 0;
            }
            if self.buf_len == 0 {
                // Hash whole groups straight from the input, keeping the last
                // one (it may turn out to be the final group).
                while data.len() > GROUP {
                    let cv = group_cv(&data[..GROUP], self.groups_done);
                    self.push(cv, pairs);
                    data = &data[GROUP..];
                }
            }
            let take = (GROUP - self.buf_len).min(data.len());
            self.buf[self.buf_len..self.buf_len + take].copy_from_slice(&data[..take]);
            self.buf_len += take;
            data = &data[take..];
        }
    }

    /// Ends the blob: appends the remaining pairs (the right edge of the
    /// tree, root last) and returns the root hash.
    pub(crate) fn finalize(mut self, pairs: &mut Vec<u8>) -> Hash {
        let last = &self.buf[..self.buf_len];
        if self.groups_done == 0 {
            // Zero or one group: the group is the root, hashed as plain BLAKE3.
            return Hash::from(blake3::hash(last));
        }
        let mut right = group_cv(last, self.groups_done);
        merge_down(&mut self.stack, self.groups_done, pairs);
        while let Some(left) = self.stack.pop() {
            pairs.extend_from_slice(&left);
            pairs.extend_from_slice(&right);
            if self.stack.is_empty() {
                return Hash::from(merge_subtrees_root(&left, &right, Mode::Hash));
            }
            right = merge_subtrees_non_root(&left, &right, Mode::Hash);
        }
        // Unreachable: groups_done > 0 leaves at least one entry to merge with.
        Hash::from(blake3::Hash::from_bytes(right))
    }

    fn push(&mut self, cv: ChainingValue, pairs: &mut Vec<u8>) {
        merge_down(&mut self.stack, self.groups_done, pairs);
        self.stack.push(cv);
        self.groups_done += 1;
    }
}

/// Merges the stack until it holds one entry per set bit of `groups`,
/// emitting each merged pair.
fn merge_down(stack: &mut Vec<ChainingValue>, groups: u64, pairs: &mut Vec<u8>) {
    while stack.len() > groups.count_ones() as usize {
        let (Some(right), Some(left)) = (stack.pop(), stack.pop()) else {
            return;
        };
        pairs.extend_from_slice(&left);
        pairs.extend_from_slice(&right);
        stack.push(merge_subtrees_non_root(&left, &right, Mode::Hash));
    }
}

/// The non-root chaining value of chunk group `index`.
fn group_cv(data: &[u8], index: u64) -> ChainingValue {
    let mut h = blake3::Hasher::new();
    h.set_input_offset(index * CHUNK_GROUP_SIZE);
    h.update(data);
    h.finalize_non_root()
}

#[cfg(test)]
mod tests {
    use bao_tree::{BlockSize, io::outboard::PostOrderMemOutboard};

    use super::*;

    fn reference(data: &[u8]) -> (Hash, Vec<u8>) {
        let ob = PostOrderMemOutboard::create(data, BlockSize::from_chunk_log(4));
        (Hash::from(ob.root), ob.data)
    }

    fn ours(data: &[u8], split: usize) -> (Hash, Vec<u8>) {
        let mut h = TreeHasher::new();
        let mut pairs = Vec::new();
        for piece in data.chunks(split.max(1)) {
            h.update(piece, &mut pairs);
        }
        assert_eq!(h.len(), data.len() as u64);
        let root = h.finalize(&mut pairs);
        (root, pairs)
    }

    #[test]
    fn matches_bao_tree_and_blake3_at_boundary_sizes() {
        let g = GROUP;
        let sizes = [
            0,
            1,
            1023,
            1024,
            1025,
            g - 1,
            g,
            g + 1,
            2 * g,
            2 * g + 1,
            3 * g,
            4 * g,
            4 * g + 1,
            5 * g - 7,
            7 * g + 5,
            8 * g,
            8 * g + 1,
            33 * g + 100,
            (1 << 20) + 17,
        ];
        let mut data = vec![0u8; sizes.iter().copied().max().unwrap_or(0)];
        fastrand::fill(&mut data);
        for size in sizes {
            let d = &data[..size];
            let expected = reference(d);
            assert_eq!(
                expected.0,
                Hash::of(d),
                "bao-tree root == blake3, size {size}"
            );
            for split in [1, 1000, g - 1, g, g + 1, 3 * g + 5, usize::MAX] {
                if split == 1 && size > 40_000 {
                    continue;
                }
                assert_eq!(ours(d, split), expected, "size {size}, split {split}");
            }
        }
    }

    #[test]
    fn matches_bao_tree_at_random_sizes() {
        let mut data = vec![0u8; 600_000];
        fastrand::fill(&mut data);
        for _ in 0..200 {
            let size = fastrand::usize(..data.len());
            let split = fastrand::usize(1..100_000);
            assert_eq!(ours(&data[..size], split), reference(&data[..size]));
        }
    }
}
