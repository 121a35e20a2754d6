//! An iterative Kademlia lookup as a state machine: no I/O and no clock.
//!
//! The caller feeds it answers, failures and the current time; it says whom
//! to ask next. The same code runs in the node (over QUIC) and in the
//! simulator ([`super::sim`]).
//!
//! The procedure is the paper's. Start from the closest nodes we know; keep
//! up to α requests outstanding to the closest candidates not yet asked;
//! every answer adds the closer nodes it names. A candidate *near* the
//! target, as close as the k closest of a network of the estimated size
//! are likely to be, is asked at once, α or not: the lookup would ask it
//! in its last round anyway, and asking it now saves that round. When an answer brings
//! nothing closer (the lookup has converged, or is being fed nonsense), ask
//! all of the k closest not yet asked at once (the paper waits for a whole
//! round without progress; not waiting saves a round trip and, in the
//! simulator, costs no extra requests). The lookup
//! ends when the k closest candidates that did not fail have all answered.
//!
//! A request that passes its deadline (an adaptive timeout the caller
//! computes) stops occupying a slot but is not given up yet: a lost packet
//! is resent by QUIC, and a late answer is still used. The lookup waits for
//! it before finishing until twice the timeout more has passed, then counts
//! the node as failed. A peer that answers with garbage or invented nodes only adds
//! candidates that fail in turn: they cost requests and time, not the
//! result, which holds only nodes that answered.
//!
//! Lies cost less than a timeout each. A source (the node whose answer
//! named a candidate) gets at most [`PER_SOURCE`] of its candidates in
//! flight at once, so the other slots go on with other sources while they
//! time out; and once [`BLAME`] of a source's candidates have timed out or
//! failed with none of them answering, the source is taken for a liar:
//! every candidate only it named fails at once (rather than one timeout at
//! a time), and the rest of its answer is not heard. It stays in the
//! result, as a node that answered: an honest node whose first few
//! contacts happen to be dead looks the same, and the closest node to a
//! key is often one.
//!
//! A lie that invents nodes right next to the target costs no timeout at
//! all: a candidate named by one source only that shares
//! [`IMPLAUSIBLE_MARGIN`] bits more with the target than the network's size
//! makes likely fails without being asked, and counts against its source
//! as a timeout would (the node looked up itself excepted). A second source
//! naming it makes it a candidate again.

use std::{collections::BTreeMap, time::Duration};

use super::key::{Distance, Key};

/// Candidates one source may have in flight at once.
pub const PER_SOURCE: usize = 3;

/// Candidates of one source that time out or fail, with none answering,
/// before the source is taken for a liar.
pub const BLAME: u32 = 3;

/// Bits of prefix shared with the target beyond the network size's that
/// make a candidate implausible: in a network of 2^n nodes, the closest to
/// a key shares about n bits with it, and one in 2^12 shares n + 12.
pub const IMPLAUSIBLE_MARGIN: u32 = 12;

/// Lookup parameters.
#[derive(Debug, Clone, Copy)]
pub struct LookupConfig {
    /// Bucket size and result size (the paper's k).
    pub k: usize,
    /// Requests in flight while the lookup makes progress (the paper's α).
    pub alpha: usize,
    /// Answers in a row without progress after which all of the k closest
    /// not yet asked are asked at once.
    pub stall_after: usize,
    /// Most candidates kept (the farthest not yet asked are dropped).
    pub max_candidates: usize,
    /// The estimated network size as a power of two
    /// ([`RoutingTable::network_bits`](super::table::RoutingTable::network_bits)),
    /// for telling near and implausible candidates (see the module docs).
    pub network_bits: Option<u32>,
}

impl Default for LookupConfig {
    fn default() -> Self {
        Self {
            k: 20,
            alpha: 3,
            stall_after: 1,
            max_candidates: 200,
            network_bits: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not asked yet.
    Waiting,
    /// Asked; the deadline has not passed.
    InFlight {
        deadline: Duration,
        timeout: Duration,
    },
    /// Asked; past the deadline, but an answer is awaited until `give_up`.
    Late {
        give_up: Duration,
    },
    Answered,
    Failed,
}

#[derive(Debug)]
struct Candidate<A> {
    key: Key,
    addr: A,
    state: State,
    /// Requests in the chain that led to this candidate (seeds: 0).
    hop: u32,
    /// The candidate whose answer named it first (none for a seed).
    via: Option<Distance>,
    /// Named by more than one source (or a seed): no single liar made it up.
    vouched: bool,
    /// Failed unasked for being too close to the target to be true.
    implausible: bool,
    /// Candidates it named that answered, and that failed or timed out.
    good: u32,
    bad: u32,
    /// Taken for a liar: what it names is not heard.
    liar: bool,
}

/// One lookup of `target`. `A` is whatever the caller needs to reach a
/// node (addresses in the node, an index in the simulator).
#[derive(Debug)]
pub struct Lookup<A> {
    target: Key,
    cfg: LookupConfig,
    candidates: BTreeMap<Distance, Candidate<A>>,
    in_flight: usize,
    /// Answers in a row that brought nothing closer.
    no_progress: usize,
    requests: usize,
}

impl<A: Clone> Lookup<A> {
    /// A lookup of `target` starting from `seeds` (the closest nodes the
    /// caller knows; its own id must not be among them).
    pub fn new(target: Key, cfg: LookupConfig, seeds: impl IntoIterator<Item = (Key, A)>) -> Self {
        let mut l = Self {
            target,
            cfg,
            candidates: BTreeMap::new(),
            in_flight: 0,
            no_progress: 0,
            requests: 0,
        };
        for (key, addr) in seeds {
            l.add(key, addr, 0, None);
        }
        l
    }

    /// The key looked up.
    pub fn target(&self) -> Key {
        self.target
    }

    /// Adds a candidate unless known. True if it is closer than every
    /// candidate known before.
    fn add(&mut self, key: Key, addr: A, hop: u32, via: Option<Distance>) -> bool {
        let d = self.target.distance(&key);
        if let Some(c) = self.candidates.get_mut(&d) {
            if c.via != via {
                c.vouched = true;
                if c.state == State::Failed && c.implausible {
                    c.state = State::Waiting;
                    c.implausible = false;
                }
            }
            return false;
        }
        // (The node looked up itself, at distance 0, is no lie.)
        let shared = d.leading_zeros();
        let implausible = via.is_some()
            && shared < 256
            && self
                .cfg
                .network_bits
                .is_some_and(|n| shared > n + IMPLAUSIBLE_MARGIN);
        let closest = self
            .candidates
            .first_key_value()
            .is_none_or(|(best, _)| d < *best);
        self.candidates.insert(
            d,
            Candidate {
                key,
                addr,
                state: if implausible {
                    State::Failed
                } else {
                    State::Waiting
                },
                hop,
                via,
                vouched: via.is_none(),
                implausible,
                good: 0,
                bad: 0,
                liar: false,
            },
        );
        if implausible {
            self.blame(via);
            return false;
        }
        self.trim();
        closest
    }

    /// Drops the farthest candidates not yet asked beyond the cap.
    fn trim(&mut self) {
        while self.candidates.len() > self.cfg.max_candidates {
            let far = self
                .candidates
                .iter()
                .rev()
                .find(|(_, c)| c.state == State::Waiting)
                .map(|(d, _)| *d);
            match far {
                Some(d) => {
                    self.candidates.remove(&d);
                }
                None => break,
            }
        }
    }

    /// Records `from`'s answer naming `closer` nodes (at most k are used;
    /// the caller drops its own id). Answers from nodes not asked are
    /// ignored.
    pub fn on_answer(&mut self, from: &Key, closer: impl IntoIterator<Item = (Key, A)>) {
        let d = self.target.distance(from);
        let Some(c) = self.candidates.get_mut(&d) else {
            return;
        };
        let hop = match c.state {
            State::InFlight { .. } => {
                self.in_flight -= 1;
                c.hop
            }
            State::Late { .. } => c.hop,
            State::Waiting | State::Answered | State::Failed => return,
        };
        c.state = State::Answered;
        if let Some(source) = c.via.and_then(|v| self.candidates.get_mut(&v)) {
            source.good += 1;
        }
        let mut progress = false;
        for (key, addr) in closer.into_iter().take(self.cfg.k) {
            progress |= self.add(key, addr, hop + 1, Some(d));
            // Taken for a liar by what it named: the rest is not heard.
            if self.candidates.get(&d).is_some_and(|c| c.liar) {
                break;
            }
        }
        if progress {
            self.no_progress = 0;
        } else {
            self.no_progress += 1;
        }
    }

    /// Records that asking `from` failed (no connection, an error, or a
    /// malformed answer).
    pub fn on_failure(&mut self, from: &Key) {
        let d = self.target.distance(from);
        let Some(c) = self.candidates.get_mut(&d) else {
            return;
        };
        let late = match c.state {
            State::InFlight { .. } => {
                self.in_flight -= 1;
                false
            }
            State::Late { .. } => true,
            State::Waiting | State::Answered | State::Failed => return,
        };
        c.state = State::Failed;
        let via = c.via;
        // A late one was blamed on its source when it timed out.
        if !late {
            self.blame(via);
        }
    }

    /// Counts a timeout or failure of a candidate against its source;
    /// see the module docs.
    fn blame(&mut self, source: Option<Distance>) {
        let Some(s) = source else { return };
        let Some(src) = self.candidates.get_mut(&s) else {
            return;
        };
        src.bad += 1;
        if src.bad < BLAME || src.good > 0 || src.liar {
            return;
        }
        src.liar = true;
        for c in self.candidates.values_mut() {
            if c.via != Some(s) || c.vouched {
                continue;
            }
            match c.state {
                State::InFlight { .. } => self.in_flight -= 1,
                State::Waiting | State::Late { .. } => {}
                State::Answered | State::Failed => continue,
            }
            c.state = State::Failed;
        }
    }

    /// Advances to `now`: requests past their deadline stop holding a slot
    /// (and are given up on later), and the next requests to send are
    /// returned (already marked as sent, each with the deadline `timeout`
    /// gives for it).
    pub fn poll(&mut self, now: Duration, timeout: impl Fn(&Key) -> Duration) -> Vec<(Key, A)> {
        let mut timed_out = Vec::new();
        for c in self.candidates.values_mut() {
            match c.state {
                State::InFlight { deadline, timeout } if deadline <= now => {
                    c.state = State::Late {
                        give_up: deadline + timeout * 2,
                    };
                    self.in_flight -= 1;
                    self.no_progress += 1;
                    timed_out.push(c.via);
                }
                State::Late { give_up } if give_up <= now => c.state = State::Failed,
                _ => {}
            }
        }
        for source in timed_out {
            self.blame(source);
        }
        if self.is_finished() {
            return Vec::new();
        }
        let parallelism = if self.no_progress >= self.cfg.stall_after {
            self.cfg.k
        } else {
            self.cfg.alpha
        };
        let near = self.near_bits();
        // Requests in flight per source.
        let mut per_source: BTreeMap<Distance, usize> = BTreeMap::new();
        for c in self.candidates.values() {
            if let (State::InFlight { .. }, Some(v), false) = (c.state, c.via, c.vouched) {
                *per_source.entry(v).or_default() += 1;
            }
        }
        let mut out = Vec::new();
        let mut considered = 0;
        for (d, c) in self.candidates.iter_mut() {
            if considered >= self.cfg.k {
                break;
            }
            // Closest first: once one is not near, none after it is.
            if self.in_flight >= parallelism && near.is_none_or(|n| d.leading_zeros() < n) {
                break;
            }
            match c.state {
                State::Failed | State::Late { .. } => continue,
                State::Answered | State::InFlight { .. } => {}
                // Its source has enough in flight: others go first.
                State::Waiting
                    if !c.vouched
                        && c.via.is_some_and(|v| {
                            per_source.get(&v).copied().unwrap_or(0) >= PER_SOURCE
                        }) =>
                {
                    continue;
                }
                State::Waiting => {
                    if let (Some(v), false) = (c.via, c.vouched) {
                        *per_source.entry(v).or_default() += 1;
                    }
                    let t = timeout(&c.key);
                    c.state = State::InFlight {
                        deadline: now + t,
                        timeout: t,
                    };
                    self.in_flight += 1;
                    self.requests += 1;
                    out.push((c.key, c.addr.clone()));
                }
            }
            considered += 1;
        }
        out
    }

    /// Bits a candidate shares with the target to count as near: about
    /// as many as the k closest of a network of the estimated size share
    /// (2^(n - b) nodes share b bits with a key of a network of 2^n).
    fn near_bits(&self) -> Option<u32> {
        let n = self.cfg.network_bits?;
        let k = self.cfg.k.max(1) as u32;
        Some(n.saturating_sub(k.ilog2()).max(1))
    }

    /// The earliest deadline of a request: when to call [`Lookup::poll`] if
    /// nothing else happens.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.candidates
            .values()
            .filter_map(|c| match c.state {
                State::InFlight { deadline, .. } => Some(deadline),
                State::Late { give_up } => Some(give_up),
                _ => None,
            })
            .min()
    }

    /// True when the k closest candidates that did not fail have answered,
    /// or there is nobody left to ask or wait for.
    pub fn is_finished(&self) -> bool {
        let mut answered = 0;
        for c in self.candidates.values() {
            match c.state {
                State::Answered => answered += 1,
                State::Failed => continue,
                State::Waiting | State::InFlight { .. } | State::Late { .. } => return false,
            }
            if answered >= self.cfg.k {
                return true;
            }
        }
        true
    }

    /// The closest nodes that answered, closest first (at most k).
    pub fn closest(&self) -> Vec<(Key, A)> {
        self.candidates
            .values()
            .filter(|c| c.state == State::Answered)
            .take(self.cfg.k)
            .map(|c| (c.key, c.addr.clone()))
            .collect()
    }

    /// Sequential requests it took to reach the closest node that answered
    /// (0 if none did).
    pub fn hops(&self) -> u32 {
        self.candidates
            .values()
            .find(|c| c.state == State::Answered)
            .map_or(0, |c| c.hop + 1)
    }

    /// Requests sent so far.
    pub fn requests(&self) -> usize {
        self.requests
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Key {
        let mut k = [0u8; 32];
        k[0] = n;
        Key(k)
    }

    fn cfg(k: usize, alpha: usize) -> LookupConfig {
        LookupConfig {
            k,
            alpha,
            stall_after: alpha,
            max_candidates: 50,
            network_bits: None,
        }
    }

    const T: Duration = Duration::from_millis(100);

    fn keys(v: &[(Key, ())]) -> Vec<u8> {
        v.iter().map(|(k, _)| k.0[0]).collect()
    }

    #[test]
    fn asks_alpha_closest_first_then_converges() {
        // Target 0: smaller first byte is closer.
        let mut l = Lookup::new(
            key(0),
            cfg(2, 2),
            [(key(40), ()), (key(30), ()), (key(50), ())],
        );
        let now = Duration::ZERO;
        assert_eq!(keys(&l.poll(now, |_| T)), vec![30, 40]);
        assert!(l.poll(now, |_| T).is_empty(), "alpha requests in flight");
        l.on_answer(&key(30), [(key(10), ()), (key(20), ())]);
        assert_eq!(keys(&l.poll(now, |_| T)), vec![10]);
        l.on_answer(&key(10), [(key(5), ())]);
        assert_eq!(keys(&l.poll(now, |_| T)), vec![5]);
        l.on_answer(&key(40), []);
        assert!(!l.is_finished(), "5 has not answered");
        l.on_answer(&key(5), []);
        // 5 and 10 answered: the two closest. 20 is never asked.
        assert!(l.poll(now, |_| T).is_empty());
        assert!(l.is_finished());
        assert_eq!(keys(&l.closest()), vec![5, 10]);
        assert_eq!(l.hops(), 3, "30 -> 10 -> 5");
    }

    #[test]
    fn stalls_widen_to_k() {
        let seeds: Vec<_> = (1..=8).map(|i| (key(i * 10), ())).collect();
        let mut l = Lookup::new(key(0), cfg(6, 2), seeds);
        let now = Duration::ZERO;
        let first = l.poll(now, |_| T);
        assert_eq!(first.len(), 2);
        for (k, _) in &first {
            l.on_answer(k, []);
        }
        // Two answers without progress: the rest of the 6 closest at once.
        assert_eq!(keys(&l.poll(now, |_| T)), vec![30, 40, 50, 60]);
    }

    #[test]
    fn timeouts_free_slots_and_late_answers_count() {
        let mut l = Lookup::new(key(0), cfg(2, 1), [(key(10), ()), (key(20), ())]);
        assert_eq!(keys(&l.poll(Duration::ZERO, |_| T)), vec![10]);
        assert_eq!(l.next_deadline(), Some(T));
        // 10 is slow: at its deadline, 20 is asked instead.
        assert_eq!(keys(&l.poll(T, |_| T)), vec![20]);
        l.on_answer(&key(20), []);
        assert!(!l.is_finished(), "10 may still answer");
        assert_eq!(l.next_deadline(), Some(T * 3));
        // A late answer is still used.
        l.on_answer(&key(10), [(key(1), ())]);
        assert!(!l.is_finished());
        assert_eq!(keys(&l.poll(T, |_| T)), vec![1]);
        l.on_answer(&key(1), []);
        assert!(l.is_finished());
        assert_eq!(keys(&l.closest()), vec![1, 10]);
    }

    #[test]
    fn a_node_that_never_answers_is_given_up() {
        let mut l = Lookup::new(key(0), cfg(2, 1), [(key(10), ()), (key(20), ())]);
        assert_eq!(keys(&l.poll(Duration::ZERO, |_| T)), vec![10]);
        assert_eq!(keys(&l.poll(T, |_| T)), vec![20]);
        l.on_answer(&key(20), []);
        assert!(l.poll(T * 3 - Duration::from_millis(1), |_| T).is_empty());
        assert!(!l.is_finished());
        assert!(l.poll(T * 3, |_| T).is_empty());
        assert!(l.is_finished());
        assert_eq!(l.next_deadline(), None);
        assert_eq!(keys(&l.closest()), vec![20]);
    }

    #[test]
    fn failures_and_strangers_do_not_break_it() {
        let mut l = Lookup::new(key(0), cfg(2, 2), [(key(10), ()), (key(20), ())]);
        let sent = l.poll(Duration::ZERO, |_| T);
        assert_eq!(sent.len(), 2);
        l.on_answer(&key(99), [(key(1), ())]); // never asked: ignored
        l.on_failure(&key(10));
        l.on_failure(&key(10)); // twice: no effect
        // An invented node closer than everything: asked, fails.
        l.on_answer(&key(20), [(key(2), ())]);
        assert_eq!(keys(&l.poll(Duration::ZERO, |_| T)), vec![2]);
        l.on_failure(&key(2));
        assert!(l.poll(Duration::ZERO, |_| T).is_empty());
        assert!(l.is_finished());
        assert_eq!(keys(&l.closest()), vec![20]);
    }

    #[test]
    fn garbage_answers_are_bounded() {
        let mut l = Lookup::new(key(0), cfg(3, 1), [(key(200), ())]);
        l.poll(Duration::ZERO, |_| T);
        let flood: Vec<_> = (0..=255u8)
            .map(|i| {
                let mut k = [i; 32];
                k[0] = 100;
                (Key(k), ())
            })
            .collect();
        l.on_answer(&key(200), flood);
        // Only k of an answer are used.
        assert_eq!(l.candidates.len(), 1 + 3);
    }

    #[test]
    fn empty_lookup_is_finished() {
        let l: Lookup<()> = Lookup::new(key(0), cfg(2, 2), []);
        assert!(l.is_finished());
        assert!(l.closest().is_empty());
        assert_eq!(l.hops(), 0);
    }

    #[test]
    fn near_candidates_are_asked_at_once() {
        // A network of 2^6 nodes: the 4 closest share about 4 bits with a
        // key, so the nodes with first byte below 16 are near.
        let mut c = cfg(4, 1);
        c.network_bits = Some(6);
        let mut l = Lookup::new(key(0), c, [(key(200), ())]);
        assert_eq!(keys(&l.poll(Duration::ZERO, |_| T)), vec![200]);
        l.on_answer(&key(200), [3, 9, 40, 60].map(|n| (key(n), ())));
        // α = 1 and nothing in flight: the closest goes, and the other
        // near one with it; the far ones wait their turn.
        assert_eq!(keys(&l.poll(Duration::from_millis(1), |_| T)), vec![3, 9]);
        // Without a size estimate, α holds.
        let mut l = Lookup::new(key(0), cfg(4, 1), [(key(200), ())]);
        l.poll(Duration::ZERO, |_| T);
        l.on_answer(&key(200), [3, 9, 40, 60].map(|n| (key(n), ())));
        assert_eq!(keys(&l.poll(Duration::from_millis(1), |_| T)), vec![3]);
    }

    #[test]
    fn a_liar_costs_one_timeout() {
        // Nodes 100 and 101 are seeds; 100 lies, naming nodes 1..=5 that do
        // not exist, closer than anyone; 101 names the real 50 and 51.
        let mut l = Lookup::new(key(0), cfg(4, 3), [(key(100), ()), (key(101), ())]);
        let sent = l.poll(Duration::ZERO, |_| T);
        assert_eq!(keys(&sent), vec![100, 101]);
        l.on_answer(&key(100), (1..=5).map(|n| (key(n), ())));
        l.on_answer(&key(101), [(key(50), ()), (key(51), ())]);
        let sent = l.poll(Duration::from_millis(1), |_| T);
        assert_eq!(keys(&sent), vec![1, 2, 3], "the closest first");
        // All time out: their source is a liar, and its other inventions
        // fail without being asked.
        let mut asked = Vec::new();
        let mut now = T + Duration::from_millis(1);
        for _ in 0..10 {
            let sent = l.poll(now, |_| T);
            for (k, ()) in &sent {
                if k.0[0] >= 50 {
                    l.on_answer(k, []);
                }
            }
            asked.extend(keys(&sent));
            if l.is_finished() {
                break;
            }
            now += Duration::from_millis(1);
        }
        assert!(l.is_finished(), "done without waiting for more timeouts");
        assert!(now < 2 * T, "finished at {now:?}");
        assert_eq!(asked, vec![50, 51], "nodes 4 and 5 were never asked");
        assert_eq!(
            keys(&l.closest()),
            vec![50, 51, 100, 101],
            "no invention in the result"
        );
    }

    #[test]
    fn a_source_gets_at_most_per_source_requests_at_once() {
        let mut l = Lookup::new(key(0), cfg(20, 10), [(key(200), ()), (key(201), ())]);
        let _ = l.poll(Duration::ZERO, |_| T);
        // 200 names ten nodes, 201 names two farther ones.
        l.on_answer(&key(200), (1..=10).map(|n| (key(n), ())));
        l.on_answer(&key(201), [(key(60), ()), (key(61), ())]);
        let sent = keys(&l.poll(Duration::from_millis(1), |_| T));
        let from_200 = sent.iter().filter(|k| **k <= 10).count();
        assert_eq!(from_200, PER_SOURCE, "{sent:?}");
        assert!(sent.contains(&60) && sent.contains(&61), "{sent:?}");
    }

    #[test]
    fn implausibly_close_inventions_fail_unasked() {
        let far = |n: u8| {
            let mut k = [0xffu8; 32];
            k[31] = n;
            Key(k)
        };
        // A network of about 2^10 nodes: sharing 30 bits with the target
        // is implausible, sharing 8 is not.
        let c = LookupConfig {
            network_bits: Some(10),
            ..cfg(4, 2)
        };
        let mut l = Lookup::new(key(0), c, [(far(1), ()), (far(2), ())]);
        let _ = l.poll(Duration::ZERO, |_| T);
        let close = |n: u8| {
            let mut k = [0u8; 32];
            k[4] = n; // 32 + leading zeros of n bits shared
            Key(k)
        };
        l.on_answer(
            &far(1),
            [(close(1), ()), (close(2), ()), (close(3), ()), (key(3), ())],
        );
        l.on_answer(&far(2), [(key(3), ()), (key(4), ())]);
        // Three inventions make far(1) a liar: what it named after them is
        // not heard (3 comes from far(2)).
        let sent = keys(&l.poll(Duration::from_millis(1), |_| T));
        assert!(!sent.contains(&0), "the inventions are not asked: {sent:?}");
        assert_eq!(sent, vec![3, 4]);
        // The node looked up itself is no lie, and a second source revives
        // an implausible one.
        l.on_answer(&key(3), []);
        l.on_answer(&key(4), [(key(0), ()), (close(2), ())]);
        let sent = l.poll(Duration::from_millis(2), |_| T);
        assert!(
            sent.iter().any(|(k, ())| *k == key(0)),
            "the target is asked"
        );
        assert!(
            sent.iter().any(|(k, ())| *k == close(2)),
            "vouched for: asked"
        );
    }
}
