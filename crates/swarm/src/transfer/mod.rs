//! The blob protocol (ALPN `p2pfs/blobs/1`, docs/protocol.md §5).
//!
//! - `provider`: serves requests on any connection, from the store,
//!   including blobs still downloading (a downloader is a provider).
//! - `request`: one request on one stream, its verified answer written
//!   into a [`PartialBlob`](p2pfs_store::PartialBlob).
//! - `scheduler`: which ranges to ask of which provider, as a state
//!   machine fed with events and the time (no I/O).
//! - `download`: the async driver that runs the scheduler's decisions.
//! - `rate`: the node-wide upload rate limit.
//! - `active`: the downloads running now, for the status page.
//! - `bridge`: byte channels between async QUIC streams and the store's
//!   blocking readers and writers.

pub mod active;
pub mod bridge;
pub mod download;
pub(crate) mod provider;
pub(crate) mod rate;
pub(crate) mod request;
pub mod scheduler;

use p2pfs_proto::RangeSpec;
use p2pfs_store::{ChunkNum, ChunkRanges};

/// Converts wire ranges to the store's.
pub(crate) fn to_chunks(spec: &RangeSpec) -> ChunkRanges {
    let b: Vec<ChunkNum> = spec.boundaries().iter().map(|&x| ChunkNum(x)).collect();
    // A RangeSpec is strictly increasing by construction.
    ChunkRanges::new(b.into()).unwrap_or_else(ChunkRanges::empty)
}

/// Converts the store's ranges to wire ranges.
pub(crate) fn to_spec(ranges: &ChunkRanges) -> RangeSpec {
    RangeSpec::new(ranges.boundaries().iter().map(|c| c.0).collect()).unwrap_or_default()
}
