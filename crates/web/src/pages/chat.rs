//! `/r/{room}/chat`: the room's chat (`chat.log`, the lines as every
//! member's mount shows them), live through server-sent events, with a
//! box to post.

use axum::extract::{Path, State};
use maud::{Markup, html};
use p2pfs_swarm::room::query;

use super::{RoomTab, Tab, layout, room_tabs, segment};
use crate::{App, WebError};

/// Lines shown when the page opens (older ones are in `chat.log`).
const SHOWN: u64 = 500;

pub(crate) async fn page(
    State(app): State<App>,
    Path(name): Path<String>,
) -> Result<Markup, WebError> {
    let room = app.node.find_room(&name).await?;
    let (store, id) = (app.node.store().clone(), room.id());
    let (from, lines) = p2pfs_swarm::off_thread(move || {
        let n = query::chat_lines(&store, &id)?;
        let from = n.saturating_sub(SHOWN);
        let lines = query::chat(&store, &id, from, SHOWN as usize)?;
        Ok::<_, p2pfs_store::StoreError>((from, lines))
    })
    .await??;
    let next = from + lines.len() as u64;
    let base = format!("/r/{}/", segment(&name));
    Ok(layout(
        &format!("{name} chat"),
        Tab::Rooms,
        html! {
            (room_tabs(&name, RoomTab::Chat))
            section.card.chat {
                @if from > 0 {
                    p.older { "Older lines are in the room's " code { "chat.log" } "." }
                }
                ol #chat data-events=(format!("{base}events?from={next}")) {
                    @for line in &lines {
                        li { (line.trim_end_matches('\n')) }
                    }
                }
                form #post method="post" action=(format!("{base}chat")) {
                    input #say type="text" name="text" placeholder="Say something" autocomplete="off" required maxlength="4000";
                    button type="submit" { "Send" }
                }
            }
        },
    ))
}
