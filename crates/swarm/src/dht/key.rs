//! Kademlia's keyspace: 256-bit keys (node ids and blob hashes alike) and
//! the XOR metric between them.

use std::fmt;

use p2pfs_proto::{Hash, NodeId};

/// A point of the keyspace.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(pub [u8; 32]);

/// The XOR distance between two keys, ordered as a 256-bit big-endian
/// number.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Distance(pub [u8; 32]);

impl Key {
    /// The distance from `self` to `other`.
    pub fn distance(&self, other: &Key) -> Distance {
        let mut d = [0u8; 32];
        for (i, b) in d.iter_mut().enumerate() {
            *b = self.0[i] ^ other.0[i];
        }
        Distance(d)
    }

    /// The bucket `other` falls in as seen from `self`: 255 minus the number
    /// of leading bits they share (bucket 255 is the far half of the
    /// space), or `None` for `self` itself.
    pub fn bucket_of(&self, other: &Key) -> Option<usize> {
        self.distance(other).bucket()
    }
}

impl Distance {
    /// Leading zero bits.
    pub fn leading_zeros(&self) -> u32 {
        let mut n = 0;
        for b in self.0 {
            if b == 0 {
                n += 8;
            } else {
                return n + b.leading_zeros();
            }
        }
        n
    }

    /// The bucket index of this distance (see [`Key::bucket_of`]).
    pub fn bucket(&self) -> Option<usize> {
        let z = self.leading_zeros() as usize;
        (z < 256).then(|| 255 - z)
    }
}

impl From<NodeId> for Key {
    fn from(id: NodeId) -> Self {
        Key(*id.as_bytes())
    }
}

impl From<&NodeId> for Key {
    fn from(id: &NodeId) -> Self {
        Key(*id.as_bytes())
    }
}

impl From<Hash> for Key {
    fn from(h: Hash) -> Self {
        Key(*h.as_bytes())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..5] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A key with the given first and last bytes, zeros between.
    pub(crate) fn key(first: u8, last: u8) -> Key {
        let mut k = [0u8; 32];
        k[0] = first;
        k[31] = last;
        Key(k)
    }

    #[test]
    fn xor_metric() {
        let (a, b, c) = (key(0x80, 1), key(0x00, 1), key(0x80, 3));
        assert_eq!(a.distance(&a), Distance([0; 32]));
        assert_eq!(a.distance(&b), b.distance(&a));
        assert!(a.distance(&c) < a.distance(&b));
        // Triangle inequality holds for XOR.
        let ab = u8::from_be_bytes([a.distance(&b).0[0]]);
        assert_eq!(ab, 0x80);
    }

    #[test]
    fn buckets_count_shared_prefix_bits() {
        let me = key(0, 0);
        assert_eq!(me.bucket_of(&me), None);
        assert_eq!(me.bucket_of(&key(0x80, 0)), Some(255));
        assert_eq!(me.bucket_of(&key(0x40, 0)), Some(254));
        assert_eq!(me.bucket_of(&key(0x01, 0)), Some(248));
        assert_eq!(me.bucket_of(&key(0, 1)), Some(0));
        assert_eq!(me.bucket_of(&key(0, 0x80)), Some(7));
    }
}
