//! `/r/{room}/`: one room's files, a folder a page at a time (so a
//! 70,000-file folder opens as fast as a small one), with downloads, the
//! folder as an archive, uploads, the copies policy and the invite link.

use axum::extract::{Path, Query, State};
use maud::{Markup, html};
use p2pfs_swarm::room::FileKind;
use serde::Deserialize;

use super::{RoomTab, Tab, file_url, folder_url, human_bytes, layout, query, room_tabs, utc};
use crate::{App, WebError, index::Page};

/// Names per page of a folder.
pub(crate) const PAGE: usize = 200;

#[derive(Debug, Deserialize)]
pub(crate) struct At {
    /// The folder ("" or absent: the room's top).
    #[serde(default)]
    dir: String,
    /// The page after this name.
    after: Option<String>,
}

/// The rows of a page of a folder, and the link to the next page.
fn rows(room: &str, dir: &str, page: &Page) -> Markup {
    let join = |name: &str| {
        if dir.is_empty() {
            name.to_string()
        } else {
            format!("{dir}/{name}")
        }
    };
    html! {
        @for (name, kind) in &page.entries {
            @let path = join(name);
            @match kind {
                FileKind::Dir { .. } => {
                    tr.dir { td { a.folder href=(folder_url(room, &path)) { (name) "/" } } td.num {} td {} td {} }
                }
                FileKind::File { size, attr, .. } => {
                    tr.file {
                        td { a.file href=(file_url(room, &path)) download=(name) { (name) } }
                        td.num { (human_bytes(*size)) }
                        td.time { (utc(attr.mtime.secs)) }
                        td { button.delete type="button" data-path=(path) title="Remove from the room" { "✕" } }
                    }
                }
                FileKind::Symlink { target, .. } => {
                    tr.link { td { (name) " → " (target) } td.num {} td {} td {} }
                }
            }
        }
        @if page.more {
            @if let Some((last, _)) = page.entries.last() {
                tr.more {
                    td colspan="4" {
                        a.next href=(format!("{}{}after={}", folder_url(room, dir), if dir.is_empty() { "?" } else { "&" }, query(last)))
                            data-fragment=(format!("/r/{}/list?dir={}&after={}", super::segment(room), query(dir), query(last)))
                            { "More…" }
                    }
                }
            }
        }
    }
}

/// The breadcrumb of folder `dir`.
fn crumbs(room: &str, dir: &str) -> Markup {
    let parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    html! {
        nav.crumbs {
            a href=(folder_url(room, "")) { "top" }
            @for (i, part) in parts.iter().enumerate() {
                " / "
                a href=(folder_url(room, &parts[..=i].join("/"))) { (part) }
            }
        }
    }
}

/// The room, the folder asked for, and the page of it.
async fn folder(
    app: &App,
    name: &str,
    at: &At,
) -> Result<(std::sync::Arc<p2pfs_swarm::room::Room>, String, Page), WebError> {
    let room = app.node.find_room(name).await?;
    let dir = at.dir.trim_matches('/').to_string();
    let page = app
        .index
        .page(room.id(), dir.clone(), at.after.clone(), PAGE)
        .await?;
    Ok((room, dir, page))
}

pub(crate) async fn page(
    State(app): State<App>,
    Path(name): Path<String>,
    Query(at): Query<At>,
) -> Result<Markup, WebError> {
    let (room, dir, page) = folder(&app, &name, &at).await?;
    let policy = {
        let (store, id) = (app.node.store().clone(), room.id());
        p2pfs_swarm::off_thread(move || p2pfs_swarm::room::query::policy(&store, &id)).await??
    };
    let invite = crate::join_link(&app.node.room_ticket(&room).to_string());
    let archive = format!("/r/{}/archive?dir={}", super::segment(&name), query(&dir));
    Ok(layout(
        &name,
        Tab::Rooms,
        html! {
            (room_tabs(&name, RoomTab::Files))
            section.card {
                div.bar {
                    (crumbs(&name, &dir))
                    a.button href=(archive) download { "Download folder (.tar)" }
                }
                table.listing data-room=(name) data-dir=(dir) {
                    thead { tr { th { "Name" } th.num { "Size" } th { "Modified (UTC)" } th {} } }
                    tbody #listing { (rows(&name, &dir, &page)) }
                }
                @if page.entries.is_empty() && at.after.is_none() {
                    p.empty { "Nothing here yet: drop files or a folder below." }
                }
            }
            section.card.upload {
                h3 { "Upload" }
                div #drop.drop tabindex="0" {
                    "Drop files or folders here, or "
                    label { input #pick-files type="file" multiple; "choose files" }
                    " or "
                    label { input #pick-folder type="file" webkitdirectory multiple; "a folder" }
                }
                ul #uploads {}
            }
            section.card.split {
                form method="post" action=(format!("/r/{}/copies", super::segment(&name))) id="copies" {
                    h3 { "Copies" }
                    p { "Each file is kept by this many members while they are online (" code { "full" } ": every member)." }
                    input type="text" name="copies" value=(policy.to_string().trim_start_matches("copies=")) size="6" required;
                    button type="submit" { "Set" }
                }
                div {
                    h3 { "Invite" }
                    p { "Whoever opens this link with p2pfs running can join the room (their own node's page opens). It holds the room's secret: share it only with members." }
                    input #invite type="text" readonly value=(invite);
                }
            }
        },
    ))
}

/// `/r/{room}/list?dir=&after=`: the rows of a page alone (the script
/// loads more, and reloads the page shown when the room changes).
pub(crate) async fn list(
    State(app): State<App>,
    Path(name): Path<String>,
    Query(at): Query<At>,
) -> Result<Markup, WebError> {
    let (_, dir, page) = folder(&app, &name, &at).await?;
    Ok(rows(&name, &dir, &page))
}
