//! Room sync convergence. The input writes a small room's log: up to 20
//! entries by three authors (fixed keys), each signed, linked to its
//! author's previous entry and to up to two earlier entries the input
//! picks, with times that tie and disagree with the links: puts, files,
//! deletes, directories, symbolic links on a few paths (one named like a
//! conflict copy), replacing entries the input picks (of the same path or
//! not), chat lines, display names (two alike), room names and policies.
//! Two replicas (stores with their databases in memory) take the log in,
//! each in its own order, in batches, with duplicates and entries whose
//! parents come later (kept waiting and offered again with the next batch,
//! as a session does), through the check the sync path runs
//! (`entry::verify`) and `log::accept`. Among them: garbage, entries with
//! a flipped byte, entries signed by a key other than their author's, and
//! entries of another room.
//!
//! Asserted: no panic; what is not an honest entry of this room is
//! refused by the check; no honest entry is ever rejected or taken in
//! twice, and once both replicas have everything, nothing waits; both
//! derive the same views (every row but the chat lines `chat.log` keeps in
//! arrival order, their byte count, and the suggested room name, which is
//! the last one in local order by design): the same listing, directory
//! times, member names, policy and blobs; the same chat transcript in
//! canonical order (`p2pfs chat`), one line per message; and a listing
//! kept up to date path by path as batches land (the mount's) equals the
//! listing computed from scratch.
#![no_main]

mod shm;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Mutex, OnceLock},
};

use libfuzzer_sys::fuzz_target;
use p2pfs_proto::{
    Hash, RoomId, RoomSecret,
    room::{Attr, Copies, Entry, Meta, Op, Signature, Time, signed_message},
};
use p2pfs_store::{MemoryDb, Options, Store};
use p2pfs_swarm::{
    fuzzing::room::{Verified, accept, sign, verify},
    identity::SecretKey,
    room::{listing::Listing, query},
};

const MAX_ENTRIES: usize = 20;
const NAMES: [&str; 4] = ["ann", "Ann", "bob", "ann: b"];

fn keys() -> &'static [SecretKey] {
    static K: OnceLock<Vec<SecretKey>> = OnceLock::new();
    K.get_or_init(|| {
        (1..=4u8)
            .map(|i| SecretKey::from_seed([i; 32]).unwrap())
            .collect()
    })
}

fn paths() -> &'static [String] {
    static P: OnceLock<Vec<String>> = OnceLock::new();
    P.get_or_init(|| {
        let mut p: Vec<String> = ["a", "b", "d", "d/x", "d/y", "d/x/z", "e/f"]
            .map(String::from)
            .to_vec();
        // A real name where a conflict copy of `a` by author 0 would go.
        p.push(format!("a.conflict-{}", keys()[0].public().fmt_short()));
        p
    })
}

/// Two stores kept from run to run (a new database costs more than a
/// run); each run starts by forgetting the room.
struct Replicas {
    stores: [Store; 2],
}

static REPLICAS: Mutex<Option<Replicas>> = Mutex::new(None);

fn replicas() -> Replicas {
    let dir = shm::process_dir("room_view");
    let open = |name: &str| {
        Store::open_in_memory(dir.join(name), &MemoryDb::new(), Options::default()).unwrap()
    };
    let stores = [open("a"), open("b")];
    Replicas { stores }
}

fn time(secs: u8) -> Time {
    Time {
        secs: i64::from(secs) - 100,
        nanos: u32::from(secs) * 3,
    }
}

/// The operation of an entry, from three bytes of input and the entries
/// before it (what it may replace).
fn op(kind: u8, a: u8, b: u8, earlier: &[Hash]) -> Op {
    let path = paths()[usize::from(a) % paths().len()].clone();
    let mut replaces = Vec::new();
    for pick in [b & 15, b >> 4] {
        if let Some(h) = earlier.get(usize::from(pick) % (earlier.len() + 2)) {
            replaces.push(*h);
        }
    }
    let attr = Attr {
        mode: u16::from(b) * 37 % 0o7777,
        mtime: time(a),
        atime: time(b),
        ctime: time(a ^ b),
    };
    match kind % 12 {
        0 => Op::Put {
            path,
            hash: Hash::of(&[a, b]),
            size: u64::from(b),
            exec: a & 1 == 1,
            mtime: u64::from(b) * 1000,
            replaces,
        },
        1 => Op::File {
            path,
            hash: Hash::of(&[b]),
            size: u64::from(b),
            attr,
            inode: [a % 3; 16],
            replaces,
        },
        2 => Op::Delete { path, replaces },
        3 => Op::Mkdir { path, replaces },
        4 => Op::Dir {
            path,
            attr,
            replaces,
        },
        5 => Op::Symlink {
            path,
            target: format!("../t{b}"),
            replaces,
        },
        6 => Op::SymlinkAt {
            path,
            target: "/abs".into(),
            attr,
            replaces,
        },
        7 | 8 => Op::Chat {
            text: format!("line {a} \u{1b}[2J {b}"),
        },
        9 => Op::Meta(Meta::MemberName(NAMES[usize::from(a) % 4].into())),
        10 => Op::Meta(Meta::RoomName(format!("room {b}"))),
        _ => Op::Meta(Meta::Copies(match b % 5 {
            0 => Copies::Full,
            n => Copies::Min(n),
        })),
    }
}

/// Every view row both replicas must agree on: all but the chat lines
/// (`c/`, in arrival order), the state (`s`, their byte count) and the
/// suggested room name (`r`: the last `RoomName` in local log order,
/// docs/protocol.md §8.5).
fn views(store: &Store, room: &RoomId) -> BTreeMap<Vec<u8>, Vec<u8>> {
    store
        .room_view_range(room, b"", None, usize::MAX)
        .unwrap()
        .into_iter()
        .filter(|(k, _)| !k.starts_with(b"c/") && k.as_slice() != b"s" && k.as_slice() != b"r")
        .collect()
}

/// Takes `order` (indices into `log`, repeats allowed) into `store` in
/// batches cut where `cuts` says, as sessions do: each batch checked, then
/// accepted with the entries still waiting. Returns the listing kept up
/// to date path by path.
fn take_in(
    store: &Store,
    secret: &RoomSecret,
    log: &[Verified],
    order: &[usize],
    cuts: &[u8],
) -> Listing {
    let room = secret.id();
    let mut listing = query::load_listing(store, &room).unwrap();
    let mut pending: Vec<Verified> = Vec::new();
    let mut taken: BTreeSet<Hash> = BTreeSet::new();
    let mut batches: Vec<&[usize]> = Vec::new();
    let mut rest = order;
    for c in cuts {
        if rest.is_empty() {
            break;
        }
        let (batch, tail) = rest.split_at(usize::from(*c) % rest.len() + 1);
        batches.push(batch);
        rest = tail;
    }
    batches.push(rest);
    for batch in batches {
        let mut list: Vec<Verified> = batch
            .iter()
            .map(|i| verify(secret, log[*i].bytes().to_vec()).expect("an honest entry refused"))
            .collect();
        list.append(&mut pending);
        let a = accept(store, &room, list).unwrap();
        assert!(
            a.rejected.is_empty(),
            "an honest entry rejected: {:?}",
            a.rejected
        );
        let mut paths = Vec::new();
        for e in &a.new {
            assert!(taken.insert(e.hash()), "an entry taken in twice");
            if let Some(p) = e.body().op.path() {
                paths.push(p.to_string());
            }
        }
        query::update_listing(&mut listing, store, &room, paths).unwrap();
        pending = a.pending;
    }
    assert!(pending.is_empty(), "entries wait with every parent here");
    assert_eq!(taken.len(), log.len(), "every entry taken in once");
    listing
}

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.iter().copied();
    let mut next = || bytes.next();
    let secret = RoomSecret([5; 32]);
    let room = secret.id();
    let other = RoomSecret([6; 32]);
    // The log, as its authors wrote it.
    let mut log: Vec<Verified> = Vec::new();
    let mut last: [Option<(u64, Hash)>; 3] = [None; 3];
    let n = usize::from(next().unwrap_or(8)) % (MAX_ENTRIES + 1);
    for _ in 0..n {
        let (Some(head), Some(t), Some(a), Some(b), Some(p)) =
            (next(), next(), next(), next(), next())
        else {
            break;
        };
        let author = usize::from(head % 3);
        let hashes: Vec<Hash> = log.iter().map(Verified::hash).collect();
        let mut parents = Vec::new();
        let seq = match last[author] {
            Some((s, h)) => {
                parents.push(h);
                s + 1
            }
            None => 0,
        };
        for pick in [p & 15, p >> 4] {
            if let Some(h) = hashes.get(usize::from(pick) % (hashes.len() + 3))
                && !parents.contains(h)
            {
                parents.push(*h);
            }
        }
        let op = op(head >> 2, a, b, &hashes);
        let Ok(e) = sign(
            &keys()[author],
            &secret,
            seq,
            parents,
            u64::from(t) * 1000,
            op,
        ) else {
            continue;
        };
        last[author] = Some((seq, e.hash()));
        log.push(e);
    }
    // What the check must refuse: garbage, a flipped byte, another key's
    // signature, another room's entry.
    let mut bad: Vec<Vec<u8>> = vec![data.iter().rev().take(40).copied().collect()];
    if let Some(e) = log.first() {
        let mut flipped = e.bytes().to_vec();
        let i = usize::from(next().unwrap_or(0)) * 7 % flipped.len();
        flipped[i] ^= 1 << (next().unwrap_or(0) % 8);
        bad.push(flipped);
        let entry = Entry {
            body: p2pfs_proto::codec::encode(e.body()).unwrap(),
            sig: Signature(keys()[3].sign(&signed_message(
                &room,
                &p2pfs_proto::codec::encode(e.body()).unwrap(),
            ))),
        };
        bad.push(entry.encode().unwrap());
        let foreign = sign(
            &keys()[0],
            &other,
            0,
            vec![],
            1,
            Op::Chat { text: "x".into() },
        )
        .unwrap();
        bad.push(foreign.bytes().to_vec());
    }
    for b in bad {
        assert!(verify(&secret, b).is_err(), "a bad entry passed the check");
    }
    // Two orders, with duplicates.
    let order = |next: &mut dyn FnMut() -> Option<u8>| {
        let mut o: Vec<usize> = (0..log.len()).collect();
        for i in (1..o.len()).rev() {
            let j = usize::from(next().unwrap_or(0)) % (i + 1);
            o.swap(i, j);
        }
        for _ in 0..next().unwrap_or(0) % 4 {
            if !o.is_empty() {
                let d = o[usize::from(next().unwrap_or(0)) % o.len()];
                let at = usize::from(next().unwrap_or(0)) % (o.len() + 1);
                o.insert(at, d);
            }
        }
        o
    };
    let orders = [order(&mut next), order(&mut next)];
    let cuts: [Vec<u8>; 2] = [
        (0..next().unwrap_or(2) % 6)
            .map(|_| next().unwrap_or(3))
            .collect(),
        (0..next().unwrap_or(1) % 6)
            .map(|_| next().unwrap_or(1))
            .collect(),
    ];
    let r = REPLICAS.lock().unwrap().take().unwrap_or_else(replicas);
    for s in &r.stores {
        s.remove_room(&room).unwrap();
        assert_eq!(s.room_len(&room).unwrap(), 0);
    }
    let mut listings = Vec::new();
    for i in 0..2 {
        listings.push(take_in(&r.stores[i], &secret, &log, &orders[i], &cuts[i]));
    }
    let [a, b] = &r.stores;
    // The same views, the same listing, the same chat.
    assert_eq!(
        views(a, &room),
        views(b, &room),
        "the replicas' views differ"
    );
    let ls = query::ls(a, &room).unwrap();
    assert_eq!(ls, query::ls(b, &room).unwrap(), "the listings differ");
    for l in &listings {
        assert_eq!(
            l.entries().collect::<Vec<_>>(),
            ls,
            "a listing kept up to date"
        );
    }
    let (_, chat) = query::ChatReader::open(a, &room).unwrap();
    let (_, chat_b) = query::ChatReader::open(b, &room).unwrap();
    assert_eq!(chat, chat_b, "the transcripts differ");
    let messages = log
        .iter()
        .filter(|e| matches!(e.body().op, Op::Chat { .. }))
        .count();
    assert_eq!(chat.len(), messages, "one line per message");
    for s in [a, b] {
        assert_eq!(
            query::chat(s, &room, 0, usize::MAX).unwrap().len(),
            messages
        );
    }
    assert_eq!(
        query::policy(a, &room).unwrap(),
        query::policy(b, &room).unwrap()
    );
    *REPLICAS.lock().unwrap() = Some(r);
});
