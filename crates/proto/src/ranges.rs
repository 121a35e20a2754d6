//! Chunk ranges on the wire.

use serde::{Deserialize, Serialize};

/// Most boundaries a [`RangeSpec`] may carry (8192 ranges).
pub const MAX_BOUNDARIES: usize = 16_384;

/// A set of chunk ranges: strictly increasing boundaries `b0 < b1 < …`,
/// meaning `[b0, b1) ∪ [b2, b3) ∪ …`; an odd count leaves the last range
/// open (`[bn, ∞)`). Units are 1024-byte chunks.
///
/// On the wire: a postcard sequence of varint `u64`s. Decoding refuses
/// unsorted or repeated boundaries and more than [`MAX_BOUNDARIES`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<u64>", into = "Vec<u64>")]
pub struct RangeSpec(Vec<u64>);

/// Why boundaries are not a valid [`RangeSpec`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeSpecError {
    /// Boundaries must be strictly increasing.
    #[error("range boundaries are not strictly increasing")]
    Unsorted,
    /// Too many boundaries.
    #[error("{0} range boundaries exceed the limit of {MAX_BOUNDARIES}")]
    TooMany(usize),
}

impl RangeSpec {
    /// The empty set.
    pub const fn empty() -> Self {
        Self(Vec::new())
    }

    /// Every chunk: `[0, ∞)`.
    pub fn all() -> Self {
        Self(vec![0])
    }

    /// Builds a set from boundaries, checking them.
    pub fn new(boundaries: Vec<u64>) -> Result<Self, RangeSpecError> {
        if boundaries.len() > MAX_BOUNDARIES {
            return Err(RangeSpecError::TooMany(boundaries.len()));
        }
        if boundaries.windows(2).any(|w| w[0] >= w[1]) {
            return Err(RangeSpecError::Unsorted);
        }
        Ok(Self(boundaries))
    }

    /// The boundaries.
    pub fn boundaries(&self) -> &[u64] {
        &self.0
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TryFrom<Vec<u64>> for RangeSpec {
    type Error = RangeSpecError;

    fn try_from(v: Vec<u64>) -> Result<Self, Self::Error> {
        Self::new(v)
    }
}

impl From<RangeSpec> for Vec<u64> {
    fn from(r: RangeSpec) -> Self {
        r.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    #[test]
    fn golden_bytes_and_validation() {
        let r = RangeSpec::new(vec![0, 16, 300]).unwrap();
        let bytes = codec::encode(&r).unwrap();
        assert_eq!(bytes, [3, 0, 16, 0xac, 0x02]);
        assert_eq!(codec::decode::<RangeSpec>(&bytes).unwrap(), r);
        // Unsorted boundaries are refused by the decoder.
        assert!(codec::decode::<RangeSpec>(&[2, 5, 5]).is_err());
        assert!(codec::decode::<RangeSpec>(&[2, 6, 5]).is_err());
        assert!(RangeSpec::new(vec![0; MAX_BOUNDARIES + 1]).is_err());
    }
}
