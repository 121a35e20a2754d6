//! The p2pfs FUSE filesystem: each room a directory, `cp` publishes, reads
//! fetch verified chunk groups on demand, `chat.log` is the room's chat.
//!
//! The mount shows `ROOM/…` for every room the node is in: the room's tree
//! (from its log's view) and `chat.log`. Modules follow the requests:
//! `dir` (names: lookup, mkdir, rename…), `file` (open, read, write,
//! publish at close), `write` (a file being written: the state machine
//! from open to publication), `fetch` (on-demand reads with read-ahead),
//! `chat`, `xattr`, `links` (hard links); `publish` writes closed files to
//! the room's log in batches; `local` keeps the special files (FIFOs,
//! sockets, devices) made here; `fs` holds the shared state, `inode` and
//! `tree` what it is made of; operations return `Result<_, Errno>` or an
//! `answer::Answer`, and `kernel` alone routes fuser's calls and replies;
//! `watch` invalidates the kernel's caches when rooms change, `interrupt`
//! ends a wait when its process gets a signal, `mount` mounts.

mod answer;
mod chat;
mod dir;
mod fetch;
mod file;
mod fs;
mod inode;
mod interrupt;
mod kernel;
mod links;
mod local;
mod mount;
mod publish;
mod tree;
mod watch;
mod write;
mod xattr;

pub use mount::{Mount, MountOptions, Published, is_mounted, mount, node_of, unmount};
pub use p2pfs_swarm as swarm;

/// Why mounting failed.
#[derive(Debug, thiserror::Error)]
pub enum FuseError {
    /// The mount point cannot be used.
    #[error("{0}")]
    Mountpoint(String),
    /// Mounting as a normal user needs the setuid helper.
    #[error(
        "mounting as a normal user needs fusermount3, which is missing \
         (install the fuse3 package: apt-get install fuse3), or mount as root"
    )]
    NoFusermount,
    /// Something else.
    #[error("{0}")]
    Setup(String),
    /// An I/O error.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl FuseError {
    pub(crate) fn io(context: String, source: std::io::Error) -> Self {
        Self::Io { context, source }
    }
}
