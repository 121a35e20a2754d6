//! Deterministic crash points, for the crash-consistency tests, in builds
//! with the `test-hooks` feature (elsewhere a point is nothing).
//!
//! The store calls `point` between the durable steps of its commit
//! protocols (see DESIGN.md). Normally that is one load of a `OnceLock`.
//! When the environment variable `P2PFS_CRASH_POINT=NAME:N` is set, the
//! N-th passage through the point `NAME` aborts the process on the spot, as
//! a `kill -9` between those two steps would: no destructor runs, nothing
//! more is written. `tests/tests/crash_loop.rs` aborts at every point in
//! turn and checks what survives.
//!
//! An abort keeps what the process wrote in the page cache, so this checks
//! the *order* of the steps (no entry before its data, no have-map before
//! its groups), not that every fsync is there; losing the page cache (a
//! power cut) needs a machine-level test.

#[cfg(feature = "test-hooks")]
use std::sync::{
    OnceLock,
    atomic::{AtomicU64, Ordering},
};

/// The points, in the order a blob meets them.
pub const POINTS: &[&str] = &[
    "import.synced",
    "import.renamed",
    "import.committed",
    "download.written",
    "download.synced",
    "download.committed",
    "gc.committed",
    "gc.unlinked",
];

#[cfg(feature = "test-hooks")]
struct Armed {
    name: String,
    at: u64,
    seen: AtomicU64,
}

#[cfg(feature = "test-hooks")]
fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var("P2PFS_CRASH_POINT").ok()?;
            let (name, at) = spec.split_once(':')?;
            Some(Armed {
                name: name.to_string(),
                at: at.parse().ok()?,
                seen: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Marks a point between two durable steps (nothing but in a build with
/// the `test-hooks` feature).
#[cfg(feature = "test-hooks")]
pub(crate) fn point(name: &'static str) {
    debug_assert!(POINTS.contains(&name), "unknown crash point {name}");
    if let Some(a) = armed()
        && a.name == name
        && a.seen.fetch_add(1, Ordering::Relaxed) + 1 == a.at
    {
        eprintln!("p2pfs: crash point {name} reached, aborting");
        std::process::abort();
    }
}

/// Marks a point between two durable steps (nothing but in a build with
/// the `test-hooks` feature).
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub(crate) fn point(name: &'static str) {
    debug_assert!(POINTS.contains(&name), "unknown crash point {name}");
}
