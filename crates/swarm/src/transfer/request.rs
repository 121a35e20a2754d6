//! One request on one stream: ask a provider for ranges of a blob and
//! write its verified answer into the local partial blob.

use std::{
    io,
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use p2pfs_proto::{
    Hash,
    blobs::{BlobRequest, BlobResponse},
    close::Code,
};
use p2pfs_store::{ChunkRanges, PartialBlob, StoreError, effective_ranges};
use tokio_util::sync::CancellationToken;

use crate::{
    frame::{self, FrameError},
    net::dial::Conn,
    transfer::{bridge, to_chunks, to_spec},
};

/// What a provider answered.
#[derive(Debug)]
pub(crate) enum Answer {
    /// It has nothing of the blob.
    NotFound,
    /// It sent what it had of the request; it has `have`.
    Sent { have: ChunkRanges },
}

/// Why a request failed, and whose fault it was.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GetError {
    /// The provider sent data that failed verification.
    #[error("{0}")]
    BadData(StoreError),
    /// The provider broke the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The stream or connection failed, or the provider was too slow.
    #[error("{0}")]
    Transport(String),
    /// We stopped it.
    #[error("cancelled")]
    Cancelled,
    /// Our own store failed.
    #[error("{0}")]
    Local(StoreError),
    /// Our own worker failed.
    #[error(transparent)]
    Worker(crate::WorkerFailed),
}

/// Whether the ranges a provider announced, `sent`, are part of what was
/// `asked` (§5.3), for a blob of `size` bytes if it is known (while it is
/// not, the store itself accepts only a size proof).
pub(crate) fn within_request(sent: &ChunkRanges, asked: &ChunkRanges, size: Option<u64>) -> bool {
    size.is_none_or(|size| {
        (&effective_ranges(sent, size) - &effective_ranges(asked, size)).is_empty()
    })
}

/// Sends `Get { hash, ranges }` on a new stream of `conn` and ingests the
/// answer into `partial`. `received` counts the bytes as they arrive.
pub(crate) async fn get(
    conn: &Conn,
    hash: Hash,
    ranges: &ChunkRanges,
    partial: PartialBlob,
    received: Arc<AtomicU64>,
    cancel: CancellationToken,
    stall: Duration,
) -> Result<Answer, GetError> {
    let transport = |e: &dyn std::fmt::Display| GetError::Transport(e.to_string());
    let (mut send, mut recv) = conn.conn.open_bi().await.map_err(|e| transport(&e))?;
    let request = BlobRequest::Get {
        hash,
        ranges: to_spec(ranges),
    };
    frame::write(&mut send, &request)
        .await
        .map_err(|e| transport(&e))?;
    let _ = send.finish();
    let response = tokio::select! {
        _ = cancel.cancelled() => return Err(GetError::Cancelled),
        r = tokio::time::timeout(stall, frame::read::<BlobResponse>(&mut recv)) => r,
    };
    let response = match response {
        Err(_) => {
            // Not even a header: the connection is dead (a peer that
            // restarted, or froze). Closed, so the next request dials anew
            // rather than wait on it until its idle timeout.
            let _ = recv.stop(Code::Timeout.value().into());
            conn.close_with(Code::Timeout);
            return Err(GetError::Transport(format!("no answer within {stall:?}")));
        }
        Ok(Err(FrameError::Codec(e))) => return Err(GetError::Protocol(e.to_string())),
        Ok(Err(FrameError::Read(e))) => return Err(transport(&e)),
        Ok(Ok(r)) => r,
    };
    let (have, sent) = match response {
        BlobResponse::NotFound => return Ok(Answer::NotFound),
        BlobResponse::Data { have, ranges } => (to_chunks(&have), to_chunks(&ranges)),
    };
    // A provider sends what was asked and has, nothing more (§5.3). While
    // the size is unknown the store itself accepts only a size proof.
    if !within_request(&sent, ranges, partial.size()) {
        let _ = recv.stop(Code::Protocol.value().into());
        return Err(GetError::Protocol(format!(
            "the provider announced ranges {sent:?}, not part of the request"
        )));
    }
    let (mut feed, reader) = bridge::reader(received);
    let ranges = sent.clone();
    let ingest = crate::off_thread(move || partial.ingest(&ranges, reader));
    let mut cancelled = false;
    // A stall is noticed by a once-a-second check rather than a timer per
    // read: reads come a packet at a time.
    let mut watchdog = tokio::time::interval(Duration::from_secs(1));
    let mut last_progress = tokio::time::Instant::now();
    let mut chunks: [bytes::Bytes; 32] = Default::default();
    loop {
        let read = tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                cancelled = true;
                let _ = recv.stop(Code::Ok.value().into());
                feed.fail(io::Error::new(io::ErrorKind::Interrupted, "cancelled")).await;
                break;
            }
            r = recv.read_chunks(&mut chunks) => r,
            _ = watchdog.tick() => {
                if last_progress.elapsed() < stall {
                    continue;
                }
                let _ = recv.stop(Code::Timeout.value().into());
                feed.fail(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no data for {stall:?}"),
                ))
                .await;
                break;
            }
        };
        match read {
            Ok(Some(n)) => {
                last_progress = tokio::time::Instant::now();
                let mut open = true;
                for c in chunks.iter_mut().take(n) {
                    open &= feed.push(std::mem::take(c)).await;
                }
                if !open {
                    // The store stopped reading: it has what it needs, or
                    // found bad data.
                    let _ = recv.stop(Code::Ok.value().into());
                    break;
                }
            }
            Ok(None) => {
                feed.flush().await;
                break;
            }
            Err(e) => {
                feed.fail(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    e.to_string(),
                ))
                .await;
                break;
            }
        }
    }
    drop(feed);
    let result = ingest.await.map_err(GetError::Worker)?;
    match result {
        Ok(_) => Ok(Answer::Sent { have }),
        Err(_) if cancelled => Err(GetError::Cancelled),
        Err(e @ StoreError::Verification { .. }) => Err(GetError::BadData(e)),
        Err(e @ StoreError::Stream { .. }) => Err(GetError::Transport(e.to_string())),
        Err(e @ StoreError::Invalid(_)) => Err(GetError::Protocol(e.to_string())),
        Err(e) => Err(GetError::Local(e)),
    }
}
