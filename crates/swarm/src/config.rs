//! How a node is configured: where it listens, what it allows its peers,
//! how it takes part in the DHT and in keeping rooms' files.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use crate::{Target, dht::records::RecordLimits};

/// What a node allows its peers, so that none can cost it unbounded memory
/// or starve the others.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Inbound connections in all.
    pub max_connections: usize,
    /// Inbound connections from one IP address.
    pub max_connections_per_ip: usize,
    /// Concurrent streams (requests) a peer may open on a connection.
    pub max_streams_per_connection: u32,
    /// Time a peer has to send its request after opening a stream.
    pub request_timeout: Duration,
    /// Time a transfer may make no progress before it is abandoned.
    pub stall_timeout: Duration,
    /// A connection with no traffic at all is closed after this.
    pub idle_timeout: Duration,
    /// Uploads (encoding and sending ranges) running at once, in all.
    pub max_uploads: usize,
    /// Uploads running at once for one peer.
    pub max_uploads_per_peer: usize,
    /// Bytes per second sent to all peers together (`None`: no limit).
    pub max_upload_rate: Option<u64>,
    /// The congestion controller of every connection.
    pub congestion: Congestion,
}

/// A QUIC congestion controller.
///
/// BBR is the default: on a path with 50 ms round trips and 1 % random
/// loss (`bench/net.sh`) CUBIC, which reads every loss as congestion,
/// fetched at 0.02× a 100 Mbit/s link and BBR at 0.71–0.85×. On loopback
/// BBR costs a little: `bench/transfer.sh 3` measured 0.81× a bare quinn
/// transfer and 1.43× libtorrent with BBR, 0.89× and 1.48× with CUBIC
/// (two runs minutes apart). `P2PFS_CONGESTION=cubic` goes
/// back to quinn's default (BBR does not yield to other traffic the way
/// a loss-based controller does; `--max-upload-rate` caps it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Congestion {
    /// CUBIC (RFC 9438), loss-based: quinn's default.
    Cubic,
    /// BBR (v1, quinn's port of quiche's, marked experimental there),
    /// model-based: keeps a lossy path full.
    #[default]
    Bbr,
}

impl std::str::FromStr for Congestion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "cubic" => Ok(Self::Cubic),
            "bbr" => Ok(Self::Bbr),
            _ => Err(format!("{s:?}: expected cubic or bbr")),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            max_connections_per_ip: 32,
            max_streams_per_connection: 64,
            request_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(30),
            max_uploads: 32,
            max_uploads_per_peer: 8,
            max_upload_rate: None,
            congestion: Congestion::default(),
        }
    }
}

/// How to start a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The identity key file (created if missing).
    pub key_path: PathBuf,
    /// Where to listen; `None` for the IPv6+IPv4 wildcard on `default_port`.
    pub listen: Option<SocketAddr>,
    /// The port to try first when `listen` is `None` (0: any).
    pub default_port: u16,
    /// Limits on what peers may do.
    pub limits: Limits,
    /// How the node takes part in the DHT.
    pub dht: DhtConfig,
    /// The name shown for this node in rooms (`None`: the host name).
    pub display_name: Option<String>,
    /// Take part in keeping rooms' files (a daemon or a mount); `None` for
    /// a node started for one command.
    pub replica: Option<ReplicaConfig>,
    /// Delay every datagram sent (an emulated link, for tests on one
    /// machine; see [`crate::link`]).
    pub link_delay: Option<crate::link::LinkDelay>,
    /// What the node relays for others.
    pub relay: crate::relay::RelayMode,
    /// How the node takes part in the BitTorrent Mainline DHT.
    pub mainline: crate::mainline::MainlineConfig,
    /// Ask the home router to map a port to the node (UPnP IGD).
    pub port_mapping: bool,
}

/// How the node takes part in the DHT.
#[derive(Debug, Clone)]
pub struct DhtConfig {
    /// Serve the DHT: be added to routing tables, keep records, announce
    /// blobs, remember nodes across restarts. A node started for one
    /// command is a client.
    pub server: bool,
    /// Nodes to join through (`--peer`, tickets).
    pub bootstrap: Vec<Target>,
    /// Find and be found by nodes on the LAN (UDP multicast).
    pub lan: bool,
    /// Record bounds.
    pub records: RecordLimits,
}

impl Default for DhtConfig {
    fn default() -> Self {
        Self {
            server: true,
            bootstrap: Vec::new(),
            lan: false,
            records: RecordLimits::default(),
        }
    }
}

/// How a node takes part in keeping rooms' files.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// A member not heard from for this long is offline for placement.
    pub offline_after: Duration,
    /// Most bytes of blob data the store may hold before this node takes
    /// on no more copies (`None`: no cap).
    pub max_storage: Option<u64>,
    /// How long stopping waits for the files only this node keeps to
    /// reach another member ([`crate::Node::leave`]).
    pub leave_timeout: Duration,
}

/// The offline timeout when none is set.
pub const DEFAULT_OFFLINE_AFTER: Duration = Duration::from_secs(180);
/// How long stopping waits for copies when no time is set.
pub const DEFAULT_LEAVE_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for ReplicaConfig {
    fn default() -> Self {
        Self {
            offline_after: DEFAULT_OFFLINE_AFTER,
            max_storage: None,
            leave_timeout: DEFAULT_LEAVE_TIMEOUT,
        }
    }
}

impl ReplicaConfig {
    /// How often a replica sends its status: six per offline timeout.
    pub fn heartbeat(&self) -> Duration {
        (self.offline_after / 6).clamp(Duration::from_millis(100), Duration::from_secs(30))
    }
}
