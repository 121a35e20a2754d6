//! The node side of the control socket.

use std::{os::unix::fs::PermissionsExt, path::Path};

use bytes::Bytes;
use p2pfs_proto::codec;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{UnixListener, UnixStream},
    sync::mpsc,
};
use tokio_util::sync::CancellationToken;

use super::{Input, Request, Response};
use crate::{Node, SwarmError, api};

/// Listens on `path` and serves commands for `node` until `cancel`.
///
/// Fails if another live node answers on that socket; a stale socket left
/// by a crash is replaced.
pub async fn serve(node: Node, path: &Path, cancel: CancellationToken) -> Result<(), SwarmError> {
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(SwarmError::Setup(format!(
                "another p2pfs node is running with this data directory ({} answers)",
                path.display()
            )));
        }
        std::fs::remove_file(path)
            .map_err(|e| SwarmError::io(format!("removing stale {}", path.display()), e))?;
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| SwarmError::io(format!("listening on {}", path.display()), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| SwarmError::io(format!("securing {}", path.display()), e))?;
    let tasks = tokio_util::task::TaskTracker::new();
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => break,
            s = listener.accept() => s,
        };
        match stream {
            Ok((stream, _)) => {
                let node = node.clone();
                tasks.spawn(async move {
                    if let Err(e) = session(node, stream).await {
                        tracing::debug!("control session ended: {e}");
                    }
                });
            }
            Err(e) => tracing::warn!("control socket: {e}"),
        }
    }
    drop(listener);
    let _ = std::fs::remove_file(path);
    tasks.close();
    tasks.wait().await;
    Ok(())
}

async fn session(node: Node, stream: UnixStream) -> Result<(), std::io::Error> {
    let (mut rd, mut wr) = stream.into_split();
    let request: Request = read_frame(&mut rd).await?;
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
    while let Some(r) = out_rx.recv().await {
        let frame = codec::encode_frame(&r).map_err(std::io::Error::other)?;
        if wr.write_all(&frame).await.is_err() {
            // The client went away: stop the command.
            worker.abort();
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
