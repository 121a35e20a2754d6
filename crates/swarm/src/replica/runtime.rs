//! Per room: gathers what placement needs (the tree, what the store holds,
//! the statuses heard), carries the plan out (pins, lets go, publishes
//! this member's status) and runs the fetches, a few at a time over all
//! rooms, retrying failed ones with backoff.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use p2pfs_proto::{Hash, NodeId, RoomId, room::Copies};
use p2pfs_store::{BlobState, Store, StoreError};
use tokio::sync::mpsc;

use super::{
    Local, NodeReplica, keep_pin_name,
    plan::{self, File, Held, Inputs},
};
use crate::{
    Node, SwarmError, blocking,
    room::{FileKind, Room, pin_name, query, view},
};

/// A pass waits this long after what woke it, so that a burst of
/// statuses makes one pass.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// ... and at least this many times what the last pass took: a pass reads
/// the room's whole listing, so in a room of many files, published many at
/// a time, passes stay a small share of the machine.
const PASS_SHARE: u32 = 10;
/// The longest wait between a wake and its pass.
const MAX_DEBOUNCE: Duration = Duration::from_secs(3);
/// First and longest wait before a failed fetch is tried again.
const RETRY_FIRST: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(300);
/// Least time between collections made to get under the storage cap.
const GC_EVERY: Duration = Duration::from_secs(30);
/// How long a blob pinned for the room must show in no listing before it
/// is let go of (publishing pins a blob before a put names it).
const ORPHAN_GRACE: Duration = Duration::from_secs(10);

/// What a pass reads from the store.
struct Gathered {
    files: Vec<File>,
    local: HashMap<Hash, Held>,
    policy: Copies,
    /// Blobs pinned for the room that its tree no longer shows.
    orphans: Vec<Hash>,
    /// Bytes the store holds (read only under a storage cap).
    usage: Option<u64>,
}

/// The room's files and what the store holds of them.
fn gather(store: &Store, room: &RoomId, usage: bool) -> Result<Gathered, StoreError> {
    let mut files = Vec::new();
    let mut seen = HashSet::new();
    for e in query::ls(store, room)? {
        if let FileKind::File {
            hash, size, author, ..
        } = e.kind
            && seen.insert(hash)
        {
            files.push(File { hash, size, author });
        }
    }
    let hashes: Vec<Hash> = files.iter().map(|f| f.hash).collect();
    let (pin, keep) = (pin_name(room), keep_pin_name(room));
    let mut local = HashMap::with_capacity(hashes.len());
    for (h, info) in hashes.iter().zip(store.infos(&hashes)?) {
        let (complete, present, pins) = match info {
            Some(i) => (i.state == BlobState::Complete, i.present, i.pins),
            // A pin may be set before any byte arrives.
            None => (false, 0, store.pins(h)?),
        };
        local.insert(
            *h,
            Held {
                complete,
                present,
                room_pin: pins.contains(&pin),
                keep_pin: pins.contains(&keep),
            },
        );
    }
    let mut orphans = Vec::new();
    for h in store.pinned(&pin)? {
        // Only blobs a put named: a blob being published is pinned first.
        if !seen.contains(&h) && store.room_view_get(room, &view::blob_key(&h))?.is_some() {
            orphans.push(h);
        }
    }
    Ok(Gathered {
        files,
        local,
        policy: query::policy(store, room)?,
        orphans,
        usage: if usage { Some(store.usage()?) } else { None },
    })
}

/// A fetch that ended.
struct Done {
    hash: Hash,
    /// The bytes it added (those missing when it started).
    result: Result<u64, SwarmError>,
}

/// Bytes reserved against the storage cap for one fetch, given back when
/// it ends however it ends. Made when the fetch is decided, before its
/// task runs: the next fetch decided in the same pass counts it.
struct Reservation {
    node: Node,
    bytes: u64,
}

impl Reservation {
    fn new(node: &Node, bytes: u64) -> Self {
        if let Some(rep) = &node.inner.replica {
            let _ = rep
                .reserved
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    Some(v.saturating_add(bytes))
                });
        }
        Self {
            node: node.clone(),
            bytes,
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(rep) = &self.node.inner.replica {
            let _ = rep
                .reserved
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    Some(v.saturating_sub(self.bytes))
                });
        }
    }
}

/// What a room's runtime remembers between passes.
struct State {
    /// Fetches running.
    inflight: HashSet<Hash>,
    /// Blobs pinned for the room that no listing shows, since when.
    orphans: HashMap<Hash, Instant>,
    /// Failed fetches: when to try again, and the wait after that.
    retry: HashMap<Hash, (Instant, Duration)>,
    /// The candidates (and their caps) at the last pass, and since when.
    view: Vec<(NodeId, bool)>,
    view_since: Instant,
    /// The blobs the listing showed at the last pass (`None` before the
    /// first: what the store held at start is not new).
    known: Option<HashSet<Hash>>,
    /// Blobs published since, and when they appeared.
    fresh: HashMap<Hash, Instant>,
}

impl State {
    fn finish(&mut self, d: Done, room: &Room) {
        self.inflight.remove(&d.hash);
        match d.result {
            Ok(received) => {
                room.replica.fetched.fetch_add(received, Ordering::Relaxed);
                self.retry.remove(&d.hash);
            }
            Err(e) => {
                let wait = self
                    .retry
                    .get(&d.hash)
                    .map_or(RETRY_FIRST, |(_, w)| (*w * 2).min(RETRY_MAX));
                tracing::debug!(room = %room.id.fmt_short(), hash = %d.hash, "copy not fetched (again in {wait:?}): {e}");
                self.retry.insert(d.hash, (Instant::now() + wait, wait));
            }
        }
    }
}

/// Keeps `room`'s copies until the room is left or the node stops.
pub(crate) async fn run(node: Node, room: Arc<Room>) {
    let Some(rep) = node.inner.replica.as_ref() else {
        return;
    };
    let heartbeat = rep.config.heartbeat();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut st = State {
        inflight: HashSet::new(),
        orphans: HashMap::new(),
        retry: HashMap::new(),
        view: Vec::new(),
        view_since: Instant::now(),
        known: None,
        fresh: HashMap::new(),
    };
    let mut last_error: Option<Instant> = None;
    loop {
        while let Ok(d) = done_rx.try_recv() {
            st.finish(d, &room);
        }
        let started = Instant::now();
        let result = pass(&node, &room, rep, &mut st, &done_tx).await;
        let debounce = (started.elapsed() * PASS_SHARE).clamp(DEBOUNCE, MAX_DEBOUNCE);
        if let Err(e) = result
            && last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(60))
        {
            tracing::warn!(room = %room.name(), "keeping the room's copies: {e}");
            last_error = Some(Instant::now());
        }
        tokio::select! {
            _ = room.cancel.cancelled() => break,
            // Woken by tree and policy entries (`Room::broadcast`), a
            // status that changed something, or a pin.
            _ = room.replica.wake.notified() => {}
            d = done_rx.recv() => if let Some(d) = d { st.finish(d, &room) },
            _ = tokio::time::sleep(heartbeat) => {}
        }
        tokio::select! {
            _ = room.cancel.cancelled() => break,
            _ = tokio::time::sleep(debounce) => {}
        }
    }
}

/// One pass: read, plan, act.
async fn pass(
    node: &Node,
    room: &Arc<Room>,
    rep: &NodeReplica,
    st: &mut State,
    done_tx: &mpsc::UnboundedSender<Done>,
) -> Result<(), SwarmError> {
    let cap = rep.config.max_storage;
    let (store, id) = (node.store().clone(), room.id);
    let g = blocking(move || gather(&store, &id, cap.is_some())).await?;
    let now = Instant::now();
    let me = node.id();
    let me_full = rep.full.load(Ordering::Relaxed);
    let settle = (rep.config.heartbeat() * 2).max(Duration::from_secs(1));
    let window = rep.config.offline_after;
    let current: HashSet<Hash> = g.files.iter().map(|f| f.hash).collect();
    if let Some(known) = &st.known {
        for h in current.difference(known) {
            st.fresh.insert(*h, now);
        }
    }
    st.fresh
        .retain(|h, t| current.contains(h) && now.saturating_duration_since(*t) < window);
    st.known = Some(current);
    let running = *room.replica.phase.borrow() == super::Phase::Running;
    let plan = {
        let peers = crate::lock(&room.replica.peers);
        let mut urgent: HashSet<Hash> = st.fresh.keys().copied().collect();
        for (_, p) in peers.all().filter(|(_, p)| p.departing(now, window)) {
            urgent.extend(p.holds.iter().copied());
        }
        let list = peers.for_plan(me, now);
        let mut view: Vec<(NodeId, bool)> = list
            .iter()
            .filter(|(_, _, c)| *c)
            .map(|(id, p, _)| (*id, p.full))
            .chain(std::iter::once((me, me_full)))
            .collect();
        view.sort();
        if view != st.view {
            st.view = view;
            st.view_since = now;
        }
        let stable = now.saturating_duration_since(st.view_since) >= settle;
        let mut plan = plan::plan(&Inputs {
            me,
            me_full,
            policy: g.policy,
            files: &g.files,
            local: &g.local,
            peers: &list,
            stable,
            urgent: &urgent,
        });
        if !running {
            // Stopping: keep what is held for the others to copy, take
            // on nothing new.
            plan.fetch.clear();
            plan.release.clear();
        }
        plan
    };
    let mut release = plan.release;
    st.orphans.retain(|h, _| g.orphans.contains(h));
    for h in g.orphans.iter().filter(|_| running) {
        let since = *st.orphans.entry(*h).or_insert(now);
        if now.saturating_duration_since(since) >= ORPHAN_GRACE {
            release.push(*h);
        }
    }
    if room.cancel.is_cancelled() {
        // Left: `leave_room` drops the room's pins; add none back.
        return Ok(());
    }
    if !plan.pin.is_empty() || !release.is_empty() {
        let (store, pin, to_pin, to_free) = (
            node.store().clone(),
            pin_name(&room.id),
            plan.pin.clone(),
            release.clone(),
        );
        blocking(move || {
            store.set_pins(&to_pin, &pin, true)?;
            store.set_pins(&to_free, &pin, false)
        })
        .await?;
        if !release.is_empty() {
            tracing::debug!(room = %room.name(), n = release.len(), "let go of copies others hold");
        }
    }
    // What this member keeps: complete and pinned, as of this pass.
    let (pinned, freed): (HashSet<Hash>, HashSet<Hash>) = (
        plan.pin.iter().copied().collect(),
        release.iter().copied().collect(),
    );
    let local = Local {
        holds: g
            .local
            .iter()
            .filter(|(k, h)| {
                h.complete
                    && (h.keep_pin || ((h.room_pin || pinned.contains(k)) && !freed.contains(k)))
            })
            .map(|(k, _)| *k)
            .collect(),
        full: me_full,
    };
    room.replica.local.send_if_modified(|cur| {
        if cur.as_deref() == Some(&local) {
            return false;
        }
        *cur = Some(Arc::new(local));
        true
    });
    // (Bytes of fetches running count in `usage` as they arrive and in
    // `reserved` until the fetch ends: an overestimate, on the safe side.)
    if let (Some(cap), Some(usage)) = (cap, g.usage) {
        let free = cap.saturating_sub(usage.saturating_add(rep.reserved.load(Ordering::Relaxed)));
        let needed = (cap / 10).max(rep.blocked.load(Ordering::Relaxed));
        if me_full && free >= needed {
            rep.full.store(false, Ordering::Relaxed);
            tracing::info!("below the storage cap again: taking copies");
        }
    }
    for f in plan.fetch {
        let hash = f.file.hash;
        if st.inflight.contains(&hash) || st.retry.get(&hash).is_some_and(|(t, _)| *t > now) {
            continue;
        }
        if let (Some(cap), Some(usage), false) = (cap, g.usage, f.kept) {
            let used = usage.saturating_add(rep.reserved.load(Ordering::Relaxed));
            if used.saturating_add(f.missing) > cap {
                if !rep.full.swap(true, Ordering::Relaxed) {
                    rep.blocked.store(f.missing, Ordering::Relaxed);
                    tracing::warn!(
                        "at the storage cap ({used} of {cap} bytes): taking no more copies; \
                         the other members keep them"
                    );
                } else {
                    rep.blocked.fetch_min(f.missing, Ordering::Relaxed);
                }
                collect(node, rep);
                continue;
            }
        }
        let Ok(permit) = rep.fetches.clone().try_acquire_owned() else {
            break;
        };
        st.inflight.insert(hash);
        let missing = f.missing;
        // Only members whose status says they hold it, and that are
        // online: a member just gone may still have a connection that
        // would stall the download.
        let holders = f.holders.clone();
        let (node2, room2, tx) = (node.clone(), room.clone(), done_tx.clone());
        let reserved = Reservation::new(node, missing);
        node.net().spawn(async move {
            let _reserved = reserved;
            let fetch = async {
                let targets = node2.room_targets(&room2, &holders, hash)?;
                crate::transfer::download::run(&node2.inner.blobs, hash, targets, None, None, None)
                    .await?;
                Ok(missing)
            };
            let result = tokio::select! {
                r = fetch => r,
                _ = room2.cancel.cancelled() => Err(SwarmError::Shutdown),
            };
            drop(permit);
            let _ = tx.send(Done { hash, result });
        });
    }
    Ok(())
}

/// Collects the store's garbage (copies let go of, cached reads) to get
/// under the storage cap, at most every [`GC_EVERY`].
fn collect(node: &Node, rep: &NodeReplica) {
    {
        let mut last = crate::lock(&rep.last_gc);
        if last.is_some_and(|t| t.elapsed() < GC_EVERY) {
            return;
        }
        *last = Some(Instant::now());
    }
    let store = node.store().clone();
    node.net().spawn(async move {
        match blocking(move || store.gc()).await {
            Ok(r) if r.freed_bytes > 0 => {
                tracing::info!(
                    freed = r.freed_bytes,
                    "collected unpinned blobs to make room"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("collecting unpinned blobs: {e}"),
        }
    });
}
