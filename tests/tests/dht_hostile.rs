//! The DHT service against peers that break its rules: malformed and
//! oversized queries, too many addresses, floods, and announcements made
//! for somebody else. Each costs only the offender.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use p2pfs_proto::{
    Hash, codec,
    dht::{ALPN, DhtRequest, DhtResponse, MAX_NODE_ADDRS, Query, Refusal},
};
use p2pfs_swarm::identity::SecretKey;
use p2pfs_tests::inproc::{node, raw_connect_as};

/// Sends `bytes` on a new stream and reads the whole answer.
async fn exchange(c: &quinn::Connection, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let (mut send, mut recv) = c.open_bi().await.map_err(|e| e.to_string())?;
    send.write_all(bytes).await.map_err(|e| e.to_string())?;
    let _ = send.finish();
    tokio::time::timeout(Duration::from_secs(10), recv.read_to_end(1 << 20))
        .await
        .map_err(|_| "no answer".to_string())?
        .map_err(|e| e.to_string())
}

async fn ask(c: &quinn::Connection, query: Query) -> DhtResponse {
    let frame = codec::encode_frame(&DhtRequest {
        server: false,
        query,
    })
    .unwrap();
    let answer = exchange(c, &frame).await.unwrap();
    codec::decode(&answer[4..]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queries_cost_only_the_asker() {
    let a = node().await;
    let key = SecretKey::generate().unwrap();
    let c = raw_connect_as(&key, &a.node, ALPN).await.unwrap();

    // Garbage and a frame over the DHT's size limit: the stream is refused
    // (no answer), the connection lives on.
    assert!(exchange(&c, &[3, 0, 0, 0, 0xff, 0xff, 0xff]).await.is_err());
    let mut big = (9000u32).to_le_bytes().to_vec();
    big.extend(vec![0u8; 9000]);
    assert!(exchange(&c, &big).await.is_err());
    let DhtResponse::Pong { observed } = ask(&c, Query::Ping).await else {
        panic!("no pong");
    };
    // The asker's own address, as the answerer saw it.
    assert!(
        observed.ip().is_loopback() && observed.port() != 0 && observed != c.remote_address(),
        "{observed}"
    );

    // Too many addresses in an announcement.
    let hash = Hash::from_bytes([7; 32]);
    let addrs = vec!["10.9.9.9:1".parse().unwrap(); MAX_NODE_ADDRS + 1];
    assert_eq!(
        ask(&c, Query::AddProvider { hash, addrs }).await,
        DhtResponse::Refused {
            reason: Refusal::Invalid
        }
    );

    // An announcement is recorded under the asker's authenticated id, at
    // the address it came from first, whatever addresses it claims.
    let claimed: std::net::SocketAddr = "10.9.9.9:1".parse().unwrap();
    let stored = ask(
        &c,
        Query::AddProvider {
            hash,
            addrs: vec![claimed],
        },
    )
    .await;
    assert_eq!(stored, DhtResponse::Stored { ttl_secs: 86_400 });
    let other = raw_connect_as(&SecretKey::generate().unwrap(), &a.node, ALPN)
        .await
        .unwrap();
    let DhtResponse::Providers { providers, .. } = ask(&other, Query::GetProviders { hash }).await
    else {
        panic!("no providers answer");
    };
    assert_eq!(providers.len(), 1);
    assert_eq!(providers[0].id, key.public());
    assert_eq!(providers[0].addrs[0], observed);
    assert_eq!(providers[0].addrs[1], claimed);
    assert_eq!(a.node.dht_status().records, 1);

    // A flood: beyond the burst, queries are refused, not served.
    let mut refused = 0;
    for _ in 0..80 {
        if let DhtResponse::Refused {
            reason: Refusal::RateLimited,
        } = ask(&c, Query::Ping).await
        {
            refused += 1;
        }
    }
    assert!(refused >= 20, "only {refused} of 80 refused");
    // Others are still served.
    assert!(matches!(
        ask(&other, Query::Ping).await,
        DhtResponse::Pong { .. }
    ));
    // A client (server = false) never entered the routing table.
    assert_eq!(a.node.dht_status().table, 0);
    a.node.shutdown().await;
}
