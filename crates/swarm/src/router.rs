//! The accept loop: admit connections within the limits, learn the peer's
//! id from the handshake, and hand each connection to its protocol by ALPN.

use std::{net::IpAddr, time::Instant};

use p2pfs_proto::{blobs, close::Code};

use crate::{
    Node,
    dial::{Conn, peer_id},
    transfer::provider,
};

/// Accepts connections until the node shuts down.
pub(crate) async fn accept_loop(node: Node) {
    let endpoint = node.inner.endpoint.clone();
    loop {
        let incoming = tokio::select! {
            _ = node.inner.cancel.cancelled() => break,
            incoming = endpoint.accept() => match incoming {
                Some(i) => i,
                None => break,
            },
        };
        let n = node.clone();
        node.inner
            .tasks
            .spawn(async move { admit(n, incoming).await });
    }
}

/// Counts a connection against its IP's limit while it lives.
struct IpSlot {
    node: Node,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut m = crate::lock(&self.node.inner.inbound_per_ip);
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

async fn admit(node: Node, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let ip = remote.ip().to_canonical();
    let slot = {
        let mut m = crate::lock(&node.inner.inbound_per_ip);
        let limits = &node.inner.limits;
        if m.values().sum::<usize>() >= limits.max_connections {
            drop(m);
            tracing::debug!(%remote, "refusing connection: too many connections");
            incoming.refuse();
            return;
        }
        let n = m.entry(ip).or_insert(0);
        if *n >= limits.max_connections_per_ip {
            drop(m);
            tracing::debug!(%remote, "refusing connection: too many from this address");
            incoming.refuse();
            return;
        }
        *n += 1;
        IpSlot {
            node: node.clone(),
            ip,
        }
    };
    let Ok(connecting) = incoming.accept() else {
        return;
    };
    let conn = match tokio::time::timeout(crate::endpoint::DIAL_TIMEOUT, connecting).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(%remote, "handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, "handshake timed out");
            return;
        }
    };
    let Some(peer) = peer_id(&conn) else {
        conn.close(Code::Protocol.value().into(), b"no identity");
        return;
    };
    let alpn = conn
        .handshake_data()
        .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|h| h.protocol);
    let Some(alpn) = alpn.and_then(|a| {
        crate::node::ALPNS
            .iter()
            .copied()
            .find(|k| *k == a.as_slice())
    }) else {
        conn.close(Code::Protocol.value().into(), b"unknown protocol");
        return;
    };
    tracing::debug!(%peer, %remote, "accepted connection");
    let c = Conn {
        conn,
        peer,
        addr: remote,
        outbound: false,
        since: Instant::now(),
    };
    node.inner.pool.insert(alpn, c.clone());
    serve(node, c, alpn).await;
    drop(slot);
}

/// The next stream the peer opens on `conn`; `None` once the connection
/// closes or the node stops.
pub(crate) async fn next_stream(
    node: &Node,
    conn: &Conn,
) -> Option<(quinn::SendStream, quinn::RecvStream)> {
    tokio::select! {
        _ = node.inner.cancel.cancelled() => None,
        s = conn.conn.accept_bi() => s.ok(),
    }
}

/// Runs the protocol of a connection (either direction) until it closes.
pub(crate) async fn serve(node: Node, conn: Conn, alpn: &'static [u8]) {
    if alpn == blobs::ALPN {
        provider::serve(node, conn).await;
    } else if alpn == p2pfs_proto::dht::ALPN {
        crate::dht::service::serve(node, conn).await;
    } else if alpn == p2pfs_proto::room::ALPN {
        crate::room::sync::serve(node, conn).await;
    }
}
