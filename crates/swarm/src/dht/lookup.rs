//! An iterative Kademlia lookup as a state machine: no I/O and no clock.
//!
//! The caller feeds it answers, failures and the current time; it says whom
//! to ask next. The same code runs in the node (over QUIC) and in the
//! simulator ([`super::sim`]).
//!
//! The procedure is the paper's. Start from the closest nodes we know; keep
//! up to α requests outstanding to the closest candidates not yet asked;
//! every answer adds the closer nodes it names. When an answer brings
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

use std::{collections::BTreeMap, time::Duration};

use super::key::{Distance, Key};

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
}

impl Default for LookupConfig {
    fn default() -> Self {
        Self {
            k: 20,
            alpha: 3,
            stall_after: 1,
            max_candidates: 200,
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
            l.add(key, addr, 0);
        }
        l
    }

    /// The key looked up.
    pub fn target(&self) -> Key {
        self.target
    }

    /// Adds a candidate unless known. True if it is closer than every
    /// candidate known before.
    fn add(&mut self, key: Key, addr: A, hop: u32) -> bool {
        let d = self.target.distance(&key);
        if self.candidates.contains_key(&d) {
            return false;
        }
        let closest = self
            .candidates
            .first_key_value()
            .is_none_or(|(best, _)| d < *best);
        self.candidates.insert(
            d,
            Candidate {
                key,
                addr,
                state: State::Waiting,
                hop,
            },
        );
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
        let mut progress = false;
        for (key, addr) in closer.into_iter().take(self.cfg.k) {
            progress |= self.add(key, addr, hop + 1);
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
        match c.state {
            State::InFlight { .. } => self.in_flight -= 1,
            State::Late { .. } => {}
            State::Waiting | State::Answered | State::Failed => return,
        }
        c.state = State::Failed;
    }

    /// Advances to `now`: requests past their deadline stop holding a slot
    /// (and are given up on later), and the next requests to send are
    /// returned (already marked as sent, each with the deadline `timeout`
    /// gives for it).
    pub fn poll(&mut self, now: Duration, timeout: impl Fn(&Key) -> Duration) -> Vec<(Key, A)> {
        for c in self.candidates.values_mut() {
            match c.state {
                State::InFlight { deadline, timeout } if deadline <= now => {
                    c.state = State::Late {
                        give_up: deadline + timeout * 2,
                    };
                    self.in_flight -= 1;
                    self.no_progress += 1;
                }
                State::Late { give_up } if give_up <= now => c.state = State::Failed,
                _ => {}
            }
        }
        if self.is_finished() {
            return Vec::new();
        }
        let parallelism = if self.no_progress >= self.cfg.stall_after {
            self.cfg.k
        } else {
            self.cfg.alpha
        };
        let mut out = Vec::new();
        let mut considered = 0;
        for c in self.candidates.values_mut() {
            if considered >= self.cfg.k || self.in_flight >= parallelism {
                break;
            }
            match c.state {
                State::Failed | State::Late { .. } => continue,
                State::Answered | State::InFlight { .. } => {}
                State::Waiting => {
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
}
