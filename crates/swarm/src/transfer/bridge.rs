//! Byte channels between async QUIC streams and the store, whose encoder
//! and decoder are blocking code running on blocking threads. The channels
//! are bounded, so a transfer holds at most about a MiB in flight, and
//! either side ending unblocks the other. Bytes move as reference-counted
//! chunks, batched so a thread wakes once per batch, not once per packet.

use std::{
    collections::VecDeque,
    io::{self, Read},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::{Buf, Bytes};
use tokio::sync::mpsc;

/// Batches buffered between the two sides.
const DEPTH: usize = 4;
/// Bytes gathered before a batch is handed over.
pub(crate) const BATCH: usize = 256 * 1024;

/// The blocking end of a download: reads what the async side received.
#[derive(Debug)]
pub struct ChannelReader {
    rx: mpsc::Receiver<Result<Vec<Bytes>, io::Error>>,
    cur: VecDeque<Bytes>,
}

/// The async end of a download: gathers received chunks into batches for
/// the reader.
#[derive(Debug)]
pub struct ChannelFeed {
    tx: mpsc::Sender<Result<Vec<Bytes>, io::Error>>,
    batch: Vec<Bytes>,
    batched: usize,
    /// Bytes received so far, for progress and stall detection.
    received: Arc<AtomicU64>,
}

/// A byte channel whose feed counts into `received`.
pub fn reader(received: Arc<AtomicU64>) -> (ChannelFeed, ChannelReader) {
    let (tx, rx) = mpsc::channel(DEPTH);
    (
        ChannelFeed {
            tx,
            batch: Vec::new(),
            batched: 0,
            received,
        },
        ChannelReader {
            rx,
            cur: VecDeque::new(),
        },
    )
}

impl ChannelFeed {
    /// Adds a chunk; hands the batch over when it is large enough. False
    /// if the reader is gone.
    pub async fn push(&mut self, chunk: Bytes) -> bool {
        if chunk.is_empty() {
            return true;
        }
        self.received
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        self.batched += chunk.len();
        self.batch.push(chunk);
        if self.batched >= BATCH {
            return self.flush().await;
        }
        true
    }

    /// Hands over what is gathered.
    pub async fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        self.batched = 0;
        let batch = std::mem::take(&mut self.batch);
        self.tx.send(Ok(batch)).await.is_ok()
    }

    /// Makes the reader fail with `e` (after what was gathered).
    pub async fn fail(&mut self, e: io::Error) {
        self.flush().await;
        let _ = self.tx.send(Err(e)).await;
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.cur.front_mut() {
                Some(c) if c.is_empty() => {
                    self.cur.pop_front();
                }
                Some(c) => {
                    // `advance`, not `split_to`: no reference count to
                    // touch per read.
                    let n = buf.len().min(c.len());
                    buf[..n].copy_from_slice(&c[..n]);
                    c.advance(n);
                    return Ok(n);
                }
                None => match self.rx.blocking_recv() {
                    Some(Ok(batch)) => self.cur.extend(batch),
                    Some(Err(e)) => return Err(e),
                    None => return Ok(0),
                },
            }
        }
    }
}
