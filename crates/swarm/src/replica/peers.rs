//! What the other replicas of a room said of themselves, and which of them
//! count as online for placement.
//!
//! A replica is online while its last status is younger than the offline
//! timeout. One that was offline and comes back is a candidate for new
//! files again only after it has been heard for the timeout once more, so
//! a member that keeps dropping out moves files at most once per timeout.
//! A member's copies count as soon as it reports them.
//!
//! A replica that says it is leaving stays online (what it holds can still
//! be fetched from it) but is no candidate; one that says goodbye is
//! offline at once, until it starts a new session.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use p2pfs_proto::{Hash, NodeId, room::Status};

/// Most hashes remembered of one member (a room's files, with room to
/// spare): a member cannot grow this without bound.
const MAX_HELD: usize = 1 << 20;

/// One replica as this node last heard it.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub(crate) last_heard: Instant,
    /// How long it may stay silent: the offline timeout, or three of its
    /// heartbeats if that is longer.
    pub(crate) timeout: Duration,
    /// When it becomes a candidate for placement.
    pub(crate) admitted_at: Instant,
    pub(crate) full: bool,
    pub(crate) holds: HashSet<Hash>,
    /// It said it is leaving ([`SyncMsg::Leaving`](p2pfs_proto::room::SyncMsg)).
    pub(crate) leaving: bool,
    /// When it said goodbye, if it did (since its last session start).
    pub(crate) gone: Option<Instant>,
}

impl Peer {
    /// Whether it has been heard from within its timeout (and has not said
    /// goodbye).
    pub(crate) fn is_online(&self, now: Instant) -> bool {
        self.gone.is_none() && now.saturating_duration_since(self.last_heard) < self.timeout
    }

    /// Whether it may be given files at `now` (if online).
    pub(crate) fn admitted(&self, now: Instant) -> bool {
        !self.leaving && now >= self.admitted_at
    }

    /// Whether it is going or just went: its files are copied again at
    /// once, without waiting for the view to settle.
    pub(crate) fn departing(&self, now: Instant, within: Duration) -> bool {
        match self.gone {
            Some(t) => now.saturating_duration_since(t) < within,
            None => self.leaving && self.is_online(now),
        }
    }
}

/// The replicas of one room.
#[derive(Debug, Default)]
pub(crate) struct Peers {
    map: HashMap<NodeId, Peer>,
}

impl Peers {
    /// Takes in a status from `peer`, heard at `now`. Returns whether
    /// anything placement looks at changed (a plain heartbeat: no).
    pub(crate) fn heard(
        &mut self,
        peer: NodeId,
        s: Status,
        now: Instant,
        offline_after: Duration,
    ) -> bool {
        let timeout = offline_after.max(Duration::from_millis(u64::from(s.heartbeat_ms)) * 3);
        let mut changed = false;
        let p = self.map.entry(peer).or_insert_with(|| {
            changed = true;
            Peer {
                last_heard: now,
                timeout,
                admitted_at: now,
                full: false,
                holds: HashSet::new(),
                leaving: false,
                gone: None,
            }
        });
        if p.gone.is_some() && !s.reset {
            // Sent before its goodbye arrived, on the old session.
            return false;
        }
        if p.gone.is_some() || (p.leaving && s.reset) {
            // A new session: back, as after being offline.
            p.gone = None;
            p.leaving = false;
            p.admitted_at = now + timeout;
            changed = true;
        } else if now.saturating_duration_since(p.last_heard) >= p.timeout {
            // Back after being offline: copies count now, new files later.
            p.admitted_at = now + timeout;
            changed = true;
        }
        p.last_heard = now;
        p.timeout = timeout;
        changed |= p.full != s.full || s.reset || !s.add.is_empty() || !s.remove.is_empty();
        p.full = s.full;
        if s.reset {
            p.holds.clear();
        }
        for h in &s.remove {
            p.holds.remove(h);
        }
        for h in s.add {
            if p.holds.len() >= MAX_HELD {
                break;
            }
            p.holds.insert(h);
        }
        changed
    }

    /// `peer` said it is leaving. Returns whether that changed anything.
    pub(crate) fn leaving(&mut self, peer: NodeId) -> bool {
        match self.map.get_mut(&peer) {
            Some(p) if !p.leaving && p.gone.is_none() => {
                p.leaving = true;
                true
            }
            _ => false,
        }
    }

    /// `peer` said goodbye at `now`. Returns whether that changed anything.
    pub(crate) fn goodbye(&mut self, peer: NodeId, now: Instant) -> bool {
        match self.map.get_mut(&peer) {
            Some(p) if p.gone.is_none() => {
                p.gone = Some(now);
                true
            }
            _ => false,
        }
    }

    /// Whether `peer` said goodbye (since its last session start).
    pub(crate) fn is_gone(&self, peer: &NodeId) -> bool {
        self.map.get(peer).is_some_and(|p| p.gone.is_some())
    }

    /// The replicas heard from recently enough.
    pub(crate) fn online(&self, now: Instant) -> impl Iterator<Item = (&NodeId, &Peer)> {
        self.map.iter().filter(move |(_, p)| p.is_online(now))
    }

    /// What is known of `peer`.
    #[cfg(test)]
    pub(crate) fn get(&self, peer: &NodeId) -> Option<&Peer> {
        self.map.get(peer)
    }

    /// Every replica ever heard from while this node runs.
    pub(crate) fn all(&self) -> impl Iterator<Item = (&NodeId, &Peer)> {
        self.map.iter()
    }

    /// What a plan takes ([`super::plan::Inputs::peers`]): the replicas
    /// other than `me` online at `now`, each with whether it is a
    /// candidate for placement.
    pub(crate) fn for_plan(&self, me: NodeId, now: Instant) -> Vec<(NodeId, &Peer, bool)> {
        self.online(now)
            .filter(|(id, _)| **id != me)
            .map(|(id, p)| (*id, p, p.admitted(now)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(reset: bool, add: &[u8], remove: &[u8]) -> Status {
        Status {
            full: false,
            reset,
            heartbeat_ms: 1000,
            add: add.iter().map(|n| Hash::of(&[*n])).collect(),
            remove: remove.iter().map(|n| Hash::of(&[*n])).collect(),
        }
    }

    #[test]
    fn holdings_follow_resets_and_deltas() {
        let (mut p, t0, d) = (Peers::default(), Instant::now(), Duration::from_secs(10));
        let a = NodeId::from_bytes([1; 32]);
        p.heard(a, st(true, &[1, 2, 3], &[]), t0, d);
        p.heard(a, st(false, &[4], &[2]), t0, d);
        let held = |p: &Peers| {
            let mut v: Vec<Hash> = p.get(&a).unwrap().holds.iter().copied().collect();
            v.sort();
            v
        };
        let mut want: Vec<Hash> = [1u8, 3, 4].iter().map(|n| Hash::of(&[*n])).collect();
        want.sort();
        assert_eq!(held(&p), want);
        p.heard(a, st(true, &[9], &[]), t0, d);
        assert_eq!(held(&p), vec![Hash::of(&[9])]);
    }

    impl Peers {
        fn candidates(&self, now: Instant) -> impl Iterator<Item = (&NodeId, &Peer)> {
            self.online(now).filter(move |(_, p)| p.admitted(now))
        }
    }

    #[test]
    fn offline_after_the_timeout_and_readmitted_after_another() {
        let (mut p, t0, d) = (Peers::default(), Instant::now(), Duration::from_secs(10));
        let a = NodeId::from_bytes([1; 32]);
        p.heard(a, st(true, &[], &[]), t0, d);
        // A new member is a candidate at once.
        assert_eq!(p.candidates(t0).count(), 1);
        let s = |x| t0 + Duration::from_secs(x);
        assert_eq!(p.online(s(9)).count(), 1);
        assert_eq!(p.online(s(10)).count(), 0);
        // Heard again within the timeout: nothing changes.
        p.heard(a, st(false, &[], &[]), s(9), d);
        assert_eq!(p.candidates(s(18)).count(), 1);
        // Back after being offline: online, a candidate only later.
        p.heard(a, st(false, &[], &[]), s(30), d);
        assert_eq!(p.online(s(30)).count(), 1);
        assert_eq!(p.candidates(s(35)).count(), 0);
        assert!(
            !p.heard(a, st(false, &[], &[]), s(36), d),
            "a plain heartbeat"
        );
        assert_eq!(p.candidates(s(40)).count(), 1);
    }

    #[test]
    fn leaving_stops_candidacy_and_goodbye_is_offline_until_a_new_session() {
        let (mut p, t0, d) = (Peers::default(), Instant::now(), Duration::from_secs(10));
        let a = NodeId::from_bytes([1; 32]);
        p.heard(a, st(true, &[1], &[]), t0, d);
        assert!(p.leaving(a));
        assert!(!p.leaving(a), "once");
        assert_eq!(p.online(t0).count(), 1, "still serving");
        assert_eq!(p.candidates(t0).count(), 0);
        assert!(p.get(&a).unwrap().departing(t0, d));
        // A heartbeat on the same session keeps it leaving.
        assert!(!p.heard(a, st(false, &[], &[]), t0, d));
        assert_eq!(p.candidates(t0).count(), 0);
        assert!(p.goodbye(a, t0));
        assert_eq!(p.online(t0).count(), 0);
        assert!(!p.heard(a, st(false, &[], &[]), t0, d), "a late heartbeat");
        assert_eq!(p.online(t0).count(), 0);
        assert!(p.get(&a).unwrap().departing(t0 + Duration::from_secs(9), d));
        assert!(
            !p.get(&a)
                .unwrap()
                .departing(t0 + Duration::from_secs(10), d)
        );
        // Back with a new session: online at once, a candidate later.
        let s = |x| t0 + Duration::from_secs(x);
        assert!(p.heard(a, st(true, &[1], &[]), s(1), d));
        assert_eq!(p.online(s(1)).count(), 1);
        assert_eq!(p.candidates(s(5)).count(), 0);
        p.heard(a, st(false, &[], &[]), s(10), d);
        assert_eq!(p.candidates(s(11)).count(), 1);
    }

    #[test]
    fn a_slow_heartbeat_gets_three_of_them_whatever_our_timeout() {
        let (mut p, t0) = (Peers::default(), Instant::now());
        let a = NodeId::from_bytes([1; 32]);
        let mut slow = st(true, &[], &[]);
        slow.heartbeat_ms = 30_000;
        assert!(p.heard(a, slow, t0, Duration::from_secs(20)));
        assert_eq!(p.online(t0 + Duration::from_secs(80)).count(), 1);
        assert_eq!(p.online(t0 + Duration::from_secs(90)).count(), 0);
    }
}
