//! Chunk ranges as the protocol uses them: rounded to whole chunk groups and
//! fitted to a blob's size.

use bao_tree::{ChunkNum, io::round_up_to_chunks_groups};
use p2pfs_proto::chunk::groups;
use range_collections::range_set::RangeSetRange;

use crate::{BLOCK_SIZE, ChunkRanges, tables::GroupSet};

/// The ranges a stream for a blob of `size` bytes carries when `ranges` are
/// asked for: rounded outward to whole 16 KiB chunk groups, and with any
/// part at or past the end standing for the last chunk group (so asking for
/// `u64::MAX..` proves the size). Sender and receiver both apply this.
pub fn effective_ranges(ranges: &ChunkRanges, size: u64) -> ChunkRanges {
    let end = ChunkNum::chunks(size);
    let rounded = round_up_to_chunks_groups(ranges.clone(), BLOCK_SIZE);
    let mut out = &rounded & &ChunkRanges::from(ChunkNum(0)..end);
    if !(&rounded & &ChunkRanges::from(end..)).is_empty() {
        let last_group = groups(size).saturating_sub(1) << BLOCK_SIZE.chunk_log();
        out |= ChunkRanges::from(ChunkNum(last_group)..end);
    }
    out
}

/// Converts a set of group indices of a blob of `size` bytes to the chunk
/// ranges they cover.
pub(crate) fn groups_to_chunks(set: &GroupSet, size: u64) -> ChunkRanges {
    let shift = BLOCK_SIZE.chunk_log();
    let mut out = ChunkRanges::empty();
    for r in set.iter() {
        out |= match r {
            RangeSetRange::Range(r) => {
                ChunkRanges::from(ChunkNum(*r.start << shift)..ChunkNum(*r.end << shift))
            }
            RangeSetRange::RangeFrom(r) => ChunkRanges::from(ChunkNum(*r.start << shift)..),
        };
    }
    out & ChunkRanges::from(ChunkNum(0)..ChunkNum::chunks(size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(r: std::ops::Range<u64>) -> ChunkRanges {
        ChunkRanges::from(ChunkNum(r.start)..ChunkNum(r.end))
    }

    #[test]
    fn rounds_to_groups_and_maps_the_tail_to_the_last_group() {
        let size = 100 * 1024; // 100 chunks, 7 groups (the last one short)
        assert_eq!(effective_ranges(&chunks(3..5), size), chunks(0..16));
        assert_eq!(effective_ranges(&chunks(17..33), size), chunks(16..48));
        // Anything past the end means "the last group": a size proof.
        let tail = ChunkRanges::from(ChunkNum(1 << 40)..);
        assert_eq!(effective_ranges(&tail, size), chunks(96..100));
        assert_eq!(effective_ranges(&ChunkRanges::all(), size), chunks(0..100));
        assert_eq!(
            effective_ranges(&(chunks(0..3) | tail), size),
            chunks(0..16) | chunks(96..100)
        );
        assert_eq!(
            effective_ranges(&ChunkRanges::all(), 0),
            ChunkRanges::empty()
        );
        assert_eq!(
            effective_ranges(&ChunkRanges::empty(), size),
            ChunkRanges::empty()
        );
    }

    #[test]
    fn group_sets_convert_to_chunks() {
        let set = GroupSet::from(1..3) | GroupSet::from(5..6);
        assert_eq!(
            groups_to_chunks(&set, 1 << 20),
            chunks(16..48) | chunks(80..96)
        );
        assert_eq!(
            groups_to_chunks(&set, 90 * 1024),
            chunks(16..48) | chunks(80..90)
        );
    }
}
