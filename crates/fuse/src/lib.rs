//! The p2pfs FUSE filesystem: each room a directory, `cp` publishes, reads
//! fetch verified chunk groups on demand, `chat.log` is the room's chat.
//!
//! Built on the network layer ([`p2pfs_swarm`]); its modules land with the
//! mount issue. Today it only re-exports the layer below so the dependency
//! chain cli → fuse → swarm → store → proto is in place.

pub use p2pfs_swarm as swarm;
