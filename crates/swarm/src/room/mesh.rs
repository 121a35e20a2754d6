//! A room's mesh, as a state machine without I/O: which members to keep
//! sessions with, where entries and presences go, and who is online.
//!
//! A room does not need a full mesh. Up to [`Config::full_mesh`] other
//! members, a node keeps a session with each (the lowest latency for small
//! rooms); beyond that, it dials its **view**: on the ring of the members
//! it knows, ordered by id, its successor, its predecessor, and the members
//! 2, 4, 8, … places after it (Chord's fingers). Every member computes the
//! same ring, the ring alone connects the room, and the fingers keep any
//! member within about log₂ n forwards of any other, with about 2 log₂ n
//! sessions each. A member that cannot be reached is left out of the ring
//! while its dial backs off, so the next one takes its place.
//!
//! Entries are pushed to every session but the one they came from; so are
//! **presences** (§8.10): each replica's status, signed by it, forwarded
//! by everyone once. Liveness and placement come from the presences, not
//! from direct sessions only. This machine keeps, per replica, the chain of
//! presences since its last reset. A new session starts with a digest of
//! the newest presence each side holds per replica; each side answers
//! with the parts of its chains the other lacks, so a member that just
//! arrived knows at once who is online and what they keep, and a session
//! between two members that know the same sends no presence at all.
//!
//! Time is a number of milliseconds the caller supplies; the simulator
//! (`room::sim`, feature `sim`) runs it on a virtual clock.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
};

use p2pfs_proto::{
    NodeId,
    room::{MAX_PRESENCE_HEADS, Presence, PresenceBody, PresenceHead, PresencePhase, Status},
};

/// Dials in flight at most for a node with no session.
pub(crate) const ISOLATED_DIALS: usize = 32;
/// Dial backoff after a first failure, and its ceiling.
const FIRST_BACKOFF_MS: u64 = 1000;
const MAX_BACKOFF_MS: u64 = 60_000;
/// Most replicas whose presence is remembered (members can make up ids).
pub(crate) const MAX_ORIGINS: usize = 4096;
/// Most presences kept in a chain (a replica resets every
/// [`RESET_EVERY`]; a longer chain means it does not).
pub(crate) const MAX_CHAIN: usize = 4 * RESET_EVERY as usize;
/// A replica starts a new chain (a presence with `reset`) at least every
/// this many presences.
pub(crate) const RESET_EVERY: u64 = 8;

/// Members per presence period: a replica's presence goes out every
/// heartbeat up to this many members, and proportionally less often in
/// bigger rooms, so that what each member receives stays about the same
/// whatever the room's size (the period is stated in the presence, and
/// receivers time it out after three).
const MEMBERS_PER_PERIOD: u64 = 32;

/// How often a replica in a room of `members` sends its presence.
pub(crate) fn presence_period(heartbeat_ms: u64, members: usize) -> u64 {
    heartbeat_ms * (members as u64).div_ceil(MEMBERS_PER_PERIOD).max(1)
}

/// How a node meshes in a room.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Up to this many other members, keep a session with each.
    pub(crate) full_mesh: usize,
    /// Dials in progress at once.
    pub(crate) max_dials: usize,
    /// A replica not heard from for this long is offline (or three of its
    /// heartbeats, if longer).
    pub(crate) offline_after_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            full_mesh: 12,
            max_dials: 8,
            offline_after_ms: 180_000,
        }
    }
}

/// What a replica's presences said, as this node heard them.
#[derive(Debug, Clone)]
struct Origin {
    run: u64,
    seq: u64,
    heard_ms: u64,
    timeout_ms: u64,
    phase: PresencePhase,
    /// The presences since its last reset, in order, with their `seq`
    /// (one run); after a gap, just the latest (it tells that the replica
    /// lives, not what it keeps).
    chain: Vec<(u64, Arc<Presence>)>,
    /// A presence is missing since the last reset.
    gap: bool,
}

/// A received presence, taken in.
#[derive(Debug, PartialEq)]
pub(crate) enum Heard {
    /// Known already (or this node's own): nothing to do.
    Old,
    /// New: forward it to `forward`, and apply it.
    New {
        /// The sessions to forward it to.
        forward: Vec<NodeId>,
        /// What it tells of the replica.
        apply: Apply,
    },
}

/// What a new presence tells of its replica.
#[derive(Debug, PartialEq)]
pub(crate) enum Apply {
    /// Its status, in order after what was known (or a reset).
    Status(Status, PresencePhase),
    /// That it lives, and its phase; a presence was missed, so what it
    /// keeps is unknown until its next reset.
    Alive(PresencePhase),
}

/// A room's mesh.
#[derive(Debug)]
pub(crate) struct Mesh {
    me: NodeId,
    config: Config,
    /// Members with a known address.
    known: BTreeSet<NodeId>,
    sessions: BTreeSet<NodeId>,
    dialing: BTreeSet<NodeId>,
    /// Members whose dials back off: until when, and the last wait.
    backoff: HashMap<NodeId, (u64, u64)>,
    /// Members whose last dial failed: out of the ring until then (a
    /// session that merely ended only waits to be dialed again, so the
    /// ring, and every view computed from it, stays put).
    unreachable: HashMap<NodeId, u64>,
    origins: HashMap<NodeId, Origin>,
    /// This node's own chain (with each `seq`), given to new sessions.
    own: Vec<(u64, Arc<Presence>)>,
    /// The run of this node's own presences.
    own_run: u64,
}

impl Mesh {
    pub(crate) fn new(me: NodeId, config: Config) -> Self {
        Self {
            me,
            config,
            known: BTreeSet::new(),
            sessions: BTreeSet::new(),
            dialing: BTreeSet::new(),
            backoff: HashMap::new(),
            unreachable: HashMap::new(),
            origins: HashMap::new(),
            own: Vec::new(),
            own_run: 0,
        }
    }

    /// A member with a known address; true if it is new.
    pub(crate) fn learn(&mut self, peer: NodeId) -> bool {
        peer != self.me && self.known.insert(peer)
    }

    /// The members with a known address.
    pub(crate) fn known(&self) -> impl Iterator<Item = &NodeId> {
        self.known.iter()
    }

    /// The members with a session.
    #[cfg(any(test, feature = "sim", feature = "fuzzing"))]
    pub(crate) fn sessions(&self) -> impl Iterator<Item = &NodeId> {
        self.sessions.iter()
    }

    /// A session with `peer` started (send it [`Mesh::digest`]).
    pub(crate) fn up(&mut self, peer: NodeId) {
        self.sessions.insert(peer);
        self.dialing.remove(&peer);
        self.backoff.remove(&peer);
        self.unreachable.remove(&peer);
    }

    /// The newest presence held of each replica, this node's own first,
    /// for a new session's `PresenceDigest`.
    pub(crate) fn digest(&self) -> Vec<PresenceHead> {
        let own = self.own.last().map(|(seq, _)| PresenceHead {
            origin: self.me,
            run: self.own_run,
            seq: *seq,
        });
        let mut heads: Vec<PresenceHead> = own.into_iter().collect();
        let mut others: Vec<PresenceHead> = self
            .origins
            .iter()
            .filter(|(_, o)| !o.chain.is_empty())
            .map(|(id, o)| PresenceHead {
                origin: *id,
                run: o.run,
                seq: o.seq,
            })
            .collect();
        others.sort_by_key(|h| h.origin);
        heads.extend(others);
        heads.truncate(MAX_PRESENCE_HEADS);
        heads
    }

    /// The presences `peer` lacks, from its digest: of each replica (this
    /// node's own first), those of the chain held here that are newer
    /// than the peer's head; the whole chain if it has none. Never the
    /// peer's own.
    pub(crate) fn missing(&self, peer: NodeId, heads: &[PresenceHead]) -> Vec<Arc<Presence>> {
        let theirs: HashMap<NodeId, (u64, u64)> =
            heads.iter().map(|h| (h.origin, (h.run, h.seq))).collect();
        let newer = |origin: &NodeId, run: u64, chain: &[(u64, Arc<Presence>)]| {
            let head = theirs.get(origin).copied();
            chain
                .iter()
                .filter(move |(seq, _)| head.is_none_or(|h| (run, *seq) > h))
                .map(|(_, p)| p.clone())
                .collect::<Vec<_>>()
        };
        let mut out = newer(&self.me, self.own_run, &self.own);
        let mut origins: Vec<(&NodeId, &Origin)> =
            self.origins.iter().filter(|(id, _)| **id != peer).collect();
        origins.sort_by_key(|(id, _)| **id);
        for (id, o) in origins {
            out.extend(newer(id, o.run, &o.chain));
        }
        out
    }

    /// The session with `peer` ended: dial it again after a second.
    /// `failed`: the connection was lost (the member may be gone), so it
    /// leaves the ring until then; a session ended on purpose (by either
    /// side, as a surplus one is) keeps its place, so no view changes.
    pub(crate) fn down(&mut self, peer: NodeId, now: u64, failed: bool) {
        if self.sessions.remove(&peer) {
            self.backoff
                .insert(peer, (now + FIRST_BACKOFF_MS, FIRST_BACKOFF_MS));
            if failed {
                self.unreachable.insert(peer, now + FIRST_BACKOFF_MS);
            }
        }
    }

    /// A dial of `peer` ended without a session (`failed`: it was not
    /// reached, or is not a member: back off).
    pub(crate) fn dial_ended(&mut self, peer: NodeId, failed: bool, now: u64) {
        self.dialing.remove(&peer);
        if failed {
            let wait = self
                .backoff
                .get(&peer)
                .map_or(FIRST_BACKOFF_MS, |(_, w)| (w * 2).min(MAX_BACKOFF_MS));
            self.backoff.insert(peer, (now + wait, wait));
            self.unreachable.insert(peer, now + wait);
        }
    }

    /// Whether `peer` is unreachable for now (its dial backs off).
    fn failing(&self, peer: &NodeId, now: u64) -> bool {
        !self.sessions.contains(peer) && self.unreachable.get(peer).is_some_and(|t| *t > now)
    }

    /// The members `of` dials, on the ring of `ring` (sorted, `of` in it).
    fn fingers(&self, of: NodeId, ring: &[NodeId]) -> BTreeSet<NodeId> {
        let n = ring.len();
        let mut out = BTreeSet::new();
        let Ok(i) = ring.binary_search(&of) else {
            return out;
        };
        if n <= self.config.full_mesh + 1 {
            out.extend(ring.iter().copied().filter(|p| *p != of));
            return out;
        }
        out.insert(ring[(i + n - 1) % n]);
        let mut step = 1;
        while step < n {
            out.insert(ring[(i + step) % n]);
            step *= 2;
        }
        out
    }

    /// The ring: the members known and not failing, and this node.
    fn ring(&self, now: u64) -> Vec<NodeId> {
        let mut ring: Vec<NodeId> = self
            .known
            .iter()
            .filter(|p| !self.failing(p, now))
            .copied()
            .collect();
        ring.push(self.me);
        ring.sort();
        ring
    }

    /// The members this node keeps sessions with.
    pub(crate) fn view(&self, now: u64) -> BTreeSet<NodeId> {
        self.fingers(self.me, &self.ring(now))
    }

    /// The members to dial now (each is then in progress until
    /// [`Mesh::up`] or [`Mesh::dial_ended`]). A node with no session at
    /// all (it just started, or everyone it knew went away) dials every
    /// member it knows, up to [`ISOLATED_DIALS`] at once, view first: the
    /// first member that answers brings it into the room, whoever it is;
    /// the sessions no view needs end later as surplus.
    pub(crate) fn dials(&mut self, now: u64) -> Vec<NodeId> {
        let mut candidates: Vec<NodeId> = self.view(now).into_iter().collect();
        let limit = if self.sessions.is_empty() {
            let ring = self.ring(now);
            let i = ring.binary_search(&self.me).unwrap_or(0);
            // The rest of the ring, from this node on.
            candidates.extend(
                ring[i..]
                    .iter()
                    .chain(&ring[..i])
                    .filter(|p| **p != self.me)
                    .copied(),
            );
            ISOLATED_DIALS
        } else {
            self.config.max_dials
        };
        let mut out = Vec::new();
        for peer in candidates {
            if self.dialing.len() >= limit {
                break;
            }
            if self.sessions.contains(&peer)
                || self.dialing.contains(&peer)
                || self.backoff.get(&peer).is_some_and(|(t, _)| *t > now)
            {
                continue;
            }
            self.dialing.insert(peer);
            out.push(peer);
        }
        out
    }

    /// Sessions to end: beyond twice the view, those that neither side's
    /// view (as this node computes the other's) holds.
    pub(crate) fn surplus(&self, now: u64) -> Vec<NodeId> {
        let ring = self.ring(now);
        let mine = self.fingers(self.me, &ring);
        let bound = 2 * mine.len().max(self.config.full_mesh);
        if self.sessions.len() <= bound {
            return Vec::new();
        }
        let mut extra = self.sessions.len() - bound;
        let mut out = Vec::new();
        for peer in &self.sessions {
            if extra == 0 {
                break;
            }
            if !mine.contains(peer) && !self.fingers(*peer, &ring).contains(&self.me) {
                out.push(*peer);
                extra -= 1;
            }
        }
        out
    }

    /// Where to push entries (or anything flooded) that came from `from`.
    pub(crate) fn push_targets(&self, from: Option<NodeId>) -> Vec<NodeId> {
        self.sessions
            .iter()
            .filter(|p| Some(**p) != from)
            .copied()
            .collect()
    }

    /// This node's own presence (`run`, `seq`), made: remembered for new
    /// sessions. Returns where to send it.
    pub(crate) fn own(&mut self, p: Arc<Presence>, run: u64, seq: u64, reset: bool) -> Vec<NodeId> {
        if reset || run != self.own_run {
            self.own.clear();
        }
        if self.own.len() >= MAX_CHAIN {
            self.own.remove(0);
        }
        self.own_run = run;
        self.own.push((seq, p));
        self.push_targets(None)
    }

    /// Takes in a verified presence from the session of `from`.
    pub(crate) fn presence(
        &mut self,
        from: Option<NodeId>,
        p: Arc<Presence>,
        body: &PresenceBody,
        now: u64,
    ) -> Heard {
        if body.origin == self.me {
            return Heard::Old;
        }
        if !self.origins.contains_key(&body.origin) && self.origins.len() >= MAX_ORIGINS {
            return Heard::Old;
        }
        let timeout_ms = self
            .config
            .offline_after_ms
            .max(u64::from(body.status.heartbeat_ms) * 3);
        let o = self.origins.entry(body.origin).or_insert(Origin {
            run: 0,
            seq: 0,
            heard_ms: now,
            timeout_ms,
            phase: body.phase,
            chain: Vec::new(),
            gap: true,
        });
        if !o.chain.is_empty() && (body.run, body.seq) <= (o.run, o.seq) {
            return Heard::Old;
        }
        let next = !o.chain.is_empty() && body.run == o.run && body.seq == o.seq + 1;
        let apply = if body.status.reset {
            o.chain.clear();
            o.gap = false;
            Apply::Status(body.status.clone(), body.phase)
        } else if next && !o.gap {
            Apply::Status(body.status.clone(), body.phase)
        } else {
            o.chain.clear();
            o.gap = true;
            Apply::Alive(body.phase)
        };
        if o.chain.len() >= MAX_CHAIN {
            // No reset for too long: keep the latest only.
            o.chain.clear();
            o.gap = true;
        }
        o.chain.push((body.seq, p));
        o.run = body.run;
        o.seq = body.seq;
        o.heard_ms = now;
        o.timeout_ms = timeout_ms;
        o.phase = body.phase;
        Heard::New {
            forward: self.push_targets(from),
            apply,
        }
    }

    /// The presences of `origin` known, in order (to replay them once its
    /// direct session ends).
    pub(crate) fn chain(&self, origin: &NodeId) -> Vec<Arc<Presence>> {
        self.origins
            .get(origin)
            .map(|o| o.chain.iter().map(|(_, p)| p.clone()).collect())
            .unwrap_or_default()
    }

    /// The members online: with a session, or a replica whose last
    /// presence is recent and not a goodbye (a running room reads it from
    /// the overlay's snapshot, which must agree).
    #[cfg(any(test, feature = "sim", feature = "fuzzing"))]
    pub(crate) fn online(&self, now: u64) -> BTreeSet<NodeId> {
        let mut out = self.sessions.clone();
        out.extend(
            self.origins
                .keys()
                .filter(|id| self.is_online(id, now))
                .copied(),
        );
        out
    }

    /// Whether `peer` is online (see [`Mesh::online`]).
    pub(crate) fn is_online(&self, peer: &NodeId, now: u64) -> bool {
        self.sessions.contains(peer)
            || self.origins.get(peer).is_some_and(|o| {
                o.phase != PresencePhase::Gone && now.saturating_sub(o.heard_ms) < o.timeout_ms
            })
    }

    /// Until when (ms) a replica heard through presences is online (0 once
    /// it said goodbye); `None` for one never heard, or forgotten.
    pub(crate) fn heard_until(&self, origin: &NodeId) -> Option<u64> {
        self.origins.get(origin).map(|o| match o.phase {
            PresencePhase::Gone => 0,
            _ => o.heard_ms.saturating_add(o.timeout_ms),
        })
    }

    /// Forgets replicas silent for twice their timeout.
    pub(crate) fn expire(&mut self, now: u64) {
        self.origins
            .retain(|_, o| now.saturating_sub(o.heard_ms) < 2 * o.timeout_ms);
    }

    /// Up to `n` known members other than `to`, varied by `seed` (what a
    /// `Peers` message tells; the caller adds itself).
    pub(crate) fn sample(&self, to: NodeId, n: usize, seed: u64) -> Vec<NodeId> {
        let all: Vec<NodeId> = self.known.iter().filter(|p| **p != to).copied().collect();
        if all.len() <= n {
            return all;
        }
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut picked: BTreeMap<usize, NodeId> = BTreeMap::new();
        while picked.len() < n {
            let i = rng.usize(..all.len());
            picked.insert(i, all[i]);
        }
        picked.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u8) -> NodeId {
        NodeId::from_bytes([i; 32])
    }

    fn presence(origin: u8, run: u64, seq: u64, reset: bool, phase: PresencePhase) -> PresenceBody {
        PresenceBody {
            origin: id(origin),
            member: [0; 32],
            run,
            seq,
            phase,
            status: Status {
                reset,
                heartbeat_ms: 1000,
                ..Status::default()
            },
        }
    }

    fn wrap(b: &PresenceBody) -> Arc<Presence> {
        Arc::new(Presence {
            body: p2pfs_proto::codec::encode(b).unwrap_or_default(),
            sig: p2pfs_proto::room::Signature([0; 64]),
        })
    }

    #[test]
    fn small_rooms_are_a_full_mesh_big_ones_a_ring_with_fingers() {
        let mut m = Mesh::new(id(0), Config::default());
        for i in 1..=12 {
            m.learn(id(i));
        }
        assert_eq!(m.view(0).len(), 12);
        for i in 13..=100 {
            m.learn(id(i));
        }
        let v = m.view(0);
        // Predecessor, successor, and 2, 4, 8, 16, 32, 64 places on.
        let want: BTreeSet<NodeId> = [100, 1, 2, 4, 8, 16, 32, 64].map(id).into();
        assert_eq!(v, want);
    }

    #[test]
    fn an_unreachable_member_gives_its_place_to_the_next() {
        let mut m = Mesh::new(id(0), Config::default());
        for i in 1..=40 {
            m.learn(id(i));
        }
        m.up(id(20));
        let dials = m.dials(0);
        assert!(dials.contains(&id(1)) && dials.len() <= 8);
        m.dial_ended(id(1), true, 0);
        // Left out of the ring while it backs off: 2 is the successor.
        let v = m.view(10);
        assert!(!v.contains(&id(1)) && v.contains(&id(2)));
        // Back in the ring once its backoff ends, dialed again.
        assert!(m.view(FIRST_BACKOFF_MS).contains(&id(1)));
        m.dial_ended(id(1), true, FIRST_BACKOFF_MS);
        assert!(m.failing(&id(1), FIRST_BACKOFF_MS * 2));
        assert!(!m.failing(&id(1), FIRST_BACKOFF_MS * 3));
    }

    #[test]
    fn a_node_with_no_session_dials_everyone_it_knows_view_first() {
        // A member back in a room where most others are gone must not try
        // its view a few at a time, waiting out each dead one's timeout.
        let mut m = Mesh::new(id(0), Config::default());
        for i in 1..=40 {
            m.learn(id(i));
        }
        let view = m.view(0);
        let dials = m.dials(0);
        assert_eq!(dials.len(), ISOLATED_DIALS);
        assert_eq!(
            dials[..view.len()].iter().copied().collect::<BTreeSet<_>>(),
            view
        );
        for p in &dials {
            m.dial_ended(*p, true, 0);
        }
        // The other 8 next, once one is in: only the view.
        assert_eq!(m.dials(1).len(), 40 - ISOLATED_DIALS);
        m.up(id(40));
        for p in m.dials(1) {
            assert!(m.view(1).contains(&p));
        }
    }

    #[test]
    fn a_session_that_ends_keeps_its_place_in_the_ring() {
        // Ending a session (a surplus one, or a reset connection) must not
        // change the ring: every view computed from it would change, other
        // sessions would become surplus, and a big room would churn.
        let mut m = Mesh::new(id(0), Config::default());
        for i in 1..=40 {
            m.learn(id(i));
        }
        let before = m.view(0);
        for p in m.dials(0) {
            m.up(p);
        }
        m.up(id(30));
        m.down(id(30), 5, false);
        m.down(id(1), 5, false);
        assert_eq!(m.view(10), before);
        // Only redialed once the backoff ends.
        assert!(!m.dials(10).contains(&id(1)));
        assert!(m.dials(5 + FIRST_BACKOFF_MS).contains(&id(1)));
        // A lost connection: out of the ring until the backoff ends (the
        // member may be gone; the next takes its place meanwhile).
        m.up(id(1));
        m.down(id(1), 2000, true);
        assert!(!m.view(2010).contains(&id(1)));
        assert!(m.view(2000 + FIRST_BACKOFF_MS).contains(&id(1)));
    }

    #[test]
    fn presences_are_forwarded_once_and_chains_replayed() {
        let mut m = Mesh::new(id(0), Config::default());
        m.up(id(1));
        m.up(id(2));
        let b0 = presence(9, 5, 0, true, PresencePhase::Running);
        let heard = m.presence(Some(id(1)), wrap(&b0), &b0, 100);
        assert_eq!(
            heard,
            Heard::New {
                forward: vec![id(2)],
                apply: Apply::Status(b0.status.clone(), PresencePhase::Running)
            }
        );
        assert_eq!(m.presence(Some(id(2)), wrap(&b0), &b0, 101), Heard::Old);
        let b1 = presence(9, 5, 1, false, PresencePhase::Running);
        assert!(matches!(
            m.presence(Some(id(2)), wrap(&b1), &b1, 102),
            Heard::New {
                apply: Apply::Status(..),
                ..
            }
        ));
        // A new session that knows nothing gets the chain, reset first.
        m.up(id(3));
        assert_eq!(m.missing(id(3), &[]).len(), 2);
        assert_eq!(m.chain(&id(9)).len(), 2);
        // A gap: alive, what it keeps unknown until the next reset.
        let b3 = presence(9, 5, 3, false, PresencePhase::Leaving);
        assert!(matches!(
            m.presence(Some(id(2)), wrap(&b3), &b3, 103),
            Heard::New {
                apply: Apply::Alive(PresencePhase::Leaving),
                ..
            }
        ));
        let b4 = presence(9, 5, 4, false, PresencePhase::Running);
        assert!(matches!(
            m.presence(Some(id(2)), wrap(&b4), &b4, 104),
            Heard::New {
                apply: Apply::Alive(_),
                ..
            }
        ));
        let b5 = presence(9, 5, 5, true, PresencePhase::Running);
        assert!(matches!(
            m.presence(Some(id(2)), wrap(&b5), &b5, 105),
            Heard::New {
                apply: Apply::Status(..),
                ..
            }
        ));
        // A later run supersedes; an earlier one is old.
        let old = presence(9, 4, 50, true, PresencePhase::Running);
        assert_eq!(m.presence(None, wrap(&old), &old, 106), Heard::Old);
        assert!(m.online(106).contains(&id(9)));
        let gone = presence(9, 5, 6, false, PresencePhase::Gone);
        m.presence(None, wrap(&gone), &gone, 107);
        assert!(!m.online(107).contains(&id(9)));
        // Silent past its timeout: offline, later forgotten.
        let back = presence(9, 6, 0, true, PresencePhase::Running);
        m.presence(None, wrap(&back), &back, 200);
        assert!(m.online(200 + 179_999).contains(&id(9)));
        assert!(!m.online(200 + 180_000).contains(&id(9)));
        m.expire(200 + 360_000);
        assert!(m.chain(&id(9)).is_empty());
    }

    #[test]
    fn a_digest_asks_only_for_what_the_peer_lacks() {
        let mut m = Mesh::new(id(0), Config::default());
        m.up(id(1));
        for seq in 0..3 {
            let b = presence(9, 5, seq, seq == 0, PresencePhase::Running);
            m.presence(Some(id(1)), wrap(&b), &b, 100 + seq);
        }
        let own = presence(0, 7, 0, true, PresencePhase::Running);
        m.own(wrap(&own), 7, 0, true);
        let digest = m.digest();
        assert_eq!(
            digest,
            vec![
                PresenceHead {
                    origin: id(0),
                    run: 7,
                    seq: 0
                },
                PresenceHead {
                    origin: id(9),
                    run: 5,
                    seq: 2
                }
            ]
        );
        // A peer that knows as much gets nothing; one behind gets the rest
        // of the chain; one of an older run, all of it; one of a newer
        // run, nothing.
        let head = |origin: u8, run: u64, seq: u64| PresenceHead {
            origin: id(origin),
            run,
            seq,
        };
        assert!(m.missing(id(4), &digest).is_empty());
        assert_eq!(m.missing(id(4), &[head(0, 7, 0), head(9, 5, 0)]).len(), 2);
        assert_eq!(m.missing(id(4), &[head(0, 7, 0), head(9, 4, 9)]).len(), 3);
        assert!(m.missing(id(4), &[head(0, 7, 0), head(9, 6, 0)]).is_empty());
        // Nobody is sent its own presences; ours go to whoever lacks them.
        assert_eq!(m.missing(id(9), &[]).len(), 1);
        assert_eq!(m.missing(id(4), &[head(9, 5, 2)]).len(), 1);
        // A new run of this node starts its chain again.
        let again = presence(0, 8, 0, false, PresencePhase::Running);
        m.own(wrap(&again), 8, 0, false);
        assert_eq!(m.digest()[0], head(0, 8, 0));
        assert_eq!(m.missing(id(4), &[head(9, 5, 2)]).len(), 1);
    }

    #[test]
    fn surplus_sessions_are_those_no_view_needs() {
        let mut m = Mesh::new(id(0), Config::default());
        for i in 1..=100 {
            m.learn(id(i));
            m.up(id(i));
        }
        let surplus = m.surplus(0);
        assert!(!surplus.is_empty());
        let view = m.view(0);
        assert!(surplus.iter().all(|p| !view.contains(p)));
        assert!(m.sessions.len() - surplus.len() >= 2 * view.len().max(12));
    }
}
