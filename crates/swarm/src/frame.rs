//! Reading and writing framed messages (docs/protocol.md §1) on QUIC
//! streams, with the codec's size limit enforced before allocating.

use p2pfs_proto::codec::{self, CodecError, FRAME_HEADER_SIZE};
use serde::{Serialize, de::DeserializeOwned};

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    /// The stream failed or ended before a whole frame.
    #[error("stream: {0}")]
    Read(#[from] quinn::ReadExactError),
    /// The frame is too large or does not decode.
    #[error("{0}")]
    Codec(#[from] CodecError),
}

/// Reads one frame and decodes it.
pub(crate) async fn read<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
) -> Result<T, FrameError> {
    read_max(recv, codec::MAX_MESSAGE_SIZE).await
}

/// Reads one frame of at most `max` bytes and decodes it.
pub(crate) async fn read_max<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<T, FrameError> {
    Ok(read_sized(recv, max).await?.0)
}

/// [`read_max`], with the frame's size on the wire (header included).
pub(crate) async fn read_sized<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<(T, usize), FrameError> {
    let mut header = [0u8; FRAME_HEADER_SIZE];
    recv.read_exact(&mut header).await?;
    let len = codec::frame_len(header)?;
    if len > max {
        return Err(CodecError::TooLarge { size: len }.into());
    }
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await?;
    Ok((codec::decode(&body)?, FRAME_HEADER_SIZE + len))
}

/// Encodes and writes one frame.
pub(crate) async fn write<T: Serialize>(
    send: &mut quinn::SendStream,
    value: &T,
) -> Result<(), std::io::Error> {
    let bytes = codec::encode_frame(value).map_err(std::io::Error::other)?;
    send.write_all(&bytes).await.map_err(std::io::Error::from)
}

/// Reads the one request frame a peer opened `recv` with (at most `max`
/// bytes, within `timeout`). A bad or late request ends the stream both
/// ways with `Protocol` or `Timeout` (docs/protocol.md §4.4) and gives
/// `None`, with why (for the caller's log).
pub(crate) async fn read_request<T: DeserializeOwned>(
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    max: usize,
    timeout: std::time::Duration,
) -> Result<T, String> {
    use p2pfs_proto::close::Code;
    let code = match tokio::time::timeout(timeout, read_max(recv, max)).await {
        Ok(Ok(r)) => return Ok(r),
        Ok(Err(e)) => (Code::Protocol, e.to_string()),
        Err(_) => (Code::Timeout, "no request in time".to_string()),
    };
    let _ = recv.stop(code.0.value().into());
    let _ = send.reset(code.0.value().into());
    Err(code.1)
}
