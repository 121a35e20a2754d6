//! Identifiers and wire types shared by every p2pfs layer.
//!
//! This crate is the vocabulary of the protocol: the content [`Hash`], the
//! identities [`NodeId`] and [`RoomId`], peer addresses and tickets, the
//! chunking constants of the verified-streaming tree ([`chunk`]), the blob
//! protocol's messages ([`blobs`]), the DHT's ([`dht`]), rooms' tickets, log entries and sync ([`room`]), the relay's ([`relay`]), what goes in the Mainline DHT ([`mainline`]), the close codes ([`close`]), and the one
//! place where values are turned into bytes and back ([`codec`], postcard
//! with a hard size limit).
//!
//! It does no I/O and has no async code, so every other crate (and a second
//! implementation of the protocol) can rely on it without pulling in a
//! runtime. `docs/protocol.md` describes the same formats in prose.

mod addr;
pub mod blobs;
pub mod chunk;
pub mod close;
pub mod codec;
pub mod dht;
mod hash;
mod id;
pub mod mainline;
pub mod moderation;
mod ranges;
pub mod relay;
pub mod room;
pub mod ticket;

pub use addr::{MAX_ADDRS, NodeAddr, ParsePeerAddrError, PeerAddr};
pub use hash::Hash;
pub use id::{NodeId, ParseIdError, RoomId};
pub use ranges::{MAX_BOUNDARIES, RangeSpec, RangeSpecError};
pub use room::{RoomSecret, RoomTicket};
pub use ticket::BlobTicket;
