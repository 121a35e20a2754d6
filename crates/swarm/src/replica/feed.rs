//! Sending this replica's status on a session: everything it holds at the
//! start, then what changed, and at least one status per heartbeat; then
//! `Leaving` when it starts to stop, and nothing once it has said goodbye.

use std::{collections::HashSet, sync::Arc, time::Duration};

use p2pfs_proto::{
    Hash,
    room::{MAX_STATUS_HASHES, Status, SyncMsg},
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Local, Phase};
use crate::room::{Room, sync::Out};

/// The statuses that bring a receiver that knows `sent` up to `cur`
/// (`first`: it knows nothing yet). Never empty: a status is also the
/// heartbeat.
pub(crate) fn statuses(
    cur: &Local,
    sent: &mut HashSet<Hash>,
    first: bool,
    heartbeat: Duration,
) -> Vec<Status> {
    let heartbeat_ms = u32::try_from(heartbeat.as_millis()).unwrap_or(u32::MAX);
    let (add, remove): (Vec<Hash>, Vec<Hash>) = if first {
        sent.clear();
        (cur.holds.iter().copied().collect(), Vec::new())
    } else {
        (
            cur.holds.difference(sent).copied().collect(),
            sent.difference(&cur.holds).copied().collect(),
        )
    };
    *sent = cur.holds.clone();
    let mut out = Vec::new();
    let mut add = add.into_iter().peekable();
    let mut remove = remove.into_iter().peekable();
    loop {
        let mut s = Status {
            full: cur.full,
            reset: first && out.is_empty(),
            heartbeat_ms,
            add: Vec::new(),
            remove: Vec::new(),
        };
        while s.add.len() + s.remove.len() < MAX_STATUS_HASHES {
            if let Some(h) = remove.next() {
                s.remove.push(h);
            } else if let Some(h) = add.next() {
                s.add.push(h);
            } else {
                break;
            }
        }
        out.push(s);
        if add.peek().is_none() && remove.peek().is_none() {
            return out;
        }
    }
}

/// Sends statuses on one session until it ends.
pub(crate) async fn run(
    room: Arc<Room>,
    tx: mpsc::Sender<Out>,
    cancel: CancellationToken,
    heartbeat: Duration,
) {
    let mut local = room.replica.local.subscribe();
    let mut phase = room.replica.phase.subscribe();
    // Nothing until the runtime has looked at the store once.
    tokio::select! {
        _ = cancel.cancelled() => return,
        r = local.wait_for(Option::is_some) => if r.is_err() { return },
    }
    let mut sent = HashSet::new();
    let mut first = true;
    let mut said_leaving = false;
    loop {
        let now = *phase.borrow_and_update();
        if now == Phase::Gone {
            return;
        }
        let cur = local.borrow_and_update().clone();
        if let Some(cur) = cur {
            for s in statuses(&cur, &mut sent, first, heartbeat) {
                if tx.send(Out::Msg(SyncMsg::Status(s))).await.is_err() {
                    return;
                }
            }
            first = false;
        }
        if now == Phase::Leaving && !said_leaving {
            said_leaving = true;
            if tx.send(Out::Msg(SyncMsg::Leaving)).await.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = local.changed() => if r.is_err() { return },
            r = phase.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(heartbeat) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HB: Duration = Duration::from_millis(500);

    fn local(range: std::ops::Range<u32>, full: bool) -> Local {
        Local {
            holds: range.map(|n| Hash::of(&n.to_le_bytes())).collect(),
            full,
        }
    }

    #[test]
    fn first_everything_then_deltas_then_heartbeats() {
        let mut sent = HashSet::new();
        let a = local(0..10, false);
        let s = statuses(&a, &mut sent, true, HB);
        assert_eq!(s.len(), 1);
        assert!(s[0].reset && s[0].add.len() == 10 && s[0].remove.is_empty());
        assert_eq!(s[0].heartbeat_ms, 500);
        let b = local(5..12, true);
        let s = statuses(&b, &mut sent, false, HB);
        assert_eq!(s.len(), 1);
        assert!(!s[0].reset && s[0].full);
        assert_eq!((s[0].add.len(), s[0].remove.len()), (2, 5));
        let s = statuses(&b, &mut sent, false, HB);
        assert_eq!(s.len(), 1);
        assert!(s[0].add.is_empty() && s[0].remove.is_empty());
    }

    #[test]
    fn large_sets_are_split_within_the_bound() {
        let mut sent = HashSet::new();
        let big = local(0..(2 * MAX_STATUS_HASHES as u32 + 5), false);
        let s = statuses(&big, &mut sent, true, HB);
        assert_eq!(s.len(), 3);
        assert!(s[0].reset && !s[1].reset && !s[2].reset);
        assert!(
            s.iter()
                .all(|m| m.add.len() + m.remove.len() <= MAX_STATUS_HASHES)
        );
        let total: usize = s.iter().map(|m| m.add.len()).sum();
        assert_eq!(total, big.holds.len());
        assert!(
            SyncMsg::Status(s[0].clone()).check().is_ok()
                && p2pfs_proto::codec::encode(&SyncMsg::Status(s[0].clone()))
                    .unwrap()
                    .len()
                    < p2pfs_proto::room::MAX_SYNC_FRAME
        );
    }
}
