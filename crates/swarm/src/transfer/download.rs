//! Downloading one blob from several providers at once: the async driver
//! of the [`Scheduler`].
//!
//! 1. Open (or join) the blob's [`PartialBlob`]; what the store already has
//!    is not fetched again, so an interrupted download resumes.
//! 2. Connect to every provider at once, and start with those that answer
//!    first (a dead address must not hold the download up); the others
//!    join as their handshakes finish.
//! 3. If the size is not proven, ask providers one after the other for the
//!    last chunk group (docs/protocol.md §3.4).
//! 4. Run the scheduler: start the requests it asks for, each on its own
//!    stream, report their progress and results, cancel what it cancels.
//!    A provider that sends bad data is disconnected.
//! 5. Commit.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use p2pfs_proto::{Hash, NodeId, blobs, close::Code};
use p2pfs_store::{ChunkNum, ChunkRanges, PartialBlob};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::{
    error::SwarmError,
    net::{
        Net,
        dial::{Conn, Target},
    },
    transfer::{
        request::{self, Answer, GetError},
        scheduler::{self, Action, Fault, Groups, Scheduler},
    },
};

/// How often progress is sampled and published.
const TICK: Duration = Duration::from_millis(200);

/// How long after the first provider connects the download waits for
/// more before it starts (the rest join as they connect).
const CONNECT_GRACE: Duration = Duration::from_millis(200);

/// Where a download stands, published while it runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FetchProgress {
    /// The blob's size, once proven.
    pub size: Option<u64>,
    /// Bytes present locally.
    pub present: u64,
    /// Providers taking part.
    pub peers: usize,
    /// Bytes per second over the last second or so.
    pub rate: f64,
}

/// What a finished download did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchStats {
    /// The blob's size.
    pub size: u64,
    /// Bytes received in this download.
    pub received: u64,
    /// Time taken.
    pub elapsed: Duration,
    /// Bytes received from each provider.
    pub providers: Vec<(NodeId, u64)>,
}

/// Downloads `hash` from `providers`; see the module docs. With `want`,
/// only the chunk groups covering those bytes are fetched. With `limit`,
/// no byte at or past what it holds is asked for until it grows, and the
/// download ends, keeping what it has, when its sender is dropped (a
/// reader that a download follows has gone).
pub(crate) async fn run(
    blobs: &super::provider::Blobs,
    hash: Hash,
    providers: Vec<Target>,
    want: Option<std::ops::Range<u64>>,
    limit: Option<watch::Receiver<u64>>,
    progress: Option<watch::Sender<FetchProgress>>,
) -> Result<FetchStats, SwarmError> {
    let started = Instant::now();
    let net = &blobs.net;
    let store = blobs.store.clone();
    let partial = crate::blocking(move || store.partial(hash)).await?;
    if partial.is_complete() {
        let size = partial.size().unwrap_or(0);
        return Ok(FetchStats {
            size,
            received: 0,
            elapsed: started.elapsed(),
            providers: Vec::new(),
        });
    }
    let entry = blobs.active.start(hash);
    let mut dials = Dials::start(net, &providers);
    let mut conns = dials.first().await;
    if conns.is_empty() {
        return Err(SwarmError::Unavailable {
            hash,
            reason: if providers.is_empty() {
                "no provider is known (give one with --peer or a ticket)".into()
            } else {
                match dials.failures.is_empty() {
                    true => "no usable provider (only this node was named)".into(),
                    false => format!(
                        "could not connect to any provider ({})",
                        dials.failures.join("; ")
                    ),
                }
            },
        });
    }
    let stall = net.limits().stall_timeout;
    let mut haves: HashMap<NodeId, Groups> = HashMap::new();
    while partial.size().is_none() {
        match prove_size(&mut dials, hash, &partial, &mut conns, &mut haves, stall).await {
            Ok(()) => break,
            // Providers still connecting may prove it (or a download of
            // the same blob running beside this one).
            Err(e @ SwarmError::Unavailable { .. }) if partial.size().is_none() => {
                match dials.first().await {
                    more if more.is_empty() => return Err(e),
                    more => conns.extend(more),
                }
            }
            Err(SwarmError::Unavailable { .. }) => break,
            Err(e) => return Err(e),
        }
    }
    let size = partial.size().ok_or_else(|| SwarmError::Unavailable {
        hash,
        reason: "no provider could prove the blob's size".into(),
    })?;
    let total = p2pfs_proto::chunk::groups(size);
    let mut present = present_groups(&partial);
    if let Some(want) = want {
        // Groups outside the wanted bytes count as done.
        let g = p2pfs_proto::chunk::CHUNK_GROUP_SIZE;
        let wanted =
            Groups::from(want.start / g..want.end.min(size).div_ceil(g).max(want.start / g));
        present |= &Groups::from(0..total) - &wanted;
    }
    let mut driver = Driver {
        net: net.clone(),
        hash,
        partial,
        conns: conns.iter().map(|c| (c.peer, c.clone())).collect(),
        sched: Scheduler::new(
            total,
            present,
            scheduler::Config {
                stall,
                ..Default::default()
            },
        ),
        running: HashMap::new(),
        tally: HashMap::new(),
        progress,
        entry,
        size,
        dials,
        limit,
    };
    driver.set_limit();
    for c in &conns {
        driver.sched.add_peer(c.peer);
        if let Some(h) = haves.remove(&c.peer) {
            driver.sched.set_have(c.peer, h);
        }
    }
    let result = driver.run().await;
    let ids: Vec<u64> = driver.running.keys().copied().collect();
    for id in ids {
        driver.retire(id);
    }
    let partial = driver.partial.clone();
    crate::blocking(move || partial.flush()).await?;
    result?;
    let providers: Vec<(NodeId, u64)> = driver
        .conns
        .keys()
        .map(|p| (*p, driver.tally.get(p).copied().unwrap_or(0)))
        .collect();
    Ok(FetchStats {
        size,
        received: providers.iter().map(|p| p.1).sum(),
        elapsed: started.elapsed(),
        providers,
    })
}

/// The connections to a download's providers, dialed all at once.
struct Dials {
    net: Net,
    set: tokio::task::JoinSet<(Result<Conn, SwarmError>, Target)>,
    /// Nodes connected so far (each is used once).
    seen: Vec<NodeId>,
    /// Why the failed ones failed.
    failures: Vec<String>,
    /// What was dialed to reach each provider connected.
    targets: HashMap<NodeId, Target>,
    /// Providers dialed again after their connection closed.
    redialed: HashSet<NodeId>,
}

impl Dials {
    fn start(net: &Net, providers: &[Target]) -> Self {
        let mut dials = Self {
            net: net.clone(),
            set: tokio::task::JoinSet::new(),
            seen: vec![net.id()],
            failures: Vec::new(),
            targets: HashMap::new(),
            redialed: HashSet::new(),
        };
        for t in providers.iter().filter(|t| t.id != Some(net.id())) {
            if let Some(id) = t.id.filter(|id| net.is_banned(id)) {
                dials.failures.push(banned(&id));
                continue;
            }
            dials.dial(t.clone());
        }
        dials
    }

    fn dial(&mut self, t: Target) {
        let net = self.net.clone();
        self.set
            .spawn(async move { (net.connect(&t, blobs::ALPN).await, t) });
    }

    /// Dials `c`'s provider again if `c` has closed, once per download and
    /// provider: a pooled connection can be dead before anyone knows it (a
    /// provider that crashed and restarted resets it at the first request;
    /// one that dropped it closed it). Whether a dial was started.
    fn redial(&mut self, c: &Conn) -> bool {
        if c.conn.close_reason().is_none()
            || self.net.is_banned(&c.peer)
            || !self.redialed.insert(c.peer)
        {
            return false;
        }
        let Some(t) = self.targets.get(&c.peer) else {
            return false;
        };
        let t = Target {
            id: Some(c.peer),
            addrs: t.addrs.clone(),
        };
        tracing::debug!(provider = %t, "connection closed, dialing again");
        self.seen.retain(|p| *p != c.peer);
        self.dial(t);
        true
    }

    /// The next providers to connect: waits for one, then up to
    /// [`CONNECT_GRACE`] for others. Empty once every dial has ended
    /// without another provider.
    async fn first(&mut self) -> Vec<Conn> {
        let mut conns = Vec::new();
        let mut deadline = None;
        loop {
            let next = match deadline {
                None => self.set.join_next().await,
                Some(d) => match tokio::time::timeout_at(d, self.set.join_next()).await {
                    Ok(next) => next,
                    Err(_) => return conns,
                },
            };
            let Some(r) = next else { return conns };
            if let Some(c) = self.accept(r) {
                conns.push(c);
                deadline.get_or_insert(tokio::time::Instant::now() + CONNECT_GRACE);
            }
        }
    }

    /// The outcome of one dial: a provider to use, if it is a new one.
    fn accept(
        &mut self,
        r: Result<(Result<Conn, SwarmError>, Target), tokio::task::JoinError>,
    ) -> Option<Conn> {
        match r {
            // Dialed by address alone.
            Ok((Ok(c), _)) if self.net.is_banned(&c.peer) => {
                c.close_with(Code::BadData);
                self.failures.push(banned(&c.peer));
                None
            }
            Ok((Ok(c), t)) if !self.seen.contains(&c.peer) => {
                self.seen.push(c.peer);
                self.targets.insert(c.peer, t);
                Some(c)
            }
            Ok((Err(e), t)) => {
                tracing::info!(provider = %t, "cannot use provider: {e}");
                self.failures.push(e.to_string());
                None
            }
            _ => None,
        }
    }
}

/// Why a banned provider is not asked.
fn banned(peer: &NodeId) -> String {
    format!("{} is banned for sending bad data", peer.fmt_short())
}

/// A provider whose data failed verification: banned from every download,
/// and disconnected.
fn ban(net: &Net, c: &Conn, e: &impl std::fmt::Display) {
    net.ban(c.peer, format!("sent bad data: {e}"));
    c.close_with(Code::BadData);
}

/// Asks providers in turn for the last chunk group until one proves the
/// size; providers that lie or lack the blob are dropped, and those whose
/// connection turns out closed are dialed again.
async fn prove_size(
    dials: &mut Dials,
    hash: Hash,
    partial: &PartialBlob,
    conns: &mut Vec<Conn>,
    haves: &mut HashMap<NodeId, Groups>,
    stall: Duration,
) -> Result<(), SwarmError> {
    let tail = ChunkRanges::from(ChunkNum(u64::MAX / 2)..);
    let mut keep = Vec::new();
    let mut last_error = String::from("no provider has it");
    let mut proven = false;
    let net = dials.net.clone();
    for c in conns.drain(..) {
        if net.is_banned(&c.peer) {
            continue;
        }
        if proven {
            keep.push(c);
            continue;
        }
        let counter = Arc::new(AtomicU64::new(0));
        let r = request::get(
            &c,
            hash,
            &tail,
            partial.clone(),
            counter,
            CancellationToken::new(),
            stall,
        )
        .await;
        match r {
            Ok(Answer::Sent { have, .. }) => {
                haves.insert(c.peer, to_groups(&have));
                proven = partial.size().is_some();
                keep.push(c);
            }
            Ok(Answer::NotFound) => last_error = format!("{} does not have it", c.peer.fmt_short()),
            Err(GetError::BadData(e)) => {
                last_error = format!("{} sent bad data: {e}", c.peer.fmt_short());
                ban(&net, &c, &e);
            }
            Err(GetError::Protocol(e)) => {
                last_error = format!("{} broke the protocol: {e}", c.peer.fmt_short());
                c.close_with(Code::Protocol);
            }
            Err(GetError::Local(e)) => return Err(e.into()),
            Err(e) => {
                last_error = format!("{}: {e}", c.peer.fmt_short());
                if !dials.redial(&c) {
                    keep.push(c);
                }
            }
        }
    }
    *conns = keep;
    if proven {
        Ok(())
    } else {
        Err(SwarmError::Unavailable {
            hash,
            reason: last_error,
        })
    }
}

/// The groups a partial blob holds.
fn present_groups(partial: &PartialBlob) -> Groups {
    partial.have().map(|h| to_groups(&h)).unwrap_or_default()
}

/// The groups covered by chunk ranges (a partial last group counts).
fn to_groups(r: &ChunkRanges) -> Groups {
    let b = r.boundaries();
    let mut out = Groups::empty();
    for pair in b.chunks(2) {
        match pair {
            [s, e] => out |= Groups::from(s.0 / 16..e.0.div_ceil(16)),
            [s] => out |= Groups::from(s.0 / 16..),
            _ => {}
        }
    }
    out
}

fn to_chunks(groups: &std::ops::Range<u64>) -> ChunkRanges {
    ChunkRanges::from(ChunkNum(groups.start * 16)..ChunkNum(groups.end * 16))
}

struct Running {
    peer: NodeId,
    cancel: CancellationToken,
    received: Arc<AtomicU64>,
}

struct Outcome {
    id: u64,
    peer: NodeId,
    result: Result<Answer, GetError>,
}

struct Driver {
    net: Net,
    hash: Hash,
    partial: PartialBlob,
    conns: HashMap<NodeId, Conn>,
    sched: Scheduler<NodeId>,
    running: HashMap<u64, Running>,
    /// Bytes received from each provider by requests that have ended; the
    /// scheduler forgets a request when it cancels it, this does not.
    tally: HashMap<NodeId, u64>,
    progress: Option<watch::Sender<FetchProgress>>,
    /// Its entry in the node's running downloads.
    entry: super::active::Running,
    size: u64,
    /// Providers still connecting.
    dials: Dials,
    /// How far a reader this download follows lets it go (bytes).
    limit: Option<watch::Receiver<u64>>,
}

impl Driver {
    /// Passes the reader's limit to the scheduler.
    fn set_limit(&mut self) {
        if let Some(l) = &mut self.limit {
            let bytes = *l.borrow_and_update();
            let g = p2pfs_proto::chunk::CHUNK_GROUP_SIZE;
            self.sched.set_limit(bytes.div_ceil(g));
        }
    }

    /// The groups the store has now.
    fn present(&self) -> Groups {
        present_groups(&self.partial)
    }

    async fn run(&mut self) -> Result<(), SwarmError> {
        let (tx, mut rx) = mpsc::channel::<Outcome>(64);
        let mut tick = tokio::time::interval(TICK);
        let mut rate = RateMeter::new(self.present_bytes());
        loop {
            let now = Instant::now();
            let actions = self.sched.poll(now);
            self.apply(actions, &tx);
            if self.sched.is_done() {
                self.publish(&mut rate);
                return Ok(());
            }
            if self.sched.is_stuck(now) && self.running.is_empty() && self.dials.set.is_empty() {
                return Err(SwarmError::Unavailable {
                    hash: self.hash,
                    reason: self.why_stuck(),
                });
            }
            tokio::select! {
                _ = self.net.cancel().cancelled() => return Err(SwarmError::Shutdown),
                outcome = rx.recv() => {
                    let Some(o) = outcome else { continue };
                    self.outcome(o, Instant::now());
                }
                Some(r) = self.dials.set.join_next(), if !self.dials.set.is_empty() => {
                    if let Some(c) = self.dials.accept(r) {
                        self.sched.add_peer(c.peer);
                        self.conns.insert(c.peer, c);
                    }
                }
                gone = limit_changed(&mut self.limit) => {
                    if gone {
                        // The reader this download followed has gone.
                        return Ok(());
                    }
                    self.set_limit();
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    for (id, r) in &self.running {
                        self.sched.progress(*id, r.received.load(Ordering::Relaxed), now);
                    }
                    self.publish(&mut rate);
                }
            }
        }
    }

    fn apply(&mut self, actions: Vec<Action<NodeId>>, tx: &mpsc::Sender<Outcome>) {
        for a in actions {
            match a {
                Action::Start { id, peer, groups } => {
                    let Some(conn) = self.conns.get(&peer).cloned() else {
                        continue;
                    };
                    // Banned by another download since this one began.
                    if self.net.is_banned(&peer) {
                        let present = self.present();
                        let now = Instant::now();
                        for a in self.sched.failed(id, &present, Fault::BadData, now) {
                            if let Action::Cancel { id } = a {
                                self.retire(id);
                            }
                        }
                        continue;
                    }
                    let cancel = CancellationToken::new();
                    let received = Arc::new(AtomicU64::new(0));
                    self.running.insert(
                        id,
                        Running {
                            peer,
                            cancel: cancel.clone(),
                            received: received.clone(),
                        },
                    );
                    let (hash, partial, tx) = (self.hash, self.partial.clone(), tx.clone());
                    let stall = self.net.limits().stall_timeout;
                    self.net.spawn(async move {
                        let ranges = to_chunks(&groups);
                        let result =
                            request::get(&conn, hash, &ranges, partial, received, cancel, stall)
                                .await;
                        let _ = tx.send(Outcome { id, peer, result }).await;
                    });
                }
                Action::Cancel { id } => {
                    self.retire(id);
                }
            }
        }
    }

    fn outcome(&mut self, o: Outcome, now: Instant) {
        let Some(running) = self.retire(o.id) else {
            // Cancelled earlier: the scheduler has forgotten it.
            return;
        };
        // The last bytes since the previous tick count too.
        self.sched
            .progress(o.id, running.received.load(Ordering::Relaxed), now);
        let present = self.present();
        let actions = match o.result {
            Ok(Answer::Sent { have, .. }) => {
                self.sched.set_have(o.peer, to_groups(&have));
                self.sched.finished(o.id, &present, now)
            }
            Ok(Answer::NotFound) => {
                self.sched
                    .failed(o.id, &present, Fault::NotFound { have: None }, now)
            }
            Err(GetError::Cancelled) => self.sched.failed(o.id, &present, Fault::Transport, now),
            Err(GetError::Transport(e)) => {
                tracing::debug!(peer = %o.peer, "request failed: {e}");
                if let Some(c) = self.conns.get(&o.peer) {
                    self.dials.redial(c);
                }
                self.sched.failed(o.id, &present, Fault::Transport, now)
            }
            Err(GetError::BadData(e)) => {
                tracing::warn!(peer = %o.peer, hash = %self.hash, "provider sent bad data, disconnecting: {e}");
                if let Some(c) = self.conns.get(&o.peer) {
                    ban(&self.net, c, &e);
                }
                self.sched.failed(o.id, &present, Fault::BadData, now)
            }
            Err(GetError::Protocol(e)) => {
                tracing::warn!(peer = %o.peer, "provider broke the protocol, disconnecting: {e}");
                if let Some(c) = self.conns.get(&o.peer) {
                    c.close_with(Code::Protocol);
                }
                self.sched.failed(o.id, &present, Fault::Protocol, now)
            }
            Err(GetError::Local(e)) => {
                tracing::warn!("local store error: {e}");
                self.sched.failed(o.id, &present, Fault::Transport, now)
            }
            // (Logged where it failed.)
            Err(GetError::Worker(_)) => self.sched.failed(o.id, &present, Fault::Transport, now),
        };
        for a in actions {
            if let Action::Cancel { id } = a {
                self.retire(id);
            }
        }
    }

    /// Ends request `id`: cancels it (a no-op once it has finished) and
    /// adds what it received to its provider's tally.
    fn retire(&mut self, id: u64) -> Option<Running> {
        let r = self.running.remove(&id)?;
        r.cancel.cancel();
        *self.tally.entry(r.peer).or_default() += r.received.load(Ordering::Relaxed);
        Some(r)
    }

    fn present_bytes(&self) -> u64 {
        let present = self.present();
        let mut bytes = 0;
        for r in present.iter() {
            if let range_collections::range_set::RangeSetRange::Range(r) = r {
                let (s, e) = (*r.start * 16384, (*r.end * 16384).min(self.size));
                bytes += e.saturating_sub(s);
            }
        }
        bytes
    }

    fn publish(&self, rate: &mut RateMeter) {
        let present = self.present_bytes();
        let r = rate.sample(present);
        let now = FetchProgress {
            size: Some(self.size),
            present,
            peers: self.sched.active_peers(),
            rate: r,
        };
        self.entry.update(&now);
        if let Some(p) = &self.progress {
            p.send_replace(now);
        }
    }

    fn why_stuck(&self) -> String {
        let dropped = self.sched.dropped();
        if dropped.is_empty() {
            return "no provider has the missing parts".into();
        }
        let parts: Vec<String> = dropped
            .iter()
            .map(|(p, d)| format!("{} {d}", p.fmt_short()))
            .collect();
        format!("every provider failed ({})", parts.join(", "))
    }
}

/// Waits for the limit to change: whether its sender is gone. Never
/// returns without a limit.
async fn limit_changed(limit: &mut Option<watch::Receiver<u64>>) -> bool {
    match limit {
        Some(l) => l.changed().await.is_err(),
        None => std::future::pending().await,
    }
}

/// Bytes per second, smoothed over about a second.
struct RateMeter {
    last: (Instant, u64),
    rate: f64,
}

impl RateMeter {
    fn new(bytes: u64) -> Self {
        Self {
            last: (Instant::now(), bytes),
            rate: 0.0,
        }
    }

    fn sample(&mut self, bytes: u64) -> f64 {
        let now = Instant::now();
        let dt = now.duration_since(self.last.0).as_secs_f64();
        if dt >= 0.05 {
            let inst = bytes.saturating_sub(self.last.1) as f64 / dt;
            let w = (dt / 1.0).min(1.0);
            self.rate = self.rate * (1.0 - w) + inst * w;
            self.last = (now, bytes);
        }
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ranges_map_to_groups() {
        let r = ChunkRanges::from(ChunkNum(16)..ChunkNum(40));
        assert_eq!(to_groups(&r), Groups::from(1..3));
        assert_eq!(
            to_chunks(&(1..3)),
            ChunkRanges::from(ChunkNum(16)..ChunkNum(48))
        );
    }
}
