//! Finding nodes on the LAN by mDNS/DNS-SD (RFC 6762, RFC 6763; the
//! `mdns-sd` crate), over IPv4 and IPv6: every node registers a
//! `_p2pfs._udp.local.` service, so standard tools see p2pfs nodes
//! (`avahi-browse -r _p2pfs._udp`), and browses for the others. A node
//! found is greeted like one heard by the beacon (`lan`): pinged over the
//! DHT protocol, the ping proving its id.
//!
//! It goes beside the beacon (docs/protocol.md §7.7), which stays: nodes
//! of earlier p2pfs versions speak only the beacon, and the beacon is one
//! datagram every 30 s where mDNS is a responder with its own sockets.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    time::Instant,
};

use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};
use p2pfs_proto::NodeId;

use crate::{Target, dht::runtime::Dht, net::endpoint::reachable_addrs};

/// The DNS-SD service type of p2pfs nodes.
pub const SERVICE: &str = "_p2pfs._udp.local.";

/// A node found is greeted at most this often.
const GREET_EVERY: std::time::Duration = std::time::Duration::from_secs(20);

/// Nodes remembered for [`GREET_EVERY`].
const MAX_RECENT: usize = 1024;

/// The addresses to register: the node's, without loopback and IPv6
/// link-local ones (those need a scope to be dialed).
fn addresses(bound: SocketAddr) -> Vec<IpAddr> {
    reachable_addrs(bound)
        .into_iter()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_loopback() && !is_link_local_v6(ip))
        .collect()
}

fn is_link_local_v6(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.is_unicast_link_local())
}

/// Registers this node and browses for the others until the node stops.
/// Does nothing for a node bound to loopback.
pub(crate) async fn run(dht: Dht) {
    let net = dht.net.clone();
    let bound = net.bound_addr();
    let ips = addresses(bound);
    if ips.is_empty() {
        return;
    }
    let daemon = match ServiceDaemon::new() {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!("mDNS is off: {e}");
            return;
        }
    };
    let me = net.id();
    let id = me.to_string();
    let host = format!("p2pfs-{}.local.", &id[..16]);
    let server = if dht.config.server { "1" } else { "0" };
    let props = [("id", id.as_str()), ("server", server)];
    let registered = ServiceInfo::new(SERVICE, &id, &host, &ips[..], bound.port(), &props[..])
        .map_err(|e| e.to_string())
        .and_then(|info| daemon.register(info).map_err(|e| e.to_string()));
    if let Err(e) = registered {
        tracing::warn!("registering the mDNS service: {e}");
    }
    let events = match daemon.browse(SERVICE) {
        Ok(rx) => rx,
        Err(e) => {
            tracing::warn!("browsing mDNS: {e}");
            let _ = daemon.shutdown();
            return;
        }
    };
    let mut recent: HashMap<NodeId, Instant> = HashMap::new();
    loop {
        let event = tokio::select! {
            _ = net.cancel().cancelled() => break,
            e = events.recv_async() => match e {
                Ok(e) => e,
                Err(_) => break,
            },
        };
        let ServiceEvent::ServiceResolved(s) = event else {
            continue;
        };
        let Some(peer) = s
            .get_property_val_str("id")
            .and_then(|v| v.parse::<NodeId>().ok())
        else {
            continue;
        };
        if peer == me || recent.get(&peer).is_some_and(|t| t.elapsed() < GREET_EVERY) {
            continue;
        }
        let addrs: Vec<SocketAddr> = s
            .get_addresses()
            .iter()
            .map(|a| a.to_ip_addr())
            .filter(|ip| !is_link_local_v6(ip))
            .map(|ip| SocketAddr::new(ip, s.get_port()))
            .take(p2pfs_proto::dht::MAX_NODE_ADDRS)
            .collect();
        if addrs.is_empty() {
            continue;
        }
        if recent.len() >= MAX_RECENT {
            recent.retain(|_, t| t.elapsed() < GREET_EVERY);
        }
        recent.insert(peer, Instant::now());
        let serves = s.get_property_val_str("server") == Some("1");
        tracing::debug!(%peer, ?addrs, "found a node by mDNS");
        let d = dht.clone();
        let target = Target {
            id: Some(peer),
            addrs,
        };
        net.spawn(async move { crate::dht::lan::greet(d, target, serves).await });
    }
    let _ = daemon.shutdown();
}
