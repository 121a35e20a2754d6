//! The blob protocol (ALPN `p2pfs/blobs/1`): ask a peer for chunk ranges
//! of a blob, receive them as a verified stream.
//!
//! One request per QUIC bidirectional stream, opened by the requester:
//!
//! 1. requester → provider: a frame holding a [`BlobRequest`], then it
//!    finishes its send side;
//! 2. provider → requester: a frame holding a [`BlobResponse`]; after
//!    [`BlobResponse::Data`], the verified stream of exactly the ranges it
//!    names (docs/protocol.md §3.4), then the provider finishes the stream.
//!
//! docs/protocol.md §5 is the normative description.

use serde::{Deserialize, Serialize};

use crate::{Hash, RangeSpec};

/// ALPN of the blob protocol.
pub const ALPN: &[u8] = b"p2pfs/blobs/1";

/// A request for part of a blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlobRequest {
    /// Variant 0: send what you have of `ranges` of `hash`.
    Get {
        /// The blob.
        hash: Hash,
        /// The chunk ranges wanted (the provider applies §3.3's rules).
        ranges: RangeSpec,
    },
}

/// The provider's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlobResponse {
    /// Variant 0: the provider has nothing of this blob.
    NotFound,
    /// Variant 1: a verified stream of exactly `ranges` follows.
    Data {
        /// Every chunk range the provider has of the blob (its have-map),
        /// in chunks, limited to the blob's size.
        have: RangeSpec,
        /// The effective ranges (§3.3) of the request that the provider has,
        /// which the stream carries. May be empty.
        ranges: RangeSpec,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    #[test]
    fn golden_bytes() {
        let req = BlobRequest::Get {
            hash: Hash::from_bytes([0x11; 32]),
            ranges: RangeSpec::new(vec![16, 32]).unwrap(),
        };
        let bytes = codec::encode(&req).unwrap();
        let mut want = vec![0u8];
        want.extend([0x11; 32]);
        want.extend([2, 16, 32]);
        assert_eq!(bytes, want);
        assert_eq!(codec::decode::<BlobRequest>(&bytes).unwrap(), req);

        assert_eq!(codec::encode(&BlobResponse::NotFound).unwrap(), [0]);
        let data = BlobResponse::Data {
            have: RangeSpec::new(vec![0, 100]).unwrap(),
            ranges: RangeSpec::empty(),
        };
        let bytes = codec::encode(&data).unwrap();
        assert_eq!(bytes, [1, 2, 0, 100, 0]);
        assert_eq!(codec::decode::<BlobResponse>(&bytes).unwrap(), data);
    }

    #[test]
    fn unknown_variants_and_garbage_are_errors() {
        assert!(codec::decode::<BlobRequest>(&[7]).is_err());
        assert!(codec::decode::<BlobResponse>(&[2, 0]).is_err());
        let mut buf = [0u8; 80];
        for _ in 0..10_000 {
            let n = fastrand::usize(..buf.len());
            fastrand::fill(&mut buf[..n]);
            let _ = codec::decode::<BlobRequest>(&buf[..n]);
            let _ = codec::decode::<BlobResponse>(&buf[..n]);
        }
    }
}
