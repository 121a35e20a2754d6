//! `/status`: the node: its id and addresses, how it is reached, its
//! peers, the DHT, the transfers running (downloads and the page's
//! uploads, with progress) and the peers banned.

use axum::extract::State;
use maud::{Markup, html};
use p2pfs_swarm::PathKind;

use super::{Tab, human_bytes, layout, short_id};
use crate::{App, WebError};

fn percent(done: u64, size: Option<u64>) -> String {
    match size {
        Some(0) => "100%".into(),
        Some(s) => format!("{:.0}%", done as f64 * 100.0 / s as f64),
        None => "…".into(),
    }
}

pub(crate) async fn page(State(app): State<App>) -> Result<Markup, WebError> {
    let node = &app.node;
    let reach = node.reach();
    let dht = node.dht_status();
    let mut peers = node.peers();
    peers.sort_by_key(|p| p.id.to_string());
    let transfers = node.transfers();
    let uploads = app.uploads.list();
    let banned = node.banned();
    Ok(layout(
        "Node",
        Tab::Status,
        html! {
            section.card {
                h2 { "This node" }
                dl.facts {
                    dt { "Id" } dd { code #node-id { (node.id()) } }
                    dt { "Listening" } dd { @for a in node.addrs() { code { (a) } " " } }
                    dt { "Reach" } dd {
                        (format!("{:?}", reach.nat).to_lowercase()) " NAT"
                        @if let Some(r) = reach.reflexive { ", seen as " code { (r) } }
                        @if let Some(m) = reach.mapped { ", mapped " code { (m) } }
                        @if reach.reachable { ", reachable" } @else { ", not reachable unasked" }
                        ", relays " (format!("{:?}", reach.relay).to_lowercase())
                        ", " (reach.relayed_paths) " relayed path(s)"
                    }
                    dt { "DHT" } dd #dht { (dht.table) " nodes known, " (dht.records) " records held, " (dht.announced) " blobs announced" @if dht.server { ", serving" } }
                }
            }
            section.card {
                h3 { "Peers (" (peers.len()) ")" }
                table #peers {
                    thead { tr { th { "Id" } th { "Address" } th { "Path" } th { "Dialed" } th.num { "Connected" } } }
                    tbody {
                        @for p in &peers {
                            tr {
                                td { code title=(p.id.to_string()) { (short_id(&p.id)) } }
                                td { code { (p.addr) } }
                                td { @match (p.path, p.via) {
                                    (PathKind::Direct, _) => "direct",
                                    (PathKind::Relay, Some(v)) => { "relay " code { (short_id(&v)) } },
                                    (PathKind::Relay, None) => "relay",
                                } }
                                td { @if p.outbound { "out" } @else { "in" } }
                                td.num { (p.connected_secs) " s" }
                            }
                        }
                    }
                }
            }
            section.card {
                h3 { "Transfers" }
                @if transfers.is_empty() && uploads.is_empty() {
                    p.empty { "None running." }
                }
                table #transfers {
                    tbody {
                        @for t in &transfers {
                            tr {
                                td { "download" }
                                td { code title=(t.hash.to_string()) { (t.hash.fmt_short()) } }
                                td.num { (human_bytes(t.progress.present)) @if let Some(s) = t.progress.size { " / " (human_bytes(s)) } }
                                td.num { (percent(t.progress.present, t.progress.size)) }
                                td.num { (human_bytes(t.progress.rate as u64)) "/s" }
                                td.num { (t.progress.peers) " peer(s)" }
                            }
                        }
                        @for u in &uploads {
                            tr {
                                td { "upload" }
                                td { (u.room) "/" (u.path) }
                                td.num { (human_bytes(u.received)) @if let Some(s) = u.size { " / " (human_bytes(s)) } }
                                td.num { (percent(u.received, u.size)) }
                                td.num {}
                                td.num {}
                            }
                        }
                    }
                }
            }
            section.card {
                h3 { "Banned peers" }
                @if banned.is_empty() {
                    p.empty { "None." }
                } @else {
                    table #banned {
                        tbody {
                            @for b in &banned {
                                tr { td { code { (short_id(&b.id)) } } td { (b.reason) } td.num { (b.secs_left) " s left" } }
                            }
                        }
                    }
                }
            }
        },
    ))
}
