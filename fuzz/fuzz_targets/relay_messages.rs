//! The relay protocol as a peer sends it (docs/protocol.md §9): requests
//! and answers (circuits and punch coordination) decode and are checked
//! without panicking, and what is valid encodes back to the same bytes;
//! relayed packet framing splits any byte stream without panicking, and
//! frames round-trip; the addresses a relay passes on in a punch keep
//! their rules whatever a peer claims.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use p2pfs_proto::{
    codec,
    relay::{MAX_PACKET, MAX_PUNCH_ADDRS, PacketReader, RelayAnswer, RelayRequest, frame_packet},
};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = codec::decode::<RelayRequest>(data)
        && r.check().is_ok()
    {
        let again: RelayRequest = codec::decode(&codec::encode(&r).unwrap()).unwrap();
        assert_eq!(again, r);
        if let RelayRequest::Punch { addrs, .. } | RelayRequest::PunchFrom { addrs, .. } = r {
            let observed: SocketAddr = "198.18.0.1:7000".parse().unwrap();
            let out = p2pfs_swarm::fuzzing::relay::candidates(observed, addrs);
            assert!(out.len() <= MAX_PUNCH_ADDRS);
            assert_eq!(out.first(), Some(&observed));
            for (i, a) in out.iter().enumerate() {
                assert!(!p2pfs_swarm::fuzzing::relay::is_path_addr(a));
                assert!(!a.ip().is_unspecified());
                assert!(!out[..i].contains(a));
            }
        }
    }
    if let Ok(a) = codec::decode::<RelayAnswer>(data)
        && a.check().is_ok()
    {
        let again: RelayAnswer = codec::decode(&codec::encode(&a).unwrap()).unwrap();
        assert_eq!(again, a);
    }
    // The stream of an open circuit, cut at a point the input picks.
    let cut = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut reader = PacketReader::default();
    let mut packets = Vec::new();
    let mut bad = false;
    for piece in [&data[..cut], &data[cut..]] {
        reader.push(piece);
        loop {
            match reader.next_packet() {
                Ok(Some(p)) => {
                    assert!(!p.is_empty() && p.len() <= MAX_PACKET);
                    packets.push(p.to_vec());
                }
                Ok(None) => break,
                Err(_) => {
                    bad = true;
                    break;
                }
            }
        }
        if bad {
            break;
        }
    }
    // What was read frames back to a prefix of the input.
    let mut wire = Vec::new();
    for p in &packets {
        assert!(frame_packet(p, &mut wire));
    }
    assert_eq!(&data[..wire.len()], &wire[..]);
});
