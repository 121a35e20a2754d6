//! GC running flat out while other threads import, pin and download: no
//! pinned blob is ever lost (the race of iroh-blobs#247), nothing being
//! written is collected, and what is neither pinned nor in use does go.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use p2pfs_proto::Hash;
use p2pfs_store::{ChunkNum, ChunkRanges, Store};
use p2pfs_tests::temp_dir;

const G: usize = 16 * 1024;
const RUN_FOR: Duration = Duration::from_secs(4);

fn random(rng: &mut fastrand::Rng, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rng.fill(&mut v);
    v
}

#[test]
fn gc_never_collects_pinned_or_in_flight_blobs() {
    let dir = temp_dir();
    let store = Store::open(dir.path().join("s")).unwrap();
    let source = Store::open(dir.path().join("src")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let seed = fastrand::u64(..);

    let gc = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut runs = 0u64;
            while !stop.load(Ordering::Relaxed) {
                store.gc().unwrap();
                runs += 1;
            }
            runs
        })
    };

    let mut workers = Vec::new();
    for w in 0..3u64 {
        let (store, source) = (store.clone(), source.clone());
        workers.push(std::thread::spawn(move || {
            let mut rng = fastrand::Rng::with_seed(seed ^ w);
            let mut kept: Vec<(Hash, Vec<u8>)> = Vec::new();
            let mut loose = Vec::new();
            let deadline = Instant::now() + RUN_FOR;
            while Instant::now() < deadline {
                let size = [10, G + 1, 5 * G, 300 * G][rng.usize(..4)];
                let data = random(&mut rng, size);
                match rng.u8(..4) {
                    // Import with the pin in the same commit.
                    0 => {
                        let h = store.import_bytes(&data, Some("keep")).unwrap().hash;
                        kept.push((h, data));
                    }
                    // Import, then pin while the temporary pin holds it:
                    // the pattern of a caller that pins after adding.
                    1 => {
                        let r = store.import_bytes(&data, None).unwrap();
                        assert!(
                            store.pin(&r.hash, "keep").unwrap(),
                            "GC took a temp-pinned blob"
                        );
                        kept.push((r.hash, data));
                    }
                    // Import and let go: fair game for GC.
                    2 => {
                        loose.push(store.import_bytes(&data, None).unwrap().hash);
                    }
                    // Download while GC runs, in several sessions: between
                    // them the unpinned partial blob is fair game for GC
                    // (then the download starts over); within a session it
                    // must survive, and the finished blob must verify.
                    _ => {
                        let h = source.import_bytes(&data, Some("src")).unwrap().hash;
                        let groups = size.div_ceil(G) as u64;
                        let mut next = 0;
                        while next < groups {
                            let p = store.partial(h).unwrap();
                            if p.size().is_none() {
                                let tail = ChunkRanges::from(ChunkNum(u64::MAX / 2)..);
                                let mut s = Vec::new();
                                source.encode_ranges(&h, &tail, &mut s).unwrap();
                                p.ingest(&tail, &s[..]).unwrap();
                                next = 0;
                            }
                            let end = (next + 1 + rng.u64(..40)).min(groups);
                            let r = ChunkRanges::from(ChunkNum(next * 16)..ChunkNum(end * 16));
                            let mut s = Vec::new();
                            source.encode_ranges(&h, &r, &mut s).unwrap();
                            p.ingest(&r, &s[..]).unwrap();
                            if rng.bool() {
                                p.flush().unwrap();
                            }
                            next = end;
                            if next == groups {
                                assert!(p.is_complete());
                                store.pin(&h, "keep").unwrap();
                            }
                        }
                        store.verify(&h).unwrap();
                        kept.push((h, data));
                    }
                }
                // Everything pinned so far is still whole.
                if let Some((h, d)) = kept.get(rng.usize(..kept.len().max(1))) {
                    let mut out = Vec::new();
                    store.reader(h).unwrap().copy_to(&mut out).unwrap();
                    assert_eq!(&out, d, "pinned blob {h} changed or vanished");
                }
            }
            (kept, loose)
        }));
    }
    let results: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    stop.store(true, Ordering::Relaxed);
    let gc_runs = gc.join().unwrap();
    assert!(
        gc_runs > 10,
        "GC ran only {gc_runs} times: no race was tested"
    );

    store.gc().unwrap();
    let mut kept_hashes = std::collections::HashSet::new();
    for (kept, _) in &results {
        for (h, d) in kept {
            let mut out = Vec::new();
            store.reader(h).unwrap().copy_to(&mut out).unwrap();
            assert_eq!(&out, d, "seed {seed}: pinned blob {h} lost");
            store.verify(h).unwrap();
            kept_hashes.insert(*h);
        }
    }
    // Loose blobs are gone unless identical content was also kept.
    for (_, loose) in &results {
        for h in loose {
            if !kept_hashes.contains(h) {
                assert!(
                    store.info(h).unwrap().is_none(),
                    "seed {seed}: {h} not collected"
                );
            }
        }
    }
    let data_files = std::fs::read_dir(dir.path().join("s/data"))
        .unwrap()
        .count();
    let file_blobs = store
        .list()
        .unwrap()
        .iter()
        .filter(|b| b.size > G as u64)
        .count();
    assert_eq!(
        data_files, file_blobs,
        "seed {seed}: orphaned or missing data files"
    );
}
