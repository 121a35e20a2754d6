//! A deterministic, in-process network that runs the real lookup state
//! machine ([`super::lookup`]) and routing table ([`super::table`]) for
//! thousands of nodes: simulated time, round-trip times with jitter, packet
//! loss, nodes that died silently and nodes that answer with invented
//! peers. Used by the tests (1,000 nodes) and `bench/dht.sh` (10,000).
//!
//! Model: a request costs one round trip (jittered uniformly by ±`jitter`);
//! with `cold`, the first request between two nodes costs another for the
//! QUIC handshake. Each direction is lost with probability `loss`, and a
//! loss costs QUIC's retransmission delay (two round trips). Dead nodes
//! never answer. Liars answer every request with k invented nodes next to
//! the target, which do not exist. Timeouts come from the requester's
//! [`RttEstimator`], warmed up as a running node's would be, and doubled
//! for a node never talked to (as the node's, for the handshake).

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap, HashSet},
    time::Duration,
};

use super::{
    key::Key,
    lookup::{Lookup, LookupConfig},
    rtt::RttEstimator,
    table::{RoutingTable, TableConfig},
};

/// The simulated network.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nodes: usize,
    pub seed: u64,
    pub rtt: Duration,
    /// Relative jitter of each round trip (0.2: ±20 %).
    pub jitter: f64,
    /// Probability that one direction of a request is lost.
    pub loss: f64,
    /// Fraction of nodes dead (still in others' tables).
    pub dead: f64,
    /// Fraction of nodes answering with invented peers.
    pub liars: f64,
    /// Lookups of random keys to run.
    pub lookups: usize,
    /// Provider announcements (each followed by a search from another node).
    pub announces: usize,
    /// Count a QUIC handshake on first contact.
    pub cold: bool,
    pub lookup: LookupConfig,
}

impl SimConfig {
    /// `nodes` nodes, 50 ms round trips, ±20 % jitter, 1 % loss, honest.
    pub fn new(nodes: usize, seed: u64) -> Self {
        Self {
            nodes,
            seed,
            rtt: Duration::from_millis(50),
            jitter: 0.2,
            loss: 0.01,
            dead: 0.0,
            liars: 0.0,
            lookups: 500,
            announces: 100,
            cold: false,
            lookup: LookupConfig::default(),
        }
    }
}

/// What the simulation measured.
#[derive(Debug, Clone, Default)]
pub struct SimReport {
    /// Lookups that found the closest live honest node.
    pub found: usize,
    pub lookups: usize,
    pub hops: Vec<u32>,
    pub latency: Vec<Duration>,
    pub requests: Vec<usize>,
    /// Time to announce to the k closest (lookup, then `ADD_PROVIDER`).
    pub announce_latency: Vec<Duration>,
    /// Searches that found a provider record, and how long they took.
    pub provider_found: usize,
    pub provider_searches: usize,
    pub provider_latency: Vec<Duration>,
}

/// The `p`-th percentile (0..=100) of `v`, nearest rank.
pub fn percentile<T: Copy + Ord>(v: &[T], p: f64) -> Option<T> {
    let mut s = v.to_vec();
    s.sort_unstable();
    if s.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s.get(rank.min(s.len()) - 1).copied()
}

impl SimReport {
    pub fn success_rate(&self) -> f64 {
        self.found as f64 / self.lookups.max(1) as f64
    }

    pub fn provider_success_rate(&self) -> f64 {
        self.provider_found as f64 / self.provider_searches.max(1) as f64
    }

    /// One line per figure, for logs and the benchmark.
    pub fn summary(&self) -> String {
        let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
        format!(
            "lookups {}: success {:.2} %, hops median {} p99 {}, latency p50 {:.0} ms p95 {:.0} ms, \
             requests median {}\nannounce p50 {:.0} ms p95 {:.0} ms; provider searches {}: \
             success {:.2} %, p50 {:.0} ms p95 {:.0} ms",
            self.lookups,
            100.0 * self.success_rate(),
            percentile(&self.hops, 50.0).unwrap_or(0),
            percentile(&self.hops, 99.0).unwrap_or(0),
            ms(percentile(&self.latency, 50.0)),
            ms(percentile(&self.latency, 95.0)),
            percentile(&self.requests, 50.0).unwrap_or(0),
            ms(percentile(&self.announce_latency, 50.0)),
            ms(percentile(&self.announce_latency, 95.0)),
            self.provider_searches,
            100.0 * self.provider_success_rate(),
            ms(percentile(&self.provider_latency, 50.0)),
            ms(percentile(&self.provider_latency, 95.0)),
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Honest,
    Dead,
    Liar,
}

struct Node {
    key: Key,
    kind: Kind,
    table: RoutingTable<usize>,
    /// Keys this node holds provider records for.
    records: HashSet<Key>,
}

/// An address that reaches nobody (an invented node).
const NOWHERE: usize = usize::MAX;

struct Sim {
    cfg: SimConfig,
    rng: fastrand::Rng,
    nodes: Vec<Node>,
    /// Pairs that have talked before (for `cold`).
    connected: HashSet<(usize, usize)>,
    /// Each node's index, by key.
    index: HashMap<Key, usize>,
    rtt: RttEstimator,
}

/// What one simulated lookup did.
struct Outcome {
    lookup: Lookup<usize>,
    elapsed: Duration,
    /// When an answer came from a node holding a record of the target.
    record_at: Option<Duration>,
}

impl Sim {
    fn new(cfg: SimConfig) -> Self {
        let mut rng = fastrand::Rng::with_seed(cfg.seed);
        let mut nodes: Vec<Node> = (0..cfg.nodes)
            .map(|_| {
                let mut k = [0u8; 32];
                rng.fill(&mut k);
                Node {
                    key: Key(k),
                    kind: Kind::Honest,
                    table: RoutingTable::new(Key(k), TableConfig::default()),
                    records: HashSet::new(),
                }
            })
            .collect();
        // Every node hears of the others in its own random order; a bucket
        // keeps the first k it hears of (as a long-running node would).
        let n = nodes.len();
        let keys: Vec<Key> = nodes.iter().map(|x| x.key).collect();
        for (i, node) in nodes.iter_mut().enumerate() {
            let start = rng.usize(0..n.max(1));
            for j in (0..n).map(|o| (start + o) % n) {
                if j != i {
                    node.table.seen(keys[j], j, Duration::ZERO);
                }
            }
        }
        // Then some die silently and some start lying.
        for node in nodes.iter_mut() {
            let r = rng.f64();
            node.kind = if r < cfg.dead {
                Kind::Dead
            } else if r < cfg.dead + cfg.liars {
                Kind::Liar
            } else {
                Kind::Honest
            };
        }
        let index = nodes.iter().enumerate().map(|(i, n)| (n.key, i)).collect();
        let mut sim = Self {
            cfg,
            rng,
            nodes,
            connected: HashSet::new(),
            index,
            rtt: RttEstimator::default(),
        };
        for _ in 0..16 {
            let d = sim.round_trip();
            sim.rtt.sample(d);
        }
        sim
    }

    fn round_trip(&mut self) -> Duration {
        let j = 1.0 + self.cfg.jitter * (2.0 * self.rng.f64() - 1.0);
        self.cfg.rtt.mul_f64(j.max(0.0))
    }

    /// How long `from`'s request to `to` takes to be answered.
    fn delay(&mut self, from: usize, to: usize) -> Duration {
        let mut d = self.round_trip();
        if self.cfg.cold && self.connected.insert((from.min(to), from.max(to))) {
            d += self.round_trip();
        }
        for _ in 0..2 {
            // Bounded: a lost packet is resent at most a few times.
            for _ in 0..4 {
                if self.rng.f64() >= self.cfg.loss {
                    break;
                }
                d += self.cfg.rtt * 2;
            }
        }
        d
    }

    fn random_honest(&mut self) -> usize {
        // Bounded: at most a few thousand tries, then any honest node.
        for _ in 0..10_000 {
            let i = self.rng.usize(0..self.nodes.len());
            if self.nodes[i].kind == Kind::Honest {
                return i;
            }
        }
        self.nodes
            .iter()
            .position(|n| n.kind == Kind::Honest)
            .unwrap_or(0)
    }

    fn random_key(&mut self) -> Key {
        let mut k = [0u8; 32];
        self.rng.fill(&mut k);
        Key(k)
    }

    /// The answer `to` gives `from` for `target`.
    fn answer(&mut self, from: usize, to: usize, target: &Key) -> Vec<(Key, usize)> {
        let k = self.cfg.lookup.k;
        match self.nodes[to].kind {
            Kind::Honest | Kind::Dead => self.nodes[to]
                .table
                .closest(target, k + 1)
                .into_iter()
                .filter(|(_, i)| *i != from)
                .take(k)
                .collect(),
            Kind::Liar => (0..k)
                .map(|_| {
                    // Invented ids sharing a long prefix with the target.
                    let mut key = self.random_key();
                    key.0[..6].copy_from_slice(&target.0[..6]);
                    (key, NOWHERE)
                })
                .collect(),
        }
    }

    /// Runs one lookup of `target` from `origin`; with `stop_at_record`, it
    /// ends at the first answer from a node holding a record of `target`.
    fn lookup(&mut self, origin: usize, target: Key, stop_at_record: bool) -> Outcome {
        let k = self.cfg.lookup.k;
        let seeds = self.nodes[origin].table.closest(&target, k);
        let cfg = LookupConfig {
            network_bits: self.nodes[origin].table.network_bits(),
            ..self.cfg.lookup
        };
        let mut lookup = Lookup::new(target, cfg, seeds);
        let mut events: BinaryHeap<Reverse<(Duration, u64, usize, Key)>> = BinaryHeap::new();
        let mut seq = 0u64;
        let mut now = Duration::ZERO;
        let mut record_at = None;
        // Bounded: every step either sends, receives or passes a deadline.
        for _ in 0..100_000 {
            // As the node's: a node never talked to (an invented one,
            // or any first contact when `cold`) gets twice the timeout, for
            // the handshake.
            let base = self.rtt.timeout();
            let timeout = |k: &Key| match self.index.get(k) {
                Some(&i)
                    if !self.cfg.cold
                        || self.connected.contains(&(origin.min(i), origin.max(i))) =>
                {
                    base
                }
                _ => (base * 2).min(Duration::from_secs(2)),
            };
            let sends = lookup.poll(now, timeout);
            for (key, to) in sends {
                if to == NOWHERE || self.nodes[to].kind == Kind::Dead {
                    continue;
                }
                let d = self.delay(origin, to);
                seq += 1;
                events.push(Reverse((now + d, seq, to, key)));
            }
            if lookup.is_finished() {
                break;
            }
            let next_event = events.peek().map(|Reverse((t, ..))| *t);
            let next = match (next_event, lookup.next_deadline()) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => break,
            };
            now = now.max(next);
            while let Some(Reverse((t, _, to, key))) = events.peek().copied() {
                if t > now {
                    break;
                }
                events.pop();
                let contacts = self.answer(origin, to, &target);
                lookup.on_answer(&key, contacts);
                if stop_at_record && record_at.is_none() && self.nodes[to].records.contains(&target)
                {
                    record_at = Some(t);
                }
            }
            if record_at.is_some() {
                break;
            }
        }
        Outcome {
            lookup,
            elapsed: now,
            record_at,
        }
    }

    /// The live honest node closest to `target`, other than `origin`.
    fn truly_closest(&self, origin: usize, target: &Key) -> Option<Key> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, n)| *i != origin && n.kind == Kind::Honest)
            .map(|(_, n)| n.key)
            .min_by_key(|k| target.distance(k))
    }
}

/// Runs the simulation described by `cfg`.
pub fn run(cfg: &SimConfig) -> SimReport {
    let mut sim = Sim::new(cfg.clone());
    let mut report = SimReport::default();
    for _ in 0..cfg.lookups {
        let origin = sim.random_honest();
        let target = sim.random_key();
        let out = sim.lookup(origin, target, false);
        let best = sim.truly_closest(origin, &target);
        report.lookups += 1;
        if best.is_some_and(|b| out.lookup.closest().iter().any(|(k, _)| *k == b)) {
            report.found += 1;
        }
        report.hops.push(out.lookup.hops());
        report.latency.push(out.elapsed);
        report.requests.push(out.lookup.requests());
    }
    for _ in 0..cfg.announces {
        let provider = sim.random_honest();
        let key = sim.random_key();
        let out = sim.lookup(provider, key, false);
        // ADD_PROVIDER to the k closest at once: done when all have acked.
        let mut acked = Duration::ZERO;
        for (_, i) in out.lookup.closest() {
            let d = sim.delay(provider, i);
            acked = acked.max(d);
            sim.nodes[i].records.insert(key);
        }
        report.announce_latency.push(out.elapsed + acked);
        let searcher = sim.random_honest();
        let found = sim.lookup(searcher, key, true);
        report.provider_searches += 1;
        if let Some(t) = found.record_at {
            report.provider_found += 1;
            report.provider_latency.push(t);
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_from_the_seed() {
        let mut cfg = SimConfig::new(200, 7);
        cfg.lookups = 20;
        cfg.announces = 5;
        let a = run(&cfg);
        let b = run(&cfg);
        assert_eq!(a.latency, b.latency);
        assert_eq!(a.hops, b.hops);
        cfg.seed = 8;
        assert_ne!(run(&cfg).latency, a.latency);
    }

    #[test]
    fn percentiles() {
        let v = [5, 1, 4, 2, 3];
        assert_eq!(percentile(&v, 50.0), Some(3));
        assert_eq!(percentile(&v, 100.0), Some(5));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile::<u32>(&[], 50.0), None);
    }
}
