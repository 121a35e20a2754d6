//! The one place values become bytes: postcard with a hard size limit.
//!
//! Every message a peer can send is decoded here, so the limits live here:
//! nothing longer than [`MAX_MESSAGE_SIZE`] is encoded or decoded, trailing
//! bytes are an error, and a length field can never make the decoder
//! allocate more than the input it was given (postcard checks lengths
//! against the remaining input).
//!
//! On a stream, a message travels as a *frame*: its length as a `u32`
//! little-endian, then the postcard bytes.

use serde::{Serialize, de::DeserializeOwned};

/// Largest encoded message, in bytes (1 MiB).
pub const MAX_MESSAGE_SIZE: usize = 1 << 20;

/// Bytes of a frame header.
pub const FRAME_HEADER_SIZE: usize = 4;

/// Why a value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The message is larger than [`MAX_MESSAGE_SIZE`].
    #[error("message of {size} bytes exceeds the limit of {MAX_MESSAGE_SIZE} bytes")]
    TooLarge {
        /// Size of the message in bytes.
        size: usize,
    },
    /// The bytes are not a valid encoding of the expected type.
    #[error("malformed message: {0}")]
    Malformed(#[from] postcard::Error),
    /// The bytes decode to a value but more bytes follow it.
    #[error("malformed message: {0} unexpected trailing bytes")]
    TrailingBytes(usize),
}

/// Encodes `value`, failing if the result exceeds [`MAX_MESSAGE_SIZE`].
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let bytes = postcard::to_stdvec(value)?;
    if bytes.len() > MAX_MESSAGE_SIZE {
        return Err(CodecError::TooLarge { size: bytes.len() });
    }
    Ok(bytes)
}

/// Decodes exactly one value from `bytes`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() > MAX_MESSAGE_SIZE {
        return Err(CodecError::TooLarge { size: bytes.len() });
    }
    let (value, rest) = postcard::take_from_bytes(bytes)?;
    if !rest.is_empty() {
        return Err(CodecError::TrailingBytes(rest.len()));
    }
    Ok(value)
}

/// Encodes `value` as a frame: length header, then the message.
pub fn encode_frame<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let body = encode(value)?;
    let len = u32::try_from(body.len()).map_err(|_| CodecError::TooLarge { size: body.len() })?;
    let mut out = Vec::with_capacity(FRAME_HEADER_SIZE + body.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Reads a frame header, refusing lengths over [`MAX_MESSAGE_SIZE`] before
/// any buffer is allocated for the body.
pub fn frame_len(header: [u8; FRAME_HEADER_SIZE]) -> Result<usize, CodecError> {
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_MESSAGE_SIZE {
        return Err(CodecError::TooLarge { size: len });
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Msg {
        id: u32,
        body: Vec<u8>,
    }

    #[test]
    fn round_trip_and_golden_bytes() {
        let m = Msg {
            id: 300,
            body: vec![1, 2],
        };
        let bytes = encode(&m).unwrap();
        // varint(300) = ac 02, then length 2 and the bytes.
        assert_eq!(bytes, [0xac, 0x02, 0x02, 0x01, 0x02]);
        assert_eq!(decode::<Msg>(&bytes).unwrap(), m);
        let frame = encode_frame(&m).unwrap();
        assert_eq!(&frame[..4], &[5, 0, 0, 0]);
        assert_eq!(frame_len(frame[..4].try_into().unwrap()).unwrap(), 5);
    }

    #[test]
    fn refuses_trailing_bytes_and_truncation() {
        let mut bytes = encode(&Msg {
            id: 1,
            body: vec![],
        })
        .unwrap();
        bytes.push(0);
        assert!(matches!(
            decode::<Msg>(&bytes),
            Err(CodecError::TrailingBytes(1))
        ));
        let bytes = encode(&Msg {
            id: 1,
            body: vec![9; 10],
        })
        .unwrap();
        assert!(matches!(
            decode::<Msg>(&bytes[..5]),
            Err(CodecError::Malformed(_))
        ));
    }

    #[test]
    fn refuses_oversized_messages() {
        let big = Msg {
            id: 0,
            body: vec![0; MAX_MESSAGE_SIZE],
        };
        assert!(matches!(encode(&big), Err(CodecError::TooLarge { .. })));
        assert!(matches!(
            frame_len(u32::MAX.to_le_bytes()),
            Err(CodecError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_huge_length_field_does_not_allocate() {
        // A vector claiming 2^32 elements in 6 bytes of input.
        let evil = [0x01, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(decode::<Msg>(&evil).is_err());
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut buf = [0u8; 64];
        for _ in 0..10_000 {
            let n = fastrand::usize(..buf.len());
            fastrand::fill(&mut buf[..n]);
            let _ = decode::<Msg>(&buf[..n]);
        }
    }
}
