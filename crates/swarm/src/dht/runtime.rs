//! The DHT in a running node: the routing table and records behind a lock,
//! lookups driven over QUIC, joining, announcing, and upkeep.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use p2pfs_proto::{
    Hash, NodeAddr, NodeId,
    dht::{DhtResponse, K, MAX_NODE_ADDRS, Query},
};
use p2pfs_store::{BlobState, Store, StoreError};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use crate::{
    SwarmError, Target,
    config::DhtConfig,
    dht::{
        Key, Lookup, LookupConfig, RoutingTable, RttEstimator, Seen, TableConfig, records::Records,
        rpc, service::canonical,
    },
    net::Net,
    policy::Privacy,
    router::{ProtocolHandler, Serving},
};

/// A query not answered within this is given up whatever the estimate.
const HARD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a lookup waits for LAN nodes to answer when it knows none.
const LAN_WAIT: Duration = Duration::from_secs(2);
/// How often a provider announces what it has again.
pub const REPUBLISH: Duration = Duration::from_secs(12 * 3600);
/// How often upkeep runs (save the table, expire records, republish).
const UPKEEP: Duration = Duration::from_secs(60);
/// How often a random key is looked up to keep far buckets fresh.
const REFRESH: Duration = Duration::from_secs(600);
/// Announcements running at once.
const ANNOUNCE_PARALLEL: usize = 4;
/// Most blobs announced per upkeep round.
const ANNOUNCE_PER_ROUND: usize = 256;

/// What `p2pfs status` shows of the DHT.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhtStatus {
    /// Whether the node serves the DHT.
    pub server: bool,
    /// Nodes in the routing table.
    pub table: usize,
    /// Provider records held for others.
    pub records: usize,
    /// Blobs this node announced.
    pub announced: usize,
}

/// What a lookup found.
#[derive(Debug, Default)]
pub(crate) struct Found {
    pub(crate) closest: Vec<(Key, Vec<SocketAddr>)>,
    pub(crate) providers: Vec<NodeAddr>,
}

/// The DHT's handler and state: the routing table and the records, and
/// the parts of the node it uses (the network, the store, the privacy
/// rule). Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Dht(Arc<State>);

impl std::ops::Deref for Dht {
    type Target = State;

    fn deref(&self) -> &State {
        &self.0
    }
}

impl ProtocolHandler for Dht {
    fn serve(&self, conn: crate::net::dial::Conn) -> Serving {
        Box::pin(crate::dht::service::serve(self.clone(), conn))
    }
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) net: Net,
    store: Store,
    privacy: Privacy,
    epoch: Instant,
    table: Mutex<RoutingTable<Vec<SocketAddr>>>,
    rtt: Mutex<Rtts>,
    pub(crate) records: Arc<Records>,
    announced: Mutex<HashMap<Hash, Instant>>,
    /// Public blobs are announced on the Mainline DHT too (its providers'
    /// index at internet scale).
    mainline: Option<Arc<crate::mainline::Mainline>>,
    checking: Mutex<HashSet<Key>>,
    pub(crate) config: DhtConfig,
    /// Set once the first join attempt is over.
    joined: tokio::sync::watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct Rtts {
    all: RttEstimator,
    per_node: HashMap<Key, RttEstimator>,
}

impl Rtts {
    fn timeout(&self, k: &Key) -> Duration {
        match self.per_node.get(k) {
            Some(e) => e.timeout(),
            // A first query also dials: a handshake round trip more.
            None => (self.all.timeout() * 2).min(Duration::from_secs(2)),
        }
    }

    fn sample(&mut self, k: Key, rtt: Duration) {
        self.all.sample(rtt);
        if self.per_node.len() >= 4096 && !self.per_node.contains_key(&k) {
            self.per_node.clear();
        }
        self.per_node.entry(k).or_default().sample(rtt);
    }
}

impl Dht {
    pub(crate) fn new(
        net: Net,
        store: Store,
        privacy: Privacy,
        config: DhtConfig,
        mainline: Option<Arc<crate::mainline::Mainline>>,
    ) -> Result<Self, StoreError> {
        let records = Records::open(store.clone(), config.records.clone())?;
        let me = net.id();
        Ok(Self(Arc::new(State {
            net,
            store,
            privacy,
            epoch: Instant::now(),
            table: Mutex::new(RoutingTable::new(Key::from(me), TableConfig::default())),
            rtt: Mutex::new(Rtts::default()),
            records: Arc::new(records),
            announced: Mutex::new(HashMap::new()),
            checking: Mutex::new(HashSet::new()),
            config,
            joined: tokio::sync::watch::channel(false).0,
            mainline,
        })))
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    pub(crate) fn closest(&self, target: &Key, n: usize) -> Vec<(Key, Vec<SocketAddr>)> {
        crate::lock(&self.table).closest(target, n)
    }

    fn table_len(&self) -> usize {
        crate::lock(&self.table).len()
    }

    /// `peer` reached us directly from `addr` (it asked with `server`
    /// set, or answered us): it may enter the table. A full bucket pings
    /// its least recently seen entry first (docs/protocol.md §7.5).
    pub(crate) fn contacted(&self, peer: NodeId, addr: SocketAddr) {
        let seen =
            crate::lock(&self.table).seen(Key::from(peer), vec![canonical(addr)], self.now());
        if let Seen::Full { check } = seen {
            if !crate::lock(&self.checking).insert(check) {
                return;
            }
            let addrs = self
                .closest(&check, 1)
                .into_iter()
                .find(|(k, _)| *k == check)
                .map(|(_, a)| a)
                .unwrap_or_default();
            let dht = self.clone();
            self.net.spawn(async move {
                let target = Target {
                    id: Some(NodeId::from_bytes(check.0)),
                    addrs,
                };
                let alive =
                    tokio::time::timeout(HARD_TIMEOUT, rpc::ask(&dht, &target, Query::Ping))
                        .await
                        .is_ok_and(|r| r.is_ok());
                {
                    let mut t = crate::lock(&dht.table);
                    if alive {
                        t.seen(check, target.addrs, dht.now());
                    } else {
                        t.failed(&check);
                    }
                }
                crate::lock(&dht.checking).remove(&check);
            });
        }
    }

    pub(crate) fn status(&self) -> DhtStatus {
        DhtStatus {
            server: self.config.server,
            table: self.table_len(),
            records: self.records.len(),
            announced: crate::lock(&self.announced).len(),
        }
    }
}

/// Runs one iterative lookup of `target` (docs/protocol.md §7.6): for
/// nodes, or, with `providers`, for the providers of that hash.
pub(crate) async fn lookup(dht: &Dht, target: Key, providers: Option<Hash>) -> Found {
    let me = Key::from(dht.net.id());
    let seeds = dht.closest(&target, K);
    let cfg = LookupConfig {
        network_bits: crate::lock(&dht.table).network_bits(),
        ..LookupConfig::default()
    };
    let mut l = Lookup::new(target, cfg, seeds);
    let query = match providers {
        Some(hash) => Query::GetProviders { hash },
        None => Query::FindNode { target: target.0 },
    };
    let start = tokio::time::Instant::now();
    let mut tasks = JoinSet::new();
    let mut found: HashMap<NodeId, NodeAddr> = HashMap::new();
    loop {
        let sends = {
            let rtt = crate::lock(&dht.rtt);
            l.poll(start.elapsed(), |k| rtt.timeout(k))
        };
        for (key, addrs) in sends {
            let (n, q) = (dht.clone(), query.clone());
            tasks.spawn(async move {
                let target = Target {
                    id: Some(NodeId::from_bytes(key.0)),
                    addrs,
                };
                let r = tokio::time::timeout(HARD_TIMEOUT, rpc::ask(&n, &target, q)).await;
                (key, r)
            });
        }
        if l.is_finished() {
            break;
        }
        let wake = l.next_deadline().map(|d| start + d);
        if tasks.is_empty() && wake.is_none() {
            break;
        }
        let far = start + HARD_TIMEOUT * 6;
        tokio::select! {
            _ = dht.net.cancel().cancelled() => break,
            joined = tasks.join_next(), if !tasks.is_empty() => {
                let Some(Ok((key, result))) = joined else { continue };
                match result {
                    Ok(Ok(answer)) => {
                        crate::lock(&dht.rtt).sample(key, answer.rtt);
                        dht.contacted(answer.peer, answer.addr);
                        let closer = match answer.response {
                            DhtResponse::Nodes { closer } => closer,
                            DhtResponse::Providers { providers, closer } => {
                                for p in providers {
                                    found.entry(p.id).or_insert(p);
                                }
                                closer
                            }
                            _ => Vec::new(),
                        };
                        let closer = closer
                            .into_iter()
                            .map(|n| (Key::from(n.id), n.addrs))
                            .filter(|(k, _)| *k != me);
                        l.on_answer(&key, closer);
                    }
                    failed => {
                        if let Ok(Err(e)) = failed {
                            tracing::debug!(node = ?key, "DHT query failed: {e}");
                        }
                        l.on_failure(&key);
                        crate::lock(&dht.table).failed(&key);
                    }
                }
            }
            _ = tokio::time::sleep_until(wake.unwrap_or(far)) => {}
        }
    }
    Found {
        closest: l.closest(),
        providers: found.into_values().collect(),
    }
}

impl Dht {
    /// Finds the providers of `hash` through the DHT (and the records this
    /// node holds itself).
    pub(crate) async fn find_providers(&self, hash: Hash) -> Result<Vec<NodeAddr>, SwarmError> {
        self.wait_joined().await;
        if self.config.lan {
            // Nodes on the LAN answer a new node's beacon within moments.
            let deadline = Instant::now() + LAN_WAIT;
            while self.table_len() == 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let records = self.records.clone();
        let mut providers = crate::blocking(move || records.get(&hash)).await?;
        let found = lookup(self, Key::from(hash), Some(hash)).await;
        for p in found.providers {
            if !providers.iter().any(|q| q.id == p.id) {
                providers.push(p);
            }
        }
        providers.retain(|p| p.id != self.net.id());
        Ok(providers)
    }

    /// Announces that this node provides `hash`: a lookup of the hash,
    /// then `ADD_PROVIDER` to the k closest nodes. Returns how many stored
    /// the record.
    pub(crate) async fn announce(&self, hash: Hash) -> usize {
        self.wait_joined().await;
        let found = lookup(self, Key::from(hash), None).await;
        let mut addrs = self.net.addrs();
        addrs.truncate(MAX_NODE_ADDRS);
        let mut tasks = JoinSet::new();
        for (key, a) in found.closest {
            let (n, addrs) = (self.clone(), addrs.clone());
            tasks.spawn(async move {
                let target = Target {
                    id: Some(NodeId::from_bytes(key.0)),
                    addrs: a,
                };
                let q = Query::AddProvider { hash, addrs };
                matches!(
                    tokio::time::timeout(HARD_TIMEOUT, rpc::ask(&n, &target, q)).await,
                    Ok(Ok(rpc::Answer {
                        response: DhtResponse::Stored { .. },
                        ..
                    }))
                )
            });
        }
        let mut stored = 0;
        while let Some(r) = tasks.join_next().await {
            stored += usize::from(r.unwrap_or(false));
        }
        crate::lock(&self.announced).insert(hash, Instant::now());
        tracing::debug!(%hash, stored, "announced");
        stored
    }

    /// Announces `hash` in the background (a server node that just got a
    /// blob), unless it was announced within [`REPUBLISH`].
    pub(crate) fn provide(&self, hash: Hash) {
        let recent = crate::lock(&self.announced)
            .get(&hash)
            .is_some_and(|t| t.elapsed() < REPUBLISH);
        if !self.config.server || recent {
            return;
        }
        let dht = self.clone();
        self.net.spawn(async move {
            // Room blobs are never announced under their hash.
            let privacy = dht.privacy.clone();
            if crate::off_thread(move || privacy.is_public(&hash))
                .await
                .unwrap_or(false)
            {
                if let Some(ml) = dht.mainline.clone() {
                    let port = crate::mainline::announced_port(&dht.net);
                    dht.net.spawn(async move {
                        if let Err(e) = ml.announce_blob(&hash, port).await {
                            tracing::debug!(%hash, "announcing on the Mainline DHT: {e}");
                        }
                    });
                }
                dht.announce(hash).await;
            }
        });
    }

    /// Pings `target`: it joins the routing table if it answers, and its
    /// `Pong` tells this node where its packets come from (its reflexive
    /// address, [`crate::net::Net::observed`]).
    pub(crate) async fn ping(&self, target: &Target) {
        match tokio::time::timeout(HARD_TIMEOUT, rpc::ask(self, target, Query::Ping)).await {
            Ok(Ok(a)) => self.contacted(a.peer, a.addr),
            Ok(Err(e)) => tracing::debug!(peer = %target, "DHT ping: {e}"),
            Err(_) => tracing::debug!(peer = %target, "DHT ping: no answer"),
        }
    }

    /// Pings `seeds` over the DHT protocol (which adds those that answer to
    /// the routing table), then looks up this node's own id to fill the
    /// table. Returns the table's size.
    pub(crate) async fn join(&self, seeds: Vec<Target>) -> usize {
        let mut tasks = JoinSet::new();
        for t in seeds {
            let n = self.clone();
            tasks.spawn(async move { n.ping(&t).await });
        }
        while tasks.join_next().await.is_some() {}
        if self.table_len() > 0 {
            lookup(self, Key::from(self.net.id()), None).await;
            // A far key too, so the far buckets fill as well.
            lookup(self, Key(fastrand_key()), None).await;
        }
        self.table_len()
    }

    /// Waits (briefly) for the first join to finish.
    pub(crate) async fn wait_joined(&self) {
        let mut rx = self.joined.subscribe();
        let _ = tokio::time::timeout(HARD_TIMEOUT, rx.wait_for(|j| *j)).await;
    }
}

fn fastrand_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    fastrand::fill(&mut k);
    k
}

/// The DHT's background work: join through the configured seeds and the
/// nodes remembered from the last run; then, for a server, save the table,
/// expire records, republish and refresh, until shutdown.
pub(crate) async fn run(dht: Dht) {
    let mut seeds = dht.config.bootstrap.clone();
    let store = dht.store.clone();
    if let Ok(saved) = crate::blocking(move || store.load_nodes()).await {
        seeds.extend(saved.into_iter().map(|(id, addrs)| Target {
            id: Some(id),
            addrs,
        }));
    }
    let size = dht.join(seeds.clone()).await;
    dht.joined.send_replace(true);
    tracing::info!(nodes = size, "joined the DHT");
    if !dht.config.server {
        return;
    }
    let mut upkeep = tokio::time::interval(UPKEEP);
    let mut last_refresh = Instant::now();
    loop {
        tokio::select! {
            _ = dht.net.cancel().cancelled() => break,
            _ = upkeep.tick() => {}
        }
        if dht.table_len() == 0 && !seeds.is_empty() {
            dht.join(seeds.clone()).await;
        } else if last_refresh.elapsed() >= REFRESH {
            last_refresh = Instant::now();
            lookup(&dht, Key(fastrand_key()), None).await;
        }
        save_and_expire(&dht).await;
        republish(&dht).await;
    }
    save_and_expire(&dht).await;
}

async fn save_and_expire(dht: &Dht) {
    let nodes: Vec<(NodeId, Vec<SocketAddr>)> = crate::lock(&dht.table)
        .entries()
        .map(|e| (NodeId::from_bytes(e.key.0), e.addr.clone()))
        .collect();
    let (store, records) = (dht.store.clone(), dht.records.clone());
    let done = crate::blocking(move || {
        // An empty table is not saved over the nodes of a better run.
        if !nodes.is_empty() {
            store.save_nodes(&nodes)?;
        }
        records.expire()
    })
    .await;
    if let Err(e) = done {
        tracing::warn!("DHT upkeep: {e}");
    }
}

/// Announces the complete blobs not announced within [`REPUBLISH`].
async fn republish(dht: &Dht) {
    if dht.table_len() == 0 {
        return;
    }
    let (store, privacy) = (dht.store.clone(), dht.privacy.clone());
    let Ok(blobs) = crate::blocking(move || {
        store.list().map(|list| {
            list.into_iter()
                .filter(|b| privacy.is_public(&b.hash))
                .collect::<Vec<_>>()
        })
    })
    .await
    else {
        return;
    };
    let due: Vec<Hash> = {
        let announced = crate::lock(&dht.announced);
        blobs
            .into_iter()
            .filter(|b| b.state == BlobState::Complete)
            .filter(|b| {
                announced
                    .get(&b.hash)
                    .is_none_or(|t| t.elapsed() >= REPUBLISH)
            })
            .map(|b| b.hash)
            .take(ANNOUNCE_PER_ROUND)
            .collect()
    };
    let mut tasks = JoinSet::new();
    for hash in due {
        while tasks.len() >= ANNOUNCE_PARALLEL {
            tasks.join_next().await;
        }
        let d = dht.clone();
        tasks.spawn(async move { d.announce(hash).await });
    }
    while tasks.join_next().await.is_some() {}
}
