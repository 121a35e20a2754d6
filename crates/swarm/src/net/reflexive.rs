//! This node's reflexive addresses: where its packets come from as other
//! nodes see them (a DHT `Pong` says, §7.3). Behind a NAT that is the
//! router's public address and the port it mapped the node's one socket
//! to, the address other nodes can reach it at (a port-preserving home
//! router lets through whoever this node has sent to; a simultaneous
//! open does the rest). Tickets and address records carry them beside the
//! addresses the node listens on.
//!
//! A peer could lie, so an address counts by how many peers reported it:
//! only the best few are given out, and memory stays bounded.

use std::{
    collections::{BTreeSet, HashMap},
    net::{IpAddr, SocketAddr},
    time::Instant,
};

use p2pfs_proto::NodeId;

/// Reflexive addresses given out.
pub(crate) const GIVEN: usize = 2;
/// Reflexive addresses remembered.
const KEPT: usize = 8;
/// Reporters remembered per address.
const REPORTERS: usize = 8;

/// Whether a peer at `addr` can tell this node anything new about its
/// address: only one outside every local network (a peer on loopback or
/// on the same LAN sees the address this node listens on).
pub(crate) fn worth_asking(addr: &SocketAddr) -> bool {
    if super::paths::is_path_addr(addr) {
        return false;
    }
    match addr.ip() {
        IpAddr::V4(ip) => {
            !(ip.is_loopback()
                || ip.is_private()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_broadcast())
        }
        IpAddr::V6(ip) => {
            let local = (ip.segments()[0] & 0xfe00) == 0xfc00 || ip.is_unicast_link_local();
            !(ip.is_loopback() || ip.is_unspecified() || local)
        }
    }
}

/// What peers said of this node's address.
#[derive(Debug, Default)]
pub(crate) struct Reflexive {
    seen: HashMap<SocketAddr, (BTreeSet<NodeId>, Instant)>,
    /// When a peer outside last saw this node at a global address it
    /// listens on (no NAT in between).
    public: Option<Instant>,
}

impl Reflexive {
    /// `peer` saw this node's packets come from `addr`. Addresses this
    /// node listens on, loopback and unspecified ones tell nothing.
    pub(crate) fn observed(&mut self, peer: NodeId, addr: SocketAddr, local: &[SocketAddr]) {
        let ip = addr.ip();
        if local.contains(&addr) && worth_asking(&addr) {
            self.public = Some(Instant::now());
        }
        if ip.is_loopback() || ip.is_unspecified() || addr.port() == 0 || local.contains(&addr) {
            return;
        }
        if !self.seen.contains_key(&addr) && self.seen.len() >= KEPT {
            // Make room: the address with the fewest reporters, oldest first.
            if let Some(worst) = self
                .seen
                .iter()
                .min_by_key(|(_, (by, at))| (by.len(), *at))
                .map(|(a, _)| *a)
            {
                self.seen.remove(&worst);
            }
        }
        let (by, at) = self
            .seen
            .entry(addr)
            .or_insert_with(|| (BTreeSet::new(), Instant::now()));
        if by.len() < REPORTERS {
            by.insert(peer);
        }
        *at = Instant::now();
    }

    /// Whether a peer outside saw this node at an address it listens on.
    pub(crate) fn is_public(&self) -> bool {
        self.public.is_some()
    }

    /// The best [`GIVEN`] addresses: most reporters first, then most
    /// recently reported.
    pub(crate) fn best(&self) -> Vec<SocketAddr> {
        let mut all: Vec<(&SocketAddr, &(BTreeSet<NodeId>, Instant))> = self.seen.iter().collect();
        all.sort_by(|a, b| {
            (b.1.0.len(), b.1.1)
                .cmp(&(a.1.0.len(), a.1.1))
                .then(a.0.cmp(b.0))
        });
        all.into_iter().take(GIVEN).map(|(a, _)| *a).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u8) -> NodeId {
        NodeId::from_bytes([i; 32])
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    #[test]
    fn the_address_most_peers_report_comes_first_and_liars_stay_behind() {
        let mut r = Reflexive::default();
        let local = [addr("10.0.0.2:7000")];
        r.observed(id(1), addr("198.18.0.100:7000"), &local);
        r.observed(id(2), addr("198.18.0.100:7000"), &local);
        r.observed(id(3), addr("203.0.113.9:1"), &local);
        r.observed(id(4), addr("203.0.113.9:2"), &local);
        // Nothing from our own, loopback or unspecified addresses.
        r.observed(id(5), addr("10.0.0.2:7000"), &local);
        r.observed(id(5), addr("127.0.0.1:7000"), &local);
        r.observed(id(5), addr("0.0.0.0:7000"), &local);
        let best = r.best();
        assert_eq!(best.len(), GIVEN);
        assert_eq!(best[0], addr("198.18.0.100:7000"));
        assert!(!best.contains(&addr("10.0.0.2:7000")));
    }

    #[test]
    fn only_peers_outside_the_local_networks_are_asked() {
        for a in [
            "127.0.0.1:1",
            "10.1.2.3:1",
            "192.168.1.2:1",
            "[::1]:1",
            "[fd00::1]:1",
            "240.0.0.7:1",
        ] {
            assert!(!worth_asking(&addr(a)), "{a}");
        }
        for a in ["198.18.0.1:7000", "203.0.113.9:1", "[2001:db8::1]:1"] {
            assert!(worth_asking(&addr(a)), "{a}");
        }
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_reports() {
        let mut r = Reflexive::default();
        r.observed(id(1), addr("198.18.0.100:7000"), &[]);
        r.observed(id(2), addr("198.18.0.100:7000"), &[]);
        for p in 1..=2000u16 {
            r.observed(id((p % 250) as u8), addr(&format!("203.0.113.7:{p}")), &[]);
        }
        for i in 0..=255u8 {
            r.observed(id(i), addr("198.18.0.100:7000"), &[]);
        }
        assert!(r.seen.len() <= KEPT);
        assert!(r.seen.values().all(|(by, _)| by.len() <= REPORTERS));
        assert_eq!(r.best()[0], addr("198.18.0.100:7000"));
    }
}
