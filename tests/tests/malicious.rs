//! Peers that speak the protocol and lie, against honest in-process nodes
//! on 127.0.0.1. Each case names the lie; each must cost only the liar.
//! (More cases live beside the code they attack: malformed, oversized,
//! mute and never-reading peers in `transfer.rs`, bad DHT queries in
//! `dht_hostile.rs`, forged and replayed room entries and outsiders in
//! `room_hostile.rs`.)
//!
//! `P2PFS_MALICE_RUNS` sets how many seeds the corrupt-chunk case runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{net::SocketAddr, sync::Arc, time::Duration};

use p2pfs_proto::{
    NodeAddr, NodeId, codec,
    dht::{ALPN, DhtRequest, DhtResponse, Query},
};
use p2pfs_store::Options;
use p2pfs_swarm::{Limits, Target, identity::SecretKey, tls};
use p2pfs_tests::inproc::{
    TestNode, corrupt, get_all_frame, import, node_joining, node_with, read, target, unchecked_node,
};

fn runs() -> u64 {
    std::env::var("P2PFS_MALICE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

/// A provider serving corrupt chunk groups, beside one to three honest
/// ones, with a random size, random bad groups and random honest rates
/// per seed. The file always completes and verifies; the liar is banned
/// as soon as a bad group reaches the downloader and is never asked
/// again, by this download or the next; no honest provider is ever
/// banned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_chunks_ban_the_liar_and_never_an_honest_peer() {
    let seed0 = fastrand::u64(..);
    let (mut caught, mut lies) = (0, 0);
    let runs = runs();
    for run in 0..runs {
        let seed = seed0.wrapping_add(run);
        let mut rng = fastrand::Rng::with_seed(seed);
        let ctx = format!("seed {seed}");
        let mut honest = Vec::new();
        for _ in 0..rng.usize(1..=3) {
            // Rate-limited, so that the liar gets asked before the honest
            // ones have sent everything.
            let limits = Limits {
                max_upload_rate: Some(rng.u64(8..32) << 20),
                ..Limits::default()
            };
            honest.push(node_with(limits, Options::default()).await);
        }
        let liar = unchecked_node().await;
        let fetcher = node_with(
            Limits {
                request_timeout: Duration::from_secs(2),
                stall_timeout: Duration::from_secs(4),
                ..Limits::default()
            },
            Options::default(),
        )
        .await;
        let size = rng.usize(64 << 10..6 << 20);
        let mut data = vec![0u8; size];
        rng.fill(&mut data);
        let hash = import(&liar.node, &data).await;
        for h in &honest {
            assert_eq!(import(&h.node, &data).await, hash);
        }
        // One bad group in a random place, some, or all.
        let groups = size.div_ceil(16384);
        let p = [0.0, 0.1, 1.0][rng.usize(..3)];
        let one = rng.usize(..groups);
        let mut bad_rng = fastrand::Rng::with_seed(seed ^ 0xbad);
        let bad: Vec<bool> = (0..groups).map(|g| g == one || bad_rng.f64() < p).collect();
        corrupt(&liar, hash, size, |g| bad[g]);

        let mut from: Vec<Target> = honest.iter().map(|h| target(&h.node)).collect();
        from.insert(rng.usize(..=from.len()), target(&liar.node));
        let stats = tokio::time::timeout(
            Duration::from_secs(120),
            fetcher.node.fetch(hash, from.clone(), None),
        )
        .await
        .unwrap_or_else(|_| panic!("{ctx}: the fetch finished within its deadline"))
        .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert!(
            read(&fetcher.node, hash).await == data,
            "{ctx}: wrong bytes"
        );
        let banned: Vec<NodeId> = fetcher.node.banned().iter().map(|b| b.id).collect();
        for h in &honest {
            assert!(
                !banned.contains(&h.node.id()),
                "{ctx}: an honest provider was banned: {:?}",
                fetcher.node.banned()
            );
        }
        let from_liar = stats
            .providers
            .iter()
            .find(|p| p.0 == liar.node.id())
            .map_or(0, |p| p.1);
        lies += 1;
        if banned.contains(&liar.node.id()) {
            caught += 1;
            // Banned: the next download does not even connect to it.
            let other = import(&liar.node, &data[..size / 2]).await;
            for h in &honest {
                import(&h.node, &data[..size / 2]).await;
            }
            let again = fetcher.node.fetch(other, from, None).await.unwrap();
            assert!(
                again.providers.iter().all(|p| p.0 != liar.node.id()),
                "{ctx}: a banned provider was asked again: {again:?}"
            );
        } else {
            // Never caught: then it never sent a bad group that was
            // checked, so it was asked for no group it had corrupted.
            assert!(
                from_liar < (size as u64),
                "{ctx}: the liar sent everything and was not caught"
            );
        }
        for n in honest.into_iter().chain([liar, fetcher]) {
            n.node.shutdown().await;
        }
    }
    assert!(caught > 0, "the liar was never caught in {runs} runs");
    eprintln!(
        "corrupt chunks: {runs} seeds from {seed0}, liar banned in {caught} of {lies}, no honest peer banned"
    );
}

/// A DHT node that answers every query with lies: `closer` nodes with ids
/// right next to the key asked about (so a lookup wants them most) at
/// addresses where nothing answers, and provider records for content it
/// does not have at those addresses too.
struct LyingDht {
    id: NodeId,
    addr: SocketAddr,
    _silent: Vec<std::net::UdpSocket>,
    _task: tokio::task::JoinHandle<()>,
}

impl LyingDht {
    async fn start() -> Self {
        let key = SecretKey::generate().unwrap();
        let id = key.public();
        let tls = tls::server_config(&key, &[ALPN]).unwrap();
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(Arc::new(tls)).unwrap();
        let ep = quinn::Endpoint::server(
            quinn::ServerConfig::with_crypto(Arc::new(crypto)),
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap();
        let addr = ep.local_addr().unwrap();
        // UDP sockets that read nothing: a handshake there times out.
        let silent: Vec<std::net::UdpSocket> = (0..4)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let dead: Vec<SocketAddr> = silent.iter().map(|s| s.local_addr().unwrap()).collect();
        let task = tokio::spawn(async move {
            while let Some(incoming) = ep.accept().await {
                let dead = dead.clone();
                tokio::spawn(async move {
                    let Ok(conn) = incoming.await else { return };
                    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                        let dead = dead.clone();
                        let asker = conn.remote_address();
                        tokio::spawn(async move {
                            let Ok(bytes) = recv.read_to_end(1 << 16).await else {
                                return;
                            };
                            let Some(req) = bytes
                                .get(4..)
                                .and_then(|b| codec::decode::<DhtRequest>(b).ok())
                            else {
                                return;
                            };
                            let answer = lie(&req.query, &dead, asker);
                            let _ = send.write_all(&codec::encode_frame(&answer).unwrap()).await;
                            let _ = send.finish();
                        });
                    }
                });
            }
        });
        Self {
            id,
            addr,
            _silent: silent,
            _task: task,
        }
    }

    fn target(&self) -> Target {
        Target {
            id: Some(self.id),
            addrs: vec![self.addr],
        }
    }
}

/// Twenty nodes next to `key` (its last bytes changed) at dead addresses.
fn fakes(key: [u8; 32], dead: &[SocketAddr]) -> Vec<NodeAddr> {
    (0..20u8)
        .map(|i| {
            let mut id = key;
            id[31] ^= i + 1;
            id[30] ^= fastrand::u8(..);
            NodeAddr {
                id: NodeId::from_bytes(id),
                addrs: vec![dead[usize::from(i) % dead.len()]],
            }
        })
        .collect()
}

fn lie(query: &Query, dead: &[SocketAddr], asker: SocketAddr) -> DhtResponse {
    match query {
        Query::Ping => DhtResponse::Pong { observed: asker },
        Query::FindNode { target } => DhtResponse::Nodes {
            closer: fakes(*target, dead),
        },
        Query::GetProviders { hash } => DhtResponse::Providers {
            providers: fakes(*hash.as_bytes(), dead),
            closer: fakes(*hash.as_bytes(), dead),
        },
        Query::AddProvider { .. } => DhtResponse::Stored { ttl_secs: 86_400 },
    }
}

/// Honest nodes in a chain, the last providing a file; a newcomer that
/// joins through the liar and one honest node still finds the provider
/// among the liar's fake closer nodes and fake provider records, and
/// downloads the file, in bounded time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_closer_nodes_and_provider_records_do_not_hide_the_provider() {
    let liar = LyingDht::start().await;
    let mut honest: Vec<TestNode> = Vec::new();
    for _ in 0..4 {
        let boot: Vec<Target> = honest.last().map(|n| target(&n.node)).into_iter().collect();
        // The liar is in every honest node's table too.
        let boot = boot.into_iter().chain([liar.target()]).collect();
        honest.push(node_joining(Limits::default(), Options::default(), boot).await);
    }
    let mut data = vec![0u8; 3 << 20];
    fastrand::fill(&mut data);
    let provider = &honest[3].node;
    let hash = import(provider, &data).await;
    provider.announce(hash).await;

    let newcomer = node_joining(
        Limits::default(),
        Options::default(),
        vec![liar.target(), target(&honest[0].node)],
    )
    .await;
    let started = std::time::Instant::now();
    let found = tokio::time::timeout(Duration::from_secs(60), newcomer.node.find_providers(hash))
        .await
        .expect("the lookup ends within a minute despite the liar")
        .unwrap();
    let lookup = started.elapsed();
    assert!(
        found.iter().any(|p| p.id == provider.id()),
        "the real provider is hidden by the liar: {found:?}"
    );
    let targets: Vec<Target> = found.into_iter().map(Target::from).collect();
    let stats = tokio::time::timeout(
        Duration::from_secs(60),
        newcomer.node.fetch(hash, targets, None),
    )
    .await
    .expect("the download ends within a minute despite fake providers")
    .unwrap();
    assert!(read(&newcomer.node, hash).await == data);
    eprintln!(
        "fake DHT answers: lookup {lookup:?}, download {:?} (liar's 20 fake providers skipped)",
        stats.elapsed
    );
    for n in honest.into_iter().chain([newcomer]) {
        n.node.shutdown().await;
    }
}

/// Provider records for content the announcer does not have, made with
/// the DHT's own `ADD_PROVIDER` by a real node: the download asks it,
/// hears "not found", and completes from the real provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_records_for_absent_content_cost_one_question() {
    let real = node_with(Limits::default(), Options::default()).await;
    let liar = node_joining(
        Limits::default(),
        Options::default(),
        vec![target(&real.node)],
    )
    .await;
    let mut data = vec![0u8; 1 << 20];
    fastrand::fill(&mut data);
    let hash = import(&real.node, &data).await;
    real.node.announce(hash).await;
    // The liar announces the same hash without holding it.
    let c = p2pfs_tests::inproc::raw_connect_as(liar.node.secret_key(), &real.node, ALPN)
        .await
        .unwrap();
    let (mut send, mut recv) = c.open_bi().await.unwrap();
    let q = DhtRequest {
        server: true,
        query: Query::AddProvider {
            hash,
            addrs: vec![liar.node.bound_addr()],
        },
    };
    send.write_all(&codec::encode_frame(&q).unwrap())
        .await
        .unwrap();
    send.finish().unwrap();
    recv.read_to_end(1 << 16).await.unwrap();

    let fetcher = node_joining(
        Limits::default(),
        Options::default(),
        vec![target(&real.node)],
    )
    .await;
    let found = fetcher.node.find_providers(hash).await.unwrap();
    assert!(found.iter().any(|p| p.id == liar.node.id()), "{found:?}");
    assert!(found.iter().any(|p| p.id == real.node.id()), "{found:?}");
    let targets: Vec<Target> = found.into_iter().map(Target::from).collect();
    let stats = tokio::time::timeout(
        Duration::from_secs(30),
        fetcher.node.fetch(hash, targets, None),
    )
    .await
    .expect("the download ends")
    .unwrap();
    assert!(read(&fetcher.node, hash).await == data);
    assert!(
        stats
            .providers
            .iter()
            .all(|p| p.0 != liar.node.id() || p.1 == 0),
        "{stats:?}"
    );
    assert!(
        fetcher.node.banned().is_empty(),
        "not having a blob is no lie worth a ban"
    );
    for n in [real, liar, fetcher] {
        n.node.shutdown().await;
    }
}

/// Readers that take data a trickle at a time (slow-loris) hold an upload
/// slot only until a write makes no progress for the stall timeout; an
/// honest peer is served at full speed meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_readers_are_cut_off_and_honest_peers_served() {
    use p2pfs_proto::{blobs, close::Code};
    let limits = Limits {
        request_timeout: Duration::from_secs(1),
        stall_timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    let a = node_with(limits, Options::default()).await;
    let mut data = vec![0u8; 8 << 20];
    fastrand::fill(&mut data);
    let hash = import(&a.node, &data).await;
    let request = get_all_frame(hash);
    let loris = p2pfs_tests::inproc::raw_connect(&a.node, blobs::ALPN)
        .await
        .unwrap();
    let mut readers = Vec::new();
    for _ in 0..Limits::default().max_uploads_per_peer {
        let (mut s, mut r) = loris.open_bi().await.unwrap();
        s.write_all(&request).await.unwrap();
        s.finish().unwrap();
        // 256 bytes every 100 ms: 2.5 KiB/s.
        readers.push(tokio::spawn(async move {
            let mut buf = [0u8; 256];
            let started = std::time::Instant::now();
            loop {
                match r.read(&mut buf).await {
                    Ok(Some(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
                    Ok(None) => return Err("the whole blob was sent to a slow reader".to_string()),
                    Err(e) => return Ok((e, started.elapsed())),
                }
                if started.elapsed() > Duration::from_secs(60) {
                    return Err("a slow reader was never cut off".into());
                }
            }
        }));
    }
    let b = node_with(Limits::default(), Options::default()).await;
    let stats = tokio::time::timeout(
        Duration::from_secs(30),
        b.node.fetch(hash, vec![target(&a.node)], None),
    )
    .await
    .expect("the honest peer is served")
    .unwrap();
    assert!(read(&b.node, hash).await == data);
    for r in readers {
        let (e, after) = r.await.unwrap().unwrap();
        assert!(
            matches!(&e, quinn::ReadError::Reset(c) if c.into_inner() == u64::from(Code::Timeout.value())),
            "{e:?}"
        );
        assert!(after < Duration::from_secs(20), "cut off after {after:?}");
    }
    eprintln!("slow-loris: honest download {:?} meanwhile", stats.elapsed);
    for n in [a, b] {
        n.node.shutdown().await;
    }
}

/// Truncated messages: a frame that claims more bytes than the stream
/// carries, on each protocol a peer can reach. The connection is closed
/// as a protocol error (or the stream dropped); the node serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_messages_cost_only_the_sender() {
    use p2pfs_proto::blobs;
    let a = node_with(Limits::default(), Options::default()).await;
    let mut data = vec![0u8; 100_000];
    fastrand::fill(&mut data);
    let hash = import(&a.node, &data).await;
    let whole = get_all_frame(hash);
    for alpn in [blobs::ALPN, ALPN, p2pfs_proto::room::ALPN] {
        for cut in [1, 3, 4, whole.len() - 1] {
            let c = p2pfs_tests::inproc::raw_connect(&a.node, alpn)
                .await
                .unwrap();
            let (mut s, mut r) = c.open_bi().await.unwrap();
            s.write_all(&whole[..cut]).await.unwrap();
            s.finish().unwrap();
            let got = tokio::time::timeout(Duration::from_secs(10), r.read_to_end(1 << 20)).await;
            // No answer: the stream is reset or the connection closed.
            assert!(
                !matches!(got, Ok(Ok(ref b)) if !b.is_empty()),
                "{} cut at {cut}: answered {got:?}",
                String::from_utf8_lossy(alpn)
            );
        }
    }
    let b = node_with(Limits::default(), Options::default()).await;
    b.node
        .fetch(hash, vec![target(&a.node)], None)
        .await
        .unwrap();
    assert!(read(&b.node, hash).await == data);
    for n in [a, b] {
        n.node.shutdown().await;
    }
}
