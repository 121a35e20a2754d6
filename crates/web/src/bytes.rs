//! Serving a blob's bytes over HTTP: validators (`ETag` is the hash, so a
//! blob never changes under its tag), one range (206) or all of it, HEAD,
//! and a body streamed from the store. For a room file the store may not
//! hold yet, each missing window is fetched from the room's members as the
//! body reaches it, so a download starts at once and a range costs only
//! its chunks.

use std::{ops::Range, sync::Arc};

use axum::{
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use p2pfs_proto::{Hash, NodeId};
use p2pfs_swarm::{
    Node,
    room::{FileKind, Room},
};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::sync::mpsc;

use crate::{
    App, WebError,
    range::{Wanted, wanted},
};

/// Bytes read from the store per body chunk.
const CHUNK: u64 = 256 * 1024;
/// Bytes fetched from a room at a time when the store lacks them.
const WINDOW: u64 = 8 * 1024 * 1024;

/// Where the bytes of a blob come from.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// The store has them all.
    Store,
    /// A room file: what the store lacks is fetched from the members.
    Room { room: Arc<Room>, author: NodeId },
}

/// How to serve a blob.
#[derive(Debug, Clone)]
pub(crate) struct Blob {
    pub(crate) hash: Hash,
    pub(crate) size: u64,
    pub(crate) source: Source,
    /// A download name: served as an attachment under it.
    pub(crate) name: Option<String>,
    /// The `Cache-Control` header.
    pub(crate) cache: &'static str,
}

/// `Content-Disposition: attachment` with `name` (RFC 6266: an ASCII
/// fallback and the UTF-8 name).
pub(crate) fn attachment(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{}",
        utf8_percent_encode(name, NON_ALPHANUMERIC)
    )
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// The answer to a GET or HEAD of `blob`.
pub(crate) fn respond(node: &Node, method: &Method, headers: &HeaderMap, blob: Blob) -> Response {
    let etag = format!("\"{}\"", blob.hash);
    let mut out = HeaderMap::new();
    out.insert(header::ETAG, header_value(&etag));
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static(blob.cache));
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    out.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(crate::guard::FILE_CSP),
    );
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(name) = &blob.name {
        out.insert(header::CONTENT_DISPOSITION, header_value(&attachment(name)));
    }
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        return (StatusCode::NOT_MODIFIED, out).into_response();
    }
    // A range only if the validator given with it still holds (it always
    // does: the tag is the content).
    let if_range = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim() == etag);
    let range = match wanted(
        headers
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .filter(|_| if_range),
        blob.size,
    ) {
        Wanted::All => None,
        Wanted::Part(r) => Some(r),
        Wanted::Unsatisfiable => {
            return WebError::Unsatisfiable { size: blob.size }.into_response();
        }
    };
    let (status, bytes) = match range {
        Some(r) => {
            out.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes {}-{}/{}", r.start, r.end - 1, blob.size)),
            );
            (StatusCode::PARTIAL_CONTENT, r)
        }
        None => (StatusCode::OK, 0..blob.size),
    };
    out.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(bytes.end - bytes.start),
    );
    if method == Method::HEAD {
        return (status, out).into_response();
    }
    (status, out, stream(node.clone(), blob, bytes)).into_response()
}

/// A body of `bytes` of `blob`, read (and, for a room file, fetched) as
/// the client takes it. A failure midway ends the body early, which the
/// client sees against the length announced.
fn stream(node: Node, blob: Blob, bytes: Range<u64>) -> Body {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let mut at = bytes.start;
        // The window last fetched for this position, so a fetch that does
        // not bring the bytes fails rather than loops.
        let mut fetched: Option<u64> = None;
        while at < bytes.end {
            let len = CHUNK.min(bytes.end - at);
            let (store, hash) = (node.store().clone(), blob.hash);
            let read = p2pfs_swarm::off_thread(move || {
                let mut buf = vec![0u8; len as usize];
                let n = store.read_at(&hash, at, &mut buf)?;
                buf.truncate(n);
                Ok::<_, p2pfs_store::StoreError>(buf)
            })
            .await;
            let error = match read {
                Ok(Ok(buf)) if !buf.is_empty() => {
                    at += buf.len() as u64;
                    fetched = None;
                    if tx.send(Ok(Bytes::from(buf))).await.is_err() {
                        return;
                    }
                    continue;
                }
                Ok(Ok(_)) => "the blob ended early".to_string(),
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            if let (Source::Room { room, author }, None) = (&blob.source, fetched) {
                let want = at..(at + WINDOW).min(blob.size);
                fetched = Some(at);
                if let Err(e) = node
                    .room_fetch_range(room, blob.hash, *author, want, None)
                    .await
                {
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    return;
                }
                continue;
            }
            tracing::debug!(hash = %blob.hash, "web page: serving stopped: {error}");
            let _ = tx.send(Err(std::io::Error::other(error))).await;
            return;
        }
    });
    channel_body(rx)
}

/// A response body of what arrives on `rx` (an error ends it early).
pub(crate) fn channel_body(rx: mpsc::Receiver<Result<Bytes, std::io::Error>>) -> Body {
    Body::from_stream(futures_lite::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// `GET|HEAD /r/{room}/f/{*path}`: a room file, as an attachment, for the
/// page's session only (the guard saw to that).
pub(crate) async fn room_file(
    State(app): State<App>,
    Path((room, path)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let room = app.node.find_room(&room).await?;
    let Some(kind) = app.index.get(&room.id(), &path).await? else {
        return Err(WebError::NotFound(format!("no file {path:?} in this room")));
    };
    let FileKind::File {
        hash, size, author, ..
    } = kind
    else {
        return Err(WebError::NotFound(format!("{path:?} is a folder")));
    };
    // Pinned for the room, so collecting garbage spares what is fetched.
    let (store, pin) = (
        app.node.store().clone(),
        p2pfs_swarm::room::pin_name(&room.id()),
    );
    p2pfs_swarm::off_thread(move || store.pin(&hash, &pin)).await??;
    let name = path.rsplit('/').next().unwrap_or(&path).to_string();
    Ok(respond(
        &app.node,
        &method,
        &headers,
        Blob {
            hash,
            size,
            source: Source::Room { room, author },
            name: Some(name),
            cache: "private, no-cache",
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_names_are_quoted_safely() {
        assert_eq!(
            attachment("a b.txt"),
            "attachment; filename=\"a b.txt\"; filename*=UTF-8''a%20b%2Etxt"
        );
        let evil = attachment("x\"; y.html\r\nSet-Cookie: a");
        assert!(!evil.contains('\r') && !evil.contains('\n'));
        assert!(evil.starts_with("attachment; filename=\"x_; y.html__Set-Cookie: a\""));
        assert!(attachment("été.pdf").contains("filename*=UTF-8''%C3%A9t%C3%A9%2Epdf"));
    }
}
