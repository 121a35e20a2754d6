//! Tickets: a blob ([`BlobTicket`]) or a room ([`crate::RoomTicket`]) and
//! where to get it, as one copy-paste string.
//!
//! Both kinds share one text form (docs/protocol.md §6.2): a prefix, then
//! the lowercase RFC 4648 base32 (no padding) of the postcard encoding of
//! the ticket followed by a 4-byte checksum, the first bytes of
//! BLAKE3(prefix ‖ encoding). The checksum turns a character changed,
//! lost or added in a copy-paste into a clear error instead of a
//! different room or blob.

use std::{fmt, str::FromStr};

use data_encoding::{BASE32_NOPAD, DecodeKind};
use serde::{Deserialize, Serialize};

use crate::{Hash, NodeAddr, addr::MAX_ADDRS, codec};

/// Most providers a ticket may name.
pub const MAX_PROVIDERS: usize = 8;
/// The format version tickets are written in (1: with a checksum).
pub const VERSION: u8 = 1;
/// Bytes of checksum after the encoded ticket.
pub const CHECKSUM_LEN: usize = 4;

/// A blob and who provides it: what `p2pfs share` prints and `p2pfs fetch`
/// accepts in place of a hash.
///
/// Text form: `blob` followed by the base32 of this struct's postcard
/// encoding and its checksum (see the module docs); its first field is the
/// format version ([`VERSION`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobTicket {
    version: u8,
    /// The blob.
    pub hash: Hash,
    /// A suggested file name (no `/`, not `.` or `..`, at most 255 bytes).
    pub name: Option<String>,
    /// Nodes that have it.
    pub providers: Vec<NodeAddr>,
}

/// Why a string is not a blob ticket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// It does not start with the ticket prefix.
    #[error("not a blob ticket (it should start with \"{}\")", BlobTicket::PREFIX)]
    Prefix,
    /// A character was changed, lost or added on the way.
    #[error("damaged or mistyped blob ticket: {0}; copy the whole ticket again")]
    Mistyped(String),
    /// A ticket of format 0, which had no checksum.
    #[error("this blob ticket is from an older p2pfs (it has no checksum): ask for a new one")]
    Outdated,
    /// Intact, but its content is unusable.
    #[error("invalid blob ticket: {0}")]
    Invalid(String),
}

impl BlobTicket {
    /// The text prefix.
    pub const PREFIX: &'static str = "blob";

    /// A ticket for `hash` from `providers`.
    pub fn new(hash: Hash, name: Option<String>, providers: Vec<NodeAddr>) -> Self {
        Self {
            version: VERSION,
            hash,
            name,
            providers,
        }
    }

    fn check(&self) -> Result<(), TicketError> {
        check_version(self.version).map_err(TicketError::Invalid)?;
        if let Some(n) = &self.name
            && !valid_name(n)
        {
            return Err(TicketError::Invalid(format!("unusable file name {n:?}")));
        }
        if self.providers.len() > MAX_PROVIDERS
            || self.providers.iter().any(|p| p.addrs.len() > MAX_ADDRS)
        {
            return Err(TicketError::Invalid(
                "too many providers or addresses".into(),
            ));
        }
        Ok(())
    }
}

/// Whether `name` can be used as a file name in a directory.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.contains(['/', '\0'])
}

/// Why a ticket's text does not read, for either kind of ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TextError {
    /// The prefix is missing.
    Prefix,
    /// A character was changed, lost or added: why.
    Mistyped(String),
    /// A format-0 ticket (no checksum).
    Outdated,
    /// The checksum matches but the bytes do not decode.
    Invalid(String),
}

impl From<TextError> for TicketError {
    fn from(e: TextError) -> Self {
        match e {
            TextError::Prefix => Self::Prefix,
            TextError::Mistyped(m) => Self::Mistyped(m),
            TextError::Outdated => Self::Outdated,
            TextError::Invalid(m) => Self::Invalid(m),
        }
    }
}

/// Refuses a format version other than [`VERSION`].
pub(crate) fn check_version(version: u8) -> Result<(), String> {
    match version {
        VERSION => Ok(()),
        v if v > VERSION => Err(format!(
            "format version {v} is newer than this p2pfs (it reads {VERSION})"
        )),
        v => Err(format!("format version {v} is no longer read")),
    }
}

/// The checksum of a ticket's encoding: the first [`CHECKSUM_LEN`] bytes
/// of BLAKE3 over the prefix (lowercase ASCII) and the encoding.
pub(crate) fn checksum(prefix: &str, encoded: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut h = blake3::Hasher::new();
    h.update(prefix.as_bytes());
    h.update(encoded);
    let mut out = [0; CHECKSUM_LEN];
    out.copy_from_slice(&h.finalize().as_bytes()[..CHECKSUM_LEN]);
    out
}

/// Writes `value` as a ticket: `prefix`, then the lowercase base32 (no
/// padding) of its postcard encoding followed by its checksum.
pub(crate) fn write_text<T: Serialize>(
    f: &mut fmt::Formatter<'_>,
    prefix: &str,
    value: &T,
) -> fmt::Result {
    let mut bytes = codec::encode(value).map_err(|_| fmt::Error)?;
    let sum = checksum(prefix, &bytes);
    bytes.extend_from_slice(&sum);
    write!(
        f,
        "{prefix}{}",
        BASE32_NOPAD.encode(&bytes).to_ascii_lowercase()
    )
}

/// Reads a ticket written by [`write_text`]. Surrounding whitespace is
/// ignored, and case (of the prefix too) does not matter.
pub(crate) fn read_text<T: serde::de::DeserializeOwned>(
    s: &str,
    prefix: &str,
) -> Result<T, TextError> {
    let s = s.trim();
    let body = match s.get(..prefix.len()) {
        Some(p) if p.eq_ignore_ascii_case(prefix) => &s[prefix.len()..],
        _ => return Err(TextError::Prefix),
    };
    let bytes = BASE32_NOPAD
        .decode(body.to_ascii_uppercase().as_bytes())
        .map_err(|e| {
            TextError::Mistyped(match e.kind {
                DecodeKind::Symbol => {
                    let at = body.get(..e.position).map(|b| b.chars().count());
                    let c = body.get(e.position..).and_then(|r| r.chars().next());
                    match (at, c) {
                        (Some(at), Some(c)) => format!(
                            "character {} ({c:?}) is not one of a-z, 2-7",
                            prefix.len() + at + 1
                        ),
                        _ => "it holds a character that is not one of a-z, 2-7".into(),
                    }
                }
                DecodeKind::Trailing => "its last character is wrong".into(),
                DecodeKind::Length | DecodeKind::Padding => {
                    "its length is wrong (a character is missing or extra)".into()
                }
            })
        })?;
    let Some(split) = bytes.len().checked_sub(CHECKSUM_LEN).filter(|&n| n > 0) else {
        return Err(TextError::Mistyped("it is too short".into()));
    };
    let (encoded, sum) = bytes.split_at(split);
    if checksum(prefix, encoded) != sum {
        if bytes.first() == Some(&0) && codec::decode::<T>(&bytes).is_ok() {
            return Err(TextError::Outdated);
        }
        return Err(TextError::Mistyped("its checksum does not match".into()));
    }
    codec::decode(encoded).map_err(|e| TextError::Invalid(e.to_string()))
}

impl fmt::Display for BlobTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_text(f, Self::PREFIX, self)
    }
}

impl FromStr for BlobTicket {
    type Err = TicketError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t: Self = read_text(s, Self::PREFIX)?;
        t.check()?;
        Ok(t)
    }
}

/// Every one-character typo of a ticket, for the tests of both kinds:
/// each character replaced by every other base32 character and a few
/// outside the alphabet, each character deleted, and every insertion.
/// Whitespace is not inserted at the ends, where it is ignored.
#[cfg(test)]
pub(crate) fn typos(s: &str) -> Vec<String> {
    const OUTSIDE: [char; 12] = [
        '0', '1', '8', '9', '=', '-', '_', '.', '!', ' ', 'é', '\u{200b}',
    ];
    let alphabet = "abcdefghijklmnopqrstuvwxyz234567".chars();
    let others: Vec<char> = alphabet.chain(OUTSIDE).collect();
    let chars: Vec<char> = s.chars().collect();
    let text = |v: &[char]| v.iter().collect::<String>();
    let mut out = Vec::new();
    for i in 0..chars.len() {
        for &c in &others {
            if c != chars[i].to_ascii_lowercase() {
                let mut v = chars.clone();
                v[i] = c;
                out.push(text(&v));
            }
        }
        let mut v = chars.clone();
        v.remove(i);
        out.push(text(&v));
    }
    for i in 0..=chars.len() {
        for &c in &others {
            if c.is_whitespace() && (i == 0 || i == chars.len()) {
                continue;
            }
            let mut v = chars.clone();
            v.insert(i, c);
            out.push(text(&v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeId;

    fn ticket() -> BlobTicket {
        BlobTicket::new(
            Hash::of(b"x"),
            Some("photo.jpg".into()),
            vec![NodeAddr {
                id: NodeId::from_bytes([9; 32]),
                addrs: vec![
                    "127.0.0.1:4000".parse().unwrap(),
                    "[::1]:4000".parse().unwrap(),
                ],
            }],
        )
    }

    #[test]
    fn round_trips_in_any_case_and_with_whitespace() {
        let t = ticket();
        let s = t.to_string();
        assert!(s.starts_with("blob"));
        assert_eq!(s, s.to_ascii_lowercase());
        assert_eq!(s.parse::<BlobTicket>().unwrap(), t);
        assert_eq!(format!("  {s}\n").parse::<BlobTicket>().unwrap(), t);
        assert_eq!(s.to_ascii_uppercase().parse::<BlobTicket>().unwrap(), t);
        let mixed: String = s
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i % 3 == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        assert_eq!(mixed.parse::<BlobTicket>().unwrap(), t);
        assert_eq!("xyz".parse::<BlobTicket>(), Err(TicketError::Prefix));
        let evil = BlobTicket::new(Hash::of(b"x"), Some("../etc".into()), vec![]);
        assert!(matches!(
            evil.to_string().parse::<BlobTicket>(),
            Err(TicketError::Invalid(_))
        ));
    }

    #[test]
    fn every_typo_is_refused_as_one() {
        let s = ticket().to_string();
        let typos = typos(&s);
        assert!(typos.len() > 10_000, "{}", typos.len());
        for typo in typos {
            match typo.parse::<BlobTicket>() {
                Err(TicketError::Mistyped(_)) => {}
                // A change to the prefix makes it no ticket at all.
                Err(TicketError::Prefix) if !typo.starts_with(BlobTicket::PREFIX) => {}
                other => panic!("{typo}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_checksum_is_named_and_trailing_bits_are_checked() {
        let s = ticket().to_string();
        let body = &s[BlobTicket::PREFIX.len()..];
        // A substitution in the middle: only the checksum can tell.
        let mid = body.len() / 2;
        let c = if &body[mid..=mid] == "q" { "r" } else { "q" };
        let typo = format!("blob{}{c}{}", &body[..mid], &body[mid + 1..]);
        let err = typo.parse::<BlobTicket>().unwrap_err().to_string();
        assert!(err.contains("checksum does not match"), "{err}");
        // The last character carries bits past the end of the bytes
        // (here 3): setting one is a typo too, not another spelling.
        let bytes = BASE32_NOPAD
            .decode(body.to_ascii_uppercase().as_bytes())
            .unwrap();
        assert_ne!(bytes.len() * 8 % 5, 0);
        let last = body.chars().last().unwrap().to_ascii_uppercase() as u8;
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let index = alphabet.iter().position(|&a| a == last).unwrap();
        let flipped = alphabet[index ^ 1] as char;
        let mut upper = body.to_ascii_uppercase();
        upper.pop();
        upper.push(flipped);
        let e = BASE32_NOPAD.decode(upper.as_bytes()).unwrap_err();
        assert_eq!(e.kind, DecodeKind::Trailing);
        let err = format!("blob{upper}").parse::<BlobTicket>().unwrap_err();
        assert_eq!(
            err,
            TicketError::Mistyped("its last character is wrong".into())
        );
    }

    #[test]
    fn a_ticket_of_format_0_asks_for_a_new_one() {
        // docs/protocol.md §6.2: format 0 had no checksum.
        let mut bytes = vec![0u8];
        bytes.extend([0; 32]);
        bytes.extend([1, 1, b'a', 0]);
        let old = format!("blob{}", BASE32_NOPAD.encode(&bytes).to_ascii_lowercase());
        assert_eq!(old.parse::<BlobTicket>(), Err(TicketError::Outdated));
    }

    #[test]
    fn names() {
        assert!(valid_name("a.txt"));
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn golden_text() {
        // docs/protocol.md §6.2: "blob" + base32 of version 1, hash 00×32,
        // Some("a"), no providers, then the checksum.
        let t = BlobTicket::new(Hash::from_bytes([0; 32]), Some("a".into()), vec![]);
        let mut bytes = vec![1u8];
        bytes.extend([0; 32]);
        bytes.extend([1, 1, b'a', 0]);
        assert_eq!(codec::encode(&t).unwrap(), bytes);
        let mut prefixed = b"blob".to_vec();
        prefixed.extend(&bytes);
        assert_eq!(
            &blake3::hash(&prefixed).as_bytes()[..4],
            [0x50, 0x78, 0xfa, 0xf2]
        );
        assert_eq!(checksum("blob", &bytes), [0x50, 0x78, 0xfa, 0xf2]);
        assert_eq!(
            t.to_string(),
            "blobaeaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaibmeafa6h26i"
        );
    }
}
