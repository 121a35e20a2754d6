//! The blob protocol's serving path fed the requests a peer sends: any
//! chunk ranges (empty, overlapping the end, far past it, up to
//! `u64::MAX`) of blobs of boundary sizes that the provider holds
//! complete (inline or in a file), partly (committed groups), while
//! downloading them (a live download's groups, served from its serving
//! view, the size proven or not). The provider works out what it sends
//! (`transfer::provider::sent_ranges`) and encodes it from its store; the
//! requester checks the announcement (`transfer::request::within_request`)
//! and ingests the stream into its own store, knowing the size already or
//! not. The stores' databases are in memory.
//!
//! Asserted: no panic; ranges survive the wire (`to_spec`/`to_chunks`);
//! what is sent is, group by group, exactly what was asked (rounded out to
//! whole 16 KiB groups, anything at or past the end standing for the last
//! group) and held, never past the end; encoding it never fails and
//! encodes just that; encoding what is asked but not held fails before a
//! byte is written; a blob the provider cannot serve is not found; the
//! requester accepts the announcement and the stream, stores the groups
//! sent (a requester that does not know the size takes only a size proof,
//! and refuses the rest), and what it stores reads back as the original.
#![no_main]

mod shm;

use std::{collections::BTreeSet, sync::Mutex};

use libfuzzer_sys::fuzz_target;
use p2pfs_proto::{
    Hash, RangeSpec,
    chunk::{CHUNK_GROUP_SIZE, group_byte_range, groups},
};
use p2pfs_store::{ChunkNum, ChunkRanges, MemoryDb, Options, PartialBlob, Store, StoreError};
use p2pfs_swarm::fuzzing::transfer::{sent_ranges, to_chunks, to_spec, within_request};

const G: u64 = CHUNK_GROUP_SIZE;
const SIZES: [u64; 10] = [
    0,
    1,
    1000,
    G - 1,
    G,
    G + 1,
    2 * G + 1,
    3 * G + 100,
    5 * G,
    7 * G + 1000,
];

fn content(size: u64) -> Vec<u8> {
    (0..size).map(|i| (i * 7 + i / 1021) as u8).collect()
}

struct Env {
    /// Every blob, complete: where honest streams come from.
    full: Store,
    /// The provider and the requester, emptied at each run.
    provider: Store,
    requester: Store,
    blobs: Vec<(Hash, Vec<u8>)>,
}

static ENV: Mutex<Option<Env>> = Mutex::new(None);

fn env() -> Env {
    let dir = shm::process_dir("blob_serve");
    let open = |name: &str| {
        Store::open_in_memory(dir.join(name), &MemoryDb::new(), Options::default()).unwrap()
    };
    let (full, provider, requester) = (open("full"), open("provider"), open("requester"));
    let blobs = SIZES
        .iter()
        .map(|s| {
            let data = content(*s);
            let hash = full.import_bytes(&data, Some("user")).unwrap().hash;
            (hash, data)
        })
        .collect();
    Env {
        full,
        provider,
        requester,
        blobs,
    }
}

fn group_chunks(g: u64) -> ChunkRanges {
    ChunkRanges::from(ChunkNum(g * 16)..ChunkNum((g + 1) * 16))
}

/// The groups a set of chunk ranges touches, in a blob of `size` bytes.
fn groups_of(r: &ChunkRanges, size: u64) -> BTreeSet<u64> {
    (0..groups(size))
        .filter(|g| !(r.clone() & group_chunks(*g)).is_empty())
        .collect()
}

fn chunks_of(set: &BTreeSet<u64>, size: u64) -> ChunkRanges {
    let mut out = ChunkRanges::empty();
    for g in set {
        out |= group_chunks(*g);
    }
    out & ChunkRanges::from(ChunkNum(0)..ChunkNum::chunks(size))
}

/// Feeds `p` the groups `set` of `hash` from `full`, the size proof first.
fn download(full: &Store, p: &PartialBlob, hash: &Hash, set: &BTreeSet<u64>) {
    let feed = |r: &ChunkRanges| {
        let mut s = Vec::new();
        full.encode_ranges(hash, r, &mut s).unwrap();
        p.ingest(r, &s[..]).unwrap();
    };
    feed(&ChunkRanges::from(ChunkNum(u64::MAX / 2)..));
    for g in set {
        feed(&group_chunks(*g));
    }
}

fn empty(store: &Store) {
    let pinned = store.pinned("user").unwrap();
    store.set_pins(&pinned, "user", false).unwrap();
    store.gc().unwrap();
}

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.iter().copied();
    let mut next = || bytes.next();
    let e = ENV.lock().unwrap().take().unwrap_or_else(env);
    empty(&e.provider);
    empty(&e.requester);
    let (hash, blob) = e.blobs[usize::from(next().unwrap_or(0)) % SIZES.len()].clone();
    let size = blob.len() as u64;
    // What the provider has.
    let mode = next().unwrap_or(0);
    let mask = u16::from_le_bytes([next().unwrap_or(0xff), next().unwrap_or(0)]);
    let picked: BTreeSet<u64> = (0..groups(size)).filter(|g| mask >> g & 1 == 1).collect();
    let mut live = None;
    // The groups it can serve, if it can serve anything.
    let held: Option<BTreeSet<u64>> = match mode % 4 {
        0 => {
            e.provider.import_bytes(&blob, None).unwrap();
            Some((0..groups(size)).collect())
        }
        // A download: its groups, kept (with a data file) or not.
        1 | 2 => {
            let p = e.provider.partial(hash).unwrap();
            download(&e.full, &p, &hash, &picked);
            let mut have: BTreeSet<u64> = picked.clone();
            have.extend(groups(size).checked_sub(1));
            if mode % 4 == 1 {
                drop(p);
                // Small blobs are recorded only complete.
                let complete = have.len() as u64 == groups(size);
                (complete || size > Options::default().inline_max).then_some(have)
            } else {
                live = Some(p);
                Some(have)
            }
        }
        // A download whose size is not proven yet: nothing to serve.
        _ => {
            live = Some(e.provider.partial(hash).unwrap());
            None
        }
    };
    // The request: boundaries in chunks, some far past the end.
    let mut boundaries = Vec::new();
    let mut at = 0u64;
    for _ in 0..next().unwrap_or(2) % 7 {
        let b = next().unwrap_or(1);
        at = match b {
            0xff => u64::MAX,
            0xfe => at.max(u64::MAX / 2) + 1,
            _ => at.saturating_add(u64::from(b % 120) + 1),
        };
        if boundaries.last().is_some_and(|l| *l >= at) {
            break;
        }
        boundaries.push(at);
    }
    let spec = RangeSpec::new(boundaries.clone()).unwrap();
    let asked = to_chunks(&spec);
    assert_eq!(to_spec(&asked), spec, "ranges across the wire");
    let Some((got_size, have)) = e.provider.have(&hash).unwrap() else {
        assert!(held.is_none(), "a blob it holds not found");
        drop(live);
        *ENV.lock().unwrap() = Some(e);
        return;
    };
    let held = held.expect("a blob it cannot serve found");
    assert_eq!(got_size, size);
    assert_eq!(
        have,
        chunks_of(&held, size),
        "what the provider says it has"
    );
    // What is sent, group by group: asked (a boundary at or past the end
    // asks for the last group) and held.
    let sent = sent_ranges(&spec, size, &have);
    let past_end = !(asked.clone() & ChunkRanges::from(ChunkNum::chunks(size)..)).is_empty();
    let want: BTreeSet<u64> = held
        .iter()
        .copied()
        .filter(|g| {
            !(asked.clone() & group_chunks(*g)).is_empty() || (past_end && *g + 1 == groups(size))
        })
        .collect();
    assert_eq!(
        sent,
        chunks_of(&want, size),
        "what is sent for {boundaries:?}"
    );
    assert_eq!(to_chunks(&to_spec(&sent)), sent);
    // The provider encodes exactly that.
    let mut stream = Vec::new();
    let encoded = e.provider.encode_ranges(&hash, &sent, &mut stream).unwrap();
    assert_eq!(encoded, sent);
    // Asking for what it lacks fails before a byte is written.
    let all_asked = sent_ranges(&spec, size, &ChunkRanges::all());
    if !groups_of(&all_asked, size).is_subset(&held) {
        let mut none = Vec::new();
        let r = e.provider.encode_ranges(&hash, &all_asked, &mut none);
        assert!(matches!(r, Err(StoreError::NotPresent { .. })), "{r:?}");
        assert!(none.is_empty(), "bytes written for ranges it lacks");
    }
    // The requester, knowing the size already or not.
    let r = e.requester.partial(hash).unwrap();
    let knows = mode & 4 != 0;
    let mut before = BTreeSet::new();
    if knows {
        download(&e.full, &r, &hash, &BTreeSet::new());
        before.extend(groups(size).checked_sub(1));
    }
    assert!(
        within_request(&sent, &asked, r.size()),
        "an honest announcement refused"
    );
    let last =
        ChunkRanges::from(ChunkNum(groups(size).saturating_sub(1) * 16)..ChunkNum::chunks(size));
    let result = r.ingest(&sent, &stream[..]);
    let mut stored = before.clone();
    if size == 0 || knows || sent == last {
        let report = result.unwrap();
        stored.extend(groups_of(&sent, size));
        assert_eq!(report.complete, stored.len() as u64 == groups(size));
    } else {
        assert!(result.is_err(), "data taken before the size was proven");
    }
    match r.have() {
        Some(h) => assert_eq!(groups_of(&h, size), stored, "what the requester stored"),
        None => assert!(stored.is_empty() && size > 0),
    }
    for g in stored {
        let (s, end) = group_byte_range(g, size);
        let mut buf = vec![0u8; (end - s) as usize];
        assert_eq!(r.read_at(s, &mut buf).unwrap(), buf.len());
        assert!(
            buf[..] == blob[s as usize..end as usize],
            "group {g} reads back"
        );
    }
    drop(r);
    drop(live);
    *ENV.lock().unwrap() = Some(e);
});
