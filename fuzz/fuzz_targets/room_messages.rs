//! Room sync messages, handshakes and entries (docs/protocol.md §8.3,
//! §8.6): decoding and the bounds checks never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2pfs_proto::{
    codec,
    room::{Entry, Hello, SyncMsg, Welcome},
};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = codec::decode::<SyncMsg>(data) {
        let _ = m.check();
        if let SyncMsg::Entries(list) = m {
            for e in list {
                let _ = Entry::decode(&e);
            }
        }
    }
    if let Ok((e, body)) = Entry::decode(data) {
        assert_eq!(e.body().unwrap(), body);
        let _ = body.op.path();
    }
    let _ = codec::decode::<Hello>(data);
    let _ = codec::decode::<Welcome>(data);
});
