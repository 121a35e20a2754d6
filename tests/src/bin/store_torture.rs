//! A child process for the crash-loop test: it hammers a store with imports,
//! verified downloads, pins and GC until it is killed, and journals every
//! operation the store acknowledged (after the call returned), so the test
//! can check that acknowledged work survived `kill -9`.
//!
//! `store_torture TARGET SOURCE JOURNAL SEED`

use std::{io::Write, path::PathBuf};

use p2pfs_store::{ChunkNum, ChunkRanges, Store};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, target, source, journal, seed] = args.as_slice() else {
        anyhow::bail!("usage: store_torture TARGET SOURCE JOURNAL SEED");
    };
    let mut rng = fastrand::Rng::with_seed(seed.parse()?);
    let target = Store::open(PathBuf::from(target))?;
    let source = Store::open(PathBuf::from(source))?;
    let mut journal = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(journal)?;
    const G: usize = 16 * 1024;
    let sizes = [0, 1, 1024, G - 1, G, G + 1, 100 * G + 5, 3 << 20, 9 << 20];
    for _ in 0..100_000 {
        match rng.u8(..10) {
            0..=3 => {
                let mut data = vec![0u8; sizes[rng.usize(..sizes.len())]];
                rng.fill(&mut data);
                let r = target.import_bytes(&data, Some("p"))?;
                note(&mut journal, &format!("imported {} {}", r.hash, r.size))?;
            }
            4..=7 => {
                // Download a blob from the source store in random pieces.
                let mut data = vec![0u8; rng.usize(G..8 << 20)];
                rng.fill(&mut data);
                let hash = source.import_bytes(&data, Some("p"))?.hash;
                target.pin(&hash, "p")?;
                let groups = data.len().div_ceil(G) as u64;
                let partial = target.partial(hash)?;
                // The first request of a download proves the size.
                let mut ranges = group_range(groups - 1, groups);
                let mut proof = Vec::new();
                source.encode_ranges(&hash, &ranges, &mut proof)?;
                partial.ingest(&ranges, &proof[..])?;
                for _ in 0..rng.usize(1..6) {
                    let start = rng.u64(..groups);
                    let end = (start + rng.u64(1..64)).min(groups);
                    ranges |= group_range(start, end);
                    let mut stream = Vec::new();
                    source.encode_ranges(&hash, &ranges, &mut stream)?;
                    partial.ingest(&ranges, &stream[..])?;
                    if rng.bool() {
                        partial.flush()?;
                        let have: Vec<String> = ranges_to_groups(&ranges);
                        note(&mut journal, &format!("flushed {hash} {}", have.join(",")))?;
                    }
                }
            }
            8 => {
                let list = target.list()?;
                if let Some(b) = list.get(rng.usize(..list.len().max(1))) {
                    // Journaled first: killed between the two, the blob may
                    // be unpinned (and collected by the next round) with
                    // nothing journaled, and the check would want it.
                    note(&mut journal, &format!("unpinned {}", b.hash))?;
                    target.unpin(&b.hash, "p")?;
                }
            }
            _ => {
                target.gc()?;
                note(&mut journal, "gc")?;
            }
        }
    }
    Ok(())
}

fn group_range(start: u64, end: u64) -> ChunkRanges {
    ChunkRanges::from(ChunkNum(start * 16)..ChunkNum(end * 16))
}

/// Appends one line to the journal in one `write` (a kill can still cut
/// it short: the check ignores a last line without its newline).
fn note(journal: &mut std::fs::File, line: &str) -> std::io::Result<()> {
    journal.write_all(format!("{line}\n").as_bytes())
}

/// `start-end` group ranges, for the journal.
fn ranges_to_groups(r: &ChunkRanges) -> Vec<String> {
    r.boundaries()
        .chunks(2)
        .map(|b| match b {
            [s, e] => format!("{}-{}", s.0 / 16, e.0 / 16),
            [s] => format!("{}-", s.0 / 16),
            _ => String::new(),
        })
        .collect()
}
