//! Giving up a wait when the process that asked gets a signal.
//!
//! The kernel tells a FUSE filesystem that a request was interrupted with
//! `FUSE_INTERRUPT`, but fuser 0.18 answers those itself (ENOSYS), after
//! which the kernel sends no more: a process whose read waits on the
//! network could not be stopped, not even with Ctrl-C. So a request that
//! waits on the network watches its process instead: once a signal that
//! asks it to stop (HUP, INT, QUIT, TERM, KILL) is pending for it, and it
//! neither blocks nor ignores it, the request ends with `EINTR` and the
//! kernel delivers the signal. Other signals (Ctrl-Z, a window resized, a
//! child exiting, a timer) leave the wait alone, as they would a read from
//! a disk. A process that is gone is waited for by nobody: that ends the
//! request too.

use std::time::Duration;

/// How often a waiting request looks at its process.
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// The signals that end a wait: SIGHUP, SIGINT, SIGQUIT, SIGKILL, SIGTERM.
const STOPPING: u64 = bit(1) | bit(2) | bit(3) | bit(9) | bit(15);

/// Signal `n`'s bit in the masks of `/proc/TID/status`.
const fn bit(n: u32) -> u64 {
    1 << (n - 1)
}

/// Whether the thread whose `/proc/TID/status` is `status` has a signal
/// pending that asks it to stop and that it would act on (not blocked,
/// not ignored).
pub(crate) fn deliverable(status: &str) -> bool {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    let pending = field("SigPnd:") | field("ShdPnd:");
    pending & STOPPING & !field("SigBlk:") & !field("SigIgn:") != 0
}

/// Returns once thread `pid` has a signal to act on, or is gone. Never
/// returns for pid 0 (a request the kernel made on its own).
pub(crate) async fn signalled(pid: u32) {
    if pid == 0 {
        return std::future::pending().await;
    }
    let path = format!("/proc/{pid}/status");
    loop {
        tokio::time::sleep(POLL).await;
        // procfs is in memory: reading it does not block on a disk. Only
        // a process that is gone ends the wait; a /proc we may not read
        // (hidepid) leaves it to the read's own bound.
        match std::fs::read_to_string(&path) {
            Ok(s) if deliverable(&s) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(pnd: &str, shd: &str, blk: &str, ign: &str) -> String {
        format!(
            "Name:\tcat\nState:\tS (sleeping)\nSigQ:\t0/94\nSigPnd:\t{pnd}\n\
             ShdPnd:\t{shd}\nSigBlk:\t{blk}\nSigIgn:\t{ign}\nSigCgt:\t0000000000000000\n"
        )
    }

    #[test]
    fn a_pending_signal_counts_unless_blocked_or_ignored() {
        let zero = "0000000000000000";
        // SIGINT is signal 2: bit 1.
        let int = "0000000000000002";
        assert!(!deliverable(&status(zero, zero, zero, zero)));
        assert!(deliverable(&status(zero, int, zero, zero)), "Ctrl-C");
        assert!(deliverable(&status(int, zero, zero, zero)), "to the thread");
        assert!(!deliverable(&status(zero, int, int, zero)), "blocked");
        assert!(!deliverable(&status(zero, int, zero, int)), "ignored");
        // SIGKILL (bit 8) can be neither.
        assert!(deliverable(&status(zero, "0000000000000100", int, int)));
        assert!(
            deliverable(&status(zero, "0000000000004000", zero, zero)),
            "TERM"
        );
        // Ctrl-Z (SIGTSTP, bit 19), SIGWINCH (bit 27), SIGCHLD (bit 16)
        // leave the wait alone.
        for other in ["0000000000080000", "0000000008000000", "0000000000010000"] {
            assert!(!deliverable(&status(zero, other, zero, zero)), "{other}");
        }
        assert!(!deliverable("garbage"));
    }

    #[tokio::test]
    async fn this_process_without_a_signal_keeps_waiting() {
        let me = std::process::id();
        let waited = tokio::time::timeout(POLL * 3, signalled(me)).await;
        assert!(waited.is_err(), "no signal is pending here");
        // A process that does not exist is waited for by nobody.
        let gone = tokio::time::timeout(POLL * 3, signalled(u32::MAX - 1)).await;
        assert!(gone.is_ok());
    }
}
