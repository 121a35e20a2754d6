//! Random sequences of writes, removals (by the owner and by moderators)
//! and partitions, on members that each keep a real log in a real store,
//! syncing by the rules of §8.4 (what the other lacks, verified, then
//! accepted): once every remaining member has synced, they agree on the
//! tree, the moderation and the current epoch; its key is wrapped for
//! every remaining member and no removed one; and no removed member's
//! later entry is anywhere.

use std::collections::BTreeSet;

use p2pfs_proto::{
    Hash, NodeId, RoomId, RoomSecret,
    moderation::{Epoch, Removal, Role},
    room::{Meta, Op},
};
use p2pfs_store::Store;

use super::{entry, log, moderation::Moderation, query, view, wrap};
use crate::identity::SecretKey;

struct Member {
    key: SecretKey,
    store: Store,
    _dir: tempfile::TempDir,
}

struct Sim {
    secret: RoomSecret,
    id: RoomId,
    members: Vec<Member>,
    /// The side of the partition each member is on (all 0: healed).
    side: Vec<u8>,
    rng: fastrand::Rng,
}

fn temp() -> tempfile::TempDir {
    // (On a memory file system when there is one: a log commits often.)
    match std::path::Path::new("/dev/shm").is_dir() {
        true => tempfile::tempdir_in("/dev/shm").expect("a temp dir"),
        false => tempfile::tempdir().expect("a temp dir"),
    }
}

impl Sim {
    fn new(n: usize, seed: u64) -> Self {
        let members: Vec<Member> = (0..n)
            .map(|i| {
                let dir = temp();
                let store = Store::open(dir.path()).expect("a store");
                Member {
                    key: SecretKey::from_seed([i as u8 + 1; 32]).expect("a key"),
                    store,
                    _dir: dir,
                }
            })
            .collect();
        let owner = members[0].key.public();
        let secret = RoomSecret::for_owner(&owner, &[seed as u8; 32]);
        let mut sim = Sim {
            id: secret.id(),
            secret,
            side: vec![0; n],
            members,
            rng: fastrand::Rng::with_seed(seed),
        };
        sim.write(
            0,
            Op::Meta(Meta::Owner {
                nonce: [seed as u8; 32],
            }),
        );
        // Everyone joins: syncs with the owner, then says its name.
        for i in 1..n {
            sim.sync(0, i);
            sim.write(i, Op::Meta(Meta::MemberName(format!("m{i}"))));
            sim.sync(0, i);
        }
        // Members 1 and 2 are moderators.
        for m in [1, 2] {
            let member = sim.members[m].key.public();
            sim.write(
                0,
                Op::Meta(Meta::Role {
                    member,
                    role: Role::Moderator,
                }),
            );
        }
        for i in 1..n {
            sim.sync(0, i);
        }
        sim
    }

    fn moderation(&self, i: usize) -> Moderation {
        let t = &self.members[i].store;
        match t.room_view_get(&self.id, view::MODERATION).expect("views") {
            Some(b) => p2pfs_proto::codec::decode(&b).expect("moderation"),
            None => Moderation::default(),
        }
    }

    fn me(&self, i: usize) -> NodeId {
        self.members[i].key.public()
    }

    /// Member `i` writes `op` (refused quietly if its log refuses it: a
    /// removed member that knows it, say).
    fn write(&mut self, i: usize, op: Op) -> bool {
        let m = &self.members[i];
        log::author_all(&m.store, &m.key, &self.secret, vec![op]).is_ok()
    }

    /// `to` takes in what `from` has and it lacks, as sync sends it.
    fn pull(&self, from: usize, to: usize) {
        let have = self.members[to].store.room_have(&self.id).expect("have");
        let bytes = self.members[from]
            .store
            .room_entries_after(&self.id, &have, usize::MAX)
            .expect("entries");
        let verified = bytes
            .into_iter()
            .map(|b| entry::verify(&self.secret, &self.id, b).expect("a valid entry"))
            .collect();
        let out = log::accept(&self.members[to].store, &self.id, verified).expect("accept");
        assert!(out.rejected.is_empty(), "{:?}", out.rejected);
        assert!(out.pending.is_empty(), "entries left waiting for parents");
        if out.cut_applied {
            log::rebuild_after_cut(&self.members[to].store, &self.id).expect("rebuild");
        }
        log::catch_up_views(&self.members[to].store, &self.id).expect("views");
    }

    /// A session between `a` and `b`, if the handshake would let it
    /// happen: neither knows the other was removed.
    fn sync(&mut self, a: usize, b: usize) {
        let (ma, mb) = (self.moderation(a), self.moderation(b));
        if ma.is_removed(&self.me(b)) || mb.is_removed(&self.me(a)) {
            return;
        }
        self.pull(a, b);
        self.pull(b, a);
    }

    /// Member `i` writes a new epoch removing `removed` (none: a merge).
    fn epoch(&mut self, i: usize, removed: Vec<Removal>) -> bool {
        let m = self.moderation(i);
        let mut candidates: Vec<NodeId> = self.members[i]
            .store
            .room_have(&self.id)
            .expect("have")
            .into_iter()
            .map(|(a, _)| a)
            .collect();
        candidates.push(self.me(i));
        let key: [u8; 32] = std::array::from_fn(|_| self.rng.u8(..));
        let wraps = m
            .recipients(candidates)
            .into_iter()
            .filter(|c| !removed.iter().any(|r| r.member == *c))
            .map(|c| wrap::seal(&self.id, &c, &key).expect("seal"))
            .collect();
        self.write(
            i,
            Op::Epoch(Epoch {
                removed,
                after: m.heads(),
                wraps,
            }),
        )
    }

    /// One random step.
    fn step(&mut self) {
        let n = self.members.len();
        let i = self.rng.usize(..n);
        match self.rng.u8(..10) {
            0..=3 => {
                let k = self.rng.u8(..8);
                let path = format!("f{k}");
                let replaces = query::live_entries(&self.members[i].store, &self.id, &path)
                    .unwrap_or_default();
                let op = Op::Put {
                    hash: Hash::of(&[i as u8, k, self.rng.u8(..)]),
                    path,
                    size: 1,
                    exec: false,
                    mtime: 1,
                    replaces,
                };
                self.write(i, op);
            }
            4 => {
                self.write(
                    i,
                    Op::Chat {
                        text: format!("hi from {i}"),
                    },
                );
            }
            5 => {
                // A removal, by whoever may (as its node would check).
                let m = self.moderation(i);
                let me = self.me(i);
                let role = m.role(&me);
                let target = self.rng.usize(1..n);
                let t = self.me(target);
                if role == Role::Member
                    || target == i
                    || m.is_removed(&t)
                    || m.is_removed(&me)
                    || (role != Role::Owner && m.role(&t) == Role::Moderator)
                {
                    return;
                }
                let keep = self.members[i]
                    .store
                    .room_have(&self.id)
                    .expect("have")
                    .into_iter()
                    .find(|(a, _)| *a == t)
                    .map_or(0, |(_, k)| k);
                self.epoch(i, vec![Removal { member: t, keep }]);
            }
            6 => {
                // A partition in two.
                for s in self.side.iter_mut() {
                    *s = self.rng.u8(..2);
                }
            }
            7 => self.side.iter_mut().for_each(|s| *s = 0),
            _ => self.round(),
        }
    }

    /// Every pair on the same side syncs once, in a random order; then
    /// the merges the rules ask for are written (by a head's author or the
    /// owner, as p2pfs does at once).
    fn round(&mut self) {
        let n = self.members.len();
        let mut pairs: Vec<(usize, usize)> = (0..n)
            .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
            .collect();
        self.rng.shuffle(&mut pairs);
        for (a, b) in pairs {
            if self.side[a] == self.side[b] {
                self.sync(a, b);
            }
        }
        for i in 0..n {
            let m = self.moderation(i);
            let me = self.me(i);
            if !m.needs_merge() || m.is_removed(&me) {
                continue;
            }
            // (The others' wait is a round here; the owner stands for them,
            // in case the head's author was removed.)
            let head_author_gone = m
                .heads()
                .last()
                .and_then(|h| m.epochs.get(h))
                .is_some_and(|e| m.is_removed(&e.author));
            if super::epochs::merges_first(&m, &me) || (head_author_gone && m.owner == Some(me)) {
                self.epoch(i, Vec::new());
            }
        }
    }
}

fn check_converged(sim: &mut Sim, seed: u64) {
    sim.side.iter_mut().for_each(|s| *s = 0);
    for _ in 0..12 {
        sim.round();
    }
    let n = sim.members.len();
    let owner_view = sim.moderation(0);
    let removed: BTreeSet<NodeId> = owner_view.removed.keys().copied().collect();
    let remaining: Vec<usize> = (0..n).filter(|i| !removed.contains(&sim.me(*i))).collect();
    let first = remaining[0];
    let m0 = sim.moderation(first);
    let tree0 = query::ls(&sim.members[first].store, &sim.id).expect("ls");
    assert!(!m0.needs_merge(), "seed {seed}: still crossed");
    let current = m0.current();
    for &i in &remaining[1..] {
        let m = sim.moderation(i);
        assert_eq!(m, m0, "seed {seed}: member {i}'s moderation differs");
        let tree = query::ls(&sim.members[i].store, &sim.id).expect("ls");
        assert_eq!(tree, tree0, "seed {seed}: member {i}'s tree differs");
    }
    if let Some(c) = current {
        let e = &m0.epochs[&c];
        for &i in &remaining {
            assert!(
                e.recipients.contains(&sim.me(i)),
                "seed {seed}: member {i} lacks the current key"
            );
        }
        for r in &removed {
            assert!(
                !e.recipients.contains(r),
                "seed {seed}: a removed member has the key"
            );
        }
    }
    // Every epoch written knowing of a removal leaves that member out.
    for e in m0.epochs.values() {
        let known = ancestors(&m0, &e.after);
        for r in known.iter().flat_map(|h| &m0.epochs[h].removed) {
            assert!(
                !e.recipients.contains(&r.member),
                "seed {seed}: an epoch after a removal wraps for the removed"
            );
        }
    }
}

/// The epochs `heads` follow, themselves included.
fn ancestors(m: &Moderation, heads: &[Hash]) -> BTreeSet<Hash> {
    let mut out = BTreeSet::new();
    let mut todo: Vec<Hash> = heads.to_vec();
    while let Some(h) = todo.pop() {
        if out.insert(h)
            && let Some(e) = m.epochs.get(&h)
        {
            todo.extend(e.after.iter().copied());
        }
    }
    out
}

#[test]
fn random_writes_removals_and_partitions_converge() {
    for seed in 0..20 {
        let mut sim = Sim::new(6, seed);
        for _ in 0..80 {
            sim.step();
        }
        check_converged(&mut sim, seed);
    }
}

#[test]
fn removals_that_cross_in_a_partition_merge_after_the_heal() {
    let mut sim = Sim::new(5, 99);
    // {0, 1, 3} | {2, 4}: moderator 1 removes 4, moderator 2 removes 3.
    sim.side = vec![0, 0, 1, 0, 1];
    let (three, four) = (sim.me(3), sim.me(4));
    assert!(sim.epoch(
        1,
        vec![Removal {
            member: four,
            keep: 1
        }]
    ));
    assert!(sim.epoch(
        2,
        vec![Removal {
            member: three,
            keep: 1
        }]
    ));
    for (i, name) in [(3, "x3"), (4, "x4")] {
        sim.write(
            i,
            Op::Chat {
                text: format!("{i} after"),
            },
        );
        sim.write(
            i,
            Op::Put {
                path: name.into(),
                hash: Hash::of(name.as_bytes()),
                size: 1,
                exec: false,
                mtime: 1,
                replaces: Vec::new(),
            },
        );
    }
    for _ in 0..2 {
        sim.round();
    }
    // Each side has one epoch, and it is safe there.
    assert!(!sim.moderation(0).needs_merge());
    assert!(!sim.moderation(2).needs_merge());
    check_converged(&mut sim, 99);
    let m = sim.moderation(0);
    assert!(m.is_removed(&three) && m.is_removed(&four));
    assert_eq!(m.epochs.len(), 3, "two removals and one merge");
    // What they wrote after their removals is in no tree (the trees are
    // the same everywhere); a chat line the other side showed before it
    // learnt of the removal stays shown there, and only there.
    let tree = query::ls(&sim.members[0].store, &sim.id).expect("ls");
    assert!(
        tree.iter().all(|f| f.path != "x3" && f.path != "x4"),
        "{tree:?}"
    );
    let chat = |i: usize| {
        query::chat(&sim.members[i].store, &sim.id, 0, usize::MAX)
            .map(|c| c.concat())
            .unwrap_or_default()
    };
    assert!(!chat(2).contains("3 after"), "{}", chat(2));
    for i in [0, 1] {
        assert!(!chat(i).contains("4 after"), "{}", chat(i));
    }
}
