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
    time::Instant,
};

use p2pfs_proto::{
    NodeId,
    close::Code,
    moderation,
    room::{
        EXPORTER_LABEL, Have, Hello, MAX_EARLIER_PROOFS, MAX_SYNC_FRAME, Presence, PresenceBody,
        SyncMsg, Welcome, presence_message,
    },
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{
    Room, entry,
    overlay::Cmd,
    session::{Action, Event, Session},
};
use crate::{
    Node, SwarmError, Target,
    error::SetupError,
    frame::{self, FrameError},
    net::dial::Conn,
};

/// Most bytes of a `Hello` or `Welcome` frame.
const MAX_HANDSHAKE: usize = 256;
/// Messages queued for a session before it counts as too slow.
const QUEUE: usize = 1024;
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
    pub(super) dialer: NodeId,
    pub(super) serial: u64,
    /// The connection it runs on, and since when.
    pub(super) conn: usize,
    pub(super) started: Instant,
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
    let (conn, send, recv) = node
        .net()
        .with_conn(target, p2pfs_proto::room::ALPN, |conn| {
            hello(node, &room, conn)
        })
        .await?;
    room.learn(conn.peer, target.addrs.clone()).await;
    ask_where_we_are(node, &conn);
    session(node.clone(), room, conn, send, recv, node.id(), established).await;
    Ok(())
}

/// Opens a session's stream on `conn`: each side proves it holds the
/// room's secret.
async fn hello(
    node: &Node,
    room: &Room,
    conn: Conn,
) -> Result<(Conn, quinn::SendStream, quinn::RecvStream), SwarmError> {
    let peer = conn.peer;
    if peer == node.id() {
        return Err(crate::error::RoomError::SelfDial.into());
    }
    let (mut send, mut recv) = conn.conn.open_bi().await.map_err(|e| SwarmError::Peer {
        peer,
        reason: e.to_string(),
    })?;
    let x = exporter(&conn)?;
    // The current epoch's key first, then earlier ones, for a member that
    // has not heard of the latest epoch yet (docs/protocol.md §8.11).
    let mut keys = room.epochs.auth_keys(&room.secret);
    keys.truncate(1 + MAX_EARLIER_PROOFS);
    let mut proofs = keys
        .iter()
        .map(|(_, k)| moderation::connection_proof(k, &x, true));
    let hello = Hello {
        proof: proofs.next().unwrap_or_default(),
        earlier: proofs.collect(),
    };
    frame::write(&mut send, &hello)
        .await
        .map_err(|e| SwarmError::io("sending hello", e))?;
    let timeout = node.net().limits().request_timeout;
    let welcome = tokio::time::timeout(
        timeout,
        frame::read_max::<Welcome>(&mut recv, MAX_HANDSHAKE),
    )
    .await
    .map_err(|_| proto_err(peer, "no answer to the room hello"))?
    .map_err(|e| proto_err(peer, format!("room hello: {e}")))?;
    match welcome {
        Welcome::Member { proof }
            if keys
                .iter()
                .any(|(_, k)| proof == moderation::connection_proof(k, &x, false)) =>
        {
            Ok((conn, send, recv))
        }
        Welcome::Member { .. } => Err(proto_err(peer, "a wrong proof of membership")),
        Welcome::Unknown => Err(crate::error::RoomError::NotMember(peer.fmt_short()).into()),
        Welcome::Removed { by, time } => {
            // Believed only from a member that proved nothing: it may be
            // a lie, but its only effect is that this node stops writing
            // until it syncs its removal from someone, or never does.
            tracing::warn!(room = %room.id.fmt_short(), %peer, remover = %by, "this node was removed from the room");
            room.epochs.set_removed(by, time);
            Err(crate::error::RoomError::Removed {
                room: room.name(),
                by: by.fmt_short(),
                when: crate::room::render::rfc3339(time),
            }
            .into())
        }
    }
}

/// Serves room streams a peer opens on `conn`.
pub(crate) async fn serve(node: Node, conn: Conn) {
    while let Some((send, recv)) = node.net().next_stream(&conn).await {
        let (n, c) = (node.clone(), conn.clone());
        node.net()
            .spawn(async move { answer(n, c, send, recv).await });
    }
}

async fn answer(node: Node, conn: Conn, mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
    let timeout = node.net().limits().request_timeout;
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
    let peer = conn.peer;
    let found = node.all_rooms().into_iter().find_map(|r| {
        let keys = r.epochs.auth_keys(&r.secret);
        keys.into_iter()
            .find(|(_, k)| {
                let mine = moderation::connection_proof(k, &x, true);
                hello.proof == mine
                    || hello
                        .earlier
                        .iter()
                        .take(MAX_EARLIER_PROOFS)
                        .any(|p| *p == mine)
            })
            .map(|(epoch, k)| (r, epoch, k))
    });
    let Some((room, epoch, key)) = found else {
        tracing::debug!(%peer, "room hello for no room of ours");
        let _ = frame::write(&mut send, &Welcome::Unknown).await;
        let _ = send.finish();
        return;
    };
    // A removed member is told so; the key of an earlier epoch admits
    // only a member already known (an old ticket admits no one new).
    let m = room.epochs.moderation();
    let refusal = if let Some(r) = m.removal(&peer) {
        Some(Welcome::Removed {
            by: r.by,
            time: r.time,
        })
    } else if !room.epochs.is_current(epoch) && !room.is_member(&peer) {
        Some(Welcome::Unknown)
    } else {
        None
    };
    if let Some(w) = refusal {
        tracing::info!(room = %room.id.fmt_short(), %peer, "refused a room session: {w:?}");
        let _ = frame::write(&mut send, &w).await;
        let _ = send.finish();
        return;
    }
    let proof = moderation::connection_proof(&key, &x, false);
    if frame::write(&mut send, &Welcome::Member { proof })
        .await
        .is_err()
    {
        return;
    }
    room.learn(conn.peer, vec![conn.addr]).await;
    ask_where_we_are(&node, &conn);
    let dialer = conn.peer;
    session(node, room, conn, send, recv, dialer, || {}).await;
}

/// A member outside the local networks tells this node where its packets
/// come from (behind a NAT, the router's address: a candidate for tickets
/// and members; at the address it listens on, that it is public). Either
/// end of a session asks, so a node that is only ever dialed learns it
/// too. The ping goes where the session's packets come from: a path open
/// both ways.
fn ask_where_we_are(node: &Node, conn: &Conn) {
    if crate::net::reflexive::worth_asking(&conn.addr) {
        let (n, member) = (
            node.clone(),
            Target {
                id: Some(conn.peer),
                addrs: vec![conn.addr],
            },
        );
        node.net().spawn(async move { n.ping(&member).await });
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
    let serial = handle.serial;
    let ours = room.overlay.up(peer, handle).await;
    registered();
    if !ours {
        tracing::debug!(%peer, "a session with this member exists");
        let _ = send.finish();
        return;
    }
    tracing::debug!(room = %room.id.fmt_short(), %peer, "room session started");
    // Replies to our `Have`s, in order.
    let replies: Arc<Mutex<VecDeque<Option<oneshot::Sender<()>>>>> = Arc::default();
    let (mut machine, first) = Session::start(room.now_ms());
    // The first actions only queue messages.
    let _ = run(&node, &room, peer, &tx, &replies, &mut machine, first).await;
    if let Some(rep) = &node.inner.replica {
        node.net().spawn(crate::replica::feed::run(
            room.clone(),
            tx.clone(),
            cancel.clone(),
            rep.config.heartbeat(),
        ));
    }

    let writer = {
        let (node, room, replies, cancel) =
            (node.clone(), room.clone(), replies.clone(), cancel.clone());
        // True if the stream failed (not if the session was ended).
        async move {
            let failed = loop {
                let out = tokio::select! {
                    _ = cancel.cancelled() => break false,
                    o = rx.recv() => match o { Some(o) => o, None => break false },
                };
                let result = match out {
                    Out::Msg(m) => frame::write(&mut send, &m).await,
                    Out::Shared(m) => frame::write(&mut send, &*m).await,
                    Out::Have(waiter) => {
                        let (store, id) = (node.store().clone(), room.id);
                        let mut have = match crate::blocking(move || store.room_have(&id)).await {
                            Ok(h) => h,
                            Err(_) => break false,
                        };
                        // Beyond the limit, the other side sends those
                        // authors' entries again; duplicates are ignored.
                        have.truncate(p2pfs_proto::room::MAX_AUTHORS);
                        crate::lock(&replies).push_back(waiter);
                        frame::write(&mut send, &SyncMsg::Have(Have(have))).await
                    }
                };
                if result.is_err() {
                    break true;
                }
            };
            let _ = send.finish();
            cancel.cancel();
            failed
        }
    };
    let reader = read_loop(&node, &room, peer, &mut recv, &tx, &replies, &mut machine);
    // Whether the connection failed (rather than either side ending the
    // session): the mesh then takes the member out of the ring for a while.
    let failed = tokio::select! {
        _ = cancel.cancelled() => false,
        r = reader => match r {
            Ok(()) => false,
            Err(e) => {
                tracing::debug!(room = %room.id.fmt_short(), %peer, "room session: {e}");
                if matches!(e, SwarmError::Protocol { .. }) {
                    conn.conn.close(Code::Protocol.value().into(), b"room protocol violation");
                }
                true
            }
        },
        failed = writer => failed,
    };
    cancel.cancel();
    room.overlay
        .send(Cmd::Down {
            peer,
            serial,
            failed,
        })
        .await;
    tracing::debug!(room = %room.id.fmt_short(), %peer, "room session ended");
}

/// Reads one message, within the protocol's bounds; returns it and its
/// size, or `None` if the peer ended the stream (between messages).
async fn read_msg(
    recv: &mut quinn::RecvStream,
    peer: NodeId,
) -> Result<Option<(SyncMsg, usize)>, SwarmError> {
    let (m, size): (SyncMsg, usize) = match frame::read_sized(recv, MAX_SYNC_FRAME).await {
        Ok(m) => m,
        Err(FrameError::Read(quinn::ReadExactError::FinishedEarly(0))) => return Ok(None),
        Err(FrameError::Read(e)) => {
            return Err(SwarmError::Peer {
                peer,
                reason: e.to_string(),
            });
        }
        Err(FrameError::Codec(e)) => return Err(proto_err(peer, e.to_string())),
    };
    m.check().map_err(|e| proto_err(peer, e))?;
    Ok(Some((m, size)))
}

/// Reads the peer's messages and carries out what the session makes of
/// them, until the peer ends the stream (`Ok`), the connection fails or
/// the peer breaks the protocol.
async fn read_loop(
    node: &Node,
    room: &Arc<Room>,
    peer: NodeId,
    recv: &mut quinn::RecvStream,
    tx: &mpsc::Sender<Out>,
    replies: &Mutex<VecDeque<Option<oneshot::Sender<()>>>>,
    machine: &mut Session,
) -> Result<(), SwarmError> {
    loop {
        let Some((msg, size)) = read_msg(recv, peer).await? else {
            return Ok(());
        };
        room.bytes_in.fetch_add(size as u64, Ordering::Relaxed);
        let actions = machine.on(Event::Received(msg), room.now_ms());
        run(node, room, peer, tx, replies, machine, actions).await?;
    }
}

/// Carries out a session's actions, and those their outcomes lead to (the
/// driver of [`Session`]). `replies` holds the waiters of our `Have`s.
async fn run(
    node: &Node,
    room: &Arc<Room>,
    peer: NodeId,
    tx: &mpsc::Sender<Out>,
    replies: &Mutex<VecDeque<Option<oneshot::Sender<()>>>>,
    machine: &mut Session,
    actions: Vec<Action>,
) -> Result<(), SwarmError> {
    let mut queue: VecDeque<Action> = actions.into();
    while let Some(action) = queue.pop_front() {
        match action {
            Action::SendHave => {
                let _ = tx.try_send(Out::Have(None));
            }
            Action::SendPeers => {
                let me = node.node_addr();
                room.overlay.send(Cmd::SendPeers { peer, me }).await;
            }
            Action::SendDigest => room.overlay.send(Cmd::SendDigest { peer }).await,
            Action::Answer(have) => answer_have(node, room, tx, have).await?,
            Action::TakeIn(list) => {
                let (bad, waiting) = take_in(room, peer, list).await?;
                queue.extend(machine.on(Event::TakenIn { bad, waiting }, room.now_ms()));
            }
            Action::Synced => {
                let waiter = crate::lock(replies).pop_front().flatten();
                if let Some(w) = waiter {
                    let _ = w.send(());
                }
                room.synced.send_modify(|n| *n += 1);
            }
            Action::Learn(list) => room.learn_all(list, node.id()).await,
            Action::Status(s) => room.replica.heard(peer, s, node.offline_after()),
            Action::Leaving => room.replica.heard_leaving(peer),
            Action::Goodbye => room.replica.heard_goodbye(peer),
            Action::Presence(p) => {
                let valid = presence(room, peer, p).await;
                queue.extend(machine.on(Event::PresenceChecked { valid }, room.now_ms()));
            }
            Action::AnswerDigest(heads) => {
                room.overlay.send(Cmd::AnswerDigest { peer, heads }).await;
            }
            Action::Close(reason) => return Err(proto_err(peer, reason)),
        }
    }
    Ok(())
}

/// Answers a `Have`: the entries the peer lacks, parents first, then
/// `Synced`. In rounds, so a long log never sits in memory at once: each
/// round's entries advance the other side's counts.
async fn answer_have(
    node: &Node,
    room: &Room,
    tx: &mpsc::Sender<Out>,
    have: Vec<(NodeId, u64)>,
) -> Result<(), SwarmError> {
    let mut counts: HashMap<NodeId, u64> = have.into_iter().collect();
    loop {
        let (store, id) = (node.store().clone(), room.id);
        let h: Vec<(NodeId, u64)> = counts.iter().map(|(a, n)| (*a, *n)).collect();
        let entries =
            crate::blocking(move || store.room_entries_after(&id, &h, ANSWER_ROUND)).await?;
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
    send(tx, SyncMsg::Synced).await
}

/// Takes in a presence from `peer`: verifies it and hands it to the
/// overlay, which forwards it if it is new and tells placement what it
/// says. False if it does not verify.
async fn presence(room: &Room, peer: NodeId, p: Presence) -> bool {
    let Some(body) = verify_presence(&room.secret, &room.id, &p) else {
        tracing::warn!(room = %room.id.fmt_short(), %peer, "refused a presence that does not verify");
        return false;
    };
    let p = Arc::new(p);
    room.overlay
        .send(Cmd::Presence {
            from: peer,
            p,
            body,
        })
        .await;
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

/// Verifies entries from `peer` and hands them to the room's log task,
/// which accepts them with those waiting for their parents and pushes the
/// new ones to the other members. Returns how many failed verification and
/// whether some wait for parents.
pub(crate) async fn take_in(
    room: &Arc<Room>,
    peer: NodeId,
    list: Vec<Vec<u8>>,
) -> Result<(usize, bool), SwarmError> {
    let (secret, id) = (room.secret.clone(), room.id);
    let (verified, bad) = crate::off_thread(move || verify_all(&secret, &id, peer, list)).await?;
    let waiting = room.log.accept(peer, verified).await?;
    // Only what this member sent counts against it: rejected entries may
    // have come from the pending pool, filled by other sessions.
    Ok((bad, waiting))
}
