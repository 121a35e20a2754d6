//! The room commands.

use std::{sync::Arc, time::Duration};

use p2pfs_proto::RoomTicket;
use tokio::sync::mpsc;

use super::{Ctx, send_blob};
use p2pfs_swarm::{
    Node, RoomError,
    room::{Room, query},
};

use crate::{
    control::{Response, RoomRequest},
    error::AppError,
    params::{
        CreateRoom, ExportRoom, ImportRoom, JoinRoom, RoomFile, RoomMember, RoomRef, SetCopies,
    },
};

/// How long a node started for one command waits to reach a member.
const ONE_OFF_WAIT: Duration = Duration::from_secs(5);
/// How long it waits for members to confirm its writes.
const FLUSH_WAIT: Duration = Duration::from_secs(10);
/// How long a node started for one `room put` waits for a member to keep
/// the file.
const HAND_OVER_WAIT: Duration = Duration::from_secs(60);
/// How long `room leave` waits for what only this node keeps to reach a
/// member online.
const LEAVE_WAIT: Duration = Duration::from_secs(60);
/// How long a node started for `room status` listens for the replicas'
/// statuses after its first sync.
const STATUS_WAIT: Duration = Duration::from_millis(1500);
/// Chat lines per `ChatLines` response, and log entries read per batch
/// while following.
const CHAT_BATCH: usize = 1000;

pub(super) async fn execute(
    ctx: &Ctx,
    request: RoomRequest,
    out: &mpsc::Sender<Response>,
) -> Result<(), AppError> {
    let node = ctx.node()?;
    let send = |r: Response| async { out.send(r).await.map_err(|_| AppError::ClientGone) };
    match request {
        RoomRequest::Create(CreateRoom { name }) => {
            let ticket = node.create_room(&name).await?;
            send(Response::Ticket(ticket.to_string())).await?;
        }
        RoomRequest::Join(JoinRoom { ticket, name }) => {
            let t: RoomTicket = ticket.parse().map_err(RoomError::Ticket)?;
            let name = node.join_room(&t, name.as_deref()).await?;
            let room = node.find_room(&name).await?;
            if !ctx.daemon {
                reach(node, &room, out).await?;
                flush(node, &room, out).await?;
            }
            send(Response::Joined(name)).await?;
        }
        RoomRequest::List => send(Response::Rooms(node.room_summaries().await?)).await?,
        RoomRequest::Ticket(RoomRef { room }) => {
            let room = node.find_room(&room).await?;
            send(Response::Ticket(node.room_ticket(&room).to_string())).await?;
        }
        RoomRequest::Export(ExportRoom { room, file, files }) => {
            let room = node.find_room(&room).await?;
            if !ctx.daemon {
                reach(node, &room, out).await?;
            }
            let report = node.export_room(&room, file, files).await?;
            send(Response::RoomExported(report)).await?;
        }
        RoomRequest::Import(ImportRoom { file, name }) => {
            let report = node.import_room(file, name).await?;
            if !ctx.daemon {
                let room = node.find_room(&report.room).await?;
                flush(node, &room, out).await?;
            }
            send(Response::RoomImported(report)).await?;
        }
        RoomRequest::Leave(RoomRef { room }) => {
            let room = node.find_room(&room).await?;
            if !ctx.daemon {
                reach(node, &room, out).await?;
            }
            for f in node.leave_room(&room, LEAVE_WAIT).await? {
                send(Response::Warning(format!(
                    "{:?} ({} bytes) had no copy on a member online but this node's: \
                     it is gone from here",
                    f.path, f.size
                )))
                .await?;
            }
        }
        RoomRequest::Members(RoomRef { room }) => {
            let room = node.find_room(&room).await?;
            if !ctx.daemon {
                reach(node, &room, out).await?;
            }
            send(Response::Members(node.room_members(&room).await?)).await?;
        }
        RoomRequest::SetRole {
            member: RoomMember { room, member },
            moderator,
        } => {
            let room = node.find_room(&room).await?;
            if !ctx.daemon {
                reach(node, &room, out).await?;
            }
            let id = node.resolve_member(&room, &member).await?.id;
            let role = if moderator {
                p2pfs_proto::moderation::Role::Moderator
            } else {
                p2pfs_proto::moderation::Role::Member
            };
            node.room_set_role(&room, id, role).await?;
            if !ctx.daemon {
                flush(node, &room, out).await?;
            }
        }
        RoomRequest::Remove(RoomMember { room, member }) => {
            let room = node.find_room(&room).await?;
            if !ctx.daemon {
                reach(node, &room, out).await?;
            }
            let m = node.resolve_member(&room, &member).await?;
            node.room_remove(&room, m.id).await?;
            if !ctx.daemon {
                flush(node, &room, out).await?;
            }
            send(Response::Removed(m.id, m.name)).await?;
        }
        RoomRequest::Put(put) => {
            let path = put.name_in_room()?;
            let room = node.find_room(&put.room).await?;
            if !ctx.daemon {
                // Learn the latest tree first, so the put replaces it.
                reach(node, &room, out).await?;
            }
            let (hash, size) = node.room_put(&room, &put.path, &path).await?;
            if !ctx.daemon {
                flush(node, &room, out).await?;
                // This node ends with the command: a member keeps the
                // file before it does.
                if !node
                    .hand_over(&room, &[hash], HAND_OVER_WAIT)
                    .await
                    .is_empty()
                {
                    out.send(Response::Warning(format!(
                        "no member online keeps {path:?} yet: its only copy is in this data \
                         directory until a member fetches it from a node running here \
                         (`p2pfs daemon`)"
                    )))
                    .await
                    .map_err(|_| AppError::ClientGone)?;
                }
            }
            send(Response::Added {
                index: 0,
                hash,
                size,
            })
            .await?;
        }
        RoomRequest::Rm(file) => {
            let room = node.find_room(&file.room).await?;
            if !ctx.daemon {
                reach(node, &room, out).await?;
            }
            node.room_delete(&room, file.path()).await?;
            if !ctx.daemon {
                flush(node, &room, out).await?;
            }
        }
        RoomRequest::Get(file) => {
            let room = node.find_room(&file.room).await?;
            if !ctx.daemon {
                reach(node, &room, out).await?;
            }
            let hash = node.room_fetch(&room, file.path()).await?;
            send_blob(node.store().clone(), hash, out).await?;
        }
        RoomRequest::Ls(RoomRef { room }) => {
            let room = node.find_room(&room).await?;
            if !ctx.daemon {
                reach(node, &room, out).await?;
            }
            let (store, id) = (node.store().clone(), room.id());
            let files = crate::error::blocking(move || query::ls(&store, &id)).await?;
            for batch in super::batches(files) {
                send(Response::Files(batch)).await?;
            }
        }
        RoomRequest::Chat { room, text } => {
            let room = node.find_room(&room).await?;
            if !ctx.daemon {
                reach(node, &room, out).await?;
            }
            if node.chat(&room, &text).await? == 0 {
                return Err(RoomError::NothingToPost.into());
            }
            if !ctx.daemon {
                flush(node, &room, out).await?;
            }
        }
        RoomRequest::Set(SetCopies { room, policy }) => {
            let room = node.find_room(&room).await?;
            if !ctx.daemon {
                reach(node, &room, out).await?;
            }
            node.room_set_copies(&room, policy).await?;
            if !ctx.daemon {
                flush(node, &room, out).await?;
            }
        }
        RoomRequest::Status(RoomRef { room }) => {
            let room = node.find_room(&room).await?;
            if !ctx.daemon {
                reach(node, &room, out).await?;
                // The replicas' statuses follow their first sync.
                tokio::time::sleep(STATUS_WAIT).await;
            }
            // The files in batches: the first with the rest of the status.
            let mut status = node.room_status(&room, None).await?;
            let files = std::mem::take(&mut status.files);
            for (i, batch) in super::batches(files).into_iter().enumerate() {
                if i == 0 {
                    status.files = batch;
                    send(Response::RoomStatus(status.clone())).await?;
                } else {
                    send(Response::RoomFiles(batch)).await?;
                }
            }
        }
        RoomRequest::Pin(file) => pin(ctx, node, &file, true, out).await?,
        RoomRequest::Unpin(file) => pin(ctx, node, &file, false, out).await?,
        RoomRequest::ChatLog { room, follow } => {
            let room = node.find_room(&room).await?;
            if !ctx.daemon {
                reach(node, &room, out).await?;
            }
            chat_log(node, &room, follow, out).await?;
        }
    }
    Ok(())
}

/// `room pin` (`keep`) and `room unpin`: one `Added` naming the file.
async fn pin(
    ctx: &Ctx,
    node: &Node,
    file: &RoomFile,
    keep: bool,
    out: &mpsc::Sender<Response>,
) -> Result<(), AppError> {
    let path = file.path();
    let room = node.find_room(&file.room).await?;
    if !ctx.daemon {
        reach(node, &room, out).await?;
    }
    let (store, id, p) = (node.store().clone(), room.id(), path.to_string());
    let entry = crate::error::blocking(move || query::file(&store, &id, &p)).await?;
    let Some(p2pfs_swarm::room::FileEntry {
        kind: p2pfs_swarm::room::FileKind::File { hash, size, .. },
        ..
    }) = entry
    else {
        return Err(RoomError::NoSuchFile(path.to_string()).into());
    };
    node.room_keep(&room, hash, keep).await?;
    if keep && !ctx.daemon {
        // No replica runs here to fetch it later: fetch it now.
        node.room_fetch(&room, path).await?;
    }
    out.send(Response::Added {
        index: 0,
        hash,
        size,
    })
    .await
    .map_err(|_| AppError::ClientGone)
}

/// A node started for one command: wait (briefly) for a member, so the
/// command sees the room as the members do.
async fn reach(node: &Node, room: &Room, out: &mpsc::Sender<Response>) -> Result<(), AppError> {
    if !node.room_wait_synced(room, ONE_OFF_WAIT).await {
        out.send(Response::Warning(format!(
            "no member of room {:?} could be reached; showing what this node has",
            room.name()
        )))
        .await
        .map_err(|_| AppError::ClientGone)?;
    }
    Ok(())
}

/// A node started for one command: wait until the members online have
/// what it wrote.
async fn flush(node: &Node, room: &Room, out: &mpsc::Sender<Response>) -> Result<(), AppError> {
    if node.room_flush(room, FLUSH_WAIT).await == 0 {
        out.send(Response::Warning(format!(
            "no member of room {:?} confirmed the change; it is saved here and \
             will be sent when this node next meets a member (or run `p2pfs daemon`)",
            room.name()
        )))
        .await
        .map_err(|_| AppError::ClientGone)?;
    }
    Ok(())
}

/// `p2pfs chat`: the chat in canonical order, then (with `follow`) new
/// messages as they arrive.
async fn chat_log(
    node: &Node,
    room: &Arc<Room>,
    follow: bool,
    out: &mpsc::Sender<Response>,
) -> Result<(), AppError> {
    let send = |lines: Vec<String>| async {
        out.send(Response::ChatLines(lines))
            .await
            .map_err(|_| AppError::ClientGone)
    };
    let mut changes = node.room_changes(room);
    changes.borrow_and_update();
    let (store, id) = (node.store().clone(), room.id());
    let (mut reader, lines) =
        crate::error::blocking(move || query::ChatReader::open(&store, &id)).await?;
    for batch in lines.chunks(CHAT_BATCH) {
        send(batch.to_vec()).await?;
    }
    if !follow {
        return Ok(());
    }
    loop {
        tokio::select! {
            r = changes.changed() => if r.is_err() { return Ok(()) },
            _ = out.closed() => return Ok(()),
        }
        changes.borrow_and_update();
        loop {
            let store = node.store().clone();
            let (r, more) = crate::error::blocking(move || {
                let more = reader.more(&store, CHAT_BATCH)?;
                Ok((reader, more))
            })
            .await?;
            reader = r;
            match more {
                None => break,
                Some(lines) if lines.is_empty() => {}
                Some(lines) => send(lines).await?,
            }
        }
    }
}
