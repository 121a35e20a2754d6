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
    /// The node could not be set up, or a command needs what is missing.
    #[error(transparent)]
    Setup(#[from] SetupError),
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
    /// No relay could reach a peer.
    #[error("no relay could reach {peer}: {reason}")]
    NoRelay {
        /// The peer.
        peer: NodeId,
        /// Why, in a sentence.
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
    #[error(transparent)]
    Room(#[from] RoomError),
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

/// What setting the node up can fail with (a platform without what it
/// needs, a configuration TLS or QUIC refuse).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The system's random generator failed.
    #[error("the system random generator failed")]
    Random,
    /// A key file's seed is not an Ed25519 seed.
    #[error("invalid Ed25519 seed")]
    BadSeed,
    /// The node's certificate could not be made.
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// TLS refused the node's configuration.
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    /// QUIC refused the node's configuration.
    #[error("QUIC setup: {0}")]
    Quic(String),
    /// No async runtime to run QUIC on.
    #[error("no async runtime for QUIC")]
    NoRuntime,
    /// A connection without the TLS exporter (a room needs it).
    #[error("the TLS exporter is unavailable")]
    Exporter,
    /// `P2PFS_LINK_DELAY` in a build without the test hooks.
    #[error("an emulated link delay needs a build with the test-hooks feature")]
    NoLinkDelay,
    /// Nothing to dial.
    #[error("no address to dial for {0}")]
    NoAddress(String),
    /// A protocol this node does not speak.
    #[error("unknown protocol")]
    UnknownProtocol,
}

/// Why a room operation was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RoomError {
    /// No room of this node has that name (or id prefix).
    #[error("no room named {0:?} (see `p2pfs room list`)")]
    NoSuchRoom(String),
    /// Not usable as a room name.
    #[error("{0:?} cannot be a room name (1 to 64 bytes, no `/`, not `.` or `..`)")]
    BadName(String),
    /// Another room of this node has that name.
    #[error("there is already a room named {0:?} (choose another with --name)")]
    NameTaken(String),
    /// This node is in that room already, under this name.
    #[error("this node is already in that room, as {0:?}")]
    AlreadyIn(String),
    /// A ticket that does not read.
    #[error(transparent)]
    Ticket(#[from] p2pfs_proto::room::RoomTicketError),
    /// A path a room cannot hold, and why.
    #[error("{0}")]
    BadPath(String),
    /// A chat line over the limit.
    #[error("a chat line is at most {} bytes", p2pfs_proto::room::MAX_TEXT)]
    LineTooLong,
    /// No member of the room matches.
    #[error("no member of the room is {0:?} (see `p2pfs room members`)")]
    NoSuchMember(String),
    /// Several members match.
    #[error("{0:?} names several members ({1}): give more of the node id")]
    AmbiguousMember(String, String),
    /// Not allowed by the room's roles, and why.
    #[error("{0}")]
    NotAllowed(String),
    /// This node was removed from the room.
    #[error(
        "this node was removed from room {room:?} by {by} at {when}: it can no longer see new files or messages there, and what it writes is refused"
    )]
    Removed {
        /// The room's local name.
        room: String,
        /// Who removed it (short id).
        by: String,
        /// When.
        when: String,
    },
    /// Nothing to post.
    #[error("nothing to post: the text is empty")]
    NothingToPost,
    /// Not a regular file (to put).
    #[error("{} is not a file", .0.display())]
    NotAFile(std::path::PathBuf),
    /// A file where a directory of the path would be.
    #[error("{0:?} is a file in the room: nothing can be put under it")]
    FileInTheWay(String),
    /// A directory where the file would be.
    #[error("{0:?} is a directory in the room")]
    IsADirectory(String),
    /// No file at that path.
    #[error("no file {0:?} in the room")]
    NoSuchFile(String),
    /// A change that wrote no entry.
    #[error("no entry written")]
    NothingWritten,
    /// A tree change under another room's lock (a bug).
    #[error("a tree change under another room's lock")]
    WrongLock,
    /// A dialed address that is this node.
    #[error("that address is this node")]
    SelfDial,
    /// The node dialed is not in the room.
    #[error("{0} is not a member of this room")]
    NotMember(String),
}
