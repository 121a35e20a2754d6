//! Which chunk groups to ask of which provider: a state machine with no I/O
//! and no clock of its own. The driver feeds it events (a request finished,
//! failed, made progress; a provider appeared or told what it has) and the
//! current time, and carries out the [`Action`]s it returns.
//!
//! Strategy:
//! - The missing groups are cut into *pieces* of up to
//!   [`Config::piece_groups`] groups, handed out lowest first (so a blob
//!   arrives roughly in order, which suits streaming reads), to providers
//!   that have them, up to [`Config::max_inflight`] at a time per provider.
//!   A free slot goes to the provider with the fewest requests in flight,
//!   so every provider takes part; a fast provider frees its slots sooner
//!   and so takes more pieces: work flows to where it is done fastest.
//!   At most [`Config::max_total_inflight`] requests run at once over all
//!   providers (more streams than that add work at both ends, not speed),
//!   or one per provider if they are more.
//! - *Tail*: once the missing groups nobody is fetching no longer fill
//!   every free slot with full pieces, pieces shrink (down to
//!   [`Config::min_piece_groups`]), so that the providers finish together
//!   rather than one carrying a whole piece alone at the end.
//! - *End game*: once every missing group is being fetched, an idle
//!   provider duplicates the oldest request it can serve that is
//!   *lagging*: one without progress for [`Config::lagging`], or one the
//!   idle provider would finish in well under the time its own provider
//!   still needs, by the rates measured so far (at most
//!   [`Config::max_copies`] copies). The first copy to finish cancels the
//!   others, so a slow provider cannot hold back the tail, and equal
//!   providers do not fetch the tail twice.
//! - A request with no new bytes for [`Config::stall`] is cancelled and its
//!   provider treated as failed. Transport failures put a provider on hold,
//!   longer each time, and drop it after [`Config::max_failures`]; bad data
//!   or a protocol error drops it at once, for this download.

use std::{
    collections::BTreeMap,
    fmt::Debug,
    ops::Range,
    time::{Duration, Instant},
};

use range_collections::{RangeSet2, range_set::RangeSetRange};

/// A set of chunk-group indices.
pub type Groups = RangeSet2<u64>;

/// Bytes in a chunk group, to turn rates into times.
const GROUP_BYTES: f64 = p2pfs_proto::chunk::CHUNK_GROUP_SIZE as f64;

/// See [`Config::max_total_inflight`].
const MAX_TOTAL_INFLIGHT: usize = 6;

/// Tunables.
#[derive(Debug, Clone)]
pub struct Config {
    /// Groups per request (256 = 4 MiB).
    pub piece_groups: u64,
    /// The smallest piece the tail is cut into (16 = 256 KiB).
    pub min_piece_groups: u64,
    /// Requests in flight per provider: four keep its pipe full while
    /// each request's decoder waits for its disk writes.
    pub max_inflight: usize,
    /// Requests in flight over all providers (at least one per provider).
    /// With 4 providers on 2 cores, 4 → 1 ran at 0.96, 1.00, 0.99 and
    /// 0.89× 1 → 1 with caps of 4, 6, 8 and 16.
    pub max_total_inflight: usize,
    /// A request without progress for this long may be copied in the end
    /// game whatever the rates say.
    pub lagging: Duration,
    /// A request with no progress for this long is abandoned.
    pub stall: Duration,
    /// Transport failures after which a provider is dropped.
    pub max_failures: u32,
    /// Hold after a transport failure (times the failure count).
    pub retry_after: Duration,
    /// Most copies of one request in the end game.
    pub max_copies: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            piece_groups: 256,
            min_piece_groups: 16,
            max_inflight: 4,
            max_total_inflight: MAX_TOTAL_INFLIGHT,
            lagging: Duration::from_secs(1),
            stall: Duration::from_secs(15),
            max_failures: 3,
            retry_after: Duration::from_secs(1),
            max_copies: 2,
        }
    }
}

/// What went wrong with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The provider has none of it (`have`: what it said it has, if anything).
    NotFound {
        /// The provider's have-map, if it sent one.
        have: Option<Groups>,
    },
    /// The connection or stream failed, or it was too slow.
    Transport,
    /// It sent data that failed verification.
    BadData,
    /// It broke the protocol.
    Protocol,
}

/// What the driver should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<P> {
    /// Ask `peer` for `groups`; report back with `id`.
    Start {
        /// Request id.
        id: u64,
        /// The provider.
        peer: P,
        /// The groups to ask for.
        groups: Range<u64>,
    },
    /// Stop request `id`; no report is expected any more.
    Cancel {
        /// Request id.
        id: u64,
    },
}

/// Why a provider no longer takes part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Too many transport failures.
    Failures,
    /// Sent bad data.
    BadData,
    /// Broke the protocol.
    Protocol,
    /// Has nothing of the blob.
    NotFound,
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Failures => "failed repeatedly",
            Self::BadData => "sent bad data",
            Self::Protocol => "broke the protocol",
            Self::NotFound => "does not have it",
        })
    }
}

#[derive(Debug)]
struct Peer {
    /// What it has; `None` until it says (assumed: everything).
    have: Option<Groups>,
    inflight: usize,
    failures: u32,
    hold_until: Option<Instant>,
    dropped: Option<Dropped>,
    /// Bytes received from it in all.
    received: u64,
    /// Bytes per second of its finished requests (a moving average).
    rate: Option<f64>,
}

#[derive(Debug)]
struct Request<P> {
    peer: P,
    groups: Range<u64>,
    started: Instant,
    bytes: u64,
    last_progress: Instant,
}

/// The download plan of one blob.
#[derive(Debug)]
pub struct Scheduler<P> {
    cfg: Config,
    total: u64,
    /// No group at or past this is asked for (see [`Scheduler::set_limit`]).
    limit: u64,
    done: Groups,
    peers: BTreeMap<P, Peer>,
    requests: BTreeMap<u64, Request<P>>,
    next_id: u64,
}

impl<P: Ord + Copy + Debug> Scheduler<P> {
    /// A plan for a blob of `total` groups of which `done` are present.
    pub fn new(total: u64, done: Groups, cfg: Config) -> Self {
        Self {
            cfg,
            total,
            limit: total,
            done,
            peers: BTreeMap::new(),
            requests: BTreeMap::new(),
            next_id: 0,
        }
    }

    /// Adds a provider (no effect if known).
    pub fn add_peer(&mut self, peer: P) {
        self.peers.entry(peer).or_insert(Peer {
            have: None,
            inflight: 0,
            failures: 0,
            hold_until: None,
            dropped: None,
            received: 0,
            rate: None,
        });
    }

    /// Asks for no group at or past `limit` until it is raised: a
    /// download that follows a reader stays at most so far ahead of it.
    /// Groups past it are not missing yet, nor done.
    pub fn set_limit(&mut self, limit: u64) {
        self.limit = limit.min(self.total);
    }

    /// Records what a provider has.
    pub fn set_have(&mut self, peer: P, have: Groups) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.have = Some(have);
        }
    }

    /// Request `id` has received `bytes` in all so far.
    pub fn progress(&mut self, id: u64, bytes: u64, now: Instant) {
        if let Some(r) = self.requests.get_mut(&id)
            && bytes > r.bytes
        {
            let delta = bytes - r.bytes;
            r.bytes = bytes;
            r.last_progress = now;
            if let Some(p) = self.peers.get_mut(&r.peer) {
                p.received += delta;
            }
        }
    }

    /// Request `id` ended well at `now`; `arrived` is what the store has
    /// of its groups now. Returns the cancels of copies made useless.
    pub fn finished(&mut self, id: u64, arrived: &Groups, now: Instant) -> Vec<Action<P>> {
        self.done |= arrived.clone();
        if let Some(r) = self.requests.remove(&id)
            && let Some(p) = self.peers.get_mut(&r.peer)
        {
            p.inflight = p.inflight.saturating_sub(1);
            p.failures = 0;
            let secs = now.saturating_duration_since(r.started).as_secs_f64();
            let bytes = match r.bytes {
                0 => (r.groups.end - r.groups.start) as f64 * GROUP_BYTES,
                b => b as f64,
            };
            if secs > 0.0 {
                let rate = bytes / secs;
                p.rate = Some(p.rate.map_or(rate, |old| (old + rate) / 2.0));
            }
        }
        self.cancel_useless()
    }

    /// Request `id` failed with `fault`; `arrived` as in
    /// [`Scheduler::finished`].
    pub fn failed(
        &mut self,
        id: u64,
        arrived: &Groups,
        fault: Fault,
        now: Instant,
    ) -> Vec<Action<P>> {
        self.done |= arrived.clone();
        let Some(r) = self.requests.remove(&id) else {
            return self.cancel_useless();
        };
        if let Some(p) = self.peers.get_mut(&r.peer) {
            p.inflight = p.inflight.saturating_sub(1);
            match fault {
                Fault::BadData => p.dropped = Some(Dropped::BadData),
                Fault::Protocol => p.dropped = Some(Dropped::Protocol),
                Fault::NotFound { have: Some(have) } if !have.is_empty() => {
                    // It has something else: do not ask it for these again.
                    let asked = Groups::from(r.groups.clone());
                    p.have = Some(&have - &asked);
                }
                Fault::NotFound { .. } => p.dropped = Some(Dropped::NotFound),
                Fault::Transport => {
                    p.failures += 1;
                    if p.failures >= self.cfg.max_failures {
                        p.dropped = Some(Dropped::Failures);
                    } else {
                        p.hold_until = Some(now + self.cfg.retry_after * p.failures);
                    }
                }
            }
        }
        let mut actions = Vec::new();
        // Copies of a request by a dropped peer go too.
        let dropped: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, r)| self.peers.get(&r.peer).is_some_and(|p| p.dropped.is_some()))
            .map(|(id, _)| *id)
            .collect();
        for id in dropped {
            self.remove_request(id);
            actions.push(Action::Cancel { id });
        }
        actions.extend(self.cancel_useless());
        actions
    }

    /// Cancels stalled requests and hands out work to idle providers.
    pub fn poll(&mut self, now: Instant) -> Vec<Action<P>> {
        let mut actions = Vec::new();
        let stalled: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, r)| now.saturating_duration_since(r.last_progress) >= self.cfg.stall)
            .map(|(id, _)| *id)
            .collect();
        for id in stalled {
            actions.push(Action::Cancel { id });
            actions.extend(self.failed(id, &Groups::empty(), Fault::Transport, now));
        }
        loop {
            let mut progressed = false;
            // The least busy first: with the cap over all providers
            // binding, a freed slot must not always go to the first by key.
            let mut peers: Vec<(usize, P)> =
                self.peers.iter().map(|(k, p)| (p.inflight, *k)).collect();
            peers.sort_unstable();
            for (_, peer) in peers {
                if !self.available(&peer, now) {
                    continue;
                }
                if let Some(groups) = self.pick(&peer, now) {
                    let id = self.next_id;
                    self.next_id += 1;
                    self.requests.insert(
                        id,
                        Request {
                            peer,
                            groups: groups.clone(),
                            started: now,
                            bytes: 0,
                            last_progress: now,
                        },
                    );
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.inflight += 1;
                    }
                    actions.push(Action::Start { id, peer, groups });
                    progressed = true;
                }
            }
            if !progressed {
                return actions;
            }
        }
    }

    /// Whether every group is present (past the limit too).
    pub fn is_done(&self) -> bool {
        (&Groups::from(0..self.total) - &self.done).is_empty()
    }

    /// Whether the download cannot progress: not done, nothing in flight,
    /// and no provider left (or none that has a missing group).
    pub fn is_stuck(&self, now: Instant) -> bool {
        if self.is_done() || !self.requests.is_empty() {
            return false;
        }
        let _ = now;
        let missing = self.missing();
        if missing.is_empty() {
            // Everything up to the limit is here: waiting for it to grow.
            return false;
        }
        // A provider on hold comes back; only dropped ones are gone.
        !self.peers.values().any(|p| {
            p.dropped.is_none() && p.have.as_ref().is_none_or(|h| !(&missing & h).is_empty())
        })
    }

    /// The groups not yet present, up to the limit.
    pub fn missing(&self) -> Groups {
        &Groups::from(0..self.limit) - &self.done
    }

    /// Groups present.
    pub fn done(&self) -> &Groups {
        &self.done
    }

    /// Bytes received from `peer` so far.
    pub fn received_from(&self, peer: &P) -> u64 {
        self.peers.get(peer).map_or(0, |p| p.received)
    }

    /// Providers still taking part.
    pub fn active_peers(&self) -> usize {
        self.peers.values().filter(|p| p.dropped.is_none()).count()
    }

    /// Why each dropped provider was dropped.
    pub fn dropped(&self) -> Vec<(P, Dropped)> {
        self.peers
            .iter()
            .filter_map(|(k, p)| p.dropped.map(|d| (*k, d)))
            .collect()
    }

    /// Requests in flight.
    pub fn inflight(&self) -> usize {
        self.requests.len()
    }

    /// When the next stall deadline or hold expires, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        let stalls = self
            .requests
            .values()
            .map(|r| r.last_progress + self.cfg.stall);
        let holds = self.peers.values().filter_map(|p| p.hold_until);
        stalls.chain(holds).min()
    }

    /// Requests allowed in flight over all providers: the configured cap,
    /// or one per provider taking part if they are more.
    fn total_cap(&self) -> usize {
        self.cfg.max_total_inflight.max(self.active_peers())
    }

    fn available(&mut self, peer: &P, now: Instant) -> bool {
        if self.requests.len() >= self.total_cap() {
            return false;
        }
        let max = self.cfg.max_inflight;
        let Some(p) = self.peers.get_mut(peer) else {
            return false;
        };
        if p.hold_until.is_some_and(|t| t <= now) {
            p.hold_until = None;
        }
        p.dropped.is_none() && p.hold_until.is_none() && p.inflight < max
    }

    /// The next piece for `peer`: the lowest missing groups nobody is
    /// fetching that it has; else, in the end game, a copy of the oldest
    /// lagging request it can serve.
    fn pick(&self, peer: &P, now: Instant) -> Option<Range<u64>> {
        let p = self.peers.get(peer)?;
        let mut busy = Groups::empty();
        for r in self.requests.values() {
            busy |= Groups::from(r.groups.clone());
        }
        let mut free = &self.missing() - &busy;
        if let Some(h) = &p.have {
            free &= h.clone();
        }
        if let Some((start, end)) = first_run(&free) {
            let end = end.min(start + self.piece(&free)).min(self.total);
            return Some(start..end);
        }
        // End game.
        self.requests
            .values()
            .filter(|r| r.peer != *peer)
            .filter(|r| {
                let remaining = &Groups::from(r.groups.clone()) - &self.done;
                !remaining.is_empty()
                    && p.have.as_ref().is_none_or(|h| remaining.is_subset(h))
                    && self.lagging(r, p.rate, now)
                    && self.copies(&r.groups) < self.cfg.max_copies
                    && !self
                        .requests
                        .values()
                        .any(|o| o.peer == *peer && o.groups == r.groups)
            })
            .min_by_key(|r| r.started)
            .map(|r| r.groups.clone())
    }

    /// The size of the next piece, `free` being the missing groups nobody
    /// is fetching: full pieces while they fill every slot, then an even
    /// share of what is left per slot.
    fn piece(&self, free: &Groups) -> u64 {
        let free_groups: u64 = free
            .iter()
            .map(|r| match r {
                RangeSetRange::Range(r) => r.end - r.start,
                RangeSetRange::RangeFrom(r) => self.total.saturating_sub(*r.start),
            })
            .sum();
        let slots = (self.active_peers() * self.cfg.max_inflight)
            .min(self.total_cap())
            .max(1) as u64;
        let max = self.cfg.piece_groups.max(1);
        free_groups
            .div_ceil(slots)
            .clamp(self.cfg.min_piece_groups.clamp(1, max), max)
    }

    /// Whether a copy of `r` by a provider of rate `rate` (bytes/s, if
    /// known) is worth making at `now`: `r` has stalled, or the copy would
    /// finish in less than half the time `r` still needs.
    fn lagging(&self, r: &Request<P>, rate: Option<f64>, now: Instant) -> bool {
        if now.saturating_duration_since(r.last_progress) >= self.cfg.lagging {
            return true;
        }
        let Some(rate) = rate.filter(|r| *r > 0.0) else {
            // Nothing known of the idle provider: copy, as a classic end
            // game does.
            return true;
        };
        let size = (r.groups.end - r.groups.start) as f64 * GROUP_BYTES;
        let elapsed = now.saturating_duration_since(r.started).as_secs_f64();
        let theirs = match r.bytes {
            0 => self.peers.get(&r.peer).and_then(|p| p.rate),
            b if elapsed > 0.0 => Some(b as f64 / elapsed),
            _ => None,
        };
        let Some(theirs) = theirs.filter(|t| *t > 0.0) else {
            return false;
        };
        let left = (size - r.bytes as f64).max(0.0) / theirs;
        size / rate * 2.0 < left
    }

    fn copies(&self, groups: &Range<u64>) -> usize {
        self.requests
            .values()
            .filter(|r| r.groups == *groups)
            .count()
    }

    fn remove_request(&mut self, id: u64) {
        if let Some(r) = self.requests.remove(&id)
            && let Some(p) = self.peers.get_mut(&r.peer)
        {
            p.inflight = p.inflight.saturating_sub(1);
        }
    }

    /// Cancels requests whose groups are all present now.
    fn cancel_useless(&mut self) -> Vec<Action<P>> {
        let useless: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, r)| (&Groups::from(r.groups.clone()) - &self.done).is_empty())
            .map(|(id, _)| *id)
            .collect();
        useless
            .into_iter()
            .map(|id| {
                self.remove_request(id);
                Action::Cancel { id }
            })
            .collect()
    }
}

/// The first bounded run of a set.
fn first_run(set: &Groups) -> Option<(u64, u64)> {
    match set.iter().next()? {
        RangeSetRange::Range(r) => Some((*r.start, *r.end)),
        RangeSetRange::RangeFrom(r) => Some((*r.start, u64::MAX)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config {
            piece_groups: 4,
            min_piece_groups: 4,
            max_inflight: 2,
            max_total_inflight: 64,
            lagging: Duration::from_secs(1),
            stall: Duration::from_secs(10),
            max_failures: 2,
            retry_after: Duration::from_secs(1),
            max_copies: 2,
        }
    }

    fn starts(actions: &[Action<u8>]) -> Vec<(u64, u8, Range<u64>)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Start { id, peer, groups } => Some((*id, *peer, groups.clone())),
                Action::Cancel { .. } => None,
            })
            .collect()
    }

    fn g(r: Range<u64>) -> Groups {
        Groups::from(r)
    }

    #[test]
    fn one_provider_gets_pieces_in_order_and_finishes() {
        let t = Instant::now();
        let mut s = Scheduler::new(10, Groups::empty(), cfg());
        s.add_peer(1u8);
        let a = starts(&s.poll(t));
        assert_eq!(a, vec![(0, 1, 0..4), (1, 1, 4..8)]);
        assert!(s.finished(0, &g(0..4), t).is_empty());
        let a = starts(&s.poll(t));
        assert_eq!(a, vec![(2, 1, 8..10)]);
        s.finished(1, &g(4..8), t);
        s.finished(2, &g(8..10), t);
        assert!(s.is_done());
        assert!(s.poll(t).is_empty());
    }

    #[test]
    fn resumes_from_what_is_present() {
        let t = Instant::now();
        let mut s = Scheduler::new(12, g(0..6), cfg());
        s.add_peer(1u8);
        let a = starts(&s.poll(t));
        assert_eq!(a, vec![(0, 1, 6..10), (1, 1, 10..12)]);
    }

    #[test]
    fn work_is_spread_and_bad_data_drops_a_provider() {
        let t = Instant::now();
        let mut s = Scheduler::new(16, Groups::empty(), cfg());
        s.add_peer(1u8);
        s.add_peer(2u8);
        let a = starts(&s.poll(t));
        assert_eq!(a.len(), 4);
        assert!(a.iter().any(|x| x.1 == 1) && a.iter().any(|x| x.1 == 2));
        // Peer 2's first request carries bad data: it is dropped, its other
        // request cancelled, and its groups go to peer 1.
        let id2 = a.iter().find(|x| x.1 == 2).unwrap().0;
        let acts = s.failed(id2, &Groups::empty(), Fault::BadData, t);
        assert_eq!(acts.len(), 1);
        assert!(matches!(acts[0], Action::Cancel { .. }));
        assert_eq!(s.dropped(), vec![(2, Dropped::BadData)]);
        // Peer 1 finishes what it has and takes the rest.
        for (id, _, r) in a.iter().filter(|x| x.1 == 1) {
            s.finished(*id, &g(r.clone()), t);
        }
        let mut guard = 0;
        while !s.is_done() && guard < 20 {
            guard += 1;
            for (id, peer, r) in starts(&s.poll(t)) {
                assert_eq!(peer, 1);
                s.finished(id, &g(r), t);
            }
        }
        assert!(s.is_done());
    }

    #[test]
    fn a_stalled_request_is_cancelled_and_retried_elsewhere() {
        let t = Instant::now();
        let mut c = cfg();
        c.max_inflight = 1;
        let mut s = Scheduler::new(8, Groups::empty(), c);
        s.add_peer(1u8);
        s.add_peer(2u8);
        let a = starts(&s.poll(t));
        assert_eq!(a, vec![(0, 1, 0..4), (1, 2, 4..8)]);
        s.progress(1, 1000, t + Duration::from_secs(5));
        s.finished(1, &g(4..8), t + Duration::from_secs(5));
        // Peer 2 is idle now and duplicates peer 1's request (end game).
        let a = starts(&s.poll(t + Duration::from_secs(6)));
        assert_eq!(a, vec![(2, 2, 0..4)]);
        // Peer 1 never sends a byte: cancelled at the stall deadline.
        let acts = s.poll(t + Duration::from_secs(11));
        assert!(acts.contains(&Action::Cancel { id: 0 }));
        s.finished(2, &g(0..4), t);
        assert!(s.is_done());
    }

    #[test]
    fn end_game_copies_are_cancelled_when_one_finishes() {
        let t = Instant::now();
        let mut c = cfg();
        c.max_inflight = 1;
        let mut s = Scheduler::new(4, Groups::empty(), c);
        s.add_peer(1u8);
        s.add_peer(2u8);
        let a = starts(&s.poll(t));
        assert_eq!(a, vec![(0, 1, 0..4), (1, 2, 0..4)]);
        let acts = s.finished(1, &g(0..4), t);
        assert_eq!(acts, vec![Action::Cancel { id: 0 }]);
        assert!(s.is_done());
    }

    #[test]
    fn partial_providers_are_asked_only_for_what_they_have() {
        let t = Instant::now();
        let mut s = Scheduler::new(8, Groups::empty(), cfg());
        s.add_peer(1u8);
        s.set_have(1, g(4..8));
        let a = starts(&s.poll(t));
        assert_eq!(a, vec![(0, 1, 4..8)]);
        s.finished(0, &g(4..8), t);
        assert!(starts(&s.poll(t)).is_empty());
        assert!(s.is_stuck(t));
        s.add_peer(2u8);
        assert!(!s.is_stuck(t));
        assert_eq!(starts(&s.poll(t)), vec![(1, 2, 0..4)]);
    }

    #[test]
    fn transport_failures_hold_then_drop_a_provider() {
        let t = Instant::now();
        let mut c = cfg();
        c.max_inflight = 1;
        let mut s = Scheduler::new(4, Groups::empty(), c);
        s.add_peer(1u8);
        let a = starts(&s.poll(t));
        s.failed(a[0].0, &g(0..1), Fault::Transport, t);
        // On hold for a second; what arrived before the failure is kept.
        assert!(starts(&s.poll(t)).is_empty());
        let a = starts(&s.poll(t + Duration::from_secs(1)));
        assert_eq!(a, vec![(1, 1, 1..4)]);
        s.failed(1, &Groups::empty(), Fault::Transport, t);
        assert_eq!(s.dropped(), vec![(1, Dropped::Failures)]);
        assert!(s.is_stuck(t + Duration::from_secs(10)));
    }

    #[test]
    fn the_tail_is_cut_into_shares_of_the_free_slots() {
        let t = Instant::now();
        let mut c = cfg();
        c.piece_groups = 16;
        c.min_piece_groups = 2;
        let mut s = Scheduler::new(100, Groups::empty(), c);
        s.add_peer(1u8);
        s.add_peer(2u8);
        let sizes: Vec<u64> = starts(&s.poll(t))
            .iter()
            .map(|(_, _, r)| r.end - r.start)
            .collect();
        // 100 free groups over 4 slots: full pieces while they fill the
        // slots, then shares.
        assert_eq!(sizes, vec![16, 16, 16, 13]);
        s.finished(0, &g(0..16), t + Duration::from_secs(1));
        // 39 left for the one free slot of 4: a quarter.
        let a = starts(&s.poll(t + Duration::from_secs(1)));
        assert_eq!(a, vec![(4, 1, 61..71)]);
    }

    /// Providers 1 to 4, up to 4 requests each and 6 in all.
    fn four_providers_capped_at_six() -> Scheduler<u8> {
        let mut c = cfg();
        c.max_inflight = 4;
        c.max_total_inflight = 6;
        let mut s = Scheduler::new(1000, Groups::empty(), c);
        for p in 1..=4u8 {
            s.add_peer(p);
        }
        s
    }

    #[test]
    fn requests_over_all_providers_are_capped() {
        let t = Instant::now();
        let mut s = four_providers_capped_at_six();
        let a = starts(&s.poll(t));
        assert_eq!(a.len(), 6);
        // Spread over the providers, not all to the first.
        assert!((1..=4u8).all(|p| a.iter().any(|x| x.1 == p)));
        s.finished(a[0].0, &g(a[0].2.clone()), t);
        assert_eq!(starts(&s.poll(t)).len(), 1);
    }

    /// Equal providers, each limited by its own link (they finish a
    /// request in turn, each its oldest), with the cap over all providers
    /// below what they would take: every provider keeps taking part. (A
    /// freed slot went to the first provider by key, so two of four
    /// providers did almost all of the work, and 4 → 1 over links limited
    /// per provider ran at the speed of 2 → 1.)
    #[test]
    fn freed_slots_go_to_the_providers_with_the_fewest_requests() {
        let t = Instant::now();
        let mut s = four_providers_capped_at_six();
        let mut live: Vec<(u64, u8, Range<u64>)> = starts(&s.poll(t));
        let mut pieces = [0u32; 5];
        for step in 0..80 {
            let Some(i) = (0..4u8)
                .map(|k| (step + k) % 4 + 1)
                .find_map(|p| live.iter().position(|x| x.1 == p))
            else {
                panic!("nothing in flight");
            };
            let (id, _, r) = live.remove(i);
            s.finished(id, &g(r), t);
            for a in starts(&s.poll(t)) {
                pieces[a.1 as usize] += 1;
                live.push(a);
            }
            let per = |p: u8| live.iter().filter(|x| x.1 == p).count();
            let (lo, hi) = (
                (1..=4u8).map(per).min().unwrap(),
                (1..=4u8).map(per).max().unwrap(),
            );
            assert!(hi - lo <= 1, "requests in flight per provider: {live:?}");
        }
        assert!(pieces[1..].iter().all(|&n| n >= 15), "{pieces:?}");
    }

    /// More providers than the cap over all providers: each still gets a
    /// request.
    #[test]
    fn every_provider_gets_a_request_when_they_outnumber_the_cap() {
        let t = Instant::now();
        let mut c = cfg();
        c.max_total_inflight = 6;
        let mut s = Scheduler::new(1000, Groups::empty(), c);
        for p in 1..=9u8 {
            s.add_peer(p);
        }
        let a = starts(&s.poll(t));
        assert!((1..=9u8).all(|p| a.iter().any(|x| x.1 == p)), "{a:?}");
        assert_eq!(a.len(), 9);
    }

    #[test]
    fn the_end_game_copies_only_what_lags() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let mut c = cfg();
        c.max_inflight = 1;
        let mut s = Scheduler::new(8, Groups::empty(), c);
        s.add_peer(1u8);
        s.add_peer(2u8);
        assert_eq!(starts(&s.poll(t)), vec![(0, 1, 0..4), (1, 2, 4..8)]);
        // Both move 4 groups (64 KiB) in 100 ms.
        s.progress(0, 40_000, t + ms(60));
        s.progress(1, 65_536, t + ms(100));
        s.finished(1, &g(4..8), t + ms(100));
        // Peer 1 is as fast and nearly done: no copy.
        assert!(starts(&s.poll(t + ms(100))).is_empty());
        // Peer 1 slows down to a crawl: a copy by peer 2 is worth it.
        s.progress(0, 40_100, t + ms(900));
        assert_eq!(starts(&s.poll(t + ms(900))), vec![(2, 2, 0..4)]);
        let acts = s.finished(2, &g(0..4), t + ms(1000));
        assert_eq!(acts, vec![Action::Cancel { id: 0 }]);
        assert!(s.is_done());
    }

    #[test]
    fn a_limit_holds_the_download_back_until_raised() {
        let t = Instant::now();
        let mut c = cfg();
        c.max_inflight = 4;
        let mut s = Scheduler::new(20, Groups::empty(), c);
        s.add_peer(1u8);
        s.set_limit(6);
        assert_eq!(starts(&s.poll(t)), vec![(0, 1, 0..4), (1, 1, 4..6)]);
        s.finished(0, &g(0..4), t);
        s.finished(1, &g(4..6), t);
        // Waiting, not done and not stuck.
        assert!(starts(&s.poll(t)).is_empty());
        assert!(!s.is_done() && !s.is_stuck(t));
        s.set_limit(100);
        assert_eq!(s.poll(t).len(), 4);
    }

    /// Many simulated runs: providers of random speed and honesty, on a
    /// virtual clock. The download always completes from the honest ones,
    /// no one is asked for what it lacks, and liars get no second chance.
    #[test]
    fn simulated_swarms_complete() {
        for seed in 0..300 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let total = rng.u64(1..200);
            let c = Config {
                piece_groups: rng.u64(1..16),
                max_inflight: rng.usize(1..4),
                ..Default::default()
            };
            let mut s = Scheduler::new(total, Groups::empty(), c.clone());
            let n = rng.u8(1..6);
            // (speed in groups per second, liar, have)
            let mut peers = Vec::new();
            for p in 0..n {
                let liar = p > 0 && rng.u8(..4) == 0;
                let have = if p == 0 || rng.bool() {
                    g(0..total)
                } else {
                    g(0..rng.u64(0..=total))
                };
                peers.push((rng.u64(1..50), liar, have.clone()));
                s.add_peer(p);
                if rng.bool() {
                    s.set_have(p, have);
                }
            }
            let mut now = Instant::now();
            // id -> (peer, groups, finish time)
            let mut running: BTreeMap<u64, (u8, Range<u64>, Instant)> = BTreeMap::new();
            let mut steps = 0;
            while !s.is_done() {
                steps += 1;
                assert!(steps < 100_000, "seed {seed}: no progress");
                for a in s.poll(now) {
                    match a {
                        Action::Start { id, peer, groups } => {
                            let (speed, _, have) = &peers[peer as usize];
                            let secs = (groups.end - groups.start) as f64 / *speed as f64;
                            let _ = have;
                            running.insert(id, (peer, groups, now + Duration::from_secs_f64(secs)));
                        }
                        Action::Cancel { id } => {
                            running.remove(&id);
                        }
                    }
                }
                let Some((&id, &(peer, ref groups, at))) =
                    running.iter().min_by_key(|(_, (_, _, at))| *at)
                else {
                    assert!(!s.is_stuck(now) || s.is_done(), "seed {seed}: stuck");
                    now += Duration::from_millis(100);
                    continue;
                };
                let groups = groups.clone();
                now = now.max(at);
                running.remove(&id);
                let (_, liar, have) = &peers[peer as usize];
                let asked = g(groups.clone());
                let acts = if *liar {
                    s.failed(id, &Groups::empty(), Fault::BadData, now)
                } else if !asked.is_subset(have) {
                    let got = &asked & have;
                    s.failed(
                        id,
                        &got,
                        Fault::NotFound {
                            have: Some(have.clone()),
                        },
                        now,
                    )
                } else {
                    s.finished(id, &asked, now)
                };
                for a in acts {
                    if let Action::Cancel { id } = a {
                        running.remove(&id);
                    }
                }
            }
            for (p, d) in s.dropped() {
                let liar = peers[p as usize].1;
                if d == Dropped::BadData {
                    assert!(liar, "seed {seed}: honest peer {p} dropped");
                }
            }
        }
    }
}
