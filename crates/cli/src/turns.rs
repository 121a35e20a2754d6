//! One data directory, many commands: each waits its turn instead of
//! failing because another holds the store.
//!
//! - A node (`p2pfs daemon`, `p2pfs mount`) holds a POSIX record lock on
//!   `DIR/daemon.lock` for its whole life, taken before it opens the store.
//!   The file says what the node is doing (`starting`, `running`,
//!   `stopping`). A second node finds the lock held and fails at once, or
//!   waits if the first is stopping (a restart); a command finds it held
//!   (`F_GETLK`, which takes nothing, so a command never gets in a
//!   starting node's way) and waits for the node's control socket, to run
//!   there rather than race it for the store (or, if it is stopping, for
//!   it to exit).
//! - The store has one owner at a time (`p2pfs_store::LOCK_FILE`, which
//!   names its holder). Whoever finds it taken, command or node, tries
//!   again every few milliseconds (with jitter, so commands started
//!   together spread out) until the owner is done.
//!
//! Waits are bounded by [`limit`] (60 s; `P2PFS_WAIT` in seconds), and
//! say once on stderr what they wait for.

use std::{
    fs::{File, OpenOptions},
    os::unix::fs::{FileExt, OpenOptionsExt},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use p2pfs_store::{Options, Store, StoreError};
use rustix::{
    fs::FlockOperation,
    process::{Flock, FlockOffsetType, FlockType},
};

/// The file a running or starting node holds locked.
pub(crate) const NODE_LOCK: &str = "daemon.lock";
/// How long to wait by default.
const DEFAULT_LIMIT: Duration = Duration::from_secs(60);

/// The longest wait: `P2PFS_WAIT` (seconds), else 60 s.
pub(crate) fn limit() -> anyhow::Result<Duration> {
    match std::env::var("P2PFS_WAIT") {
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| anyhow::anyhow!("P2PFS_WAIT: {v:?} is not a number of seconds")),
        Err(_) => Ok(DEFAULT_LIMIT),
    }
}

/// A node's hold on its data directory, for as long as it lives. The
/// file says what the node is doing (`starting`, `running`, `stopping`).
#[derive(Debug)]
pub(crate) struct NodeLock {
    /// Closing any descriptor of the file would drop a POSIX lock: this
    /// process opens it only here.
    file: File,
}

impl NodeLock {
    /// Takes the lock, or fails at once naming the node that holds it;
    /// a node that is stopping is waited for (a restart).
    pub(crate) async fn take(data_dir: &Path, wait: &mut Wait) -> anyhow::Result<Self> {
        let path = data_dir.join(NODE_LOCK);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(crate::private::FILE_MODE)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        loop {
            match rustix::fs::fcntl_lock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {
                    let lock = Self { file };
                    lock.say("starting");
                    return Ok(lock);
                }
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::ACCESS) => {
                    // Probing opens and closes the file: harmless, as this
                    // process holds no lock on it yet.
                    match node_holding(data_dir) {
                        Some(node) if node.state == "stopping" => {
                            let (what, failed) = node.waiting(data_dir);
                            wait.pause(&what, failed).await?;
                        }
                        node => bail!(
                            "a p2pfs node is already running or starting for {}{}",
                            data_dir.display(),
                            node.map(|n| format!(" (pid {})", n.pid))
                                .unwrap_or_default()
                        ),
                    }
                }
                Err(e) => return Err(e).with_context(|| format!("locking {}", path.display())),
            }
        }
    }

    /// Records what the node is doing, for commands that wait for it.
    pub(crate) fn say(&self, state: &str) {
        let line = format!("{state}\n");
        // Best effort: the state only words a message.
        let _ = self
            .file
            .set_len(0)
            .and_then(|()| self.file.write_all_at(line.as_bytes(), 0));
    }
}

/// A node that holds `DIR/daemon.lock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeHolder {
    pub(crate) pid: u32,
    /// `starting`, `running` or `stopping`.
    pub(crate) state: String,
}

impl NodeHolder {
    /// What a command waits for, and how the wait fails.
    pub(crate) fn waiting(&self, data_dir: &Path) -> (String, impl FnOnce(u64) -> String) {
        let node = format!(
            "the p2pfs node {} for {} (pid {})",
            self.state,
            data_dir.display(),
            self.pid
        );
        let verb = if self.state == "stopping" {
            "exit"
        } else {
            "answer"
        };
        let what = format!("{node} to {verb}");
        let failed = move |secs| format!("{node} did not {verb} within {secs} s");
        (what, failed)
    }
}

/// The node running, starting or stopping for `data_dir` (holding its
/// lock), if any.
pub(crate) fn node_holding(data_dir: &Path) -> Option<NodeHolder> {
    let path = data_dir.join(NODE_LOCK);
    let file = File::open(&path).ok()?;
    let probe = Flock {
        start: 0,
        length: 0,
        pid: None,
        typ: FlockType::WriteLock,
        offset_type: FlockOffsetType::Set,
    };
    let held = rustix::process::fcntl_getlk(&file, &probe).ok()??;
    let state = std::fs::read_to_string(&path).unwrap_or_default();
    Some(NodeHolder {
        pid: held
            .pid
            .map_or(0, |p| p.as_raw_nonzero().get().unsigned_abs()),
        state: Some(state.trim())
            .filter(|s| !s.is_empty())
            .unwrap_or("starting")
            .to_string(),
    })
}

/// A wait with a deadline, that says once what it waits for.
#[derive(Debug)]
pub(crate) struct Wait {
    started: Instant,
    limit: Duration,
    /// How long to wait before saying so (a short wait is not news).
    quiet_for: Duration,
    said: bool,
}

impl Wait {
    /// Starts a wait of at most [`limit`], silent for `quiet_for`.
    pub(crate) fn new(quiet_for: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            started: Instant::now(),
            limit: limit()?,
            quiet_for,
            said: false,
        })
    }

    /// Pauses before the next try: says (once) that it waits for `what`,
    /// or fails with `gave_up` once the wait has lasted its limit.
    pub(crate) async fn pause(
        &mut self,
        what: &str,
        gave_up: impl FnOnce(u64) -> String,
    ) -> anyhow::Result<()> {
        let waited = self.started.elapsed();
        if waited >= self.limit {
            bail!(gave_up(self.limit.as_secs()));
        }
        if !self.said && waited >= self.quiet_for {
            eprintln!("waiting for {what}");
            self.said = true;
        }
        tokio::time::sleep(Duration::from_millis(fastrand::u64(5..=25))).await;
        Ok(())
    }
}

/// One try at the store in `data_dir` for `who` (`p2pfs add (pid 1234)`):
/// `Ok(Err(holder))` if another process has it.
pub(crate) fn try_open_store(
    data_dir: &Path,
    who: &str,
) -> anyhow::Result<Result<Store, Option<String>>> {
    let opts = Options {
        holder: who.to_string(),
        ..Options::default()
    };
    match Store::open_with(data_dir.join("store"), opts) {
        Ok(store) => Ok(Ok(store)),
        Err(StoreError::Locked { holder, .. }) => Ok(Err(holder)),
        Err(e) => Err(e).with_context(|| format!("opening the store in {}", data_dir.display())),
    }
}

/// Opens the store, waiting (see [`Wait`]) while another process has it.
pub(crate) async fn open_store(
    data_dir: &Path,
    who: &str,
    wait: &mut Wait,
) -> anyhow::Result<Store> {
    loop {
        match try_open_store(data_dir, who)? {
            Ok(store) => return Ok(store),
            Err(holder) => store_busy(data_dir, holder, wait).await?,
        }
    }
}

/// Waits a moment because `holder` has the store.
pub(crate) async fn store_busy(
    data_dir: &Path,
    holder: Option<String>,
    wait: &mut Wait,
) -> anyhow::Result<()> {
    let holder = holder.unwrap_or_else(|| "another p2pfs process".into());
    let store = data_dir.join("store");
    wait.pause(
        &format!("{holder} to finish with {}", store.display()),
        |secs| {
            format!(
                "the store at {} is still in use by {holder} after {secs} s",
                store.display()
            )
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_second_node_lock_is_refused_and_a_probe_takes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(node_holding(dir.path()), None);
        let mut wait = Wait::new(Duration::ZERO).unwrap();
        let _lock = block_on(NodeLock::take(dir.path(), &mut wait)).unwrap();
        // Record locks do not conflict within one process: a child
        // process probes and tries, as another command or node would.
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "turns::tests::probe_from_another_process",
                "--nocapture",
            ])
            .env("P2PFS_TEST_DIR", dir.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "{text}");
    }

    /// Run by the test above in a child process; passes trivially alone.
    #[test]
    fn probe_from_another_process() {
        let Some(dir) = std::env::var_os("P2PFS_TEST_DIR") else {
            return;
        };
        let dir = Path::new(&dir);
        let parent = std::os::unix::process::parent_id();
        // Probing twice takes nothing: the holder is still named.
        let holder = NodeHolder {
            pid: parent,
            state: "starting".into(),
        };
        assert_eq!(node_holding(dir), Some(holder.clone()));
        assert_eq!(node_holding(dir), Some(holder));
        let mut wait = Wait::new(Duration::ZERO).unwrap();
        let err = block_on(NodeLock::take(dir, &mut wait))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("already running or starting") && err.contains(&format!("(pid {parent})")),
            "{err}"
        );
    }
}
