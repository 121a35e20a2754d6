//! Files uploaded through the page: streamed from the request body into
//! the store (never held whole in memory), then published in the room.
//! The bytes must be exactly the `Content-Length` announced: a body cut
//! off short is an error, never a shorter file. Uploads running are
//! listed, with their progress, on the status page.

use std::{
    collections::BTreeMap,
    io::{self, Read},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::body::Body;
use futures_lite::StreamExt;
use p2pfs_proto::{Hash, room::Attr};
use p2pfs_swarm::{
    room::{Change, Room},
    transfer::bridge,
};

use crate::{App, WebError, lock};

/// An upload running.
#[derive(Debug, Clone)]
pub(crate) struct Upload {
    pub(crate) room: String,
    pub(crate) path: String,
    pub(crate) size: Option<u64>,
    pub(crate) received: u64,
}

#[derive(Debug)]
struct Entry {
    room: String,
    path: String,
    size: u64,
    received: Arc<AtomicU64>,
}

/// The uploads running through the page.
#[derive(Debug, Clone, Default)]
pub(crate) struct Uploads {
    next: Arc<AtomicU64>,
    running: Arc<Mutex<BTreeMap<u64, Entry>>>,
}

/// An upload's entry, gone when dropped.
struct Running {
    id: u64,
    uploads: Uploads,
}

impl Drop for Running {
    fn drop(&mut self) {
        lock(&self.uploads.running).remove(&self.id);
    }
}

impl Uploads {
    fn start(&self, room: &str, path: &str, size: u64) -> (Running, Arc<AtomicU64>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let received = Arc::new(AtomicU64::new(0));
        lock(&self.running).insert(
            id,
            Entry {
                room: room.to_string(),
                path: path.to_string(),
                size,
                received: received.clone(),
            },
        );
        (
            Running {
                id,
                uploads: self.clone(),
            },
            received,
        )
    }

    /// The uploads running now, oldest first.
    pub(crate) fn list(&self) -> Vec<Upload> {
        lock(&self.running)
            .values()
            .map(|e| Upload {
                room: e.room.clone(),
                path: e.path.clone(),
                size: Some(e.size),
                received: e.received.load(Ordering::Relaxed),
            })
            .collect()
    }
}

/// Reads exactly `left` bytes from `inner`: fewer (the client went away)
/// or more is an error.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the upload was cut off {} bytes short", self.left),
            ));
        }
        self.left = self.left.checked_sub(n as u64).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "the upload is longer than its Content-Length",
            )
        })?;
        Ok(n)
    }
}

/// Streams `body` (`size` bytes) into the store, pinned for `room`, and
/// publishes it there as `path` with `attr`. Returns its hash. A path the
/// room cannot take is refused before any byte is read.
pub(crate) async fn receive(
    app: &App,
    room: &Room,
    path: &str,
    size: u64,
    attr: Attr,
    body: Body,
) -> Result<Hash, WebError> {
    p2pfs_proto::room::check_path(path).map_err(WebError::BadRequest)?;
    app.index.check_put(&room.id(), path).await?;
    let node = &app.node;
    let (_entry, received) = app.uploads.start(&room.name(), path, size);
    let (mut feed, reader) = bridge::reader(received);
    let (store, pin) = (
        node.store().clone(),
        p2pfs_swarm::room::pin_name(&room.id()),
    );
    let import = p2pfs_swarm::off_thread(move || {
        store.import_reader(
            Exact {
                inner: reader,
                left: size,
            },
            "an upload",
            Some(&pin),
        )
    });
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => {
                if !feed.push(bytes).await {
                    // The import stopped (it says why below).
                    break;
                }
            }
            Err(e) => {
                feed.fail(io::Error::other(format!("the upload failed: {e}")))
                    .await;
                break;
            }
        }
    }
    feed.flush().await;
    drop(feed);
    let imported = import.await??;
    if imported.size != size {
        return Err(WebError::BadRequest(format!(
            "received {} bytes of {size}",
            imported.size
        )));
    }
    // (The shape was checked above, against the listing.)
    let put = Change::Put {
        path: path.to_string(),
        hash: imported.hash,
        size: imported.size,
        attr,
        inode: None,
        base: None,
    };
    node.room_apply(room, vec![put]).await?;
    Ok(imported.hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_reads_refuse_short_and_long_bodies() {
        let read = |data: &[u8], size: u64| {
            let mut out = Vec::new();
            Exact {
                inner: data,
                left: size,
            }
            .read_to_end(&mut out)
            .map(|_| out)
        };
        assert_eq!(read(b"abc", 3).expect("exact"), b"abc");
        assert_eq!(
            read(b"ab", 3).expect_err("short").kind(),
            io::ErrorKind::UnexpectedEof
        );
        assert_eq!(
            read(b"abcd", 3).expect_err("long").kind(),
            io::ErrorKind::InvalidData
        );
    }
}
