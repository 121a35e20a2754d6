//! The Kademlia DHT: finding the providers of a hash and the nodes near a
//! key with no boot server.
//!
//! The protocol logic has no I/O and no clock of its own, so it runs
//! unchanged in the node and in the simulator:
//! - [`key`]: the keyspace and the XOR metric;
//! - [`table`]: the routing table (k-buckets, liveness checks, address
//!   limits);
//! - [`lookup`]: the iterative lookup state machine;
//! - [`rtt`]: adaptive request timeouts;
//! - [`sim`]: a deterministic simulated network of thousands of nodes.
//!
//! The I/O around it (ALPN `p2pfs/dht/1`, docs/protocol.md §7):
//! - `rpc`: asking a node one query; `service`: answering queries;
//! - `records`: provider records kept in the store, with their limits;
//! - `runtime`: the table and lookups in a running node, joining,
//!   announcing and upkeep; `lan`: the LAN multicast beacon; [`mdns`]: mDNS /
//!   DNS-SD on the LAN, beside it.

pub mod key;
pub(crate) mod lan;
pub mod lookup;
pub mod mdns;
pub mod records;
pub(crate) mod rpc;
pub mod rtt;
pub mod runtime;
pub(crate) mod service;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod table;

pub use key::{Distance, Key};
pub use lookup::{Lookup, LookupConfig};
pub use records::RecordLimits;
pub use rtt::RttEstimator;
pub use runtime::DhtStatus;

pub use crate::config::DhtConfig;
pub use table::{RoutingTable, Seen, TableConfig};
