//! The relay protocol (ALPN `p2pfs/relay/1`): a node that two peers can
//! both reach forwards their QUIC packets when they cannot reach each
//! other (a symmetric NAT, a firewall), and carries the few messages that
//! let them open a direct path (a coordinated hole punch).
//!
//! Every exchange is one QUIC bidirectional stream:
//!
//! 1. the opener writes one frame holding a [`RelayRequest`];
//! 2. the other side answers with one frame holding a [`RelayAnswer`];
//! 3. after [`RelayAnswer::Opened`], the stream carries relayed packets
//!    both ways, each as a 2-byte big-endian length then the packet (at
//!    most [`MAX_PACKET`] bytes), until either side finishes or resets it.
//!
//! A dialer `A` asks relay `R` for [`RelayRequest::Circuit`] to `B`; `R`
//! opens a stream on its relay connection with `B` (dialed at the address
//! `B`'s connection to `R` comes from, so `B`'s NAT lets it in) and asks
//! [`RelayRequest::Incoming`]. When `B` answers `Opened`, `R` answers `A`
//! `Opened` and copies bytes between the two streams without reading them:
//! the packets are QUIC between `A` and `B`, whose TLS proves each one's
//! node id to the other, so the relay sees only ciphertext.
//!
//! docs/protocol.md §9 is the normative description.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// ALPN of the relay protocol.
pub const ALPN: &[u8] = b"p2pfs/relay/1";

/// Largest relay frame (request or answer) body, in bytes.
pub const MAX_RELAY_MESSAGE: usize = 1024;

/// Largest relayed packet, in bytes (the node's largest UDP payload).
pub const MAX_PACKET: usize = 6000;

/// Bytes before each relayed packet: its length, big-endian.
pub const PACKET_HEADER: usize = 2;

/// Most candidate addresses a punch message carries.
pub const MAX_PUNCH_ADDRS: usize = 8;

/// The first frame of a relay stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RelayRequest {
    /// Variant 0 (dialer → relay): forward packets between me and `to`.
    /// Answered with `Opened` (then packets flow) or `Refused`.
    Circuit {
        /// The node to reach.
        to: NodeId,
    },
    /// Variant 1 (relay → target): `from` asks for a circuit to you.
    /// Answered with `Opened` (then packets flow) or `Refused`.
    Incoming {
        /// The node that asked, as the relay authenticated it.
        from: NodeId,
        /// Bytes the relay forwards each way before it closes the circuit
        /// (`None`: no limit).
        limit_bytes: Option<u64>,
        /// Seconds the relay keeps the circuit (`None`: no limit).
        limit_secs: Option<u32>,
    },
    /// Variant 2 (dialer → relay): tell `to` to dial me now at `addrs`
    /// and tell me where to dial it. Answered with `Punch` or `Refused`.
    Punch {
        /// The node to punch through to.
        to: NodeId,
        /// The asker's candidate addresses (at most [`MAX_PUNCH_ADDRS`]).
        addrs: Vec<SocketAddr>,
    },
    /// Variant 3 (relay → target): `from` dials you now at the addresses
    /// it gives; dial it at `addrs` at once and answer with yours.
    /// Answered with `Punch` or `Refused`.
    PunchFrom {
        /// The node that asked, as the relay authenticated it.
        from: NodeId,
        /// Its candidate addresses, and the address the relay sees its
        /// packets come from (first).
        addrs: Vec<SocketAddr>,
    },
}

/// The answer to a [`RelayRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RelayAnswer {
    /// Variant 0: the circuit is open; relayed packets follow.
    Opened {
        /// Bytes forwarded each way before the relay closes it (`None`: no
        /// limit).
        limit_bytes: Option<u64>,
        /// Seconds before the relay closes it (`None`: no limit).
        limit_secs: Option<u32>,
    },
    /// Variant 1: the request was not carried out.
    Refused {
        /// Why.
        reason: RelayRefusal,
    },
    /// Variant 2: the answer to `Punch`/`PunchFrom`: the other side's
    /// candidate addresses (the relay's view of where its packets come
    /// from first), at most [`MAX_PUNCH_ADDRS`].
    Punch {
        /// Where to dial.
        addrs: Vec<SocketAddr>,
    },
}

/// Why a relay request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RelayRefusal {
    /// Variant 0: this node does not relay (`--relay off`), or not for
    /// these two nodes (`--relay members` and they share no room with it).
    NotOffered,
    /// Variant 1: the relay has no live connection with the target.
    NotConnected,
    /// Variant 2: too many circuits already (for strangers, or in all).
    Busy,
    /// Variant 3: the target refused.
    TargetRefused,
    /// Variant 4: the request was malformed (too many addresses, a
    /// circuit to oneself).
    Invalid,
}

impl RelayRequest {
    /// Checks the bounds a decoded request must keep.
    pub fn check(&self) -> Result<(), &'static str> {
        match self {
            Self::Punch { addrs, .. } | Self::PunchFrom { addrs, .. }
                if addrs.len() > MAX_PUNCH_ADDRS =>
            {
                Err("too many punch addresses")
            }
            _ => Ok(()),
        }
    }
}

impl RelayAnswer {
    /// Checks the bounds a decoded answer must keep.
    pub fn check(&self) -> Result<(), &'static str> {
        match self {
            Self::Punch { addrs } if addrs.len() > MAX_PUNCH_ADDRS => {
                Err("too many punch addresses")
            }
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for RelayRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NotOffered => "the node does not relay for us",
            Self::NotConnected => "the relay is not connected to that node",
            Self::Busy => "the relay is busy",
            Self::TargetRefused => "the target refused the circuit",
            Self::Invalid => "invalid relay request",
        })
    }
}

/// Splits relayed packets out of a byte stream (the length-prefixed
/// framing of an open circuit). Feed it bytes as they arrive; it yields
/// each whole packet once.
#[derive(Debug, Default)]
pub struct PacketReader {
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out.
    start: usize,
}

/// A relayed packet's length was zero or above [`MAX_PACKET`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadPacketLength(pub usize);

impl std::fmt::Display for BadPacketLength {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "relayed packet of {} bytes", self.0)
    }
}

impl std::error::Error for BadPacketLength {}

impl PacketReader {
    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.drain(..self.start);
        self.start = 0;
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole packet, if one has arrived.
    pub fn next_packet(&mut self) -> Result<Option<&[u8]>, BadPacketLength> {
        let rest = &self.buf[self.start..];
        let Some(header) = rest.get(..PACKET_HEADER) else {
            return Ok(None);
        };
        let len = usize::from(u16::from_be_bytes([header[0], header[1]]));
        if len == 0 || len > MAX_PACKET {
            return Err(BadPacketLength(len));
        }
        if rest.len() < PACKET_HEADER + len {
            return Ok(None);
        }
        let from = self.start + PACKET_HEADER;
        self.start = from + len;
        Ok(Some(&self.buf[from..from + len]))
    }
}

/// Appends `packet`, framed, to `out`. Packets longer than [`MAX_PACKET`]
/// (or empty) are not framed: `false`.
pub fn frame_packet(packet: &[u8], out: &mut Vec<u8>) -> bool {
    if packet.is_empty() || packet.len() > MAX_PACKET {
        return false;
    }
    out.extend_from_slice(&(packet.len() as u16).to_be_bytes());
    out.extend_from_slice(packet);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    #[test]
    fn packets_round_trip_through_any_split() {
        let packets: Vec<Vec<u8>> = vec![vec![1], vec![2; 1200], vec![3; MAX_PACKET], vec![4; 7]];
        let mut wire = Vec::new();
        for p in &packets {
            assert!(frame_packet(p, &mut wire));
        }
        for step in [1, 3, 1000, wire.len()] {
            let mut r = PacketReader::default();
            let mut got = Vec::new();
            for piece in wire.chunks(step) {
                r.push(piece);
                while let Some(p) = r.next_packet().unwrap() {
                    got.push(p.to_vec());
                }
            }
            assert_eq!(got, packets, "step {step}");
        }
    }

    #[test]
    fn bad_lengths_are_refused() {
        assert!(!frame_packet(&[], &mut Vec::new()));
        assert!(!frame_packet(&[0; MAX_PACKET + 1], &mut Vec::new()));
        let mut r = PacketReader::default();
        r.push(&[0, 0]);
        assert_eq!(r.next_packet(), Err(BadPacketLength(0)));
        let mut r = PacketReader::default();
        r.push(&[0, 1]);
        assert_eq!(r.next_packet(), Ok(None));
        let mut r = PacketReader::default();
        r.push(&(MAX_PACKET as u16 + 1).to_be_bytes());
        assert!(r.next_packet().is_err());
    }

    /// The wire bytes of each message are fixed (a second implementation
    /// checks against these).
    #[test]
    fn golden_bytes() {
        let id = NodeId::from_bytes([7; 32]);
        let circuit = codec::encode(&RelayRequest::Circuit { to: id }).unwrap();
        assert_eq!(circuit[0], 0);
        assert_eq!(&circuit[1..], &[7; 32]);
        let opened = codec::encode(&RelayAnswer::Opened {
            limit_bytes: Some(1 << 20),
            limit_secs: None,
        })
        .unwrap();
        assert_eq!(opened, vec![0, 1, 0x80, 0x80, 0x40, 0]);
        let refused = codec::encode(&RelayAnswer::Refused {
            reason: RelayRefusal::NotConnected,
        })
        .unwrap();
        assert_eq!(refused, vec![1, 1]);
        let punch = codec::encode(&RelayAnswer::Punch {
            addrs: vec!["1.2.3.4:5".parse().unwrap()],
        })
        .unwrap();
        assert_eq!(punch, vec![2, 1, 0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn bounds_are_checked() {
        let a: SocketAddr = "1.2.3.4:5".parse().unwrap();
        let many = vec![a; MAX_PUNCH_ADDRS + 1];
        let id = NodeId::from_bytes([1; 32]);
        assert!(
            RelayRequest::Punch {
                to: id,
                addrs: many.clone()
            }
            .check()
            .is_err()
        );
        assert!(RelayAnswer::Punch { addrs: many }.check().is_err());
        assert!(RelayRequest::Circuit { to: id }.check().is_ok());
    }
}
