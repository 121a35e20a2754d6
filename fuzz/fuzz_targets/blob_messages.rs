//! The blob protocol's messages as a peer sends them: frame headers,
//! requests and responses (docs/protocol.md §5). Decoding never panics,
//! and a message that decodes survives encoding and decoding again
//! (postcard also accepts non-minimal varints, so not always as the same
//! bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2pfs_proto::{
    blobs::{BlobRequest, BlobResponse},
    codec,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = <[u8; codec::FRAME_HEADER_SIZE]>::try_from(data.get(..4).unwrap_or_default()) {
        let _ = codec::frame_len(h);
    }
    if let Ok(r) = codec::decode::<BlobRequest>(data) {
        let again: BlobRequest = codec::decode(&codec::encode(&r).unwrap()).unwrap();
        assert_eq!(again, r);
    }
    if let Ok(r) = codec::decode::<BlobResponse>(data) {
        let again: BlobResponse = codec::decode(&codec::encode(&r).unwrap()).unwrap();
        assert_eq!(again, r);
    }
});
