//! What this member should pin, fetch and let go of, from what it holds
//! and what the other replicas say (no I/O: `runtime` gathers the inputs
//! and carries the plan out).

use std::collections::{HashMap, HashSet};

use p2pfs_proto::{Hash, NodeId, room::Copies};

use super::{
    peers::Peer,
    placement::{Candidate, responsible},
};

/// A blob the room's tree shows (once, whatever the number of paths).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct File {
    pub(crate) hash: Hash,
    pub(crate) size: u64,
    pub(crate) author: NodeId,
}

/// What this member has of a blob.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Held {
    pub(crate) complete: bool,
    /// Bytes present.
    pub(crate) present: u64,
    /// Kept for the room (this member is, or was, responsible).
    pub(crate) room_pin: bool,
    /// Kept at the user's request (`user.p2pfs.pin`).
    pub(crate) keep_pin: bool,
}

/// Everything a plan depends on.
#[derive(Debug)]
pub(crate) struct Inputs<'a> {
    pub(crate) me: NodeId,
    /// This member is at its storage cap.
    pub(crate) me_full: bool,
    pub(crate) policy: Copies,
    pub(crate) files: &'a [File],
    pub(crate) local: &'a HashMap<Hash, Held>,
    /// The other replicas online, each with whether it is a candidate.
    pub(crate) peers: &'a [(NodeId, &'a Peer, bool)],
    /// The candidates have not changed for a while: copies may be
    /// fetched and let go of (while members are still being heard from,
    /// this member's view of who is responsible may be wrong).
    pub(crate) stable: bool,
    /// Blobs whose copies are made at once, stable or not, while below
    /// their target: files just published, and those of members leaving
    /// or just gone (the first copies of a file never wait; only moving
    /// copies between members does).
    pub(crate) urgent: &'a HashSet<Hash>,
}

/// A blob to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fetch {
    pub(crate) file: File,
    /// Bytes still missing.
    pub(crate) missing: u64,
    /// Online replicas that hold it complete (ask them first).
    pub(crate) holders: Vec<NodeId>,
    /// Kept at the user's request: taken whatever the storage cap.
    pub(crate) kept: bool,
}

/// What to do.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Pin for the room (this member is responsible).
    pub(crate) pin: Vec<Hash>,
    /// Fetch (responsible or kept, not complete).
    pub(crate) fetch: Vec<Fetch>,
    /// Unpin for the room: not responsible, and every responsible member
    /// holds it complete.
    pub(crate) release: Vec<Hash>,
}

/// The members responsible for `file`, with this member and the
/// candidate peers of `input`.
pub(crate) fn responsible_for(input: &Inputs<'_>, file: &File) -> Vec<NodeId> {
    let held = input.local.get(&file.hash).copied().unwrap_or_default();
    let mut cands = Vec::with_capacity(input.peers.len() + 1);
    cands.push(Candidate {
        id: input.me,
        full: input.me_full,
        holds: held.complete,
    });
    for (id, p, candidate) in input.peers {
        if *candidate {
            cands.push(Candidate {
                id: *id,
                full: p.full,
                holds: p.holds.contains(&file.hash),
            });
        }
    }
    responsible(&file.hash, file.author, &cands, input.policy)
}

/// The plan for `input`.
pub(crate) fn plan(input: &Inputs<'_>) -> Plan {
    let mut out = Plan::default();
    for file in input.files {
        let held = input.local.get(&file.hash).copied().unwrap_or_default();
        let resp = responsible_for(input, file);
        let mine = resp.contains(&input.me);
        if mine && !held.room_pin {
            out.pin.push(file.hash);
        }
        let holders: Vec<NodeId> = input
            .peers
            .iter()
            .filter(|(_, p, _)| p.holds.contains(&file.hash))
            .map(|(id, _, _)| *id)
            .collect();
        let urgent = input.urgent.contains(&file.hash) && {
            // Copies that stay: a member leaving still serves its copy,
            // but it will be gone.
            let staying = input
                .peers
                .iter()
                .filter(|(_, p, _)| !p.leaving && p.holds.contains(&file.hash))
                .count();
            staying + usize::from(held.complete) < resp.len()
        };
        // With no member online keeping it, there is nobody to ask yet.
        if ((mine && (input.stable || urgent)) || held.keep_pin)
            && !held.complete
            && !holders.is_empty()
        {
            out.fetch.push(Fetch {
                file: *file,
                missing: file.size.saturating_sub(held.present),
                holders,
                kept: held.keep_pin,
            });
        }
        if !mine && held.room_pin && input.stable {
            let all_hold = !resp.is_empty()
                && resp.iter().all(|m| {
                    input
                        .peers
                        .iter()
                        .any(|(id, p, _)| id == m && p.holds.contains(&file.hash))
                });
            if all_hold {
                out.release.push(file.hash);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId::from_bytes(*Hash::of(&[n]).as_bytes())
    }

    fn peer(holds: &[Hash], full: bool) -> Peer {
        Peer {
            last_heard: Instant::now(),
            timeout: std::time::Duration::from_secs(60),
            admitted_at: Instant::now(),
            full,
            holds: holds.iter().copied().collect::<HashSet<_>>(),
            leaving: false,
            gone: None,
        }
    }

    fn file(n: u32, author: NodeId) -> File {
        File {
            hash: Hash::of(&n.to_le_bytes()),
            size: 1000,
            author,
        }
    }

    /// Files for which member `me` of {1, 2, 3} is responsible or not,
    /// under copies=2 with member 1 the author.
    fn split(me: u8) -> (Vec<File>, Vec<File>) {
        let cands: Vec<Candidate> = [1u8, 2, 3]
            .iter()
            .map(|n| Candidate {
                id: id(*n),
                full: false,
                holds: false,
            })
            .collect();
        (0..100)
            .map(|n| file(n, id(1)))
            .partition(|f| responsible(&f.hash, f.author, &cands, Copies::Min(2)).contains(&id(me)))
    }

    #[test]
    fn fetches_and_pins_what_it_is_responsible_for() {
        let (mine, others) = split(2);
        let (a, b) = (mine[0], others[0]);
        let p1 = peer(&[a.hash, b.hash], false);
        let p3 = peer(&[], false);
        let peers = [(id(1), &p1, true), (id(3), &p3, true)];
        let local = HashMap::new();
        let files = [a, b];
        let input = Inputs {
            me: id(2),
            me_full: false,
            policy: Copies::Min(2),
            files: &files,
            local: &local,
            peers: &peers,
            stable: true,
            urgent: &HashSet::new(),
        };
        let p = plan(&input);
        assert_eq!(p.pin, vec![a.hash]);
        assert_eq!(p.fetch.len(), 1);
        assert_eq!(p.fetch[0].file, a);
        assert_eq!(p.fetch[0].holders, vec![id(1)]);
        assert_eq!(p.fetch[0].missing, 1000);
        assert!(p.release.is_empty());
        // Nobody online keeps it: nothing to fetch from yet.
        let p1_empty = peer(&[], false);
        let nobody = [(id(1), &p1_empty, true), (id(3), &p3, true)];
        assert!(
            plan(&Inputs {
                peers: &nobody,
                ..input
            })
            .fetch
            .is_empty()
        );
        // At the storage cap: nothing new.
        let full = plan(&Inputs {
            me_full: true,
            ..input
        });
        assert!(full.pin.is_empty() && full.fetch.is_empty());
        // While the view changes: pinned, but not fetched yet.
        let unsettled = plan(&Inputs {
            stable: false,
            ..input
        });
        assert_eq!(unsettled.pin, vec![a.hash]);
        assert!(unsettled.fetch.is_empty());
    }

    #[test]
    fn first_copies_do_not_wait_for_the_view_to_settle() {
        let (mine, _) = split(2);
        let f = mine[0];
        let files = [f];
        let local = HashMap::new();
        let author = peer(&[f.hash], false);
        let p3 = peer(&[], false);
        let peers = [(id(1), &author, true), (id(3), &p3, true)];
        let urgent: HashSet<Hash> = [f.hash].into();
        let input = Inputs {
            me: id(2),
            me_full: false,
            policy: Copies::Min(2),
            files: &files,
            local: &local,
            peers: &peers,
            stable: false,
            urgent: &urgent,
        };
        // A new file with one copy: fetched while the view still moves.
        assert_eq!(plan(&input).fetch.len(), 1);
        // Not new: it waits for the view to settle.
        assert!(
            plan(&Inputs {
                urgent: &HashSet::new(),
                ..input
            })
            .fetch
            .is_empty()
        );
        // At its target already (member 3 holds it too): nothing moves.
        let p3_holds = peer(&[f.hash], false);
        let enough = [(id(1), &author, true), (id(3), &p3_holds, true)];
        assert!(
            plan(&Inputs {
                peers: &enough,
                ..input
            })
            .fetch
            .is_empty()
        );
        // A holder that is leaving does not count: its copy is fetched.
        let mut going = peer(&[f.hash], false);
        going.leaving = true;
        let leaving = [(id(1), &author, true), (id(3), &going, false)];
        let p = plan(&Inputs {
            peers: &leaving,
            ..input
        });
        assert_eq!(p.fetch.len(), 1);
        assert_eq!(p.fetch[0].holders, vec![id(1), id(3)]);
    }

    #[test]
    fn lets_go_only_once_the_responsible_members_hold_it_and_the_view_is_stable() {
        let (_, others) = split(2);
        let f = others[0];
        let files = [f];
        let local = HashMap::from([(
            f.hash,
            Held {
                complete: true,
                present: 1000,
                room_pin: true,
                keep_pin: false,
            },
        )]);
        let holding = peer(&[f.hash], false);
        let empty = peer(&[], false);
        let run = |p1: &Peer, p3: &Peer, stable: bool, local: &HashMap<Hash, Held>| {
            let peers = [(id(1), p1, true), (id(3), p3, true)];
            plan(&Inputs {
                me: id(2),
                me_full: false,
                policy: Copies::Min(2),
                files: &files,
                local,
                peers: &peers,
                stable,
                urgent: &HashSet::new(),
            })
            .release
        };
        // Member 3 (the new holder) does not have it yet: kept.
        assert!(run(&holding, &empty, true, &local).is_empty());
        assert_eq!(run(&holding, &holding, true, &local), vec![f.hash]);
        assert!(run(&holding, &holding, false, &local).is_empty());
    }

    #[test]
    fn a_kept_file_is_fetched_whatever_the_placement() {
        let (_, others) = split(2);
        let f = others[0];
        let files = [f];
        let mut local = HashMap::new();
        local.insert(
            f.hash,
            Held {
                keep_pin: true,
                ..Held::default()
            },
        );
        let p1 = peer(&[f.hash], false);
        let peers = [(id(1), &p1, true)];
        let p = plan(&Inputs {
            me: id(2),
            me_full: true,
            policy: Copies::Min(1),
            files: &files,
            local: &local,
            peers: &peers,
            stable: true,
            urgent: &HashSet::new(),
        });
        assert!(p.pin.is_empty());
        assert_eq!(p.fetch.len(), 1);
        assert!(p.fetch[0].kept);
    }

    #[test]
    fn a_peer_not_yet_readmitted_counts_as_a_holder_only() {
        let (mine, _) = split(2);
        let f = mine[0];
        let files = [f];
        let local = HashMap::new();
        // Member 3 is back but not yet a candidate: with copies=3 only 1
        // and 2 are responsible; 3's copy still serves the fetch.
        let p1 = peer(&[], false);
        let p3 = peer(&[f.hash], false);
        let peers = [(id(1), &p1, true), (id(3), &p3, false)];
        let input = Inputs {
            me: id(2),
            me_full: false,
            policy: Copies::Min(3),
            files: &files,
            local: &local,
            peers: &peers,
            stable: true,
            urgent: &HashSet::new(),
        };
        let resp = responsible_for(&input, &f);
        assert!(!resp.contains(&id(3)) && resp.len() == 2);
        assert_eq!(plan(&input).fetch[0].holders, vec![id(3)]);
    }
}
