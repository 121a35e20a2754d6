//! One process has a store open at a time, and the others can say which.
//!
//! `<dir>/lock` is locked (`flock`, exclusive) by the process that has the
//! store open, from before the database is opened until the store is
//! dropped, and holds one line naming that process (`p2pfs add (pid
//! 1234)`, from [`crate::Options::holder`]). Another process is refused with
//! [`StoreError::Locked`] carrying that line, so a command can say what it
//! waits for. The lock dies with its process: nothing is ever stale.
//!
//! A lock just released can look held for a moment: a process that forks
//! while its store is open gives the child a copy of the lock's file,
//! which the child holds until it starts its program (on a loaded machine,
//! milliseconds). So a lock found held is tried again for a short while
//! ([`SETTLE`]) before the store is called in use.
//! redb's own lock on `meta.redb` stays the last word (a process that
//! skips this file is still refused).

use std::{
    fs::{File, OpenOptions},
    os::unix::fs::{FileExt, OpenOptionsExt},
    path::Path,
};

use rustix::fs::{FlockOperation, flock};

use crate::{FILE_MODE, StoreError, error::IoContext};

/// The name of the lock file in the store's directory.
pub const LOCK_FILE: &str = "lock";

/// How long a lock found held is tried again (every [`RETRY`]).
const SETTLE: std::time::Duration = std::time::Duration::from_millis(500);
const RETRY: std::time::Duration = std::time::Duration::from_millis(5);

/// Holds the lock while it lives.
#[derive(Debug)]
pub(crate) struct Holder {
    _file: File,
}

/// Takes the lock of the store at `root` for `who`, or says who has it.
pub(crate) fn take(root: &Path, who: &str) -> Result<Holder, StoreError> {
    let path = root.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(&path)
        .ctx(|| format!("opening {}", path.display()))?;
    let deadline = std::time::Instant::now() + SETTLE;
    let mut locked = flock(&file, FlockOperation::NonBlockingLockExclusive);
    while locked == Err(rustix::io::Errno::WOULDBLOCK) && std::time::Instant::now() < deadline {
        std::thread::sleep(RETRY);
        locked = flock(&file, FlockOperation::NonBlockingLockExclusive);
    }
    match locked {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            // Read through the path: the holder may be rewriting it.
            let holder = std::fs::read_to_string(&path)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty());
            return Err(StoreError::Locked {
                path: root.to_path_buf(),
                holder,
            });
        }
        Err(e) => {
            return Err(crate::error::io_error(
                format!("locking {}", path.display()),
                e.into(),
            ));
        }
    }
    let line = format!("{}\n", who.trim());
    file.set_len(0)
        .and_then(|()| file.write_all_at(line.as_bytes(), 0))
        .ctx(|| format!("writing {}", path.display()))?;
    Ok(Holder { _file: file })
}

/// What a process is called in [`StoreError::Locked`] when it does not
/// say: its program name and pid.
pub(crate) fn default_holder() -> String {
    let program = std::env::args_os()
        .next()
        .and_then(|a| {
            Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "a process".into());
    format!("{program} (pid {})", std::process::id())
}
