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

pub mod key;
pub mod lookup;
pub mod rtt;
pub mod sim;
pub mod table;

pub use key::{Distance, Key};
pub use lookup::{Lookup, LookupConfig};
pub use rtt::RttEstimator;
pub use table::{RoutingTable, Seen, TableConfig};
