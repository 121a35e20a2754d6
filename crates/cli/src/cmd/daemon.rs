//! `p2pfs daemon`: run a node in the foreground until Ctrl-C or SIGTERM,
//! serving peers and the CLI (through the control socket).

use std::{net::SocketAddr, path::Path};

use anyhow::Context;
use p2pfs_proto::{PeerAddr, dht};
use p2pfs_swarm::{Limits, Target, control, dht::DhtConfig};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::{config, session};

pub(crate) async fn run(
    data_dir: &Path,
    listen: Option<SocketAddr>,
    peers: Vec<PeerAddr>,
    limits: Limits,
    lan: bool,
) -> anyhow::Result<()> {
    let socket = data_dir.join(control::SOCKET);
    if control::Client::connect(&socket).await.is_some() {
        anyhow::bail!(
            "a p2pfs node is already running for {} (its control socket answers)",
            data_dir.display()
        );
    }
    let store = config::open_store(data_dir)?;
    let dht = DhtConfig {
        server: true,
        bootstrap: peers.iter().map(|p| Target::from(*p)).collect(),
        lan,
        ..DhtConfig::default()
    };
    let node = session::start_node(data_dir, store, listen, limits, dht).await?;
    let cancel = CancellationToken::new();
    let control = {
        let (node, cancel, socket) = (node.clone(), cancel.clone(), socket.clone());
        tokio::spawn(async move { control::serve(node, &socket, cancel).await })
    };
    let addrs: Vec<String> = node.addrs().iter().map(|a| a.to_string()).collect();
    eprintln!("p2pfs node {}", node.id());
    eprintln!("listening on {}", addrs.join(", "));
    for peer in peers {
        let node = node.clone();
        tokio::spawn(async move {
            match node.dial(&peer.into(), dht::ALPN).await {
                Ok(id) => tracing::info!(%peer, node = %id, "connected to peer"),
                Err(e) => eprintln!("warning: peer {peer}: {e}"),
            }
        });
    }
    let mut term = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    let stopped = tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = term.recv() => Ok(()),
        r = control => r.context("control socket task").and_then(|r| r.context("control socket")),
    };
    eprintln!("shutting down");
    cancel.cancel();
    node.shutdown().await;
    stopped
}
