//! The store's verified ingest fed a stream a peer controls: whatever the
//! bytes, it never panics, stores nothing that does not verify against the
//! hash, and what it does store reads back as the original content.
#![no_main]

mod shm;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use p2pfs_proto::Hash;
use p2pfs_store::{ChunkNum, ChunkRanges, MemoryDb, Options, Store};

/// 5 chunk groups and a bit: several levels of the tree.
const SIZE: usize = 5 * 16384 + 1000;

struct World {
    store: Store,
    data: Vec<u8>,
    hash: Hash,
    /// An honest encoding of the last chunk group (the size proof).
    proof: Vec<u8>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        // In memory where there is a tmpfs: a collection per run is cheap.
        let dir = shm::process_dir("verified_ingest");
        let src = Store::open(dir.join("src")).unwrap();
        let data: Vec<u8> = (0..SIZE).map(|i| (i * 7 + i / 300) as u8).collect();
        let hash = src.import_bytes(&data, Some("user")).unwrap().hash;
        let tail = ChunkRanges::from(ChunkNum(u64::MAX / 2)..);
        let mut proof = Vec::new();
        src.encode_ranges(&hash, &tail, &mut proof).unwrap();
        // The database in memory: a run's commits cost no fsync.
        let store =
            Store::open_in_memory(dir.join("dst"), &MemoryDb::new(), Options::default()).unwrap();
        World {
            store,
            data,
            hash,
            proof,
        }
    })
}

fn p_complete(w: &World) -> bool {
    w.store
        .info(&w.hash)
        .ok()
        .flatten()
        .is_some_and(|i| i.state == p2pfs_store::BlobState::Complete)
}

fuzz_target!(|input: &[u8]| {
    let w = world();
    let Some((&mode, stream)) = input.split_first() else {
        return;
    };
    let p = w.store.partial(w.hash).unwrap();
    if mode & 1 == 1 {
        // The size proven honestly first; then any range, any bytes.
        let tail = ChunkRanges::from(ChunkNum(u64::MAX / 2)..);
        let _ = p.ingest(&tail, &w.proof[..]);
        let start = u64::from(mode >> 1) % 6;
        let ranges = ChunkRanges::from(ChunkNum(start * 16)..ChunkNum((start + 2) * 16));
        let _ = p.ingest(&ranges, stream);
    } else {
        // The size proof itself from the peer.
        let tail = ChunkRanges::from(ChunkNum(u64::MAX / 2)..);
        let _ = p.ingest(&tail, stream);
    }
    // Whatever was stored is the original.
    if let Some(size) = p.size() {
        assert_eq!(size, SIZE as u64, "a size that was not proven");
        let mut buf = vec![0u8; SIZE];
        let n = p.read_at(0, &mut buf).unwrap_or(0);
        if n > 0 && p.is_complete() {
            assert_eq!(&buf[..n], &w.data[..n]);
        }
    }
    drop(p);
    // Start again from nothing now and then (a collection is slow).
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 64 == 0 || p_complete(w) {
        let _ = w.store.gc();
    }
});
