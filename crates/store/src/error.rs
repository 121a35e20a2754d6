//! The store's error type: one enum for everything the store can refuse.

use std::{io, path::PathBuf};

use p2pfs_proto::Hash;

/// Everything that can go wrong in the store.
///
/// Local failures (disk, database) are kept apart from a peer's faults
/// ([`StoreError::Verification`], [`StoreError::Stream`]) so the network
/// layer can tell a lying or broken peer from a problem of our own.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store has no entry for this hash.
    #[error("blob {0} is not in the local store")]
    NotFound(Hash),
    /// The blob is known but only partly downloaded.
    #[error("blob {hash} is incomplete: {present} of {size} bytes are present")]
    Incomplete {
        /// The blob.
        hash: Hash,
        /// Bytes present locally.
        present: u64,
        /// Size of the whole blob.
        size: u64,
    },
    /// A read asked for bytes the store does not have (yet).
    #[error("bytes {start}..{end} of blob {hash} are not present locally")]
    NotPresent {
        /// The blob.
        hash: Hash,
        /// First missing byte asked for.
        start: u64,
        /// End of the missing range.
        end: u64,
    },
    /// The device holding the store is full.
    #[error("{context}: no space left on device")]
    NoSpace {
        /// What the store was doing.
        context: String,
    },
    /// Reading or writing the store's files failed.
    #[error("{context}: {source}")]
    Io {
        /// What the store was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Another process has the store open.
    #[error(
        "the store at {} is in use by {}",
        path.display(),
        holder.as_deref().unwrap_or("another p2pfs process")
    )]
    Locked {
        /// The store directory.
        path: PathBuf,
        /// Who has it, as it said when it opened the store.
        holder: Option<String>,
    },
    /// The store was written by a newer version of p2pfs.
    #[error("the store at {} has format version {found}; this p2pfs reads version {supported}", path.display())]
    UnsupportedFormat {
        /// The store directory.
        path: PathBuf,
        /// Version found on disk.
        found: u64,
        /// Version this code writes.
        supported: u64,
    },
    /// The database refused an operation.
    #[error("store database: {0}")]
    Db(#[from] redb::Error),
    /// Stored data contradicts itself or its hash.
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    /// Bytes received from a peer do not match the hash: the peer sent bad
    /// data and nothing of it was stored.
    #[error("data for blob {hash} failed verification: {detail}")]
    Verification {
        /// The blob.
        hash: Hash,
        /// Where the mismatch was found.
        detail: String,
    },
    /// The peer's stream ended early or failed before the data was complete.
    #[error("reading the stream for blob {hash}: {source}")]
    Stream {
        /// The blob.
        hash: Hash,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The caller asked for something the store cannot do.
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl StoreError {
    /// Whether the error means the peer that sent the data misbehaved.
    pub fn is_peer_fault(&self) -> bool {
        matches!(self, Self::Verification { .. } | Self::Stream { .. })
    }
}

/// Adds what the store was doing to an I/O error.
pub(crate) trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, StoreError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|source| io_error(context(), source))
    }
}

/// Classifies an I/O error, singling out a full disk.
pub(crate) fn io_error(context: String, source: io::Error) -> StoreError {
    if source.kind() == io::ErrorKind::StorageFull || source.kind() == io::ErrorKind::QuotaExceeded
    {
        StoreError::NoSpace { context }
    } else {
        StoreError::Io { context, source }
    }
}

/// Converts any of redb's error types into [`StoreError::Db`], recognising a
/// full disk.
pub(crate) trait DbContext<T> {
    fn db(self) -> Result<T, StoreError>;
}

impl<T, E: Into<redb::Error>> DbContext<T> for Result<T, E> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(|e| match e.into() {
            redb::Error::Io(io) => io_error("writing the store database".into(), io),
            other => StoreError::Db(other),
        })
    }
}
