//! The routing table: 256 k-buckets by shared-prefix length, no I/O.
//!
//! Each bucket is ordered least recently seen first. A node is added only
//! from direct contact (the caller reports nodes it talked to, never nodes
//! merely named in answers). When a bucket is full the newcomer waits in
//! the bucket's replacement slot and the caller is asked to check the
//! least recently seen entry: if it answers it stays (long-lived nodes are
//! the likeliest to stay up), if it fails the newcomer takes its place.
//!
//! Against one operator filling the table, entries are limited per IP
//! address and per subnet (/24 for IPv4, /48 for IPv6). Loopback addresses
//! are exempt (they are this machine), and private ones from the subnet
//! limit (a LAN shares one subnet).

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use super::key::{Distance, Key};

/// The buckets of nodes sharing 0, 1 and 2 bits with this one hold 8, 4
/// and 2 times k entries (as libtorrent's do). The first hop of a lookup
/// then lands 3 bits closer to the target, and each answer holds closer
/// nodes: a lookup in 10,000 nodes needs a round trip less.
pub const ACCELERATED: usize = 4;

/// Routing table limits.
#[derive(Debug, Clone, Copy)]
pub struct TableConfig {
    /// Entries per bucket (the paper's k).
    pub k: usize,
    /// Entries one IP address may hold in the whole table.
    pub per_ip: usize,
    /// Entries one subnet may hold in one bucket.
    pub per_subnet_bucket: usize,
    /// Entries one subnet may hold in the whole table.
    pub per_subnet: usize,
    /// Failed requests in a row after which an entry is dropped even with
    /// no replacement waiting.
    pub max_failures: u32,
}

impl Default for TableConfig {
    fn default() -> Self {
        Self {
            k: 20,
            per_ip: 2,
            per_subnet_bucket: 2,
            per_subnet: 10,
            max_failures: 3,
        }
    }
}

/// What a table entry's address says about where the node is, for limits.
pub trait Located {
    /// The IP address the limits count, if any.
    fn ip(&self) -> Option<IpAddr>;
}

impl Located for Vec<SocketAddr> {
    fn ip(&self) -> Option<IpAddr> {
        self.first().map(|a| a.ip().to_canonical())
    }
}

impl Located for usize {
    fn ip(&self) -> Option<IpAddr> {
        None
    }
}

/// A node in the table.
#[derive(Debug, Clone)]
pub struct Entry<A> {
    pub key: Key,
    pub addr: A,
    /// When we first and last heard from it directly.
    pub first_seen: Duration,
    pub last_seen: Duration,
    failures: u32,
}

#[derive(Debug, Clone)]
struct Bucket<A> {
    entries: Vec<Entry<A>>,
    replacement: Option<Entry<A>>,
}

/// What [`RoutingTable::seen`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A new entry.
    Added,
    /// An existing entry, now the most recently seen.
    Refreshed,
    /// The bucket is full: the newcomer waits; check `check` (ping it) and
    /// report the result with [`RoutingTable::seen`] or
    /// [`RoutingTable::failed`].
    Full { check: Key },
    /// Not added: own id, or over an address limit.
    Refused,
}

/// The routing table of node `me`.
#[derive(Debug, Clone)]
pub struct RoutingTable<A> {
    me: Key,
    cfg: TableConfig,
    buckets: Vec<Bucket<A>>,
    per_ip: HashMap<IpAddr, usize>,
    per_subnet: HashMap<IpAddr, usize>,
    len: usize,
}

/// The subnet an address counts against, or `None` when exempt.
fn subnet(ip: IpAddr) -> Option<IpAddr> {
    match ip {
        IpAddr::V4(v4) => {
            if v4.is_private() || v4.is_link_local() || v4.is_loopback() {
                return None;
            }
            let o = v4.octets();
            Some(IpAddr::from([o[0], o[1], o[2], 0]))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let local = (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80;
            if local || v6.is_loopback() {
                return None;
            }
            Some(IpAddr::from([s[0], s[1], s[2], 0, 0, 0, 0, 0]))
        }
    }
}

impl<A: Located + Clone> RoutingTable<A> {
    pub fn new(me: Key, cfg: TableConfig) -> Self {
        Self {
            me,
            cfg,
            buckets: (0..256)
                .map(|_| Bucket {
                    entries: Vec::new(),
                    replacement: None,
                })
                .collect(),
            per_ip: HashMap::new(),
            per_subnet: HashMap::new(),
            len: 0,
        }
    }

    /// The owner's key.
    pub fn me(&self) -> Key {
        self.me
    }

    /// Entries in the table.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The base-2 logarithm of the network's size, estimated from how full
    /// the buckets are: the bucket of nodes sharing `p` bits with this one
    /// covers 2^-(p+1) of the space, so the first one not full, holding
    /// `c` nodes, says about c · 2^(p+1). `None` with an empty table.
    pub fn network_bits(&self) -> Option<u32> {
        if self.is_empty() {
            return None;
        }
        for shared in 0..256u32 {
            let b = 255 - shared as usize;
            let c = self.buckets[b].entries.len();
            if c < self.capacity(b) {
                return Some(shared + 1 + (c.max(1) as u32).ilog2());
            }
        }
        Some(256)
    }

    /// Entries bucket `b` holds: k, and more in the buckets of the nodes
    /// sharing the fewest bits with this one (see [`ACCELERATED`]).
    fn capacity(&self, b: usize) -> usize {
        let shared = 255usize.saturating_sub(b);
        self.cfg.k << ACCELERATED.saturating_sub(shared)
    }

    /// Whether the address limits leave room for `addr` in `bucket`.
    fn admits(&self, bucket: usize, addr: &A) -> bool {
        let Some(ip) = addr.ip() else { return true };
        if ip.is_loopback() {
            return true;
        }
        if self.per_ip.get(&ip).copied().unwrap_or(0) >= self.cfg.per_ip {
            return false;
        }
        let Some(net) = subnet(ip) else { return true };
        if self.per_subnet.get(&net).copied().unwrap_or(0) >= self.cfg.per_subnet {
            return false;
        }
        let in_bucket = self.buckets[bucket]
            .entries
            .iter()
            .filter(|e| e.addr.ip().and_then(subnet) == Some(net))
            .count();
        in_bucket < self.cfg.per_subnet_bucket
    }

    fn count(&mut self, addr: &A, add: bool) {
        let Some(ip) = addr.ip() else { return };
        if ip.is_loopback() {
            return;
        }
        let bump = |m: &mut HashMap<IpAddr, usize>, k: IpAddr| {
            let n = m.entry(k).or_insert(0);
            if add {
                *n += 1;
            } else {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(&k);
                }
            }
        };
        bump(&mut self.per_ip, ip);
        if let Some(net) = subnet(ip) {
            bump(&mut self.per_subnet, net);
        }
    }

    /// Records direct contact with `key` at `addr` at time `now`.
    pub fn seen(&mut self, key: Key, addr: A, now: Duration) -> Seen {
        let Some(b) = self.me.bucket_of(&key) else {
            return Seen::Refused;
        };
        if let Some(i) = self.buckets[b].entries.iter().position(|e| e.key == key) {
            let mut e = self.buckets[b].entries.remove(i);
            e.last_seen = now;
            e.failures = 0;
            self.buckets[b].entries.push(e);
            return Seen::Refreshed;
        }
        if !self.admits(b, &addr) {
            return Seen::Refused;
        }
        let entry = Entry {
            key,
            addr,
            first_seen: now,
            last_seen: now,
            failures: 0,
        };
        if self.buckets[b].entries.len() < self.capacity(b) {
            self.count(&entry.addr, true);
            self.buckets[b].entries.push(entry);
            self.len += 1;
            return Seen::Added;
        }
        let check = self.buckets[b].entries[0].key;
        self.buckets[b].replacement = Some(entry);
        Seen::Full { check }
    }

    /// Records that `key` did not answer. The entry is replaced by the
    /// bucket's waiting newcomer, if any, or dropped after
    /// [`TableConfig::max_failures`] failures in a row.
    pub fn failed(&mut self, key: &Key) {
        let Some(b) = self.me.bucket_of(key) else {
            return;
        };
        let Some(i) = self.buckets[b].entries.iter().position(|e| e.key == *key) else {
            return;
        };
        self.buckets[b].entries[i].failures += 1;
        let waiting = self.buckets[b].replacement.is_some();
        if !waiting && self.buckets[b].entries[i].failures < self.cfg.max_failures {
            return;
        }
        let gone = self.buckets[b].entries.remove(i);
        self.count(&gone.addr, false);
        self.len -= 1;
        if let Some(r) = self.buckets[b].replacement.take()
            && self.admits(b, &r.addr)
        {
            self.count(&r.addr, true);
            self.buckets[b].entries.push(r);
            self.len += 1;
        }
    }

    /// Removes `key` (it proved to be someone else, or misbehaved).
    pub fn remove(&mut self, key: &Key) {
        let Some(b) = self.me.bucket_of(key) else {
            return;
        };
        if let Some(i) = self.buckets[b].entries.iter().position(|e| e.key == *key) {
            let gone = self.buckets[b].entries.remove(i);
            self.count(&gone.addr, false);
            self.len -= 1;
        }
    }

    /// The `n` entries closest to `target`, closest first.
    pub fn closest(&self, target: &Key, n: usize) -> Vec<(Key, A)> {
        let mut all: Vec<(Distance, &Entry<A>)> = self
            .buckets
            .iter()
            .flat_map(|b| b.entries.iter())
            .map(|e| (target.distance(&e.key), e))
            .collect();
        all.sort_unstable_by_key(|a| a.0);
        all.into_iter()
            .take(n)
            .map(|(_, e)| (e.key, e.addr.clone()))
            .collect()
    }

    /// Every entry, farthest bucket first.
    pub fn entries(&self) -> impl Iterator<Item = &Entry<A>> {
        self.buckets.iter().rev().flat_map(|b| b.entries.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dht::key::tests::key;

    fn small() -> TableConfig {
        TableConfig {
            k: 2,
            ..TableConfig::default()
        }
    }

    const T0: Duration = Duration::ZERO;

    #[test]
    fn fills_buckets_and_prefers_long_lived_nodes() {
        let mut t: RoutingTable<usize> = RoutingTable::new(key(0, 0), small());
        assert_eq!(t.seen(key(0, 0), 0, T0), Seen::Refused, "own id");
        // (A bucket of nodes sharing 4 bits: it holds k.)
        assert_eq!(t.seen(key(0x08, 1), 1, T0), Seen::Added);
        assert_eq!(t.seen(key(0x08, 2), 2, T0), Seen::Added);
        // Full: the oldest is to be checked; the newcomer waits.
        assert_eq!(
            t.seen(key(0x08, 3), 3, T0),
            Seen::Full {
                check: key(0x08, 1)
            }
        );
        // It answers: it stays, and is now the most recently seen.
        assert_eq!(t.seen(key(0x08, 1), 1, T0), Seen::Refreshed);
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.seen(key(0x08, 3), 3, T0),
            Seen::Full {
                check: key(0x08, 2)
            }
        );
        // It fails: the newcomer takes its place.
        t.failed(&key(0x08, 2));
        let keys: Vec<Key> = t.entries().map(|e| e.key).collect();
        assert_eq!(keys, vec![key(0x08, 1), key(0x08, 3)]);
    }

    #[test]
    fn repeated_failures_drop_an_entry() {
        let mut t: RoutingTable<usize> = RoutingTable::new(key(0, 0), small());
        t.seen(key(0x40, 1), 1, T0);
        t.failed(&key(0x40, 1));
        t.failed(&key(0x40, 1));
        assert_eq!(t.len(), 1);
        t.failed(&key(0x40, 1));
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn closest_is_sorted_by_xor() {
        let mut t: RoutingTable<usize> = RoutingTable::new(key(0, 0), TableConfig::default());
        for i in 1..=50u8 {
            t.seen(key(i, i), i as usize, T0);
        }
        let c = t.closest(&key(7, 0), 3);
        let firsts: Vec<u8> = c.iter().map(|(k, _)| k.0[0]).collect();
        assert_eq!(firsts, vec![7, 6, 5]);
    }

    fn at(ip: &str) -> Vec<SocketAddr> {
        vec![SocketAddr::new(ip.parse().unwrap(), 4433)]
    }

    #[test]
    fn address_limits() {
        let mut t: RoutingTable<Vec<SocketAddr>> =
            RoutingTable::new(key(0, 0), TableConfig::default());
        // One IP: two entries at most.
        assert_eq!(t.seen(key(0x80, 1), at("198.51.100.7"), T0), Seen::Added);
        assert_eq!(t.seen(key(0x81, 1), at("198.51.100.7"), T0), Seen::Added);
        assert_eq!(t.seen(key(0x82, 1), at("198.51.100.7"), T0), Seen::Refused);
        // One /24 in one bucket: two at most.
        assert_eq!(t.seen(key(0x83, 1), at("198.51.100.8"), T0), Seen::Refused);
        assert_eq!(t.seen(key(0x40, 1), at("198.51.100.8"), T0), Seen::Added);
        // Loopback is this machine: no limit.
        for i in 0..10 {
            assert_eq!(t.seen(key(0x90, i), at("127.0.0.1"), T0), Seen::Added);
        }
        // Private addresses: per-IP limit only.
        assert_eq!(t.seen(key(0xa0, 1), at("10.0.0.1"), T0), Seen::Added);
        assert_eq!(t.seen(key(0xa1, 1), at("10.0.0.2"), T0), Seen::Added);
        assert_eq!(t.seen(key(0xa2, 1), at("10.0.0.3"), T0), Seen::Added);
        // Removing frees the slot.
        t.remove(&key(0x80, 1));
        assert_eq!(t.seen(key(0x82, 1), at("198.51.100.7"), T0), Seen::Added);
    }

    #[test]
    fn the_buckets_farthest_from_this_node_hold_more() {
        let me = key(0, 0);
        let mut t: RoutingTable<usize> = RoutingTable::new(me, small());
        // First bytes 128..=255 share no bit with 0; 16..32 share 3.
        for i in 0..100u8 {
            t.seen(key(128 + i, i), i as usize, T0);
        }
        for i in 0..10u8 {
            t.seen(key(16 + i, i), 200 + i as usize, T0);
        }
        let shared = |n: u32| {
            t.entries()
                .filter(|e| me.distance(&e.key).leading_zeros() == n)
                .count()
        };
        assert_eq!(shared(0), 2 << ACCELERATED);
        assert_eq!(shared(3), 2 << (ACCELERATED - 3));
    }

    #[test]
    fn estimates_the_network_size() {
        let mut rng = fastrand::Rng::with_seed(3);
        let mut random = || {
            let mut k = [0u8; 32];
            rng.fill(&mut k);
            Key(k)
        };
        let mut t: RoutingTable<usize> = RoutingTable::new(random(), TableConfig::default());
        assert_eq!(t.network_bits(), None);
        for n in 0..4096 {
            t.seen(random(), n, T0);
        }
        let bits = t.network_bits().unwrap();
        assert!((10..=14).contains(&bits), "2^12 nodes seen: {bits}");
    }
}
