//! Provider records this node keeps for others: stored in the content
//! store's database (so they survive restarts), bounded per key, per
//! announcing node and in all (docs/protocol.md §7.4).

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::Mutex,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use p2pfs_proto::{
    Hash, NodeAddr, NodeId,
    dht::{K, MAX_NODE_ADDRS, Refusal},
};
use p2pfs_store::{ProviderRecord, PutProvider, Store, StoreError};

/// Bounds on the records a node keeps.
#[derive(Debug, Clone)]
pub struct RecordLimits {
    /// Records per key.
    pub per_key: usize,
    /// Records one announcing node may hold here.
    pub per_node: usize,
    /// Records in all.
    pub total: usize,
    /// How long a record lives unless renewed.
    pub ttl: Duration,
}

impl Default for RecordLimits {
    fn default() -> Self {
        Self {
            per_key: K,
            per_node: 2048,
            total: 100_000,
            ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The records, with counts kept in memory to enforce the limits.
#[derive(Debug)]
pub(crate) struct Records {
    store: Store,
    limits: RecordLimits,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    per_node: HashMap<NodeId, usize>,
    total: usize,
}

impl Counts {
    fn from_keys(keys: &[(Hash, NodeId)]) -> Self {
        let mut c = Self::default();
        for (_, n) in keys {
            c.add(*n);
        }
        c
    }

    fn add(&mut self, node: NodeId) {
        *self.per_node.entry(node).or_default() += 1;
        self.total += 1;
    }

    fn remove(&mut self, node: NodeId) {
        if let Some(n) = self.per_node.get_mut(&node) {
            *n -= 1;
            if *n == 0 {
                self.per_node.remove(&node);
            }
            self.total -= 1;
        }
    }
}

impl Records {
    /// Loads the counts of the records in `store`.
    pub(crate) fn open(store: Store, limits: RecordLimits) -> Result<Self, StoreError> {
        let counts = Counts::from_keys(&store.provider_keys()?);
        Ok(Self {
            store,
            limits,
            counts: Mutex::new(counts),
        })
    }

    /// Stores `node`'s announcement that it provides `hash` at `addrs`
    /// (already ordered and deduplicated by the caller). Returns the TTL in
    /// seconds, or why not.
    pub(crate) fn add(
        &self,
        hash: &Hash,
        node: NodeId,
        mut addrs: Vec<SocketAddr>,
    ) -> Result<Result<u32, Refusal>, StoreError> {
        addrs.truncate(MAX_NODE_ADDRS);
        let admit_new = {
            let c = crate::lock(&self.counts);
            c.total < self.limits.total
                && c.per_node.get(&node).copied().unwrap_or(0) < self.limits.per_node
        };
        let ttl = self.limits.ttl.as_secs();
        let record = ProviderRecord {
            node,
            addrs,
            expires: unix_now() + ttl,
        };
        match self
            .store
            .put_provider(hash, &record, self.limits.per_key, admit_new)?
        {
            PutProvider::Refused => return Ok(Err(Refusal::Full)),
            PutProvider::Renewed => {}
            PutProvider::Added { evicted } => {
                let mut c = crate::lock(&self.counts);
                c.add(node);
                if let Some(gone) = evicted {
                    c.remove(gone);
                }
            }
        }
        Ok(Ok(u32::try_from(ttl).unwrap_or(u32::MAX)))
    }

    /// Unexpired providers of `hash`, at most k.
    pub(crate) fn get(&self, hash: &Hash) -> Result<Vec<NodeAddr>, StoreError> {
        let mut records = self.store.providers(hash, unix_now())?;
        records.sort_by_key(|r| std::cmp::Reverse(r.expires));
        Ok(records
            .into_iter()
            .filter(|r| !r.addrs.is_empty())
            .take(K)
            .map(|r| NodeAddr {
                id: r.node,
                addrs: r.addrs,
            })
            .collect())
    }

    /// Drops expired records (a durable commit) and recounts.
    pub(crate) fn expire(&self) -> Result<usize, StoreError> {
        let gone = self.store.expire_providers(unix_now())?.len();
        let counts = Counts::from_keys(&self.store.provider_keys()?);
        *crate::lock(&self.counts) = counts;
        Ok(gone)
    }

    /// Records held.
    pub(crate) fn len(&self) -> usize {
        crate::lock(&self.counts).total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_node_and_in_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let r = Records::open(
            store,
            RecordLimits {
                per_key: 20,
                per_node: 2,
                total: 3,
                ttl: Duration::from_secs(60),
            },
        )
        .unwrap();
        let a = NodeId::from_bytes([1; 32]);
        let b = NodeId::from_bytes([2; 32]);
        let addr = vec!["10.0.0.1:1".parse().unwrap()];
        let h = |i: u8| Hash::from_bytes([i; 32]);
        assert_eq!(r.add(&h(1), a, addr.clone()).unwrap(), Ok(60));
        assert_eq!(r.add(&h(2), a, addr.clone()).unwrap(), Ok(60));
        // a holds its two; renewing one is fine, a third is not.
        assert_eq!(r.add(&h(3), a, addr.clone()).unwrap(), Err(Refusal::Full));
        assert_eq!(r.add(&h(1), a, addr.clone()).unwrap(), Ok(60));
        assert_eq!(r.add(&h(3), b, addr.clone()).unwrap(), Ok(60));
        // Three in all.
        assert_eq!(r.add(&h(4), b, addr.clone()).unwrap(), Err(Refusal::Full));
        assert_eq!(r.len(), 3);
        assert_eq!(r.get(&h(1)).unwrap()[0].id, a);
        assert_eq!(r.expire().unwrap(), 0);
        assert_eq!(r.len(), 3);
    }
}
