//! Rooms: groups of members sharing a file tree and a chat, with no server.
//!
//! - `entry`: signing and verifying log entries.
//! - `log`: the room's log in the store; accepting entries after their
//!   parents; this node's own entries.
//! - `view`: the file tree and the chat, derived from the log.
//! - `listing`: a room's listing kept up to date path by path (the
//!   mount's), at the cost of the paths that changed.
//! - `render`: chat text and names made safe to show, names that could
//!   pass for another member's qualified with the short id.
//! - `order`: one canonical order of the entries, the same on every member.
//! - `transcript`: the chat as `p2pfs chat` prints it, in that order.
//! - `session`: one session's protocol rules, a state machine without I/O.
//! - `sync`: the room protocol between two members (proof of membership
//!   bound to the connection), driving `session`: reconciliation and live
//!   pushes.
//! - `overlay`: who the members are, where to reach them, the live
//!   sessions and the mesh; owned by the room's runtime task, read by
//!   everything else from the snapshot it publishes.
//! - `runtime`: per room, the task that owns the overlay: finding members
//!   (ticket, learned addresses, the DHT under the room's key) and
//!   keeping sessions with them.
//! - `query`: reading rooms from the store, with or without a node.
//! - `mesh`: whom to keep sessions with in a big room, and who is online
//!   (a state machine without I/O; `sim` runs it on a virtual clock).
//!
//! A running room:
//! - `registry`: every room of the node, by id;
//! - `lifecycle`: starting, creating, joining, leaving and finding rooms;
//! - `handle`: [`Room`], the shared handle to one room: its log and
//!   overlay tasks' handles, and what pushes entries to the sessions;
//! - `actor`: the task that owns the room's log: every entry in (written
//!   here or received) goes through it, in order;
//! - `members`: where members are, who is online, tickets;
//! - `write`: the one write path (CLI, mount, chat, replicas' statuses);
//! - `fetch`: reading files from the members that hold them;
//! - `handler`: the room protocol's handler (sessions, in `sync`).
//! - `bundle`: a room in one file (export, import), with no network.
//!
//! Privacy: only peers that proved membership get anything of a room, and
//! blobs that are only reachable through a room are served to members only
//! and never announced in the public DHT (`crate::policy`).

mod actor;
pub(crate) mod bundle;
#[cfg(test)]
mod converge;
pub(crate) mod entry;
mod epochs;
mod fetch;
mod handle;
pub(crate) mod handler;
mod lifecycle;
pub mod listing;
pub(crate) mod log;
mod members;
pub(crate) mod mesh;
pub mod moderation;
pub(crate) mod order;
pub(crate) mod overlay;
pub mod query;
pub(crate) mod registry;
pub mod render;
pub(crate) mod runtime;
pub(crate) mod session;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub(crate) mod sync;
pub(crate) mod transcript;
pub(crate) mod view;
pub mod watched;
pub(crate) mod wrap;
mod write;

use p2pfs_proto::{
    Hash, RoomId, RoomSecret,
    room::{Op, valid_display_name},
};

pub use self::{
    bundle::{ExportReport, ImportReport},
    epochs::MemberInfo,
    handle::Room,
    lifecycle::{RoomSummary, bytes_received},
    view::{FileEntry, FileKind},
    write::{Change, TreeLock, new_file_id},
};

/// The pin name under which a room keeps its blobs.
pub fn pin_name(room: &RoomId) -> String {
    format!("room:{room}")
}

/// The host name, the default display name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| valid_display_name(s))
        .unwrap_or_else(|| "p2pfs".into())
}

/// Checks an encoded entry for the room of `secret` (bounds, membership
/// tag, signature) and returns its hash. For tools, fuzzing and figures;
/// the node checks entries the same way.
pub fn verify_entry(
    secret: &RoomSecret,
    bytes: Vec<u8>,
) -> Result<Hash, p2pfs_proto::room::EntryError> {
    entry::verify(secret, &secret.id(), bytes).map(|v| v.hash)
}

/// Signs a chat entry (for tools and figures): `seq` in the author's
/// chain, after `parents`.
pub fn sign_chat(
    key: &crate::identity::SecretKey,
    secret: &RoomSecret,
    seq: u64,
    parents: Vec<Hash>,
    text: &str,
) -> Result<(Hash, Vec<u8>), p2pfs_proto::room::EntryError> {
    let e = entry::sign(
        key,
        secret,
        seq,
        parents,
        log::now_ms(),
        Op::Chat { text: text.into() },
    )?;
    Ok((e.hash, e.bytes))
}
