//! The web layer's errors, and the HTTP answer each becomes.

use std::net::SocketAddr;

use axum::{
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use p2pfs_store::StoreError;
use p2pfs_swarm::{RoomError, SwarmError};

/// What went wrong serving the page or the gateway.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The page's address could not be taken.
    #[error("cannot listen on {addr} for the web page: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The system gave no randomness for a token.
    #[error("no system randomness for the web page's token")]
    NoRandom,
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// Nothing is there (or the guard does not say what is).
    #[error("{0}")]
    NotFound(String),
    /// The request is refused.
    #[error("{0}")]
    Forbidden(String),
    /// No byte of the range is in the blob.
    #[error("the range is outside the blob ({size} bytes)")]
    Unsatisfiable { size: u64 },
    /// The node failed.
    #[error(transparent)]
    Swarm(#[from] SwarmError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A blocking worker died.
    #[error(transparent)]
    Worker(#[from] p2pfs_swarm::WorkerFailed),
}

impl WebError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::Unsatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            WebError::Store(e) => store_status(e),
            WebError::Swarm(SwarmError::Store(e)) => store_status(e),
            WebError::Swarm(SwarmError::Room(e)) => match e {
                RoomError::NoSuchRoom(_) | RoomError::NoSuchFile(_) => StatusCode::NOT_FOUND,
                RoomError::NameTaken(_)
                | RoomError::AlreadyIn(_)
                | RoomError::FileInTheWay(_)
                | RoomError::IsADirectory(_) => StatusCode::CONFLICT,
                RoomError::NotMember(_) => StatusCode::FORBIDDEN,
                _ => StatusCode::BAD_REQUEST,
            },
            WebError::Swarm(SwarmError::Unavailable { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            WebError::Swarm(SwarmError::Shutdown) => StatusCode::SERVICE_UNAVAILABLE,
            WebError::Bind { .. }
            | WebError::NoRandom
            | WebError::Swarm(_)
            | WebError::Worker(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

fn store_status(e: &StoreError) -> StatusCode {
    match e {
        StoreError::NotFound(_) => StatusCode::NOT_FOUND,
        StoreError::NoSpace { .. } => StatusCode::INSUFFICIENT_STORAGE,
        StoreError::Incomplete { .. } | StoreError::NotPresent { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!("web page: {self}");
        }
        let mut r = (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{self}\n"),
        )
            .into_response();
        if let WebError::Unsatisfiable { size } = self
            && let Ok(v) = format!("bytes */{size}").parse()
        {
            r.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        r
    }
}
