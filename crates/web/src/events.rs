//! `GET /r/{room}/events?from=N`: the room as server-sent events, for the
//! page's live parts. `chat` events carry the chat's lines from line `N`
//! on (one event per line, its number as the event id, so a reconnecting
//! browser resumes where it was); a `tree` event says the listing changed.

use std::{convert::Infallible, time::Duration};

use axum::{
    extract::{Path, Query, State},
    http::HeaderMap,
    response::sse::{Event, KeepAlive, Sse},
};
use futures_lite::Stream;
use p2pfs_swarm::{
    Node,
    room::{Room, query},
};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::{App, WebError};

/// Lines read per batch.
const BATCH: usize = 500;

#[derive(Debug, Deserialize)]
pub(crate) struct From {
    /// The first chat line wanted.
    #[serde(default)]
    from: u64,
    /// Whether chat lines are wanted at all (a files page wants only the
    /// `tree` events).
    #[serde(default = "yes")]
    chat: bool,
}

fn yes() -> bool {
    true
}

pub(crate) async fn room(
    State(app): State<App>,
    Path(name): Path<String>,
    Query(q): Query<From>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, WebError> {
    let room = app.node.find_room(&name).await?;
    // A browser reconnecting says the last line it has.
    let mut next = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(q.from, |n| n + 1);
    let (tx, rx) = mpsc::channel::<Event>(64);
    let (node, stop) = (app.node.clone(), app.stop.clone());
    tokio::spawn(async move {
        let mut changes = node.room_changes(&room);
        changes.borrow_and_update();
        let mut first = true;
        loop {
            if q.chat && !send_lines(&node, &room, &mut next, &tx).await {
                return;
            }
            if !first
                && tx
                    .send(Event::default().event("tree").data("changed"))
                    .await
                    .is_err()
            {
                return;
            }
            first = false;
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                () = tx.closed() => return,
                () = stop.cancelled() => return,
            }
            changes.borrow_and_update();
        }
    });
    let stream =
        futures_lite::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
        );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Sends the chat lines from line `next` on, moving `next` past them.
/// False when the stream should end (the client went away, the store
/// failed).
async fn send_lines(node: &Node, room: &Room, next: &mut u64, tx: &mpsc::Sender<Event>) -> bool {
    loop {
        let (store, id, from) = (node.store().clone(), room.id(), *next);
        let lines =
            match p2pfs_swarm::off_thread(move || query::chat(&store, &id, from, BATCH)).await {
                Ok(Ok(lines)) => lines,
                Ok(Err(e)) => {
                    tracing::warn!("web page: reading the chat: {e}");
                    return false;
                }
                Err(_) => return false,
            };
        let n = lines.len();
        for line in lines {
            let event = Event::default()
                .event("chat")
                .id(next.to_string())
                .data(line.trim_end_matches('\n'));
            *next += 1;
            if tx.send(event).await.is_err() {
                return false;
            }
        }
        if n < BATCH {
            return true;
        }
    }
}
