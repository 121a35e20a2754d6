//! The CLI side of the control socket.

use std::path::Path;

use p2pfs_proto::codec;
use tokio::{io::AsyncWriteExt, net::UnixStream};

use super::{Input, Request, Response, server::read_frame};

/// A connection to a running node.
#[derive(Debug)]
pub(crate) struct Client {
    stream: UnixStream,
}

impl Client {
    /// Connects to the node whose socket is at `path`; `None` if no node
    /// answers there.
    pub(crate) async fn connect(path: &Path) -> Option<Self> {
        UnixStream::connect(path)
            .await
            .ok()
            .map(|stream| Self { stream })
    }

    /// Sends a request.
    pub(crate) async fn send(&mut self, request: &Request) -> std::io::Result<()> {
        let frame = codec::encode_frame(request).map_err(std::io::Error::other)?;
        self.stream.write_all(&frame).await
    }

    /// Sends input bytes (an empty chunk ends them).
    pub(crate) async fn send_input(&mut self, chunk: Vec<u8>) -> std::io::Result<()> {
        let frame = codec::encode_frame(&Input(chunk)).map_err(std::io::Error::other)?;
        self.stream.write_all(&frame).await
    }

    /// Receives the next response.
    pub(crate) async fn recv(&mut self) -> std::io::Result<Response> {
        read_frame(&mut self.stream).await
    }
}
