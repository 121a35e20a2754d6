//! `GET /r/{room}/archive?dir=`: a folder (or the whole room) as one tar
//! stream, uncompressed, written as it is sent: each file is read from
//! the store, fetched from the room first if this node lacks it. The
//! archive is never held in memory or on disk.

use std::io::{self, Write};

use axum::{
    extract::{Path, Query, State},
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use p2pfs_swarm::room::FileKind;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::{App, WebError, bytes::attachment};

#[derive(Debug, Deserialize)]
pub(crate) struct Dir {
    #[serde(default)]
    dir: String,
}

/// A writer that sends what is written, in pieces, to the response body.
struct Sender {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    buf: Vec<u8>,
}

/// Bytes gathered before a piece is sent.
const PIECE: usize = 256 * 1024;

impl Write for Sender {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= PIECE {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(piece))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

pub(crate) async fn folder(
    State(app): State<App>,
    Path(name): Path<String>,
    Query(q): Query<Dir>,
) -> Result<Response, WebError> {
    let room = app.node.find_room(&name).await?;
    let dir = q.dir.trim_matches('/').to_string();
    let files = app.index.files_under(&room.id(), &dir).await?;
    if files.is_empty() && !dir.is_empty() {
        return Err(WebError::NotFound(format!(
            "no folder {dir:?} in this room"
        )));
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(4);
    let node = app.node.clone();
    let strip = if dir.is_empty() { 0 } else { dir.len() + 1 };
    let top = if dir.is_empty() {
        name.clone()
    } else {
        dir.rsplit('/').next().unwrap_or(&dir).to_string()
    };
    let (handle, folder) = (tokio::runtime::Handle::current(), top.clone());
    // All on one blocking thread: the archive is written there, and each
    // file is made complete (fetched from the room) when it is reached.
    drop(tokio::task::spawn_blocking(move || {
        let failed = tx.clone();
        let write = move || -> io::Result<()> {
            let mut builder = tar::Builder::new(Sender {
                tx,
                buf: Vec::new(),
            });
            for (path, kind) in files {
                let FileKind::File {
                    hash, size, attr, ..
                } = kind
                else {
                    continue;
                };
                handle
                    .block_on(node.room_fetch(&room, &path))
                    .map_err(|e| io::Error::other(format!("{path}: {e}")))?;
                let reader = node.store().reader(&hash).map_err(io::Error::other)?;
                let mut header = tar::Header::new_gnu();
                header.set_size(size);
                header.set_mode(0o644);
                header.set_mtime(attr.mtime.secs.max(0) as u64);
                header.set_entry_type(tar::EntryType::Regular);
                let name = format!("{folder}/{}", &path[strip..]);
                builder.append_data(&mut header, &name, Reader { reader, at: 0 })?;
            }
            builder.into_inner()?.flush()
        };
        if let Err(e) = write() {
            tracing::debug!("web page: archive stopped: {e}");
            let _ = failed.blocking_send(Err(e));
        }
    }));
    let body = crate::bytes::channel_body(rx);
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    if let Ok(v) = HeaderValue::from_str(&attachment(&format!("{top}.tar"))) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(crate::guard::FILE_CSP),
    );
    Ok(r)
}

/// A complete blob as a reader.
struct Reader {
    reader: p2pfs_store::BlobReader,
    at: u64,
}

impl io::Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.reader.read_at(self.at, buf)?;
        self.at += n as u64;
        Ok(n)
    }
}
