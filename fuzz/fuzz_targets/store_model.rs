//! The store checked against a model (each blob's bytes, whether it is
//! complete, which chunk groups a download has committed and which it has
//! only written, the pins) over sequences of operations chosen by the
//! input: imports of inline and file-backed sizes, drafts written at any
//! offset (committed durably or lazily, fresh or from a blob), downloads
//! fed honest streams of any ranges or streams with one flipped byte,
//! flushes, dropped download handles, pins and unpins, GC, reads of any
//! range, and the store opened again on the same database. The database is
//! in memory (`Store::open_in_memory`): a run commits dozens of times and
//! costs no fsync, so the fuzzer reaches deep sequences.
//!
//! After each operation the store agrees with the model: what it lists
//! (sizes, states, bytes present, pins), what it says each download has,
//! what reads return (the original bytes, or an error exactly when a
//! touched group is missing), an import's or a draft's hash (BLAKE3 of the
//! bytes), what GC removes (exactly the unpinned blobs no download holds);
//! a stream with a flipped byte is refused and stores nothing outside
//! what was asked; and at the end every blob verifies and reads back whole.
#![no_main]

mod shm;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Mutex,
    time::Duration,
};

use libfuzzer_sys::fuzz_target;
use p2pfs_proto::{
    Hash,
    chunk::{CHUNK_GROUP_SIZE, group_byte_range, groups, groups_covering},
};
use p2pfs_store::{
    BlobState, ChunkNum, ChunkRanges, MemoryDb, Options, PartialBlob, Store, effective_ranges,
};

const G: usize = CHUNK_GROUP_SIZE as usize;
/// The sizes around the boundaries: empty, inline, one group, the inline
/// limit, several groups, a short last group.
const SIZES: [usize; 12] = [
    0,
    1,
    1000,
    G - 1,
    G,
    G + 1,
    2 * G,
    2 * G + 1,
    3 * G + 100,
    5 * G,
    5 * G + 1000,
    6 * G + 1,
];
const PINS: [&str; 3] = ["user", "room:a", "keep:a"];
/// Most operations a run applies.
const MAX_OPS: usize = 64;

/// Which content an operation is about: one of four patterns, at a
/// boundary size or any size up to six groups.
fn pick(next: &mut impl FnMut() -> Option<u8>) -> Vec<u8> {
    let a = next().unwrap_or(0);
    let size = if a & 4 != 0 {
        let n = u16::from_le_bytes([next().unwrap_or(0), next().unwrap_or(0)]);
        usize::from(n) * 3 % (6 * G + 2)
    } else {
        SIZES[usize::from(a >> 3) % SIZES.len()]
    };
    content(a & 3, size)
}

fn content(seed: u8, size: usize) -> Vec<u8> {
    let k = u64::from(seed) * 2 + 1;
    (0..size as u64)
        .map(|i| (i.wrapping_mul(k) ^ (i >> 9) ^ u64::from(seed)) as u8)
        .collect()
}

/// A blob as the model knows it.
#[derive(Debug, Clone)]
struct Blob {
    data: Vec<u8>,
    complete: bool,
    /// Groups the database records (a partial blob with a data file).
    committed: BTreeSet<u64>,
    /// Groups a live download wrote and has not committed.
    pending: BTreeSet<u64>,
    /// The live download knows the size.
    sized: bool,
}

impl Blob {
    fn new(data: Vec<u8>) -> Self {
        Self {
            data,
            complete: false,
            committed: BTreeSet::new(),
            pending: BTreeSet::new(),
            sized: false,
        }
    }

    fn size(&self) -> u64 {
        self.data.len() as u64
    }

    /// The store has an entry for it.
    fn listed(&self) -> bool {
        self.complete || !self.committed.is_empty()
    }

    /// Small blobs are downloaded in memory and recorded only complete.
    fn inline(&self, opts: &Options) -> bool {
        self.size() <= opts.inline_max
    }

    fn present(&self) -> BTreeSet<u64> {
        &self.committed | &self.pending
    }

    fn all_groups(&self) -> BTreeSet<u64> {
        (0..groups(self.size())).collect()
    }

    fn set_complete(&mut self) {
        self.complete = true;
        self.committed.clear();
        self.pending.clear();
        self.sized = true;
    }

    /// What a commit does: pending groups recorded (with a data file), or
    /// the blob complete.
    fn commit(&mut self, opts: &Options) {
        if self.complete || !self.sized {
            return;
        }
        if self.present() == self.all_groups() {
            self.set_complete();
        } else if !self.inline(opts) {
            let p = std::mem::take(&mut self.pending);
            self.committed.extend(p);
        }
    }

    /// What dropping the last download handle leaves.
    fn dropped(&mut self, opts: &Options) {
        self.commit(opts);
        self.pending.clear();
        self.sized = self.listed();
    }
}

fn chunk_ranges(set: &BTreeSet<u64>, size: u64) -> ChunkRanges {
    let mut out = ChunkRanges::empty();
    for g in set {
        out |= ChunkRanges::from(ChunkNum(g * 16)..ChunkNum((g + 1) * 16));
    }
    out & ChunkRanges::from(ChunkNum(0)..ChunkNum::chunks(size))
}

fn group_set(ranges: &ChunkRanges, size: u64) -> BTreeSet<u64> {
    (0..groups(size))
        .filter(|g| {
            !(ranges.clone() & ChunkRanges::from(ChunkNum(g * 16)..ChunkNum((g + 1) * 16)))
                .is_empty()
        })
        .collect()
}

fn bytes_of(set: &BTreeSet<u64>, size: u64) -> u64 {
    set.iter()
        .map(|g| {
            let (s, e) = group_byte_range(*g, size);
            e - s
        })
        .sum()
}

fn b3(data: &[u8]) -> Hash {
    Hash::from_bytes(*blake3::hash(data).as_bytes())
}

/// The stores, kept from run to run (a new database costs more than a
/// run): each run starts by emptying the one under test.
struct Env {
    path: std::path::PathBuf,
    db: MemoryDb,
    opts: Options,
    store: Option<Store>,
    /// Where honest streams come from.
    src: Store,
}

static ENV: Mutex<Option<Env>> = Mutex::new(None);

impl Env {
    fn new() -> Self {
        // In memory where there is a tmpfs: the blobs' data files too.
        let dir = shm::process_dir("store_model");
        let opts = Options {
            // Commits only where the model expects them: at completion, on
            // flush and when a download's last handle goes.
            commit_bytes: u64::MAX,
            commit_interval: Duration::from_secs(1 << 30),
            ..Options::default()
        };
        let db = MemoryDb::new();
        let path = dir.join("store");
        let store = Store::open_in_memory(&path, &db, opts.clone()).unwrap();
        let src =
            Store::open_in_memory(dir.join("src"), &MemoryDb::new(), Options::default()).unwrap();
        Self {
            path,
            db,
            opts,
            store: Some(store),
            src,
        }
    }

    /// Empties the store under test (every pin removed, then GC), and the
    /// source when it has grown.
    fn reset(&self) {
        let store = self.store.as_ref().unwrap();
        for name in PINS {
            store
                .set_pins(&store.pinned(name).unwrap(), name, false)
                .unwrap();
        }
        store.gc().unwrap();
        assert!(store.list().unwrap().is_empty());
        if self.src.list().unwrap().len() > 64 {
            self.src.gc().unwrap();
        }
    }
}

struct World {
    env: Env,
    blobs: BTreeMap<Hash, Blob>,
    pins: BTreeSet<(Hash, String)>,
    live: HashMap<Hash, PartialBlob>,
}

impl World {
    fn store(&self) -> &Store {
        self.env.store.as_ref().unwrap()
    }

    fn blob(&mut self, data: Vec<u8>) -> Hash {
        let h = b3(&data);
        self.blobs.entry(h).or_insert_with(|| Blob::new(data));
        h
    }

    fn imported(&mut self, h: Hash, pin: Option<&str>, new: bool) {
        let b = self.blobs.get_mut(&h).unwrap();
        assert_eq!(new, !b.complete, "an import of {h} says new={new}");
        b.set_complete();
        if let Some(p) = pin {
            self.pins.insert((h, p.to_string()));
        }
    }

    fn drop_live(&mut self, h: &Hash) {
        if let Some(p) = self.live.remove(h) {
            drop(p);
            let opts = self.env.opts.clone();
            self.blobs.get_mut(h).unwrap().dropped(&opts);
        }
    }

    /// What the store should list.
    fn expected_list(&self) -> Vec<(Hash, u64, BlobState, u64, Vec<String>)> {
        self.blobs
            .iter()
            .filter(|(_, b)| b.listed())
            .map(|(h, b)| {
                let (state, present) = if b.complete {
                    (BlobState::Complete, b.size())
                } else {
                    (BlobState::Partial, bytes_of(&b.committed, b.size()))
                };
                let pins = self
                    .pins
                    .iter()
                    .filter(|(p, _)| p == h)
                    .map(|(_, n)| n.clone())
                    .collect();
                (*h, b.size(), state, present, pins)
            })
            .collect()
    }

    fn check(&self) {
        let store = self.store();
        let got: Vec<_> = store
            .list()
            .unwrap()
            .into_iter()
            .map(|i| (i.hash, i.size, i.state, i.present, i.pins))
            .collect();
        assert_eq!(got, self.expected_list(), "the store's list");
        let usage: u64 = self.expected_list().iter().map(|e| e.3).sum();
        assert_eq!(store.usage().unwrap(), usage, "usage");
        for (h, b) in &self.blobs {
            let want = if let Some(p) = self.live.get(h) {
                assert_eq!(p.is_complete(), b.complete, "live {h} complete");
                if b.sized {
                    assert_eq!(p.size(), Some(b.size()), "live {h} size");
                    let have = if b.complete {
                        chunk_ranges(&b.all_groups(), b.size())
                    } else {
                        chunk_ranges(&b.present(), b.size())
                    };
                    assert_eq!(p.have(), Some(have.clone()), "live {h} have");
                    Some((b.size(), have))
                } else {
                    assert_eq!(p.size(), None, "live {h} size");
                    None
                }
            } else if b.complete {
                Some((b.size(), chunk_ranges(&b.all_groups(), b.size())))
            } else if b.listed() {
                Some((b.size(), chunk_ranges(&b.committed, b.size())))
            } else {
                None
            };
            assert_eq!(store.have(h).unwrap(), want, "have of {h}");
        }
    }

    /// What reading `len` bytes at `offset` of `h` should give.
    fn expect_read(&self, h: &Hash, offset: u64, len: u64) -> Option<Vec<u8>> {
        let b = self.blobs.get(h)?;
        let size = b.size();
        let slice = || {
            let end = size.min(offset.saturating_add(len));
            if offset >= end {
                Vec::new()
            } else {
                b.data[offset as usize..end as usize].to_vec()
            }
        };
        if b.complete {
            return Some(slice());
        }
        let (known, present) = if self.live.contains_key(h) {
            (b.sized, b.present())
        } else if b.listed() {
            (true, b.committed.clone())
        } else {
            return None;
        };
        if !known {
            return None;
        }
        let end = size.min(offset.saturating_add(len));
        if offset >= end {
            return Some(Vec::new());
        }
        let (first, last) = groups_covering(offset, end);
        (first..last).all(|g| present.contains(&g)).then(slice)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.iter().copied();
    let mut next = || bytes.next();
    let env = ENV.lock().unwrap().take().unwrap_or_else(Env::new);
    env.reset();
    let mut w = World {
        env,
        blobs: BTreeMap::new(),
        pins: BTreeSet::new(),
        live: HashMap::new(),
    };
    for _ in 0..MAX_OPS {
        let Some(op) = next() else { break };
        // A hash the model knows, or one it does not.
        let known = |w: &World, k: u8| -> Hash {
            let hs: Vec<Hash> = w.blobs.keys().copied().collect();
            if hs.is_empty() || k == 255 {
                Hash::of(&[k])
            } else {
                hs[usize::from(k) % hs.len()]
            }
        };
        'op: {
            match op % 14 {
                // Import bytes.
                0 | 1 => {
                    let d = pick(&mut next);
                    let pin = (op & 0x10 != 0).then(|| PINS[usize::from(op >> 5) % 3]);
                    let h = w.blob(d.clone());
                    let imp = w.store().import_bytes(&d, pin).unwrap();
                    assert_eq!(imp.hash, h, "an import's hash is BLAKE3 of its bytes");
                    assert_eq!(imp.size, d.len() as u64);
                    w.imported(h, pin, imp.new);
                }
                // A draft: writes at any offset, a truncation, then a commit.
                2 => {
                    let from = known(&w, next().unwrap_or(0));
                    let mut buf = Vec::new();
                    let mut draft = match w.blobs.get(&from) {
                        Some(b) if b.complete && op & 0x10 != 0 => {
                            buf = b.data.clone();
                            w.store().draft_from(&from).unwrap()
                        }
                        _ => w.store().draft().unwrap(),
                    };
                    for _ in 0..next().unwrap_or(1) % 5 {
                        let off = usize::from(next().unwrap_or(0)) * 397 % (5 * G);
                        let len = usize::from(next().unwrap_or(0)) * 131 % (2 * G);
                        let fill = next().unwrap_or(7);
                        let chunk: Vec<u8> = (0..len).map(|i| fill.wrapping_add(i as u8)).collect();
                        draft.write_at(off as u64, &chunk).unwrap();
                        // (No bytes: nothing changes, not even the length.)
                        if len > 0 {
                            if buf.len() < off + len {
                                buf.resize(off + len, 0);
                            }
                            buf[off..off + len].copy_from_slice(&chunk);
                        }
                    }
                    if op & 0x20 != 0 {
                        let len = usize::from(next().unwrap_or(0)) * 503 % (5 * G);
                        draft.set_len(len as u64).unwrap();
                        buf.resize(len, 0);
                    }
                    assert_eq!(draft.len(), buf.len() as u64);
                    let off = usize::from(next().unwrap_or(0)) * 211 % (buf.len() + 1);
                    let mut got = vec![0u8; 3000];
                    let n = draft.read_at(off as u64, &mut got).unwrap();
                    let end = buf.len().min(off + 3000);
                    assert_eq!(&got[..n], &buf[off..end], "a draft reads back");
                    let pin = (op & 0x40 != 0).then_some("user");
                    let imp = if op & 0x80 != 0 {
                        draft.commit_lazy(pin).unwrap()
                    } else {
                        draft.commit(pin).unwrap()
                    };
                    let h = w.blob(buf.clone());
                    assert_eq!(imp.hash, h, "a draft's hash is BLAKE3 of its bytes");
                    w.imported(h, pin, imp.new);
                }
                // Start (or join) a download.
                3 => {
                    let d = pick(&mut next);
                    let h = w.blob(d);
                    if !w.live.contains_key(&h) {
                        let p = w.store().partial(h).unwrap();
                        let b = w.blobs.get_mut(&h).unwrap();
                        b.sized = b.listed();
                        w.live.insert(h, p);
                    }
                }
                // Feed a download an honest stream of some ranges, maybe with a
                // byte flipped.
                4 | 5 => {
                    let hs: Vec<Hash> = w.live.keys().copied().collect();
                    if hs.is_empty() {
                        break 'op;
                    }
                    let h = hs[usize::from(next().unwrap_or(0)) % hs.len()];
                    let a = u64::from(next().unwrap_or(0));
                    let ranges = match op >> 4 & 3 {
                        // The size proof.
                        0 => ChunkRanges::from(ChunkNum(u64::MAX / 2)..),
                        // Some groups.
                        1 => ChunkRanges::from(
                            ChunkNum((a % 8) * 16)..ChunkNum((a % 8 + 1 + a / 8 % 4) * 16),
                        ),
                        // Any chunks, the tail too sometimes.
                        2 => {
                            let b = u64::from(next().unwrap_or(0));
                            ChunkRanges::from(ChunkNum(a)..ChunkNum(a + b + 1))
                                | ChunkRanges::from(ChunkNum(a * 3 + 200)..)
                        }
                        _ => ChunkRanges::all(),
                    };
                    let blob = w.blobs[&h].clone();
                    let src = &w.env.src;
                    if src.info(&h).unwrap().is_none() {
                        src.import_bytes(&blob.data, None).unwrap();
                    }
                    let mut stream = Vec::new();
                    let sent = src.encode_ranges(&h, &ranges, &mut stream).unwrap();
                    let size = blob.size();
                    assert_eq!(sent, effective_ranges(&ranges, size));
                    let flip = (op & 0x40 != 0 && !stream.is_empty()).then(|| {
                        let i = usize::from(next().unwrap_or(0)) * 257 % stream.len();
                        stream[i] ^= 1 << (next().unwrap_or(0) % 8);
                        i
                    });
                    let p = w.live[&h].clone();
                    let r = p.ingest(&ranges, &stream[..]);
                    let opts = w.env.opts.clone();
                    let b = w.blobs.get_mut(&h).unwrap();
                    if b.complete {
                        assert!(r.unwrap().complete, "a complete blob stays complete");
                        break 'op;
                    }
                    if let Some(i) = flip {
                        assert!(
                            r.is_err(),
                            "a stream with byte {i} flipped was taken: {r:?}"
                        );
                        let before = b.present();
                        let now = match p.have() {
                            Some(have) => group_set(&have, size),
                            None => BTreeSet::new(),
                        };
                        assert!(before.is_subset(&now), "a bad stream lost groups");
                        let asked = group_set(&sent, size);
                        assert!(
                            now.difference(&before).all(|g| asked.contains(g)),
                            "a bad stream stored groups it did not carry"
                        );
                        if !b.sized && p.size().is_some() {
                            b.sized = true;
                        }
                        b.pending = &now - &b.committed;
                        if p.is_complete() {
                            b.set_complete();
                        }
                        break 'op;
                    }
                    if size == 0 {
                        assert!(r.unwrap().complete, "the empty blob");
                        b.set_complete();
                        break 'op;
                    }
                    let last = ChunkRanges::from(
                        ChunkNum((groups(size) - 1) * 16)..ChunkNum::chunks(size),
                    );
                    if !b.sized && sent != last {
                        assert!(r.is_err(), "data taken before the size was proven");
                        break 'op;
                    }
                    let report = r.unwrap();
                    let new: BTreeSet<u64> = &group_set(&sent, size) - &b.present();
                    assert_eq!(report.new_groups, new.len() as u64, "new groups");
                    assert_eq!(report.new_bytes, bytes_of(&new, size), "new bytes");
                    b.sized = true;
                    b.pending.extend(new);
                    if b.present() == b.all_groups() {
                        b.commit(&opts);
                    }
                    assert_eq!(report.complete, b.complete);
                }
                // Flush a download.
                6 => {
                    let hs: Vec<Hash> = w.live.keys().copied().collect();
                    if let Some(h) = hs.get(usize::from(next().unwrap_or(0)) % hs.len().max(1)) {
                        w.live[h].flush().unwrap();
                        let opts = w.env.opts.clone();
                        w.blobs.get_mut(h).unwrap().commit(&opts);
                    }
                }
                // Drop a download's handle.
                7 => {
                    let hs: Vec<Hash> = w.live.keys().copied().collect();
                    if let Some(h) = hs.get(usize::from(next().unwrap_or(0)) % hs.len().max(1)) {
                        w.drop_live(&h.clone());
                    }
                }
                // Pin.
                8 => {
                    let h = known(&w, next().unwrap_or(0));
                    let name = PINS[usize::from(op >> 4) % 3];
                    let present = w.store().pin(&h, name).unwrap();
                    assert_eq!(
                        present,
                        w.blobs.get(&h).is_some_and(Blob::listed),
                        "pin of {h}"
                    );
                    w.pins.insert((h, name.to_string()));
                    assert!(w.store().pinned(name).unwrap().contains(&h));
                }
                // Unpin.
                9 => {
                    let h = known(&w, next().unwrap_or(0));
                    let name = PINS[usize::from(op >> 4) % 3];
                    let existed = w.store().unpin(&h, name).unwrap();
                    assert_eq!(
                        existed,
                        w.pins.remove(&(h, name.to_string())),
                        "unpin of {h}"
                    );
                }
                // Collect: exactly the unpinned blobs no download holds go.
                10 => {
                    let report = w.store().gc().unwrap();
                    let mut removed = report.removed.clone();
                    removed.sort();
                    let doomed: Vec<(Hash, u64)> = w
                        .blobs
                        .iter()
                        .filter(|(h, b)| {
                            b.listed()
                                && !w.live.contains_key(*h)
                                && !w.pins.iter().any(|(p, _)| p == *h)
                        })
                        .map(|(h, b)| (*h, b.size()))
                        .collect();
                    assert_eq!(removed, doomed, "what GC removed");
                    for (h, _) in doomed {
                        let b = w.blobs.get_mut(&h).unwrap();
                        b.complete = false;
                        b.committed.clear();
                        b.sized = false;
                    }
                }
                // Read any range.
                11 | 12 => {
                    let h = known(&w, next().unwrap_or(0));
                    let size = w.blobs.get(&h).map_or(100, Blob::size);
                    let offset = u64::from(next().unwrap_or(0)) * 613 % (size + 2);
                    let len = u64::from(next().unwrap_or(0)) * 389 % (2 * CHUNK_GROUP_SIZE + 3);
                    let mut buf = vec![0u8; len as usize];
                    let got = w
                        .store()
                        .read_at(&h, offset, &mut buf)
                        .ok()
                        .map(|n| buf[..n].to_vec());
                    assert_eq!(
                        got,
                        w.expect_read(&h, offset, len),
                        "read {len} at {offset} of {h}"
                    );
                }
                // Open the store again (every download handle dropped first).
                _ => {
                    let hs: Vec<Hash> = w.live.keys().copied().collect();
                    for h in hs {
                        w.drop_live(&h);
                    }
                    let env = &mut w.env;
                    env.store = None;
                    env.store =
                        Some(Store::open_in_memory(&env.path, &env.db, env.opts.clone()).unwrap());
                }
            }
        }
        w.check();
    }
    // Everything verifies and reads back whole.
    let hs: Vec<Hash> = w.live.keys().copied().collect();
    for h in hs {
        w.drop_live(&h);
    }
    w.check();
    for (h, b) in &w.blobs {
        if b.listed() {
            w.store().verify(h).unwrap();
        }
        if b.complete {
            let mut out = Vec::new();
            w.store().reader(h).unwrap().copy_to(&mut out).unwrap();
            assert!(out == b.data, "{h} reads back whole");
        }
    }
    *ENV.lock().unwrap() = Some(w.env);
});
