//! The multi-provider download scheduler fed adversarial providers: random
//! have-maps (changing mid-download), requests that fail in every way,
//! stall or finish with less than asked, in any order, under a limit a
//! reader raises now and then. It never panics, never asks a provider for
//! groups it did not say it has, never asks for groups already done or
//! past the limit, and with one honest provider left it finishes.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use p2pfs_swarm::transfer::scheduler::{Action, Config, Fault, Groups, Scheduler};

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.iter().copied();
    let mut next = || bytes.next();
    let total = u64::from(next().unwrap_or(40)) % 200 + 1;
    let cfg = Config {
        piece_groups: u64::from(next().unwrap_or(8)) % 16 + 1,
        ..Config::default()
    };
    let mut s: Scheduler<u8> = Scheduler::new(total, Groups::empty(), cfg);
    let mut limit = u64::from(next().unwrap_or(255)) % (total + 1);
    s.set_limit(limit);
    let start = Instant::now();
    let mut now = start;
    let peers = next().unwrap_or(3) % 5 + 1;
    let mut haves: Vec<Groups> = Vec::new();
    for p in 0..peers {
        let a = u64::from(next().unwrap_or(0)) % total;
        let b = (u64::from(next().unwrap_or(255)) % total).max(a) + 1;
        let have = Groups::from(a..b);
        s.add_peer(p);
        s.set_have(p, have.clone());
        haves.push(have);
    }
    // One honest provider with everything joins last.
    let honest = peers;
    s.add_peer(honest);
    s.set_have(honest, Groups::from(0..total));
    haves.push(Groups::from(0..total));
    let mut running: Vec<(u64, u8, std::ops::Range<u64>)> = Vec::new();
    let mut done = Groups::empty();
    let mut tick = 0u64;
    let apply = |actions: Vec<Action<u8>>,
                 running: &mut Vec<(u64, u8, std::ops::Range<u64>)>,
                 done: &Groups,
                 haves: &[Groups],
                 limit: u64| {
        for a in actions {
            match a {
                Action::Start { id, peer, groups } => {
                    let want = Groups::from(groups.clone());
                    assert!(
                        (want.clone() - haves[usize::from(peer)].clone()).is_empty(),
                        "asked {peer} for {groups:?} it does not have"
                    );
                    assert!(
                        (want & done.clone()).is_empty(),
                        "asked for {groups:?}, some of it done"
                    );
                    assert!(groups.end <= limit, "asked for {groups:?} past {limit}");
                    running.push((id, peer, groups));
                }
                Action::Cancel { id } => running.retain(|r| r.0 != id),
            }
        }
    };
    apply(s.poll(now), &mut running, &done, &haves, limit);
    for _ in 0..5000 {
        if s.is_done() {
            break;
        }
        let op = next();
        if let Some(op) = op.filter(|op| op % 7 == 6 || running.is_empty()) {
            // The reader moves on.
            limit = (limit + u64::from(op)).min(total);
            s.set_limit(limit);
        }
        if running.is_empty() {
            now += Duration::from_secs(2);
            apply(s.poll(now), &mut running, &done, &haves, limit);
            if running.is_empty() && op.is_none() {
                break;
            }
            continue;
        }
        let op = op.unwrap_or(0);
        let i = usize::from(op) % running.len();
        let (id, peer, groups) = running.remove(i);
        let actions = if peer == honest || op % 5 == 0 {
            // Delivered in full.
            done |= Groups::from(groups.clone());
            s.finished(id, &done, now)
        } else {
            let fault = match op % 5 {
                1 => Fault::Transport,
                2 => Fault::BadData,
                3 => Fault::Protocol,
                _ => Fault::NotFound {
                    have: (op & 1 == 0).then(|| haves[usize::from(peer)].clone()),
                },
            };
            s.failed(id, &done, fault, now)
        };
        apply(actions, &mut running, &done, &haves, limit);
        now += Duration::from_millis(u64::from(op));
        // The honest provider is never stalled: its requests move on.
        tick += 1;
        for (id, peer, _) in &running {
            if *peer == honest {
                s.progress(*id, tick, now);
            }
        }
        apply(s.poll(now), &mut running, &done, &haves, limit);
    }
    // The input ran out: the reader reads to the end, the honest provider
    // answers what it is asked at once, the others fail whatever they are
    // asked.
    limit = total;
    s.set_limit(limit);
    for _ in 0..10_000 {
        if s.is_done() {
            break;
        }
        now += Duration::from_millis(10);
        apply(s.poll(now), &mut running, &done, &haves, limit);
        while let Some((id, peer, groups)) = running.pop() {
            let a = if peer == honest {
                done |= Groups::from(groups);
                s.finished(id, &done, now)
            } else {
                s.failed(id, &done, Fault::Transport, now)
            };
            apply(a, &mut running, &done, &haves, limit);
        }
    }
    assert!(s.is_done(), "with an honest provider the download finishes");
});
