//! The network layer's error type.

use std::{io, net::SocketAddr};

use p2pfs_proto::{Hash, NodeId};
use p2pfs_store::StoreError;

/// Everything the network layer can fail with.
#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    /// The content store refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A blocking worker failed ([`crate::off_thread`]).
    #[error(transparent)]
    Worker(#[from] crate::WorkerFailed),
    /// Local I/O (sockets, files) failed.
    #[error("{context}: {source}")]
    Io {
        /// What the node was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The node's identity key could not be loaded or created.
    #[error("node key {path}: {reason}")]
    Identity {
        /// The key file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// TLS or QUIC configuration failed (a bug or an unusable platform).
    #[error("transport setup: {0}")]
    Setup(String),
    /// No connection could be made to a peer.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The address dialed.
        addr: SocketAddr,
        /// Why it failed.
        reason: String,
    },
    /// The peer answered but is not the node we meant to reach.
    #[error("{addr} is node {actual}, not {expected}")]
    WrongNode {
        /// The address dialed.
        addr: SocketAddr,
        /// The node we meant.
        expected: NodeId,
        /// The node that answered.
        actual: NodeId,
    },
    /// A peer broke the protocol.
    #[error("peer {peer}: {reason}")]
    Protocol {
        /// The peer.
        peer: NodeId,
        /// What it did.
        reason: String,
    },
    /// The connection or stream to a peer failed.
    #[error("peer {peer}: {reason}")]
    Peer {
        /// The peer.
        peer: NodeId,
        /// What happened.
        reason: String,
    },
    /// No provider could supply the blob.
    #[error("could not fetch {hash}: {reason}")]
    Unavailable {
        /// The blob.
        hash: Hash,
        /// Why, in a sentence.
        reason: String,
    },
    /// A room operation was refused.
    #[error("{0}")]
    Room(String),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    Shutdown,
}

impl SwarmError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
