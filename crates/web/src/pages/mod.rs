//! The page's HTML: a layout shared by every page, and one module per
//! page. Templates are maud (checked and compiled into the binary; every
//! value is escaped). Pages work without the script; the script adds live
//! chat, uploads, the live search and listing updates.

pub(crate) mod chat;
pub(crate) mod join;
pub(crate) mod members;
pub(crate) mod room;
pub(crate) mod rooms;
pub(crate) mod search;
pub(crate) mod status;

use axum::{http::StatusCode, response::IntoResponse};
use maud::{DOCTYPE, Markup, html};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// What a path segment escapes: everything but unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// What a path escapes: a segment's set, keeping `/`.
const PATH: &AsciiSet = &SEGMENT.remove(b'/');

/// `text` as one URL path segment.
pub(crate) fn segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

/// `text` as a URL query value.
pub(crate) fn query(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

/// The page of room `room` (its local name).
pub(crate) fn room_url(room: &str) -> String {
    format!("/r/{}/", segment(room))
}

/// The page of folder `dir` of `room`.
pub(crate) fn folder_url(room: &str, dir: &str) -> String {
    if dir.is_empty() {
        room_url(room)
    } else {
        format!("{}?dir={}", room_url(room), query(dir))
    }
}

/// The download of file `path` of `room`.
pub(crate) fn file_url(room: &str, path: &str) -> String {
    format!("/r/{}/f/{}", segment(room), utf8_percent_encode(path, PATH))
}

/// A size for people: `1.5 MiB`.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A time (seconds since the Unix epoch) as `YYYY-MM-DD HH:MM` UTC.
pub(crate) fn utc(secs: i64) -> String {
    let full = p2pfs_swarm::room::render::rfc3339(secs.max(0) as u64 * 1000);
    full.get(..16).unwrap_or(&full).replace('T', " ")
}

/// Which tab of the top bar is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tab {
    Rooms,
    Search,
    Status,
    Other,
}

/// A room's tabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RoomTab {
    Files,
    Chat,
    Members,
}

/// The tabs of room `room`, `open` marked.
pub(crate) fn room_tabs(room: &str, open: RoomTab) -> Markup {
    let base = room_url(room);
    let tab = |t: RoomTab, href: String, label: &str| {
        html! { a.tab.open[t == open] href=(href) { (label) } }
    };
    html! {
        nav.room-tabs {
            h1 { a href=(base) { (room) } }
            (tab(RoomTab::Files, base.clone(), "Files"))
            (tab(RoomTab::Chat, format!("{base}chat"), "Chat"))
            (tab(RoomTab::Members, format!("{base}members"), "Members"))
        }
    }
}

/// A whole page.
pub(crate) fn layout(title: &str, tab: Tab, body: Markup) -> Markup {
    let link = |t: Tab, href: &str, label: &str| {
        html! { a.open[t == tab] href=(href) { (label) } }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · p2pfs" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href="/assets/style.css";
                script src="/assets/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/" { "p2pfs" }
                    (link(Tab::Rooms, "/", "Rooms"))
                    (link(Tab::Status, "/status", "Node"))
                    form.search action="/search" method="get" role="search" {
                        input type="search" name="q" placeholder="Search files in every room"
                            aria-label="Search files" id="top-search";
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The login page: the token, pasted (`p2pfs web` prints a link that
/// does this at once).
pub(crate) fn login(next: &str, wrong: bool) -> Markup {
    layout(
        "Log in",
        Tab::Other,
        html! {
            section.card {
                h2 { "This page belongs to a p2pfs node" }
                @if wrong {
                    p.error { "That token is not this node's." }
                }
                p { "Run " code { "p2pfs web" } " in a terminal and open the link it prints, or paste the token here:" }
                form action="/login" method="get" {
                    input type="hidden" name="next" value=(next) id="login-next";
                    input type="password" name="token" placeholder="token" autocomplete="off" required;
                    button type="submit" { "Log in" }
                }
            }
        },
    )
}

/// Anything else.
pub(crate) async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        layout(
            "Not found",
            Tab::Other,
            html! { section.card { h2 { "Nothing here" } p { a href="/" { "Back to the rooms" } } } },
        ),
    )
}

/// A short form of a node id.
pub(crate) fn short_id(id: &p2pfs_proto::NodeId) -> String {
    id.fmt_short().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_escape_what_they_must() {
        assert_eq!(room_url("a b/c"), "/r/a%20b%2Fc/");
        assert_eq!(file_url("r", "dir/x y#?.txt"), "/r/r/f/dir/x%20y%23%3F.txt");
        assert_eq!(folder_url("r", "a/b&c"), "/r/r/?dir=a%2Fb%26c");
        assert_eq!(folder_url("r", ""), "/r/r/");
    }

    #[test]
    fn sizes_and_times_read_well() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(utc(0), "1970-01-01 00:00");
        assert_eq!(utc(1_796_583_600), "2026-12-06 19:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00");
    }
}
