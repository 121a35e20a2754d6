//! Signing and verifying log entries.

use p2pfs_proto::{
    Hash, NodeId, RoomId, RoomSecret,
    room::{Entry, EntryBody, EntryError, Meta, Op, Signature, signed_message},
};

use crate::identity::{self, SecretKey};

/// An entry whose bounds, membership tag and signature have been checked.
#[derive(Debug, Clone)]
pub(crate) struct Verified {
    /// Its hash in the room.
    pub(crate) hash: Hash,
    /// What it says.
    pub(crate) body: EntryBody,
    /// Its encoding, as stored and sent.
    pub(crate) bytes: Vec<u8>,
}

/// Checks an encoded entry received for the room of `secret`.
pub(crate) fn verify(
    secret: &RoomSecret,
    room: &RoomId,
    bytes: Vec<u8>,
) -> Result<Verified, EntryError> {
    let (entry, body) = Entry::decode(&bytes)?;
    if body.member != secret.member_tag(&body.author) {
        return Err(EntryError::NotMember(body.author.fmt_short()));
    }
    let msg = signed_message(room, &entry.body);
    if !identity::verify(&body.author, &msg, &entry.sig.0) {
        return Err(EntryError::BadSignature(body.author.fmt_short()));
    }
    if let Op::Meta(Meta::Owner { nonce }) = &body.op
        && !secret.is_owned_by(&body.author, nonce)
    {
        return Err(EntryError::Invalid(format!(
            "{} claims to own the room, and did not create it",
            body.author.fmt_short()
        )));
    }
    Ok(Verified {
        hash: Hash::of(&msg),
        body,
        bytes,
    })
}

/// Writes and signs an entry by `key`.
pub(crate) fn sign(
    key: &SecretKey,
    secret: &RoomSecret,
    seq: u64,
    parents: Vec<Hash>,
    time: u64,
    op: Op,
) -> Result<Verified, EntryError> {
    let author: NodeId = key.public();
    let body = EntryBody {
        author,
        seq,
        parents,
        time,
        member: secret.member_tag(&author),
        op,
    };
    body.check()?;
    let encoded =
        p2pfs_proto::codec::encode(&body).map_err(|e| EntryError::Decode(e.to_string()))?;
    let room = secret.id();
    let msg = signed_message(&room, &encoded);
    let entry = Entry {
        sig: Signature(key.sign(&msg)),
        body: encoded,
    };
    let bytes = entry.encode()?;
    Ok(Verified {
        hash: Hash::of(&msg),
        body,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_and_replayed_entries_fail() {
        let key = SecretKey::generate().unwrap();
        let outsider = SecretKey::generate().unwrap();
        let s = RoomSecret([1; 32]);
        let other = RoomSecret([2; 32]);
        let op = Op::Chat { text: "hi".into() };
        let e = sign(&key, &s, 0, vec![], 5, op.clone()).unwrap();
        let ok = verify(&s, &s.id(), e.bytes.clone()).unwrap();
        assert_eq!(ok.hash, e.hash);
        // The same bytes replayed into another room.
        assert!(matches!(
            verify(&other, &other.id(), e.bytes.clone()),
            Err(EntryError::NotMember(_))
        ));
        // An outsider that copies a member's tag cannot sign for it.
        let mut body = e.body.clone();
        body.author = outsider.public();
        let enc = p2pfs_proto::codec::encode(&body).unwrap();
        let forged = Entry {
            sig: Signature(outsider.sign(&signed_message(&s.id(), &enc))),
            body: enc,
        };
        assert!(matches!(
            verify(&s, &s.id(), forged.encode().unwrap()),
            Err(EntryError::NotMember(_))
        ));
        // A flipped bit in the body breaks the signature.
        let mut entry: Entry = p2pfs_proto::codec::decode(&e.bytes).unwrap();
        let last = entry.body.len() - 1;
        entry.body[last] ^= 1;
        assert!(verify(&s, &s.id(), entry.encode().unwrap()).is_err());
    }
}
