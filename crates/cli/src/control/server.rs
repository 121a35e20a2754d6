//! The node side of the control socket.

use std::{os::unix::fs::PermissionsExt, path::Path, time::Duration};

use bytes::Bytes;
use p2pfs_proto::codec;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{UnixListener, UnixStream},
    sync::mpsc,
};
use tokio_util::sync::CancellationToken;

use super::{Input, Request, Response, RoomRequest};
use p2pfs_swarm::Node;

use crate::{
    api,
    error::{AppError, SocketStep},
};

/// How long a stopping node lets the commands it accepted finish.
const DRAIN: Duration = Duration::from_secs(10);
/// A backlog that stays empty this long after the socket is gone is empty
/// for good.
const BACKLOG_QUIET: Duration = Duration::from_millis(20);

/// Listens on `path` and serves commands for `node` until `cancel`.
///
/// Fails if another live node answers on that socket; a stale socket left
/// by a crash is replaced.
///
/// Stopping loses no command: the socket is removed first (a command
/// started from then on finds no node and runs without one once this
/// process is gone), the commands already connected, accepted or still in
/// the backlog, are carried out, and `serve` returns once they are done
/// (after at most [`DRAIN`]; `chat --follow` ends at once).
pub(crate) async fn serve(
    node: Node,
    path: &Path,
    cancel: CancellationToken,
) -> Result<(), AppError> {
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(AppError::AlreadyRunning(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(|e| SocketStep::RemoveStale.failed(path, e))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| SocketStep::Listen.failed(path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| SocketStep::Secure.failed(path, e))?;
    let tasks = tokio_util::task::TaskTracker::new();
    let start = |stream: UnixStream| {
        let (node, cancel) = (node.clone(), cancel.clone());
        tasks.spawn(async move {
            if let Err(e) = session(node, stream, cancel).await {
                tracing::debug!("control session ended: {e}");
            }
        });
    };
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => break,
            s = listener.accept() => s,
        };
        match stream {
            Ok((stream, _)) => start(stream),
            Err(e) => tracing::warn!("control socket: {e}"),
        }
    }
    let _ = std::fs::remove_file(path);
    while let Ok(Ok((stream, _))) = tokio::time::timeout(BACKLOG_QUIET, listener.accept()).await {
        start(stream);
    }
    drop(listener);
    tasks.close();
    if tokio::time::timeout(DRAIN, tasks.wait()).await.is_err() {
        tracing::warn!(
            "commands still running after {} s: stopping anyway",
            DRAIN.as_secs()
        );
    }
    Ok(())
}

/// Whether a command runs until its client goes away.
fn endless(request: &Request) -> bool {
    matches!(
        request,
        Request::Room(RoomRequest::ChatLog { follow: true, .. })
    )
}

async fn session(
    node: Node,
    stream: UnixStream,
    stopping: CancellationToken,
) -> Result<(), std::io::Error> {
    let (mut rd, mut wr) = stream.into_split();
    let request: Request = read_frame(&mut rd).await?;
    let endless = endless(&request);
    // Input frames (stdin bytes) flow to the command while it runs.
    let (in_tx, in_rx) = mpsc::channel::<Bytes>(8);
    let reader = tokio::spawn(async move {
        while let Ok(Input(chunk)) = read_frame::<_, Input>(&mut rd).await {
            let end = chunk.is_empty();
            if in_tx.send(Bytes::from(chunk)).await.is_err() || end {
                break;
            }
        }
    });
    let (out_tx, mut out_rx) = mpsc::channel::<Response>(16);
    let worker = tokio::spawn(api::run(api::Ctx::daemon(node), request, in_rx, out_tx));
    loop {
        let (r, last) = tokio::select! {
            r = out_rx.recv() => match r {
                Some(r) => (r, false),
                None => break,
            },
            _ = stopping.cancelled(), if endless => {
                worker.abort();
                (Response::Error(AppError::Stopping.to_string()), true)
            }
        };
        let (frame, last) = match codec::encode_frame(&r) {
            Ok(frame) => (frame, last),
            // An answer too large for a frame ends the command with an
            // error the client shows, not a closed socket.
            Err(e) => {
                worker.abort();
                let error = Response::Error(format!("the node could not send its answer: {e}"));
                (
                    codec::encode_frame(&error).map_err(std::io::Error::other)?,
                    true,
                )
            }
        };
        if wr.write_all(&frame).await.is_err() {
            // The client went away: stop the command.
            worker.abort();
            break;
        }
        if last {
            break;
        }
    }
    reader.abort();
    Ok(())
}

/// Reads one frame.
pub(super) async fn read_frame<R: AsyncReadExt + Unpin, T: serde::de::DeserializeOwned>(
    r: &mut R,
) -> Result<T, std::io::Error> {
    let mut header = [0u8; codec::FRAME_HEADER_SIZE];
    r.read_exact(&mut header).await?;
    let len = codec::frame_len(header).map_err(std::io::Error::other)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    codec::decode(&body).map_err(std::io::Error::other)
}
