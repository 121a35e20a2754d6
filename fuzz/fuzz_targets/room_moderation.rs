//! Moderated rooms converge. The input writes a room's log by an owner
//! and four members (fixed keys): chat lines and puts, role entries (by
//! anyone: only the owner's count), epochs removing members with any
//! `keep` (by anyone: only the owner's and its moderators' count, and a
//! moderator removes no moderator) after epochs the input picks, merges,
//! leaves, each linked to its author's previous entry and to an earlier
//! entry the input picks. Two replicas take the log in, one in the order
//! written, the other backwards in small batches (entries whose parents
//! come later wait and are offered again, as a session does).
//!
//! Asserted: no panic; both refuse the same entries and accept the rest
//! (nothing waits at the end); both derive the same moderation state (the
//! owner, roles, epochs, removals and their cuts, leaves) and the same
//! listing; no removed member's entry after its cut is in the listing.
#![no_main]

mod shm;

use std::{
    collections::BTreeSet,
    sync::{Mutex, OnceLock},
};

use libfuzzer_sys::fuzz_target;
use p2pfs_proto::{
    Hash, RoomSecret,
    moderation::{Epoch, Removal, Role},
    room::{Meta, Op},
};
use p2pfs_store::{MemoryDb, Options, Store};
use p2pfs_swarm::{
    fuzzing::room::{Verified, accept, moderation, seal, sign},
    identity::SecretKey,
    room::query,
};

const MAX_STEPS: usize = 24;
const NONCE: [u8; 32] = [7; 32];

fn keys() -> &'static [SecretKey] {
    static K: OnceLock<Vec<SecretKey>> = OnceLock::new();
    K.get_or_init(|| {
        (1..=5u8)
            .map(|i| SecretKey::from_seed([i; 32]).unwrap())
            .collect()
    })
}

fn secret() -> RoomSecret {
    RoomSecret::for_owner(&keys()[0].public(), &NONCE)
}

static STORES: Mutex<Option<[Store; 2]>> = Mutex::new(None);

fn stores() -> [Store; 2] {
    let dir = shm::process_dir("room_moderation");
    let open = |name: &str| {
        Store::open_in_memory(dir.join(name), &MemoryDb::new(), Options::default()).unwrap()
    };
    [open("a"), open("b")]
}

/// The log being written.
struct Log {
    entries: Vec<Verified>,
    /// Per author, its last entry and the next number.
    chains: Vec<(Option<Hash>, u64)>,
    epochs: Vec<Hash>,
}

impl Log {
    fn write(&mut self, author: usize, pick: u8, op: Op) {
        let secret = secret();
        let (prev, seq) = self.chains[author];
        let mut parents: Vec<Hash> = prev.into_iter().collect();
        if !self.entries.is_empty() {
            let other = self.entries[usize::from(pick) % self.entries.len()].hash();
            if !parents.contains(&other) {
                parents.push(other);
            }
        }
        if seq > 0 && parents.is_empty() {
            return;
        }
        let Ok(v) = sign(&keys()[author], &secret, seq, parents, 1_000 + seq, op) else {
            return;
        };
        if matches!(v.body().op, Op::Epoch(_)) {
            self.epochs.push(v.hash());
        }
        self.chains[author] = (Some(v.hash()), seq + 1);
        self.entries.push(v);
    }
}

fuzz_target!(|steps: Vec<(u8, u8, u8, u8, u8)>| {
    let mut guard = STORES.lock().unwrap_or_else(|e| e.into_inner());
    let stores = guard.get_or_insert_with(stores);
    let secret = secret();
    let room = secret.id();
    for s in stores.iter() {
        s.remove_room(&room).unwrap();
    }
    let mut log = Log {
        entries: Vec::new(),
        chains: vec![(None, 0); 5],
        epochs: Vec::new(),
    };
    log.write(0, 0, Op::Meta(Meta::Owner { nonce: NONCE }));
    for m in 1..5 {
        log.write(m, 0, Op::Meta(Meta::MemberName(format!("m{m}"))));
    }
    for &(author, kind, a, b, pick) in steps.iter().take(MAX_STEPS) {
        let author = usize::from(author) % 5;
        let op = match kind % 6 {
            0 => Op::Chat {
                text: format!("{a}"),
            },
            1 => Op::Put {
                path: format!("f{}", a % 4),
                hash: Hash::of(&[a, b]),
                size: 1,
                exec: false,
                mtime: 1,
                replaces: Vec::new(),
            },
            2 => Op::Meta(Meta::Role {
                member: keys()[usize::from(b) % 5].public(),
                role: if a & 1 == 1 {
                    Role::Moderator
                } else {
                    Role::Member
                },
            }),
            3 | 4 => {
                let removed = if kind % 6 == 3 {
                    vec![Removal {
                        member: keys()[usize::from(b) % 5].public(),
                        keep: u64::from(a % 4),
                    }]
                } else {
                    Vec::new()
                };
                let after = log
                    .epochs
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| (pick >> (i % 8)) & 1 == 1)
                    .map(|(_, h)| *h)
                    .collect();
                let wraps = (0..5)
                    .filter(|m| !removed.iter().any(|r| r.member == keys()[*m].public()))
                    .filter_map(|m| seal(&room, &keys()[m].public(), &[a; 32]))
                    .collect();
                Op::Epoch(Epoch {
                    removed,
                    after,
                    wraps,
                })
            }
            _ => Op::Meta(Meta::Leave),
        };
        log.write(author, pick, op);
    }

    // A: in the order written. B: backwards, three at a time, with what
    // waits offered again.
    let a = accept(&stores[0], &room, log.entries.clone()).unwrap();
    // (Only what builds on a refused entry waits.)
    assert!(a.pending.is_empty() || !a.rejected.is_empty());
    let mut refused_b: BTreeSet<Hash> = BTreeSet::new();
    let mut waiting: Vec<Verified> = Vec::new();
    let mut rev = log.entries.clone();
    rev.reverse();
    for chunk in rev.chunks(3) {
        let mut batch = chunk.to_vec();
        batch.append(&mut waiting);
        let got = accept(&stores[1], &room, batch).unwrap();
        refused_b.extend(got.rejected.iter().map(|(h, _)| *h));
        waiting = got.pending;
    }
    if !waiting.is_empty() {
        let got = accept(&stores[1], &room, std::mem::take(&mut waiting)).unwrap();
        refused_b.extend(got.rejected.iter().map(|(h, _)| *h));
    }
    // (Entries after one refused wait for it for good, on both.)
    let refused_a: BTreeSet<Hash> = a.rejected.iter().map(|(h, _)| *h).collect();
    assert_eq!(
        refused_a, refused_b,
        "the replicas refuse different entries"
    );
    let ma = moderation(&stores[0], &room).unwrap();
    let mb = moderation(&stores[1], &room).unwrap();
    assert_eq!(ma, mb, "the replicas' moderation differs");
    let la = query::ls(&stores[0], &room).unwrap();
    let lb = query::ls(&stores[1], &room).unwrap();
    assert_eq!(la, lb, "the replicas' listings differ");
    if ma.owner.is_some() {
        assert_eq!(ma.owner, Some(keys()[0].public()));
    }
});
