//! Wrapping an epoch's key for each member (docs/protocol.md §8.11):
//! HPKE base mode (RFC 9180: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//! ChaCha20-Poly1305) to the X25519 form of the member's Ed25519 id, the
//! room id and the epoch's place as associated data.

use curve25519_dalek::edwards::CompressedEdwardsY;
use hpke::{
    Deserializable, OpModeR, OpModeS, Serializable, aead::ChaCha20Poly1305, kdf::HkdfSha256,
    kem::X25519HkdfSha256,
};
use p2pfs_proto::{
    NodeId, RoomId,
    moderation::{SEALED_LEN, WRAP_INFO, Wrap},
};

use crate::identity::SecretKey;

type Kem = X25519HkdfSha256;

/// Why a key could not be wrapped or unwrapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WrapError {
    /// The id is not a point of the curve: no key can be wrapped for it.
    #[error("node id {0} is not an Ed25519 public key")]
    BadId(String),
    /// The wrap does not open with this node's key.
    #[error("the epoch key wrapped for this node does not open")]
    Open,
    /// HPKE failed to seal.
    #[error("sealing an epoch key failed")]
    Seal,
}

/// The X25519 public key of an Ed25519 id (its Montgomery form).
fn x25519_public(id: &NodeId) -> Result<<Kem as hpke::Kem>::PublicKey, WrapError> {
    let bad = || WrapError::BadId(id.fmt_short());
    let point = CompressedEdwardsY(*id.as_bytes())
        .decompress()
        .ok_or_else(bad)?;
    <Kem as hpke::Kem>::PublicKey::from_bytes(&point.to_montgomery().to_bytes()).map_err(|_| bad())
}

/// The X25519 secret key of an Ed25519 key: the clamped first half of
/// SHA-512 of its seed (RFC 8032 §5.1.5), the scalar its public key is
/// made with.
fn x25519_secret(key: &SecretKey) -> Result<<Kem as hpke::Kem>::PrivateKey, WrapError> {
    let h = ring::digest::digest(&ring::digest::SHA512, key.seed());
    <Kem as hpke::Kem>::PrivateKey::from_bytes(&h.as_ref()[..32]).map_err(|_| WrapError::Open)
}

/// The associated data of a wrap: the room and the member.
fn aad(room: &RoomId, member: &NodeId) -> Vec<u8> {
    let mut a = Vec::with_capacity(64);
    a.extend_from_slice(room.as_bytes());
    a.extend_from_slice(member.as_bytes());
    a
}

/// Seals `key` for `member` of `room`.
pub(crate) fn seal(room: &RoomId, member: &NodeId, key: &[u8; 32]) -> Result<Wrap, WrapError> {
    let pk = x25519_public(member)?;
    let (enc, sealed) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, Kem>(
        &OpModeS::Base,
        &pk,
        WRAP_INFO,
        key,
        &aad(room, member),
    )
    .map_err(|_| WrapError::Seal)?;
    if sealed.len() != SEALED_LEN {
        return Err(WrapError::Seal);
    }
    let mut e = [0u8; 32];
    e.copy_from_slice(&enc.to_bytes());
    Ok(Wrap {
        member: *member,
        enc: e,
        sealed,
    })
}

/// Opens the wrap meant for the node of `key`.
pub(crate) fn open(room: &RoomId, key: &SecretKey, wrap: &Wrap) -> Result<[u8; 32], WrapError> {
    let sk = x25519_secret(key)?;
    let enc =
        <Kem as hpke::Kem>::EncappedKey::from_bytes(&wrap.enc).map_err(|_| WrapError::Open)?;
    let plain = hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, Kem>(
        &OpModeR::Base,
        &sk,
        &enc,
        WRAP_INFO,
        &wrap.sealed,
        &aad(room, &wrap.member),
    )
    .map_err(|_| WrapError::Open)?;
    <[u8; 32]>::try_from(plain.as_slice()).map_err(|_| WrapError::Open)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrap_opens_for_its_member_only() {
        let room = RoomId::from_bytes([3; 32]);
        let (a, b) = (
            SecretKey::generate().unwrap(),
            SecretKey::generate().unwrap(),
        );
        let w = seal(&room, &a.public(), &[7; 32]).unwrap();
        assert_eq!(open(&room, &a, &w).unwrap(), [7; 32]);
        assert_eq!(open(&room, &b, &w), Err(WrapError::Open));
        // Moved to another room, or to another member: refused.
        assert_eq!(
            open(&RoomId::from_bytes([4; 32]), &a, &w),
            Err(WrapError::Open)
        );
        let mut moved = w.clone();
        moved.member = b.public();
        assert_eq!(open(&room, &b, &moved), Err(WrapError::Open));
        let mut flipped = w;
        flipped.sealed[0] ^= 1;
        assert_eq!(open(&room, &a, &flipped), Err(WrapError::Open));
    }
}

#[cfg(test)]
mod vectors {
    use p2pfs_proto::{
        RoomSecret,
        moderation::{Epoch, Removal, Role, Wrap, epoch_auth_key},
        room::{Meta, Op},
    };

    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn the_protocol_documents_the_epoch_vectors() {
        // docs/protocol.md §8.11.
        let doc = include_str!("../../../../docs/protocol.md");
        let has = |row: &str| assert!(doc.contains(row), "docs/protocol.md lacks {row}");
        let owner = RoomSecret::for_owner(&NodeId::from_bytes([1; 32]), &[9; 32]);
        has(&format!(
            "| `for_owner(01…01, 09…09)` | `{}` |",
            hex(&owner.0)
        ));
        has(&format!(
            "| epoch auth key of key `07…07` | `{}` |",
            hex(&epoch_auth_key(&[7; 32]))
        ));
        let one = SecretKey::from_seed([1; 32]).unwrap();
        has(&format!(
            "| X25519 public key of `id(1)` | `{}` |",
            hex(&x25519_public(&one.public()).unwrap().to_bytes())
        ));
        let enc = "a1f08ad62a1c221975886c11ddb4ee9d96968e7cf7d39cc442c37d0172a17d5c";
        let sealed = "1b540b23fb1be5ecd2bbb8384177a2895c0604b345715127f065fd3df3e0cdfd853986af37461fe72edb90c2c7bff74c";
        has(&format!(
            "| the wrap of key `07…07` for `id(1)` in room `03…03` with `enc` `{enc}` | `{sealed}` |"
        ));
        let w = Wrap {
            member: one.public(),
            enc: unhex(enc).try_into().unwrap(),
            sealed: unhex(sealed),
        };
        assert_eq!(
            open(&RoomId::from_bytes([3; 32]), &one, &w).unwrap(),
            [7; 32]
        );
        // The encodings of the table.
        let enc_op = |op: &Op| p2pfs_proto::codec::encode(op).unwrap();
        let role = Op::Meta(Meta::Role {
            member: NodeId::from_bytes([2; 32]),
            role: Role::Moderator,
        });
        let mut want = vec![4, 4];
        want.extend([2; 32]);
        want.push(1);
        assert_eq!(enc_op(&role), want);
        assert_eq!(enc_op(&Op::Meta(Meta::Leave)), vec![4, 5]);
        let epoch = Op::Epoch(Epoch {
            removed: vec![Removal {
                member: NodeId::from_bytes([3; 32]),
                keep: 2,
            }],
            after: vec![],
            wraps: vec![Wrap {
                member: NodeId::from_bytes([4; 32]),
                enc: [5; 32],
                sealed: vec![6; 48],
            }],
        });
        let mut want = vec![9, 1];
        want.extend([3; 32]);
        want.extend([2, 0, 1]);
        want.extend([4; 32]);
        want.extend([5; 32]);
        want.push(48);
        want.extend([6; 48]);
        assert_eq!(enc_op(&epoch), want);
    }
}

#[cfg(test)]
mod sizes {
    use p2pfs_proto::{
        Hash, RoomSecret,
        moderation::{Epoch, MAX_EPOCH_ENTRY, Removal},
        room::Op,
    };

    use super::*;
    use crate::room::entry;

    /// The figure of issue 21: bytes of a removal entry as the room grows
    /// (`cargo test -p p2pfs-swarm --release removal_entry_sizes -- --nocapture`).
    #[test]
    fn removal_entry_sizes() {
        let owner = SecretKey::from_seed([1; 32]).unwrap();
        let secret = RoomSecret::for_owner(&owner.public(), &[2; 32]);
        let room = secret.id();
        for n in [10usize, 100, 1000] {
            let members: Vec<NodeId> = (0..n)
                .map(|i| {
                    let mut seed = [0u8; 32];
                    seed[..8].copy_from_slice(&(i as u64 + 10).to_le_bytes());
                    SecretKey::from_seed(seed).unwrap().public()
                })
                .collect();
            let started = std::time::Instant::now();
            let wraps: Vec<_> = members[1..]
                .iter()
                .map(|m| seal(&room, m, &[7; 32]).unwrap())
                .collect();
            let sealing = started.elapsed();
            let op = Op::Epoch(Epoch {
                removed: vec![Removal {
                    member: members[0],
                    keep: 12,
                }],
                after: vec![Hash::of(b"previous")],
                wraps,
            });
            let e = entry::sign(&owner, &secret, 40, vec![Hash::of(b"head")], 1, op).unwrap();
            assert!(e.bytes.len() <= MAX_EPOCH_ENTRY);
            println!(
                "removal entry, {n} members: {} bytes ({:.0} per member), sealed in {sealing:?}",
                e.bytes.len(),
                e.bytes.len() as f64 / n as f64
            );
        }
    }
}
