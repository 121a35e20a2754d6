//! The node's QUIC endpoint: one UDP socket (IPv6 and IPv4 when the host
//! allows) and the transport limits every connection gets.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    sync::Arc,
    time::Duration,
};

use crate::{
    Limits,
    error::{SetupError, SwarmError},
};

/// The largest UDP payload the node sends or accepts. Path MTU discovery
/// climbs to it where the path allows (loopback, jumbo-frame LANs) and stays
/// at the usual ~1452 bytes elsewhere. Ten of these (quinn's segmentation
/// offload batch) must fit one 64 KiB UDP send, so the bound is below 6.5 KB.
pub(crate) const MAX_UDP_PAYLOAD: u16 = 6000;

/// Transport parameters shared by both directions of every connection.
pub(crate) fn transport_config(limits: &Limits) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MAX_UDP_PAYLOAD);
    t.mtu_discovery_config(Some(mtu));
    t.max_concurrent_bidi_streams(limits.max_streams_per_connection.into())
        .max_concurrent_uni_streams(0u32.into())
        // Windows that keep a fast link busy; memory is bounded per
        // connection by them and by the stream limit.
        .stream_receive_window((8u32 << 20).into())
        .receive_window((32u32 << 20).into())
        .send_window(32 << 20)
        .keep_alive_interval(Some(limits.idle_timeout / 3))
        .datagram_receive_buffer_size(None);
    if limits.congestion == crate::config::Congestion::Bbr {
        t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
    }
    let idle = quinn::IdleTimeout::try_from(limits.idle_timeout)
        .unwrap_or_else(|_| quinn::IdleTimeout::from(quinn::VarInt::from_u32(30_000)));
    t.max_idle_timeout(Some(idle));
    t
}

/// Binds the UDP socket: `listen` if given, else the IPv6 wildcard
/// (dual-stack) on `default_port`, falling back to IPv4 only, and to a
/// random port if that one is taken.
pub(crate) fn bind(listen: Option<SocketAddr>, default_port: u16) -> Result<UdpSocket, SwarmError> {
    if let Some(addr) = listen {
        return UdpSocket::bind(addr)
            .map_err(|e| SwarmError::io(format!("listening on {addr}"), e));
    }
    let mut last = None;
    for port in [default_port, 0] {
        for ip in [
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        ] {
            match UdpSocket::bind(SocketAddr::new(ip, port)) {
                Ok(s) => return Ok(s),
                Err(e) => last = Some((SocketAddr::new(ip, port), e)),
            }
        }
    }
    let (addr, e) = last.unwrap_or_else(|| {
        (
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            std::io::Error::other("no address to bind"),
        )
    });
    Err(SwarmError::io(format!("listening on {addr}"), e))
}

/// The socket buffer sizes asked for. The kernel's default (about 200 KiB)
/// holds only a few dozen large packets: a burst that arrives while the
/// node is busy overflows it, and QUIC reads the drops as congestion. The
/// kernel caps the request at `net.core.rmem_max` / `wmem_max`.
const SOCKET_BUFFER: usize = 8 << 20;

/// Asks for [`SOCKET_BUFFER`]-sized socket buffers (best effort).
fn grow_buffers(socket: &UdpSocket) {
    let s = socket2::SockRef::from(socket);
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    tracing::debug!(
        recv = ?s.recv_buffer_size(),
        send = ?s.send_buffer_size(),
        "UDP socket buffers"
    );
}

/// Builds the endpoint on `socket`, delaying what it sends by `link`. Its
/// connection ids and stateless resets are made with `keys`, the same on
/// every run of the node (see [`crate::identity::SecretKey::quic_keys`]).
/// The socket carries relayed paths beside the UDP ones (see
/// [`super::paths`]); their table is returned with the endpoint.
pub(crate) fn endpoint(
    socket: UdpSocket,
    server: quinn::ServerConfig,
    keys: crate::identity::QuicKeys,
    link: Option<crate::link::LinkDelay>,
) -> Result<(quinn::Endpoint, Arc<super::paths::Paths>), SwarmError> {
    grow_buffers(&socket);
    let runtime = quinn::default_runtime().ok_or(SetupError::NoRuntime)?;
    let mut config = quinn::EndpointConfig::new(Arc::new(ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        &keys.reset,
    )));
    let cid = keys.cid;
    config.cid_generator(move || Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid)));
    config
        .max_udp_payload_size(MAX_UDP_PAYLOAD)
        .map_err(|e| SetupError::Quic(e.to_string()))?;
    let err = |e| SwarmError::io("starting the QUIC endpoint", e);
    let udp: Arc<dyn quinn::AsyncUdpSocket> = runtime.wrap_udp_socket(socket).map_err(err)?;
    let udp = match link {
        None => udp,
        #[cfg(not(feature = "test-hooks"))]
        Some(_) => return Err(SetupError::NoLinkDelay.into()),
        #[cfg(feature = "test-hooks")]
        Some(link) => {
            tracing::warn!(?link, "emulating a link delay on every datagram sent");
            crate::link::DelayedSocket::new(udp, link)
        }
    };
    let (socket, paths) = super::paths::MuxSocket::new(udp).map_err(err)?;
    let endpoint = quinn::Endpoint::new_with_abstract_socket(config, Some(server), socket, runtime)
        .map_err(err)?;
    Ok((endpoint, paths))
}

/// The addresses peers can reach the endpoint at: the bound address, or
/// every interface address when bound to a wildcard (non-loopback first).
pub(crate) fn reachable_addrs(bound: SocketAddr) -> Vec<SocketAddr> {
    if !bound.ip().is_unspecified() {
        return vec![bound];
    }
    let v6 = bound.is_ipv6();
    let mut addrs: Vec<SocketAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip())
        .filter(|ip| v6 || ip.is_ipv4())
        .filter(|ip| match ip {
            // Link-local IPv6 needs a scope id to be dialed.
            IpAddr::V6(v6) => !v6.is_unicast_link_local(),
            IpAddr::V4(_) => true,
        })
        .map(|ip| SocketAddr::new(ip, bound.port()))
        .collect();
    addrs.sort_by_key(|a| (a.ip().is_loopback(), a.is_ipv6()));
    addrs.dedup();
    addrs
}

/// Server-side settings on top of TLS.
pub(crate) fn server_config(
    tls: rustls::ServerConfig,
    limits: &Limits,
) -> Result<quinn::ServerConfig, SwarmError> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| SetupError::Quic(e.to_string()))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(Arc::new(transport_config(limits)));
    cfg.max_incoming(limits.max_connections);
    cfg.incoming_buffer_size(1 << 20);
    Ok(cfg)
}

/// Client-side settings on top of TLS.
pub(crate) fn client_config(
    tls: rustls::ClientConfig,
    transport: Arc<quinn::TransportConfig>,
) -> Result<quinn::ClientConfig, SwarmError> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| SetupError::Quic(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(transport);
    Ok(cfg)
}

/// How long a dial may take per address.
pub(crate) const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
