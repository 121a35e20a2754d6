//! `/`: the rooms, with their files, members online and copies below
//! target; creating a room and joining one by its ticket.

use axum::extract::State;
use maud::{Markup, html};

use super::{Tab, layout, room_url};
use crate::{App, WebError};

/// A room as the list shows it.
struct Row {
    name: String,
    files: usize,
    members: usize,
    online: usize,
    below: usize,
    copies: String,
}

pub(crate) async fn page(State(app): State<App>) -> Result<Markup, WebError> {
    let mut rows = Vec::new();
    let mut rooms = app.node.all_rooms();
    rooms.sort_by_key(|r| r.name());
    for room in rooms {
        // From the page's listing in memory, not the store's tree.
        let files = app.index.files(&room.id()).await?;
        let count = files.len();
        let status = app.node.room_status_of(&room, files, false).await?;
        rows.push(Row {
            files: count,
            members: status.members.len(),
            online: status.members.iter().filter(|m| m.online).count(),
            below: status.files.iter().filter(|f| f.below_target()).count(),
            copies: status.policy.to_string(),
            name: room.name(),
        });
    }
    Ok(layout(
        "Rooms",
        Tab::Rooms,
        html! {
            section.card {
                h2 { "Rooms" }
                @if rows.is_empty() {
                    p.empty { "No room yet: create one, or join one with its ticket." }
                } @else {
                    table.rooms {
                        thead { tr { th { "Room" } th.num { "Files" } th.num { "Online" } th.num { "Below target" } th { "Policy" } } }
                        tbody {
                            @for r in &rows {
                                tr {
                                    td { a.room href=(room_url(&r.name)) { (r.name) } }
                                    td.num { (r.files) }
                                    td.num { (r.online) " / " (r.members) }
                                    td.num.warn[r.below > 0] { (r.below) }
                                    td { (r.copies) }
                                }
                            }
                        }
                    }
                }
            }
            section.card.split {
                form method="post" action="/rooms" id="create-room" {
                    h3 { "Create a room" }
                    input type="text" name="name" placeholder="name" required maxlength="64";
                    button type="submit" { "Create" }
                }
                form method="post" action="/join" id="join-room" {
                    h3 { "Join a room" }
                    input type="text" name="ticket" placeholder="paste a ticket" required autocomplete="off";
                    input type="text" name="name" placeholder="local name (optional)" maxlength="64";
                    button type="submit" { "Join" }
                }
            }
        },
    ))
}
