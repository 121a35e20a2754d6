//! Protocols, each a handler registered by its ALPN (iroh's `Router` is the
//! model). [`Net`](crate::net::Net) accepts and dials connections; the
//! router hands each one, in either direction, to the handler of the
//! protocol the TLS handshake agreed on. A handler owns its protocol's
//! state and serves a connection until it closes.
//!
//! The node's handlers: blobs ([`crate::transfer::provider::Blobs`]), the
//! DHT ([`crate::dht::runtime::Dht`]) and rooms
//! ([`crate::room::handler::RoomsHandler`]).

use std::{future::Future, pin::Pin, sync::Arc};

use crate::net::dial::Conn;

/// A connection's work, as a handler returns it.
pub(crate) type Serving = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// One protocol.
pub(crate) trait ProtocolHandler: Send + Sync + std::fmt::Debug + 'static {
    /// Serves the streams the peer opens on `conn` until it closes or the
    /// node stops.
    fn serve(&self, conn: Conn) -> Serving;
}

/// The handlers by ALPN.
#[derive(Debug, Default)]
pub(crate) struct Router {
    handlers: Vec<(&'static [u8], Arc<dyn ProtocolHandler>)>,
}

impl Router {
    /// Adds the handler of `alpn`.
    pub(crate) fn accept(mut self, alpn: &'static [u8], handler: Arc<dyn ProtocolHandler>) -> Self {
        self.handlers.retain(|(a, _)| *a != alpn);
        self.handlers.push((alpn, handler));
        self
    }

    /// The registered ALPN equal to `alpn`, if any.
    pub(crate) fn alpn(&self, alpn: &[u8]) -> Option<&'static [u8]> {
        self.handlers.iter().map(|(a, _)| *a).find(|a| *a == alpn)
    }

    /// Serves `conn` with the handler of `alpn` (nothing if none).
    pub(crate) fn serve(&self, conn: Conn, alpn: &'static [u8]) -> Serving {
        match self.handlers.iter().find(|(a, _)| *a == alpn) {
            Some((_, h)) => h.serve(conn),
            None => Box::pin(async {}),
        }
    }
}
