//! A port mapping on the home router (UPnP IGD through the `igd-next`
//! crate, else NAT-PMP through `natpmp`): the router forwards a public port to the node's QUIC socket,
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

/// A mapping the router granted.
enum Mapping {
    /// UPnP IGD: the gateway and the external port.
    Igd(Gateway, u16),
    /// NAT-PMP: the external port.
    Pmp(u16),
}

/// Keeps a mapping of the node's port while the node runs.
pub(crate) async fn run(net: Net) {
    let port = net.bound_addr().port();
    if net.bound_addr().ip().is_loopback() || port == 0 {
        return;
    }
    let mut mapped: Option<Mapping> = None;
    loop {
        let wait = match &mapped {
            Some(m) => match renew(m, port).await {
                Ok(()) => LEASE / 2,
                Err(e) => {
                    tracing::info!("the port mapping was lost: {e}");
                    net.set_mapped(None);
                    mapped = None;
                    Duration::ZERO
                }
            },
            None => match map(port).await {
                Ok((m, addr)) => {
                    tracing::info!(%addr, "the router maps a port to this node");
                    net.set_mapped(Some(addr));
                    mapped = Some(m);
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
    match mapped {
        Some(Mapping::Igd(gw, ext)) => {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                gw.remove_port(PortMappingProtocol::UDP, ext),
            )
            .await;
        }
        Some(Mapping::Pmp(ext)) => {
            let _ = tokio::time::timeout(Duration::from_secs(2), pmp(port, ext, 0)).await;
        }
        None => {}
    }
}

type Gateway = igd_next::aio::Gateway<igd_next::aio::tokio::Tokio>;

/// Maps a port by UPnP IGD, else NAT-PMP: the mapping and the public
/// address.
async fn map(port: u16) -> Result<(Mapping, SocketAddr), String> {
    match map_igd(port).await {
        Ok((gw, ext, addr)) => Ok((Mapping::Igd(gw, ext), addr)),
        Err(igd) => match pmp(port, port, LEASE.as_secs() as u32).await {
            Ok(addr) => Ok((Mapping::Pmp(addr.port()), addr)),
            Err(e) => Err(format!("UPnP IGD: {igd}; NAT-PMP: {e}")),
        },
    }
}

/// Finds the UPnP gateway and maps a port (the node's own if free): the
/// gateway, the external port and the public address.
async fn map_igd(port: u16) -> Result<(Gateway, u16, SocketAddr), String> {
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

/// Asks the default gateway by NAT-PMP (RFC 6886) to map `port` to
/// `public` (a hint) for `lifetime` seconds (0: remove it): the public
/// address granted. Each request is sent up to 3 times, 250 ms apart.
async fn pmp(port: u16, public: u16, lifetime: u32) -> Result<SocketAddr, String> {
    use natpmp::Response;
    let mut client = natpmp::new_tokio_natpmp()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let ip = match pmp_exchange(&mut client, None).await? {
        Response::Gateway(g) => *g.public_address(),
        _ => return Err("an answer of the wrong kind".into()),
    };
    match pmp_exchange(&mut client, Some((port, public, lifetime))).await? {
        Response::UDP(m) => Ok(SocketAddr::new(IpAddr::V4(ip), m.public_port())),
        _ => Err("an answer of the wrong kind".into()),
    }
}

/// One NAT-PMP request (the public address, or a UDP mapping `(port,
/// public, lifetime)`) and its answer, sent up to 3 times, 250 ms apart.
async fn pmp_exchange(
    client: &mut natpmp::NatpmpAsync<tokio::net::UdpSocket>,
    mapping: Option<(u16, u16, u32)>,
) -> Result<natpmp::Response, String> {
    for _ in 0..3 {
        let sent = match mapping {
            None => client.send_public_address_request().await,
            Some((port, public, lifetime)) => {
                client
                    .send_port_mapping_request(natpmp::Protocol::UDP, port, public, lifetime)
                    .await
            }
        };
        sent.map_err(|e| format!("{e:?}"))?;
        let answer =
            tokio::time::timeout(Duration::from_millis(250), client.read_response_or_retry());
        if let Ok(r) = answer.await {
            return r.map_err(|e| format!("{e:?}"));
        }
    }
    Err("no answer".to_string())
}

/// Renews `m`, a mapping of the node's `port`.
async fn renew(m: &Mapping, port: u16) -> Result<(), String> {
    match m {
        Mapping::Igd(gw, ext) => {
            let local = local_addr(gw.addr, port).ok_or("no route to the gateway")?;
            gw.add_port(
                PortMappingProtocol::UDP,
                *ext,
                local,
                LEASE.as_secs() as u32,
                "p2pfs",
            )
            .await
            .map_err(|e| e.to_string())
        }
        Mapping::Pmp(ext) => pmp(port, *ext, LEASE.as_secs() as u32).await.map(|_| ()),
    }
}
