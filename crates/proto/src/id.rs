//! 32-byte identifiers: [`NodeId`] and [`RoomId`].
//!
//! Both are shown as 52 lowercase base32 characters (RFC 4648 alphabet, no
//! padding), which keeps them visibly different from content hashes (64 hex
//! characters). Their short form, used in logs and chat, is the first 10
//! characters.

use data_encoding::BASE32_NOPAD;

/// Why a string is not a valid identifier or hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseIdError {
    /// The string has the wrong number of characters.
    #[error("expected {expected} characters, got {got}")]
    Length {
        /// Characters a valid value has.
        expected: usize,
        /// Characters the input has.
        got: usize,
    },
    /// The string contains a character outside the encoding's alphabet.
    #[error("invalid character in {kind}: only {alphabet} are allowed")]
    Alphabet {
        /// What was being parsed.
        kind: &'static str,
        /// A description of the allowed characters.
        alphabet: &'static str,
    },
}

/// Defines a 32-byte identifier newtype with a text form: `$encode` turns
/// the bytes into text of `$len` characters, `$decode` parses it back.
macro_rules! id32 {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $len:expr, $encode:path, $decode:path) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Characters in the textual form.
            pub const TEXT_LEN: usize = $len;

            /// Wraps raw bytes.
            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// The raw bytes.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// The first 10 characters of the textual form, for logs and chat.
            pub fn fmt_short(&self) -> String {
                let mut s = self.to_string();
                s.truncate(10);
                s
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&$encode(&self.0))
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.fmt_short())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::ParseIdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                if s.len() != $len {
                    return Err($crate::ParseIdError::Length {
                        expected: $len,
                        got: s.chars().count(),
                    });
                }
                $decode(s, $kind).map(Self)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                if serializer.is_human_readable() {
                    serializer.collect_str(self)
                } else {
                    self.0.serialize(serializer)
                }
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                if deserializer.is_human_readable() {
                    let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                    s.parse().map_err(serde::de::Error::custom)
                } else {
                    <[u8; 32]>::deserialize(deserializer).map(Self)
                }
            }
        }
    };
}

pub(crate) use id32;

id32!(
    /// A node's identity: its Ed25519 public key.
    ///
    /// The key is not checked to be a valid curve point here; the transport
    /// layer does that when it verifies a handshake.
    NodeId,
    "node id",
    52,
    encode_base32,
    decode_base32
);

id32!(
    /// A room's public identifier, derived from the room secret.
    RoomId,
    "room id",
    52,
    encode_base32,
    decode_base32
);

fn encode_base32(bytes: &[u8; 32]) -> String {
    BASE32_NOPAD.encode(bytes).to_ascii_lowercase()
}

fn decode_base32(s: &str, kind: &'static str) -> Result<[u8; 32], ParseIdError> {
    let alphabet_err = ParseIdError::Alphabet {
        kind,
        alphabet: "letters a-z and digits 2-7",
    };
    let upper = s.to_ascii_uppercase();
    let bytes = BASE32_NOPAD
        .decode(upper.as_bytes())
        .map_err(|_| alphabet_err.clone())?;
    // 52 base32 characters carry 260 bits: the last 4 must be zero, or two
    // strings would name the same id.
    let out: [u8; 32] = bytes.try_into().map_err(|_| alphabet_err)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_round_trips_through_text() {
        for _ in 0..100 {
            let mut b = [0u8; 32];
            fastrand::fill(&mut b);
            let id = NodeId::from_bytes(b);
            let s = id.to_string();
            assert_eq!(s.len(), NodeId::TEXT_LEN);
            assert_eq!(s, s.to_ascii_lowercase());
            assert_eq!(s.parse::<NodeId>().unwrap(), id);
            assert_eq!(s.to_ascii_uppercase().parse::<NodeId>().unwrap(), id);
        }
    }

    #[test]
    fn rejects_bad_text() {
        assert!(matches!(
            "abc".parse::<RoomId>(),
            Err(ParseIdError::Length { .. })
        ));
        let bad = "1".repeat(52);
        assert!(matches!(
            bad.parse::<RoomId>(),
            Err(ParseIdError::Alphabet { .. })
        ));
        // Non-canonical trailing bits are refused.
        let mut s = NodeId::from_bytes([0; 32]).to_string();
        s.pop();
        s.push('b');
        assert!(s.parse::<NodeId>().is_err());
    }

    #[test]
    fn short_form_is_a_prefix() {
        let id = RoomId::from_bytes([7; 32]);
        assert!(id.to_string().starts_with(&id.fmt_short()));
        assert_eq!(id.fmt_short().len(), 10);
    }
}
