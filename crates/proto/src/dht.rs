//! The DHT protocol (ALPN `p2pfs/dht/1`): Kademlia queries between nodes,
//! and the beacon nodes multicast on a LAN to find each other.
//!
//! One query per QUIC bidirectional stream, opened by the asker:
//!
//! 1. asker → answerer: a frame holding a [`DhtRequest`], then it finishes
//!    its send side;
//! 2. answerer → asker: a frame holding a [`DhtResponse`], then it finishes.
//!
//! Frames of this protocol are at most [`MAX_DHT_MESSAGE`] bytes; every
//! list in them is bounded (see [`DhtResponse::check`]). docs/protocol.md
//! §7 is the normative description.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::{Hash, NodeAddr, NodeId};

/// ALPN of the DHT protocol.
pub const ALPN: &[u8] = b"p2pfs/dht/1";

/// Kademlia's k: nodes per answer, providers per answer and per key.
pub const K: usize = 20;

/// Most addresses a node or provider may carry in a DHT message.
pub const MAX_NODE_ADDRS: usize = 4;

/// Largest DHT frame body, in bytes. A full answer (2 × 20 nodes of 4 IPv6
/// addresses) is about 4.4 KB.
pub const MAX_DHT_MESSAGE: usize = 8 * 1024;

/// UDP port of the LAN beacon.
pub const LAN_PORT: u16 = 47_474;

/// IPv4 multicast group of the LAN beacon (organisation-local scope).
pub const LAN_GROUP_V4: [u8; 4] = [239, 255, 47, 74];

/// First bytes of every LAN beacon datagram.
pub const LAN_MAGIC: [u8; 8] = *b"p2pfsLAN";

/// A query and who asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhtRequest {
    /// Whether the asker serves the DHT and may be added to routing tables
    /// (at the address the query came from). Short-lived nodes, such as
    /// a one-off `p2pfs fetch`, say `false`.
    pub server: bool,
    /// What it asks.
    pub query: Query,
}

/// The four Kademlia queries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    /// Variant 0: are you there? Answered with [`DhtResponse::Pong`].
    Ping,
    /// Variant 1: the nodes you know closest to `target`. Answered with
    /// [`DhtResponse::Nodes`].
    FindNode {
        /// A key of the 256-bit keyspace (a node id or a hash).
        target: [u8; 32],
    },
    /// Variant 2: providers of `hash` you hold records for, and the nodes
    /// you know closest to it. Answered with [`DhtResponse::Providers`].
    GetProviders {
        /// The blob.
        hash: Hash,
    },
    /// Variant 3: record that the asker provides `hash`. The record's node
    /// is the asker's authenticated id, never a field of the message.
    /// Answered with [`DhtResponse::Stored`] or [`DhtResponse::Refused`].
    AddProvider {
        /// The blob.
        hash: Hash,
        /// Addresses the asker may be reached at (at most
        /// [`MAX_NODE_ADDRS`]); the answerer puts the address the query came
        /// from first.
        addrs: Vec<SocketAddr>,
    },
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DhtResponse {
    /// Variant 0: the answer to `Ping`.
    Pong {
        /// The address the query came from, as the answerer saw it.
        observed: SocketAddr,
    },
    /// Variant 1: the answer to `FindNode`: at most [`K`] nodes, closest
    /// first, never the asker.
    Nodes {
        /// The nodes.
        closer: Vec<NodeAddr>,
    },
    /// Variant 2: the answer to `GetProviders`.
    Providers {
        /// At most [`K`] providers whose records have not expired.
        providers: Vec<NodeAddr>,
        /// At most [`K`] nodes closest to the hash.
        closer: Vec<NodeAddr>,
    },
    /// Variant 3: the record was stored; it expires in `ttl_secs` unless
    /// the provider announces it again.
    Stored {
        /// Seconds the record lives.
        ttl_secs: u32,
    },
    /// Variant 4: the query was not carried out.
    Refused {
        /// Why.
        reason: Refusal,
    },
}

/// Why a query was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// Variant 0: the asker sent too many queries; slow down.
    RateLimited,
    /// Variant 1: the answerer holds as many records as it accepts (for
    /// this asker or in all).
    Full,
    /// Variant 2: the query broke a rule (too many addresses).
    Invalid,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::RateLimited => "rate limited",
            Self::Full => "no room for more records",
            Self::Invalid => "invalid query",
        })
    }
}

impl DhtRequest {
    /// Checks the bounds the decoder does not: at most [`MAX_NODE_ADDRS`]
    /// addresses in an announcement.
    pub fn check(&self) -> Result<(), &'static str> {
        match &self.query {
            Query::AddProvider { addrs, .. } if addrs.len() > MAX_NODE_ADDRS => {
                Err("too many addresses")
            }
            _ => Ok(()),
        }
    }
}

impl DhtResponse {
    /// Checks the bounds the decoder does not: at most [`K`] nodes per list,
    /// each with 1 to [`MAX_NODE_ADDRS`] addresses.
    pub fn check(&self) -> Result<(), &'static str> {
        let lists: [&[NodeAddr]; 2] = match self {
            Self::Nodes { closer } => [closer, &[]],
            Self::Providers { providers, closer } => [providers, closer],
            Self::Pong { .. } | Self::Stored { .. } | Self::Refused { .. } => return Ok(()),
        };
        for list in lists {
            if list.len() > K {
                return Err("more than k nodes");
            }
            if list
                .iter()
                .any(|n| n.addrs.is_empty() || n.addrs.len() > MAX_NODE_ADDRS)
            {
                return Err("a node with no or too many addresses");
            }
        }
        Ok(())
    }
}

/// What a node multicasts on its LAN (UDP, to [`LAN_GROUP_V4`]:[`LAN_PORT`])
/// so others there can add it without any address given: [`LAN_MAGIC`],
/// then this value (postcard). A receiver dials the sender at the datagram's
/// source IP and `port`, expecting `node` in the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LanBeacon {
    /// The sender.
    pub node: NodeId,
    /// The UDP port of its QUIC endpoint.
    pub port: u16,
    /// Whether it serves the DHT (may be added to routing tables). Either
    /// way a receiver pings it over the DHT protocol, which tells the sender
    /// of the receiver.
    pub server: bool,
}

impl LanBeacon {
    /// The datagram: magic, then the postcard bytes.
    pub fn to_datagram(&self) -> Vec<u8> {
        let mut out = LAN_MAGIC.to_vec();
        // A node id, a u16 and a bool always encode (36 bytes at most).
        out.extend(crate::codec::encode(self).unwrap_or_default());
        out
    }

    /// Parses a datagram; `None` if it is not a beacon.
    pub fn from_datagram(bytes: &[u8]) -> Option<Self> {
        let body = bytes.strip_prefix(&LAN_MAGIC)?;
        crate::codec::decode(body).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    fn node(b: u8) -> NodeAddr {
        NodeAddr {
            id: NodeId::from_bytes([b; 32]),
            addrs: vec!["10.0.0.1:4433".parse().unwrap()],
        }
    }

    #[test]
    fn request_golden_bytes() {
        let r = DhtRequest {
            server: true,
            query: Query::Ping,
        };
        assert_eq!(codec::encode(&r).unwrap(), [1, 0]);
        let r = DhtRequest {
            server: false,
            query: Query::FindNode { target: [9; 32] },
        };
        let mut want = vec![0, 1];
        want.extend([9; 32]);
        assert_eq!(codec::encode(&r).unwrap(), want);
        let r = DhtRequest {
            server: true,
            query: Query::AddProvider {
                hash: Hash::from_bytes([0x11; 32]),
                addrs: vec!["10.0.0.1:4433".parse().unwrap()],
            },
        };
        let bytes = codec::encode(&r).unwrap();
        let mut want = vec![1, 3];
        want.extend([0x11; 32]);
        want.extend([1, 0, 10, 0, 0, 1, 0xd1, 0x22]);
        assert_eq!(bytes, want);
        assert_eq!(codec::decode::<DhtRequest>(&bytes).unwrap(), r);
        let r = DhtRequest {
            server: true,
            query: Query::GetProviders {
                hash: Hash::from_bytes([0x22; 32]),
            },
        };
        assert_eq!(&codec::encode(&r).unwrap()[..2], [1, 2]);
    }

    #[test]
    fn response_golden_bytes() {
        let r = DhtResponse::Pong {
            observed: "127.0.0.1:1".parse().unwrap(),
        };
        assert_eq!(codec::encode(&r).unwrap(), [0, 0, 127, 0, 0, 1, 1]);
        let r = DhtResponse::Nodes {
            closer: vec![node(7)],
        };
        let bytes = codec::encode(&r).unwrap();
        let mut want = vec![1, 1];
        want.extend([7; 32]);
        want.extend([1, 0, 10, 0, 0, 1, 0xd1, 0x22]);
        assert_eq!(bytes, want);
        assert_eq!(codec::decode::<DhtResponse>(&bytes).unwrap(), r);
        let r = DhtResponse::Providers {
            providers: vec![],
            closer: vec![],
        };
        assert_eq!(codec::encode(&r).unwrap(), [2, 0, 0]);
        let r = DhtResponse::Stored { ttl_secs: 86_400 };
        assert_eq!(codec::encode(&r).unwrap(), [3, 0x80, 0xa3, 0x05]);
        let r = DhtResponse::Refused {
            reason: Refusal::Full,
        };
        assert_eq!(codec::encode(&r).unwrap(), [4, 1]);
    }

    #[test]
    fn bounds_are_checked() {
        let many = |n: usize| (0..n).map(|i| node(i as u8)).collect::<Vec<_>>();
        assert!(DhtResponse::Nodes { closer: many(K) }.check().is_ok());
        assert!(
            DhtResponse::Nodes {
                closer: many(K + 1)
            }
            .check()
            .is_err()
        );
        let mut fat = node(1);
        fat.addrs = vec!["10.0.0.1:1".parse().unwrap(); MAX_NODE_ADDRS + 1];
        assert!(
            DhtResponse::Providers {
                providers: vec![fat],
                closer: vec![]
            }
            .check()
            .is_err()
        );
        let mut empty = node(1);
        empty.addrs.clear();
        assert!(
            DhtResponse::Nodes {
                closer: vec![empty]
            }
            .check()
            .is_err()
        );
        // The largest valid answer fits a DHT frame.
        let mut big = node(1);
        big.addrs = vec!["[2001:db8::1]:65535".parse().unwrap(); MAX_NODE_ADDRS];
        let full = DhtResponse::Providers {
            providers: vec![big.clone(); K],
            closer: vec![big; K],
        };
        assert!(codec::encode(&full).unwrap().len() <= MAX_DHT_MESSAGE);
        let r = DhtRequest {
            server: true,
            query: Query::AddProvider {
                hash: Hash::from_bytes([0; 32]),
                addrs: vec!["10.0.0.1:1".parse().unwrap(); MAX_NODE_ADDRS + 1],
            },
        };
        assert!(r.check().is_err());
    }

    #[test]
    fn beacons_round_trip_and_garbage_is_ignored() {
        let b = LanBeacon {
            node: NodeId::from_bytes([5; 32]),
            port: 4433,
            server: true,
        };
        let d = b.to_datagram();
        assert_eq!(&d[..8], b"p2pfsLAN");
        assert_eq!(&d[8..40], &[5; 32]);
        assert_eq!(&d[40..], &[0xd1, 0x22, 1]);
        assert_eq!(LanBeacon::from_datagram(&d), Some(b));
        assert_eq!(LanBeacon::from_datagram(&d[..20]), None);
        assert_eq!(LanBeacon::from_datagram(b"hello"), None);
        let mut buf = [0u8; 64];
        for _ in 0..10_000 {
            let n = fastrand::usize(..buf.len());
            fastrand::fill(&mut buf[..n]);
            let _ = codec::decode::<DhtRequest>(&buf[..n]);
            let _ = codec::decode::<DhtResponse>(&buf[..n]);
            let _ = LanBeacon::from_datagram(&buf[..n]);
        }
    }
}
