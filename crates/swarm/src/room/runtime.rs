//! Per room, the task that owns the room's overlay (`overlay`): it takes
//! in what sessions and lookups tell it, finds the members and keeps
//! sessions with those the mesh wants.
//!
//! Members are found through the addresses the room remembers (the
//! ticket's, then those learned from sessions and `Peers` messages) and
//! through the DHT, where every member running as a server announces
//! itself under the room's DHT key (derived from the secret, so only
//! members can look it up), and on the BitTorrent Mainline DHT, under an
//! info hash derived from the secret and the day (`crate::mainline`),
//! where a member that knows no p2pfs node at all finds the others; members
//! known by id whose addresses fail are looked up there by their address
//! record. Failed dials back off exponentially; learned
//! addresses are saved with the room as soon as they are learned (a node
//! killed right after a member joined must still find it when it starts
//! again).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use p2pfs_proto::NodeAddr;

use tokio::sync::mpsc;

use super::{
    Room,
    overlay::{Cmd, Overlay, Snapshot},
    sync,
};
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

/// Commands taken in before the runtime looks at the mesh again.
const BATCH: usize = 256;

pub(crate) async fn run(
    node: Node,
    room: Arc<Room>,
    mut overlay: Overlay,
    mut cmds: mpsc::Receiver<Cmd>,
) {
    let mut due = Due::default();
    let mut saved_version = u64::MAX;
    let mut saved: Vec<NodeAddr> = Vec::new();
    let mut gossiped = 0u64;
    let mut last_gossip = Instant::now();
    let mut looked_at = u64::MAX;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let version = overlay.snapshot().nodes_version;
        // New members or addresses: tell the others (at most every second).
        if version != gossiped && last_gossip.elapsed() >= Duration::from_secs(1) {
            gossiped = version;
            last_gossip = Instant::now();
            overlay.gossip(&node.node_addr());
        }
        if version != looked_at {
            looked_at = version;
            tend(&node, &room, &mut overlay);
        }
        // (Addresses change rarely: when a member joins or moves.)
        if version != saved_version {
            saved_version = version;
            save(&node, &room, &overlay.snapshot(), &mut saved).await;
        }
        tokio::select! {
            _ = room.cancel.cancelled() => break,
            cmd = cmds.recv() => {
                let Some(cmd) = cmd else { break };
                let now = room.now_ms();
                overlay.handle(cmd, now);
                for _ in 1..BATCH {
                    match cmds.try_recv() {
                        Ok(cmd) => overlay.handle(cmd, now),
                        Err(_) => break,
                    }
                }
            }
            _ = tick.tick() => {
                tend(&node, &room, &mut overlay);
                lookups(&node, &room, &mut due);
            }
        }
    }
}

/// Ends the sessions no view needs and dials the members the mesh wants.
fn tend(node: &Node, room: &Arc<Room>, overlay: &mut Overlay) {
    let now = room.now_ms();
    overlay.expire(now);
    let (dials, surplus) = {
        let mesh = overlay.mesh();
        (mesh.dials(now), mesh.surplus(now))
    };
    let snap = overlay.snapshot();
    // Sessions no view needs, in a room big enough to have them.
    for peer in surplus {
        if let Some(h) = snap.sessions.get(&peer) {
            tracing::debug!(%peer, "ending a room session no view needs");
            h.cancel.cancel();
        }
    }
    for peer in dials {
        let addrs = snap.nodes.get(&peer).cloned().unwrap_or_default();
        if addrs.is_empty() {
            overlay.mesh().dial_ended(peer, true, now);
            continue;
        }
        let (n, r) = (node.clone(), room.clone());
        let target = Target {
            id: Some(peer),
            addrs,
        };
        // The dial is in progress until the member has proven itself and
        // the session is the room's (`Mesh::up`), not for the whole
        // session.
        node.net().spawn(async move {
            let failed = match sync::dial(&n, r.clone(), &target, || {}).await {
                Ok(()) => false,
                Err(e) => {
                    tracing::debug!(%peer, "room dial: {e}");
                    true
                }
            };
            r.overlay.send(Cmd::DialEnded { peer, failed }).await;
        });
    }
}

/// When announcements and lookups were last made.
#[derive(Debug, Default)]
struct Due {
    announce: Option<Instant>,
    lookup: Option<Instant>,
    /// The Mainline announcement, and the day it was for (the info hash
    /// changes daily).
    mainline: Option<(Instant, u64)>,
}

/// Members found through the Mainline DHT dialed per lookup.
const MAINLINE_DIALS: usize = 8;
/// Members without a session whose address records are looked up per
/// lookup.
const MAINLINE_RESOLVES: usize = 4;

/// Announces this node under the room's DHT key and looks the members up
/// there, each as often as it is due; the same on the Mainline DHT.
fn lookups(node: &Node, room: &Arc<Room>, due: &mut Due) {
    let dht = &node.inner.dht;
    if dht.config.server && due.announce.is_none_or(|t| t.elapsed() > ANNOUNCE) {
        due.announce = Some(Instant::now());
        let (n, key) = (node.clone(), room.secret.dht_key());
        node.net().spawn(async move {
            n.announce(key).await;
        });
    }
    let today = p2pfs_proto::mainline::day(crate::mainline::unix_now());
    if let Some(ml) = node.inner.mainline.clone()
        && dht.config.server
        && due
            .mainline
            .is_none_or(|(t, day)| t.elapsed() > ANNOUNCE || day != today)
    {
        due.mainline = Some((Instant::now(), today));
        let (n, r) = (node.clone(), room.clone());
        node.net().spawn(async move {
            // A node that just started may not have joined yet: a few
            // tries, 20 s apart.
            for _ in 0..5 {
                if ml.bootstrapped().await {
                    let port = crate::mainline::announced_port(n.net());
                    let now = crate::mainline::unix_now();
                    match ml.announce_room(&r.secret, port, now).await {
                        Ok(()) => return,
                        Err(e) => {
                            tracing::debug!(room = %r.id, "announcing on the Mainline DHT: {e}")
                        }
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(20)) => {},
                    _ = r.cancel.cancelled() => return,
                }
            }
        });
    }
    let every = if room.with_session().is_empty() {
        LOOKUP_ALONE
    } else {
        LOOKUP
    };
    if due.lookup.is_none_or(|t| t.elapsed() > every) {
        due.lookup = Some(Instant::now());
        let (n, r) = (node.clone(), room.clone());
        node.net().spawn(async move {
            n.wait_joined().await;
            if let Ok(found) = n.find_providers(r.secret.dht_key()).await {
                let me = n.id();
                r.learn_all(found, me).await;
            }
        });
        if let Some(ml) = node.inner.mainline.clone() {
            let (n, r) = (node.clone(), room.clone());
            node.net()
                .spawn(async move { mainline_lookup(n, r, ml).await });
        }
    }
}

/// Looks the room's members up on the Mainline DHT: dials the addresses
/// announced there that no known member has (the handshake proves who is
/// a member), and looks up the address records of members this node has
/// no session with.
async fn mainline_lookup(node: Node, room: Arc<Room>, ml: Arc<crate::mainline::Mainline>) {
    // Right after the node starts the DHT is still being joined: look up
    // as soon as it is (bounded), not at the next lookup.
    if !ml.bootstrapped().await {
        return;
    }
    let snap = room.overlay.snapshot();
    let known: Vec<std::net::SocketAddr> = snap.nodes.values().flatten().copied().collect();
    let mine = node.addrs();
    match ml
        .find_room(&room.secret, crate::mainline::unix_now())
        .await
    {
        Ok(found) => {
            let fresh: Vec<_> = found
                .into_iter()
                .filter(|a| !known.contains(a) && !mine.contains(a))
                .take(MAINLINE_DIALS)
                .collect();
            if !fresh.is_empty() {
                tracing::debug!(room = %room.id, ?fresh, "members found on the Mainline DHT");
            }
            for a in fresh {
                let (n, r) = (node.clone(), room.clone());
                node.net().spawn(async move {
                    let target = Target {
                        id: None,
                        addrs: vec![a],
                    };
                    if let Err(e) = sync::dial(&n, r, &target, || {}).await {
                        tracing::debug!(addr = %a, "dialing a member found on the Mainline DHT: {e}");
                    }
                });
            }
        }
        Err(e) => tracing::debug!(room = %room.id, "Mainline lookup: {e}"),
    }
    let absent: Vec<p2pfs_proto::NodeId> = snap
        .nodes
        .keys()
        .filter(|id| !snap.sessions.contains_key(id))
        .take(MAINLINE_RESOLVES)
        .copied()
        .collect();
    for id in absent {
        match ml.resolve_node(&id).await {
            Ok(addrs) if !addrs.is_empty() => room.learn(id, addrs).await,
            Ok(_) => {}
            Err(e) => tracing::debug!(peer = %id, "Mainline record: {e}"),
        }
    }
}

/// Saves the members' addresses with the room if they changed.
async fn save(node: &Node, room: &Room, snap: &Snapshot, saved: &mut Vec<NodeAddr>) {
    let nodes: Vec<NodeAddr> = snap
        .nodes
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
