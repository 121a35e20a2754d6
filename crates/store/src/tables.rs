//! Every redb table of the store, and the encoding of their values.
//!
//! This is the only file that knows the database layout. Table names carry a
//! version suffix; a change of layout gets a new name and a migration, never a
//! silent reinterpretation of old bytes.
//!
//! | table | key | value |
//! |---|---|---|
//! | `blobs_v1` | hash | [`BlobMeta`] (postcard) |
//! | `inline_v1` | hash | the bytes of a small complete blob |
//! | `outboard_v1` | (hash, segment) | [`SEGMENT_PAIRS`] hash pairs of the post-order outboard |
//! | `have_v1` | hash | the chunk groups a partial blob has, as range boundaries |
//! | `pins_v1` | (hash, pin name) | `()` |
//! | `checked_v1` | hash | the stamp of a complete blob's data file when every byte of it was last checked (postcard) |
//! | `store_v1` | key | format version and other store-wide values |
//! | `providers_v1` | (hash, node id) | DHT provider record: addresses, expiry (postcard) |
//! | `nodes_v1` | node id | addresses of a node remembered from the last run (postcard) |
//! | `rooms_v1` | room id | the room's secret, local name, ticket nodes (postcard) |
//! | `room_entries_v1` | (room, entry hash) | local log index, encoded entry |
//! | `room_log_v1` | (room, local index) | entry hash: the log in the order it was accepted |
//! | `room_seq_v1` | (room, author, seq) | entry hash and local index |
//! | `room_authors_v1` | (room, author) | how many of the author's entries the log has |
//! | `room_heads_v1` | (room, entry hash) | `()`: entries no other entry links to yet |
//! | `room_view_v1` | (room, view key) | materialized views, rebuilt from the log when dropped |
//!
//! The `room_view_v1` table holds only derived data: deleting it (or any
//! room's part of it) and reopening rebuilds it from `room_log_v1`.

use p2pfs_proto::codec;
use range_collections::RangeSet2;
use redb::TableDefinition;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;

/// Version of the database layout written by this code.
pub(crate) const FORMAT_VERSION: u64 = 1;

/// Hash pairs per outboard segment: 62 pairs (3968 bytes), so a segment
/// with its key fits one 4 KiB redb page (64 pairs would take two: measured
/// 4x the outboard's size on disk, against 2x for 62).
pub(crate) const SEGMENT_PAIRS: u64 = 62;

/// Bytes per full outboard segment.
pub(crate) const SEGMENT_BYTES: u64 = SEGMENT_PAIRS * 64;

pub(crate) type HashKey = [u8; 32];

pub(crate) const BLOBS: TableDefinition<'_, &HashKey, &[u8]> = TableDefinition::new("blobs_v1");
pub(crate) const INLINE: TableDefinition<'_, &HashKey, &[u8]> = TableDefinition::new("inline_v1");
pub(crate) const OUTBOARD: TableDefinition<'_, (&HashKey, u64), &[u8]> =
    TableDefinition::new("outboard_v1");
pub(crate) const HAVE: TableDefinition<'_, &HashKey, &[u8]> = TableDefinition::new("have_v1");
pub(crate) const PINS: TableDefinition<'_, (&HashKey, &str), ()> = TableDefinition::new("pins_v1");
pub(crate) const PROVIDERS: TableDefinition<'_, (&HashKey, &HashKey), &[u8]> =
    TableDefinition::new("providers_v1");
pub(crate) const NODES: TableDefinition<'_, &HashKey, &[u8]> = TableDefinition::new("nodes_v1");
pub(crate) const ROOMS: TableDefinition<'_, &HashKey, &[u8]> = TableDefinition::new("rooms_v1");
pub(crate) const ROOM_ENTRIES: TableDefinition<'_, (&HashKey, &HashKey), (u64, &[u8])> =
    TableDefinition::new("room_entries_v1");
pub(crate) const ROOM_LOG: TableDefinition<'_, (&HashKey, u64), &HashKey> =
    TableDefinition::new("room_log_v1");
pub(crate) const ROOM_SEQ: TableDefinition<'_, (&HashKey, &HashKey, u64), (&HashKey, u64)> =
    TableDefinition::new("room_seq_v1");
pub(crate) const ROOM_AUTHORS: TableDefinition<'_, (&HashKey, &HashKey), u64> =
    TableDefinition::new("room_authors_v1");
pub(crate) const ROOM_HEADS: TableDefinition<'_, (&HashKey, &HashKey), ()> =
    TableDefinition::new("room_heads_v1");
pub(crate) const ROOM_VIEW: TableDefinition<'_, (&HashKey, &[u8]), &[u8]> =
    TableDefinition::new("room_view_v1");
/// The keys of a room's epochs this node holds (a ticket's, or unwrapped
/// from an epoch entry), by room and epoch entry hash.
pub(crate) const ROOM_KEYS: TableDefinition<'_, (&HashKey, &HashKey), &HashKey> =
    TableDefinition::new("room_keys_v1");
/// Complete blobs whose data file was checked whole, with the file's stamp
/// then (see `checked.rs`).
pub(crate) const CHECKED: TableDefinition<'_, &HashKey, &[u8]> = TableDefinition::new("checked_v1");
pub(crate) const STORE: TableDefinition<'_, &str, u64> = TableDefinition::new("store_v1");

/// Key in `store_v1` holding [`FORMAT_VERSION`].
pub(crate) const FORMAT_KEY: &str = "format";

/// What the store knows about one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BlobMeta {
    /// Size in bytes, verified: a partial blob is only recorded once its last
    /// chunk group has been checked against the hash.
    pub(crate) size: u64,
    pub(crate) state: BlobState,
}

/// Whether a blob is complete, and where its bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum BlobState {
    /// Every byte is present, in `inline_v1`.
    CompleteInline,
    /// Every byte is present, in the blob's data file.
    CompleteFile,
    /// Some chunk groups are present (listed in `have_v1`), in the data file.
    Partial,
}

impl BlobMeta {
    pub(crate) fn encode(&self) -> Result<Vec<u8>, StoreError> {
        codec::encode(self).map_err(|e| StoreError::Corrupt(format!("encoding metadata: {e}")))
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        codec::decode(bytes).map_err(|e| StoreError::Corrupt(format!("blob metadata: {e}")))
    }

    pub(crate) fn is_complete(&self) -> bool {
        !matches!(self.state, BlobState::Partial)
    }
}

/// A set of chunk-group indices.
pub(crate) type GroupSet = RangeSet2<u64>;

/// Encodes a group set as its sorted range boundaries.
pub(crate) fn encode_groups(set: &GroupSet) -> Result<Vec<u8>, StoreError> {
    let boundaries: Vec<u64> = set.boundaries().to_vec();
    codec::encode(&boundaries).map_err(|e| StoreError::Corrupt(format!("encoding have-map: {e}")))
}

/// Decodes a group set written by [`encode_groups`].
pub(crate) fn decode_groups(bytes: &[u8]) -> Result<GroupSet, StoreError> {
    let boundaries: Vec<u64> =
        codec::decode(bytes).map_err(|e| StoreError::Corrupt(format!("have-map: {e}")))?;
    GroupSet::new(smallvec::SmallVec::from_vec(boundaries))
        .ok_or_else(|| StoreError::Corrupt("have-map boundaries are not sorted".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_sets_round_trip() {
        let mut set = GroupSet::from(3..10);
        set |= GroupSet::from(20..21);
        set |= GroupSet::from(100..);
        assert_eq!(decode_groups(&encode_groups(&set).unwrap()).unwrap(), set);
        assert!(decode_groups(&codec::encode(&vec![5u64, 3]).unwrap()).is_err());
    }

    #[test]
    fn meta_golden_bytes() {
        let m = BlobMeta {
            size: 300,
            state: BlobState::Partial,
        };
        let bytes = m.encode().unwrap();
        assert_eq!(bytes, [0xac, 0x02, 0x02]);
        assert_eq!(BlobMeta::decode(&bytes).unwrap(), m);
    }
}
