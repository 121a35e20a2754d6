//! The DHT lookup state machine fed adversarial answers: liars that answer
//! with random far or near nodes (or the target's own key, or nodes already
//! seen), failures and silences, in any order, at any time. It never
//! panics, never asks one node twice, keeps its bounds, and ends.
#![no_main]

use std::{collections::HashSet, time::Duration};

use libfuzzer_sys::fuzz_target;
use p2pfs_swarm::dht::{
    key::Key,
    lookup::{Lookup, LookupConfig},
};

fn key(b: u8, salt: u8) -> Key {
    let mut k = [0u8; 32];
    k[0] = b;
    k[1] = salt;
    Key(k)
}

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.iter().copied();
    let mut next = || bytes.next();
    let target = key(next().unwrap_or(0x80), 0);
    let cfg = LookupConfig::default();
    let seeds: Vec<(Key, u8)> = (0..next().unwrap_or(3) % 8 + 1)
        .map(|i| (key(next().unwrap_or(i), 1), i))
        .collect();
    let mut l = Lookup::new(target, cfg, seeds);
    let mut asked: HashSet<Key> = HashSet::new();
    let mut waiting: Vec<Key> = Vec::new();
    let mut now = Duration::ZERO;
    for _ in 0..2000 {
        if l.is_finished() {
            break;
        }
        for (k, _) in l.poll(now, |_| Duration::from_millis(100)) {
            // A node is asked once.
            assert!(asked.insert(k), "asked twice");
            waiting.push(k);
        }
        assert!(l.requests() <= cfg.max_candidates + 1000);
        let Some(op) = next() else {
            // The input ran out: everyone else stays silent; time passes.
            now += Duration::from_secs(1);
            if waiting.is_empty() && l.next_deadline().is_none() {
                break;
            }
            waiting.clear();
            continue;
        };
        match op % 4 {
            // An answer with up to 20 nodes, chosen by the input.
            0 | 1 if !waiting.is_empty() => {
                let from = waiting.remove(usize::from(op) % waiting.len());
                let n = next().unwrap_or(0) % 21;
                let closer: Vec<(Key, u8)> = (0..n)
                    .map(|i| (key(next().unwrap_or(i), next().unwrap_or(2)), i))
                    .collect();
                l.on_answer(&from, closer);
            }
            2 if !waiting.is_empty() => {
                let from = waiting.remove(usize::from(op) % waiting.len());
                l.on_failure(&from);
            }
            // Time passes.
            _ => now += Duration::from_millis(u64::from(op) * 7),
        }
    }
    // Whatever the answers, it ends once time runs on and nobody answers.
    for _ in 0..1000 {
        if l.is_finished() {
            break;
        }
        now += Duration::from_secs(10);
        for (k, _) in l.poll(now, |_| Duration::from_millis(100)) {
            assert!(asked.insert(k), "asked twice");
            l.on_failure(&k);
        }
    }
    assert!(l.is_finished(), "a lookup that never ends");
    let closest = l.closest();
    assert!(closest.len() <= cfg.k);
    // Closest first.
    for w in closest.windows(2) {
        assert!(w[0].0.distance(&target) <= w[1].0.distance(&target));
    }
});
