//! The command line, as clap sees it.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Parser, Subcommand};

use p2pfs_proto::{Hash, PeerAddr};

use crate::params::{
    Blobs, CreateRoom, ExportRoom, FetchBlob, ImportRoom, JoinRoom, PutFile, RoomFile, RoomMember,
    RoomRef, SetCopies, VerifyBlobs,
};

/// p2pfs: share files with content addressing, verified chunk by chunk.
#[derive(Debug, Parser)]
#[command(name = "p2pfs", version, about, max_term_width = 100)]
pub(crate) struct Cli {
    /// Where p2pfs keeps its store and identity
    /// [default: $XDG_DATA_HOME/p2pfs, or ~/.local/share/p2pfs]
    #[arg(long, global = true, env = "P2PFS_DATA_DIR", value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Add files to the store; prints `HASH  PATH` per file, like b3sum
    Add {
        /// Files to add (`-` reads standard input)
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Add the files inside directories, recursively
        #[arg(short, long)]
        recursive: bool,
        /// Do not pin the added blobs (`p2pfs gc` may then remove them)
        #[arg(long)]
        no_pin: bool,
        /// After each `HASH  PATH` line, print a ticket to fetch the file with
        #[arg(long)]
        ticket: bool,
    },
    /// Add a file and print a ticket others can fetch it with
    Share {
        /// The file
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
    /// Write a blob to FILE as a bundle, to carry it with no network
    /// (`p2pfs import FILE` takes it in, verified)
    Export {
        /// The blob (complete in the store)
        hash: Hash,
        /// The bundle to write (replaced if it exists)
        file: PathBuf,
    },
    /// Take in the blobs of a bundle made by `p2pfs export`, each verified
    /// against its hash; a damaged bundle is refused and nothing is kept
    Import {
        /// The bundle
        file: PathBuf,
    },
    /// Write blobs to standard output
    Cat {
        /// Hashes of the blobs, written one after the other
        #[arg(required = true, value_name = "HASH")]
        hashes: Vec<Hash>,
    },
    /// Download a blob from the peers that have it, verified, and write it out
    Fetch {
        /// Where to write it (`-` for standard output)
        /// [default: the ticket's file name, else the hash, in the current directory]
        #[arg(short, long, value_name = "PATH")]
        output: Option<PathBuf>,
        #[command(flatten)]
        fetch: FetchBlob,
        /// Print a summary with the bytes each provider sent (on stderr)
        #[arg(short, long)]
        verbose: bool,
    },
    /// Run a node in the foreground: serve peers and the other commands
    Daemon {
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Mount the rooms as a filesystem at MOUNTPOINT and run the node
    /// (in the foreground until Ctrl-C, SIGTERM or `umount`)
    Mount {
        /// An empty directory to mount on
        mountpoint: PathBuf,
        /// Run in the background once mounted (output goes to DATA/mount.log)
        #[arg(long)]
        daemon: bool,
        /// Let the other users of this machine use the rooms, as the files'
        /// modes allow (a normal user needs `user_allow_other` in
        /// /etc/fuse.conf) [default: only you]
        #[arg(long)]
        allow_other: bool,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Unmount the rooms mounted at MOUNTPOINT (the mount's node then stops)
    Umount {
        /// Where `p2pfs mount` mounted them
        mountpoint: PathBuf,
        /// Unmount now even if files in it are open (it goes once they close)
        #[arg(short, long)]
        lazy: bool,
    },
    /// Print the link that opens the running node's web page, logged in
    Web,
    /// Rooms: groups sharing files and a chat, joined with a ticket
    Room {
        #[command(subcommand)]
        command: RoomCommand,
    },
    /// Post to a room's chat, or print it
    Chat {
        /// The room (its name, or its id)
        room: String,
        /// The message (one message per line; `-` reads standard input)
        /// [default: print the chat]
        text: Option<String>,
        /// Keep printing new messages as they arrive
        #[arg(short, long)]
        follow: bool,
    },
    /// Show the node's id, addresses, peers and store
    Status {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// List the blobs in the store with their size, completeness and pins
    Ls {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Pin blobs so that `p2pfs gc` keeps them
    Pin(Blobs),
    /// Remove the pins set by `p2pfs add`, `fetch` and `pin`
    Unpin(Blobs),
    /// Remove blobs that are not pinned
    Gc {
        /// Print JSON instead of a summary
        #[arg(long)]
        json: bool,
    },
    /// Re-read blobs and check them against their hashes (all if none given)
    Verify(VerifyBlobs),
}

/// How a long-running node (`daemon`, `mount`) starts.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct NodeArgs {
    /// Address to listen on (UDP) [default: all interfaces, the port used last time]
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: Option<SocketAddr>,
    /// A node to join the network through: IP:PORT or NODEID@IP:PORT
    /// (repeatable; nodes from the last run and the LAN are used too)
    #[arg(long = "peer", value_name = "ADDR")]
    pub(crate) peers: Vec<PeerAddr>,
    /// Most bytes per second to upload to all peers together
    /// (suffixes K, M, G are powers of 1024: `20M`) [default: no limit]
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub(crate) max_upload_rate: Option<u64>,
    /// Do not look for (or announce this node to) nodes on the LAN
    #[arg(long)]
    pub(crate) no_lan: bool,
    /// Where to serve the web page (rooms, files, chat; the gateway for
    /// public blobs at /blob/HASH), or `off`. Off loopback, every request
    /// needs the login token
    #[arg(long, value_name = "ADDR|off", env = "P2PFS_HTTP", default_value = "127.0.0.1:7474",
          value_parser = parse_http)]
    pub(crate) http: Http,
    /// What this node relays for peers that cannot reach each other (behind
    /// NATs): `all` (room members without limits, strangers within small
    /// limits), `members` (only between members of a room of this node), `off`
    #[arg(long, value_name = "WHO", default_value_t = p2pfs_swarm::RelayMode::All)]
    pub(crate) relay: p2pfs_swarm::RelayMode,
    /// Do not ask the home router to forward a port to this node (UPnP IGD, NAT-PMP)
    #[arg(long)]
    pub(crate) no_port_mapping: bool,
    /// Do not use the BitTorrent Mainline DHT (where nodes that know no
    /// other p2pfs node find rooms' members, moved nodes and public blobs)
    #[arg(long)]
    pub(crate) no_mainline: bool,
    /// A Mainline DHT node to join through, HOST:PORT (repeatable)
    /// [default: the BitTorrent network's well-known routers]
    #[arg(long = "mainline-bootstrap", value_name = "HOST:PORT")]
    pub(crate) mainline_bootstrap: Vec<String>,
    /// Your display name in rooms, saved for later runs [default: the host name]
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,
    /// Most bytes of blob data to store: at the cap this node takes on no
    /// more copies of room files, and says so (suffixes K, M, G, T) [default: no cap]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) max_storage: Option<u64>,
    /// A room member not heard from for this long counts as gone, and the
    /// others copy its files again (`90s`, `3m`, `1h`) [default: 3m]
    #[arg(long, value_name = "TIME", value_parser = parse_duration)]
    pub(crate) offline_after: Option<std::time::Duration>,
    /// On stopping, how long to wait for room files that no other member
    /// online keeps to reach one (`0`: do not wait) [default: 60s]
    #[arg(long, value_name = "TIME", value_parser = parse_wait)]
    pub(crate) leave_timeout: Option<std::time::Duration>,
}

/// Where the web page is served (`--http`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Http {
    At(SocketAddr),
    Off,
}

fn parse_http(s: &str) -> Result<Http, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(Http::Off);
    }
    s.parse()
        .map(Http::At)
        .map_err(|_| format!("{s:?}: expected IP:PORT (127.0.0.1:7474) or off"))
}

#[derive(Debug, Subcommand)]
pub(crate) enum RoomCommand {
    /// Create a room and print its ticket (give it to the people to invite)
    Create(CreateRoom),
    /// Join a room with a ticket
    Join(JoinRoom),
    /// List the rooms this node is in
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Print a ticket for a room
    Ticket(RoomRef),
    /// Leave a room: stop syncing it and forget its files and chat here
    Leave(RoomRef),
    /// Publish a file in a room; prints `HASH  NAME`
    Put(PutFile),
    /// Read a file of a room (fetched from the members that have it)
    Get {
        #[command(flatten)]
        file: RoomFile,
        /// Where to write it [default: standard output]
        #[arg(short, long, value_name = "PATH")]
        output: Option<PathBuf>,
    },
    /// Remove a file from a room
    Rm(RoomFile),
    /// List a room's files: path, size, hash, author
    Ls {
        #[command(flatten)]
        room: RoomRef,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Set how many members keep a full copy of each file: `copies=N`
    /// (the default is 2) or `copies=full` (every member mirrors everything)
    Set(SetCopies),
    /// Show each file's complete copies on the members online, flag the
    /// files below their target, and list the members
    Status {
        #[command(flatten)]
        room: RoomRef,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// List the members: role, name, short id, last seen
    Members {
        #[command(flatten)]
        room: RoomRef,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Make a member a moderator (the owner only)
    Promote(RoomMember),
    /// Make a moderator a member again (the owner only)
    Demote(RoomMember),
    /// Remove a member (an owner or moderator): the room's key changes,
    /// the member can no longer see new files or messages, and old tickets
    /// stop admitting anyone
    Remove(RoomMember),
    /// Write a room's log (and with --files its files) to one file, to
    /// carry it with no network; the file grants membership like a ticket
    Export(ExportRoom),
    /// Merge a `room export` file into the room here, or join the room
    /// with it, with no network
    Import(ImportRoom),
    /// Keep a full copy of a room file on this node, whatever the placement
    Pin(RoomFile),
    /// Stop keeping a pinned room file here (placement may still keep it)
    Unpin(RoomFile),
}

impl Command {
    /// The command as typed (`add`, `room put`), to name this process to
    /// others waiting for the store.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Add { .. } => "add",
            Self::Share { .. } => "share",
            Self::Cat { .. } => "cat",
            Self::Export { .. } => "export",
            Self::Import { .. } => "import",
            Self::Fetch { .. } => "fetch",
            Self::Daemon { .. } => "daemon",
            Self::Mount { .. } => "mount",
            Self::Umount { .. } => "umount",
            Self::Web => "web",
            Self::Room { command } => command.name(),
            Self::Chat { .. } => "chat",
            Self::Status { .. } => "status",
            Self::Ls { .. } => "ls",
            Self::Pin(_) => "pin",
            Self::Unpin(_) => "unpin",
            Self::Gc { .. } => "gc",
            Self::Verify(_) => "verify",
        }
    }
}

impl RoomCommand {
    fn name(&self) -> &'static str {
        match self {
            Self::Create(_) => "room create",
            Self::Join(_) => "room join",
            Self::List { .. } => "room list",
            Self::Ticket(_) => "room ticket",
            Self::Leave(_) => "room leave",
            Self::Put(_) => "room put",
            Self::Get { .. } => "room get",
            Self::Rm(_) => "room rm",
            Self::Ls { .. } => "room ls",
            Self::Set(_) => "room set",
            Self::Status { .. } => "room status",
            Self::Members { .. } => "room members",
            Self::Promote(_) => "room promote",
            Self::Demote(_) => "room demote",
            Self::Remove(_) => "room remove",
            Self::Export(_) => "room export",
            Self::Import(_) => "room import",
            Self::Pin(_) => "room pin",
            Self::Unpin(_) => "room unpin",
        }
    }
}

/// Why an option's value does not read (clap prints it after
/// "invalid value … for …").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ValueError {
    /// Not digits and a unit.
    #[error("{0:?} is not a time like 90s, 3m or 1h")]
    NotATime(String),
    /// A time's unit is none of ms, s, m, h.
    #[error("unknown unit {0:?} (use ms, s, m or h)")]
    TimeUnit(String),
    /// A time of zero where zero means nothing.
    #[error("the time must be above zero")]
    ZeroTime,
    /// A time past what a `u64` of milliseconds holds.
    #[error("{0:?} is too long")]
    TooLong(String),
    /// Not digits and a suffix.
    #[error("{0:?} is not a quantity like 500K or 20M")]
    NotAQuantity(String),
    /// A rate's suffix is none of K, M, G.
    #[error("unknown unit {0:?} (use K, M or G)")]
    QuantityUnit(String),
    /// A size's suffix is none of K, M, G, T.
    #[error("unknown unit {0:?} (use K, M, G or T)")]
    SizeUnit(String),
    /// A quantity of zero.
    #[error("the quantity must be above zero")]
    ZeroQuantity,
    /// A quantity past what a `u64` holds.
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// Parses a byte rate: digits with an optional K, M or G suffix (powers of
/// 1024, an optional trailing `B` or `/s` allowed).
pub(crate) fn parse_rate(s: &str) -> Result<u64, ValueError> {
    let t = s.trim();
    parse_bytes(t.strip_suffix("/s").unwrap_or(t), s, false)
}

/// Parses a size: digits with an optional K, M, G or T suffix (powers of
/// 1024, an optional trailing `B`).
pub(crate) fn parse_size(s: &str) -> Result<u64, ValueError> {
    parse_bytes(s.trim(), s, true)
}

/// A time like [`parse_duration`], or `0` for none.
pub(crate) fn parse_wait(s: &str) -> Result<std::time::Duration, ValueError> {
    if s.trim() == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    parse_duration(s)
}

/// Parses a duration: digits with an optional `s`, `m` or `h` (seconds by
/// default, `ms` for milliseconds).
pub(crate) fn parse_duration(s: &str) -> Result<std::time::Duration, ValueError> {
    let t = s.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| ValueError::NotATime(s.to_string()))?;
    let ms = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => return Err(ValueError::TimeUnit(unit.to_string())),
    };
    match ms {
        Some(0) => Err(ValueError::ZeroTime),
        Some(ms) => Ok(std::time::Duration::from_millis(ms)),
        None => Err(ValueError::TooLong(s.to_string())),
    }
}

fn parse_bytes(t: &str, s: &str, tera: bool) -> Result<u64, ValueError> {
    let t = t
        .strip_suffix(['B', 'b'])
        .filter(|r| r.ends_with(|c: char| c.is_ascii_alphabetic()))
        .unwrap_or(t);
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KI" => 10,
        "M" | "MI" => 20,
        "G" | "GI" => 30,
        "T" | "TI" if tera => 40,
        _ if tera => return Err(ValueError::SizeUnit(unit.to_string())),
        _ => return Err(ValueError::QuantityUnit(unit.to_string())),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| ValueError::NotAQuantity(s.to_string()))?;
    match n.checked_mul(1 << shift) {
        Some(0) => Err(ValueError::ZeroQuantity),
        Some(v) => Ok(v),
        None => Err(ValueError::TooLarge(s.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("1000"), Ok(1000));
        assert_eq!(parse_rate("20M"), Ok(20 << 20));
        assert_eq!(parse_rate("500k"), Ok(500 << 10));
        assert_eq!(parse_rate("1G/s"), Ok(1 << 30));
        assert_eq!(parse_rate("2MiB"), Ok(2 << 20));
        assert_eq!(parse_rate("3MB"), Ok(3 << 20));
        for bad in ["", "M", "0", "1T", "x1", "-5", "99999999999999999G"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert!(parse_size("1P").is_err() && parse_size("0").is_err());
        let d = std::time::Duration::from_secs;
        assert_eq!(parse_duration("90"), Ok(d(90)));
        assert_eq!(parse_duration("90s"), Ok(d(90)));
        assert_eq!(parse_duration("3m"), Ok(d(180)));
        assert_eq!(parse_duration("1h"), Ok(d(3600)));
        assert_eq!(
            parse_duration("500ms"),
            Ok(std::time::Duration::from_millis(500))
        );
        for bad in ["", "s", "0", "3d", "-1s", "99999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn messages_as_users_see_them() {
        fn said<T>(r: Result<T, ValueError>) -> Option<String> {
            r.err().map(|e| e.to_string())
        }
        for (got, want) in [
            (said(parse_rate("0")), "the quantity must be above zero"),
            (
                said(parse_rate("1T")),
                r#"unknown unit "T" (use K, M or G)"#,
            ),
            (
                said(parse_size("1P")),
                r#"unknown unit "P" (use K, M, G or T)"#,
            ),
            (
                said(parse_rate("M")),
                r#""M" is not a quantity like 500K or 20M"#,
            ),
            (
                said(parse_rate("99999999999999999G")),
                r#""99999999999999999G" is too large"#,
            ),
        ] {
            assert_eq!(got.as_deref(), Some(want));
        }
        for (got, want) in [
            (said(parse_duration("0")), "the time must be above zero"),
            (
                said(parse_duration("3d")),
                r#"unknown unit "d" (use ms, s, m or h)"#,
            ),
            (
                said(parse_duration("s")),
                r#""s" is not a time like 90s, 3m or 1h"#,
            ),
            (
                said(parse_duration("99999999999999999h")),
                r#""99999999999999999h" is too long"#,
            ),
        ] {
            assert_eq!(got.as_deref(), Some(want));
        }
        assert_eq!(parse_wait("0"), Ok(std::time::Duration::ZERO));
    }
}
