//! Moderated rooms (docs/protocol.md §8.11): who owns a room, the
//! moderators the owner names, and epochs: a removal (or the merge of
//! epochs that crossed) starts a new room key, wrapped for each remaining
//! member, so the removed cannot prove membership again.
//!
//! - The owner is the room's creator. A room made by this version has a
//!   secret derived from its creator's id and a nonce
//!   ([`RoomSecret::for_owner`]); the creator's first entry reveals the
//!   nonce (`Meta::Owner`), which every member checks against the secret.
//!   No one else can find a nonce that gives the same secret.
//! - `Meta::Role` entries, by the owner only, make a member a moderator or
//!   a member again.
//! - An [`Epoch`] entry, by the owner or a moderator (or by any member when
//!   it only merges epochs), removes members and carries the new key.

use serde::{Deserialize, Serialize};

use crate::{Hash, NodeId, room::RoomSecret};

/// What a member may do in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads and writes files and chat.
    Member,
    /// A member who may also remove members (not moderators, not the owner).
    Moderator,
    /// The creator: names moderators, removes anyone but itself.
    Owner,
}

impl Role {
    /// The word for it (`member`, `moderator`, `owner`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Moderator => "moderator",
            Role::Owner => "owner",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Most members one epoch entry removes.
pub const MAX_REMOVED: usize = 64;
/// Most epochs an epoch entry follows.
pub const MAX_AFTER: usize = 32;
/// Most members an epoch's key is wrapped for.
pub const MAX_WRAPS: usize = 1500;
/// Most bytes of an encoded entry carrying an [`Epoch`] (the wraps make it
/// larger than the others).
pub const MAX_EPOCH_ENTRY: usize = 192 * 1024;
/// Bytes of a wrapped key: the 32-byte key sealed with a 16-byte tag.
pub const SEALED_LEN: usize = 48;
/// The HPKE `info` of a key wrap (RFC 9180; docs/protocol.md §8.11).
pub const WRAP_INFO: &[u8] = b"p2pfs room key wrap v1";
/// Context of the secret of a room with an owner.
pub const CONTEXT_OWNED: &str = "p2pfs room secret v1 owned by";
/// Context of the key members prove membership with in an epoch.
pub const CONTEXT_EPOCH_AUTH: &str = "p2pfs room epoch auth v1";

/// An epoch's key, as a ticket carries it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochKey {
    /// The epoch: the hash of its entry.
    pub epoch: Hash,
    /// Its key.
    pub key: [u8; 32],
}

impl std::fmt::Debug for EpochKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EpochKey({})", self.epoch.fmt_short())
    }
}

/// A member removed, and how many of its entries stay: those numbered
/// below `keep`; the later ones are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    /// Who.
    pub member: NodeId,
    /// Its entries numbered `0..keep` stay in the log.
    pub keep: u64,
}

/// The epoch's key for one member: HPKE base mode (DHKEM(X25519,
/// HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305) to the X25519 form of its
/// Ed25519 id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wrap {
    /// For whom.
    pub member: NodeId,
    /// The HPKE encapsulated key.
    pub enc: [u8; 32],
    /// The sealed key ([`SEALED_LEN`] bytes).
    pub sealed: Vec<u8>,
}

/// A new epoch: members removed, and the new key for the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Epoch {
    /// Members removed by this entry (none when it merges epochs that
    /// crossed).
    pub removed: Vec<Removal>,
    /// The epochs this one follows: the epoch entries its author knew no
    /// later epoch of (none for a room's first).
    pub after: Vec<Hash>,
    /// The new key, for each member that stays.
    pub wraps: Vec<Wrap>,
}

impl Epoch {
    /// Checks the bounds of its fields.
    pub fn check(&self) -> Result<(), String> {
        if self.removed.len() > MAX_REMOVED {
            return Err(format!("an epoch removing {} members", self.removed.len()));
        }
        if self.after.len() > MAX_AFTER {
            return Err(format!("an epoch after {} epochs", self.after.len()));
        }
        if self.wraps.is_empty() || self.wraps.len() > MAX_WRAPS {
            return Err(format!("an epoch wrapped for {} members", self.wraps.len()));
        }
        if self.wraps.iter().any(|w| w.sealed.len() != SEALED_LEN) {
            return Err("a wrapped key of the wrong size".into());
        }
        if self
            .wraps
            .iter()
            .any(|w| self.removed.iter().any(|r| r.member == w.member))
        {
            return Err("an epoch wrapping its key for a member it removes".into());
        }
        Ok(())
    }
}

impl RoomSecret {
    /// The secret of a room created by `owner` with `nonce`: the creator
    /// proves it made the room by revealing the nonce.
    pub fn for_owner(owner: &NodeId, nonce: &[u8; 32]) -> RoomSecret {
        let mut h = blake3::Hasher::new_derive_key(CONTEXT_OWNED);
        h.update(owner.as_bytes());
        h.update(nonce);
        RoomSecret(*h.finalize().as_bytes())
    }

    /// Whether `owner` with `nonce` made this room.
    pub fn is_owned_by(&self, owner: &NodeId, nonce: &[u8; 32]) -> bool {
        RoomSecret::for_owner(owner, nonce) == *self
    }
}

/// The key members prove membership with in the epoch whose key is `key`
/// (in epoch 0, the room's first, it is [`RoomSecret::auth_key`]).
pub fn epoch_auth_key(key: &[u8; 32]) -> [u8; 32] {
    blake3::derive_key(CONTEXT_EPOCH_AUTH, key)
}

/// The proof of membership on a connection under an auth key (see
/// [`RoomSecret::connection_proof`]).
pub fn connection_proof(auth_key: &[u8; 32], exporter: &[u8; 32], dialer: bool) -> [u8; 32] {
    let mut h = blake3::Hasher::new_keyed(auth_key);
    h.update(crate::room::PROOF_DOMAIN);
    h.update(&[u8::from(dialer)]);
    h.update(exporter);
    *h.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_creator_reveals_a_nonce_for_the_secret() {
        let (a, b) = (NodeId::from_bytes([1; 32]), NodeId::from_bytes([2; 32]));
        let s = RoomSecret::for_owner(&a, &[9; 32]);
        assert!(s.is_owned_by(&a, &[9; 32]));
        assert!(!s.is_owned_by(&b, &[9; 32]));
        assert!(!s.is_owned_by(&a, &[8; 32]));
    }

    #[test]
    fn proofs_under_the_room_key_are_the_epoch_zero_proofs() {
        let s = RoomSecret([7; 32]);
        let x = [3u8; 32];
        assert_eq!(
            connection_proof(&s.auth_key(), &x, true),
            s.connection_proof(&x, true)
        );
        assert_ne!(epoch_auth_key(&s.0), s.auth_key());
    }

    #[test]
    fn an_epoch_cannot_wrap_for_whom_it_removes() {
        let m = NodeId::from_bytes([4; 32]);
        let wrap = Wrap {
            member: m,
            enc: [0; 32],
            sealed: vec![0; SEALED_LEN],
        };
        let mut e = Epoch {
            removed: vec![],
            after: vec![],
            wraps: vec![wrap],
        };
        assert!(e.check().is_ok());
        e.removed.push(Removal { member: m, keep: 1 });
        assert!(e.check().is_err());
        e.removed.clear();
        e.wraps[0].sealed.pop();
        assert!(e.check().is_err());
    }
}
