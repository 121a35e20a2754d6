//! The room protocol between two members (docs/protocol.md §8.6).
//!
//! On a connection with ALPN `p2pfs/room/1`, the dialer opens one
//! bidirectional stream per room and sends a [`Hello`] carrying a proof of
//! membership bound to this connection's TLS exporter; the answerer finds
//! the room whose key makes the same proof and answers with its own
//! ([`Welcome::Member`]), or [`Welcome::Unknown`]. Neither side learns
//! which room the other asked about unless both are members.
//!
//! Then both sides run the same session: each sends [`SyncMsg::Have`] (how
//! many entries of each author it has) and the members it knows; each
//! answers a `Have` with the entries the other lacks, parents first, then
//! [`SyncMsg::Synced`]. Entries written or received later are pushed at
//! once. A `Have` is answered after everything before it on the stream has
//! been taken in, so a `Synced` reply confirms that the other side has
//! every entry sent before the `Have` (how a short-lived node makes sure
//! its writes reached a member before it exits).

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, atomic::Ordering},
    time::{Duration, Instant},
};

use p2pfs_proto::{
    NodeId,
    close::Code,
    codec,
    room::{
        EXPORTER_LABEL, Have, Hello, MAX_SYNC_FRAME, Presence, PresenceBody, PresencePhase,
        SyncMsg, Welcome, presence_message,
    },
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{
    Room, entry, log,
    mesh::{Apply, Heard},
};
use crate::{
    Node, SwarmError, Target,
    dial::{Conn, SIMULTANEOUS},
    error::SetupError,
    frame::{self, FrameError},
};

/// Most bytes of a `Hello` or `Welcome` frame.
const MAX_HANDSHAKE: usize = 256;
/// Messages queued for a session before it counts as too slow.
const QUEUE: usize = 1024;
/// Entries a member may send that fail verification before it is dropped.
const MAX_INVALID: usize = 64;
/// Entries read from the store per round when answering a `Have`.
const ANSWER_ROUND: usize = 4096;

/// What a session's writer sends.
#[derive(Debug)]
pub(crate) enum Out {
    /// A message for this session only.
    Msg(SyncMsg),
    /// A message shared by every session (pushes).
    Shared(Arc<SyncMsg>),
    /// Our `Have`; the oneshot, if any, fires when its `Synced` reply
    /// arrives.
    Have(Option<oneshot::Sender<()>>),
}

/// A live session, as the room sees it.
#[derive(Debug, Clone)]
pub(crate) struct Handle {
    pub(crate) tx: mpsc::Sender<Out>,
    pub(crate) cancel: CancellationToken,
    /// Who opened the connection: of two sessions between the same members,
    /// the one dialed by the lower id stays.
    dialer: NodeId,
    serial: u64,
    /// The connection it runs on, and since when.
    conn: usize,
    started: Instant,
}

static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn exporter(conn: &Conn) -> Result<[u8; 32], SwarmError> {
    let mut out = [0u8; 32];
    conn.conn
        .export_keying_material(&mut out, EXPORTER_LABEL, b"")
        .map_err(|_| SetupError::Exporter)?;
    Ok(out)
}

fn proto_err(peer: NodeId, reason: impl Into<String>) -> SwarmError {
    SwarmError::Protocol {
        peer,
        reason: reason.into(),
    }
}

/// Dials `target` for `room` and runs the session until it ends;
/// `established` is called once the member proved itself and the session
/// is the room's (the dial is done).
pub(crate) async fn dial(
    node: &Node,
    room: Arc<Room>,
    target: &Target,
    established: impl FnOnce(),
) -> Result<(), SwarmError> {
    let conn = node.connect(target, p2pfs_proto::room::ALPN).await?;
    let peer = conn.peer;
    if peer == node.id() {
        return Err(crate::error::RoomError::SelfDial.into());
    }
    let (mut send, mut recv) = conn.conn.open_bi().await.map_err(|e| SwarmError::Peer {
        peer,
        reason: e.to_string(),
    })?;
    let x = exporter(&conn)?;
    frame::write(
        &mut send,
        &Hello {
            proof: room.secret.connection_proof(&x, true),
        },
    )
    .await
    .map_err(|e| SwarmError::io("sending hello", e))?;
    let timeout = node.inner.limits.request_timeout;
    let welcome = tokio::time::timeout(
        timeout,
        frame::read_max::<Welcome>(&mut recv, MAX_HANDSHAKE),
    )
    .await
    .map_err(|_| proto_err(peer, "no answer to the room hello"))?
    .map_err(|e| proto_err(peer, format!("room hello: {e}")))?;
    match welcome {
        Welcome::Member { proof } if proof == room.secret.connection_proof(&x, false) => {}
        Welcome::Member { .. } => return Err(proto_err(peer, "a wrong proof of membership")),
        Welcome::Unknown => {
            return Err(crate::error::RoomError::NotMember(peer.fmt_short()).into());
        }
    }
    room.learn(peer, target.addrs.clone());
    session(node.clone(), room, conn, send, recv, node.id(), established).await;
    Ok(())
}

/// Serves room streams a peer opens on `conn`.
pub(crate) async fn serve(node: Node, conn: Conn) {
    while let Some((send, recv)) = crate::router::next_stream(&node, &conn).await {
        let (n, c) = (node.clone(), conn.clone());
        node.inner
            .tasks
            .spawn(async move { answer(n, c, send, recv).await });
    }
}

async fn answer(node: Node, conn: Conn, mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
    let timeout = node.inner.limits.request_timeout;
    let hello =
        match tokio::time::timeout(timeout, frame::read_max::<Hello>(&mut recv, MAX_HANDSHAKE))
            .await
        {
            Ok(Ok(h)) => h,
            Ok(Err(FrameError::Codec(e))) => {
                tracing::debug!(peer = %conn.peer, "malformed room hello: {e}");
                let _ = send.reset(Code::Protocol.value().into());
                return;
            }
            _ => {
                let _ = send.reset(Code::Timeout.value().into());
                return;
            }
        };
    let Ok(x) = exporter(&conn) else {
        return;
    };
    let room = node
        .all_rooms()
        .into_iter()
        .find(|r| r.secret.connection_proof(&x, true) == hello.proof);
    let Some(room) = room else {
        tracing::debug!(peer = %conn.peer, "room hello for no room of ours");
        let _ = frame::write(&mut send, &Welcome::Unknown).await;
        let _ = send.finish();
        return;
    };
    let proof = room.secret.connection_proof(&x, false);
    if frame::write(&mut send, &Welcome::Member { proof })
        .await
        .is_err()
    {
        return;
    }
    room.learn(conn.peer, vec![conn.addr]);
    let dialer = conn.peer;
    session(node, room, conn, send, recv, dialer, || {}).await;
}

/// Registers the session; false if a better one between the same members
/// exists.
fn register(room: &Room, peer: NodeId, h: &Handle) -> bool {
    let mut sessions = crate::lock(&room.sessions);
    if let Some(old) = sessions.get(&peer) {
        let stale = old.conn != h.conn && h.started.duration_since(old.started) > SIMULTANEOUS;
        if !stale && old.dialer < h.dialer {
            return false;
        }
    }
    if let Some(old) = sessions.insert(peer, h.clone()) {
        old.cancel.cancel();
    }
    room.arrivals.fetch_add(1, Ordering::Relaxed);
    true
}

/// Sends the presences the mesh gives a new session.
fn send_presences(tx: &mpsc::Sender<Out>, presences: Vec<Arc<Presence>>) {
    for p in presences {
        let _ = tx.try_send(Out::Msg(SyncMsg::Presence((*p).clone())));
    }
}

async fn session(
    node: Node,
    room: Arc<Room>,
    conn: Conn,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    dialer: NodeId,
    registered: impl FnOnce(),
) {
    let peer = conn.peer;
    crate::lock(&room.members).insert(peer);
    let (tx, mut rx) = mpsc::channel::<Out>(QUEUE);
    let cancel = room.cancel.child_token();
    let handle = Handle {
        tx: tx.clone(),
        cancel: cancel.clone(),
        dialer,
        serial: SERIAL.fetch_add(1, Ordering::Relaxed),
        conn: conn.conn.stable_id(),
        started: Instant::now(),
    };
    let ours = register(&room, peer, &handle);
    registered();
    if !ours {
        tracing::debug!(%peer, "a session with this member exists");
        let _ = send.finish();
        return;
    }
    tracing::debug!(room = %room.id.fmt_short(), %peer, "room session started");
    // Replies to our `Have`s, in order.
    let replies: Arc<Mutex<VecDeque<Option<oneshot::Sender<()>>>>> = Arc::default();
    let _ = tx.try_send(Out::Have(None));
    let _ = tx.try_send(Out::Msg(SyncMsg::Peers(
        room.peers_for(peer, node.node_addr()),
    )));
    let presences = crate::lock(&room.mesh).up(peer);
    send_presences(&tx, presences);
    if let Some(rep) = &node.inner.replica {
        node.inner.tasks.spawn(crate::replica::feed::run(
            room.clone(),
            tx.clone(),
            cancel.clone(),
            rep.config.heartbeat(),
        ));
    }

    let writer = {
        let (node, room, replies, cancel) =
            (node.clone(), room.clone(), replies.clone(), cancel.clone());
        async move {
            loop {
                let out = tokio::select! {
                    _ = cancel.cancelled() => break,
                    o = rx.recv() => match o { Some(o) => o, None => break },
                };
                let result = match out {
                    Out::Msg(m) => frame::write(&mut send, &m).await,
                    Out::Shared(m) => frame::write(&mut send, &*m).await,
                    Out::Have(waiter) => {
                        let (store, id) = (node.store().clone(), room.id);
                        let mut have = match crate::blocking(move || store.room_have(&id)).await {
                            Ok(h) => h,
                            Err(_) => break,
                        };
                        // Beyond the limit, the other side sends those
                        // authors' entries again; duplicates are ignored.
                        have.truncate(p2pfs_proto::room::MAX_AUTHORS);
                        crate::lock(&replies).push_back(waiter);
                        frame::write(&mut send, &SyncMsg::Have(Have(have))).await
                    }
                };
                if result.is_err() {
                    break;
                }
            }
            let _ = send.finish();
            cancel.cancel();
        }
    };
    let reader = read_loop(&node, &room, peer, &mut recv, &tx, &replies);
    tokio::select! {
        _ = cancel.cancelled() => {}
        r = reader => if let Err(e) = r {
            tracing::debug!(room = %room.id.fmt_short(), %peer, "room session: {e}");
            if matches!(e, SwarmError::Protocol { .. }) {
                conn.conn.close(Code::Protocol.value().into(), b"room protocol violation");
            }
        },
        _ = writer => {}
    }
    cancel.cancel();
    let mut sessions = crate::lock(&room.sessions);
    let last = sessions
        .get(&peer)
        .is_some_and(|h| h.serial == handle.serial);
    if last {
        sessions.remove(&peer);
    }
    drop(sessions);
    if last {
        let now = room.now_ms();
        let chain = {
            let mut mesh = crate::lock(&room.mesh);
            mesh.down(peer, now);
            if mesh.is_online(&peer, now) {
                mesh.chain(&peer)
            } else {
                Vec::new()
            }
        };
        // What the room says of that member now counts for placement
        // (unless it said goodbye on the session).
        let chain = if room.replica.is_gone(&peer) {
            Vec::new()
        } else {
            chain
        };
        for p in chain {
            if let Ok(body) = p.decode_body() {
                apply_presence(&node, &room, &body, true);
            }
        }
    }
    tracing::debug!(room = %room.id.fmt_short(), %peer, "room session ended");
}

/// Reads one frame; returns the message and its size.
async fn read_msg(
    recv: &mut quinn::RecvStream,
    peer: NodeId,
) -> Result<(SyncMsg, usize), SwarmError> {
    let mut header = [0u8; codec::FRAME_HEADER_SIZE];
    recv.read_exact(&mut header)
        .await
        .map_err(|e| SwarmError::Peer {
            peer,
            reason: e.to_string(),
        })?;
    let len = codec::frame_len(header).map_err(|e| proto_err(peer, e.to_string()))?;
    if len > MAX_SYNC_FRAME {
        return Err(proto_err(peer, format!("a room frame of {len} bytes")));
    }
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body)
        .await
        .map_err(|e| SwarmError::Peer {
            peer,
            reason: e.to_string(),
        })?;
    let m: SyncMsg = codec::decode(&body).map_err(|e| proto_err(peer, e.to_string()))?;
    m.check().map_err(|e| proto_err(peer, e))?;
    Ok((m, len + codec::FRAME_HEADER_SIZE))
}

async fn read_loop(
    node: &Node,
    room: &Arc<Room>,
    peer: NodeId,
    recv: &mut quinn::RecvStream,
    tx: &mpsc::Sender<Out>,
    replies: &Mutex<VecDeque<Option<oneshot::Sender<()>>>>,
) -> Result<(), SwarmError> {
    let mut invalid = 0usize;
    let mut last_resync = Instant::now();
    loop {
        let (msg, size) = read_msg(recv, peer).await?;
        room.bytes_in.fetch_add(size as u64, Ordering::Relaxed);
        match msg {
            SyncMsg::Have(have) => {
                // In rounds, so a long log never sits in memory at once:
                // each round's entries advance the other side's counts.
                let mut counts: HashMap<NodeId, u64> = have.0.into_iter().collect();
                loop {
                    let (store, id) = (node.store().clone(), room.id);
                    let h: Vec<(NodeId, u64)> = counts.iter().map(|(a, n)| (*a, *n)).collect();
                    let entries =
                        crate::blocking(move || store.room_entries_after(&id, &h, ANSWER_ROUND))
                            .await?;
                    let full = entries.len() == ANSWER_ROUND;
                    for e in &entries {
                        if let Ok((_, b)) = p2pfs_proto::room::Entry::decode(e) {
                            let n = counts.entry(b.author).or_insert(0);
                            *n = (*n).max(b.seq + 1);
                        }
                    }
                    for m in batches(entries) {
                        send(tx, m).await?;
                    }
                    if !full {
                        break;
                    }
                }
                send(tx, SyncMsg::Synced).await?;
            }
            SyncMsg::Entries(list) => {
                let (bad, waiting) = take_in(node, room, peer, list).await?;
                invalid += bad;
                if invalid > MAX_INVALID {
                    return Err(proto_err(peer, format!("{invalid} invalid room entries")));
                }
                // Entries waiting for parents this member should have: ask
                // it again (not more than every few seconds).
                if waiting && last_resync.elapsed() > Duration::from_secs(3) {
                    last_resync = Instant::now();
                    let _ = tx.try_send(Out::Have(None));
                }
            }
            SyncMsg::Synced => {
                let waiter = crate::lock(replies).pop_front().flatten();
                if let Some(w) = waiter {
                    let _ = w.send(());
                }
                room.synced.send_modify(|n| *n += 1);
            }
            SyncMsg::Peers(list) => room.learn_all(list, node.id()),
            SyncMsg::Status(s) => {
                room.replica.heard(peer, s, node.offline_after());
            }
            SyncMsg::Leaving => room.replica.heard_leaving(peer),
            SyncMsg::Goodbye => room.replica.heard_goodbye(peer),
            SyncMsg::Presence(p) => {
                if !presence(node, room, peer, p) {
                    invalid += 1;
                    if invalid > MAX_INVALID {
                        return Err(proto_err(peer, format!("{invalid} invalid presences")));
                    }
                }
            }
        }
    }
}

/// Takes in a presence from `peer`: verifies it, forwards it if it is new,
/// and tells placement what it says of a member this node has no session
/// with. False if it does not verify.
fn presence(node: &Node, room: &Arc<Room>, peer: NodeId, p: Presence) -> bool {
    let Some(body) = verify_presence(&room.secret, &room.id, &p) else {
        tracing::warn!(room = %room.id.fmt_short(), %peer, "refused a presence that does not verify");
        return false;
    };
    let p = Arc::new(p);
    let now = room.now_ms();
    let heard = crate::lock(&room.mesh).presence(Some(peer), p.clone(), &body, now);
    let Heard::New { forward, apply } = heard else {
        return true;
    };
    room.send_to(&forward, &Arc::new(SyncMsg::Presence((*p).clone())));
    apply_presence(node, room, &body, matches!(apply, Apply::Status(..)));
    true
}

/// The body of a presence received in the room of `secret` (`room` its
/// id), if it decodes within its bounds, its origin is a member and the
/// origin signed it.
pub(crate) fn verify_presence(
    secret: &p2pfs_proto::RoomSecret,
    room: &p2pfs_proto::RoomId,
    p: &Presence,
) -> Option<PresenceBody> {
    let body = p.decode_body().ok()?;
    let ok = body.member == secret.member_tag(&body.origin)
        && crate::identity::verify(&body.origin, &presence_message(room, &p.body), &p.sig.0);
    ok.then_some(body)
}

/// Tells placement what a presence says, unless a session with its origin
/// says it directly. `in_order`: its status follows what was known (else
/// only that it lives counts).
fn apply_presence(node: &Node, room: &Room, body: &PresenceBody, in_order: bool) {
    if crate::lock(&room.sessions).contains_key(&body.origin) {
        return;
    }
    let offline_after = node.offline_after();
    let mut status = body.status.clone();
    if !in_order {
        status.reset = false;
        status.add.clear();
        status.remove.clear();
    }
    match body.phase {
        PresencePhase::Running => room.replica.heard(body.origin, status, offline_after),
        PresencePhase::Leaving => {
            room.replica.heard(body.origin, status, offline_after);
            room.replica.heard_leaving(body.origin);
        }
        PresencePhase::Gone => room.replica.heard_goodbye(body.origin),
    }
}

/// Entries as `Entries` messages that each fit a sync frame.
pub(crate) fn batches(entries: impl IntoIterator<Item = Vec<u8>>) -> Vec<SyncMsg> {
    let mut out = Vec::new();
    let mut batch = Vec::new();
    let mut bytes = 0;
    for e in entries {
        // Each entry costs its bytes and a length prefix of at most 3.
        if bytes + e.len() + 3 > MAX_SYNC_FRAME - 16 && !batch.is_empty() {
            out.push(SyncMsg::Entries(std::mem::take(&mut batch)));
            bytes = 0;
        }
        bytes += e.len() + 3;
        batch.push(e);
    }
    if !batch.is_empty() {
        out.push(SyncMsg::Entries(batch));
    }
    out
}

async fn send(tx: &mpsc::Sender<Out>, m: SyncMsg) -> Result<(), SwarmError> {
    tx.send(Out::Msg(m)).await.map_err(|_| SwarmError::Shutdown)
}

/// Verifies entries on every core (in order); returns those that passed
/// and how many did not.
fn verify_all(
    secret: &p2pfs_proto::RoomSecret,
    id: &p2pfs_proto::RoomId,
    peer: NodeId,
    list: Vec<Vec<u8>>,
) -> (Vec<entry::Verified>, usize) {
    let one = |chunk: Vec<Vec<u8>>| {
        let mut ok = Vec::with_capacity(chunk.len());
        let mut bad = 0;
        for bytes in chunk {
            match entry::verify(secret, id, bytes) {
                Ok(v) => ok.push(v),
                Err(e) => {
                    tracing::warn!(room = %id.fmt_short(), %peer, "refused a room entry: {e}");
                    bad += 1;
                }
            }
        }
        (ok, bad)
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads == 1 || list.len() < 64 {
        return one(list);
    }
    let per = list.len().div_ceil(threads);
    let mut chunks = Vec::new();
    let mut rest = list;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(per));
        chunks.push(rest);
        rest = tail;
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|c| s.spawn(move || one(c)))
            .collect();
        let mut ok = Vec::new();
        let mut bad = 0;
        for h in handles {
            match h.join() {
                Ok((o, b)) => {
                    ok.extend(o);
                    bad += b;
                }
                Err(_) => bad += 1,
            }
        }
        (ok, bad)
    })
}

/// Verifies and accepts entries from `peer`, with those waiting for their
/// parents; pushes the new ones to the other members. Returns how many
/// failed verification and whether some wait for parents.
pub(crate) async fn take_in(
    node: &Node,
    room: &Arc<Room>,
    peer: NodeId,
    list: Vec<Vec<u8>>,
) -> Result<(usize, bool), SwarmError> {
    let (secret, id) = (room.secret.clone(), room.id);
    let (verified, bad) = crate::off_thread(move || verify_all(&secret, &id, peer, list)).await?;
    let mut since: HashMap<p2pfs_proto::Hash, Instant> = HashMap::new();
    let mut batch = verified;
    {
        let mut pending = crate::lock(&room.pending);
        for (t, v) in pending.drain(..) {
            since.insert(v.hash, t);
            batch.push(v);
        }
    }
    let (store, rid) = (node.store().clone(), room.id);
    let accepted = crate::blocking(move || log::accept(&store, &rid, batch)).await?;
    for (hash, why) in &accepted.rejected {
        tracing::warn!(room = %room.id.fmt_short(), %peer, %hash, "refused a room entry: {why}");
    }
    let waiting = !accepted.pending.is_empty();
    {
        let mut pending = crate::lock(&room.pending);
        for v in accepted.pending {
            let t = since.get(&v.hash).copied().unwrap_or_else(Instant::now);
            pending.push((t, v));
        }
        super::trim_pending(&mut pending);
    }
    if !accepted.new.is_empty() {
        {
            let mut members = crate::lock(&room.members);
            for e in &accepted.new {
                members.insert(e.body.author);
            }
        }
        room.broadcast(&accepted.new, Some(peer));
    }
    // Only what this member sent counts against it: rejected entries may
    // have come from the pending pool, filled by other sessions.
    Ok((bad, waiting))
}
