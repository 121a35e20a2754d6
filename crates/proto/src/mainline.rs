//! What p2pfs puts in the BitTorrent Mainline DHT (BEP 5, BEP 44), the
//! existing network of millions of nodes that serves as the meeting point
//! at internet scale (docs/protocol.md §10):
//!
//! - a node's **address record**: a BEP 44 mutable item signed with the
//!   node's own Ed25519 key (its [`NodeId`] is the item's public key),
//!   salt [`NODE_SALT`], whose value is a [`NodeRecord`];
//! - a room's members announce themselves (BEP 5 `announce_peer`) under
//!   [`room_info_hash`], which only members can compute, rotated daily;
//! - public blobs' providers announce under [`blob_info_hash`].

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::{Hash, room::RoomSecret};

/// The salt of a node's address record (BEP 44), so the record does not
/// collide with other uses of the same key.
pub const NODE_SALT: &[u8] = b"p2pfs-node";

/// Most addresses in a record.
pub const MAX_RECORD_ADDRS: usize = 8;

/// BEP 44's bound on a mutable item's value, in bytes.
pub const MAX_RECORD_SIZE: usize = 1000;

/// Key-derivation context of the room's Mainline key.
pub const CONTEXT_ROOM: &str = "p2pfs 2026-12 room mainline announce key";

/// A node's candidate addresses, as its BEP 44 record holds them
/// (postcard, §1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Where the node may be dialed, best first (at most
    /// [`MAX_RECORD_ADDRS`]).
    pub addrs: Vec<SocketAddr>,
}

impl NodeRecord {
    /// Checks the bounds a decoded record must keep.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.addrs.len() > MAX_RECORD_ADDRS {
            return Err("too many addresses");
        }
        Ok(())
    }
}

/// The days since the Unix epoch at `unix_secs` (UTC), the period of a
/// room's info hash.
pub fn day(unix_secs: u64) -> u64 {
    unix_secs / 86_400
}

/// The info hash under which a room's members announce themselves on
/// day `day`: the first 20 bytes of BLAKE3, keyed with a key derived
/// from the room secret, of `"room"` and the day (8 bytes, little-endian).
/// Outsiders can neither compute it nor link two days' hashes.
pub fn room_info_hash(secret: &RoomSecret, day: u64) -> [u8; 20] {
    let key = blake3::derive_key(CONTEXT_ROOM, &secret.0);
    let mut h = blake3::Hasher::new_keyed(&key);
    h.update(b"room");
    h.update(&day.to_le_bytes());
    first_20(h.finalize().as_bytes())
}

/// The info hash under which a public blob's providers announce
/// themselves: the first 20 bytes of BLAKE3 of `"p2pfs blob "` and the
/// blob's hash (32 bytes).
pub fn blob_info_hash(hash: &Hash) -> [u8; 20] {
    let mut h = blake3::Hasher::new();
    h.update(b"p2pfs blob ");
    h.update(hash.as_bytes());
    first_20(h.finalize().as_bytes())
}

fn first_20(b: &[u8; 32]) -> [u8; 20] {
    let mut out = [0u8; 20];
    out.copy_from_slice(&b[..20]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    #[test]
    fn room_hashes_rotate_daily_and_differ_per_room() {
        let a = RoomSecret([1; 32]);
        let b = RoomSecret([2; 32]);
        assert_ne!(room_info_hash(&a, 20_000), room_info_hash(&a, 20_001));
        assert_ne!(room_info_hash(&a, 20_000), room_info_hash(&b, 20_000));
        assert_eq!(room_info_hash(&a, 20_000), room_info_hash(&a, 20_000));
        assert_eq!(day(86_400 * 3 + 5), 3);
    }

    /// Fixed values a second implementation checks against.
    #[test]
    fn golden_values() {
        let h = room_info_hash(&RoomSecret([7; 32]), 20_000);
        let key = blake3::derive_key(CONTEXT_ROOM, &[7; 32]);
        let mut data = b"room".to_vec();
        data.extend_from_slice(&20_000u64.to_le_bytes());
        assert_eq!(&h[..], &blake3::keyed_hash(&key, &data).as_bytes()[..20]);
        let b = blob_info_hash(&Hash::from_bytes([9; 32]));
        let mut data = b"p2pfs blob ".to_vec();
        data.extend_from_slice(&[9; 32]);
        assert_eq!(&b[..], &blake3::hash(&data).as_bytes()[..20]);
        let rec = NodeRecord {
            addrs: vec!["1.2.3.4:5".parse().unwrap()],
        };
        assert_eq!(codec::encode(&rec).unwrap(), vec![1, 0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_full_record_fits_bep44() {
        let rec = NodeRecord {
            addrs: vec!["[2001:db8::1]:65535".parse().unwrap(); MAX_RECORD_ADDRS],
        };
        assert!(rec.check().is_ok());
        assert!(codec::encode(&rec).unwrap().len() <= MAX_RECORD_SIZE);
        let too_many = NodeRecord {
            addrs: vec!["1.2.3.4:5".parse().unwrap(); MAX_RECORD_ADDRS + 1],
        };
        assert!(too_many.check().is_err());
    }
}
