//! `p2pfs room import` fed any file: whatever the bytes, nothing panics;
//! an export it refuses leaves the store as it was (no blob, no pin).
#![no_main]

mod shm;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use p2pfs_proto::{
    RoomSecret, RoomTicket, codec,
    room::{BUNDLE_ENTRIES, BUNDLE_ROOM, Meta, Op},
};
use p2pfs_store::{MemoryDb, Options, Store};
use p2pfs_swarm::{
    fuzzing::room::{read_room_export, sign},
    identity::SecretKey,
};

struct World {
    store: Store,
    /// An honest export: a ticket, three entries, one blob.
    seed: Vec<u8>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = shm::process_dir("room_import");
        let src = Store::open(dir.join("src")).unwrap();
        let key = SecretKey::from_seed([1; 32]).unwrap();
        let secret = RoomSecret::for_owner(&key.public(), &[2; 32]);
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let hash = src.import_bytes(&data, Some("user")).unwrap().hash;
        let e0 = sign(
            &key,
            &secret,
            0,
            vec![],
            1,
            Op::Meta(Meta::Owner { nonce: [2; 32] }),
        )
        .unwrap();
        let e1 = sign(
            &key,
            &secret,
            1,
            vec![e0.hash()],
            2,
            Op::Chat { text: "hi".into() },
        )
        .unwrap();
        let e2 = sign(
            &key,
            &secret,
            2,
            vec![e1.hash()],
            3,
            Op::Put {
                path: "f".into(),
                hash,
                size: data.len() as u64,
                exec: false,
                mtime: 3,
                replaces: vec![],
            },
        )
        .unwrap();
        let ticket = RoomTicket::new(secret, "r".into(), vec![]);
        let mut seed = Vec::new();
        let mut w = src.bundle_writer(&mut seed).unwrap();
        w.record(BUNDLE_ROOM, &codec::encode(&ticket).unwrap())
            .unwrap();
        let entries: Vec<Vec<u8>> = [e0, e1, e2].iter().map(|e| e.bytes().to_vec()).collect();
        w.record(BUNDLE_ENTRIES, &codec::encode(&entries).unwrap())
            .unwrap();
        w.blob(&hash).unwrap();
        w.finish().unwrap();
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
    let before = w.store.list().unwrap();
    match read_room_export(&w.store, &data) {
        Err(_) => assert_eq!(
            w.store.list().unwrap(),
            before,
            "a refused export left blobs"
        ),
        Ok(n) => assert!(n <= data.len()),
    }
});
