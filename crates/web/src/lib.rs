//! p2pfs's web page and HTTP gateway, served by every daemon and mount
//! (`--http ADDR`, `127.0.0.1:7474` by default).
//!
//! - `guard`: who may use the page: the `Host` check (DNS rebinding), the
//!   login token and its cookie, same-origin writes (CSRF), the headers
//!   every answer carries.
//! - `gateway`: `GET /blob/HASH`, public blobs for anyone the guard lets
//!   in, with ranges, validators and a verifiable (bao) form.
//! - `bytes` and `range`: serving a blob's bytes (a range of them),
//!   streamed from the store, fetched from the room as they are read.
//! - `index`: each room's listing in memory, kept up to date from its log,
//!   paged by folder and searched by name.
//! - `pages`: the HTML (maud templates compiled into the binary), one
//!   module per page; `assets`: the script and style sheet, no build step.
//! - `actions`: what the page changes: rooms created and joined, copies
//!   set, chat posted, files uploaded (streamed into the store).
//! - `archive`: a folder as one tar stream; `events`: chat and listing
//!   changes as server-sent events.

mod actions;
mod archive;
mod assets;
mod bytes;
mod error;
mod events;
mod gateway;
mod guard;
mod index;
mod pages;
mod range;
mod uploads;

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    routing::{get, post},
};
use p2pfs_swarm::Node;
use tokio_util::sync::CancellationToken;

pub use error::WebError;
pub use guard::Token;

/// Where and how to serve the page.
#[derive(Debug, Clone)]
pub struct Config {
    /// The address to listen on (port 0: any free port).
    pub addr: SocketAddr,
    /// The login token (kept in the data directory).
    pub token: Token,
}

/// What every handler shares.
#[derive(Debug, Clone)]
pub(crate) struct App {
    pub(crate) node: Node,
    pub(crate) index: Arc<index::Index>,
    pub(crate) access: Arc<guard::Access>,
    pub(crate) uploads: uploads::Uploads,
    /// Fires when the page stops: endless answers (events) end.
    pub(crate) stop: CancellationToken,
}

/// Locks a mutex, recovering from poisoning (every critical section
/// leaves its data consistent).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where the page is served unless `--http` says otherwise, and where an
/// invite link sends its reader (to their own node's page).
pub const DEFAULT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7474);

/// The page being served.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    token: Token,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// The address the page listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The page's address as a URL (`http://127.0.0.1:7474`).
    pub fn base(&self) -> String {
        base_url(self.addr)
    }

    /// The URL that logs a browser in: what `p2pfs web` prints.
    pub fn login_url(&self) -> String {
        format!("{}/login?token={}", self.base(), self.token.as_str())
    }

    /// Waits until the server has stopped (after its cancel token fired):
    /// at most `wait`, then the connections still open are dropped.
    pub async fn stopped(mut self, wait: std::time::Duration) {
        if tokio::time::timeout(wait, &mut self.task).await.is_err() {
            self.task.abort();
        }
    }
}

/// `http://ADDR` for an address (IPv6 in brackets; a wildcard address
/// shown as loopback, which reaches it).
pub fn base_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => "127.0.0.1".to_string(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
    };
    format!("http://{ip}:{}", addr.port())
}

/// The invite link for `ticket`: it opens the join page of the reader's
/// own node (at the default address), the ticket in the fragment.
pub fn join_link(ticket: &str) -> String {
    format!("{}/join#{ticket}", base_url(DEFAULT_ADDR))
}

/// Starts serving the page for `node` until `cancel` fires.
pub async fn serve(
    node: Node,
    config: Config,
    cancel: CancellationToken,
) -> Result<Server, WebError> {
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|source| WebError::Bind {
            addr: config.addr,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| WebError::Bind {
        addr: config.addr,
        source,
    })?;
    let app = App {
        index: Arc::new(index::Index::new(node.clone())),
        access: Arc::new(guard::Access::new(addr, config.token.clone())),
        uploads: uploads::Uploads::default(),
        stop: cancel.clone(),
        node,
    };
    let router = routes(app.clone());
    let stop = cancel.clone();
    let task = tokio::spawn(async move {
        let serving = axum::serve(listener, router).with_graceful_shutdown(async move {
            stop.cancelled().await;
        });
        if let Err(e) = serving.await {
            tracing::warn!("web page: {e}");
        }
    });
    Ok(Server {
        addr,
        token: config.token,
        task,
    })
}

fn routes(app: App) -> Router {
    Router::new()
        .route("/", get(pages::rooms::page))
        .route("/rooms", post(actions::create_room))
        .route("/join", get(pages::join::page).post(actions::join_room))
        .route("/search", get(pages::search::page))
        .route("/status", get(pages::status::page))
        .route("/r/{room}/", get(pages::room::page))
        .route("/r/{room}/list", get(pages::room::list))
        .route(
            "/r/{room}/chat",
            get(pages::chat::page).post(actions::post_chat),
        )
        .route("/r/{room}/events", get(events::room))
        .route("/r/{room}/members", get(pages::members::page))
        .route("/r/{room}/copies", post(actions::set_copies))
        .route("/r/{room}/remove", post(actions::remove_member))
        .route("/r/{room}/archive", get(archive::folder))
        .route(
            "/r/{room}/f/{*path}",
            get(bytes::room_file)
                .head(bytes::room_file)
                .put(actions::upload)
                .delete(actions::delete),
        )
        .route("/blob/{hash}", get(gateway::blob).head(gateway::blob))
        .route("/login", get(guard::login))
        .route("/assets/{name}", get(assets::serve))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            guard::check,
        ))
        .with_state(app)
}
