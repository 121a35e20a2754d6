//! Serving the blob protocol on a connection (either direction): one
//! request per stream, answered from the store within the node's limits.
//!
//! Limits: the stream count per connection is capped by QUIC; a request
//! must arrive within `request_timeout`; uploads take a permit from a
//! node-wide and a per-peer semaphore (so one peer cannot occupy them all);
//! a write that makes no progress for `stall_timeout` ends the stream;
//! uploads share the node's rate limit, if it has one. A
//! malformed or oversized request closes the connection with a protocol
//! error; the node goes on serving everyone else.

use std::{sync::Arc, time::Duration};

use p2pfs_proto::{
    Hash, RangeSpec,
    blobs::{BlobRequest, BlobResponse},
    close::Code,
};
use p2pfs_store::{ChunkRanges, StoreError, effective_ranges};
use tokio::sync::Semaphore;

use crate::{
    frame::{self, FrameError},
    net::{Net, dial::Conn},
    policy::Privacy,
    router::{ProtocolHandler, Serving},
    transfer::{rate::RateLimit, to_chunks, to_spec},
};

/// The blob protocol's handler and what downloads use: the network, the
/// store, the privacy rule, and the upload slots and rate shared by every
/// peer. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Blobs {
    pub(crate) net: Net,
    pub(crate) store: p2pfs_store::Store,
    pub(crate) privacy: Privacy,
    /// Uploads running at once, in all.
    uploads: Arc<Semaphore>,
    /// The node-wide upload rate, if limited.
    upload_rate: Option<Arc<RateLimit>>,
    /// The downloads running now.
    pub(crate) active: super::active::Active,
}

impl Blobs {
    pub(crate) fn new(net: Net, store: p2pfs_store::Store, privacy: Privacy) -> Self {
        let limits = net.limits();
        Self {
            uploads: Arc::new(Semaphore::new(limits.max_uploads)),
            upload_rate: limits.max_upload_rate.map(|r| Arc::new(RateLimit::new(r))),
            net,
            store,
            privacy,
            active: Default::default(),
        }
    }
}

impl ProtocolHandler for Blobs {
    fn serve(&self, conn: Conn) -> Serving {
        Box::pin(serve(self.clone(), conn))
    }
}

/// Serves requests on `conn` until it closes or the node stops.
async fn serve(blobs: Blobs, conn: Conn) {
    let per_peer = Arc::new(Semaphore::new(blobs.net.limits().max_uploads_per_peer));
    while let Some((send, recv)) = blobs.net.next_stream(&conn).await {
        let (b, conn2, per_peer) = (blobs.clone(), conn.clone(), per_peer.clone());
        blobs
            .net
            .spawn(async move { handle(b, conn2, per_peer, send, recv).await });
    }
}

async fn handle(
    blobs: Blobs,
    conn: Conn,
    per_peer: Arc<Semaphore>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let limits = blobs.net.limits();
    let request = match tokio::time::timeout(limits.request_timeout, frame::read(&mut recv)).await {
        Err(_) => {
            let _ = send.reset(Code::Timeout.value().into());
            return;
        }
        Ok(Err(FrameError::Codec(e))) => {
            tracing::debug!(peer = %conn.peer, "malformed request: {e}");
            conn.conn.close(
                Code::Protocol.value().into(),
                format!("malformed request: {e}").as_bytes(),
            );
            return;
        }
        Ok(Err(FrameError::Read(_))) => return,
        Ok(Ok(r)) => r,
    };
    let _ = recv.stop(Code::Ok.value().into());
    match request {
        BlobRequest::Get { hash, ranges } => {
            // Wait for upload slots: ours for this peer, then the node's.
            let Ok(_peer_permit) = per_peer.acquire_owned().await else {
                return;
            };
            let Ok(_permit) = blobs.uploads.clone().acquire_owned().await else {
                return;
            };
            if let Err(e) = get(&blobs, conn.peer, &mut send, hash, &ranges).await {
                tracing::debug!(peer = %conn.peer, %hash, "upload ended: {e}");
                let _ = send.reset(e.code().value().into());
            }
        }
    }
}

/// Why an upload stopped early.
#[derive(Debug, thiserror::Error)]
enum UploadError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("stream: {0}")]
    Stream(String),
    #[error("the peer read nothing for {0:?}")]
    Stalled(Duration),
    #[error(transparent)]
    Worker(#[from] crate::WorkerFailed),
}

impl UploadError {
    fn code(&self) -> Code {
        match self {
            Self::Store(_) | Self::Worker(_) => Code::Internal,
            Self::Stream(_) => Code::Ok,
            Self::Stalled(_) => Code::Timeout,
        }
    }
}

/// What is sent for a request of `ranges` of a blob of `size` bytes of
/// which the store has `have`: what was asked (as both sides read it,
/// [`effective_ranges`]) and is here.
pub(crate) fn sent_ranges(ranges: &RangeSpec, size: u64, have: &ChunkRanges) -> ChunkRanges {
    effective_ranges(&to_chunks(ranges), size) & have
}

async fn get(
    blobs: &Blobs,
    peer: p2pfs_proto::NodeId,
    send: &mut quinn::SendStream,
    hash: Hash,
    ranges: &RangeSpec,
) -> Result<(), UploadError> {
    let (privacy, store) = (blobs.privacy.clone(), blobs.store.clone());
    // A blob only reachable through a room is, to anyone else, not here.
    let have = crate::off_thread(move || {
        if !privacy.may_serve(&peer, &hash)? {
            return Ok(None);
        }
        store.have(&hash)
    })
    .await??;
    let Some((size, have)) = have else {
        frame::write(send, &BlobResponse::NotFound)
            .await
            .map_err(|e| UploadError::Stream(e.to_string()))?;
        let _ = send.finish();
        return Ok(());
    };
    let sent = sent_ranges(ranges, size, &have);
    let response = BlobResponse::Data {
        have: to_spec(&have),
        ranges: to_spec(&sent),
    };
    frame::write(send, &response)
        .await
        .map_err(|e| UploadError::Stream(e.to_string()))?;
    // The store encodes on a blocking thread; batches of chunks come back
    // here.
    let (tx, mut batches) = tokio::sync::mpsc::channel::<Vec<bytes::Bytes>>(4);
    let store = blobs.store.clone();
    let encode = crate::off_thread(move || {
        store.encode_chunks(&hash, &sent, &mut |b| {
            tx.blocking_send(b).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the peer stream closed")
            })
        })
    });
    let stall = blobs.net.limits().stall_timeout;
    let sent = loop {
        let Some(mut batch) = batches.recv().await else {
            break Ok(());
        };
        if let Some(rate) = &blobs.upload_rate {
            rate.wait(batch.iter().map(|c| c.len()).sum()).await;
        }
        // One timer per batch: a peer that reads nothing for `stall` ends
        // the upload.
        match tokio::time::timeout(stall, send.write_all_chunks(&mut batch)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => break Err(UploadError::Stream(e.to_string())),
            Err(_) => break Err(UploadError::Stalled(stall)),
        }
    };
    if let Err(e) = sent {
        drop(batches);
        let _ = encode.await;
        return Err(e);
    }
    match encode.await? {
        Ok(_) => {}
        Err(e) if e.is_peer_fault() => return Err(UploadError::Stream(e.to_string())),
        Err(e) => return Err(e.into()),
    }
    let _ = send.finish();
    Ok(())
}
