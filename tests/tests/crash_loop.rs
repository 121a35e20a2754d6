//! Kill a process using the store at random moments (SIGKILL) and exactly
//! between durable steps (the store's crash points), reopen the store, and
//! check: it opens; every complete blob verifies; every partial blob's
//! present groups verify; and everything the child saw acknowledged
//! (journaled after the call returned) is still there.
//!
//! Then the same for a whole node: a `p2pfs daemon` killed with SIGKILL
//! while commands import files, download from another node and write to a
//! room through it.
//!
//! `P2PFS_CRASH_ROUNDS` sets the rounds of each loop (`bench/crash.sh`
//! runs a thousand).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashMap,
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use p2pfs_proto::Hash;
use p2pfs_store::{BlobState, ChunkNum, Store};
use p2pfs_tests::temp_dir;

/// Rounds of each loop: `P2PFS_CRASH_ROUNDS`, else `default`.
fn rounds(default: u64) -> u64 {
    std::env::var("P2PFS_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn store_survives_kill_9_at_any_moment() {
    let mut dir = temp_dir();
    let seed0 = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed0);
    let mut acknowledged_total = 0;
    let rounds = rounds(40);
    for round in 0..rounds {
        // A fresh store every 40 rounds: each round verifies all of it.
        if round > 0 && round % 40 == 0 {
            dir = temp_dir();
        }
        let target = dir.path().join("target");
        let source = dir.path().join("source");
        let journal = dir.path().join("journal");
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
    eprintln!(
        "store crash loop: {rounds} kills, {acknowledged_total} acknowledged facts checked, none lost"
    );
}

#[test]
fn store_survives_a_crash_at_every_crash_point() {
    use std::os::unix::process::ExitStatusExt;
    let seed = fastrand::u64(..);
    let mut reached = 0;
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
            reached += 1;
        }
    }
    eprintln!(
        "store crash points: {reached} reached ({} named points, 5 occurrences each), none lost",
        p2pfs_store::crash::POINTS.len()
    );
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
    let mut text = std::fs::read_to_string(journal).unwrap_or_default();
    // A line the kill cut short was never acknowledged.
    text.truncate(text.rfind('\n').map_or(0, |i| i + 1));
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

/// What the commands run against the node saw acknowledged.
#[derive(Debug, Default)]
struct Acked {
    /// `add`: hash → size.
    added: HashMap<Hash, u64>,
    /// `fetch` (complete, pinned): hashes.
    fetched: std::collections::HashSet<Hash>,
    /// Downloads acknowledged in all.
    downloads: usize,
    /// Chat lines posted.
    lines: Vec<String>,
    /// `room put`: path → hash.
    puts: HashMap<String, String>,
}

/// Runs `step(i, rng)` for i = 0, 1, … on a thread until `stop` is set.
fn worker(
    stop: &Arc<AtomicBool>,
    seed: u64,
    mut step: impl FnMut(u64, &mut fastrand::Rng) + Send + 'static,
) -> std::thread::JoinHandle<()> {
    let stop = stop.clone();
    std::thread::spawn(move || {
        let mut rng = fastrand::Rng::with_seed(seed);
        for i in 0.. {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            step(i, &mut rng);
        }
    })
}

/// Runs one command against the node; `None` if it failed (the node was
/// killed under it, as intended).
fn try_p2pfs(data: &std::path::Path, args: &[&str]) -> Option<String> {
    let out = p2pfs_tests::p2pfs(data, args);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn a_node_killed_while_importing_downloading_and_writing_its_room_loses_nothing() {
    use p2pfs_tests::{Daemon, ok, p2pfs, random_file};
    let dir = temp_dir();
    let (pdir, work) = (dir.path().join("provider"), dir.path().join("work"));
    let victim_dir = |epoch: u64| dir.path().join(format!("victim{epoch}"));
    let mut vdir = victim_dir(0);
    std::fs::create_dir_all(&work).unwrap();
    let seed0 = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed0);
    // A provider sending at 24 MiB/s: a download takes a few hundred
    // milliseconds, so kills land in the middle of them.
    let provider = Daemon::start(&pdir, &["--no-lan", "--max-upload-rate", "24M"]);
    let mut blobs = Vec::new();
    for i in 0..3 {
        let f = work.join(format!("blob{i}"));
        random_file(&f, 5_000_000 + i * 333_333, seed0 ^ (100 + i));
        let line = ok(&p2pfs(&pdir, &["add", f.to_str().unwrap()]));
        blobs.push(line.split_whitespace().next().unwrap().to_string());
    }
    let peer = provider.peer();
    let acked = Arc::new(Mutex::new(Acked::default()));
    let rounds = rounds(12);
    let mut facts = 0;
    let mut victim = Daemon::start(&vdir, &["--no-lan"]);
    ok(&p2pfs(&vdir, &["room", "create", "crash"]));
    // Imports, downloads, chat lines and room files acknowledged in all.
    let mut totals = [0; 4];
    let mut count = |a: &Acked| {
        for (t, n) in
            totals
                .iter_mut()
                .zip([a.added.len(), a.downloads, a.lines.len(), a.puts.len()])
        {
            *t += n;
        }
    };
    for round in 0..rounds {
        // A fresh node every 40 rounds: each check verifies all it holds.
        if round > 0 && round % 40 == 0 {
            count(&std::mem::take(&mut *acked.lock().unwrap()));
            drop(victim);
            let _ = std::fs::remove_dir_all(&vdir);
            vdir = victim_dir(round / 40);
            victim = Daemon::start(&vdir, &["--no-lan"]);
            ok(&p2pfs(&vdir, &["room", "create", "crash"]));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        // Imports of files up to 3 MiB.
        workers.push({
            let (acked, vdir, work) = (acked.clone(), vdir.clone(), work.clone());
            worker(&stop, rng.u64(..), move |i, rng| {
                let f = work.join(format!("add-{round}-{i}"));
                let size = rng.u64(1..3 << 20);
                random_file(&f, size, rng.u64(..));
                if let Some(out) = try_p2pfs(&vdir, &["add", f.to_str().unwrap()]) {
                    let hash: Hash = out.split_whitespace().next().unwrap().parse().unwrap();
                    acked.lock().unwrap().added.insert(hash, size);
                }
                let _ = std::fs::remove_file(&f);
            })
        });
        // Downloads from the provider; a finished one is unpinned and
        // collected, to be downloaded again later.
        workers.push({
            let (acked, vdir, blobs, peer) =
                (acked.clone(), vdir.clone(), blobs.clone(), peer.clone());
            worker(&stop, rng.u64(..), move |_, rng| {
                let b = &blobs[rng.usize(..blobs.len())];
                let hash: Hash = b.parse().unwrap();
                if acked.lock().unwrap().fetched.remove(&hash) {
                    // No longer promised (from before the unpin).
                    if try_p2pfs(&vdir, &["unpin", b]).is_none()
                        || try_p2pfs(&vdir, &["gc"]).is_none()
                    {
                        return;
                    }
                }
                let args = ["fetch", b, "--peer", &peer, "-o", "-"];
                if try_p2pfs(&vdir, &args).is_some() {
                    let mut a = acked.lock().unwrap();
                    a.fetched.insert(hash);
                    a.downloads += 1;
                }
            })
        });
        // Room writes: chat lines and small files.
        workers.push({
            let (acked, vdir, work) = (acked.clone(), vdir.clone(), work.clone());
            worker(&stop, rng.u64(..), move |k, rng| {
                if k % 2 == 0 {
                    let line = format!("crash line {round}-{k}.");
                    if try_p2pfs(&vdir, &["chat", "crash", &line]).is_some() {
                        acked.lock().unwrap().lines.push(line);
                    }
                } else {
                    let f = work.join(format!("put-{round}-{k}"));
                    random_file(&f, rng.u64(1..200_000), rng.u64(..));
                    let name = format!("f-{round}-{k}");
                    let args = ["room", "put", "crash", f.to_str().unwrap(), &name];
                    if let Some(out) = try_p2pfs(&vdir, &args) {
                        let hash = out.split_whitespace().next().unwrap().to_string();
                        acked.lock().unwrap().puts.insert(name, hash);
                    }
                    let _ = std::fs::remove_file(&f);
                }
            })
        });
        // A random moment, then no new command, and the kill.
        std::thread::sleep(Duration::from_millis(rng.u64(200..2000)));
        stop.store(true, Ordering::SeqCst);
        victim.kill9();
        for w in workers {
            w.join().unwrap();
        }
        victim = Daemon::start(&vdir, &["--no-lan"]);
        facts += check_node(&vdir, &acked.lock().unwrap(), seed0, round);
    }
    count(&acked.lock().unwrap());
    let [imports, downloads, lines, puts] = totals;
    assert!(
        imports > 0 && lines > 0 && puts > 0,
        "the commands never got work done: {totals:?}"
    );
    eprintln!(
        "node crash loop: {rounds} kills, {facts} checks of acknowledged facts ({imports} imports, {downloads} downloads, {lines} chat lines, {puts} room files acknowledged), none lost"
    );
    drop(victim);
    drop(provider);
}

/// Checks the restarted node against what was acknowledged; returns how
/// many facts it checked.
fn check_node(data: &std::path::Path, acked: &Acked, seed: u64, round: u64) -> usize {
    use p2pfs_tests::{ok, p2pfs};
    let ctx = format!("seed {seed}, round {round}");
    let out = p2pfs(data, &["verify"]);
    assert!(
        out.status.success(),
        "{ctx}: a stored blob does not verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ls: serde_json::Value = serde_json::from_str(&ok(&p2pfs(data, &["ls", "--json"]))).unwrap();
    let blobs: HashMap<String, (&str, u64)> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let h = b["hash"].as_str().unwrap().to_string();
            (
                h,
                (b["state"].as_str().unwrap(), b["size"].as_u64().unwrap()),
            )
        })
        .collect();
    let complete = |h: &str| blobs.get(h).map(|b| b.0) == Some("complete");
    for (hash, size) in &acked.added {
        let h = hash.to_string();
        assert!(complete(&h), "{ctx}: acknowledged import {h} is lost");
        assert_eq!(blobs[&h].1, *size, "{ctx}: {h}");
    }
    for hash in &acked.fetched {
        let h = hash.to_string();
        assert!(complete(&h), "{ctx}: acknowledged download {h} is lost");
    }
    let chat = ok(&p2pfs(data, &["chat", "crash"]));
    for line in &acked.lines {
        assert!(
            chat.contains(line),
            "{ctx}: acknowledged chat line {line:?} is lost"
        );
    }
    let listing: serde_json::Value =
        serde_json::from_str(&ok(&p2pfs(data, &["room", "ls", "crash", "--json"]))).unwrap();
    let files: HashMap<&str, &str> = listing
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| Some((f["path"].as_str()?, f["kind"]["File"]["hash"].as_str()?)))
        .collect();
    for (path, hash) in &acked.puts {
        assert_eq!(
            files.get(path.as_str()),
            Some(&hash.as_str()),
            "{ctx}: acknowledged room file {path} is lost"
        );
        assert!(
            complete(hash),
            "{ctx}: the blob of room file {path} is lost"
        );
    }
    acked.added.len() + acked.fetched.len() + acked.lines.len() + 2 * acked.puts.len() + 1
}
