//! Finding nodes on the LAN with no address given: a UDP multicast beacon
//! (docs/protocol.md §7.7). Every node sends one at start and every 30 s;
//! a node that hears one pings the sender over the DHT protocol, so both
//! learn of each other.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4},
    time::{Duration, Instant},
};

use p2pfs_proto::{
    NodeId,
    dht::{LAN_GROUP_V4, LAN_PORT, LanBeacon, Query},
};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::{
    Target,
    dht::{rpc, runtime::Dht},
};

/// How often a node sends its beacon.
const BEACON_EVERY: Duration = Duration::from_secs(30);
/// A sender is pinged at most this often.
const PING_EVERY: Duration = Duration::from_secs(20);
/// Senders remembered for [`PING_EVERY`].
const MAX_RECENT: usize = 1024;

/// The IPv4 addresses of the interfaces to beacon on: the bound address,
/// or every non-loopback one for a wildcard bind.
fn interfaces(bound: SocketAddr) -> Vec<Ipv4Addr> {
    match bound.ip() {
        IpAddr::V4(ip) if !ip.is_unspecified() => vec![ip],
        IpAddr::V6(ip) if !ip.is_unspecified() => Vec::new(),
        _ => if_addrs::get_if_addrs()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|i| match i.ip() {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            })
            .collect(),
    }
    .into_iter()
    .filter(|ip| !ip.is_loopback())
    .collect()
}

fn bind(ifaces: &[Ipv4Addr]) -> std::io::Result<tokio::net::UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, LAN_PORT)).into())?;
    let group = Ipv4Addr::from(LAN_GROUP_V4);
    let mut joined = 0;
    for ip in ifaces {
        match s.join_multicast_v4(&group, ip) {
            Ok(()) => joined += 1,
            Err(e) => tracing::debug!(%ip, "joining the LAN group: {e}"),
        }
    }
    if joined == 0 {
        return Err(std::io::Error::other("no interface joined the LAN group"));
    }
    s.set_multicast_ttl_v4(1)?;
    s.set_multicast_loop_v4(true)?;
    tokio::net::UdpSocket::from_std(s.into())
}

/// Beacons and listens until the node shuts down. Does nothing for a node
/// bound to loopback or with no IPv4 interface.
pub(crate) async fn run(dht: Dht) {
    let net = dht.net.clone();
    let ifaces = interfaces(net.bound_addr());
    if ifaces.is_empty() {
        return;
    }
    let socket = match bind(&ifaces) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("LAN discovery is off: {e}");
            return;
        }
    };
    let beacon = LanBeacon {
        node: net.id(),
        port: net.bound_addr().port(),
        server: dht.config.server,
    }
    .to_datagram();
    let group = SocketAddrV4::new(Ipv4Addr::from(LAN_GROUP_V4), LAN_PORT);
    let mut every = tokio::time::interval(BEACON_EVERY);
    let mut recent: HashMap<NodeId, Instant> = HashMap::new();
    let mut buf = [0u8; 256];
    loop {
        tokio::select! {
            _ = net.cancel().cancelled() => return,
            _ = every.tick() => {
                for ip in &ifaces {
                    let sent = SockRef::from(&socket)
                        .set_multicast_if_v4(ip)
                        .map(|_| ());
                    let sent = match sent {
                        Ok(()) => socket.send_to(&beacon, group).await.map(|_| ()),
                        Err(e) => Err(e),
                    };
                    if let Err(e) = sent {
                        tracing::debug!(%ip, "sending the LAN beacon: {e}");
                    }
                }
            }
            r = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                let Some(b) = LanBeacon::from_datagram(&buf[..n]) else { continue };
                if b.node == net.id() {
                    continue;
                }
                if recent.get(&b.node).is_some_and(|t| t.elapsed() < PING_EVERY) {
                    continue;
                }
                if recent.len() >= MAX_RECENT {
                    recent.retain(|_, t| t.elapsed() < PING_EVERY);
                }
                recent.insert(b.node, Instant::now());
                let d = dht.clone();
                let target = Target {
                    id: Some(b.node),
                    addrs: vec![SocketAddr::new(from.ip(), b.port)],
                };
                net.spawn(async move { greet(d, target, b.server).await });
            }
        }
    }
}

/// Pings a node heard on the LAN (by its beacon or by mDNS); adds it if it
/// serves the DHT, and fills the table from it while the table is small.
pub(crate) async fn greet(dht: Dht, target: Target, server: bool) {
    let answer =
        tokio::time::timeout(Duration::from_secs(5), rpc::ask(&dht, &target, Query::Ping)).await;
    let Ok(Ok(a)) = answer else {
        tracing::debug!(peer = %target, "LAN node did not answer");
        return;
    };
    tracing::debug!(peer = %target, "found a node on the LAN");
    if server {
        dht.contacted(a.peer, a.addr);
        if dht.status().table < p2pfs_proto::dht::K {
            crate::dht::runtime::lookup(&dht, crate::dht::Key::from(dht.net.id()), None).await;
        }
    }
}
