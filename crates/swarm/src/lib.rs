//! The network layer of p2pfs: QUIC nodes with Ed25519 identities, the
//! Kademlia DHT, verified blob transfer from many providers, and rooms.
//!
//! It sits between the content store ([`p2pfs_store`]) and the filesystem
//! (`p2pfs-fuse`). Its modules land with the issues that build them; today it
//! only re-exports the layer below so the dependency chain
//! cli → fuse → swarm → store → proto is in place.

pub use p2pfs_store as store;
