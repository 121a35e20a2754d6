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
    sync::Arc,
    time::{Duration, Instant},
};

use p2pfs_proto::{NodeAddr, NodeId};

use super::{Room, sync};
use crate::{Node, Target};

/// How often the runtime looks for members to dial.
const TICK: Duration = Duration::from_secs(2);
/// How often a server re-announces itself under the room's key.
const ANNOUNCE: Duration = Duration::from_secs(30 * 60);
/// How often to look members up in the DHT (sooner when alone).
const LOOKUP: Duration = Duration::from_secs(5 * 60);
const LOOKUP_ALONE: Duration = Duration::from_secs(20);
/// Addresses saved with a room.
const SAVED_NODES: usize = 32;

pub(crate) async fn run(node: Node, room: Arc<Room>) {
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
        let now = room.now_ms();
        let (dials, surplus) = {
            let mut mesh = crate::lock(&room.mesh);
            while let Ok((peer, failed)) = done_rx.try_recv() {
                mesh.dial_ended(peer, failed, now);
            }
            mesh.expire(now);
            (mesh.dials(now), mesh.surplus(now))
        };
        // Sessions no view needs, in a room big enough to have them.
        for peer in surplus {
            if let Some(h) = crate::lock(&room.sessions).get(&peer) {
                tracing::debug!(%peer, "ending a room session no view needs");
                h.cancel.cancel();
            }
        }
        for peer in dials {
            let addrs = crate::lock(&room.nodes)
                .get(&peer)
                .cloned()
                .unwrap_or_default();
            if addrs.is_empty() {
                crate::lock(&room.mesh).dial_ended(peer, true, now);
                continue;
            }
            let (n, r, tx) = (node.clone(), room.clone(), done_tx.clone());
            let target = Target {
                id: Some(peer),
                addrs,
            };
            // The dial is in progress until the member has proven itself
            // and the session is the room's (`Mesh::up`), not for the
            // whole session.
            node.net().spawn(async move {
                let failed = match sync::dial(&n, r, &target, || {}).await {
                    Ok(()) => false,
                    Err(e) => {
                        tracing::debug!(%peer, "room dial: {e}");
                        true
                    }
                };
                let _ = tx.send((peer, failed));
            });
        }
        let online = room.with_session();
        let dht = &node.inner.dht;
        if dht.config.server && last_announce.is_none_or(|t| t.elapsed() > ANNOUNCE) {
            last_announce = Some(Instant::now());
            let (n, key) = (node.clone(), room.secret.dht_key());
            node.net().spawn(async move {
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
            node.net().spawn(async move {
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
