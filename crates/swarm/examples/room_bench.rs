//! Room figures (issue 5), with real nodes on 127.0.0.1 in one process:
//!
//! - propagation: a message posted on one of 10 members, until every other
//!   member has it (p50, p99);
//! - catch-up: a member offline while 10,000 messages are posted, from its
//!   restart until its log matches (time, and bytes received against the
//!   size of the entries);
//! - verification: entries checked per second on one core.
//!
//!   room_bench [MEMBERS] [MESSAGES] [OFFLINE_MESSAGES]

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::{
    path::Path,
    time::{Duration, Instant},
};

use p2pfs_proto::RoomSecret;
use p2pfs_store::Store;
use p2pfs_swarm::{Node, NodeConfig, identity::SecretKey, room};

async fn spawn(dir: &Path, name: &str) -> Node {
    let store = Store::open(dir.join("store")).unwrap();
    Node::spawn(
        NodeConfig {
            key_path: dir.join("node.key"),
            listen: Some("127.0.0.1:0".parse().unwrap()),
            default_port: 0,
            limits: Default::default(),
            dht: p2pfs_swarm::dht::DhtConfig {
                lan: false,
                ..Default::default()
            },
            display_name: Some(name.into()),
            replica: Some(p2pfs_swarm::replica::ReplicaConfig::default()),
            link_delay: None,
            relay: Default::default(),
            mainline: p2pfs_swarm::mainline::MainlineConfig {
                enabled: false,
                bootstrap: None,
            },
            port_mapping: false,
        },
        store,
    )
    .await
    .unwrap()
}

fn lines(n: &Node, room: &p2pfs_proto::RoomId) -> u64 {
    n.store()
        .room_have(room)
        .unwrap()
        .iter()
        .map(|(_, c)| c)
        .sum()
}

async fn wait(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < end, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let members = args.first().copied().unwrap_or(10);
    let messages = args.get(1).copied().unwrap_or(200);
    let offline = args.get(2).copied().unwrap_or(10_000);
    let root = tempfile::tempdir().unwrap();

    // --- propagation ---
    let mut nodes = Vec::new();
    for i in 0..members {
        nodes.push(spawn(&root.path().join(format!("m{i}")), &format!("m{i}")).await);
    }
    let ticket = nodes[0].create_room("bench").await.unwrap();
    let id = ticket.secret.id();
    for n in &nodes[1..] {
        n.join_room(&ticket, None).await.unwrap();
    }
    let full = Instant::now();
    let online = |nodes: &[Node]| -> Vec<usize> {
        nodes
            .iter()
            .map(|n| n.find_room_now(&id).map_or(0, |r| r.online().len()))
            .collect()
    };
    let mut last_print = Instant::now();
    wait("every member online", Duration::from_secs(60), || {
        if last_print.elapsed() > Duration::from_secs(5) {
            last_print = Instant::now();
            eprintln!("members online per member: {:?}", online(&nodes));
        }
        nodes.iter().all(|n| {
            n.find_room_now(&id)
                .is_some_and(|r| r.online().len() == members - 1)
        })
    })
    .await;
    // Every member has the same log (the joins and names spread).
    wait("the joins to spread", Duration::from_secs(30), || {
        let first = lines(&nodes[0], &id);
        nodes.iter().all(|n| lines(n, &id) == first)
    })
    .await;
    let base = lines(&nodes[0], &id);
    eprintln!(
        "all {members} online on every member in {:?}",
        full.elapsed()
    );
    let mut lat = Vec::new();
    let mut rng = fastrand::Rng::with_seed(1);
    for i in 0..messages {
        let from = rng.usize(..members);
        let room = nodes[from].find_room("bench").await.unwrap();
        let want = base + i as u64 + 1;
        let t = Instant::now();
        nodes[from]
            .chat(&room, &format!("message {i}"))
            .await
            .unwrap();
        let mut seen = vec![false; members];
        seen[from] = true;
        while seen.iter().any(|s| !s) {
            for (k, n) in nodes.iter().enumerate() {
                if !seen[k] && lines(n, &id) >= want {
                    seen[k] = true;
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                }
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "message {i} did not spread"
            );
            tokio::task::yield_now().await;
        }
    }
    let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
    println!(
        "propagation: {members} members, {messages} messages, {} deliveries: p50 {p50:.1} ms, p99 {p99:.1} ms (goal p99 <= 250 ms)",
        lat.len()
    );

    // --- catch-up ---
    let late_dir = root.path().join(format!("m{}", members - 1));
    let late = nodes.pop().unwrap();
    let have_before = late.store().room_have(&id).unwrap();
    late.shutdown().await;
    drop(late);
    let writer = nodes[0].find_room("bench").await.unwrap();
    let t = Instant::now();
    let mut text = String::new();
    for i in 0..offline {
        text.push_str(&format!("offline message number {i} with some text\n"));
    }
    // Posted as the chat command posts them: one entry per line.
    nodes[0].chat(&writer, &text).await.unwrap();
    eprintln!("{offline} messages posted in {:?}", t.elapsed());
    let entry_bytes: usize = nodes[0]
        .store()
        .room_entries_after(&id, &have_before, usize::MAX)
        .unwrap()
        .iter()
        .map(|e| e.len())
        .sum();
    let target = lines(&nodes[0], &id);
    // Everyone else stops, so the late member catches up from one member.
    for n in nodes.drain(1..) {
        n.shutdown().await;
    }
    let t = Instant::now();
    let late = spawn(&late_dir, "late").await;
    wait("the catch-up", Duration::from_secs(120), || {
        lines(&late, &id) >= target
    })
    .await;
    let took = t.elapsed();
    let bytes = room::bytes_received(&late, &id);
    println!(
        "catch-up: {offline} messages ({entry_bytes} bytes of entries) in {:.0} ms from node start, {bytes} bytes received = {:.2}x the entries (goals <= 2 s, <= 1.5x)",
        took.as_secs_f64() * 1000.0,
        bytes as f64 / entry_bytes as f64
    );
    late.shutdown().await;
    nodes[0].shutdown().await;

    // --- verification ---
    let secret = RoomSecret([3; 32]);
    let key = SecretKey::generate().unwrap();
    let mut entries = Vec::new();
    let mut prev = vec![];
    for i in 0..20_000u64 {
        let (h, bytes) = room::sign_chat(
            &key,
            &secret,
            i,
            prev,
            &format!("line {i} of the verification figure"),
        )
        .unwrap();
        prev = vec![h];
        entries.push(bytes);
    }
    let t = Instant::now();
    let n = entries.len();
    for e in entries {
        room::verify_entry(&secret, e).unwrap();
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    println!("verification: {rate:.0} entries/s on one core ({n} chat entries)");
}
