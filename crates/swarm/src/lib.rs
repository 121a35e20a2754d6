//! The network layer of p2pfs: QUIC nodes with Ed25519 identities and
//! verified blob transfer from many providers at once.
//!
//! - [`identity`]: the node's key, its [`NodeId`](p2pfs_proto::NodeId).
//! - [`tls`]: TLS 1.3 where the certificate is the identity.
//! - [`net`]: the network seam (`Net`): the QUIC endpoint, the connection
//!   table (one connection per peer and protocol), admission limits, bans,
//!   dialing. It knows no protocol.
//! - `router`: the protocol handlers by ALPN; `Net` hands every
//!   connection, in either direction, to its protocol's handler.
//! - `policy`: the room privacy rule the blob and DHT handlers ask.
//! - [`transfer`]: the blob protocol's handler: serving ranges
//!   (`provider`), asking for them (`request`), and downloading a blob
//!   from many providers (`scheduler`, a state machine without I/O,
//!   driven by `download`).
//! - [`dht`]: the Kademlia DHT's handler, lookups and records.
//! - [`room`]: rooms: the signed log, its views, the mesh, sync between
//!   members (the room protocol's handler).
//! - [`replica`]: keeping each room file on enough members, with no
//!   coordinator.
//! - `config`: how a node is configured.
//! - [`Node`]: builds the node from these parts and is their facade;
//!   cheap to clone, shut down explicitly, in order.
//!
//! The commands the CLI runs against a node (and the control socket that
//! carries them to a running one) are the binary's, in `crates/cli`.

mod config;
pub mod dht;
mod error;
mod frame;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod identity;
pub mod mainline;
pub mod net;
mod node;
mod policy;
pub mod relay;
pub mod replica;
pub mod room;
mod router;
pub mod tls;
pub mod transfer;

use std::sync::{Mutex, MutexGuard};

pub use config::{Congestion, Limits, NodeConfig};
pub use error::{RoomError, SetupError, SwarmError};
pub use net::{NatKind, Reach, ban, dial::Target, link};
pub use node::{Node, PathKind, PeerInfo};
pub use p2pfs_store as store;
pub use relay::RelayMode;
pub use transfer::download::{FetchProgress, FetchStats};

/// A blocking worker that did not finish: it panicked, or the runtime is
/// stopping.
#[derive(Debug, Clone, thiserror::Error)]
#[error("a blocking worker failed: {0}")]
pub struct WorkerFailed(String);

/// The one door from async code to blocking work (the store, the FUSE
/// device, a terminal): `f` starts on tokio's blocking pool at once, and
/// the future gives its result. A worker that fails is logged here and
/// reported as [`WorkerFailed`], the same way for every caller.
pub fn off_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> impl std::future::Future<Output = Result<T, WorkerFailed>> + Send {
    let task = tokio::task::spawn_blocking(f);
    async move {
        task.await.map_err(|e| {
            tracing::error!("blocking worker failed: {e}");
            WorkerFailed(e.to_string())
        })
    }
}

/// Store work through [`off_thread`], its errors as the node's.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, p2pfs_store::StoreError> + Send + 'static,
) -> Result<T, SwarmError> {
    Ok(off_thread(f).await??)
}

/// Locks a mutex, recovering from poisoning (every critical section leaves
/// its data consistent).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
