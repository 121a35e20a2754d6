//! Nodes in one process talking QUIC over 127.0.0.1: verified transfers
//! between real endpoints and real stores.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use p2pfs_proto::{Hash, NodeId, blobs, close::Code};
use p2pfs_store::Options;
use p2pfs_swarm::{Limits, Node, Target};
use p2pfs_tests::{
    Daemon,
    inproc::{
        close_code, corrupt, get_all_frame, import, node, node_with, raw_connect, read, target,
        unchecked_node,
    },
    temp_dir,
};

/// Limits with short timeouts, so tests about stalls finish quickly.
fn quick_limits() -> Limits {
    Limits {
        request_timeout: Duration::from_secs(1),
        stall_timeout: Duration::from_secs(2),
        ..Limits::default()
    }
}

fn random(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    fastrand::fill(&mut v);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boundary_sizes_round_trip() {
    let a = node().await;
    let b = node().await;
    const G: usize = 16 * 1024;
    for size in [0, 1, 1024, G - 1, G, G + 1, 3 * G + 5, (5 << 20) + 3] {
        let data = random(size);
        let hash = import(&a.node, &data).await;
        let stats = tokio::time::timeout(
            Duration::from_secs(30),
            b.node.fetch(hash, vec![target(&a.node)], None),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(stats.size, size as u64);
        assert_eq!(read(&b.node, hash).await, data, "size {size}");
    }
    a.node.shutdown().await;
    b.node.shutdown().await;
}

/// Fetches with a deadline.
async fn fetch(
    n: &Node,
    hash: Hash,
    from: Vec<Target>,
) -> Result<p2pfs_swarm::FetchStats, p2pfs_swarm::SwarmError> {
    tokio::time::timeout(Duration::from_secs(120), n.fetch(hash, from, None))
        .await
        .expect("the fetch finished within its deadline")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_provider_is_dropped_and_the_file_completes_from_an_honest_one() {
    // The honest provider sends at 16 MiB/s: otherwise it can serve the
    // whole file before the corrupt one's first answer arrives, which then
    // is never checked (and the test would not see it dropped).
    let honest = node_with(
        Limits {
            max_upload_rate: Some(16 << 20),
            ..Limits::default()
        },
        Options::default(),
    )
    .await;
    // A provider that serves its data without re-checking it, from a data
    // file with flipped bytes: what a malicious or broken peer sends.
    let evil = unchecked_node().await;
    let fetcher = node_with(quick_limits(), Options::default()).await;
    let size = (6 << 20) + 777;
    let data = random(size);
    let hash = import(&honest.node, &data).await;
    assert_eq!(import(&evil.node, &data).await, hash);
    let groups = size.div_ceil(16384);
    corrupt(&evil, hash, size, |g| g < groups - 1);

    // The evil node alone: the download fails, naming bad data.
    let lone = node_with(quick_limits(), Options::default()).await;
    let err = fetch(&lone.node, hash, vec![target(&evil.node)])
        .await
        .expect_err("nothing but corrupt data is on offer");
    assert!(err.to_string().contains("bad data"), "{err}");
    lone.node.shutdown().await;

    // With an honest provider too, the file completes, and the evil one is
    // disconnected after its first bad group.
    let stats = fetch(
        &fetcher.node,
        hash,
        vec![target(&evil.node), target(&honest.node)],
    )
    .await
    .unwrap();
    assert_eq!(read(&fetcher.node, hash).await, data);
    let honest_bytes = stats
        .providers
        .iter()
        .find(|p| p.0 == honest.node.id())
        .map(|p| p.1);
    assert!(honest_bytes.unwrap_or(0) > (5 << 20), "{stats:?}");
    let peers: Vec<NodeId> = fetcher.node.peers().iter().map(|p| p.id).collect();
    assert!(
        !peers.contains(&evil.node.id()),
        "the corrupt provider was never caught and dropped: {peers:?}"
    );
    for n in [honest, evil, fetcher] {
        n.node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_node_id_is_refused_at_the_handshake() {
    let a = node().await;
    let b = node().await;
    let imposter = NodeId::from_bytes([42; 32]);
    let err = b
        .node
        .dial(
            &Target {
                id: Some(imposter),
                addrs: vec![a.node.bound_addr()],
            },
            blobs::ALPN,
        )
        .await
        .expect_err("a node with another key must be refused");
    let msg = err.to_string();
    assert!(
        msg.contains(&a.node.id().to_string()) && msg.contains(&imposter.to_string()),
        "{msg}"
    );
    assert!(b.node.peers().is_empty());
    // The right id, or none, connects.
    assert_eq!(
        b.node.dial(&target(&a.node), blobs::ALPN).await.unwrap(),
        a.node.id()
    );
    let anonymous = Target {
        id: None,
        addrs: vec![a.node.bound_addr()],
    };
    assert_eq!(
        b.node.dial(&anonymous, blobs::ALPN).await.unwrap(),
        a.node.id()
    );
    a.node.shutdown().await;
    b.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversized_and_stalling_peers_cost_only_themselves() {
    let a = node_with(quick_limits(), Options::default()).await;
    let data = random(3 << 20);
    let hash = import(&a.node, &data).await;

    // An unknown protocol fails the handshake.
    assert!(raw_connect(&a.node, b"p2pfs/nope/1").await.is_err());

    // Garbage in a frame: protocol error, connection closed.
    let c = raw_connect(&a.node, blobs::ALPN).await.unwrap();
    let (mut send, _recv) = c.open_bi().await.unwrap();
    send.write_all(&[3, 0, 0, 0, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    send.finish().unwrap();
    assert_eq!(close_code(&c).await, Some(Code::Protocol.value().into()));

    // A frame claiming 512 MiB: refused before anything is allocated.
    let c = raw_connect(&a.node, blobs::ALPN).await.unwrap();
    let (mut send, _recv) = c.open_bi().await.unwrap();
    send.write_all(&(512u32 << 20).to_le_bytes()).await.unwrap();
    assert_eq!(close_code(&c).await, Some(Code::Protocol.value().into()));

    // A peer that opens every stream it may and says nothing, and another
    // that asks for data and never reads it.
    let mute = raw_connect(&a.node, blobs::ALPN).await.unwrap();
    let mut mute_streams = Vec::new();
    for _ in 0..Limits::default().max_streams_per_connection {
        let (mut s, r) = mute.open_bi().await.unwrap();
        // A stream exists for the peer once something is sent on it.
        s.write_all(&[1]).await.unwrap();
        mute_streams.push((s, r));
    }
    let staller = raw_connect(&a.node, blobs::ALPN).await.unwrap();
    let request = get_all_frame(hash);
    let mut stalled = Vec::new();
    for _ in 0..16 {
        let (mut s, r) = staller.open_bi().await.unwrap();
        s.write_all(&request).await.unwrap();
        s.finish().unwrap();
        stalled.push(r);
    }

    // Meanwhile an honest peer is served in full, with the data verified.
    let b = node().await;
    fetch(&b.node, hash, vec![target(&a.node)]).await.unwrap();
    assert_eq!(read(&b.node, hash).await, data);

    // The mute streams are reset for taking too long to ask.
    for (_, mut r) in mute_streams.drain(..3) {
        let got = tokio::time::timeout(Duration::from_secs(10), r.read_to_end(1 << 20)).await;
        assert!(
            matches!(got, Ok(Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(c)))) if c.into_inner() == u64::from(Code::Timeout.value())),
            "{got:?}"
        );
    }
    // The node still serves a fresh request after all of that.
    let c = b.node.dial(&target(&a.node), blobs::ALPN).await.unwrap();
    assert_eq!(c, a.node.id());
    let again = node().await;
    fetch(&again.node, hash, vec![target(&a.node)])
        .await
        .unwrap();
    drop(stalled);
    for n in [a, b, again] {
        n.node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_killed_mid_transfer_is_replaced_by_the_others() {
    use p2pfs_tests::{ok, p2pfs, random_file};
    let root = temp_dir();
    let size: u64 = 48 << 20;
    let file = root.path().join("big.bin");
    random_file(&file, size, 7);
    let mut daemons = Vec::new();
    for name in ["a", "b"] {
        let dir = root.path().join(name);
        ok(&p2pfs(&dir, &["add", file.to_str().unwrap()]));
        // Slow uploads, so the kill lands in the middle of the transfer.
        daemons.push(Daemon::start(&dir, &["--max-upload-rate", "12M"]));
    }
    let hash: Hash = p2pfs_tests::blake3_file(&file).parse().unwrap();
    let fetcher = node_with(quick_limits(), Options::default()).await;
    let targets: Vec<Target> = daemons
        .iter()
        .map(|d| Target {
            id: Some(d.id.parse().unwrap()),
            addrs: vec![d.addr],
        })
        .collect();
    let (tx, mut rx) = tokio::sync::watch::channel(Default::default());
    let f = fetcher.node.clone();
    let job = tokio::spawn(async move { f.fetch(hash, targets, Some(tx)).await });
    // Kill the first provider (SIGKILL: no close, its streams just stop)
    // once a sixth of the blob is here.
    let present_at_kill = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            rx.changed().await.unwrap();
            let p: p2pfs_swarm::FetchProgress = rx.borrow().clone();
            if p.present >= size / 6 {
                return p.present;
            }
        }
    })
    .await
    .expect("the download made progress");
    daemons[0].kill9();
    assert!(present_at_kill < size, "the kill came after the download");
    let stats = tokio::time::timeout(Duration::from_secs(120), job)
        .await
        .expect("the download finished after losing a provider")
        .unwrap()
        .unwrap();
    let mut got = Vec::new();
    let store = fetcher.node.store().clone();
    tokio::task::spawn_blocking(move || {
        store.reader(&hash).unwrap().copy_to(&mut got).map(|_| got)
    })
    .await
    .unwrap()
    .map(|got| assert_eq!(Hash::of(&got), hash))
    .unwrap();
    let from = |d: &Daemon| {
        let id: NodeId = d.id.parse().unwrap();
        stats
            .providers
            .iter()
            .find(|p| p.0 == id)
            .map_or(0, |p| p.1)
    };
    assert!(from(&daemons[0]) > 0 && from(&daemons[1]) > 0, "{stats:?}");
    fetcher.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_per_address_limit_are_refused() {
    let a = node_with(
        Limits {
            max_connections_per_ip: 2,
            ..quick_limits()
        },
        Options::default(),
    )
    .await;
    let first = raw_connect(&a.node, blobs::ALPN).await.unwrap();
    let _second = raw_connect(&a.node, blobs::ALPN).await.unwrap();
    let third = raw_connect(&a.node, blobs::ALPN).await;
    assert!(third.is_err(), "a third connection from one address got in");
    // A slot frees when a connection closes.
    first.close(0u32.into(), b"bye");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if raw_connect(&a.node, blobs::ALPN).await.is_ok() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot never freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.node.shutdown().await;
}

/// A provider killed with SIGKILL and started again on the same address
/// (a crash and a restart, or a remount) is a new QUIC endpoint: the
/// connection a downloader pooled with the old one is dead, though nothing
/// said so. The next fetch from it must not wait on that connection until
/// it times out and fail: it learns at once that the connection is gone
/// (the restarted node answers it with a stateless reset) and dials anew.
#[test]
fn a_provider_restarted_on_its_address_serves_the_next_fetch() {
    use p2pfs_tests::{ok, p2pfs, random_file};
    let root = temp_dir();
    let dir = |n: &str| root.path().join(n);
    let listen = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().to_string()
    };
    let mut hashes = Vec::new();
    for i in 0..2u64 {
        let f = dir(&format!("f{i}"));
        random_file(&f, 200_000 + i, 40 + i);
        let out = ok(&p2pfs(&dir("a"), &["add", f.to_str().unwrap()]));
        hashes.push(out.split_whitespace().next().unwrap().to_string());
    }
    let b = Daemon::start(&dir("b"), &["--no-lan"]);
    let fetch = |a: &Daemon, hash: &str| {
        let to = dir(&format!("got-{hash}"));
        ok(&p2pfs(
            b.data_dir(),
            &[
                "fetch",
                hash,
                "--peer",
                &a.peer(),
                "-o",
                to.to_str().unwrap(),
            ],
        ));
        assert_eq!(p2pfs_tests::blake3_file(&to), hash);
    };
    let mut a = Daemon::start_in(None, &dir("a"), &listen, &["--no-lan"]);
    fetch(&a, &hashes[0]);
    a.kill9();
    let a = Daemon::start_in(None, &dir("a"), &listen, &["--no-lan"]);
    fetch(&a, &hashes[1]);
}

/// Waits until `n` has the bytes `range` of `hash`.
async fn until_present(n: &Node, hash: Hash, range: std::ops::Range<u64>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut buf = vec![0u8; (range.end - range.start) as usize];
    while n.store().read_at(&hash, range.start, &mut buf).is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bytes {range:?} did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `n` has any chunk group of `hash` from byte `offset` on, but
/// the last (a download fetches that first, to prove the size).
fn has_from(n: &Node, hash: Hash, offset: u64, size: u64) -> bool {
    let g = 16 * 1024;
    let mut buf = vec![0u8; g as usize];
    (offset / g * g..size.div_ceil(g).saturating_sub(1) * g)
        .step_by(g as usize)
        .any(|o| n.store().read_at(&hash, o, &mut buf).is_ok())
}

/// A mount's sequential reader is followed by one download of the rest of
/// the file: it never goes past the limit the reader sets, goes on when
/// the reader raises it, and ends, keeping what it has, when the reader
/// drops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_that_follows_a_reader_goes_no_further_than_allowed() {
    let a = node().await;
    let b = node().await;
    let ticket = a.node.create_room("team").await.unwrap();
    let id = ticket.secret.id();
    let room_a = a.node.find_room_now(&id).unwrap();
    // One copy: B gets only what it asks for, no mirror.
    a.node
        .room_set_copies(&room_a, p2pfs_proto::room::Copies::Min(1))
        .await
        .unwrap();
    let size = 24u64 << 20;
    let data = random(size as usize);
    let file = a.dir.path().join("big.bin");
    std::fs::write(&file, &data).unwrap();
    let (hash, _) = a.node.room_put(&room_a, &file, "big.bin").await.unwrap();
    b.node.join_room(&ticket, None).await.unwrap();
    let room_b = b.node.find_room_now(&id).unwrap();

    let (limit, rx) = tokio::sync::watch::channel(4u64 << 20);
    let follow = {
        let (node, author) = (b.node.clone(), a.node.id());
        tokio::spawn(async move {
            node.room_fetch_range(&room_b, hash, author, (1 << 20)..size, Some(rx))
                .await
        })
    };
    until_present(&b.node, hash, (1 << 20)..(4 << 20)).await;
    assert!(
        !has_from(&b.node, hash, 4 << 20, size),
        "fetched past the limit"
    );
    assert!(
        !has_from(&b.node, hash, 0, 1 << 20),
        "fetched before the start"
    );
    limit.send_replace(10 << 20);
    until_present(&b.node, hash, (1 << 20)..(10 << 20)).await;
    assert!(!has_from(&b.node, hash, 10 << 20, size));
    drop(limit);
    tokio::time::timeout(Duration::from_secs(30), follow)
        .await
        .expect("the download ended when its reader went")
        .unwrap()
        .unwrap();
    assert!(!has_from(&b.node, hash, 10 << 20, size));
    let mut buf = vec![0u8; 9 << 20];
    b.node.store().read_at(&hash, 1 << 20, &mut buf).unwrap();
    assert!(buf == data[1 << 20..10 << 20]);
    a.node.shutdown().await;
    b.node.shutdown().await;
}
