//! Kill a process using the store at random moments (SIGKILL) and exactly
//! between durable steps (the store's crash points), reopen the store, and
//! check: it opens; every complete blob verifies; every partial blob's
//! present groups verify; and everything the child saw acknowledged
//! (journaled after the call returned) is still there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashMap,
    process::{Command, Stdio},
    time::Duration,
};

use p2pfs_proto::Hash;
use p2pfs_store::{BlobState, ChunkNum, Store};
use p2pfs_tests::temp_dir;

const ROUNDS: u64 = 40;

#[test]
fn store_survives_kill_9_at_any_moment() {
    let dir = temp_dir();
    let target = dir.path().join("target");
    let source = dir.path().join("source");
    let journal = dir.path().join("journal");
    let seed0 = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed0);
    let mut acknowledged_total = 0;
    for round in 0..ROUNDS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_store_torture"))
            .arg(&target)
            .arg(&source)
            .arg(&journal)
            .arg((seed0 ^ round).to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning store_torture");
        // A random moment: the point is to interrupt it anywhere.
        std::thread::sleep(Duration::from_millis(rng.u64(20..400)));
        let still_running = child.try_wait().unwrap().is_none();
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        assert!(
            still_running,
            "round {round}: the child exited by itself: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        acknowledged_total += check(&target, &journal, seed0, round);
        check_all_verify(&source, seed0, round);
    }
    assert!(acknowledged_total > 0, "the child never got any work done");
}

#[test]
fn store_survives_a_crash_at_every_crash_point() {
    use std::os::unix::process::ExitStatusExt;
    let seed = fastrand::u64(..);
    for point in p2pfs_store::crash::POINTS {
        let dir = temp_dir();
        let target = dir.path().join("target");
        let source = dir.path().join("source");
        let journal = dir.path().join("journal");
        for (round, nth) in [1u64, 2, 3, 5, 8].into_iter().enumerate() {
            let out = p2pfs_tests::run(
                {
                    let mut c = Command::new(env!("CARGO_BIN_EXE_store_torture"));
                    c.arg(&target)
                        .arg(&source)
                        .arg(&journal)
                        .arg((seed ^ nth).to_string())
                        .env("P2PFS_CRASH_POINT", format!("{point}:{nth}"));
                    c
                },
                None,
                Duration::from_secs(60),
            );
            assert_eq!(
                out.status.signal(),
                Some(6),
                "{point}:{nth} was not reached (SIGABRT expected): {}",
                String::from_utf8_lossy(&out.stderr)
            );
            check(&target, &journal, seed, round as u64);
            check_all_verify(&source, seed, round as u64);
        }
    }
}

/// Opens a store and verifies every blob in it.
fn check_all_verify(path: &std::path::Path, seed: u64, round: u64) {
    let store = Store::open(path).unwrap_or_else(|e| panic!("seed {seed} round {round}: {e}"));
    for b in store.list().unwrap() {
        store.verify(&b.hash).unwrap_or_else(|e| {
            panic!("seed {seed} round {round}: {} does not verify: {e}", b.hash)
        });
    }
}

/// Checks the store against the journal; returns how many facts it checked.
fn check(target: &std::path::Path, journal: &std::path::Path, seed: u64, round: u64) -> usize {
    let ctx = format!("seed {seed}, round {round}");
    let store = Store::open(target).unwrap_or_else(|e| panic!("{ctx}: store does not open: {e}"));
    let blobs: HashMap<Hash, _> = store
        .list()
        .unwrap_or_else(|e| panic!("{ctx}: {e}"))
        .into_iter()
        .map(|b| (b.hash, b))
        .collect();
    for hash in blobs.keys() {
        store
            .verify(hash)
            .unwrap_or_else(|e| panic!("{ctx}: blob {hash} does not verify: {e}"));
    }
    // Replay the journal: what is pinned and acknowledged must be present.
    let text = std::fs::read_to_string(journal).unwrap_or_default();
    let mut imported: HashMap<Hash, u64> = HashMap::new();
    let mut flushed: HashMap<Hash, Vec<(u64, u64)>> = HashMap::new();
    let mut facts = 0;
    for line in text.lines() {
        let mut parts = line.split(' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("imported"), Some(h), Some(size)) => {
                let h: Hash = h.parse().unwrap();
                imported.insert(h, size.parse().unwrap());
            }
            (Some("flushed"), Some(h), Some(ranges)) => {
                let h: Hash = h.parse().unwrap();
                let rs = ranges
                    .split(',')
                    .filter_map(|r| r.split_once('-'))
                    .map(|(s, e)| (s.parse().unwrap(), e.parse().unwrap()))
                    .collect();
                flushed.insert(h, rs);
            }
            (Some("unpinned"), Some(h), _) => {
                let h: Hash = h.parse().unwrap();
                imported.remove(&h);
                flushed.remove(&h);
            }
            _ => {}
        }
    }
    for (hash, size) in &imported {
        let b = blobs
            .get(hash)
            .unwrap_or_else(|| panic!("{ctx}: acknowledged import {hash} is missing"));
        assert_eq!(b.state, BlobState::Complete, "{ctx}: {hash}");
        assert_eq!(b.size, *size, "{ctx}: {hash}");
        facts += 1;
    }
    for (hash, ranges) in &flushed {
        if imported.contains_key(hash) {
            continue;
        }
        let (_, have) = store
            .have(hash)
            .unwrap()
            .unwrap_or_else(|| panic!("{ctx}: flushed download {hash} is missing"));
        for (start, end) in ranges {
            for g in *start..*end {
                assert!(
                    have.contains(&ChunkNum(g * 16)),
                    "{ctx}: {hash} lost group {g} after a flush"
                );
            }
        }
        facts += 1;
    }
    facts
}
