//! Peers caught sending data that does not verify: no download asks them
//! for anything again until the ban runs out (BitTorrent clients do the
//! same with peers that send bad pieces). Only a proven lie bans: a
//! timeout, a refusal or a broken connection never does, so an honest
//! peer on a bad link is not banned.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use p2pfs_proto::NodeId;
use serde::{Deserialize, Serialize};

/// How long a ban lasts.
pub const BAN_FOR: Duration = Duration::from_secs(3600);

/// The most peers banned at once; beyond, the ban nearest its end goes.
const MAX_BANS: usize = 4096;

/// A banned peer, as shown in `p2pfs status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BannedPeer {
    /// Its id.
    pub id: NodeId,
    /// What it did.
    pub reason: String,
    /// Seconds until the ban ends.
    pub secs_left: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Bans {
    bans: Mutex<HashMap<NodeId, (Instant, String)>>,
}

impl Bans {
    /// Bans `peer` for [`BAN_FOR`] from `now`.
    pub(crate) fn ban(&self, peer: NodeId, reason: String, now: Instant) {
        let mut bans = self.lock();
        bans.retain(|_, (until, _)| *until > now);
        if bans.len() >= MAX_BANS
            && !bans.contains_key(&peer)
            && let Some(first) = bans.iter().min_by_key(|(_, (u, _))| *u).map(|(p, _)| *p)
        {
            bans.remove(&first);
        }
        bans.insert(peer, (now + BAN_FOR, reason));
    }

    /// Whether `peer` is banned at `now`.
    pub(crate) fn is_banned(&self, peer: &NodeId, now: Instant) -> bool {
        self.lock().get(peer).is_some_and(|(until, _)| *until > now)
    }

    /// The bans in force at `now`.
    pub(crate) fn list(&self, now: Instant) -> Vec<BannedPeer> {
        let mut out: Vec<BannedPeer> = self
            .lock()
            .iter()
            .filter(|(_, (until, _))| *until > now)
            .map(|(id, (until, reason))| BannedPeer {
                id: *id,
                reason: reason.clone(),
                secs_left: until.duration_since(now).as_secs(),
            })
            .collect();
        out.sort_by_key(|b| b.id);
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, (Instant, String)>> {
        self.bans.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> NodeId {
        NodeId::from_bytes([b; 32])
    }

    #[test]
    fn a_ban_holds_until_it_runs_out() {
        let bans = Bans::default();
        let t = Instant::now();
        bans.ban(id(1), "sent bad data".into(), t);
        assert!(bans.is_banned(&id(1), t + Duration::from_secs(1)));
        assert!(!bans.is_banned(&id(2), t));
        assert!(!bans.is_banned(&id(1), t + BAN_FOR));
        let listed = bans.list(t + Duration::from_secs(10));
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].secs_left, BAN_FOR.as_secs() - 10);
        assert!(bans.list(t + BAN_FOR).is_empty());
    }

    #[test]
    fn bans_are_bounded_and_the_oldest_goes_first() {
        let bans = Bans::default();
        let t = Instant::now();
        for i in 0..MAX_BANS + 10 {
            let mut b = [0u8; 32];
            b[..8].copy_from_slice(&(i as u64).to_le_bytes());
            bans.ban(
                NodeId::from_bytes(b),
                String::new(),
                t + Duration::from_millis(i as u64),
            );
        }
        assert_eq!(bans.list(t).len(), MAX_BANS);
        let mut first = [0u8; 32];
        first[..8].copy_from_slice(&0u64.to_le_bytes());
        assert!(!bans.is_banned(&NodeId::from_bytes(first), t + Duration::from_secs(1)));
    }
}
