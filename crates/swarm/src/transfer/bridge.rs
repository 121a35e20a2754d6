//! Byte channels between async QUIC streams and the store, whose encoder
//! and decoder are blocking `Write`/`Read` users running on blocking
//! threads. The channels are bounded, so a transfer holds at most a few
//! hundred KiB in flight, and either side ending unblocks the other.

use std::{
    io::{self, Read, Write},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

/// Chunks buffered between the two sides.
const DEPTH: usize = 4;
/// Bytes per chunk handed to QUIC.
const CHUNK: usize = 256 * 1024;

/// The blocking end of a download: reads what the async side received.
pub(crate) struct ChannelReader {
    rx: mpsc::Receiver<Result<Bytes, io::Error>>,
    cur: Bytes,
}

/// The async end of a download: pushes received chunks to the reader.
pub(crate) struct ChannelFeed {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    /// Bytes received so far, for progress and stall detection.
    pub(crate) received: Arc<AtomicU64>,
}

/// A byte channel whose feed counts into `received`.
pub(crate) fn reader(received: Arc<AtomicU64>) -> (ChannelFeed, ChannelReader) {
    let (tx, rx) = mpsc::channel(DEPTH);
    (
        ChannelFeed { tx, received },
        ChannelReader {
            rx,
            cur: Bytes::new(),
        },
    )
}

impl ChannelFeed {
    /// Hands a chunk to the reader; false if the reader is gone.
    pub(crate) async fn push(&self, chunk: Bytes) -> bool {
        self.received.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        self.tx.send(Ok(chunk)).await.is_ok()
    }

    /// Makes the reader fail with `e`.
    pub(crate) async fn fail(&self, e: io::Error) {
        let _ = self.tx.send(Err(e)).await;
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur.split_to(n));
        Ok(n)
    }
}

/// The blocking end of an upload: what the encoder writes goes to the
/// async side in chunks.
pub(crate) struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    buf: BytesMut,
}

pub(crate) fn writer() -> (ChannelWriter, mpsc::Receiver<Bytes>) {
    let (tx, rx) = mpsc::channel(DEPTH);
    (
        ChannelWriter {
            tx,
            buf: BytesMut::with_capacity(CHUNK),
        },
        rx,
    )
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.buf.reserve(CHUNK);
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the peer stream closed"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        // Callers flush; this only rescues a forgotten tail, without
        // blocking (a drop may happen on an async thread).
        if !self.buf.is_empty() {
            let _ = self.tx.try_send(self.buf.split().freeze());
        }
    }
}
