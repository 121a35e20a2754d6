//! `p2pfs import` fed any file: whatever the bytes, the store never
//! panics; a bundle it refuses leaves the store as it was (no blob, no
//! pin); one it takes holds only blobs that read back as their hash.
#![no_main]

mod shm;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use p2pfs_store::{MemoryDb, Options, Store};

struct World {
    store: Store,
    /// An honest bundle of two blobs, to start mutations from.
    seed: Vec<u8>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = shm::process_dir("bundle_import");
        let src = Store::open(dir.join("src")).unwrap();
        let a: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        let ha = src.import_bytes(&a, Some("user")).unwrap().hash;
        let hb = src.import_bytes(b"small", Some("user")).unwrap().hash;
        let mut seed = Vec::new();
        src.export_bundle(&[ha, hb], &mut seed).unwrap();
        let store =
            Store::open_in_memory(dir.join("dst"), &MemoryDb::new(), Options::default()).unwrap();
        World { store, seed }
    })
}

fuzz_target!(|input: (bool, Vec<u8>)| {
    let w = world();
    let (mutate, bytes) = input;
    // Half the runs damage an honest seed where the input says.
    let data = shm::seed_or_input(&w.seed, mutate, bytes);
    match w.store.import_bundle(&data[..], Some("user")) {
        Ok(blobs) => {
            for (hash, size) in blobs {
                let mut buf = vec![0u8; size as usize];
                let mut at = 0;
                while at < buf.len() {
                    let n = w.store.read_at(&hash, at as u64, &mut buf[at..]).unwrap();
                    assert!(n > 0);
                    at += n;
                }
                assert_eq!(blake3::hash(&buf).as_bytes(), hash.as_bytes());
                // Back to empty for the next run.
                w.store.unpin(&hash, "user").unwrap();
                w.store.discard(&[hash]).unwrap();
            }
        }
        Err(_) => {}
    }
    assert!(
        w.store.list().unwrap().is_empty(),
        "a refused bundle left blobs"
    );
});
