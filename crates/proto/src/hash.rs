//! The content [`Hash`]: a BLAKE3 root hash.

use crate::ParseIdError;

crate::id::id32!(
    /// The BLAKE3 hash of a blob's bytes: the root of its verified-streaming tree.
    ///
    /// Shown as 64 lowercase hexadecimal characters, exactly what `b3sum`
    /// prints for the same bytes. Parsing accepts either case.
    Hash,
    "hash",
    64,
    encode_hex,
    decode_hex
);

impl Hash {
    /// The hash of the empty blob.
    pub const EMPTY: Hash = Hash([
        0xaf, 0x13, 0x49, 0xb9, 0xf5, 0xf9, 0xa1, 0xa6, 0xa0, 0x40, 0x4d, 0xea, 0x36, 0xdc, 0xc9,
        0x49, 0x9b, 0xcb, 0x25, 0xc9, 0xad, 0xc1, 0x12, 0xb7, 0xcc, 0x9a, 0x93, 0xca, 0xe4, 0x1f,
        0x32, 0x62,
    ]);

    /// Hashes `data` in one call (for small inputs and tests; the store
    /// hashes streams incrementally).
    pub fn of(data: &[u8]) -> Self {
        Self(*blake3::hash(data).as_bytes())
    }
}

impl From<blake3::Hash> for Hash {
    fn from(h: blake3::Hash) -> Self {
        Self(*h.as_bytes())
    }
}

impl From<Hash> for blake3::Hash {
    fn from(h: Hash) -> Self {
        blake3::Hash::from_bytes(h.0)
    }
}

fn encode_hex(bytes: &[u8; 32]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

fn decode_hex(s: &str, kind: &'static str) -> Result<[u8; 32], ParseIdError> {
    let mut out = [0u8; 32];
    for (i, pair) in s.as_bytes().chunks_exact(2).enumerate() {
        out[i] = (hex_val(pair[0], kind)? << 4) | hex_val(pair[1], kind)?;
    }
    Ok(out)
}

fn hex_val(c: u8, kind: &'static str) -> Result<u8, ParseIdError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(ParseIdError::Alphabet {
            kind,
            alphabet: "hexadecimal digits 0-9 and a-f",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_constant_matches_blake3() {
        assert_eq!(Hash::EMPTY, Hash::of(b""));
        assert_eq!(
            Hash::EMPTY.to_string(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    #[test]
    fn display_matches_b3sum_format() {
        // `printf abc | b3sum`
        assert_eq!(
            Hash::of(b"abc").to_string(),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
    }

    #[test]
    fn parses_both_cases_and_round_trips() {
        let h = Hash::of(b"hello");
        let s = h.to_string();
        assert_eq!(s.parse::<Hash>().unwrap(), h);
        assert_eq!(s.to_ascii_uppercase().parse::<Hash>().unwrap(), h);
    }

    #[test]
    fn rejects_malformed_text() {
        assert!(matches!(
            "abc".parse::<Hash>(),
            Err(ParseIdError::Length {
                expected: 64,
                got: 3
            })
        ));
        let s = "g".repeat(64);
        assert!(matches!(
            s.parse::<Hash>(),
            Err(ParseIdError::Alphabet { .. })
        ));
        // Multi-byte characters are counted as characters in the message.
        let s = "é".repeat(32);
        assert!(s.parse::<Hash>().is_err());
    }

    #[test]
    fn postcard_form_is_32_raw_bytes() {
        let h = Hash::of(b"x");
        let bytes = postcard::to_stdvec(&h).unwrap();
        assert_eq!(bytes, h.as_bytes());
        assert_eq!(postcard::from_bytes::<Hash>(&bytes).unwrap(), h);
    }
}
