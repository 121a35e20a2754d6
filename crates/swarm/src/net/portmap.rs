//! A port mapping on the home router (UPnP IGD, through the `igd-next`
//! crate): the router forwards a public port to the node's QUIC socket,
//! so peers anywhere can dial the node unasked, whatever its NAT does to
//! other traffic (a symmetric NAT included). The mapping is the best
//! candidate address the node gives (docs/protocol.md §6.1); it is renewed
//! before its lease ends, and removed when the node stops.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use igd_next::{PortMappingProtocol, SearchOptions, aio::tokio::search_gateway};

use super::Net;

/// The lease asked for; renewed at half of it.
const LEASE: Duration = Duration::from_secs(3600);

/// How long to look for a gateway.
const SEARCH: Duration = Duration::from_secs(3);

/// When no gateway answered, how long before looking again (a router
/// rebooted, a laptop moved).
const RETRY: Duration = Duration::from_secs(300);

/// The local address the gateway should forward to: the node's address
/// on the interface that routes to the gateway.
fn local_addr(gateway: SocketAddr, port: u16) -> Option<SocketAddr> {
    let probe = std::net::UdpSocket::bind((IpAddr::from([0, 0, 0, 0]), 0)).ok()?;
    probe.connect(gateway).ok()?;
    let ip = probe.local_addr().ok()?.ip();
    Some(SocketAddr::new(ip, port))
}

/// Keeps a mapping of the node's port while the node runs.
pub(crate) async fn run(net: Net) {
    let port = net.bound_addr().port();
    if net.bound_addr().ip().is_loopback() || port == 0 {
        return;
    }
    let mut mapped: Option<(igd_next::aio::Gateway<igd_next::aio::tokio::Tokio>, u16)> = None;
    loop {
        let wait = match &mapped {
            Some((gw, ext)) => match renew(gw, *ext, port).await {
                Ok(()) => LEASE / 2,
                Err(e) => {
                    tracing::info!("the port mapping was lost: {e}");
                    net.set_mapped(None);
                    mapped = None;
                    Duration::ZERO
                }
            },
            None => match map(port).await {
                Ok((gw, ext, addr)) => {
                    tracing::info!(%addr, "the router maps a port to this node (UPnP IGD)");
                    net.set_mapped(Some(addr));
                    mapped = Some((gw, ext));
                    LEASE / 2
                }
                Err(e) => {
                    tracing::debug!("no port mapping: {e}");
                    RETRY
                }
            },
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {},
            _ = net.cancel().cancelled() => break,
        }
    }
    if let Some((gw, ext)) = mapped {
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            gw.remove_port(PortMappingProtocol::UDP, ext),
        )
        .await;
    }
}

type Gateway = igd_next::aio::Gateway<igd_next::aio::tokio::Tokio>;

/// Finds the gateway and maps a port (the node's own if free): the
/// gateway, the external port and the public address.
async fn map(port: u16) -> Result<(Gateway, u16, SocketAddr), String> {
    let mut options = SearchOptions::default();
    options.timeout = Some(SEARCH);
    options.single_search_timeout = Some(SEARCH);
    let gw = search_gateway(options).await.map_err(|e| e.to_string())?;
    let local = local_addr(gw.addr, port).ok_or("no route to the gateway")?;
    let lease = LEASE.as_secs() as u32;
    let ext = match gw
        .add_port(PortMappingProtocol::UDP, port, local, lease, "p2pfs")
        .await
    {
        Ok(()) => port,
        Err(_) => gw
            .add_any_port(PortMappingProtocol::UDP, local, lease, "p2pfs")
            .await
            .map_err(|e| e.to_string())?,
    };
    let ip = gw.get_external_ip().await.map_err(|e| e.to_string())?;
    Ok((gw, ext, SocketAddr::new(ip, ext)))
}

/// Renews the mapping of `ext` to the node's `port`.
async fn renew(gw: &Gateway, ext: u16, port: u16) -> Result<(), String> {
    let local = local_addr(gw.addr, port).ok_or("no route to the gateway")?;
    gw.add_port(
        PortMappingProtocol::UDP,
        ext,
        local,
        LEASE.as_secs() as u32,
        "p2pfs",
    )
    .await
    .map_err(|e| e.to_string())
}
