//! `p2pfs daemon` and `p2pfs mount`: run a node in the foreground until
//! Ctrl-C or SIGTERM, serving peers and the CLI (through the control
//! socket), with the rooms mounted as a filesystem for `mount` (which also
//! ends when the filesystem is unmounted).

use std::{path::Path, time::Duration};

use anyhow::Context;
use p2pfs_proto::dht;
use p2pfs_swarm::{Limits, Target, dht::DhtConfig, replica::ReplicaConfig};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use p2pfs_swarm::replica::LeaveProgress;

use crate::{args::NodeArgs, control, output::human_bytes, private, session, turns};

/// How often a mount is checked for having been unmounted from outside.
const MOUNT_CHECK: Duration = Duration::from_millis(200);

/// Takes the data directory for a node: its lock (held until the node has
/// stopped, so commands wait for this node rather than race it for the
/// store; a second node fails here, a stopping one is waited for), then
/// the store, once a command that has it is done. What it waits for is
/// said at once: a node's start is worth a line.
async fn claim(
    data_dir: &Path,
    socket: &Path,
    who: &str,
    wait: &mut turns::Wait,
) -> anyhow::Result<(turns::NodeLock, p2pfs_store::Store)> {
    let lock = turns::NodeLock::take(data_dir, wait).await?;
    if control::Client::connect(socket).await.is_some() {
        anyhow::bail!(
            "a p2pfs node is already running for {} (its control socket answers)",
            data_dir.display()
        );
    }
    let store = turns::open_store(data_dir, who, wait).await?;
    Ok((lock, store))
}

/// Runs the node for `who` (`p2pfs daemon (pid 1234)`).
pub(crate) async fn run(
    data_dir: &Path,
    args: NodeArgs,
    mountpoint: Option<&p2pfs_fuse::MountOptions>,
    who: &str,
) -> anyhow::Result<()> {
    // First of all: a stop asked for at any moment from here on is a
    // clean one (exit status 0), never the signal's default.
    let mut term = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
    if let Some(name) = &args.name {
        if !p2pfs_proto::room::valid_display_name(name) {
            anyhow::bail!("{name:?} cannot be a display name (1 to 64 bytes, no `/`)");
        }
        private::write(&data_dir.join("name"), format!("{name}\n").as_bytes())
            .context("saving the display name")?;
    }
    let socket = data_dir.join(control::SOCKET);
    let mut wait = turns::Wait::new(Duration::ZERO)?;
    let (lock, store) = tokio::select! {
        claimed = claim(data_dir, &socket, who, &mut wait) => claimed?,
        _ = term.recv() => return Ok(()),
        _ = int.recv() => return Ok(()),
    };
    let dht = DhtConfig {
        server: true,
        bootstrap: args.peers.iter().map(|p| Target::from(*p)).collect(),
        lan: !args.no_lan,
        ..DhtConfig::default()
    };
    let limits = Limits {
        max_upload_rate: args.max_upload_rate,
        ..Limits::default()
    };
    let replica = ReplicaConfig {
        offline_after: args
            .offline_after
            .unwrap_or(p2pfs_swarm::replica::DEFAULT_OFFLINE_AFTER),
        max_storage: args.max_storage,
        leave_timeout: args
            .leave_timeout
            .unwrap_or(p2pfs_swarm::replica::DEFAULT_LEAVE_TIMEOUT),
    };
    let node = session::start_node(
        data_dir,
        store,
        args.listen,
        limits,
        dht,
        Some(replica),
        args.relay,
        session::mainline_config(args.no_mainline, &args.mainline_bootstrap),
        !args.no_port_mapping,
    )
    .await?;
    // A name changed (`--name`, P2PFS_NAME) since the last run reaches
    // the rooms joined before.
    node.publish_name().await;
    let mount = match mountpoint {
        Some(m) => match p2pfs_fuse::mount(node.clone(), m) {
            Ok(mount) => Some(mount),
            Err(e) => {
                node.shutdown().await;
                return Err(e).context("mounting");
            }
        },
        None => None,
    };
    let page = crate::cmd::web::start(&node, data_dir, args.http).await;
    let cancel = CancellationToken::new();
    let mut control = {
        let (node, cancel, socket) = (node.clone(), cancel.clone(), socket.clone());
        tokio::spawn(async move { control::serve(node, &socket, cancel).await })
    };
    lock.say("running");
    let addrs: Vec<String> = node.addrs().iter().map(|a| a.to_string()).collect();
    eprintln!("p2pfs node {}", node.id());
    eprintln!("listening on {}", addrs.join(", "));
    if let Some(m) = &mount {
        eprintln!("rooms mounted at {}", m.mountpoint().display());
    }
    for peer in args.peers {
        let node = node.clone();
        tokio::spawn(async move {
            match node.dial(&peer.into(), dht::ALPN).await {
                Ok(id) => tracing::info!(%peer, node = %id, "connected to peer"),
                Err(e) => eprintln!("warning: peer {peer}: {e}"),
            }
        });
    }
    let unmounted = async {
        let Some(m) = &mount else {
            return std::future::pending::<()>().await;
        };
        let mut tick = tokio::time::interval(MOUNT_CHECK);
        while m.is_mounted() {
            tick.tick().await;
        }
    };
    let stopped = tokio::select! {
        _ = int.recv() => Ok(()),
        _ = term.recv() => Ok(()),
        () = unmounted => {
            eprintln!("the filesystem was unmounted");
            Ok(())
        }
        r = &mut control => r.context("control socket task").and_then(|r| r.context("control socket")),
    };
    eprintln!("shutting down");
    if let Some(page) = page {
        page.stop().await;
    }
    if let Some(m) = mount {
        let published = m.published();
        // Unmounting waits for the kernel's threads: not on the runtime.
        match p2pfs_swarm::off_thread(move || m.unmount()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: {e}"),
            Err(e) => eprintln!("warning: unmounting: {e}"),
        }
        // The files closed last are in the log before the node leaves.
        published.flush().await;
    }
    // What only this node keeps goes to other members first (a second
    // Ctrl-C or SIGTERM stops waiting; `p2pfs umount` follows it through
    // the control socket, still open); then the node says goodbye.
    let abort = async {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    };
    tokio::select! {
        () = show_leave(node.leave(None)) => {}
        () = abort => eprintln!("stopped waiting"),
    }
    // In order: no new command (the socket goes), the commands already
    // accepted finish, then the node stops.
    lock.say("stopping");
    cancel.cancel();
    if !control.is_finished() {
        let _ = control.await;
    }
    node.shutdown().await;
    stopped
}

/// Prints how leaving goes (on stderr) until it is done, then the files
/// that still have no copy but this node's.
pub(crate) async fn show_leave(mut rx: tokio::sync::watch::Receiver<LeaveProgress>) {
    let mut shown = None;
    loop {
        let p = rx.borrow_and_update().clone();
        if p.done {
            if !p.only_here.is_empty() {
                eprintln!(
                    "warning: {} room file(s) have no copy on a member online but this one:",
                    p.only_here.len()
                );
                for f in &p.only_here {
                    eprintln!("  {}/{} ({})", f.room, f.path, human_bytes(f.size));
                }
            }
            return;
        }
        if p.waiting > 0 && shown != Some((p.waiting, p.waiting_bytes)) {
            shown = Some((p.waiting, p.waiting_bytes));
            eprintln!(
                "leaving: {} file(s) ({}) that only this node keeps are being copied to \
                 other members (Ctrl-C to stop waiting)",
                p.waiting,
                human_bytes(p.waiting_bytes)
            );
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}
