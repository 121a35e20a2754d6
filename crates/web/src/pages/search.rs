//! `/search?q=`: file names across every room, substring and
//! case-insensitive, from the listings in memory (see `index`).
//! `&rows=1` answers the rows alone, for the live search.

use std::time::Instant;

use axum::{
    extract::{Query, State},
    response::{IntoResponse, Response},
};
use maud::{Markup, html};
use p2pfs_swarm::room::FileKind;
use serde::Deserialize;

use super::{Tab, file_url, folder_url, human_bytes, layout};
use crate::{App, WebError, index::Hit};

/// Names shown at most.
const SHOWN: usize = 200;

#[derive(Debug, Deserialize)]
pub(crate) struct Q {
    #[serde(default)]
    q: String,
    #[serde(default)]
    rows: bool,
}

fn results(q: &str, hits: &[Hit], total: usize, ms: f64) -> Markup {
    html! {
        div #results {
            @if !q.is_empty() {
                p.count { (total) " match" @if total != 1 { "es" } " for “" (q) "” (" (format!("{ms:.1}")) " ms)"
                    @if total > hits.len() { ", the first " (hits.len()) " shown" } }
            }
            table.search {
                tbody {
                    @for h in hits {
                        tr {
                            td { a.room href=(folder_url(&h.room, "")) { (h.room) } }
                            @match &h.kind {
                                FileKind::File { size, .. } => {
                                    td { a.hit href=(file_url(&h.room, &h.path)) { (h.path) } }
                                    td.num { (human_bytes(*size)) }
                                }
                                FileKind::Dir { .. } => {
                                    td { a.hit href=(folder_url(&h.room, &h.path)) { (h.path) "/" } }
                                    td.num {}
                                }
                                FileKind::Symlink { .. } => { td { (h.path) } td.num {} }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub(crate) async fn page(State(app): State<App>, Query(q): Query<Q>) -> Result<Response, WebError> {
    let text = q.q.trim().to_string();
    let started = Instant::now();
    let (hits, total) = if text.is_empty() {
        (Vec::new(), 0)
    } else {
        app.index.search(&text, SHOWN).await?
    };
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let body = results(&text, &hits, total, ms);
    if q.rows {
        return Ok(body.into_response());
    }
    Ok(layout(
        "Search",
        Tab::Search,
        html! {
            section.card {
                h2 { "Search" }
                form action="/search" method="get" {
                    input #search type="search" name="q" value=(text) autofocus placeholder="part of a file name";
                    button type="submit" { "Search" }
                }
                (body)
            }
        },
    )
    .into_response())
}
