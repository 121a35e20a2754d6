//! Address records as a stranger on the Mainline DHT may publish them
//! (docs/protocol.md §10), and node addresses as peers send them (§6.1):
//! decoding and the checks never panic, and a valid record encodes back
//! within BEP 44's bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2pfs_proto::{
    NodeAddr, codec,
    mainline::{MAX_RECORD_SIZE, NodeRecord},
};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = codec::decode::<NodeRecord>(data)
        && r.check().is_ok()
    {
        let bytes = codec::encode(&r).unwrap();
        assert!(bytes.len() <= MAX_RECORD_SIZE);
        assert_eq!(codec::decode::<NodeRecord>(&bytes).unwrap(), r);
    }
    let _ = codec::decode::<NodeAddr>(data);
});
