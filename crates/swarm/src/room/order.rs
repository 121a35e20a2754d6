//! One canonical order of a room's entries, the same on every member that
//! has the same entries, whatever order they arrived in.
//!
//! The log keeps entries in the order this node accepted them, which puts
//! every entry after its parents but differs between members: concurrent
//! messages arrive in different orders. [`canonical`] is a deterministic
//! linear extension of the DAG (Kahn's algorithm): an entry is placed
//! once all its parents are, and of the entries ready to be placed the one
//! with the smallest (author's time, entry hash) goes first. So an entry
//! always follows what its author had seen, and concurrent entries are
//! ordered by their authors' clocks, ties broken by hash. A clock that
//! lies moves its entries only among the entries concurrent with them.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
};

use p2pfs_proto::{Hash, room::EntryBody};

/// The positions of `entries` (in any order) in canonical order. Parents
/// absent from `entries` count as placed; a cycle (impossible between
/// hashes) would be placed last, by (time, hash).
pub(crate) fn canonical(entries: &[(Hash, EntryBody)]) -> Vec<usize> {
    let index: HashMap<Hash, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, (h, _))| (*h, i))
        .collect();
    let mut waiting = vec![0usize; entries.len()];
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); entries.len()];
    for (i, (_, body)) in entries.iter().enumerate() {
        let mut parents: Vec<usize> = body
            .parents
            .iter()
            .filter_map(|p| index.get(p).copied())
            .filter(|p| *p != i)
            .collect();
        parents.sort_unstable();
        parents.dedup();
        waiting[i] = parents.len();
        for p in parents {
            children[p].push(i);
        }
    }
    let key = |i: usize| Reverse((entries[i].1.time, entries[i].0, i));
    let mut ready: BinaryHeap<_> = (0..entries.len())
        .filter(|i| waiting[*i] == 0)
        .map(key)
        .collect();
    let mut out = Vec::with_capacity(entries.len());
    let mut placed = vec![false; entries.len()];
    while let Some(Reverse((_, _, i))) = ready.pop() {
        out.push(i);
        placed[i] = true;
        for &c in &children[i] {
            waiting[c] -= 1;
            if waiting[c] == 0 {
                ready.push(key(c));
            }
        }
    }
    if out.len() < entries.len() {
        let mut rest: Vec<usize> = (0..entries.len()).filter(|i| !placed[*i]).collect();
        rest.sort_by_key(|i| (entries[*i].1.time, entries[*i].0));
        out.extend(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use p2pfs_proto::{NodeId, room::Op};

    use super::*;

    fn body(author: u8, seq: u64, time: u64, parents: Vec<Hash>) -> EntryBody {
        EntryBody {
            author: NodeId::from_bytes([author; 32]),
            seq,
            parents,
            time,
            member: [0; 32],
            op: Op::Chat {
                text: format!("{author}/{seq}"),
            },
        }
    }

    /// A random room: `authors` chains, each entry linking to its author's
    /// previous one and to some entries it had seen; clocks skewed, some
    /// equal. Returned in an order that puts parents first.
    fn random_dag(rng: &mut fastrand::Rng, authors: u8, n: usize) -> Vec<(Hash, EntryBody)> {
        let mut out: Vec<(Hash, EntryBody)> = Vec::new();
        let mut last: Vec<Option<(u64, Hash)>> = vec![None; authors as usize];
        for k in 0..n {
            let a = rng.u8(..authors);
            let mut parents = Vec::new();
            let seq = match last[a as usize] {
                Some((s, h)) => {
                    parents.push(h);
                    s + 1
                }
                None => 0,
            };
            for _ in 0..rng.usize(..3) {
                if !out.is_empty() {
                    parents.push(out[rng.usize(..out.len())].0);
                }
            }
            let time = (k as u64 / 3) * 10 + u64::from(a) * rng.u64(..25);
            let b = body(a, seq, time, parents);
            let h = Hash::of(format!("{a}/{seq}/{k}").as_bytes());
            last[a as usize] = Some((seq, h));
            out.push((h, b));
        }
        out
    }

    fn hashes(entries: &[(Hash, EntryBody)]) -> Vec<Hash> {
        canonical(entries)
            .into_iter()
            .map(|i| entries[i].0)
            .collect()
    }

    #[test]
    fn every_arrival_order_gives_the_same_order() {
        let mut rng = fastrand::Rng::with_seed(16);
        for round in 0..50 {
            let n = 1 + rng.usize(..120);
            let dag = random_dag(&mut rng, 1 + (round % 5) as u8, n);
            let want = hashes(&dag);
            for _ in 0..10 {
                let mut shuffled = dag.clone();
                rng.shuffle(&mut shuffled);
                assert_eq!(hashes(&shuffled), want, "round {round}");
            }
        }
    }

    #[test]
    fn the_order_is_a_linear_extension_and_ties_go_by_time_then_hash() {
        let mut rng = fastrand::Rng::with_seed(5);
        for _ in 0..50 {
            let mut dag = random_dag(&mut rng, 4, 80);
            rng.shuffle(&mut dag);
            let order = hashes(&dag);
            let pos: HashMap<Hash, usize> =
                order.iter().enumerate().map(|(i, h)| (*h, i)).collect();
            let by_hash: HashMap<Hash, &EntryBody> = dag.iter().map(|(h, b)| (*h, b)).collect();
            for (h, b) in &dag {
                for p in &b.parents {
                    assert!(pos[p] < pos[h], "a parent after its child");
                }
            }
            // Each entry is the least (time, hash) of those ready when it
            // was placed.
            for (i, h) in order.iter().enumerate() {
                let placed = &order[..i];
                let ready = |e: &Hash| {
                    !placed.contains(e) && by_hash[e].parents.iter().all(|p| placed.contains(p))
                };
                let least = dag
                    .iter()
                    .map(|(e, b)| (b.time, *e))
                    .filter(|(_, e)| ready(e))
                    .min()
                    .unwrap();
                assert_eq!(least.1, *h);
            }
        }
    }

    #[test]
    fn concurrent_entries_go_by_clock_and_children_follow_parents() {
        // Two members write at once; a third answers the later one with a
        // clock behind both.
        let a = (Hash::of(b"a"), body(1, 0, 200, vec![]));
        let b = (Hash::of(b"b"), body(2, 0, 100, vec![]));
        let c = (Hash::of(b"c"), body(3, 0, 50, vec![a.0]));
        let entries = vec![a.clone(), c.clone(), b.clone()];
        assert_eq!(hashes(&entries), vec![b.0, a.0, c.0]);
        // Equal clocks: the smaller hash first.
        let x = (Hash::of(b"x"), body(1, 0, 7, vec![]));
        let y = (Hash::of(b"y"), body(2, 0, 7, vec![]));
        let want = if x.0 < y.0 {
            vec![x.0, y.0]
        } else {
            vec![y.0, x.0]
        };
        assert_eq!(hashes(&[x.clone(), y.clone()]), want);
        assert_eq!(hashes(&[y, x]), want);
    }

    #[test]
    fn missing_parents_and_duplicates_do_not_stall_it() {
        let a = (Hash::of(b"a"), body(1, 0, 5, vec![Hash::of(b"gone")]));
        let b = (Hash::of(b"b"), body(1, 1, 1, vec![a.0, a.0]));
        assert_eq!(hashes(&[b.clone(), a.clone()]), vec![a.0, b.0]);
        assert!(canonical(&[]).is_empty());
    }
}
