//! Commands' parameters, each defined once: clap reads the struct from the
//! command line ([`crate::args`]), the control socket carries the same
//! struct as the request's payload ([`crate::control::Request`]), and
//! [`crate::api`] carries it out. Options only the client uses (`--json`,
//! `--output`, `--verbose`) stay beside them in `args`.
//!
//! The fields' doc comments are the help `p2pfs … --help` prints: changing
//! one changes the command line's help. A struct's own doc comment is not
//! shown: the doc comment of the command's variant in `args` replaces it.

use std::path::PathBuf;

use clap::Args;
use p2pfs_proto::{BlobTicket, Hash, PeerAddr, room::Copies};
use serde::{Deserialize, Serialize};

use crate::error::{AppError, TargetError};

/// `p2pfs pin` and `p2pfs unpin`: the blobs, at least one. (No doc comment
/// on the field: the commands' help shows none for it.)
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub(crate) struct Blobs {
    #[arg(required = true, value_name = "HASH")]
    pub(crate) hashes: Vec<Hash>,
}

/// `p2pfs verify`: the blobs, all if none.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub(crate) struct VerifyBlobs {
    #[arg(value_name = "HASH")]
    pub(crate) hashes: Vec<Hash>,
}

/// `p2pfs fetch`: what to download and from whom. The client reads the
/// target too, for the ticket's file name.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub(crate) struct FetchBlob {
    /// The blob's hash, or a ticket
    #[arg(value_name = "HASH|TICKET")]
    pub(crate) target: String,
    /// A peer to fetch from: IP:PORT or NODEID@IP:PORT (repeatable)
    /// [default: the providers the DHT finds]
    #[arg(long = "peer", value_name = "ADDR")]
    pub(crate) peers: Vec<PeerAddr>,
    /// Do not pin the downloaded blob
    #[arg(long)]
    pub(crate) no_pin: bool,
}

impl FetchBlob {
    /// The blob's hash, and the ticket if the target is one.
    pub(crate) fn target(&self) -> Result<(Hash, Option<BlobTicket>), TargetError> {
        let s = self.target.as_str();
        if let Ok(h) = s.parse::<Hash>() {
            return Ok((h, None));
        }
        match s.parse::<BlobTicket>() {
            Ok(t) => Ok((t.hash, Some(t))),
            Err(p2pfs_proto::ticket::TicketError::Prefix) => {
                Err(TargetError::Neither(s.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// A room, by name or id (`room ticket`, `leave`, `ls`, `status`).
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub(crate) struct RoomRef {
    /// The room
    pub(crate) room: String,
}

/// `room create`.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub(crate) struct CreateRoom {
    /// The room's name
    pub(crate) name: String,
}

/// `room join`. The client checks the ticket before sending it, so a
/// mistyped one starts nothing.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub(crate) struct JoinRoom {
    /// The ticket (`p2pfs1…`)
    pub(crate) ticket: String,
    /// The name to give the room here [default: the ticket's]
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,
}

/// `room put`. The client sends the file by absolute path, and the name it
/// takes in the room ([`PutFile::name_in_room`] of the path as given).
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub(crate) struct PutFile {
    /// The room
    pub(crate) room: String,
    /// The file
    pub(crate) path: PathBuf,
    /// Its path in the room [default: the file's name]
    pub(crate) name: Option<String>,
}

impl PutFile {
    /// The file's path in the room: the name given (without leading or
    /// trailing `/`), else the file's name.
    pub(crate) fn name_in_room(&self) -> Result<String, AppError> {
        match &self.name {
            Some(n) => Ok(n.trim_matches('/').to_string()),
            None => match self.path.file_name() {
                Some(n) => Ok(n.to_string_lossy().into_owned()),
                None => Err(AppError::NoFileName(self.path.clone())),
            },
        }
    }
}

/// A file of a room (`room get`, `rm`, `pin`, `unpin`).
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub(crate) struct RoomFile {
    /// The room
    pub(crate) room: String,
    /// Its path in the room
    pub(crate) name: String,
}

impl RoomFile {
    /// Its path in the room, without leading or trailing `/`.
    pub(crate) fn path(&self) -> &str {
        self.name.trim_matches('/')
    }
}

/// A member of a room (`room promote`, `demote`, `remove`).
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub(crate) struct RoomMember {
    /// The room
    pub(crate) room: String,
    /// The member: its node id, a prefix of it (as `room members` shows
    /// it), or its display name if no other member has it
    pub(crate) member: String,
}

/// `room export`. The client sends the file by absolute path.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub(crate) struct ExportRoom {
    /// The room
    pub(crate) room: String,
    /// The file to write (it holds the room's secret: keep it as a ticket)
    pub(crate) file: PathBuf,
    /// Include the blobs of the room's files (fetched first where missing)
    #[arg(long)]
    pub(crate) files: bool,
}

/// `room import`. The client sends the file by absolute path.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub(crate) struct ImportRoom {
    /// The file a `room export` wrote
    pub(crate) file: PathBuf,
    /// The name to give the room here if it is new [default: the export's]
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,
}

/// `room set`.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub(crate) struct SetCopies {
    /// The room
    pub(crate) room: String,
    /// `copies=N` or `copies=full`
    #[arg(value_name = "copies=N|full")]
    pub(crate) policy: Copies,
}
