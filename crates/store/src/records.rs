//! What the store keeps for the network rather than for blobs: DHT provider
//! records (soft state with an expiry) and the nodes remembered from the
//! last run, so a restarted node can rejoin without being told a peer.
//!
//! Provider records are written without an fsync of their own
//! ([`redb::Durability::None`]): the next durable commit (any blob commit,
//! [`Store::expire_providers`] or [`Store::save_nodes`]) makes them
//! durable. Losing the last few after a crash costs a re-announcement.

use std::net::SocketAddr;

use p2pfs_proto::{Hash, NodeId, codec};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::{
    Store,
    error::{DbContext, StoreError},
    tables::{self, HashKey},
};

/// One provider record: `node` provides a blob until `expires`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderRecord {
    /// The provider.
    pub node: NodeId,
    /// Where it said it can be reached.
    pub addrs: Vec<SocketAddr>,
    /// Expiry, in seconds since the Unix epoch.
    pub expires: u64,
}

/// What [`Store::put_provider`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutProvider {
    /// The node's record for the hash existed and was replaced.
    Renewed,
    /// A new record; `evicted` is the node whose record made room.
    Added {
        /// The node whose record was removed, if one was.
        evicted: Option<NodeId>,
    },
    /// Not stored: the hash has its fill of longer-lived records, or a new
    /// record was not admitted.
    Refused,
}

/// The stored value of a provider record (the key holds hash and node).
#[derive(Serialize, Deserialize)]
struct ProviderValue {
    addrs: Vec<SocketAddr>,
    expires: u64,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

impl Store {
    /// Stores (or renews) `record` for `hash`, keeping at most `per_key`
    /// records for the hash: when full, the record expiring first makes
    /// room, unless it outlives the new one. A record that is not a
    /// renewal is refused unless `admit_new`.
    pub fn put_provider(
        &self,
        hash: &Hash,
        record: &ProviderRecord,
        per_key: usize,
        admit_new: bool,
    ) -> Result<PutProvider, StoreError> {
        let value = codec::encode(&ProviderValue {
            addrs: record.addrs.clone(),
            expires: record.expires,
        })
        .map_err(|e| StoreError::Invalid(format!("provider record: {e}")))?;
        let mut txn = self.begin_write()?;
        txn.set_durability(redb::Durability::None)
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let outcome = {
            let mut t = txn.open_table(tables::PROVIDERS).db()?;
            let key = (hash.as_bytes(), record.node.as_bytes());
            let outcome = if t.get(key).db()?.is_some() {
                PutProvider::Renewed
            } else if !admit_new {
                return Ok(PutProvider::Refused);
            } else {
                let mut count = 0;
                let mut soonest: Option<(u64, HashKey)> = None;
                for item in t
                    .range((hash.as_bytes(), &[0u8; 32])..=(hash.as_bytes(), &[0xff; 32]))
                    .db()?
                {
                    let (k, v) = item.db()?;
                    count += 1;
                    let expires = codec::decode::<ProviderValue>(v.value())
                        .map(|p| p.expires)
                        .unwrap_or(0);
                    if soonest.is_none_or(|(e, _)| expires < e) {
                        soonest = Some((expires, *k.value().1));
                    }
                }
                let evicted = match soonest {
                    _ if count < per_key => None,
                    Some((e, node)) if e <= record.expires => {
                        t.remove((hash.as_bytes(), &node)).db()?;
                        Some(NodeId::from_bytes(node))
                    }
                    _ => return Ok(PutProvider::Refused),
                };
                PutProvider::Added { evicted }
            };
            t.insert(key, value.as_slice()).db()?;
            outcome
        };
        txn.commit().db()?;
        Ok(outcome)
    }

    /// The unexpired provider records of `hash` (at `now`, Unix seconds).
    pub fn providers(&self, hash: &Hash, now: u64) -> Result<Vec<ProviderRecord>, StoreError> {
        let txn = self.begin_read()?;
        let t = txn.open_table(tables::PROVIDERS).db()?;
        let mut out = Vec::new();
        for item in t
            .range((hash.as_bytes(), &[0u8; 32])..=(hash.as_bytes(), &[0xff; 32]))
            .db()?
        {
            let (k, v) = item.db()?;
            let p: ProviderValue =
                codec::decode(v.value()).map_err(|e| corrupt("provider record", e))?;
            if p.expires > now {
                out.push(ProviderRecord {
                    node: NodeId::from_bytes(*k.value().1),
                    addrs: p.addrs,
                    expires: p.expires,
                });
            }
        }
        Ok(out)
    }

    /// Every provider record as (hash, node), expired or not.
    pub fn provider_keys(&self) -> Result<Vec<(Hash, NodeId)>, StoreError> {
        let txn = self.begin_read()?;
        let t = txn.open_table(tables::PROVIDERS).db()?;
        let mut out = Vec::new();
        for item in t.iter().db()? {
            let (k, _) = item.db()?;
            let (h, n) = k.value();
            out.push((Hash::from_bytes(*h), NodeId::from_bytes(*n)));
        }
        Ok(out)
    }

    /// Removes the records expired at `now` (durably, which also makes the
    /// records written since the last durable commit durable). Returns the
    /// (hash, node) of each removed record.
    pub fn expire_providers(&self, now: u64) -> Result<Vec<(Hash, NodeId)>, StoreError> {
        let txn = self.begin_write()?;
        let removed = {
            let mut t = txn.open_table(tables::PROVIDERS).db()?;
            let mut gone = Vec::new();
            for item in t.iter().db()? {
                let (k, v) = item.db()?;
                let expires = codec::decode::<ProviderValue>(v.value())
                    .map(|p| p.expires)
                    .unwrap_or(0);
                if expires <= now {
                    let (h, n) = k.value();
                    gone.push((*h, *n));
                }
            }
            for (h, n) in &gone {
                t.remove((h, n)).db()?;
            }
            gone
        };
        txn.commit().db()?;
        Ok(removed
            .into_iter()
            .map(|(h, n)| (Hash::from_bytes(h), NodeId::from_bytes(n)))
            .collect())
    }

    /// Replaces the remembered nodes with `nodes` (durably).
    pub fn save_nodes(&self, nodes: &[(NodeId, Vec<SocketAddr>)]) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        {
            let mut t = txn.open_table(tables::NODES).db()?;
            t.retain(|_, _| false).db()?;
            for (id, addrs) in nodes {
                let v = codec::encode(addrs)
                    .map_err(|e| StoreError::Invalid(format!("node addresses: {e}")))?;
                t.insert(id.as_bytes(), v.as_slice()).db()?;
            }
        }
        txn.commit().db()
    }

    /// The nodes saved by [`Store::save_nodes`]; entries that do not decode
    /// are skipped.
    pub fn load_nodes(&self) -> Result<Vec<(NodeId, Vec<SocketAddr>)>, StoreError> {
        let txn = self.begin_read()?;
        let t = txn.open_table(tables::NODES).db()?;
        let mut out = Vec::new();
        for item in t.iter().db()? {
            let (k, v) = item.db()?;
            if let Ok(addrs) = codec::decode::<Vec<SocketAddr>>(v.value()) {
                out.push((NodeId::from_bytes(*k.value()), addrs));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(node: u8, expires: u64) -> ProviderRecord {
        ProviderRecord {
            node: NodeId::from_bytes([node; 32]),
            addrs: vec!["10.0.0.1:4433".parse().unwrap()],
            expires,
        }
    }

    #[test]
    fn records_expire_are_bounded_per_key_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let h = Hash::from_bytes([1; 32]);
        let other = Hash::from_bytes([2; 32]);
        {
            let s = Store::open(dir.path()).unwrap();
            let added = PutProvider::Added { evicted: None };
            assert_eq!(s.put_provider(&h, &rec(1, 100), 2, true).unwrap(), added);
            assert_eq!(s.put_provider(&h, &rec(2, 200), 2, true).unwrap(), added);
            assert_eq!(
                s.put_provider(&other, &rec(1, 100), 2, true).unwrap(),
                added
            );
            // Full: a newcomer living longer replaces the soonest to expire…
            assert_eq!(
                s.put_provider(&h, &rec(3, 300), 2, true).unwrap(),
                PutProvider::Added {
                    evicted: Some(NodeId::from_bytes([1; 32]))
                }
            );
            let nodes: Vec<u8> = s
                .providers(&h, 0)
                .unwrap()
                .iter()
                .map(|r| r.node.as_bytes()[0])
                .collect();
            assert_eq!(nodes, [2, 3]);
            // …one expiring sooner than all is refused, as is one not
            // admitted; a renewal is not.
            assert_eq!(
                s.put_provider(&h, &rec(4, 50), 2, true).unwrap(),
                PutProvider::Refused
            );
            assert_eq!(
                s.put_provider(&other, &rec(4, 500), 2, false).unwrap(),
                PutProvider::Refused
            );
            assert_eq!(
                s.put_provider(&h, &rec(2, 400), 2, false).unwrap(),
                PutProvider::Renewed
            );
            assert_eq!(s.providers(&h, 250).unwrap().len(), 2);
            assert_eq!(s.providers(&h, 350).unwrap().len(), 1);
            s.save_nodes(&[(NodeId::from_bytes([9; 32]), rec(9, 0).addrs)])
                .unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.provider_keys().unwrap().len(), 3);
        let gone = s.expire_providers(150).unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].1, NodeId::from_bytes([1; 32]));
        assert_eq!(s.provider_keys().unwrap().len(), 2);
        let nodes = s.load_nodes().unwrap();
        assert_eq!(nodes, vec![(NodeId::from_bytes([9; 32]), rec(9, 0).addrs)]);
        s.save_nodes(&[]).unwrap();
        assert!(s.load_nodes().unwrap().is_empty());
    }
}
