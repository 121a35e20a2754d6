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
use p2pfs_proto::Hash;
use p2pfs_store::{BlobInfo, GcReport};
use serde::{Deserialize, Serialize};
pub(crate) use server::serve;

use p2pfs_swarm::{FetchProgress, FetchStats, PeerInfo};

use crate::params::{
    Blobs, CreateRoom, ExportRoom, FetchBlob, ImportRoom, JoinRoom, PutFile, RoomFile, RoomMember,
    RoomRef, SetCopies, VerifyBlobs,
};

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
///
/// A variant that holds a struct of [`crate::params`] carries the
/// command's parameters as clap read them (made absolute or checked by
/// the client where said there). The others genuinely differ from their
/// command line: `add` sends the files it found and standard input's bytes,
/// `cat` asks for one blob at a time (the client reads the store itself
/// when it runs the command in process), and the rest have no command of
/// their own (`share` asks for a `Ticket`, `umount` follows a `Leave`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Import files; answers one `Added` or `ItemFailed` per item, in order.
    Add {
        /// What to add.
        items: Vec<AddItem>,
        /// Pin under the user pin.
        pin: bool,
    },
    /// Write a blob to a bundle file: one `Added`.
    Export {
        /// The blob.
        hash: Hash,
        /// The file (absolute).
        path: std::path::PathBuf,
    },
    /// Take in a bundle file: one `Added` per blob.
    Import {
        /// The file (absolute).
        path: std::path::PathBuf,
    },
    /// Stream a blob's bytes as `Data`.
    Cat {
        /// The blob.
        hash: Hash,
    },
    /// List blobs: one `Blobs`.
    List,
    /// Pin: one `Pinned` per hash.
    Pin(Blobs),
    /// Unpin: one `Unpinned` per hash.
    Unpin(Blobs),
    /// Collect garbage: one `Gc`.
    Gc,
    /// Verify: one `Verified` per blob (all if none given).
    Verify(VerifyBlobs),
    /// Node status: one `Status`.
    Status,
    /// Download into the store: `Progress` now and then, one `Fetched`.
    Fetch(FetchBlob),
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

/// A room command. As for [`Request`], the variants holding a struct of
/// [`crate::params`] carry the command line's parameters; the chat's two
/// requests differ from `p2pfs chat` (which posts, prints, or both, and
/// reads `-` from standard input itself).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum RoomRequest {
    /// Create a room: one `Ticket`.
    Create(CreateRoom),
    /// Join with a ticket (checked by the client): one `Joined`.
    Join(JoinRoom),
    /// The rooms: one `Rooms`.
    List,
    /// A ticket for a room: one `Ticket`.
    Ticket(RoomRef),
    /// Leave a room.
    Leave(RoomRef),
    /// Publish a file, by absolute path, under the name the client chose:
    /// one `Added`.
    Put(PutFile),
    /// Read a file: `Data`.
    Get(RoomFile),
    /// Remove a file.
    Rm(RoomFile),
    /// The file tree: one `Files`.
    Ls(RoomRef),
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
    Set(SetCopies),
    /// Copies of each file: one `RoomStatus`.
    Status(RoomRef),
    /// Keep a file here whatever the placement: one `Added` naming it.
    Pin(RoomFile),
    /// Stop keeping a pinned file here: one `Added` naming it.
    Unpin(RoomFile),
    /// The members: one `Members`.
    Members(RoomRef),
    /// Give a member a role: one `Done`.
    SetRole {
        /// The member.
        member: RoomMember,
        /// Moderator (promote) or member (demote).
        moderator: bool,
    },
    /// Remove a member: one `Removed`.
    Remove(RoomMember),
    /// Write a room's export file: one `RoomExported`.
    Export(ExportRoom),
    /// Merge an export file: one `RoomImported`.
    Import(ImportRoom),
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
    /// How peers outside reach this node.
    pub(crate) reach: p2pfs_swarm::Reach,
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
    /// The blob list (one or more, in order).
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
    /// A room's tree (one or more, in order).
    Files(Vec<p2pfs_swarm::room::FileEntry>),
    /// Chat lines, each with its newline.
    ChatLines(Vec<String>),
    /// A room's replication status (its files in this and the
    /// `RoomFiles` that follow).
    RoomStatus(p2pfs_swarm::replica::RoomStatus),
    /// More files of the `RoomStatus` before.
    RoomFiles(Vec<p2pfs_swarm::replica::FileCopies>),
    /// A room's members.
    Members(Vec<p2pfs_swarm::room::MemberInfo>),
    /// A member removed: its id and name.
    Removed(p2pfs_proto::NodeId, Option<String>),
    /// What a room export wrote.
    RoomExported(p2pfs_swarm::room::ExportReport),
    /// What a room import did.
    RoomImported(p2pfs_swarm::room::ImportReport),
    /// How leaving goes.
    Leaving(p2pfs_swarm::replica::LeaveProgress),
    /// A warning for the user; the command goes on.
    Warning(String),
    /// The command failed as a whole.
    Error(String),
    /// The command is complete.
    Done,
}
