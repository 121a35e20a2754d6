//! What the page changes. Forms post here and are sent back to a page
//! (303); the script's requests (`Accept: application/json`) get JSON.

use axum::{
    Json,
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use p2pfs_proto::room::{Attr, Copies, RoomTicket, Time};
use serde::{Deserialize, Serialize};

use crate::{App, WebError, pages, uploads};

/// The header giving an upload's modification time (ms since the epoch:
/// the browser's `File.lastModified`).
const MTIME: &str = "x-p2pfs-mtime";

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

/// A form or a JSON body, whichever the request carries.
fn fields<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, WebError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json {
        serde_json::from_slice(body).map_err(|e| WebError::BadRequest(format!("bad JSON: {e}")))
    } else {
        serde_urlencoded::from_bytes(body)
            .map_err(|e| WebError::BadRequest(format!("bad form: {e}")))
    }
}

/// The answer to a change: JSON for the script, else back to `to`.
fn done(headers: &HeaderMap, to: &str, json: serde_json::Value) -> Response {
    if wants_json(headers) {
        Json(json).into_response()
    } else {
        Redirect::to(to).into_response()
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct NewRoom {
    name: String,
}

/// `POST /rooms`: creates a room.
pub(crate) async fn create_room(
    State(app): State<App>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, WebError> {
    let f: NewRoom = fields(&headers, &body)?;
    let name = f.name.trim();
    app.node.create_room(name).await?;
    Ok(done(
        &headers,
        &pages::room_url(name),
        serde_json::json!({ "room": name }),
    ))
}

#[derive(Debug, Deserialize)]
pub(crate) struct Join {
    ticket: String,
    #[serde(default)]
    name: Option<String>,
}

/// `POST /join`: joins a room by its ticket.
pub(crate) async fn join_room(
    State(app): State<App>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, WebError> {
    let f: Join = fields(&headers, &body)?;
    // A pasted invite link works as well as the ticket in it.
    let text = f.ticket.trim();
    let text = text.rsplit_once('#').map_or(text, |(_, t)| t);
    let ticket: RoomTicket = text
        .parse()
        .map_err(|e| WebError::BadRequest(format!("that is not a room ticket: {e}")))?;
    let local = f.name.as_deref().map(str::trim).filter(|n| !n.is_empty());
    let name = app.node.join_room(&ticket, local).await?;
    Ok(done(
        &headers,
        &pages::room_url(&name),
        serde_json::json!({ "room": name }),
    ))
}

#[derive(Debug, Deserialize)]
pub(crate) struct SetCopies {
    copies: String,
}

/// `POST /r/{room}/copies`: the room's copies policy.
pub(crate) async fn set_copies(
    State(app): State<App>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, WebError> {
    let f: SetCopies = fields(&headers, &body)?;
    let policy: Copies = f.copies.parse().map_err(WebError::BadRequest)?;
    let room = app.node.find_room(&name).await?;
    app.node.room_set_copies(&room, policy).await?;
    Ok(done(
        &headers,
        &pages::room_url(&name),
        serde_json::json!({ "copies": policy.to_string() }),
    ))
}

#[derive(Debug, Deserialize)]
pub(crate) struct Member {
    member: String,
}

/// `POST /r/{room}/remove`: removes a member (the owner or a moderator):
/// a new room key, which the member does not get.
pub(crate) async fn remove_member(
    State(app): State<App>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, WebError> {
    let f: Member = fields(&headers, &body)?;
    let room = app.node.find_room(&name).await?;
    let id = app.node.resolve_member(&room, &f.member).await?.id;
    app.node.room_remove(&room, id).await?;
    Ok(done(
        &headers,
        &format!("{}members", pages::room_url(&name)),
        serde_json::json!({ "removed": id.to_string() }),
    ))
}

#[derive(Debug, Deserialize)]
pub(crate) struct Say {
    text: String,
}

/// `POST /r/{room}/chat`: posts chat lines.
pub(crate) async fn post_chat(
    State(app): State<App>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, WebError> {
    let f: Say = fields(&headers, &body)?;
    let room = app.node.find_room(&name).await?;
    let n = app.node.chat(&room, &f.text).await?;
    if n == 0 {
        return Err(WebError::BadRequest("nothing to post".into()));
    }
    Ok(done(
        &headers,
        &format!("{}chat", pages::room_url(&name)),
        serde_json::json!({ "lines": n }),
    ))
}

/// What an upload answers.
#[derive(Debug, Serialize)]
struct Uploaded {
    path: String,
    hash: String,
    size: u64,
}

/// `PUT /r/{room}/f/{*path}`: the body becomes the file at `path`
/// (replacing what is there).
pub(crate) async fn upload(
    State(app): State<App>,
    Path((name, path)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, WebError> {
    let room = app.node.find_room(&name).await?;
    let size: u64 = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| WebError::BadRequest("an upload needs its Content-Length".into()))?;
    let now = Time::from_system(std::time::SystemTime::now());
    let mtime = headers
        .get(MTIME)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(now, Time::from_millis);
    let attr = Attr {
        mode: 0o644,
        mtime,
        atime: mtime,
        ctime: now,
    };
    let hash = uploads::receive(&app, &room, &path, size, attr, body).await?;
    Ok((
        StatusCode::CREATED,
        Json(Uploaded {
            path,
            hash: hash.to_string(),
            size,
        }),
    )
        .into_response())
}

/// `DELETE /r/{room}/f/{*path}`: removes a name from the room.
pub(crate) async fn delete(
    State(app): State<App>,
    Path((name, path)): Path<(String, String)>,
) -> Result<StatusCode, WebError> {
    let room = app.node.find_room(&name).await?;
    app.node.room_delete(&room, &path).await?;
    Ok(StatusCode::NO_CONTENT)
}
