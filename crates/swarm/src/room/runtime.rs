//! Per room: find the members and keep a session with each.
//!
//! Members are found through the addresses the room remembers (the
//! ticket's, then those learned from sessions and `Peers` messages) and
//! through the DHT, where every member running as a server announces
//! itself under the room's DHT key (derived from the secret, so only
//! members can look it up). Failed dials back off exponentially; learned
//! addresses are saved with the room as soon as they are learned (a node
//! killed right after a member joined must still find it when it starts
//! again).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use p2pfs_proto::{NodeAddr, NodeId};

use super::{Room, sync};
use crate::{Node, Target};

/// How often the runtime looks for members to dial.
const TICK: Duration = Duration::from_secs(2);
/// Longest wait between attempts to reach a member.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often a server re-announces itself under the room's key.
const ANNOUNCE: Duration = Duration::from_secs(30 * 60);
/// How often to look members up in the DHT (sooner when alone).
const LOOKUP: Duration = Duration::from_secs(5 * 60);
const LOOKUP_ALONE: Duration = Duration::from_secs(20);
/// Sessions dialed at once per room.
const MAX_DIALS: usize = 8;
/// Addresses saved with a room.
const SAVED_NODES: usize = 32;

pub(crate) async fn run(node: Node, room: Arc<Room>) {
    let active: Arc<Mutex<HashSet<NodeId>>> = Arc::default();
    let mut backoff: HashMap<NodeId, (Instant, Duration)> = HashMap::new();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<(NodeId, bool)>();
    let mut last_announce: Option<Instant> = None;
    let mut last_lookup: Option<Instant> = None;
    let mut saved_version = u64::MAX;
    let mut saved: Vec<NodeAddr> = Vec::new();
    let mut gossiped = 0u64;
    let mut last_gossip = Instant::now();
    loop {
        // New members or addresses: tell the others (at most every second).
        let version = room
            .nodes_version
            .load(std::sync::atomic::Ordering::Relaxed);
        if version != gossiped && last_gossip.elapsed() >= Duration::from_secs(1) {
            gossiped = version;
            last_gossip = Instant::now();
            room.gossip(&node.node_addr());
        }
        while let Ok((peer, ok)) = done_rx.try_recv() {
            crate::lock(&active).remove(&peer);
            let next = if ok {
                Duration::from_secs(1)
            } else {
                backoff
                    .get(&peer)
                    .map_or(Duration::from_secs(1), |(_, d)| (*d * 2).min(MAX_BACKOFF))
            };
            backoff.insert(peer, (Instant::now() + next, next));
        }
        let online: HashSet<NodeId> = room.online().into_iter().collect();
        let known: Vec<(NodeId, Vec<std::net::SocketAddr>)> = crate::lock(&room.nodes)
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        for (peer, addrs) in &known {
            if *peer == node.id() || online.contains(peer) || addrs.is_empty() {
                continue;
            }
            if backoff.get(peer).is_some_and(|(t, _)| *t > Instant::now()) {
                continue;
            }
            {
                let mut a = crate::lock(&active);
                if a.len() >= MAX_DIALS || !a.insert(*peer) {
                    continue;
                }
            }
            let (n, r, tx) = (node.clone(), room.clone(), done_tx.clone());
            let target = Target {
                id: Some(*peer),
                addrs: addrs.clone(),
            };
            let peer = *peer;
            // A dial takes one of the `MAX_DIALS` slots until the member
            // has proven itself, not for the whole session: else a node
            // would never hold sessions it dialed with more than 8 members,
            // and a room of 20 never meets in full.
            let slots = active.clone();
            let established = move || {
                crate::lock(&slots).remove(&peer);
            };
            node.inner.tasks.spawn(async move {
                let ok = match sync::dial(&n, r, &target, established).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::debug!(%peer, "room dial: {e}");
                        false
                    }
                };
                let _ = tx.send((peer, ok));
            });
        }
        let dht = &node.inner.dht;
        if dht.config.server && last_announce.is_none_or(|t| t.elapsed() > ANNOUNCE) {
            last_announce = Some(Instant::now());
            let (n, key) = (node.clone(), room.secret.dht_key());
            node.inner.tasks.spawn(async move {
                n.announce(key).await;
            });
        }
        let every = if online.is_empty() {
            LOOKUP_ALONE
        } else {
            LOOKUP
        };
        if last_lookup.is_none_or(|t| t.elapsed() > every) {
            last_lookup = Some(Instant::now());
            let (n, r) = (node.clone(), room.clone());
            node.inner.tasks.spawn(async move {
                n.wait_joined().await;
                if let Ok(found) = n.find_providers(r.secret.dht_key()).await {
                    for p in found {
                        if p.id != n.id() {
                            r.learn(p.id, p.addrs);
                        }
                    }
                }
            });
        }
        // (Addresses change rarely: when a member joins or moves.)
        if version != saved_version {
            saved_version = version;
            save(&node, &room, &mut saved).await;
        }
        tokio::select! {
            _ = room.cancel.cancelled() => break,
            _ = room.wake.notified() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

/// Saves the members' addresses with the room if they changed.
async fn save(node: &Node, room: &Room, saved: &mut Vec<NodeAddr>) {
    let nodes: Vec<NodeAddr> = crate::lock(&room.nodes)
        .iter()
        .take(SAVED_NODES)
        .map(|(id, addrs)| NodeAddr {
            id: *id,
            addrs: addrs.clone(),
        })
        .collect();
    if nodes == *saved {
        return;
    }
    *saved = nodes.clone();
    let (store, id) = (node.store().clone(), room.id);
    if let Err(e) = crate::blocking(move || store.set_room_nodes(&id, nodes)).await {
        tracing::warn!("saving the room's members: {e}");
    }
}
