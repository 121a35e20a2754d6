//! A room of 20 members meets in full: every member holds a session with
//! every other (before, a node counted the sessions it dialed against its
//! limit of dials in progress, so none dialed more than 8 and a room of 20
//! never met in full), and a chat line reaches everyone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use p2pfs_tests::inproc;

const MEMBERS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_members_meet_in_full_and_hear_every_line() {
    let mut nodes = Vec::new();
    for _ in 0..MEMBERS {
        nodes.push(inproc::node().await);
    }
    let ticket = nodes[0].node.create_room("big").await.unwrap();
    let id = ticket.secret.id();
    for n in &nodes[1..] {
        n.node.join_room(&ticket, None).await.unwrap();
    }
    let online = |nodes: &[inproc::TestNode]| -> Vec<usize> {
        nodes
            .iter()
            .map(|n| n.node.find_room_now(&id).map_or(0, |r| r.online().len()))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = online(&nodes);
        if now.iter().all(|&n| n == MEMBERS - 1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sessions per member after 60 s: {now:?} (want {} each)",
            MEMBERS - 1
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A line posted on the last member reaches every other.
    let last = &nodes[MEMBERS - 1].node;
    let room = last.find_room_now(&id).unwrap();
    last.chat(&room, "hello, everyone").await.unwrap();
    let has_line = |n: &inproc::TestNode| {
        p2pfs_swarm::room::query::chat(n.node.store(), &id, 0, 10_000)
            .unwrap()
            .iter()
            .any(|l| l.contains("hello, everyone"))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nodes.iter().all(has_line) {
        assert!(Instant::now() < deadline, "the line did not reach everyone");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
