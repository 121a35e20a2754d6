//! The app layer's error type: what a command carried out for the CLI
//! (over the control socket or in process) can fail with.

use std::{io, path::PathBuf};

use p2pfs_proto::Hash;
use p2pfs_store::StoreError;
use p2pfs_swarm::{RoomError, SwarmError, WorkerFailed};

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum AppError {
    /// The network layer refused or failed.
    #[error(transparent)]
    Swarm(#[from] SwarmError),
    /// The content store refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A blocking worker failed.
    #[error(transparent)]
    Worker(#[from] WorkerFailed),
    /// A room operation was refused.
    #[error(transparent)]
    Room(#[from] RoomError),
    /// Not a hash nor a ticket.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// A command that needs a running node, without one.
    #[error("this command needs a running node")]
    NeedsNode,
    /// `room put` of a path without a file name, and no name given.
    #[error("{} has no file name; give one", .0.display())]
    NoFileName(PathBuf),
    /// An add named standard input twice.
    #[error("standard input can be added once")]
    StdinTwice,
    /// Reading a blob from the store to send it failed.
    // The words are the ones users have seen (a store error said it so).
    #[error("invalid request: reading {hash}: {source}")]
    ReadBlob {
        /// The blob.
        hash: Hash,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Another node already serves this data directory.
    #[error("another p2pfs node is running with this data directory ({} answers)", .0.display())]
    AlreadyRunning(PathBuf),
    /// The client of the command went away (or the node is stopping).
    #[error("the command's client went away")]
    ClientGone,
    /// The node stopped a command that runs until its client goes away.
    #[error("the node is stopping")]
    Stopping,
    /// Setting up the control socket failed.
    #[error("{step} {}: {source}", path.display())]
    Socket {
        /// What the node was doing.
        step: SocketStep,
        /// The socket's path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// A step of setting up the control socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum SocketStep {
    /// Removing the socket a crashed node left.
    RemoveStale,
    /// Binding it.
    Listen,
    /// Making it private (mode 0600).
    Secure,
}

impl std::fmt::Display for SocketStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::RemoveStale => "removing stale",
            Self::Listen => "listening on",
            Self::Secure => "securing",
        })
    }
}

impl SocketStep {
    /// The error of this step on `path`.
    pub(crate) fn failed(self, path: &std::path::Path, source: io::Error) -> AppError {
        AppError::Socket {
            step: self,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A fetch target that is neither a hash nor a ticket.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum TargetError {
    /// Neither form.
    #[error("{0:?} is neither a hash (64 hexadecimal characters) nor a ticket")]
    Neither(String),
    /// A ticket that does not read.
    #[error(transparent)]
    Ticket(#[from] p2pfs_proto::ticket::TicketError),
}

/// Store work on the blocking pool ([`p2pfs_swarm::off_thread`]), its
/// errors as the app's.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, AppError> {
    Ok(p2pfs_swarm::off_thread(f).await??)
}
