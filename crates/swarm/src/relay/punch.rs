//! Hole punching: a relayed connection keeps trying to become direct.
//!
//! The dialer asks the relay (a node both ends are connected to) to pass
//! a `Punch` with its candidate addresses to the peer. The peer answers
//! with its own and at once dials the dialer's; the dialer dials the
//! peer's as soon as the answer arrives, about when the peer's first
//! packets reach its router. Each side's packets open its own NAT toward
//! the other (endpoint-independent mapping), so one of the two dials gets
//! through, as in libp2p's DCUtR. The connection is authenticated like
//! any other (the node id is proven in TLS). When a direct path exists,
//! every relayed connection with the peer is dialed again on it and the
//! relayed one is closed.

use std::{net::SocketAddr, time::Duration};

use p2pfs_proto::{
    NodeId,
    relay::{ALPN, MAX_PUNCH_ADDRS, RelayAnswer, RelayRequest},
};

use crate::net::{
    Net,
    dial::{Conn, Target},
    paths::is_path_addr,
};

/// Punch rounds a relayed peer gets: three close together, then one a
/// minute for an hour (a NAT's state changes; a peer's router may start
/// mapping ports).
const ROUNDS: u32 = 63;

/// Dials `peer` at `addrs` on the relay protocol, directly (never through
/// a relay): the packets open this node's NAT toward the peer, and the
/// connection, if one forms, is the direct path.
pub(crate) async fn dial_direct(net: &Net, peer: NodeId, addrs: Vec<SocketAddr>) -> Option<Conn> {
    let mut direct: Vec<SocketAddr> = Vec::new();
    for a in addrs {
        if !is_path_addr(&a) && !direct.contains(&a) {
            direct.push(a);
        }
    }
    if direct.is_empty() {
        return None;
    }
    let target = Target {
        id: Some(peer),
        addrs: direct,
    };
    match net.connect(&target, ALPN).await {
        Ok(c) if c.via.is_none() => Some(c),
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(%peer, "punch dial failed: {e}");
            None
        }
    }
}

/// One punch through `relay` to `peer`: the direct connection it made.
pub(crate) async fn punch(net: &Net, peer: NodeId, relay: NodeId) -> Option<Conn> {
    let via = Target {
        id: Some(relay),
        addrs: Vec::new(),
    };
    let conn = net.connect(&via, ALPN).await.ok()?;
    let mut addrs = net.addrs();
    addrs.truncate(MAX_PUNCH_ADDRS);
    let (mut send, _, answer) = super::exchange(&conn, &RelayRequest::Punch { to: peer, addrs })
        .await
        .ok()?;
    let _ = send.finish();
    match answer {
        RelayAnswer::Punch { addrs } => dial_direct(net, peer, addrs).await,
        other => {
            tracing::debug!(%peer, relay = %relay.fmt_short(), ?other, "punch refused");
            None
        }
    }
}

/// Tries to replace the relayed connections with `peer` (through
/// `relay`) by direct ones, in [`ROUNDS`] rounds, until it succeeds, the
/// relayed connections are gone, or the node stops. (Boxed: dialing
/// starts it, and it dials.)
pub(crate) fn upgrade(
    net: Net,
    peer: NodeId,
    relay: NodeId,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(upgrade_rounds(net, peer, relay))
}

async fn upgrade_rounds(net: Net, peer: NodeId, relay: NodeId) {
    for round in 0..ROUNDS {
        let wait = match round {
            0 => Duration::ZERO,
            1 | 2 => Duration::from_secs(2),
            _ => Duration::from_secs(60),
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {},
            _ = net.cancel().cancelled() => return,
        }
        if net.relayed(&peer).is_empty() {
            return;
        }
        let direct = match net.direct(&peer) {
            Some(c) => Some(c),
            None => punch(&net, peer, relay).await,
        };
        if let Some(direct) = direct {
            tracing::debug!(%peer, addr = %direct.addr, round, "a direct path; leaving the relay");
            for alpn in net.relayed(&peer) {
                let target = Target {
                    id: Some(peer),
                    addrs: vec![direct.addr],
                };
                if let Err(e) = net.dial_direct(&target, alpn).await {
                    tracing::debug!(%peer, "moving to the direct path: {e}");
                }
            }
            if net.relayed(&peer).is_empty() {
                return;
            }
        }
    }
}
