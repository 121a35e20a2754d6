//! Tickets and peer addresses as a user pastes them: parsing never
//! panics, and what parses prints back to something that parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2pfs_proto::{BlobTicket, PeerAddr, RoomTicket};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(t) = s.parse::<BlobTicket>() {
        assert_eq!(t.to_string().parse::<BlobTicket>().unwrap(), t);
    }
    if let Ok(t) = s.parse::<RoomTicket>() {
        assert_eq!(t.to_string().parse::<RoomTicket>().unwrap(), t);
    }
    let _ = s.parse::<PeerAddr>();
});
