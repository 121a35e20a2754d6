//! `GET|HEAD /blob/HASH`: the HTTP gateway for public blobs (those added
//! or fetched outside a room, see `Node::is_public`). A blob only rooms
//! refer to answers exactly as a blob nobody has: 404.
//!
//! - The bytes, with `Range` (206), `ETag` = the hash and immutable cache
//!   headers; `?filename=NAME` serves them as an attachment by that name.
//! - `?format=bao[&start=S&end=E]`: the verifiable form of bytes `S..E`
//!   (all by default): the blob's size as 8 bytes little-endian, then the
//!   pre-order bao encoding of the 16 KiB chunk groups covering the
//!   range, exactly a blob-protocol answer (docs/protocol.md §3.4, §11).
//!   A client checks every byte against the hash it asked for.
//! - A public blob this node lacks is fetched first from the providers
//!   the DHT knows (as a kubo gateway does); it is then cached, unpinned.

use std::time::Duration;

use axum::{
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use p2pfs_proto::Hash;
use p2pfs_store::{BlobState, ChunkNum, ChunkRanges};
use p2pfs_swarm::{Node, Target};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::{
    App, WebError,
    bytes::{Blob, Source, respond},
};

/// How long the gateway waits for a blob it lacks.
const FETCH_WAIT: Duration = Duration::from_secs(60);
/// What a public blob's answer may be cached as: forever (it is named by
/// its content).
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// The chunk size of the bao encoding.
const CHUNK: u64 = 1024;

#[derive(Debug, Deserialize)]
pub(crate) struct Options {
    filename: Option<String>,
    format: Option<String>,
    start: Option<u64>,
    end: Option<u64>,
}

fn not_here(hash: &Hash) -> WebError {
    WebError::NotFound(format!("no public blob {hash} is reachable from this node"))
}

/// Makes the public blob `hash` complete in the store; its size.
async fn complete(node: &Node, hash: Hash) -> Result<u64, WebError> {
    let n = node.clone();
    let (public, info) = p2pfs_swarm::off_thread(move || {
        Ok::<_, p2pfs_store::StoreError>((n.is_public(&hash), n.store().info(&hash)?))
    })
    .await??;
    if !public {
        return Err(not_here(&hash));
    }
    if let Some(i) = info.as_ref().filter(|i| i.state == BlobState::Complete) {
        return Ok(i.size);
    }
    let providers = node.find_providers(hash).await.unwrap_or_default();
    let mut targets: Vec<Target> = providers.into_iter().map(Target::from).collect();
    if targets.is_empty() {
        targets = node.find_mainline_providers(hash).await;
    }
    if targets.is_empty() {
        return Err(not_here(&hash));
    }
    let stats = tokio::time::timeout(FETCH_WAIT, node.fetch(hash, targets, None))
        .await
        .map_err(|_| WebError::NotFound(format!("blob {hash}: no provider sent it in time")))??;
    Ok(stats.size)
}

pub(crate) async fn blob(
    State(app): State<App>,
    Path(hash): Path<String>,
    Query(o): Query<Options>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let hash: Hash = hash
        .parse()
        .map_err(|e| WebError::BadRequest(format!("not a blob hash: {e}")))?;
    let size = complete(&app.node, hash).await?;
    match o.format.as_deref() {
        None | Some("raw") => {}
        Some("bao") => {
            let start = o.start.unwrap_or(0);
            let end = o.end.unwrap_or(size).min(size);
            if start >= end && !(start == 0 && size == 0) {
                return Err(WebError::Unsatisfiable { size });
            }
            return Ok(bao(&app.node, hash, start..end, &method));
        }
        Some(other) => {
            return Err(WebError::BadRequest(format!(
                "unknown format {other:?} (raw or bao)"
            )));
        }
    }
    Ok(respond(
        &app.node,
        &method,
        &headers,
        Blob {
            hash,
            size,
            source: Source::Store,
            name: o.filename.filter(|n| !n.is_empty()),
            cache: IMMUTABLE,
        },
    ))
}

/// The verifiable encoding of `bytes` of `hash`, streamed.
fn bao(node: &Node, hash: Hash, bytes: std::ops::Range<u64>, method: &Method) -> Response {
    let ranges = ChunkRanges::from(
        ChunkNum(bytes.start / CHUNK)
            ..ChunkNum(bytes.end.div_ceil(CHUNK).max(bytes.start / CHUNK + 1)),
    );
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.p2pfs.bao"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{hash}.bao.{}-{}\"", bytes.start, bytes.end)) {
        h.insert(header::ETAG, v);
    }
    if method == Method::HEAD {
        return (StatusCode::OK, h).into_response();
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let store = node.store().clone();
    drop(tokio::task::spawn_blocking(move || {
        let failed = tx.clone();
        let sent = store.encode_chunks(&hash, &ranges, &mut |batch| {
            for b in batch {
                tx.blocking_send(Ok(b)).map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone")
                })?;
            }
            Ok(())
        });
        if let Err(e) = sent {
            let _ = failed.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    }));
    let body = crate::bytes::channel_body(rx);
    (StatusCode::OK, h, body).into_response()
}
