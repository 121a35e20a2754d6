//! Mounting and unmounting: checks on the mount point (a stale mount left
//! by a crash is cleaned up), the kernel options, the session threads and
//! the task that keeps the kernel's caches true.

use std::{
    io,
    path::{Path, PathBuf},
    sync::Arc,
};

use fuser::{Config, MountOption, SessionACL};
use p2pfs_swarm::Node;
use tokio::sync::watch;

use crate::{FuseError, fs::Fs, kernel::Kernel};

/// Threads reading requests from the kernel.
const THREADS: usize = 2;

/// `ENOTCONN`: what a FUSE mount whose process died answers.
const ENOTCONN: i32 = 107;
/// `EINVAL`: what unmounting something no longer mounted answers.
const EINVAL: i32 = 22;

/// A mounted filesystem; unmounted by [`Mount::unmount`] or on drop.
#[derive(Debug)]
pub struct Mount {
    session: Option<fuser::BackgroundSession>,
    stop: watch::Sender<bool>,
    mountpoint: PathBuf,
    fs: Arc<Fs>,
}

/// What a mount has still to publish (the files closed last, queued at
/// their rooms' publishers), to wait for before the node stops.
#[derive(Debug, Clone)]
pub struct Published(Arc<Fs>);

impl Published {
    /// Waits until every file closed so far is in its room's log.
    pub async fn flush(&self) {
        self.0.flush_all().await;
    }
}

/// Where and how to mount.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// The directory to mount on.
    pub mountpoint: PathBuf,
    /// Other users of the machine may use the mount (as the files' modes
    /// allow); else only its owner.
    pub allow_other: bool,
}

/// Mounts `node`'s rooms as `options` say. Must be called from within a
/// tokio runtime (the filesystem's tasks run on it).
pub fn mount(node: Node, options: &MountOptions) -> Result<Mount, FuseError> {
    let mountpoint = options.mountpoint.as_path();
    prepare(mountpoint)?;
    let rt = tokio::runtime::Handle::try_current()
        .map_err(|_| FuseError::Setup("mount needs a tokio runtime".into()))?;
    let fs = Arc::new(Fs::new(node, rt.clone()));
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("p2pfs".into()),
        MountOption::Subtype("p2pfs".into()),
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    config.acl = SessionACL::Owner;
    if options.allow_other {
        // (fuser maps it to the kernel's `allow_other`.)
        config.acl = SessionACL::All;
    }
    config.n_threads = Some(THREADS);
    config.clone_fd = true;
    let session = fuser::Session::new(Kernel(fs.clone()), mountpoint, &config)
        .map_err(|e| mount_error(mountpoint, e))?
        .spawn()
        .map_err(|e| {
            FuseError::io(
                format!("starting the session for {}", mountpoint.display()),
                e,
            )
        })?;
    let (stop, stopped) = watch::channel(false);
    rt.spawn(crate::watch::run(fs.clone(), session.notifier(), stopped));
    Ok(Mount {
        session: Some(session),
        stop,
        mountpoint: mountpoint.to_path_buf(),
        fs,
    })
}

impl Mount {
    /// Where it is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// A handle to wait for what it has still to publish (also after it
    /// is unmounted).
    pub fn published(&self) -> Published {
        Published(self.fs.clone())
    }

    /// False once the kernel ended the session (`umount`, `fusermount3 -u`).
    pub fn is_mounted(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| !s.guard.is_finished())
    }

    /// Unmounts (lazily if busy) and waits for the session threads.
    pub fn unmount(mut self) -> Result<(), FuseError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<(), FuseError> {
        let _ = self.stop.send(true);
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let gone = session.guard.is_finished();
        match session.umount_and_join() {
            // Unmounted from outside already (`umount`): nothing to undo.
            Err(e) if gone && e.raw_os_error() == Some(EINVAL) => Ok(()),
            r => {
                r.map_err(|e| FuseError::io(format!("unmounting {}", self.mountpoint.display()), e))
            }
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            tracing::warn!("{e}");
        }
    }
}

/// Checks the mount point; cleans up a stale mount left by a crash.
fn prepare(mountpoint: &Path) -> Result<(), FuseError> {
    // The kernel may answer `stat` of a dead mount from its cache; listing
    // it always asks the (dead) process.
    let probe = std::fs::metadata(mountpoint).and_then(|m| {
        if is_mount_point(mountpoint) {
            std::fs::read_dir(mountpoint)?;
        }
        Ok(m)
    });
    match probe {
        Err(e) if e.raw_os_error() == Some(ENOTCONN) => {
            tracing::warn!(
                "{} is a stale mount (its process died); unmounting it",
                mountpoint.display()
            );
            unmount_stale(mountpoint)?;
            prepare(mountpoint)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(FuseError::Mountpoint(format!(
            "{} does not exist (create it with mkdir)",
            mountpoint.display()
        ))),
        Err(e) => Err(FuseError::io(
            format!("checking {}", mountpoint.display()),
            e,
        )),
        Ok(m) if !m.is_dir() => Err(FuseError::Mountpoint(format!(
            "{} is not a directory",
            mountpoint.display()
        ))),
        Ok(_) if is_mount_point(mountpoint) => Err(FuseError::Mountpoint(format!(
            "something is already mounted at {} (unmount it with `fusermount3 -u {}`)",
            mountpoint.display(),
            mountpoint.display()
        ))),
        Ok(_) => {
            if !rustix::process::geteuid().is_root() && find_fusermount().is_none() {
                return Err(FuseError::NoFusermount);
            }
            Ok(())
        }
    }
}

/// Unmounts a dead mount: directly as root, else with `fusermount3 -uz`.
fn unmount_stale(mountpoint: &Path) -> Result<(), FuseError> {
    if rustix::process::geteuid().is_root() {
        return rustix::mount::unmount(mountpoint, rustix::mount::UnmountFlags::DETACH).map_err(
            |e| {
                FuseError::io(
                    format!("unmounting the stale mount {}", mountpoint.display()),
                    e.into(),
                )
            },
        );
    }
    let bin = find_fusermount().ok_or(FuseError::NoFusermount)?;
    let status = std::process::Command::new(bin)
        .arg("-uz")
        .arg(mountpoint)
        .status()
        .map_err(|e| FuseError::io("running fusermount3".into(), e))?;
    if status.success() {
        Ok(())
    } else {
        Err(FuseError::Mountpoint(format!(
            "{} is a stale mount and `fusermount3 -uz` could not remove it",
            mountpoint.display()
        )))
    }
}

/// Unmounts the p2pfs filesystem at `path` (its process then stops); with
/// `lazy`, even while files in it are open (it goes once they close).
/// A dead mount (its process killed) is detached too.
pub fn unmount(path: &Path, lazy: bool) -> Result<(), FuseError> {
    let path = path
        .canonicalize()
        .or_else(|e| match e.raw_os_error() {
            // A dead mount cannot be resolved, but its path is what it is.
            Some(ENOTCONN) => Ok(path.to_path_buf()),
            _ => Err(e),
        })
        .map_err(|e| FuseError::io(format!("finding {}", path.display()), e))?;
    match mounted_type(&path) {
        Some(t) if t == "fuse p2pfs" || t == "fuse.p2pfs p2pfs" => {}
        _ => {
            return Err(FuseError::Mountpoint(format!(
                "no p2pfs filesystem is mounted at {}",
                path.display()
            )));
        }
    }
    let busy = || {
        FuseError::Mountpoint(format!(
            "{} is busy: a process has a file open or its working directory there              (close them, or unmount with --lazy)",
            path.display()
        ))
    };
    if rustix::process::geteuid().is_root() {
        let flags = if lazy {
            rustix::mount::UnmountFlags::DETACH
        } else {
            rustix::mount::UnmountFlags::empty()
        };
        return rustix::mount::unmount(&path, flags).map_err(|e| {
            if e == rustix::io::Errno::BUSY {
                busy()
            } else {
                FuseError::io(format!("unmounting {}", path.display()), e.into())
            }
        });
    }
    let bin = find_fusermount().ok_or(FuseError::NoFusermount)?;
    let out = std::process::Command::new(bin)
        .arg(if lazy { "-uz" } else { "-u" })
        .arg(&path)
        .output()
        .map_err(|e| FuseError::io("running fusermount3".into(), e))?;
    if out.status.success() {
        Ok(())
    } else if String::from_utf8_lossy(&out.stderr).contains("busy") {
        Err(busy())
    } else {
        Err(FuseError::Mountpoint(format!(
            "fusermount3 could not unmount {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Whether a p2pfs filesystem is mounted at `path`.
pub fn is_mounted(path: &Path) -> bool {
    mounted_type(path).is_some_and(|t| t == "fuse p2pfs" || t == "fuse.p2pfs p2pfs")
}

/// Whether something is mounted exactly at `path`.
fn is_mount_point(path: &Path) -> bool {
    mounted_type(path).is_some()
}

/// The type and source (`fuse p2pfs`) of the filesystem mounted exactly
/// at `path`, if any.
fn mounted_type(path: &Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // The newest mount at a point is the one in effect: the last line.
    info.lines().rev().find_map(|l| {
        let fields: Vec<&str> = l.split(' ').collect();
        let at = fields.get(4)?;
        if Path::new(&unescape(at)) != path {
            return None;
        }
        // After the optional fields and the `-` separator: the type.
        let dash = fields.iter().position(|f| *f == "-")?;
        Some(format!(
            "{} {}",
            fields.get(dash + 1)?,
            fields.get(dash + 2)?
        ))
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `fusermount3` (or `fusermount`) on the PATH.
fn find_fusermount() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| [d.join("fusermount3"), d.join("fusermount")])
        .find(|p| p.is_file())
}

fn mount_error(mountpoint: &Path, e: io::Error) -> FuseError {
    if e.kind() == io::ErrorKind::NotFound && !Path::new("/dev/fuse").exists() {
        return FuseError::Mountpoint(
            "/dev/fuse is missing (load the module: modprobe fuse)".into(),
        );
    }
    FuseError::io(format!("mounting at {}", mountpoint.display()), e)
}

/// The id of the node serving the p2pfs mount at `path` (its root's
/// `user.p2pfs.node`), if one answers.
pub fn node_of(path: &Path) -> Option<String> {
    let mut buf = [0u8; 128];
    let n = rustix::fs::getxattr(path, "user.p2pfs.node", &mut buf[..]).ok()?;
    String::from_utf8(buf.get(..n)?.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape(r"/mnt/a\040b"), "/mnt/a b");
        assert_eq!(unescape(r"/plain"), "/plain");
        assert_eq!(unescape(r"/end\04"), r"/end\04");
    }
}
