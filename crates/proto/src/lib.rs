//! Identifiers and wire types shared by every p2pfs layer.
//!
//! This crate is the vocabulary of the protocol: the content [`Hash`], the
//! identities [`NodeId`] and [`RoomId`], the chunking constants of the
//! verified-streaming tree ([`chunk`]), and the one place where values are
//! turned into bytes and back ([`codec`], postcard with a hard size limit).
//!
//! It does no I/O and has no async code, so every other crate (and a second
//! implementation of the protocol) can rely on it without pulling in a
//! runtime. `docs/protocol.md` describes the same formats in prose.

pub mod chunk;
pub mod codec;
mod hash;
mod id;

pub use hash::Hash;
pub use id::{NodeId, ParseIdError, RoomId};
