//! Reaching peers no packet can reach directly (docs/protocol.md §9).
//!
//! A node behind a symmetric NAT or a firewall cannot be dialed, and two
//! such nodes cannot punch through to each other. They can both reach a
//! third node, though, most often a room member with a public address.
//! That node relays: it forwards the QUIC packets of their connection,
//! which stays end to end (TLS proves each node's id to the other; the
//! relay sees ciphertext).
//!
//! - [`circuit`]: asking a relay for a circuit, and moving packets
//!   between a circuit and the node's socket ([`crate::net::paths`]).
//! - [`punch`]: a relayed connection keeps trying to become direct, by a
//!   hole punch the relay coordinates.
//! - [`serve`]: the relay protocol's handler: relaying for others, and
//!   taking circuits and punches they bring.
//!
//! What a node offers is `--relay` ([`RelayMode`]): members of a room
//! relay for each other without limits, strangers get small ones, as
//! libp2p's circuit relay v2 does.

pub(crate) mod circuit;
pub(crate) mod punch;
mod serve;

use std::time::Duration;

pub(crate) use serve::RelayHandler;
#[cfg(feature = "fuzzing")]
pub(crate) use serve::candidates as serve_candidates;

/// What a node relays for others.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RelayMode {
    /// Relay for nobody.
    Off,
    /// Relay only between members of a room this node is in.
    Members,
    /// Members without limits, and strangers within [`STRANGER_BYTES`] and
    /// [`STRANGER_SECS`] per circuit, [`MAX_STRANGER_CIRCUITS`] at once.
    #[default]
    All,
}

impl std::str::FromStr for RelayMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(Self::Off),
            "members" => Ok(Self::Members),
            "all" | "on" => Ok(Self::All),
            _ => Err(format!("{s:?}: expected off, members or all")),
        }
    }
}

impl std::fmt::Display for RelayMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Off => "off",
            Self::Members => "members",
            Self::All => "all",
        })
    }
}

/// How long a dial tries direct addresses alone before it asks relays too.
pub(crate) const RELAY_AFTER: Duration = Duration::from_millis(1000);

/// Bytes relayed each way on a stranger's circuit.
pub const STRANGER_BYTES: u64 = 1 << 20;

/// Seconds a stranger's circuit lives.
pub const STRANGER_SECS: u32 = 120;

/// Strangers' circuits relayed at once.
pub const MAX_STRANGER_CIRCUITS: usize = 16;

/// Circuits relayed at once, in all.
pub(crate) const MAX_CIRCUITS: usize = 512;

/// Relayed paths a node keeps open at once (circuits it dialed or took).
pub(crate) const MAX_PATHS: usize = 256;

/// Relays asked at once for a circuit.
pub(crate) const ASK_RELAYS: usize = 4;

/// A path with no packet either way for this long is closed (QUIC's
/// keepalives keep a path in use busier than that).
pub(crate) const PATH_IDLE: Duration = Duration::from_secs(40);

/// Time for a relay exchange (request to answer).
pub(crate) const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(8);

/// A stream open on a relay connection, after its answer.
pub(crate) type Exchanged = (
    quinn::SendStream,
    quinn::RecvStream,
    p2pfs_proto::relay::RelayAnswer,
);

/// Opens a stream on `conn`, writes `request` and reads the answer (within
/// [`EXCHANGE_TIMEOUT`], checked): the one exchange every relay request
/// is (docs/protocol.md §9.1). The stream stays open for a circuit's
/// packets.
pub(crate) async fn exchange(
    conn: &crate::net::dial::Conn,
    request: &p2pfs_proto::relay::RelayRequest,
) -> Result<Exchanged, String> {
    use p2pfs_proto::relay::{MAX_RELAY_MESSAGE, RelayAnswer};
    let (mut send, mut recv) = conn.conn.open_bi().await.map_err(|e| e.to_string())?;
    crate::frame::write(&mut send, request)
        .await
        .map_err(|e| e.to_string())?;
    let answer: RelayAnswer = tokio::time::timeout(
        EXCHANGE_TIMEOUT,
        crate::frame::read_max(&mut recv, MAX_RELAY_MESSAGE),
    )
    .await
    .map_err(|_| "no answer".to_string())?
    .map_err(|e| e.to_string())?;
    answer.check()?;
    Ok((send, recv, answer))
}
