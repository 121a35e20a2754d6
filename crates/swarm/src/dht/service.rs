//! Answering DHT queries (docs/protocol.md §7.4): one task per stream,
//! rate-limited per connection, every answer bounded.

use std::{net::SocketAddr, time::Instant};

use p2pfs_proto::{
    NodeAddr, NodeId,
    dht::{DhtRequest, DhtResponse, K, MAX_DHT_MESSAGE, MAX_NODE_ADDRS, Query, Refusal},
};

use crate::{
    dht::{Key, runtime::Dht},
    frame,
    net::dial::Conn,
};

/// Queries per second a connection may send, sustained.
pub(crate) const QUERY_RATE: f64 = 20.0;
/// Queries a connection may send in a burst.
pub(crate) const QUERY_BURST: f64 = 50.0;

/// A token bucket.
#[derive(Debug)]
pub(crate) struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            tokens: QUERY_BURST,
            last: now,
        }
    }

    /// Takes a token if there is one.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * QUERY_RATE).min(QUERY_BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Serves the queries a peer sends on `conn` until it closes.
pub(crate) async fn serve(dht: Dht, conn: Conn) {
    let mut bucket = Bucket::new(Instant::now());
    while let Some((send, recv)) = dht.net.next_stream(&conn).await {
        let allowed = bucket.take(Instant::now());
        let (d, c) = (dht.clone(), conn.clone());
        dht.net
            .spawn(async move { handle(d, c, send, recv, allowed).await });
    }
}

async fn handle(
    dht: Dht,
    conn: Conn,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    allowed: bool,
) {
    let timeout = dht.net.limits().request_timeout;
    let request: DhtRequest =
        match frame::read_request(&mut send, &mut recv, MAX_DHT_MESSAGE, timeout).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(peer = %conn.peer, "bad DHT query: {e}");
                return;
            }
        };
    let observed = canonical(conn.addr);
    let response = if !allowed {
        DhtResponse::Refused {
            reason: Refusal::RateLimited,
        }
    } else if request.check().is_err() {
        DhtResponse::Refused {
            reason: Refusal::Invalid,
        }
    } else {
        if request.server {
            dht.contacted(conn.peer, observed);
        }
        answer(&dht, conn.peer, observed, request.query).await
    };
    if frame::write(&mut send, &response).await.is_ok() {
        let _ = send.finish();
    }
}

async fn answer(dht: &Dht, peer: NodeId, observed: SocketAddr, query: Query) -> DhtResponse {
    match query {
        Query::Ping => DhtResponse::Pong { observed },
        Query::FindNode { target } => DhtResponse::Nodes {
            closer: closest(dht, &Key(target), peer),
        },
        Query::GetProviders { hash } => {
            let records = dht.records.clone();
            let providers = crate::blocking(move || records.get(&hash))
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!("reading provider records: {e}");
                    Vec::new()
                });
            DhtResponse::Providers {
                providers,
                closer: closest(dht, &Key::from(hash), peer),
            }
        }
        Query::AddProvider { hash, addrs } => {
            let mut all = vec![observed];
            for a in addrs {
                let a = canonical(a);
                if !all.contains(&a) {
                    all.push(a);
                }
            }
            all.truncate(MAX_NODE_ADDRS);
            let records = dht.records.clone();
            match crate::blocking(move || records.add(&hash, peer, all)).await {
                Ok(Ok(ttl_secs)) => DhtResponse::Stored { ttl_secs },
                Ok(Err(reason)) => DhtResponse::Refused { reason },
                Err(e) => {
                    tracing::warn!("storing a provider record: {e}");
                    DhtResponse::Refused {
                        reason: Refusal::Full,
                    }
                }
            }
        }
    }
}

/// The nodes closest to `target` this node knows, never `asker`.
fn closest(dht: &Dht, target: &Key, asker: NodeId) -> Vec<NodeAddr> {
    let asker = Key::from(asker);
    dht.closest(target, K + 1)
        .into_iter()
        .filter(|(k, a)| *k != asker && !a.is_empty())
        .take(K)
        .map(|(k, mut addrs)| {
            addrs.truncate(MAX_NODE_ADDRS);
            NodeAddr {
                id: NodeId::from_bytes(k.0),
                addrs,
            }
        })
        .collect()
}

/// An address as peers should dial it: IPv4-mapped IPv6 shown as IPv4.
pub(crate) fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(t0);
        let burst = (0..100).filter(|_| b.take(t0)).count();
        assert_eq!(burst, QUERY_BURST as usize);
        let later = t0 + Duration::from_secs(1);
        let more = (0..100).filter(|_| b.take(later)).count();
        assert_eq!(more, QUERY_RATE as usize);
    }

    #[test]
    fn mapped_addresses_are_canonical() {
        let a: SocketAddr = "[::ffff:10.0.0.1]:5".parse().unwrap();
        assert_eq!(canonical(a), "10.0.0.1:5".parse().unwrap());
    }
}
