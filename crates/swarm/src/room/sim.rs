//! A deterministic, in-process room of many members running the real mesh
//! state machine ([`super::mesh`]) on a virtual clock: who dials whom,
//! where entries and presences are pushed, who counts as online. Used by
//! the tests (10 members, several seeds) and `bench/room_sim.sh` (100 and
//! 1,000).
//!
//! Model: a message takes half a round trip, jittered; each one is lost
//! with probability `loss`, which on a QUIC stream delays it (and what
//! follows it on that session) by a round trip. A session starts one and a
//! half round trips after its dial (QUIC's handshake and the room's). A
//! partition cuts the links between two halves from `partition.0` to
//! `partition.1`: sessions across it end, dials across it fail, and after
//! the heal the members dial again. The log is modelled by what sync needs
//! of it: each author's entries form a chain, taken in once their
//! predecessor is; a `Have` is answered with what the other lacks.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap},
    sync::Arc,
};

use p2pfs_proto::{
    NodeId,
    room::{Presence, PresenceBody, PresenceHead, PresencePhase, Signature, Status},
};

use super::mesh::{Apply, Config, Heard, Mesh, RESET_EVERY};

/// The simulated room.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub members: usize,
    pub seed: u64,
    pub rtt_ms: u64,
    /// Relative jitter of each delay (0.2: ±20 %).
    pub jitter: f64,
    pub loss: f64,
    /// Chat lines posted in all, at random members and times.
    pub chats: usize,
    /// Over this long from the start (after every member joined).
    pub chat_window_ms: u64,
    /// A replica's heartbeat.
    pub heartbeat_ms: u64,
    /// How long the room runs in all.
    pub duration_ms: u64,
    /// Cut the room in two halves from `.0` to `.1` (ms).
    pub partition: Option<(u64, u64)>,
    /// Members join over this long (each told of the first member and of
    /// the one before it, as a ticket does).
    pub join_window_ms: u64,
    /// Bytes sent from this time on count as the steady state (the room
    /// formed, its mesh settled).
    pub steady_from_ms: u64,
}

impl SimConfig {
    /// `members` members, 50 ms round trips, ±20 % jitter, 1 % loss, 200
    /// chat lines.
    pub fn new(members: usize, seed: u64) -> Self {
        Self {
            members,
            seed,
            rtt_ms: 50,
            jitter: 0.2,
            loss: 0.01,
            chats: 200,
            chat_window_ms: 20_000,
            heartbeat_ms: 1_000,
            duration_ms: 60_000,
            partition: None,
            join_window_ms: 5_000,
            steady_from_ms: 15_000,
        }
    }
}

/// What the simulation measured.
#[derive(Debug, Clone, Default)]
pub struct SimReport {
    /// For each chat line and member, the time from its post to its arrival.
    pub chat_latency_ms: Vec<u64>,
    /// Chat lines that some member never got.
    pub chats_missing: usize,
    /// Members whose view of who is online differs from the truth at the
    /// end.
    pub online_wrong: usize,
    /// Per member, bytes sent (an estimate of the wire sizes).
    pub bytes_sent: Vec<u64>,
    /// Per member, bytes sent in the steady state
    /// ([`SimConfig::steady_from_ms`] to the end).
    pub bytes_steady: Vec<u64>,
    /// Bytes sent by all, by message: `Have`, `Entries`, `Peers`,
    /// `Presence`, `PresenceDigest`.
    pub bytes_by_kind: [u64; 5],
    /// Sessions started, and sessions ended as surplus, in the steady
    /// state (churn of the mesh).
    pub steady_session_starts: u64,
    pub steady_surplus_ends: u64,
    /// Per member, sessions at the end.
    pub sessions: Vec<usize>,
    /// Messages delivered in all.
    pub messages: u64,
}

impl SimReport {
    /// The `q` quantile of `v` (sorted here).
    pub fn quantile(v: &[u64], q: f64) -> u64 {
        let mut s = v.to_vec();
        s.sort_unstable();
        if s.is_empty() {
            return 0;
        }
        s[((s.len() - 1) as f64 * q).round() as usize]
    }
}

/// A chat entry: its author and place in the author's chain.
type EntryId = (NodeId, u64);

#[derive(Debug, Clone)]
enum Msg {
    Have(BTreeMap<NodeId, u64>),
    Entries(Vec<EntryId>),
    Peers(Vec<NodeId>),
    Presence(Arc<Presence>, Arc<PresenceBody>),
    Digest(Vec<PresenceHead>),
}

impl Msg {
    /// Its index in [`SimReport::bytes_by_kind`].
    fn kind(&self) -> usize {
        match self {
            Msg::Have(_) => 0,
            Msg::Entries(_) => 1,
            Msg::Peers(_) => 2,
            Msg::Presence(..) => 3,
            Msg::Digest(_) => 4,
        }
    }

    /// About what it weighs on the wire (docs/protocol.md §8.6).
    fn size(&self) -> u64 {
        match self {
            Msg::Have(h) => 4 + 34 * h.len() as u64,
            // A chat entry of a short line: body, signature, framing.
            Msg::Entries(e) => 4 + 220 * e.len() as u64,
            Msg::Peers(p) => 4 + 42 * p.len() as u64,
            Msg::Presence(p, _) => 8 + p.body.len() as u64 + 64,
            // An id, a run (a time in ms) and a small seq, as varints.
            Msg::Digest(h) => 4 + 40 * h.len() as u64,
        }
    }
}

#[derive(Debug)]
enum Event {
    Join(usize),
    Tick(usize),
    Post(usize),
    /// A dial from `.0` to `.1` completes (or fails).
    Dialed(usize, usize),
    Deliver {
        to: usize,
        from: usize,
        msg: Msg,
    },
    /// The partition starts or heals.
    Cut(bool),
}

struct Member {
    id: NodeId,
    mesh: Mesh,
    joined: bool,
    counts: HashMap<NodeId, u64>,
    pending: Vec<EntryId>,
    /// When this member took in each entry.
    got: HashMap<EntryId, u64>,
    last_have: HashMap<usize, u64>,
    run: u64,
    seq: u64,
    next_presence: u64,
    known_told: usize,
}

struct Sim<'a> {
    cfg: &'a SimConfig,
    rng: fastrand::Rng,
    now: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: HashMap<u64, Event>,
    serial: u64,
    members: Vec<Member>,
    index: HashMap<NodeId, usize>,
    /// Per session direction, the time its last message arrives (FIFO).
    stream_tail: HashMap<(usize, usize), u64>,
    cut: bool,
    posted: HashMap<EntryId, u64>,
    report: SimReport,
}

/// Runs the simulation.
pub fn run(cfg: &SimConfig) -> SimReport {
    let mut rng = fastrand::Rng::with_seed(cfg.seed);
    let mut members = Vec::with_capacity(cfg.members);
    let mut index = HashMap::new();
    for i in 0..cfg.members {
        let mut b = [0u8; 32];
        rng.fill(&mut b);
        let id = NodeId::from_bytes(b);
        index.insert(id, i);
        members.push(Member {
            id,
            mesh: Mesh::new(
                id,
                Config {
                    offline_after_ms: 6 * cfg.heartbeat_ms,
                    ..Config::default()
                },
            ),
            joined: false,
            counts: HashMap::new(),
            pending: Vec::new(),
            got: HashMap::new(),
            last_have: HashMap::new(),
            run: 0,
            seq: 0,
            next_presence: 0,
            known_told: 0,
        });
    }
    let mut sim = Sim {
        cfg,
        rng,
        now: 0,
        queue: BinaryHeap::new(),
        events: HashMap::new(),
        serial: 0,
        members,
        index,
        stream_tail: HashMap::new(),
        cut: false,
        posted: HashMap::new(),
        report: SimReport {
            bytes_sent: vec![0; cfg.members],
            bytes_steady: vec![0; cfg.members],
            ..SimReport::default()
        },
    };
    for i in 0..cfg.members {
        let at = if i == 0 {
            0
        } else {
            sim.rng.u64(0..=cfg.join_window_ms)
        };
        sim.at(at, Event::Join(i));
    }
    let start = cfg.join_window_ms;
    for _ in 0..cfg.chats {
        let who = sim.rng.usize(..cfg.members);
        let at = start + sim.rng.u64(0..=cfg.chat_window_ms);
        sim.at(at, Event::Post(who));
    }
    if let Some((a, b)) = cfg.partition {
        sim.at(a, Event::Cut(true));
        sim.at(b, Event::Cut(false));
    }
    while let Some(Reverse((t, serial))) = sim.queue.pop() {
        if t > cfg.duration_ms {
            break;
        }
        sim.now = t;
        if let Some(e) = sim.events.remove(&serial) {
            sim.handle(e);
        }
    }
    sim.finish()
}

impl Sim<'_> {
    fn at(&mut self, t: u64, e: Event) {
        self.serial += 1;
        self.queue.push(Reverse((t, self.serial)));
        self.events.insert(self.serial, e);
    }

    fn jitter(&mut self, ms: u64) -> u64 {
        let j = 1.0 + self.cfg.jitter * (2.0 * self.rng.f64() - 1.0);
        (ms as f64 * j).max(1.0) as u64
    }

    fn half(&self, i: usize) -> bool {
        i * 2 < self.cfg.members
    }

    fn linked(&self, a: usize, b: usize) -> bool {
        !self.cut || self.half(a) == self.half(b)
    }

    fn send(&mut self, from: usize, to: usize, msg: Msg) {
        let size = msg.size();
        self.report.bytes_sent[from] += size;
        if self.now >= self.cfg.steady_from_ms {
            self.report.bytes_steady[from] += size;
        }
        self.report.bytes_by_kind[msg.kind()] += size;
        let mut delay = self.jitter(self.cfg.rtt_ms / 2);
        if self.rng.f64() < self.cfg.loss {
            delay += self.cfg.rtt_ms;
        }
        let tail = self.stream_tail.entry((from, to)).or_insert(0);
        let t = (self.now + delay).max(*tail);
        *tail = t;
        self.at(t, Event::Deliver { to, from, msg });
    }

    fn handle(&mut self, e: Event) {
        match e {
            Event::Join(i) => {
                self.members[i].joined = true;
                self.members[i].run = self.now + 1;
                // The ticket: the first member, and the one before.
                for j in [0, i.saturating_sub(1)] {
                    if j != i {
                        let id = self.members[j].id;
                        self.members[i].mesh.learn(id);
                    }
                }
                self.tick(i);
            }
            Event::Tick(i) => self.tick(i),
            Event::Post(i) => {
                if !self.members[i].joined {
                    return;
                }
                let id = self.members[i].id;
                let seq = self.members[i].counts.get(&id).copied().unwrap_or(0);
                self.posted.insert((id, seq), self.now);
                self.take_in(i, None, vec![(id, seq)]);
            }
            Event::Dialed(a, b) => {
                let ok = self.members[b].joined && self.linked(a, b);
                if !ok {
                    let (peer, now) = (self.members[b].id, self.now);
                    self.members[a].mesh.dial_ended(peer, true, now);
                    return;
                }
                self.session_up(a, b);
                if !self.members[b]
                    .mesh
                    .sessions()
                    .any(|p| *p == self.members[a].id)
                {
                    self.session_up(b, a);
                }
            }
            Event::Deliver { to, from, msg } => {
                let from_id = self.members[from].id;
                if !self.members[to].mesh.sessions().any(|p| *p == from_id) {
                    return; // the session ended meanwhile
                }
                self.report.messages += 1;
                self.receive(to, from, msg);
            }
            Event::Cut(on) => {
                self.cut = on;
                if on {
                    for a in 0..self.members.len() {
                        let peers: Vec<NodeId> = self.members[a].mesh.sessions().copied().collect();
                        for p in peers {
                            let b = self.index[&p];
                            if !self.linked(a, b) {
                                self.members[a].mesh.down(p, self.now, true);
                            }
                        }
                    }
                }
            }
        }
    }

    fn session_up(&mut self, a: usize, b: usize) {
        let peer = self.members[b].id;
        self.members[a].mesh.learn(peer);
        self.members[a].mesh.up(peer);
        if self.now >= self.cfg.steady_from_ms {
            self.report.steady_session_starts += 1;
        }
        let digest = self.members[a].mesh.digest();
        let have = self.have(a);
        self.send(a, b, Msg::Have(have));
        let sample = self.members[a].mesh.sample(peer, 31, self.rng.u64(..));
        self.send(a, b, Msg::Peers(sample));
        self.send(a, b, Msg::Digest(digest));
    }

    fn have(&self, i: usize) -> BTreeMap<NodeId, u64> {
        self.members[i]
            .counts
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect()
    }

    fn tick(&mut self, i: usize) {
        let now = self.now;
        // Dials, as the runtime makes them.
        let dials = self.members[i].mesh.dials(now);
        for peer in dials {
            let b = self.index[&peer];
            let t = now + self.jitter(self.cfg.rtt_ms * 3 / 2);
            self.at(t, Event::Dialed(i, b));
        }
        for peer in self.members[i].mesh.surplus(now) {
            if now >= self.cfg.steady_from_ms {
                self.report.steady_surplus_ends += 1;
            }
            let b = self.index[&peer];
            self.members[i].mesh.down(peer, now, false);
            let me = self.members[i].id;
            self.members[b].mesh.down(me, now, false);
        }
        // New members learned: tell the sessions.
        let known = self.members[i].mesh.known().count();
        if known != self.members[i].known_told {
            self.members[i].known_told = known;
            let sessions: Vec<NodeId> = self.members[i].mesh.sessions().copied().collect();
            for p in sessions {
                let sample = self.members[i].mesh.sample(p, 31, self.rng.u64(..));
                let b = self.index[&p];
                self.send(i, b, Msg::Peers(sample));
            }
        }
        if now >= self.members[i].next_presence {
            self.presence(i);
        }
        self.members[i].mesh.expire(now);
        let next = now + self.jitter(1000);
        self.at(next, Event::Tick(i));
    }

    /// Sends this member's presence, its period scaled with the room as
    /// the node's is ([`super::mesh::presence_period`]).
    fn presence(&mut self, i: usize) {
        let m = &mut self.members[i];
        let members = m.mesh.known().count() + 1;
        let period = super::mesh::presence_period(self.cfg.heartbeat_ms, members);
        let reset = m.seq.is_multiple_of(RESET_EVERY);
        let body = PresenceBody {
            origin: m.id,
            member: [0; 32],
            run: m.run,
            seq: m.seq,
            phase: PresencePhase::Running,
            status: Status {
                full: false,
                reset,
                heartbeat_ms: u32::try_from(period).unwrap_or(u32::MAX),
                add: Vec::new(),
                remove: Vec::new(),
            },
        };
        m.seq += 1;
        m.next_presence = self.now + period;
        let p = Arc::new(Presence {
            body: p2pfs_proto::codec::encode(&body).unwrap_or_default(),
            sig: Signature([0; 64]),
        });
        let to = self.members[i]
            .mesh
            .own(p.clone(), body.run, body.seq, reset);
        let body = Arc::new(body);
        for peer in to {
            let b = self.index[&peer];
            self.send(i, b, Msg::Presence(p.clone(), body.clone()));
        }
    }

    fn receive(&mut self, i: usize, from: usize, msg: Msg) {
        match msg {
            Msg::Have(have) => {
                let mut out: Vec<EntryId> = Vec::new();
                for (author, n) in &self.members[i].counts {
                    let theirs = have.get(author).copied().unwrap_or(0);
                    out.extend((theirs..*n).map(|s| (*author, s)));
                }
                if !out.is_empty() {
                    self.send(i, from, Msg::Entries(out));
                }
            }
            Msg::Entries(list) => self.take_in(i, Some(from), list),
            Msg::Peers(list) => {
                for p in list {
                    self.members[i].mesh.learn(p);
                }
                let me = self.members[from].id;
                self.members[i].mesh.learn(me);
            }
            Msg::Presence(p, body) => {
                let from_id = self.members[from].id;
                let heard =
                    self.members[i]
                        .mesh
                        .presence(Some(from_id), p.clone(), &body, self.now);
                if let Heard::New { forward, apply } = heard {
                    // A simulated replica holds nothing; what matters here
                    // is that a presence arrives, in order or not.
                    let _: &Apply = &apply;
                    for peer in forward {
                        let b = self.index[&peer];
                        self.send(i, b, Msg::Presence(p.clone(), body.clone()));
                    }
                }
            }
            Msg::Digest(heads) => {
                let from_id = self.members[from].id;
                for p in self.members[i].mesh.missing(from_id, &heads) {
                    if let Ok(body) = p.decode_body() {
                        self.send(i, from, Msg::Presence(p, Arc::new(body)));
                    }
                }
            }
        }
    }

    /// Takes in entries (the author's chain in order), pushing the new
    /// ones on.
    fn take_in(&mut self, i: usize, from: Option<usize>, list: Vec<EntryId>) {
        let now = self.now;
        let m = &mut self.members[i];
        m.pending.extend(list);
        let mut new = Vec::new();
        loop {
            let before = new.len();
            let mut rest = Vec::new();
            for e in std::mem::take(&mut m.pending) {
                let n = m.counts.entry(e.0).or_insert(0);
                if e.1 < *n {
                    continue;
                }
                if e.1 == *n {
                    *n += 1;
                    m.got.insert(e, now);
                    new.push(e);
                } else {
                    rest.push(e);
                }
            }
            m.pending = rest;
            if new.len() == before {
                break;
            }
        }
        let waiting = !m.pending.is_empty();
        if !new.is_empty() {
            let from_id = from.map(|f| self.members[f].id);
            for peer in self.members[i].mesh.push_targets(from_id) {
                let b = self.index[&peer];
                self.send(i, b, Msg::Entries(new.clone()));
            }
        }
        if let (true, Some(f)) = (waiting, from) {
            let last = self.members[i].last_have.get(&f).copied();
            if last.is_none_or(|t| now >= t + 3000) {
                self.members[i].last_have.insert(f, now);
                let have = self.have(i);
                self.send(i, f, Msg::Have(have));
            }
        }
    }

    fn finish(mut self) -> SimReport {
        let now = self.now;
        for (e, posted) in &self.posted {
            for m in &self.members {
                match m.got.get(e) {
                    Some(t) => self.report.chat_latency_ms.push(t - posted),
                    None => self.report.chats_missing += 1,
                }
            }
        }
        let all: BTreeSet<NodeId> = self.members.iter().map(|m| m.id).collect();
        for m in &self.members {
            let mut seen = m.mesh.online(now);
            seen.insert(m.id);
            if seen != all {
                self.report.online_wrong += 1;
            }
            self.report.sessions.push(m.mesh.sessions().count());
        }
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_members_converge_over_several_seeds() {
        for seed in 1..=5 {
            let r = run(&SimConfig::new(10, seed));
            assert_eq!(r.chats_missing, 0, "seed {seed}");
            assert_eq!(r.online_wrong, 0, "seed {seed}");
            assert!(
                SimReport::quantile(&r.chat_latency_ms, 0.99) < 1000,
                "seed {seed}"
            );
        }
    }

    #[test]
    fn a_partition_heals_and_the_room_converges() {
        for seed in 1..=3 {
            let mut cfg = SimConfig::new(10, seed);
            cfg.partition = Some((8_000, 20_000));
            let r = run(&cfg);
            assert_eq!(r.chats_missing, 0, "seed {seed}");
            assert_eq!(r.online_wrong, 0, "seed {seed}");
        }
    }

    #[test]
    fn forty_members_do_not_need_a_full_mesh() {
        let r = run(&SimConfig::new(40, 7));
        assert_eq!(r.chats_missing, 0);
        assert_eq!(r.online_wrong, 0);
        let most = r.sessions.iter().copied().max().unwrap_or(0);
        assert!(most < 39, "a member holds {most} sessions of 39");
    }
}
