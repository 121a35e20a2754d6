//! Sending this replica's presence to the whole room (docs/protocol.md
//! §8.10): its status, signed, which every member forwards once, so that
//! members without a session with it know it is online and what it keeps.
//!
//! A new run starts with a presence with `reset` (seq 0); then one goes out
//! whenever what it keeps, its `full` flag or its phase changes, and at
//! least every period (the heartbeat, longer in rooms of more than 32
//! members: [`presence_period`]); every [`RESET_EVERY`]th is a reset again,
//! so a member that missed one catches up.

use std::{collections::HashSet, sync::Arc, time::Duration};

use p2pfs_proto::{
    Hash,
    room::{Presence, PresenceBody, PresencePhase, Signature, SyncMsg, presence_message},
};

use super::{Local, Phase, feed::statuses};
use crate::{
    Node,
    room::{
        Room,
        mesh::{RESET_EVERY, presence_period},
        overlay::Cmd,
    },
};

/// Where this replica's presences stand in a room.
#[derive(Debug)]
pub(crate) struct Emitter {
    run: u64,
    seq: u64,
    sent: HashSet<Hash>,
    /// The phase of the last presence sent.
    phase: Option<PresencePhase>,
}

impl Default for Emitter {
    fn default() -> Self {
        Self {
            run: crate::room::log::now_ms(),
            seq: 0,
            sent: HashSet::new(),
            phase: None,
        }
    }
}

fn phase_of(p: Phase) -> PresencePhase {
    match p {
        Phase::Running => PresencePhase::Running,
        Phase::Leaving => PresencePhase::Leaving,
        Phase::Gone => PresencePhase::Gone,
    }
}

/// How often this replica sends its presence in `room`, as big as it is.
fn period(room: &Room, heartbeat: Duration) -> Duration {
    let members = room.overlay.snapshot().known + 1;
    Duration::from_millis(presence_period(
        u64::try_from(heartbeat.as_millis()).unwrap_or(u64::MAX),
        members,
    ))
}

/// Signs and sends this replica's presence (several if what it keeps
/// does not fit one), from what it keeps and its phase now.
pub(crate) fn emit(node: &Node, room: &Room, cur: &Local, phase: Phase, heartbeat: Duration) {
    let period = period(room, heartbeat);
    let mut em = crate::lock(&room.replica.presence);
    let reset = em.seq.is_multiple_of(RESET_EVERY);
    let phase = phase_of(phase);
    em.phase = Some(phase);
    let list = statuses(cur, &mut em.sent, reset, period);
    for status in list {
        let body = PresenceBody {
            origin: node.id(),
            member: room.secret.member_tag(&node.id()),
            run: em.run,
            seq: em.seq,
            phase,
            status,
        };
        em.seq += 1;
        let (reset, run, seq) = (body.status.reset, body.run, body.seq);
        let Ok(bytes) = p2pfs_proto::codec::encode(&body) else {
            continue;
        };
        let sig = Signature(node.secret_key().sign(&presence_message(&room.id, &bytes)));
        let p = Arc::new(Presence { body: bytes, sig });
        // Straight to every session (a goodbye must leave before they
        // close); the overlay keeps it for sessions that start later.
        room.send_all(&Arc::new(SyncMsg::Presence((*p).clone())));
        room.overlay.try_send(Cmd::Own { p, run, seq, reset });
    }
}

/// Sends presences in `room` until this replica is gone (its last one says
/// so) or the room stops.
pub(crate) async fn run(node: Node, room: Arc<Room>, heartbeat: Duration) {
    let mut local = room.replica.local.subscribe();
    let mut phase = room.replica.phase.subscribe();
    // Nothing until the runtime has looked at the store once.
    tokio::select! {
        _ = room.cancel.cancelled() => return,
        r = local.wait_for(Option::is_some) => if r.is_err() { return },
    }
    loop {
        let now = *phase.borrow_and_update();
        let cur = local.borrow_and_update().clone();
        if let Some(cur) = cur {
            emit(&node, &room, &cur, now, heartbeat);
        }
        if now == Phase::Gone {
            return;
        }
        let period = period(&room, heartbeat);
        tokio::select! {
            _ = room.cancel.cancelled() => return,
            r = local.changed() => if r.is_err() { return },
            r = phase.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(period) => {}
        }
    }
}

/// Says goodbye in `room` by presence, at once (before the sessions close).
pub(crate) fn goodbye(node: &Node, room: &Room, heartbeat: Duration) {
    let said = crate::lock(&room.replica.presence).phase;
    if said.is_none() || said == Some(PresencePhase::Gone) {
        return;
    }
    let cur = room.replica.local.borrow().clone();
    if let Some(cur) = cur {
        emit(node, room, &cur, Phase::Gone, heartbeat);
    }
}
