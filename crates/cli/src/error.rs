//! The app layer's error type: what a command carried out for the CLI
//! (over the control socket or in process) can fail with.

use std::{io, path::PathBuf};

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
    /// Another node already serves this data directory.
    #[error("another p2pfs node is running with this data directory ({} answers)", .0.display())]
    AlreadyRunning(PathBuf),
    /// The client of the command went away (or the node is stopping).
    #[error("the command's client went away")]
    ClientGone,
    /// Local I/O (the control socket) failed.
    #[error("{context}: {source}")]
    Io {
        /// What the node was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl AppError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
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
