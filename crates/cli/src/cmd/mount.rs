//! `p2pfs mount --daemon`: the same command again without `--daemon`, in
//! a new session with its output in `DATA/mount.log`; returns once the
//! filesystem is mounted (or says why it could not be).

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context;

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
