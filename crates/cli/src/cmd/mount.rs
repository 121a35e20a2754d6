//! `p2pfs mount --daemon`: the same command again without `--daemon`, in
//! a new session with its output in `DATA/mount.log`; returns once the
//! filesystem is mounted (or says why it could not be). `p2pfs umount`:
//! unmounts, then follows the mount's node while it hands what only it
//! keeps to other members.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context;
use p2pfs_swarm::replica::LeaveProgress;

use crate::control::{self, Request, Response};

/// How long the background mount has to come up, once it has the store
/// (it may first wait up to `turns::limit()` for a command to finish).
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) async fn background(data_dir: &Path, mountpoint: &Path) -> anyhow::Result<()> {
    let log_path = data_dir.join("mount.log");
    let log = crate::private::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let args: Vec<_> = std::env::args_os()
        .skip(1)
        .filter(|a| a != "--daemon")
        .collect();
    let exe = std::env::current_exe().context("finding the p2pfs executable")?;
    let mut child = {
        use std::os::unix::process::CommandExt;
        Command::new(exe)
            .args(&args)
            .env("P2PFS_DATA_DIR", data_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("opening the log")?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("starting the background mount")?
    };
    let mountpoint = mountpoint
        .canonicalize()
        .with_context(|| format!("{} does not exist", mountpoint.display()))?;
    let limit = START_TIMEOUT + crate::turns::limit()?;
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().context("waiting for the mount")? {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let why = log
                .lines()
                .rev()
                .find(|l| l.starts_with("error:"))
                .unwrap_or("see the log")
                .to_string();
            anyhow::bail!("the background mount stopped ({status}): {why}");
        }
        if p2pfs_fuse::is_mounted(&mountpoint) {
            break;
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "the mount did not come up within {}s (pid {}; log: {})",
                limit.as_secs(),
                child.id(),
                log_path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "rooms mounted at {} (pid {}; log: {}; stop with `fusermount3 -u {}` or `kill {}`)",
        mountpoint.display(),
        child.id(),
        log_path.display(),
        mountpoint.display(),
        child.id()
    );
    Ok(())
}

/// `p2pfs umount`: unmounts `mountpoint`; if the node that served it is
/// this data directory's, shows it leaving (the files only it keeps
/// reaching other members) and returns once that is done.
pub(crate) async fn umount(data_dir: &Path, mountpoint: &Path, lazy: bool) -> anyhow::Result<()> {
    // Which node serves the mount (a dead mount answers nothing).
    let node = p2pfs_fuse::node_of(mountpoint);
    p2pfs_fuse::unmount(mountpoint, lazy)?;
    let Some(node) = node else {
        return Ok(());
    };
    let socket = data_dir.join(control::SOCKET);
    let Some(mut client) = control::Client::connect(&socket).await else {
        return Ok(());
    };
    client.send(&Request::Status).await?;
    let serves_it =
        matches!(client.recv().await, Ok(Response::Status(s)) if s.node.to_string() == node);
    if !serves_it {
        return Ok(());
    }
    let Some(mut client) = control::Client::connect(&socket).await else {
        return Ok(());
    };
    client.send(&Request::Leave).await?;
    let (tx, rx) = tokio::sync::watch::channel(LeaveProgress::default());
    let shown = tokio::spawn(crate::cmd::daemon::show_leave(rx));
    loop {
        match client.recv().await {
            Ok(Response::Leaving(p)) => {
                let done = p.done;
                tx.send_replace(p);
                if done {
                    break;
                }
            }
            // The node stopped (or never had anything to wait for).
            Ok(Response::Done | Response::Error(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    drop(tx);
    let _ = shown.await;
    Ok(())
}
