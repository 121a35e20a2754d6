//! Roles and epochs of a room, derived from its log (docs/protocol.md
//! §8.11), without I/O: who owns the room, whom the owner made moderator,
//! who was removed (and which of their entries stay), who left, and the
//! epochs with their keys' recipients.
//!
//! Every rule depends only on an entry and its causal past, so every
//! member decides the same for the same log:
//! - `Meta::Role` only from the owner.
//! - An epoch that removes members only from the owner, or from a member
//!   the owner had made moderator in the entry's causal past (the owner's
//!   role entries the entry has seen: `owner_seen`); a moderator removes
//!   neither the owner nor another moderator.
//! - An epoch that removes no one (a merge of epochs that crossed) from
//!   any member.
//! - Nothing more from a removed member: its entries numbered `keep` and
//!   later are refused (and left out of the views if they came first).
//!
//! The current epoch: among the epochs no other follows (the heads), the
//! safe ones (whose key no removed member got); of those, the one with
//! the greatest entry hash. With no safe head, or several heads, a member
//! writes an epoch that follows them all, wrapped for the members left
//! ([`Moderation::needs_merge`]).

use std::collections::{BTreeMap, BTreeSet};

use p2pfs_proto::{
    Hash, NodeId,
    moderation::{Epoch, Removal, Role},
    room::{EntryBody, Meta, Op},
};
use serde::{Deserialize, Serialize};

/// An epoch as the state keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochInfo {
    /// Who wrote it.
    pub author: NodeId,
    /// When, on its author's clock (ms).
    pub time: u64,
    /// The epochs it follows.
    pub after: Vec<Hash>,
    /// Whom it removed.
    pub removed: Vec<Removal>,
    /// Whom its key was wrapped for.
    pub recipients: Vec<NodeId>,
}

/// A removed member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    /// Its entries numbered below this stay.
    pub keep: u64,
    /// Who removed it (of several removals, the one keeping fewest).
    pub by: NodeId,
    /// When (ms, the remover's clock).
    pub time: u64,
}

/// The moderation state of a room.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moderation {
    /// The creator, once its `Meta::Owner` entry is in.
    pub owner: Option<NodeId>,
    /// The owner's role entries, per member: (the owner's entry number,
    /// the role), in the owner's order.
    pub grants: BTreeMap<NodeId, Vec<(u64, Role)>>,
    /// Every epoch, by entry hash.
    pub epochs: BTreeMap<Hash, EpochInfo>,
    /// Removed members.
    pub removed: BTreeMap<NodeId, Removed>,
    /// Members that left, with the number of their leave entry (until
    /// they write again).
    pub left: BTreeMap<NodeId, u64>,
}

/// Whether an op changes the moderation state (so is checked and applied
/// here).
pub(crate) fn concerns(op: &Op) -> bool {
    matches!(
        op,
        Op::Epoch(_) | Op::Meta(Meta::Owner { .. } | Meta::Role { .. } | Meta::Leave)
    )
}

impl Moderation {
    /// `member`'s role now.
    pub fn role(&self, member: &NodeId) -> Role {
        self.role_at(member, u64::MAX)
    }

    /// `member`'s role given the owner's first `owner_seen` entries.
    pub fn role_at(&self, member: &NodeId, owner_seen: u64) -> Role {
        if self.owner == Some(*member) {
            return Role::Owner;
        }
        self.grants
            .get(member)
            .and_then(|g| g.iter().rev().find(|(seq, _)| *seq < owner_seen))
            .map_or(Role::Member, |(_, r)| *r)
    }

    /// Whether `author`'s entry number `seq` comes after its removal.
    pub fn is_cut(&self, author: &NodeId, seq: u64) -> bool {
        self.removed.get(author).is_some_and(|r| seq >= r.keep)
    }

    /// Whether `member` was removed.
    pub fn is_removed(&self, member: &NodeId) -> bool {
        self.removed.contains_key(member)
    }

    /// Whether `member` left (and has not written since).
    pub fn has_left(&self, member: &NodeId) -> bool {
        self.left.contains_key(member)
    }

    /// Checks what the rules above ask of `body` by its author. For an
    /// epoch that removes members, `owner_seen` gives how many of the
    /// owner's entries it has in its causal past.
    pub fn check(&self, body: &EntryBody, owner_seen: impl FnOnce() -> u64) -> Result<(), String> {
        // (Whether the author was removed does not count here: that
        // depends on what arrived first. Its cut entries are kept out of
        // the views instead.)
        let author = &body.author;
        match &body.op {
            Op::Meta(Meta::Role { member, .. }) => {
                if self.owner != Some(*author) {
                    return Err(format!(
                        "a role for {} from {}, who is not the owner",
                        member.fmt_short(),
                        author.fmt_short()
                    ));
                }
                if Some(*member) == self.owner {
                    return Err("a role for the owner".into());
                }
            }
            // (The nonce is checked against the secret with the signature.)
            Op::Meta(Meta::Owner { .. }) if self.owner.is_some_and(|o| o != *author) => {
                return Err("a second owner".into());
            }
            Op::Epoch(e) => self.check_epoch(author, e, owner_seen)?,
            _ => {}
        }
        Ok(())
    }

    fn check_epoch(
        &self,
        author: &NodeId,
        e: &Epoch,
        owner_seen: impl FnOnce() -> u64,
    ) -> Result<(), String> {
        // (`after` naming what is no epoch here, a cut one say, is left
        // out of the heads: refusing the entry would strand its children.)
        if e.removed.is_empty() {
            return Ok(());
        }
        let seen = owner_seen();
        let role = self.role_at(author, seen);
        if role == Role::Member {
            return Err(format!(
                "{} removed members without being a moderator",
                author.fmt_short()
            ));
        }
        for r in &e.removed {
            if Some(r.member) == self.owner {
                return Err("a removal of the owner".into());
            }
            if r.member == *author {
                return Err("a member removing itself (it leaves instead)".into());
            }
            if role != Role::Owner && self.role_at(&r.member, seen) == Role::Moderator {
                return Err(format!(
                    "moderator {} removing moderator {}",
                    author.fmt_short(),
                    r.member.fmt_short()
                ));
            }
        }
        Ok(())
    }

    /// Takes in an entry that passed [`Moderation::check`]. Returns the
    /// members whose earlier entries it cuts (for the views to leave them
    /// out), and whether the state changed.
    pub fn apply(&mut self, hash: &Hash, body: &EntryBody) -> (Vec<Removal>, bool) {
        let author = body.author;
        let mut changed = false;
        if self.left.get(&author).is_some_and(|s| body.seq > *s) {
            self.left.remove(&author);
            changed = true;
        }
        let mut cuts = Vec::new();
        match &body.op {
            Op::Meta(Meta::Owner { .. }) if self.owner.is_none() => {
                self.owner = Some(author);
                changed = true;
            }
            Op::Meta(Meta::Role { member, role }) => {
                self.grants
                    .entry(*member)
                    .or_default()
                    .push((body.seq, *role));
                changed = true;
            }
            Op::Meta(Meta::Leave) => {
                self.left.insert(author, body.seq);
                changed = true;
            }
            Op::Epoch(e) => {
                self.epochs.insert(
                    *hash,
                    EpochInfo {
                        author,
                        time: body.time,
                        after: e.after.clone(),
                        removed: e.removed.clone(),
                        recipients: e.wraps.iter().map(|w| w.member).collect(),
                    },
                );
                for r in &e.removed {
                    let entry = self.removed.entry(r.member).or_insert(Removed {
                        keep: r.keep,
                        by: author,
                        time: body.time,
                    });
                    if r.keep < entry.keep {
                        *entry = Removed {
                            keep: r.keep,
                            by: author,
                            time: body.time,
                        };
                    }
                    cuts.push(Removal {
                        member: r.member,
                        keep: entry.keep,
                    });
                }
                changed = true;
            }
            _ => {}
        }
        (cuts, changed)
    }

    /// The epochs no other follows, in hash order.
    pub fn heads(&self) -> Vec<Hash> {
        let followed: BTreeSet<&Hash> = self.epochs.values().flat_map(|e| &e.after).collect();
        self.epochs
            .keys()
            .filter(|h| !followed.contains(h))
            .copied()
            .collect()
    }

    /// Whether no removed member got epoch `h`'s key.
    fn is_safe(&self, h: &Hash) -> bool {
        self.epochs
            .get(h)
            .is_some_and(|e| e.recipients.iter().all(|m| !self.removed.contains_key(m)))
    }

    /// The current epoch (`None`: epoch 0, the room's secret).
    pub fn current(&self) -> Option<Hash> {
        let heads = self.heads();
        heads
            .iter()
            .rev()
            .find(|h| self.is_safe(h))
            .or(heads.last())
            .copied()
    }

    /// Whether the epochs crossed so that no head is safe (each was
    /// wrapped for a member another removed): a member should write an
    /// epoch after them. (Several safe heads need nothing: the current one
    /// is the same for all, and wrapped for every member its author knew.)
    pub fn needs_merge(&self) -> bool {
        let heads = self.heads();
        !heads.is_empty() && !heads.iter().any(|h| self.is_safe(h))
    }

    /// Of `candidates`, those a new epoch's key goes to: not removed, not
    /// gone.
    pub fn recipients(&self, candidates: impl IntoIterator<Item = NodeId>) -> Vec<NodeId> {
        let set: BTreeSet<NodeId> = candidates
            .into_iter()
            .filter(|m| !self.removed.contains_key(m) && !self.left.contains_key(m))
            .collect();
        set.into_iter().collect()
    }

    /// Who removed `member` and when, if it was.
    pub fn removal(&self, member: &NodeId) -> Option<Removed> {
        self.removed.get(member).copied()
    }
}

#[cfg(test)]
mod tests {
    use p2pfs_proto::moderation::{SEALED_LEN, Wrap};

    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId::from_bytes([n; 32])
    }

    fn body(author: u8, seq: u64, op: Op) -> EntryBody {
        EntryBody {
            author: id(author),
            seq,
            parents: vec![],
            time: 1,
            member: [0; 32],
            op,
        }
    }

    fn epoch(removed: &[(u8, u64)], after: Vec<Hash>, to: &[u8]) -> Op {
        Op::Epoch(Epoch {
            removed: removed
                .iter()
                .map(|(m, keep)| Removal {
                    member: id(*m),
                    keep: *keep,
                })
                .collect(),
            after,
            wraps: to
                .iter()
                .map(|m| Wrap {
                    member: id(*m),
                    enc: [0; 32],
                    sealed: vec![0; SEALED_LEN],
                })
                .collect(),
        })
    }

    fn take(m: &mut Moderation, n: u8, b: EntryBody, seen: u64) -> Result<Hash, String> {
        m.check(&b, || seen)?;
        let h = Hash::from_bytes([n; 32]);
        m.apply(&h, &b);
        Ok(h)
    }

    #[test]
    fn roles_come_from_the_owner_and_count_as_the_remover_saw_them() {
        let mut m = Moderation::default();
        take(
            &mut m,
            1,
            body(1, 0, Op::Meta(Meta::Owner { nonce: [0; 32] })),
            0,
        )
        .unwrap();
        // Not the owner: refused.
        let grant = |member, role| {
            Op::Meta(Meta::Role {
                member: id(member),
                role,
            })
        };
        assert!(take(&mut m, 2, body(2, 0, grant(2, Role::Moderator)), 0).is_err());
        take(&mut m, 3, body(1, 1, grant(2, Role::Moderator)), 0).unwrap();
        assert_eq!(m.role(&id(2)), Role::Moderator);
        // A moderator removes a member...
        let e1 = take(&mut m, 4, body(2, 0, epoch(&[(3, 1)], vec![], &[1, 2])), 2).unwrap();
        assert!(m.is_cut(&id(3), 1) && !m.is_cut(&id(3), 0));
        // ...but not before the owner's grant was in its past.
        let mut m2 = m.clone();
        m2.removed.clear();
        assert!(take(&mut m2, 9, body(2, 1, epoch(&[(3, 1)], vec![], &[1, 2])), 1).is_err());
        // Nor the owner, nor another moderator.
        take(&mut m, 5, body(1, 2, grant(4, Role::Moderator)), 0).unwrap();
        assert!(take(&mut m, 6, body(2, 1, epoch(&[(1, 0)], vec![e1], &[2])), 3).is_err());
        assert!(
            take(
                &mut m,
                6,
                body(2, 1, epoch(&[(4, 0)], vec![e1], &[1, 2])),
                3
            )
            .is_err()
        );
        // Demoted, it removes no more.
        take(&mut m, 7, body(1, 3, grant(2, Role::Member)), 0).unwrap();
        assert!(
            take(
                &mut m,
                8,
                body(2, 1, epoch(&[(5, 0)], vec![e1], &[1, 2])),
                4
            )
            .is_err()
        );
        // The removed member's later entries are cut.
        assert!(m.is_cut(&id(3), 1) && !m.is_cut(&id(3), 0));
    }

    #[test]
    fn crossed_removals_need_a_merge_that_leaves_both_out() {
        let mut m = Moderation::default();
        take(
            &mut m,
            1,
            body(1, 0, Op::Meta(Meta::Owner { nonce: [0; 32] })),
            0,
        )
        .unwrap();
        let grant = |member| {
            Op::Meta(Meta::Role {
                member: id(member),
                role: Role::Moderator,
            })
        };
        take(&mut m, 2, body(1, 1, grant(2)), 0).unwrap();
        take(&mut m, 3, body(1, 2, grant(3)), 0).unwrap();
        // Apart: 2 removes 4 (the key goes to 5); 3 removes 5 (to 4).
        let a = take(
            &mut m,
            4,
            body(2, 0, epoch(&[(4, 0)], vec![], &[1, 2, 3, 5])),
            3,
        )
        .unwrap();
        let b = take(
            &mut m,
            5,
            body(3, 0, epoch(&[(5, 0)], vec![], &[1, 2, 3, 4])),
            3,
        )
        .unwrap();
        assert!(m.needs_merge());
        assert_eq!(m.heads(), vec![a, b]);
        let to = m.recipients([1, 2, 3, 4, 5].map(id));
        assert_eq!(to, vec![id(1), id(2), id(3)]);
        // Any member merges; then one safe head.
        let c = take(&mut m, 6, body(1, 3, epoch(&[], vec![a, b], &[1, 2, 3])), 0).unwrap();
        assert!(!m.needs_merge());
        assert_eq!(m.current(), Some(c));
    }

    #[test]
    fn leaving_holds_until_the_member_writes_again() {
        let mut m = Moderation::default();
        take(&mut m, 1, body(7, 4, Op::Meta(Meta::Leave)), 0).unwrap();
        assert!(m.has_left(&id(7)));
        assert!(m.recipients([id(7), id(8)]) == vec![id(8)]);
        m.apply(
            &Hash::from_bytes([2; 32]),
            &body(
                7,
                5,
                Op::Chat {
                    text: "back".into(),
                },
            ),
        );
        assert!(!m.has_left(&id(7)));
    }
}
