//! The accept loop: admit connections within the limits, learn the peer's
//! id from the handshake, and hand each connection to its protocol by ALPN.

use std::{net::IpAddr, time::Instant};

use p2pfs_proto::close::Code;

use super::{
    Net,
    dial::{Conn, peer_id},
};

/// Accepts connections until the node shuts down.
pub(crate) async fn accept_loop(net: Net) {
    let endpoint = net.inner.endpoint.clone();
    loop {
        let incoming = tokio::select! {
            _ = net.inner.cancel.cancelled() => break,
            incoming = endpoint.accept() => match incoming {
                Some(i) => i,
                None => break,
            },
        };
        let n = net.clone();
        net.spawn(async move { admit(n, incoming).await });
    }
}

/// Counts a connection against its IP's limit while it lives.
struct IpSlot {
    net: Net,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut m = crate::lock(&self.net.inner.inbound_per_ip);
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

async fn admit(net: Net, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let ip = remote.ip().to_canonical();
    let slot = {
        let mut m = crate::lock(&net.inner.inbound_per_ip);
        let limits = &net.inner.limits;
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
            net: net.clone(),
            ip,
        }
    };
    let Ok(connecting) = incoming.accept() else {
        return;
    };
    let conn = match tokio::time::timeout(super::endpoint::DIAL_TIMEOUT, connecting).await {
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
    let router = net.router();
    let Some(alpn) = alpn.and_then(|a| router.as_ref().and_then(|r| r.alpn(&a))) else {
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
        via: net.inner.paths.via(&remote).map(|(relay, _)| relay),
    };
    net.inner.pool.insert(alpn, c.clone());
    net.serve(c, alpn).await;
    drop(slot);
}
