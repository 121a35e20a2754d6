//! Where a command runs: in the node already running for this data
//! directory (through its control socket), or, when none runs, in this
//! process, with the store opened here and a short-lived node if the
//! command needs the network.

use std::{
    io::Read,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Mutex,
    time::Duration,
};

use anyhow::Context;
use p2pfs_store::Store;
use p2pfs_swarm::{Limits, Node, NodeConfig, dht::DhtConfig, replica::ReplicaConfig};
use tokio::sync::{OnceCell, mpsc};

use crate::{
    api, config,
    control::{self, Client, Request, Response},
    turns,
};

/// How long a command waits for its turn before saying so.
const QUIET_WAIT: Duration = Duration::from_secs(1);

/// A place to run commands.
pub(crate) enum Session {
    /// A running node, reached through its socket.
    Remote {
        socket: PathBuf,
        /// The connection made when the node was found, for the first
        /// request: a node that stops meanwhile still serves it.
        first: Mutex<Option<Client>>,
    },
    /// This process, with a node of its own once a request needs one.
    Local {
        store: Store,
        node: OnceCell<Node>,
        data_dir: PathBuf,
    },
}

impl Session {
    /// Connects to the running node, or opens the store here (and starts a
    /// node now if `needs_node`, else when a request needs one) for `who` (`p2pfs add (pid 1234)`), waiting
    /// for a node that is starting or a command that has the store (see
    /// [`turns`]).
    pub(crate) async fn open(data_dir: &Path, needs_node: bool, who: &str) -> anyhow::Result<Self> {
        let socket = data_dir.join(control::SOCKET);
        let mut wait = turns::Wait::new(QUIET_WAIT)?;
        let store = loop {
            if let Some(client) = Client::connect(&socket).await {
                return Ok(Self::Remote {
                    socket,
                    first: Mutex::new(Some(client)),
                });
            }
            if let Some(node) = turns::node_holding(data_dir) {
                let (what, failed) = node.waiting(data_dir);
                wait.pause(&what, failed).await?;
                continue;
            }
            match turns::try_open_store(data_dir, who)? {
                Ok(store) => break store,
                Err(holder) => turns::store_busy(data_dir, holder, &mut wait).await?,
            }
        };
        let session = Self::Local {
            store,
            node: OnceCell::new(),
            data_dir: data_dir.to_path_buf(),
        };
        if needs_node {
            session.local_node().await?;
        }
        Ok(session)
    }

    /// The node of a local session, started on first use: a node for one
    /// command, a DHT client joining through the nodes its daemon
    /// remembered and the LAN.
    async fn local_node(&self) -> anyhow::Result<Option<&Node>> {
        let Self::Local {
            store,
            node,
            data_dir,
        } = self
        else {
            return Ok(None);
        };
        let node = node
            .get_or_try_init(|| async {
                let dht = DhtConfig {
                    server: false,
                    lan: true,
                    ..DhtConfig::default()
                };
                // A node started for one command relays for nobody.
                let relay = p2pfs_swarm::RelayMode::Off;
                start_node(
                    data_dir,
                    store.clone(),
                    None,
                    Limits::default(),
                    dht,
                    None,
                    relay,
                    mainline_config(false, &[]),
                    false,
                )
                .await
            })
            .await?;
        Ok(Some(node))
    }

    /// The store, when running in this process.
    pub(crate) fn local_store(&self) -> Option<&Store> {
        match self {
            Self::Local { store, .. } => Some(store),
            Self::Remote { .. } => None,
        }
    }

    /// Sends `request`; `input` supplies the bytes of an add from stdin.
    /// Returns the stream of responses.
    pub(crate) async fn call(
        &self,
        request: Request,
        input: Option<Box<dyn Read + Send>>,
    ) -> anyhow::Result<mpsc::Receiver<Response>> {
        let (tx, rx) = mpsc::channel(16);
        match self {
            Self::Remote { socket, first } => {
                let first = first.lock().unwrap_or_else(|e| e.into_inner()).take();
                let mut client = match first {
                    Some(c) => c,
                    None => Client::connect(socket)
                        .await
                        .context("the running p2pfs node stopped answering")?,
                };
                client
                    .send(&request)
                    .await
                    .context("sending to the running node")?;
                if let Some(input) = input {
                    let (in_tx, mut in_rx) = mpsc::channel::<Vec<u8>>(4);
                    drop(p2pfs_swarm::off_thread(move || {
                        pump(input, |c| in_tx.blocking_send(c).is_ok())
                    }));
                    while let Some(chunk) = in_rx.recv().await {
                        client
                            .send_input(chunk)
                            .await
                            .context("sending input to the running node")?;
                    }
                }
                tokio::spawn(async move {
                    loop {
                        let r = match client.recv().await {
                            Ok(r) => r,
                            Err(e) => Response::Error(format!("the running node went away: {e}")),
                        };
                        let end = matches!(r, Response::Done | Response::Error(_));
                        if tx.send(r).await.is_err() || end {
                            break;
                        }
                    }
                });
            }
            Self::Local { store, node, .. } => {
                let node = if api::needs_node(&request, store).await? {
                    self.local_node().await?.cloned()
                } else {
                    node.get().cloned()
                };
                let (in_tx, in_rx) = mpsc::channel(4);
                if let Some(input) = input {
                    drop(p2pfs_swarm::off_thread(move || {
                        pump(input, |c| in_tx.blocking_send(c.into()).is_ok())
                    }));
                }
                let ctx = api::Ctx::local(store.clone(), node);
                tokio::spawn(api::run(ctx, request, in_rx, tx));
            }
        }
        Ok(rx)
    }

    /// Stops the short-lived node, if any.
    pub(crate) async fn close(self) {
        if let Self::Local { node, .. } = self
            && let Some(node) = node.into_inner()
        {
            node.shutdown().await;
        }
    }
}

/// Reads `input` in chunks until its end, which is marked by an empty chunk.
fn pump(mut input: Box<dyn Read + Send>, mut send: impl FnMut(Vec<u8>) -> bool) {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match input.read(&mut buf) {
            Ok(0) => {
                send(Vec::new());
                return;
            }
            Ok(n) => {
                if !send(buf[..n].to_vec()) {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // Dropping the sender tells the reader the input was cut off.
            Err(_) => return,
        }
    }
}

/// An environment setting for experiments (`P2PFS_CONGESTION`,
/// `P2PFS_LINK_DELAY`), if set; a bad value is an error naming it.
fn env_parse<T: std::str::FromStr<Err = String>>(name: &str) -> anyhow::Result<Option<T>> {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .map_err(|e: String| anyhow::anyhow!("{name}: {e}"))
        })
        .transpose()
}

/// How the node uses the Mainline DHT: off with `--no-mainline` or
/// `P2PFS_MAINLINE=off`; through `--mainline-bootstrap` nodes, else those
/// of `P2PFS_MAINLINE_BOOTSTRAP` (comma-separated), else the BitTorrent
/// network's well-known routers.
pub(crate) fn mainline_config(
    off: bool,
    bootstrap: &[String],
) -> p2pfs_swarm::mainline::MainlineConfig {
    // An explicit bootstrap list means the Mainline DHT is wanted.
    let env_off = bootstrap.is_empty()
        && std::env::var("P2PFS_MAINLINE").is_ok_and(|v| v == "off" || v == "0");
    let bootstrap = if bootstrap.is_empty() {
        std::env::var("P2PFS_MAINLINE_BOOTSTRAP").ok().map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
    } else {
        Some(bootstrap.to_vec())
    };
    p2pfs_swarm::mainline::MainlineConfig {
        enabled: !off && !env_off,
        bootstrap,
    }
}

/// Starts a node for this data directory, on `listen` or on the port it
/// used last time.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn start_node(
    data_dir: &Path,
    store: Store,
    listen: Option<SocketAddr>,
    limits: Limits,
    dht: DhtConfig,
    replica: Option<ReplicaConfig>,
    relay: p2pfs_swarm::RelayMode,
    mainline: p2pfs_swarm::mainline::MainlineConfig,
    port_mapping: bool,
) -> anyhow::Result<Node> {
    let port_file = data_dir.join("port");
    let mut limits = limits;
    if let Some(c) = env_parse("P2PFS_CONGESTION")? {
        limits.congestion = c;
    }
    let default_port = std::fs::read_to_string(&port_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let node = Node::spawn(
        NodeConfig {
            key_path: data_dir.join("node.key"),
            listen,
            default_port,
            limits,
            dht,
            display_name: config::display_name(data_dir),
            replica,
            link_delay: env_parse("P2PFS_LINK_DELAY")?,
            relay,
            mainline,
            port_mapping,
        },
        store,
    )
    .await
    .context("starting the node")?;
    let port = node.bound_addr().port();
    if listen.is_none() && port != default_port {
        // Best effort: a stable port keeps tickets and peers' memories valid.
        let _ = crate::private::write(&port_file, format!("{port}\n").as_bytes());
    }
    Ok(node)
}
