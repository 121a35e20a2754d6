//! Rooms: the secret and what is derived from it, tickets, the signed log
//! entries, and the sync protocol's messages (docs/protocol.md §8).
//!
//! A room is a random 32-byte [`RoomSecret`]. Everything else comes from
//! it through BLAKE3 `derive_key` with fixed contexts: the public
//! [`RoomId`], the key members prove membership with, and the DHT key under
//! which members announce themselves. Knowing the secret is being a member.
//!
//! The room's state is a merkle DAG of [`Entry`]s: each is signed by its
//! author, carries a tag proving the author knows the room key, and links
//! to the entries its author had seen (the heads). Each author's entries
//! form a chain numbered from 0 (`seq`), so a member's knowledge of the
//! log is summarised by one number per author (the sync [`Have`]).
//!
//! Checks that need no state (sizes, paths, text) are here
//! ([`EntryBody::check`]); signatures are verified by the network layer,
//! which holds the Ed25519 code.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::{Hash, NodeAddr, NodeId, RoomId, codec, ticket::valid_name};

/// ALPN of the room sync protocol.
pub const ALPN: &[u8] = b"p2pfs/room/1";

/// Most bytes of an encoded [`Entry`].
pub const MAX_ENTRY: usize = 24 * 1024;
/// Most bytes of a chat line.
pub const MAX_TEXT: usize = 4096;
/// Most bytes of a file path in a room (more than a system call's
/// `PATH_MAX`: a path is measured from the room's top, and a process may
/// work deep inside it).
pub const MAX_PATH: usize = 16 * 1024;
/// Most bytes of a symbolic link's target.
pub const MAX_TARGET: usize = 4095;
/// Most components of a path.
pub const MAX_DEPTH: usize = 4096;
/// Most parents an entry links to.
pub const MAX_PARENTS: usize = 32;
/// Most entries a put, delete or mkdir replaces.
pub const MAX_REPLACES: usize = 32;
/// Most bytes of a display or room name.
pub const MAX_NAME: usize = 64;
/// Most authors in a [`Have`].
pub const MAX_AUTHORS: usize = 4096;
/// Most addresses in a [`SyncMsg::Peers`].
pub const MAX_PEERS: usize = 32;
/// Most hashes in one [`Status`] (`add` and `remove` together).
pub const MAX_STATUS_HASHES: usize = 4096;
/// Most bytes of a [`Presence`]'s body (a status of `MAX_STATUS_HASHES`
/// hashes, with room for the rest).
pub const MAX_PRESENCE: usize = MAX_STATUS_HASHES * 32 + 256;
/// Most copies a room's policy may ask for.
pub const MAX_COPIES: u8 = 64;
/// The policy of a room whose log sets none.
pub const DEFAULT_COPIES: Copies = Copies::Min(2);
/// Most bytes of one sync frame.
pub const MAX_SYNC_FRAME: usize = 256 * 1024;
/// The name of the chat view in a room's directory; no file may take it.
pub const CHAT_FILE: &str = "chat.log";

const CONTEXT_ID: &str = "p2pfs 2026 room id v1";
const CONTEXT_AUTH: &str = "p2pfs 2026 room auth v1";
const CONTEXT_DHT: &str = "p2pfs 2026 room dht v1";
/// Prefix of the bytes an entry's signature covers.
pub const ENTRY_DOMAIN: &[u8; 20] = b"p2pfs room entry v1\0";
/// Prefix of the membership proof bound to a QUIC connection.
pub const PROOF_DOMAIN: &[u8; 20] = b"p2pfs room proof v1\0";
/// The TLS exporter label for membership proofs (RFC 8446 §7.5).
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-p2pfs-room-v1";

/// A room's secret: whoever has it is a member.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSecret(pub [u8; 32]);

impl fmt::Debug for RoomSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoomSecret({})", self.id().fmt_short())
    }
}

impl RoomSecret {
    /// The room's public identifier.
    pub fn id(&self) -> RoomId {
        RoomId::from_bytes(blake3::derive_key(CONTEXT_ID, &self.0))
    }

    /// The key members prove membership with.
    pub fn auth_key(&self) -> [u8; 32] {
        blake3::derive_key(CONTEXT_AUTH, &self.0)
    }

    /// The DHT key under which members announce themselves.
    pub fn dht_key(&self) -> Hash {
        Hash::from_bytes(blake3::derive_key(CONTEXT_DHT, &self.0))
    }

    /// The tag proving that `author` knows the room key.
    pub fn member_tag(&self, author: &NodeId) -> [u8; 32] {
        *blake3::keyed_hash(&self.auth_key(), author.as_bytes()).as_bytes()
    }

    /// The proof of membership on a connection: `exporter` is the TLS
    /// exporter value of that connection, `dialer` whether the prover
    /// opened it (so a proof cannot be reflected back).
    pub fn connection_proof(&self, exporter: &[u8; 32], dialer: bool) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.auth_key());
        h.update(PROOF_DOMAIN);
        h.update(&[u8::from(dialer)]);
        h.update(exporter);
        *h.finalize().as_bytes()
    }
}

/// An Ed25519 signature (64 bytes on the wire, no length prefix).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

impl Serialize for Signature {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (a, b) = self.0.split_at(32);
        let mut lo = [0u8; 32];
        let mut hi = [0u8; 32];
        lo.copy_from_slice(a);
        hi.copy_from_slice(b);
        (lo, hi).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (lo, hi) = <([u8; 32], [u8; 32])>::deserialize(d)?;
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&lo);
        out[32..].copy_from_slice(&hi);
        Ok(Self(out))
    }
}

/// One signed event in a room's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The postcard encoding of an [`EntryBody`]: the bytes that are
    /// signed and hashed are these, so re-encoding never changes them.
    pub body: Vec<u8>,
    /// The author's signature over [`signed_message`]`(room, body)`.
    pub sig: Signature,
}

/// What an entry says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryBody {
    /// Who wrote it.
    pub author: NodeId,
    /// Its position in the author's chain, from 0.
    pub seq: u64,
    /// Entries the author had seen (the heads), by entry hash; when `seq >
    /// 0`, the author's entry `seq - 1` is one of them.
    pub parents: Vec<Hash>,
    /// The author's clock, in milliseconds since the Unix epoch.
    pub time: u64,
    /// [`RoomSecret::member_tag`] of the author.
    pub member: [u8; 32],
    /// The event.
    pub op: Op,
}

/// The events of a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// A chat line.
    Chat {
        /// One line of UTF-8, no line breaks.
        text: String,
    },
    /// A file at `path` with content `hash`.
    Put {
        /// Where, `/`-separated, relative to the room.
        path: String,
        /// The content.
        hash: Hash,
        /// Its size in bytes.
        size: u64,
        /// Whether it is executable.
        exec: bool,
        /// Its modification time, in milliseconds since the Unix epoch.
        mtime: u64,
        /// The entries for this path this one replaces.
        replaces: Vec<Hash>,
    },
    /// Removes what is at `path`.
    Delete {
        /// Where.
        path: String,
        /// The entries for this path this one removes.
        replaces: Vec<Hash>,
    },
    /// A directory at `path`.
    Mkdir {
        /// Where.
        path: String,
        /// The entries for this path this one replaces.
        replaces: Vec<Hash>,
    },
    /// Room metadata.
    Meta(Meta),
    /// A symbolic link at `path` to `target` (kept as written: relative or
    /// absolute, dangling or not; each member's kernel resolves it).
    Symlink {
        /// Where.
        path: String,
        /// What it points to: 1 to [`MAX_TARGET`] bytes, no NUL.
        target: String,
        /// The entries for this path this one replaces.
        replaces: Vec<Hash>,
    },
    /// A file at `path` with content `hash`, its permission bits and times
    /// (what [`Op::Put`] says, and more).
    File {
        /// Where.
        path: String,
        /// The content.
        hash: Hash,
        /// Its size in bytes.
        size: u64,
        /// Permission bits and times.
        attr: Attr,
        /// Which file this is a name of: picked at random when the file is
        /// made, kept by its later versions and by its hard links.
        inode: FileId,
        /// The entries for this path this one replaces.
        replaces: Vec<Hash>,
    },
    /// A directory at `path` with its permission bits and times (what
    /// [`Op::Mkdir`] says, and more).
    Dir {
        /// Where.
        path: String,
        /// Permission bits and times.
        attr: Attr,
        /// The entries for this path this one replaces.
        replaces: Vec<Hash>,
    },
    /// A symbolic link with its times (what [`Op::Symlink`] says, and
    /// more; its mode is ignored: a link's is `rwxrwxrwx`).
    SymlinkAt {
        /// Where.
        path: String,
        /// What it points to.
        target: String,
        /// Its times.
        attr: Attr,
        /// The entries for this path this one replaces.
        replaces: Vec<Hash>,
    },
    /// A new epoch: members removed, the new room key wrapped for the
    /// others (docs/protocol.md §8.11).
    Epoch(crate::moderation::Epoch),
}

/// The identity of a file across its names (hard links) and versions.
pub type FileId = [u8; 16];

/// A moment: seconds since the Unix epoch (negative before it) and
/// nanoseconds.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Time {
    /// Whole seconds since 1970-01-01T00:00:00Z.
    pub secs: i64,
    /// Nanoseconds, below 1,000,000,000.
    pub nanos: u32,
}

impl Time {
    /// A time in milliseconds since the Unix epoch.
    pub fn from_millis(ms: u64) -> Self {
        Self {
            secs: (ms / 1000) as i64,
            nanos: (ms % 1000) as u32 * 1_000_000,
        }
    }

    /// The time in milliseconds since the Unix epoch, rounded down (0
    /// before it).
    pub fn as_millis(&self) -> u64 {
        if self.secs < 0 {
            return 0;
        }
        (self.secs as u64)
            .saturating_mul(1000)
            .saturating_add(u64::from(self.nanos / 1_000_000))
    }

    /// A system time.
    pub fn from_system(t: std::time::SystemTime) -> Self {
        match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Self {
                secs: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                nanos: d.subsec_nanos(),
            },
            Err(e) => {
                let d = e.duration();
                let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                if d.subsec_nanos() == 0 {
                    Self {
                        secs: -secs,
                        nanos: 0,
                    }
                } else {
                    Self {
                        secs: -secs - 1,
                        nanos: 1_000_000_000 - d.subsec_nanos(),
                    }
                }
            }
        }
    }

    /// As a system time.
    pub fn to_system(&self) -> std::time::SystemTime {
        let nanos = std::time::Duration::from_nanos(u64::from(self.nanos.min(999_999_999)));
        let secs = std::time::Duration::from_secs(self.secs.unsigned_abs());
        if self.secs >= 0 {
            std::time::UNIX_EPOCH + secs + nanos
        } else {
            std::time::UNIX_EPOCH - secs + nanos
        }
    }
}

/// A file's or directory's permission bits and times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Attr {
    /// Permission bits, `0o7777` at most (setuid, setgid, sticky, rwx).
    pub mode: u16,
    /// Modification time.
    pub mtime: Time,
    /// Access time.
    pub atime: Time,
    /// Status change time: when the content, the bits or the names last
    /// changed, by the author's clock.
    pub ctime: Time,
}

/// Most permission bits.
pub const MAX_MODE: u16 = 0o7777;

/// Metadata entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Meta {
    /// The author's display name in this room.
    MemberName(String),
    /// The room's suggested name.
    RoomName(String),
    /// How many members keep a full copy of each file. Of several such
    /// entries, the one with the greatest `time`, then entry hash, holds.
    Copies(Copies),
    /// The author created the room: the room's secret is
    /// [`RoomSecret::for_owner`]`(author, nonce)` (docs/protocol.md §8.11).
    Owner {
        /// The nonce the secret was made with.
        nonce: [u8; 32],
    },
    /// The owner gives `member` a role (moderator, or member again).
    Role {
        /// Who.
        member: NodeId,
        /// Its role from now on: `Moderator` or `Member`.
        role: crate::moderation::Role,
    },
    /// The author leaves the room: the others stop counting on it (its
    /// copies are made elsewhere at once) and leave it out of later keys.
    Leave,
}

/// A room's replication policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Copies {
    /// Each file on at least this many members (1 to [`MAX_COPIES`]) while
    /// that many are online.
    Min(u8),
    /// Every member keeps every file.
    Full,
}

impl std::fmt::Display for Copies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Copies::Min(n) => write!(f, "copies={n}"),
            Copies::Full => f.write_str("copies=full"),
        }
    }
}

impl std::str::FromStr for Copies {
    type Err = String;

    /// `N` or `full`, with or without a leading `copies=`.
    fn from_str(s: &str) -> Result<Self, String> {
        let v = s.trim();
        let v = v.strip_prefix("copies=").unwrap_or(v);
        if v.eq_ignore_ascii_case("full") {
            return Ok(Copies::Full);
        }
        match v.parse::<u8>() {
            Ok(n) if (1..=MAX_COPIES).contains(&n) => Ok(Copies::Min(n)),
            _ => Err(format!(
                "{s:?}: expected copies=N (1 to {MAX_COPIES}) or copies=full"
            )),
        }
    }
}

impl Op {
    /// The path a file-tree event is about.
    pub fn path(&self) -> Option<&str> {
        match self {
            Op::Put { path, .. }
            | Op::Delete { path, .. }
            | Op::Mkdir { path, .. }
            | Op::Symlink { path, .. }
            | Op::File { path, .. }
            | Op::Dir { path, .. }
            | Op::SymlinkAt { path, .. } => Some(path),
            Op::Chat { .. } | Op::Meta(_) | Op::Epoch(_) => None,
        }
    }

    /// The entries a file-tree event replaces.
    pub fn replaces(&self) -> &[Hash] {
        match self {
            Op::Put { replaces, .. }
            | Op::Delete { replaces, .. }
            | Op::Mkdir { replaces, .. }
            | Op::Symlink { replaces, .. }
            | Op::File { replaces, .. }
            | Op::Dir { replaces, .. }
            | Op::SymlinkAt { replaces, .. } => replaces,
            Op::Chat { .. } | Op::Meta(_) | Op::Epoch(_) => &[],
        }
    }
}

/// Why an entry is invalid on its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// Too many bytes.
    #[error("entry of {0} bytes is over the limit of {MAX_ENTRY}")]
    TooLarge(usize),
    /// The body does not decode.
    #[error("entry does not decode: {0}")]
    Decode(String),
    /// A field is out of bounds.
    #[error("invalid entry: {0}")]
    Invalid(String),
    /// The membership tag is wrong: the author does not know the room key.
    #[error("entry by {0} is not from a member of this room")]
    NotMember(String),
    /// The signature does not verify.
    #[error("entry by {0} has a bad signature")]
    BadSignature(String),
}

impl EntryBody {
    /// Checks the bounds of every field (not the signature or the tag).
    pub fn check(&self) -> Result<(), EntryError> {
        let bad = |s: String| Err(EntryError::Invalid(s));
        if self.parents.len() > MAX_PARENTS {
            return bad(format!("{} parents", self.parents.len()));
        }
        if self.seq > 0 && self.parents.is_empty() {
            return bad("no parents after the author's first entry".into());
        }
        if self.op.replaces().len() > MAX_REPLACES {
            return bad(format!("replaces {} entries", self.op.replaces().len()));
        }
        match &self.op {
            Op::Chat { text } => {
                if text.len() > MAX_TEXT || text.contains(['\n', '\r']) {
                    return bad("chat text too long or with a line break".into());
                }
            }
            Op::Put { path, .. } | Op::Delete { path, .. } | Op::Mkdir { path, .. } => {
                check_path(path).map_err(EntryError::Invalid)?
            }
            Op::Symlink { path, target, .. } => {
                check_path(path).map_err(EntryError::Invalid)?;
                check_target(target)?;
            }
            Op::File { path, attr, .. }
            | Op::Dir { path, attr, .. }
            | Op::SymlinkAt { path, attr, .. } => {
                check_path(path).map_err(EntryError::Invalid)?;
                if let Op::SymlinkAt { target, .. } = &self.op {
                    check_target(target)?;
                }
                if attr.mode > MAX_MODE {
                    return bad(format!("mode {:o}", attr.mode));
                }
                if [attr.mtime, attr.atime, attr.ctime]
                    .iter()
                    .any(|t| t.nanos >= 1_000_000_000)
                {
                    return bad("a time with a second or more of nanoseconds".into());
                }
            }
            Op::Meta(Meta::MemberName(n) | Meta::RoomName(n)) => {
                if !valid_display_name(n) {
                    return bad(format!("unusable name {n:?}"));
                }
            }
            Op::Meta(Meta::Copies(Copies::Min(n))) => {
                if !(1..=MAX_COPIES).contains(n) {
                    return bad(format!("a policy of {n} copies"));
                }
            }
            Op::Meta(Meta::Copies(Copies::Full)) => {}
            Op::Meta(Meta::Owner { .. } | Meta::Leave) => {}
            Op::Meta(Meta::Role { role, .. }) => {
                if *role == crate::moderation::Role::Owner {
                    return bad("a role entry naming an owner".into());
                }
            }
            Op::Epoch(e) => e.check().map_err(EntryError::Invalid)?,
        }
        Ok(())
    }
}

/// Checks a symbolic link's target: 1 to [`MAX_TARGET`] bytes, no NUL.
fn check_target(target: &str) -> Result<(), EntryError> {
    if target.is_empty() || target.len() > MAX_TARGET || target.contains('\0') {
        return Err(EntryError::Invalid(format!(
            "unusable link target of {} bytes",
            target.len()
        )));
    }
    Ok(())
}

/// Whether `n` can be a display or room name: 1 to [`MAX_NAME`] bytes,
/// no control characters, usable as a directory name.
pub fn valid_display_name(n: &str) -> bool {
    n.len() <= MAX_NAME && valid_name(n) && !n.chars().any(char::is_control)
}

/// Checks a room path: `/`-separated names, no empty, `.` or `..`
/// component, at most [`MAX_PATH`] bytes and [`MAX_DEPTH`] components, and
/// not the chat file.
pub fn check_path(path: &str) -> Result<(), String> {
    if path.len() > MAX_PATH {
        return Err(format!("path of {} bytes is too long", path.len()));
    }
    // The chat takes the name at the top: no file there, nor under it.
    if path.split('/').next() == Some(CHAT_FILE) {
        return Err(format!("{CHAT_FILE} is the room's chat"));
    }
    let mut depth = 0;
    for part in path.split('/') {
        depth += 1;
        if !valid_name(part) || part.chars().any(char::is_control) {
            return Err(format!("unusable path {path:?}"));
        }
    }
    if depth > MAX_DEPTH {
        return Err(format!("path {path:?} is nested too deeply"));
    }
    Ok(())
}

/// The bytes an entry's signature covers and whose BLAKE3 hash is the
/// entry's hash: [`ENTRY_DOMAIN`], the room id, the body.
pub fn signed_message(room: &RoomId, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(ENTRY_DOMAIN.len() + 32 + body.len());
    m.extend_from_slice(ENTRY_DOMAIN);
    m.extend_from_slice(room.as_bytes());
    m.extend_from_slice(body);
    m
}

impl Entry {
    /// The entry's hash in `room`.
    pub fn hash(&self, room: &RoomId) -> Hash {
        Hash::of(&signed_message(room, &self.body))
    }

    /// Decodes an entry from its encoding, checking its size and bounds:
    /// at most [`MAX_ENTRY`] bytes, or
    /// [`crate::moderation::MAX_EPOCH_ENTRY`] for an epoch.
    pub fn decode(bytes: &[u8]) -> Result<(Entry, EntryBody), EntryError> {
        if bytes.len() > crate::moderation::MAX_EPOCH_ENTRY {
            return Err(EntryError::TooLarge(bytes.len()));
        }
        let e: Entry = codec::decode(bytes).map_err(|e| EntryError::Decode(e.to_string()))?;
        let body = e.body()?;
        if bytes.len() > MAX_ENTRY && !matches!(body.op, Op::Epoch(_)) {
            return Err(EntryError::TooLarge(bytes.len()));
        }
        Ok((e, body))
    }

    /// Decodes and checks the body.
    pub fn body(&self) -> Result<EntryBody, EntryError> {
        let b: EntryBody =
            codec::decode(&self.body).map_err(|e| EntryError::Decode(e.to_string()))?;
        b.check()?;
        Ok(b)
    }

    /// The encoding (what the log stores and sync sends).
    pub fn encode(&self) -> Result<Vec<u8>, EntryError> {
        let bytes = codec::encode(self).map_err(|e| EntryError::Decode(e.to_string()))?;
        if bytes.len() > crate::moderation::MAX_EPOCH_ENTRY {
            return Err(EntryError::TooLarge(bytes.len()));
        }
        Ok(bytes)
    }
}

/// What a member has of a room's log: for each author, how many of its
/// entries (so the next `seq` it lacks).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Have(pub Vec<(NodeId, u64)>);

/// The first message on a room stream, from the dialer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`RoomSecret::connection_proof`] with `dialer = true`, under the
    /// dialer's current epoch key (docs/protocol.md §8.11).
    pub proof: [u8; 32],
    /// The same under earlier epoch keys the dialer knows, newest first
    /// (at most [`MAX_EARLIER_PROOFS`]), for a member that has not heard
    /// of the latest epoch yet.
    pub earlier: Vec<[u8; 32]>,
}

/// Most earlier proofs in a [`Hello`].
pub const MAX_EARLIER_PROOFS: usize = 4;

/// The answer to a [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Welcome {
    /// The proof matched one of the answerer's rooms; here is its own
    /// ([`RoomSecret::connection_proof`] with `dialer = false`).
    Member {
        /// The answerer's proof.
        proof: [u8; 32],
    },
    /// The proof matched no room the answerer is in.
    Unknown,
    /// The proof matched a room, and the dialer was removed from it.
    Removed {
        /// Who removed it.
        by: NodeId,
        /// When, on the remover's clock (ms since the Unix epoch).
        time: u64,
    },
}

/// The messages both members send once the stream is authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncMsg {
    /// What the sender has; the receiver answers with the entries the
    /// sender lacks (as [`SyncMsg::Entries`]), then [`SyncMsg::Synced`].
    Have(Have),
    /// Entries, parents before children, each an encoded [`Entry`].
    Entries(Vec<Vec<u8>>),
    /// Every entry the last `Have` lacked has been sent.
    Synced,
    /// Members the sender knows how to reach.
    Peers(Vec<NodeAddr>),
    /// A replica's heartbeat: it takes part in keeping the room's files,
    /// and holds these (docs/protocol.md §8.9).
    Status(Status),
    /// The sending replica is about to stop: it is no longer a candidate
    /// for placement, but keeps serving what it holds until its
    /// [`SyncMsg::Goodbye`], so the members now responsible fetch from it.
    Leaving,
    /// The sending replica stops now: count it offline at once (and copy
    /// again what it kept) rather than after the offline timeout.
    Goodbye,
    /// A replica's status, signed by it and forwarded through the room, so
    /// members without a session with it know it is online and what it
    /// keeps (docs/protocol.md §8.10).
    Presence(Presence),
    /// The newest presence the sender holds of each replica (its own
    /// included), sent once at the start of a session: the receiver
    /// answers with the presences newer than these, and only those
    /// (docs/protocol.md §8.10).
    PresenceDigest(Vec<PresenceHead>),
}

/// Where a replica's presences stand, as a [`SyncMsg::PresenceDigest`]
/// tells: the sender holds them up to `(run, seq)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceHead {
    /// The replica.
    pub origin: NodeId,
    /// Its run, as in [`PresenceBody::run`].
    pub run: u64,
    /// The newest sequence number held in that run.
    pub seq: u64,
}

/// Most heads in a [`SyncMsg::PresenceDigest`] (about 200 KiB at most).
pub const MAX_PRESENCE_HEADS: usize = 4096;

/// Domain of a presence's signature.
pub const PRESENCE_DOMAIN: &[u8; 23] = b"p2pfs room presence v1\0";

/// A replica's status as the room forwards it: [`PresenceBody`], encoded,
/// and the origin's signature over [`presence_message`]`(room, body)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// The postcard encoding of a [`PresenceBody`] (signed as sent).
    pub body: Vec<u8>,
    /// The origin's signature.
    pub sig: Signature,
}

/// What a presence says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceBody {
    /// The replica it is about, which signed it.
    pub origin: NodeId,
    /// `member_tag(origin)`: the origin is a member.
    pub member: [u8; 32],
    /// The origin's run: when it started, in milliseconds since the Unix
    /// epoch (a later run supersedes an earlier one).
    pub run: u64,
    /// Counts up from 0 within a run, one per presence.
    pub seq: u64,
    /// Where the replica is in its life.
    pub phase: PresencePhase,
    /// Its status; `reset` starts a chain of differences (seq 0 has it).
    pub status: Status,
}

/// A replica's phase, as a presence carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PresencePhase {
    /// Running: a candidate for placement.
    Running,
    /// About to stop ([`SyncMsg::Leaving`]).
    Leaving,
    /// Stopped ([`SyncMsg::Goodbye`]).
    Gone,
}

/// The bytes a presence's signature covers: [`PRESENCE_DOMAIN`], the room
/// id, the body.
pub fn presence_message(room: &RoomId, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(PRESENCE_DOMAIN.len() + 32 + body.len());
    m.extend_from_slice(PRESENCE_DOMAIN);
    m.extend_from_slice(room.as_bytes());
    m.extend_from_slice(body);
    m
}

impl Presence {
    /// Decodes the body, checking its bounds.
    pub fn decode_body(&self) -> Result<PresenceBody, String> {
        let b: PresenceBody = codec::decode(&self.body).map_err(|e| e.to_string())?;
        if b.status.add.len() + b.status.remove.len() > MAX_STATUS_HASHES {
            return Err("too many hashes in a presence".into());
        }
        Ok(b)
    }
}

/// What a replica says of itself, at the start of a session, when it
/// changes and at every heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// At its storage cap: takes on no new copies.
    pub full: bool,
    /// `add` is the whole set held (what the receiver knew is dropped);
    /// the first status of a session has it.
    pub reset: bool,
    /// The sender's heartbeat in milliseconds: the longest it lets pass
    /// between two statuses (receivers allow three before calling it
    /// offline, whatever their own timeout).
    pub heartbeat_ms: u32,
    /// Blobs of the room's files it now keeps complete (pinned).
    pub add: Vec<Hash>,
    /// Blobs it no longer holds.
    pub remove: Vec<Hash>,
}

impl SyncMsg {
    /// Checks the bounds of a received message.
    pub fn check(&self) -> Result<(), String> {
        match self {
            SyncMsg::Have(h) if h.0.len() > MAX_AUTHORS => Err("too many authors".into()),
            SyncMsg::Entries(v) if v.iter().any(|e| e.len() > MAX_ENTRY) => {
                Err("an entry is too large".into())
            }
            SyncMsg::Peers(p)
                if p.len() > MAX_PEERS || p.iter().any(|a| a.addrs.len() > crate::MAX_ADDRS) =>
            {
                Err("too many peers".into())
            }
            SyncMsg::Status(s) if s.add.len() + s.remove.len() > MAX_STATUS_HASHES => {
                Err("too many hashes in a status".into())
            }
            SyncMsg::Presence(p) if p.body.len() > MAX_PRESENCE => {
                Err("a presence is too large".into())
            }
            SyncMsg::PresenceDigest(h) if h.len() > MAX_PRESENCE_HEADS => {
                Err("too many presence heads".into())
            }
            _ => Ok(()),
        }
    }
}

/// Most member addresses a ticket carries.
pub const MAX_TICKET_NODES: usize = 8;

/// A room ticket: the secret, a suggested name and some members, as one
/// copy-paste string: `p2pfs1` followed by the lowercase base32 (no
/// padding) of this struct's postcard encoding and its checksum (see
/// [`crate::ticket`]).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomTicket {
    version: u8,
    /// The room's secret.
    pub secret: RoomSecret,
    /// The suggested name.
    pub name: String,
    /// Members to reach first.
    pub nodes: Vec<NodeAddr>,
    /// The key of the room's current epoch, once members have been
    /// removed (docs/protocol.md §8.11); `None` in epoch 0, whose key is
    /// the secret. A ticket written before epochs existed ends before
    /// this field and reads as `None`.
    pub key: Option<crate::moderation::EpochKey>,
}

/// The fields of a ticket of before epochs.
#[derive(Deserialize)]
struct TicketBeforeEpochs {
    version: u8,
    secret: RoomSecret,
    name: String,
    nodes: Vec<NodeAddr>,
}

impl fmt::Debug for RoomTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RoomTicket({}, {:?})",
            self.secret.id().fmt_short(),
            self.name
        )
    }
}

/// Why a string is not a room ticket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomTicketError {
    /// It does not start with `p2pfs1`.
    #[error("not a room ticket (it should start with \"{}\")", RoomTicket::PREFIX)]
    Prefix,
    /// A character was changed, lost or added on the way.
    #[error("damaged or mistyped room ticket: {0}; copy the whole ticket again")]
    Mistyped(String),
    /// A ticket of format 0, which had no checksum.
    #[error("this room ticket is from an older p2pfs (it has no checksum): ask for a new one")]
    Outdated,
    /// Intact, but its content is unusable.
    #[error("invalid room ticket: {0}")]
    Invalid(String),
}

impl From<crate::ticket::TextError> for RoomTicketError {
    fn from(e: crate::ticket::TextError) -> Self {
        use crate::ticket::TextError;
        match e {
            TextError::Prefix => Self::Prefix,
            TextError::Mistyped(m) => Self::Mistyped(m),
            TextError::Outdated => Self::Outdated,
            TextError::Invalid(m) => Self::Invalid(m),
        }
    }
}

impl RoomTicket {
    /// The text prefix.
    pub const PREFIX: &'static str = "p2pfs1";

    /// A ticket for a room.
    pub fn new(secret: RoomSecret, name: String, mut nodes: Vec<NodeAddr>) -> Self {
        nodes.truncate(MAX_TICKET_NODES);
        Self {
            version: crate::ticket::VERSION,
            secret,
            name,
            nodes,
            key: None,
        }
    }

    /// The same ticket, for the epoch of `key`.
    pub fn with_key(mut self, key: Option<crate::moderation::EpochKey>) -> Self {
        self.key = key;
        self
    }

    /// Decodes a ticket's postcard encoding (as a room export holds it),
    /// of this format or of before epochs.
    pub fn decode(bytes: &[u8]) -> Result<Self, RoomTicketError> {
        let t = match codec::decode::<RoomTicket>(bytes) {
            Ok(t) => t,
            Err(e) => match codec::decode::<TicketBeforeEpochs>(bytes) {
                Ok(t) => RoomTicket {
                    version: t.version,
                    secret: t.secret,
                    name: t.name,
                    nodes: t.nodes,
                    key: None,
                },
                Err(_) => return Err(RoomTicketError::Invalid(e.to_string())),
            },
        };
        t.check()?;
        Ok(t)
    }
}

impl fmt::Display for RoomTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::ticket::write_text(f, Self::PREFIX, self)
    }
}

impl FromStr for RoomTicket {
    type Err = RoomTicketError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t: Self = match crate::ticket::read_text::<Self>(s, Self::PREFIX) {
            Ok(t) => t,
            // (Of the two, the older format's error: a ticket of format 0
            // is told as such.)
            Err(_) => {
                let t = crate::ticket::read_text::<TicketBeforeEpochs>(s, Self::PREFIX)?;
                RoomTicket {
                    version: t.version,
                    secret: t.secret,
                    name: t.name,
                    nodes: t.nodes,
                    key: None,
                }
            }
        };
        t.check()?;
        Ok(t)
    }
}

impl RoomTicket {
    /// Checks what the encoding cannot: the version, the name, the
    /// number of nodes and addresses.
    pub fn check(&self) -> Result<(), RoomTicketError> {
        crate::ticket::check_version(self.version).map_err(RoomTicketError::Invalid)?;
        if !valid_display_name(&self.name) {
            return Err(RoomTicketError::Invalid(format!(
                "unusable room name {:?}",
                self.name
            )));
        }
        if self.nodes.len() > MAX_TICKET_NODES
            || self.nodes.iter().any(|n| n.addrs.len() > crate::MAX_ADDRS)
        {
            return Err(RoomTicketError::Invalid(
                "too many nodes or addresses".into(),
            ));
        }
        Ok(())
    }
}

/// Bundle record (docs/protocol.md §12.2) of a room: the postcard
/// encoding of its [`RoomTicket`]. It grants membership as the ticket does.
pub const BUNDLE_ROOM: u8 = 2;
/// Bundle record of a room's entries: the postcard encoding of a
/// `Vec<Vec<u8>>` of encoded [`Entry`]s, parents before children.
pub const BUNDLE_ENTRIES: u8 = 3;
/// Most bytes of the entries in one [`BUNDLE_ENTRIES`] record.
pub const MAX_BUNDLE_ENTRIES: usize = 4 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    fn body(op: Op) -> EntryBody {
        EntryBody {
            author: NodeId::from_bytes([1; 32]),
            seq: 0,
            parents: vec![],
            time: 1,
            member: [0; 32],
            op,
        }
    }

    #[test]
    fn derivations_differ_and_are_stable() {
        let s = RoomSecret([7; 32]);
        let id = s.id();
        assert_ne!(id.as_bytes(), &s.auth_key());
        assert_ne!(s.dht_key().as_bytes(), &s.auth_key());
        assert_eq!(s.id(), RoomSecret([7; 32]).id());
        let x = [3u8; 32];
        assert_ne!(s.connection_proof(&x, true), s.connection_proof(&x, false));
        assert_ne!(
            s.member_tag(&NodeId::from_bytes([1; 32])),
            s.member_tag(&NodeId::from_bytes([2; 32]))
        );
    }

    #[test]
    fn derivation_vectors_of_the_protocol_document() {
        // docs/protocol.md §8.1, secret 07×32.
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let s = RoomSecret([7; 32]);
        assert_eq!(
            hex(s.id().as_bytes()),
            "94dcd2a6a94c3c4617b16495c6d563062241d1f5cba842bb6c0b1d947e88671d"
        );
        assert_eq!(
            s.id().to_string(),
            "stonfjvjjq6emf5rmsk4nvldayredupvzouefo3mbmozi7uim4oq"
        );
        assert_eq!(
            hex(&s.auth_key()),
            "f67804e72968ea965d51257c642bc9958633da324a8c27e08c994c462b8bf7f2"
        );
        assert_eq!(
            hex(s.dht_key().as_bytes()),
            "2f5a0cf52798e9e2e6dafdba8d7d21d9d1256df0e9bf6a32a4e81fda8c96f4ac"
        );
        assert_eq!(
            hex(&s.member_tag(&NodeId::from_bytes([1; 32]))),
            "e98bdad6e9dd2970e1bb4c97c97e9261be40541a2f0e6432343877cf3040ed0a"
        );
        assert_eq!(
            hex(&s.connection_proof(&[3; 32], true)),
            "47ec3aee1974ff125885a7f4e9cebc6e3247aa2319c671ebafc300e5671cbf23"
        );
        assert_eq!(
            hex(&s.connection_proof(&[3; 32], false)),
            "a25e6a65cb8a335778c43ef658d31eee4a71c971a42d867ea1656a0187cce3a4"
        );
    }

    #[test]
    fn tickets_round_trip_and_reject_damage() {
        let t = RoomTicket::new(
            RoomSecret([5; 32]),
            "team".into(),
            vec![NodeAddr {
                id: NodeId::from_bytes([9; 32]),
                addrs: vec!["127.0.0.1:4000".parse().unwrap()],
            }],
        );
        let s = t.to_string();
        assert!(s.starts_with("p2pfs1"));
        assert_eq!(s.parse::<RoomTicket>().unwrap(), t);
        assert_eq!(format!("\t{s} \r\n").parse::<RoomTicket>().unwrap(), t);
        assert_eq!(s.to_ascii_uppercase().parse::<RoomTicket>().unwrap(), t);
        assert_eq!(
            "blobabc".parse::<RoomTicket>(),
            Err(RoomTicketError::Prefix)
        );
        assert!(s[..s.len() - 4].parse::<RoomTicket>().is_err());
        let evil = RoomTicket::new(RoomSecret([5; 32]), "../x".into(), vec![]);
        assert!(matches!(
            evil.to_string().parse::<RoomTicket>(),
            Err(RoomTicketError::Invalid(_))
        ));
    }

    #[test]
    fn every_typo_of_a_ticket_is_refused_as_one() {
        // A ticket as `p2pfs room create` prints it: this node, with an
        // IPv4 and an IPv6 address.
        let t = RoomTicket::new(
            RoomSecret(*blake3::hash(b"a room").as_bytes()),
            "team".into(),
            vec![NodeAddr {
                id: NodeId::from_bytes(*blake3::hash(b"a node").as_bytes()),
                addrs: vec![
                    "192.168.1.20:4433".parse().unwrap(),
                    "[fe80::1]:4433".parse().unwrap(),
                ],
            }],
        );
        let s = t.to_string();
        let typos = crate::ticket::typos(&s);
        assert!(typos.len() > 10_000, "{}", typos.len());
        for typo in typos {
            match typo.parse::<RoomTicket>() {
                Err(RoomTicketError::Mistyped(_)) => {}
                // A change to the prefix makes it no ticket at all.
                Err(RoomTicketError::Prefix) if !typo.starts_with(RoomTicket::PREFIX) => {}
                other => panic!("{typo}: {other:?}"),
            }
        }
        let mid = s.len() / 2;
        let c = if &s[mid..=mid] == "q" { "r" } else { "q" };
        let err = format!("{}{c}{}", &s[..mid], &s[mid + 1..])
            .parse::<RoomTicket>()
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("damaged or mistyped room ticket: its checksum does not match"),
            "{err}"
        );
    }

    #[test]
    fn golden_ticket_text() {
        // docs/protocol.md §8.2: version 1, secret 00×32, name "a", no
        // nodes, then the checksum.
        let t = RoomTicket::new(RoomSecret([0; 32]), "a".into(), vec![]);
        let mut bytes = vec![1u8];
        bytes.extend([0; 32]);
        bytes.extend([1, b'a', 0, 0]);
        assert_eq!(codec::encode(&t).unwrap(), bytes);
        assert_eq!(
            t.to_string(),
            "p2pfs1aeaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaalbaaana4jjya"
        );
        // A ticket of before epochs (no key field) still reads, as epoch 0.
        let before = "p2pfs1aeaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaalbaao5moyh";
        assert_eq!(before.parse::<RoomTicket>(), Ok(t.clone()));
        bytes.pop();
        // Format 0 (no checksum) is refused with a word on what to do.
        bytes[0] = 0;
        let old = format!(
            "p2pfs1{}",
            data_encoding::BASE32_NOPAD
                .encode(&bytes)
                .to_ascii_lowercase()
        );
        assert_eq!(
            old,
            "p2pfs1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaalbaa"
        );
        assert_eq!(old.parse::<RoomTicket>(), Err(RoomTicketError::Outdated));
    }

    #[test]
    fn golden_entry_bytes() {
        // docs/protocol.md §8.3: a chat entry's body.
        let b = body(Op::Chat { text: "hi".into() });
        let mut want = vec![];
        want.extend([1u8; 32]); // author
        want.extend([0, 0, 1]); // seq 0, no parents, time 1
        want.extend([0u8; 32]); // member tag
        want.extend([0, 2, b'h', b'i']); // Op::Chat "hi"
        assert_eq!(codec::encode(&b).unwrap(), want);
        let sig = Signature([4; 64]);
        let e = Entry {
            body: want.clone(),
            sig,
        };
        let enc = e.encode().unwrap();
        assert_eq!(enc.len(), 1 + want.len() + 64);
        assert_eq!(Entry::decode(&enc).unwrap().1, b);
    }

    #[test]
    fn golden_sync_bytes() {
        // docs/protocol.md §8.6, the table of byte layouts, both ways.
        fn both<T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
            v: T,
            want: &[u8],
        ) {
            assert_eq!(codec::encode(&v).unwrap(), want, "{v:?}");
            assert_eq!(codec::decode::<T>(want).unwrap(), v);
        }
        let mut hello = vec![5; 32];
        hello.push(0);
        both(
            Hello {
                proof: [5; 32],
                earlier: vec![],
            },
            &hello,
        );
        let mut hello = vec![5; 32];
        hello.push(1);
        hello.extend([4; 32]);
        both(
            Hello {
                proof: [5; 32],
                earlier: vec![[4; 32]],
            },
            &hello,
        );
        let mut member = vec![0];
        member.extend([6; 32]);
        both(Welcome::Member { proof: [6; 32] }, &member);
        both(Welcome::Unknown, &[1]);
        let mut removed = vec![2];
        removed.extend([7; 32]);
        removed.extend([0xe8, 0x07]);
        both(
            Welcome::Removed {
                by: NodeId::from_bytes([7; 32]),
                time: 1000,
            },
            &removed,
        );
        let mut have = vec![0, 1];
        have.extend([1; 32]);
        have.extend([0xac, 0x02]);
        both(
            SyncMsg::Have(Have(vec![(NodeId::from_bytes([1; 32]), 300)])),
            &have,
        );
        both(
            SyncMsg::Entries(vec![vec![0xaa, 0xbb]]),
            &[1, 1, 2, 0xaa, 0xbb],
        );
        both(SyncMsg::Synced, &[2]);
        both(SyncMsg::Peers(vec![]), &[3, 0]);
        // A peer with one address: its id, then its addresses (§6.1).
        let peer = NodeAddr {
            id: NodeId::from_bytes([2; 32]),
            addrs: vec!["127.0.0.1:7".parse().unwrap()],
        };
        let mut want = vec![3, 1];
        want.extend(codec::encode(&peer).unwrap());
        both(SyncMsg::Peers(vec![peer]), &want);
    }

    #[test]
    fn golden_policy_and_status_bytes() {
        // docs/protocol.md §8.3 and §8.9.
        let enc = |op: Op| codec::encode(&op).unwrap();
        assert_eq!(enc(Op::Meta(Meta::Copies(Copies::Min(3)))), [4, 2, 0, 3]);
        assert_eq!(enc(Op::Meta(Meta::Copies(Copies::Full))), [4, 2, 1]);
        let st = SyncMsg::Status(Status {
            full: true,
            reset: true,
            heartbeat_ms: 300,
            add: vec![Hash::from_bytes([9; 32])],
            remove: vec![],
        });
        let mut want = vec![4, 1, 1, 0xac, 0x02, 1];
        want.extend([9u8; 32]);
        want.push(0);
        assert_eq!(codec::encode(&st).unwrap(), want);
        assert_eq!(codec::decode::<SyncMsg>(&want).unwrap(), st);
        assert_eq!(codec::encode(&SyncMsg::Leaving).unwrap(), [5]);
        assert_eq!(codec::encode(&SyncMsg::Goodbye).unwrap(), [6]);
        assert_eq!(codec::decode::<SyncMsg>(&[6]).unwrap(), SyncMsg::Goodbye);
        let big = SyncMsg::Status(Status {
            add: vec![Hash::from_bytes([1; 32]); MAX_STATUS_HASHES + 1],
            ..Status::default()
        });
        assert!(big.check().is_err());
        assert!(codec::encode(&big).unwrap().len() < MAX_SYNC_FRAME);
    }

    #[test]
    fn golden_presence_bytes() {
        // docs/protocol.md §8.10.
        let body = PresenceBody {
            origin: NodeId::from_bytes([1; 32]),
            member: [2; 32],
            run: 300,
            seq: 1,
            phase: PresencePhase::Leaving,
            status: Status {
                full: false,
                reset: true,
                heartbeat_ms: 300,
                add: vec![],
                remove: vec![],
            },
        };
        let mut want = vec![1u8; 32];
        want.extend([2u8; 32]);
        want.extend([0xac, 0x02, 0x01, 0x01, 0x00, 0x01, 0xac, 0x02, 0x00, 0x00]);
        assert_eq!(codec::encode(&body).unwrap(), want);
        let p = Presence {
            body: want.clone(),
            sig: Signature([7; 64]),
        };
        assert_eq!(p.decode_body().unwrap(), body);
        let mut msg = vec![7, want.len() as u8];
        msg.extend(&want);
        msg.extend([7u8; 64]);
        let m = SyncMsg::Presence(p);
        assert_eq!(codec::encode(&m).unwrap(), msg);
        assert_eq!(codec::decode::<SyncMsg>(&msg).unwrap(), m);
        assert_eq!(PresencePhase::Running as u8, 0);
        assert_eq!(codec::encode(&PresencePhase::Gone).unwrap(), [2]);
        let room = RoomId::from_bytes([3; 32]);
        let signed = presence_message(&room, &[9]);
        assert_eq!(&signed[..23], b"p2pfs room presence v1\0");
        assert_eq!(&signed[23..55], &[3; 32]);
        assert_eq!(&signed[55..], &[9]);
        let big = SyncMsg::Presence(Presence {
            body: vec![0; MAX_PRESENCE + 1],
            sig: Signature([0; 64]),
        });
        assert!(big.check().is_err());
        assert!(codec::encode(&big).unwrap().len() < MAX_SYNC_FRAME);
    }

    #[test]
    fn golden_presence_digest_bytes() {
        // docs/protocol.md §8.10: variant 8, a count, then each head: the
        // origin's 32 bytes, run and seq as varints.
        let m = SyncMsg::PresenceDigest(vec![PresenceHead {
            origin: NodeId::from_bytes([1; 32]),
            run: 300,
            seq: 2,
        }]);
        let mut want = vec![8u8, 1];
        want.extend([1u8; 32]);
        want.extend([0xac, 0x02, 0x02]);
        assert_eq!(codec::encode(&m).unwrap(), want);
        assert_eq!(codec::decode::<SyncMsg>(&want).unwrap(), m);
        // The most heads fit one frame, with the largest runs and seqs.
        let full = SyncMsg::PresenceDigest(vec![
            PresenceHead {
                origin: NodeId::from_bytes([0xff; 32]),
                run: u64::MAX,
                seq: u64::MAX,
            };
            MAX_PRESENCE_HEADS
        ]);
        assert!(full.check().is_ok());
        assert!(codec::encode(&full).unwrap().len() < MAX_SYNC_FRAME);
        let over = SyncMsg::PresenceDigest(vec![
            PresenceHead {
                origin: NodeId::from_bytes([0; 32]),
                run: 0,
                seq: 0,
            };
            MAX_PRESENCE_HEADS + 1
        ]);
        assert!(over.check().is_err());
    }

    #[test]
    fn golden_symlink_bytes() {
        // docs/protocol.md §8.3: Op::Symlink is variant 5.
        let op = Op::Symlink {
            path: "l".into(),
            target: "../x".into(),
            replaces: vec![],
        };
        assert_eq!(
            codec::encode(&op).unwrap(),
            [5, 1, b'l', 4, b'.', b'.', b'/', b'x', 0]
        );
        let ok = |target: &str| {
            body(Op::Symlink {
                path: "l".into(),
                target: target.into(),
                replaces: vec![],
            })
            .check()
            .is_ok()
        };
        assert!(ok("/abs/olute") && ok("x") && ok(&"y".repeat(MAX_TARGET)));
        assert!(!ok("") && !ok("a\0b") && !ok(&"y".repeat(MAX_TARGET + 1)));
    }

    #[test]
    fn golden_file_and_dir_bytes() {
        // docs/protocol.md §8.3: Op::File is variant 6, Op::Dir 7.
        let attr = Attr {
            mode: 0o644,
            mtime: Time { secs: 1, nanos: 5 },
            atime: Time { secs: -1, nanos: 0 },
            ctime: Time { secs: 2, nanos: 0 },
        };
        let op = Op::File {
            path: "f".into(),
            hash: Hash::from_bytes([0x22; 32]),
            size: 3,
            attr,
            inode: [0x11; 16],
            replaces: vec![],
        };
        let mut want = vec![6, 1, b'f'];
        want.extend([0x22; 32]);
        want.extend([3, 0xa4, 0x03, 2, 5, 1, 0, 4, 0]);
        want.extend([0x11; 16]);
        want.push(0);
        assert_eq!(codec::encode(&op).unwrap(), want);
        let dir = Op::Dir {
            path: "d".into(),
            attr: Attr {
                mode: 0o755,
                ..Attr::default()
            },
            replaces: vec![],
        };
        assert_eq!(
            codec::encode(&dir).unwrap(),
            [7, 1, b'd', 0xed, 0x03, 0, 0, 0, 0, 0, 0, 0]
        );
        let ok = |attr: Attr| {
            body(Op::Dir {
                path: "d".into(),
                attr,
                replaces: vec![],
            })
            .check()
            .is_ok()
        };
        assert!(
            ok(attr)
                && ok(Attr {
                    mode: MAX_MODE,
                    ..attr
                })
        );
        assert!(!ok(Attr {
            mode: 0o10000,
            ..attr
        }));
        let late = Time {
            secs: 0,
            nanos: 1_000_000_000,
        };
        assert!(
            !ok(Attr {
                mtime: late,
                ..attr
            }) && !ok(Attr {
                atime: late,
                ..attr
            })
        );
        assert!(!ok(Attr {
            ctime: late,
            ..attr
        }));
        // Op::SymlinkAt is variant 8.
        let link = Op::SymlinkAt {
            path: "l".into(),
            target: "x".into(),
            attr: Attr::default(),
            replaces: vec![],
        };
        assert_eq!(
            codec::encode(&link).unwrap(),
            [8, 1, b'l', 1, b'x', 0, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn times_convert_both_ways() {
        use std::time::{Duration, UNIX_EPOCH};
        for t in [
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
            UNIX_EPOCH - Duration::new(1, 0),
            UNIX_EPOCH - Duration::new(5, 250_000_000),
        ] {
            assert_eq!(Time::from_system(t).to_system(), t);
        }
        assert_eq!(
            Time::from_system(UNIX_EPOCH - Duration::from_millis(1250)),
            Time {
                secs: -2,
                nanos: 750_000_000
            }
        );
        assert_eq!(Time::from_millis(1_234).as_millis(), 1_234);
    }

    #[test]
    fn copies_parse_and_print() {
        for (s, c) in [
            ("2", Copies::Min(2)),
            ("copies=3", Copies::Min(3)),
            ("full", Copies::Full),
            ("copies=FULL", Copies::Full),
        ] {
            assert_eq!(s.parse::<Copies>(), Ok(c), "{s}");
            assert_eq!(c.to_string().parse::<Copies>(), Ok(c));
        }
        for bad in ["0", "65", "copies=", "x", "-1", "copies=2x"] {
            assert!(bad.parse::<Copies>().is_err(), "{bad}");
        }
        let ok = |c| body(Op::Meta(Meta::Copies(c))).check().is_ok();
        assert!(ok(Copies::Min(1)) && ok(Copies::Min(MAX_COPIES)) && ok(Copies::Full));
        assert!(!ok(Copies::Min(0)) && !ok(Copies::Min(MAX_COPIES + 1)));
    }

    #[test]
    fn bounds() {
        let ok = |op| body(op).check().is_ok();
        assert!(ok(Op::Chat {
            text: "x".repeat(MAX_TEXT)
        }));
        assert!(!ok(Op::Chat {
            text: "x".repeat(MAX_TEXT + 1)
        }));
        assert!(!ok(Op::Chat {
            text: "a\nb".into()
        }));
        let put = |p: &str| Op::Delete {
            path: p.into(),
            replaces: vec![],
        };
        assert!(ok(put("a/b/c.txt")));
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "./a",
            "a/../b",
            "chat.log",
            "chat.log/x",
            "chat.log/x/y",
            "a\u{7}",
        ] {
            assert!(!ok(put(bad)), "{bad:?}");
        }
        assert!(ok(put("sub/chat.log")));
        // Paths longer than a system call's PATH_MAX (a room counts from
        // its top), up to the bound.
        let long = vec!["n".repeat(255); MAX_PATH / 256].join("/");
        assert!(long.len() <= MAX_PATH && long.len() > 4096 && ok(put(&long)));
        assert!(!ok(put(&format!("{long}/{}", "n".repeat(255)))));
        assert!(ok(put(&vec!["a"; MAX_DEPTH].join("/"))));
        assert!(!ok(put(&vec!["a"; MAX_DEPTH + 1].join("/"))));
        let mut b = body(Op::Chat { text: "x".into() });
        b.seq = 1;
        assert!(b.check().is_err(), "a later entry must have parents");
        assert!(!ok(Op::Meta(Meta::MemberName("".into()))));
        assert!(ok(Op::Meta(Meta::MemberName("Ana María".into()))));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = fastrand::Rng::with_seed(5);
        for _ in 0..20_000 {
            let n = rng.usize(0..300);
            let bytes: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
            let _ = Entry::decode(&bytes);
            let _ = codec::decode::<SyncMsg>(&bytes).map(|m| m.check());
            let _ = codec::decode::<Welcome>(&bytes);
        }
    }
}
