//! The local control socket: how CLI commands reach a running node.
//!
//! A node started by `p2pfs daemon` (or `p2pfs mount`) listens on the Unix
//! socket `control.sock` in its data directory (mode 0600). A client sends
//! one [`Request`] frame, then, for an add from standard input, [`Input`]
//! frames; the node answers with [`Response`] frames ending with
//! [`Response::Done`] or [`Response::Error`]. Frames are the codec's
//! (length-prefixed postcard). This protocol is local and unversioned: the
//! CLI and the node are the same binary.
//!
//! Commands are carried out by [`crate::api`], the same code that runs them
//! in-process when no node is running.

mod client;
mod server;

use std::path::PathBuf;

pub(crate) use client::Client;
use p2pfs_proto::{Hash, NodeAddr, PeerAddr};
use p2pfs_store::{BlobInfo, GcReport};
use serde::{Deserialize, Serialize};
pub(crate) use server::serve;

use p2pfs_swarm::{FetchProgress, FetchStats, PeerInfo};

/// The socket's file name in the data directory.
pub(crate) const SOCKET: &str = "control.sock";

/// Something to add.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum AddItem {
    /// A file, by absolute path.
    Path(PathBuf),
    /// Bytes that follow as [`Input`] frames.
    Stdin,
}

/// A command for the node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Import files; answers one `Added` or `ItemFailed` per item, in order.
    Add {
        /// What to add.
        items: Vec<AddItem>,
        /// Pin under the user pin.
        pin: bool,
    },
    /// Stream a blob's bytes as `Data`.
    Cat {
        /// The blob.
        hash: Hash,
    },
    /// List blobs: one `Blobs`.
    List,
    /// Pin: one `Pinned` per hash.
    Pin {
        /// The blobs.
        hashes: Vec<Hash>,
    },
    /// Unpin: one `Unpinned` per hash.
    Unpin {
        /// The blobs.
        hashes: Vec<Hash>,
    },
    /// Collect garbage: one `Gc`.
    Gc,
    /// Verify: one `Verified` per blob (all if empty).
    Verify {
        /// The blobs.
        hashes: Vec<Hash>,
    },
    /// Node status: one `Status`.
    Status,
    /// Download into the store: `Progress` now and then, one `Fetched`.
    Fetch {
        /// The blob.
        hash: Hash,
        /// Providers from a ticket.
        providers: Vec<NodeAddr>,
        /// Providers from `--peer`.
        peers: Vec<PeerAddr>,
        /// Pin the blob under the user pin.
        pin: bool,
    },
    /// A room command.
    Room(RoomRequest),
    /// A ticket for a blob: one `Ticket`.
    Ticket {
        /// The blob.
        hash: Hash,
        /// A file name to suggest.
        name: Option<String>,
    },
    /// Start leaving (or follow the leave under way): `Leaving` as it
    /// goes, the last one `done`.
    Leave,
}

/// A room command.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum RoomRequest {
    /// Create a room: one `Ticket`.
    Create {
        /// Its name.
        name: String,
    },
    /// Join with a ticket: one `Joined`.
    Join {
        /// The ticket.
        ticket: String,
        /// The local name (default: the ticket's).
        name: Option<String>,
    },
    /// The rooms: one `Rooms`.
    List,
    /// A ticket for a room: one `Ticket`.
    Ticket {
        /// The room.
        room: String,
    },
    /// Leave a room.
    Leave {
        /// The room.
        room: String,
    },
    /// Publish a file: one `Added`.
    Put {
        /// The room.
        room: String,
        /// The file, by absolute path.
        file: PathBuf,
        /// Its path in the room.
        path: String,
    },
    /// Read a file: `Data`.
    Get {
        /// The room.
        room: String,
        /// Its path in the room.
        path: String,
    },
    /// Remove a file.
    Rm {
        /// The room.
        room: String,
        /// Its path in the room.
        path: String,
    },
    /// The file tree: one `Files`.
    Ls {
        /// The room.
        room: String,
    },
    /// Post chat lines.
    Chat {
        /// The room.
        room: String,
        /// The text (one message per line).
        text: String,
    },
    /// The chat: `ChatLines`, then more as they arrive with `follow`.
    ChatLog {
        /// The room.
        room: String,
        /// Keep sending new lines.
        follow: bool,
    },
    /// Set the replication policy.
    SetCopies {
        /// The room.
        room: String,
        /// The policy.
        copies: p2pfs_proto::room::Copies,
    },
    /// Copies of each file: one `RoomStatus`.
    Status {
        /// The room.
        room: String,
    },
    /// Keep a file here whatever the placement (`keep`), or stop: one
    /// `Added` naming it.
    Pin {
        /// The room.
        room: String,
        /// Its path in the room.
        path: String,
        /// Keep it, or stop keeping it.
        keep: bool,
    },
}

/// Bytes of an [`AddItem::Stdin`]; an empty chunk ends them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Input(pub(crate) Vec<u8>);

/// The node's status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Status {
    /// The node id.
    pub(crate) node: p2pfs_proto::NodeId,
    /// Addresses it can be reached at.
    pub(crate) addrs: Vec<std::net::SocketAddr>,
    /// Peers with a live connection.
    pub(crate) peers: Vec<PeerInfo>,
    /// Blobs in the store.
    pub(crate) blobs: usize,
    /// Of which complete.
    pub(crate) complete: usize,
    /// Bytes present in the store.
    pub(crate) bytes: u64,
    /// Whether this node runs as a daemon (false: started for this command).
    pub(crate) daemon: bool,
    /// The DHT: routing table size, records held.
    pub(crate) dht: p2pfs_swarm::dht::DhtStatus,
    /// Peers banned for sending bad data.
    #[serde(default)]
    pub(crate) banned: Vec<p2pfs_swarm::ban::BannedPeer>,
}

/// An answer (or part of one).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Response {
    /// Item `index` of an add was imported.
    Added {
        /// Its position in the request.
        index: u32,
        /// Its hash.
        hash: Hash,
        /// Its size.
        size: u64,
    },
    /// Item `index` of a multi-item command failed; the others go on.
    ItemFailed {
        /// Its position in the request.
        index: u32,
        /// Why.
        message: String,
    },
    /// Blob bytes.
    Data(Vec<u8>),
    /// The blob list.
    Blobs(Vec<BlobInfo>),
    /// A pin result.
    Pinned {
        /// The blob.
        hash: Hash,
        /// Whether it is in the store.
        present: bool,
    },
    /// An unpin result.
    Unpinned {
        /// The blob.
        hash: Hash,
        /// Whether the pin existed.
        existed: bool,
    },
    /// What GC removed.
    Gc(GcReport),
    /// A verification result.
    Verified {
        /// The blob.
        hash: Hash,
        /// Why it failed, if it did.
        error: Option<String>,
    },
    /// The node's status.
    Status(Status),
    /// Download progress.
    Progress(FetchProgress),
    /// A finished download.
    Fetched(FetchStats),
    /// A ticket.
    Ticket(String),
    /// The local name of a joined room.
    Joined(String),
    /// The rooms.
    Rooms(Vec<p2pfs_swarm::room::RoomSummary>),
    /// A room's tree.
    Files(Vec<p2pfs_swarm::room::FileEntry>),
    /// Chat lines, each with its newline.
    ChatLines(Vec<String>),
    /// A room's replication status.
    RoomStatus(p2pfs_swarm::replica::RoomStatus),
    /// How leaving goes.
    Leaving(p2pfs_swarm::replica::LeaveProgress),
    /// A warning for the user; the command goes on.
    Warning(String),
    /// The command failed as a whole.
    Error(String),
    /// The command is complete.
    Done,
}
