//! How to reach a node: its id and socket addresses.

use std::{fmt, net::SocketAddr, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// Most addresses a [`NodeAddr`] may list.
pub const MAX_ADDRS: usize = 16;

/// A node and the addresses it may be reached at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddr {
    /// The node's identity, checked during the TLS handshake.
    pub id: NodeId,
    /// UDP socket addresses, most preferred first.
    pub addrs: Vec<SocketAddr>,
}

/// A peer as a user writes it: `IP:PORT` or `NODEID@IP:PORT` (IPv6 in
/// brackets). Without a node id, any node answering there is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeerAddr {
    /// The expected node, if known.
    pub id: Option<NodeId>,
    /// Where to dial.
    pub addr: SocketAddr,
}

/// Why a string is not a peer address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid peer address {input:?}: {reason} (expected IP:PORT or NODEID@IP:PORT)")]
pub struct ParsePeerAddrError {
    input: String,
    reason: String,
}

impl FromStr for PeerAddr {
    type Err = ParsePeerAddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| ParsePeerAddrError {
            input: s.to_string(),
            reason,
        };
        let (id, addr) = match s.split_once('@') {
            Some((id, addr)) => (
                Some(
                    id.parse::<NodeId>()
                        .map_err(|e| err(format!("node id: {e}")))?,
                ),
                addr,
            ),
            None => (None, s),
        };
        let addr = addr
            .parse::<SocketAddr>()
            .map_err(|e| err(format!("socket address: {e}")))?;
        Ok(Self { id, addr })
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id {
            Some(id) => write!(f, "{id}@{}", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms() {
        let id = NodeId::from_bytes([3; 32]);
        let p: PeerAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!((p.id, p.addr.port()), (None, 4000));
        let p: PeerAddr = format!("{id}@[::1]:9").parse().unwrap();
        assert_eq!(p.id, Some(id));
        assert_eq!(p.addr, "[::1]:9".parse().unwrap());
        assert_eq!(p.to_string().parse::<PeerAddr>().unwrap(), p);
        assert!("nope".parse::<PeerAddr>().is_err());
        assert!("abc@127.0.0.1:1".parse::<PeerAddr>().is_err());
        assert!("127.0.0.1".parse::<PeerAddr>().is_err());
    }

    #[test]
    fn node_addr_golden_bytes() {
        // docs/protocol.md §6.1: id, then a sequence of socket addresses.
        let a = NodeAddr {
            id: NodeId::from_bytes([7; 32]),
            addrs: vec![
                "10.0.0.1:4433".parse().unwrap(),
                "[::1]:300".parse().unwrap(),
            ],
        };
        let bytes = crate::codec::encode(&a).unwrap();
        let mut want = vec![7u8; 32];
        want.push(2);
        want.extend([0, 10, 0, 0, 1, 0xd1, 0x22]);
        want.push(1);
        want.extend(std::net::Ipv6Addr::LOCALHOST.octets());
        want.extend([0xac, 0x02]);
        assert_eq!(bytes, want);
        assert_eq!(crate::codec::decode::<NodeAddr>(&bytes).unwrap(), a);
    }
}
