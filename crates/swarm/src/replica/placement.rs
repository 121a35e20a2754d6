//! Who keeps a full copy of a file. Every member computes it from the same
//! inputs (the room's policy, the file, the replicas it hears from) and so
//! reaches the same answer with no coordinator.
//!
//! Under `copies=N` the responsible members are the file's author, when it
//! is a candidate, and then the candidates with the highest rendezvous
//! score for the file, BLAKE3(file hash ‖ member id), N in all: a member
//! coming or going moves only the files it was, or becomes, responsible
//! for. (The XOR distance between id and hash does the same but spreads
//! badly over a handful of members: one of four got 108 of 200 files and
//! another 18 in this module's test; the scores spread evenly.) Under
//! `copies=full` every candidate is. A candidate at its storage cap is
//! passed over for the files it does not hold already.

use p2pfs_proto::{Hash, NodeId, room::Copies};

/// A replica that may be given files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) id: NodeId,
    /// At its storage cap.
    pub(crate) full: bool,
    /// Holds the file in question complete.
    pub(crate) holds: bool,
}

/// A member's rendezvous score for a file: the highest scores hold it.
pub(crate) fn score(id: &NodeId, hash: &Hash) -> [u8; 32] {
    let mut m = [0u8; 64];
    m[..32].copy_from_slice(hash.as_bytes());
    m[32..].copy_from_slice(id.as_bytes());
    *Hash::of(&m).as_bytes()
}

/// The members responsible for a full copy of blob `hash` put by `author`,
/// among `candidates` (in any order), under `policy`. Sorted by id.
pub(crate) fn responsible(
    hash: &Hash,
    author: NodeId,
    candidates: &[Candidate],
    policy: Copies,
) -> Vec<NodeId> {
    let mut eligible: Vec<&Candidate> = candidates.iter().filter(|c| !c.full || c.holds).collect();
    eligible.sort_by_key(|c| c.id);
    eligible.dedup_by_key(|c| c.id);
    let mut out: Vec<NodeId> = match policy {
        Copies::Full => eligible.iter().map(|c| c.id).collect(),
        Copies::Min(n) => {
            let n = usize::from(n);
            let mut out = Vec::with_capacity(n);
            if eligible.iter().any(|c| c.id == author) && n > 0 {
                out.push(author);
            }
            let mut rest: Vec<NodeId> = eligible
                .iter()
                .map(|c| c.id)
                .filter(|id| *id != author)
                .collect();
            rest.sort_by_key(|id| std::cmp::Reverse(score(id, hash)));
            out.extend(rest.into_iter().take(n.saturating_sub(out.len())));
            out
        }
    };
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId::from_bytes(*Hash::of(&[n]).as_bytes())
    }

    fn cands(ids: &[u8]) -> Vec<Candidate> {
        ids.iter()
            .map(|n| Candidate {
                id: id(*n),
                full: false,
                holds: false,
            })
            .collect()
    }

    fn files() -> Vec<Hash> {
        (0u32..200).map(|i| Hash::of(&i.to_le_bytes())).collect()
    }

    #[test]
    fn the_author_and_the_closest_others_whatever_the_order() {
        let c = cands(&[1, 2, 3, 4, 5]);
        let mut reversed = c.clone();
        reversed.reverse();
        for h in files() {
            let r = responsible(&h, id(3), &c, Copies::Min(2));
            assert_eq!(r.len(), 2);
            assert!(r.contains(&id(3)));
            assert_eq!(r, responsible(&h, id(3), &reversed, Copies::Min(2)));
            // The other one is the non-author with the highest score.
            let other = *r.iter().find(|x| **x != id(3)).unwrap();
            for x in [1u8, 2, 4, 5] {
                assert!(score(&other, &h) >= score(&id(x), &h));
            }
        }
        // An author that is not a candidate: the two closest.
        let h = files()[0];
        let r = responsible(&h, id(9), &c, Copies::Min(2));
        assert_eq!(r.len(), 2);
        assert!(!r.contains(&id(9)));
    }

    #[test]
    fn a_member_going_away_moves_only_its_own_files() {
        let all = cands(&[1, 2, 3, 4, 5]);
        let without_4: Vec<Candidate> = all.iter().copied().filter(|c| c.id != id(4)).collect();
        let mut moved = 0;
        for h in files() {
            let before = responsible(&h, id(1), &all, Copies::Min(2));
            let after = responsible(&h, id(1), &without_4, Copies::Min(2));
            if before.contains(&id(4)) {
                // Exactly one new member replaces it.
                assert_eq!(after.iter().filter(|x| !before.contains(x)).count(), 1);
                moved += 1;
            } else {
                assert_eq!(before, after);
            }
        }
        // About a quarter of the files had member 4 as their second copy.
        assert!((25..=75).contains(&moved), "{moved}");
    }

    #[test]
    fn full_policy_few_candidates_and_storage_caps() {
        let c = cands(&[1, 2, 3]);
        let h = files()[7];
        assert_eq!(responsible(&h, id(1), &c, Copies::Full).len(), 3);
        assert_eq!(responsible(&h, id(1), &c, Copies::Min(5)).len(), 3);
        assert_eq!(responsible(&h, id(1), &c, Copies::Min(1)), vec![id(1)]);
        assert!(responsible(&h, id(1), &[], Copies::Min(2)).is_empty());
        // A member at its cap is passed over unless it holds the file.
        for capped in [1u8, 2, 3] {
            let mut c2 = c.clone();
            for x in &mut c2 {
                x.full = x.id == id(capped);
            }
            let r = responsible(&h, id(1), &c2, Copies::Full);
            assert!(!r.contains(&id(capped)));
            assert_eq!(r.len(), 2);
            for x in &mut c2 {
                x.holds = x.id == id(capped);
            }
            assert!(responsible(&h, id(1), &c2, Copies::Full).contains(&id(capped)));
        }
        // Duplicates count once.
        let mut dup = c.clone();
        dup.extend(c.clone());
        assert_eq!(responsible(&h, id(1), &dup, Copies::Full).len(), 3);
    }

    #[test]
    fn files_spread_over_the_members() {
        let c = cands(&[1, 2, 3, 4, 5]);
        let mut load = std::collections::HashMap::new();
        for h in files() {
            for m in responsible(&h, id(1), &c, Copies::Min(2)) {
                *load.entry(m).or_insert(0) += 1;
            }
        }
        // The author holds all 200; the 200 second copies are shared by
        // the four others.
        assert_eq!(load[&id(1)], 200);
        for n in [2u8, 3, 4, 5] {
            assert!((25..=75).contains(&load[&id(n)]), "{load:?}");
        }
    }
}
