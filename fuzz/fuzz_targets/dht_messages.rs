//! DHT requests and responses (provider records included) and LAN
//! beacons, as a peer sends them (docs/protocol.md §7). Decoding and the
//! bounds checks never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2pfs_proto::{
    codec,
    dht::{DhtRequest, DhtResponse, LanBeacon},
};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = codec::decode::<DhtRequest>(data) {
        let _ = r.check();
    }
    if let Ok(r) = codec::decode::<DhtResponse>(data) {
        let _ = r.check();
    }
    if let Some(b) = LanBeacon::from_datagram(data) {
        assert_eq!(LanBeacon::from_datagram(&b.to_datagram()), Some(b));
    }
});
