//! `/r/{room}/members`: who is in the room: name, short id, online, the
//! path this node reaches them by (direct or through a relay), and how
//! many of the room's files each keeps.

use axum::extract::{Path, State};
use maud::{Markup, html};
use p2pfs_proto::moderation::Role;
use p2pfs_swarm::PathKind;

use super::{RoomTab, Tab, layout, room_tabs, short_id};
use crate::{App, WebError};

pub(crate) async fn page(
    State(app): State<App>,
    Path(name): Path<String>,
) -> Result<Markup, WebError> {
    let room = app.node.find_room(&name).await?;
    let files = app.index.files(&room.id()).await?;
    let status = app.node.room_status_of(&room, files, false).await?;
    let peers = app.node.peers();
    let path = |id| match peers.iter().find(|p| p.id == id) {
        Some(p) => match (p.path, p.via) {
            (PathKind::Direct, _) => format!("direct {}", p.addr),
            (PathKind::Relay, Some(via)) => format!("relayed by {}", short_id(&via)),
            (PathKind::Relay, None) => "relayed".to_string(),
        },
        None => "not connected".to_string(),
    };
    let roles = app.node.room_members(&room).await?;
    let role_of = |id| {
        roles
            .iter()
            .find(|m| m.id == id)
            .map_or(Role::Member, |m| m.role)
    };
    let may_remove = role_of(app.node.id()) != Role::Member;
    let mut members = status.members.clone();
    members.sort_by(|a, b| (b.me, b.online, &a.name).cmp(&(a.me, a.online, &b.name)));
    Ok(layout(
        &format!("{name} members"),
        Tab::Rooms,
        html! {
            (room_tabs(&name, RoomTab::Members))
            section.card {
                table.members {
                    thead { tr { th { "Name" } th { "Role" } th { "Id" } th { "Online" } th { "Path" } th.num { "Files held" } @if may_remove { th { "" } } } }
                    tbody {
                        @for m in &members {
                            tr.online[m.online] {
                                td { (m.name) @if m.me { " (this node)" } }
                                td { (role_of(m.id).as_str()) }
                                td { code title=(m.id.to_string()) { (short_id(&m.id)) } }
                                td { @if m.online { "online" } @else { "offline" } }
                                td { @if m.me { "—" } @else { (path(m.id)) } }
                                td.num { (m.holds) }
                                @if may_remove {
                                    td {
                                        @if !m.me && role_of(m.id) != Role::Owner {
                                            form.remove method="post" action=(format!("{}remove", super::room_url(&name))) {
                                                input type="hidden" name="member" value=(m.id.to_string());
                                                button type="submit" title="The room's key changes: this member can no longer see new files or messages. What it already had stays with it." { "Remove" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                @if may_remove {
                    p.note { "Removing a member changes the room's key: it can no longer see new files or messages, and what it writes is refused. What it already had stays with it. Old invite links stop working; the room page shows the new one." }
                }
                p.note { (status.files.len()) " files; " (status.files.iter().filter(|f| f.below_target()).count()) " below the target of " (status.policy.to_string()) "." }
            }
        },
    ))
}
