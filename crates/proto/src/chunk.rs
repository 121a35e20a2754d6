//! Geometry of the verified-streaming tree.
//!
//! BLAKE3 splits input into 1 KiB *chunks* and hashes them into a binary
//! tree. p2pfs stores and transfers whole *chunk groups* of 16 chunks
//! (16 KiB, bao-tree block size 4): the outboard keeps one hash pair per tree
//! node above the groups, the have-map records groups, and a peer verifies
//! each group against the root hash before it writes it.

/// Bytes in a BLAKE3 chunk.
pub const CHUNK_SIZE: u64 = 1024;

/// log2 of the chunks in a group: the bao-tree block size.
pub const CHUNK_GROUP_LOG: u8 = 4;

/// Bytes in a chunk group (16 KiB).
pub const CHUNK_GROUP_SIZE: u64 = CHUNK_SIZE << CHUNK_GROUP_LOG;

/// Bytes of one outboard entry: the left and right child hashes of a node.
pub const HASH_PAIR_SIZE: u64 = 64;

/// Number of chunk groups a blob of `size` bytes has (0 for an empty blob).
pub const fn groups(size: u64) -> u64 {
    size.div_ceil(CHUNK_GROUP_SIZE)
}

/// The byte range `[start, end)` of group `index` in a blob of `size` bytes.
pub const fn group_byte_range(index: u64, size: u64) -> (u64, u64) {
    let start = index.saturating_mul(CHUNK_GROUP_SIZE);
    let end = start.saturating_add(CHUNK_GROUP_SIZE);
    (
        if start < size { start } else { size },
        if end < size { end } else { size },
    )
}

/// The groups `[first, last)` that cover the bytes `[start, end)`.
pub const fn groups_covering(start: u64, end: u64) -> (u64, u64) {
    (start / CHUNK_GROUP_SIZE, end.div_ceil(CHUNK_GROUP_SIZE))
}

/// Bytes of the outboard of a blob of `size` bytes: one pair per parent
/// node above the chunk groups, `groups - 1` of them.
pub const fn outboard_size(size: u64) -> u64 {
    let g = groups(size);
    if g <= 1 { 0 } else { (g - 1) * HASH_PAIR_SIZE }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_counts_at_the_boundaries() {
        assert_eq!(groups(0), 0);
        assert_eq!(groups(1), 1);
        assert_eq!(groups(CHUNK_GROUP_SIZE - 1), 1);
        assert_eq!(groups(CHUNK_GROUP_SIZE), 1);
        assert_eq!(groups(CHUNK_GROUP_SIZE + 1), 2);
        assert_eq!(outboard_size(CHUNK_GROUP_SIZE), 0);
        assert_eq!(outboard_size(CHUNK_GROUP_SIZE + 1), 64);
        assert_eq!(
            outboard_size(1 << 30),
            ((1 << 30) / CHUNK_GROUP_SIZE - 1) * 64
        );
    }

    #[test]
    fn ranges_clip_to_the_blob() {
        assert_eq!(group_byte_range(0, 100), (0, 100));
        assert_eq!(group_byte_range(1, 20_000), (16_384, 20_000));
        assert_eq!(group_byte_range(5, 20_000), (20_000, 20_000));
        assert_eq!(groups_covering(0, 1), (0, 1));
        assert_eq!(groups_covering(16_383, 16_385), (0, 2));
        assert_eq!(groups_covering(16_384, 32_768), (1, 2));
    }
}
