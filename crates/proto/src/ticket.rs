//! Blob tickets: a hash plus where to get it, as one copy-paste string.

use std::{fmt, str::FromStr};

use data_encoding::BASE32_NOPAD;
use serde::{Deserialize, Serialize};

use crate::{Hash, NodeAddr, addr::MAX_ADDRS, codec};

/// Most providers a ticket may name.
pub const MAX_PROVIDERS: usize = 8;

/// A blob and who provides it: what `p2pfs share` prints and `p2pfs fetch`
/// accepts in place of a hash.
///
/// Text form: `blob` followed by the lowercase RFC 4648 base32 (no padding)
/// of the postcard encoding of this struct, whose first field is a format
/// version (currently 0).
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

/// Why a string is not a ticket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// It does not start with the ticket prefix.
    #[error("not a blob ticket (it should start with \"{}\")", BlobTicket::PREFIX)]
    Prefix,
    /// The base32 or its content is invalid.
    #[error("damaged blob ticket: {0}")]
    Invalid(String),
}

impl BlobTicket {
    /// The text prefix.
    pub const PREFIX: &'static str = "blob";

    /// A ticket for `hash` from `providers`.
    pub fn new(hash: Hash, name: Option<String>, providers: Vec<NodeAddr>) -> Self {
        Self {
            version: 0,
            hash,
            name,
            providers,
        }
    }

    fn check(&self) -> Result<(), TicketError> {
        if self.version != 0 {
            return Err(TicketError::Invalid(format!(
                "format version {} is newer than this p2pfs",
                self.version
            )));
        }
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

/// Writes `value` as a ticket: `prefix`, then the lowercase base32 (no
/// padding) of its postcard encoding.
pub(crate) fn write_text<T: Serialize>(
    f: &mut fmt::Formatter<'_>,
    prefix: &str,
    value: &T,
) -> fmt::Result {
    let bytes = codec::encode(value).map_err(|_| fmt::Error)?;
    write!(
        f,
        "{prefix}{}",
        BASE32_NOPAD.encode(&bytes).to_ascii_lowercase()
    )
}

/// Reads a ticket written by [`write_text`]: `Ok(None)` if the prefix is
/// missing, `Err` if the rest does not decode.
pub(crate) fn read_text<T: serde::de::DeserializeOwned>(
    s: &str,
    prefix: &str,
) -> Result<Option<T>, String> {
    let Some(body) = s.trim().strip_prefix(prefix) else {
        return Ok(None);
    };
    let bytes = BASE32_NOPAD
        .decode(body.to_ascii_uppercase().as_bytes())
        .map_err(|e| e.to_string())?;
    codec::decode(&bytes).map(Some).map_err(|e| e.to_string())
}

impl fmt::Display for BlobTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_text(f, Self::PREFIX, self)
    }
}

impl FromStr for BlobTicket {
    type Err = TicketError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t: Self = read_text(s, Self::PREFIX)
            .map_err(TicketError::Invalid)?
            .ok_or(TicketError::Prefix)?;
        t.check()?;
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeId;

    #[test]
    fn round_trips_and_rejects_damage() {
        let t = BlobTicket::new(
            Hash::of(b"x"),
            Some("photo.jpg".into()),
            vec![NodeAddr {
                id: NodeId::from_bytes([9; 32]),
                addrs: vec![
                    "127.0.0.1:4000".parse().unwrap(),
                    "[::1]:4000".parse().unwrap(),
                ],
            }],
        );
        let s = t.to_string();
        assert!(s.starts_with("blob"));
        assert_eq!(s, s.to_ascii_lowercase());
        assert_eq!(s.parse::<BlobTicket>().unwrap(), t);
        assert_eq!(format!("  {s}\n").parse::<BlobTicket>().unwrap(), t);
        assert_eq!("xyz".parse::<BlobTicket>(), Err(TicketError::Prefix));
        let mut bad = s.clone();
        bad.truncate(s.len() - 5);
        assert!(bad.parse::<BlobTicket>().is_err());
        let evil = BlobTicket::new(Hash::of(b"x"), Some("../etc".into()), vec![]);
        assert!(evil.to_string().parse::<BlobTicket>().is_err());
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
        // docs/protocol.md §6.2: "blob" + base32 of
        // version 0, hash, Some("a"), no providers.
        let t = BlobTicket::new(Hash::from_bytes([0; 32]), Some("a".into()), vec![]);
        let mut bytes = vec![0u8];
        bytes.extend([0; 32]);
        bytes.extend([1, 1, b'a', 0]);
        assert_eq!(codec::encode(&t).unwrap(), bytes);
        let text = format!("blob{}", BASE32_NOPAD.encode(&bytes).to_ascii_lowercase());
        assert_eq!(t.to_string(), text);
    }
}
