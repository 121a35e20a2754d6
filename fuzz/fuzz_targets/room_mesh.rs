//! A room's mesh (`room::mesh`, the sans-io state machine of whom to keep
//! sessions with, where pushes go and who is online) fed adversarial
//! events: members learned one or forty at a time (and the node's own
//! id), sessions up and down with members and strangers, dials that
//! succeed, fail or end for peers never dialed, presences signed by four
//! replicas with any (run, seq), replayed, reordered, leaving or gone,
//! with any heartbeat, and forged ones (another key's signature, another
//! room's tag, a flipped byte) that the session's check must refuse before
//! the mesh sees them; time that jumps, events stamped in the past, and
//! expiry.
//!
//! Checked after every event against a model of the documented rules:
//! the ring and its fingers (every other member up to 12, else the
//! predecessor and the members 1, 2, 4, … places on: at most
//! 1 + ⌈log₂ n⌉), so the view holds only known members, never the node
//! itself, and routes around members whose dials back off (1 s doubling
//! to 60 s); dials only of the view, at most 8 in flight (with no session
//! at all: of everyone known, view first, at most 32), none with a
//! session or backing off; surplus sessions only beyond twice the view,
//! in neither side's view; a presence new exactly when its (run, seq)
//! passes the last one heard (so one applied twice is new once), applied
//! in order only after a reset without gaps, forwarded to every session
//! but its sender, its chain at most `MAX_CHAIN` long; a new session's
//! digest (this node's head, then each origin's) and what a peer lacks
//! given a digest (left out, behind, of another run); who is online (sessions, and replicas heard within
//! their timeout that did not say goodbye); and expiry after twice the
//! timeout.
#![no_main]

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, OnceLock},
};

use libfuzzer_sys::fuzz_target;
use p2pfs_proto::{
    Hash, NodeId, RoomSecret, codec,
    room::{
        Presence, PresenceBody, PresenceHead, PresencePhase, Signature, Status, presence_message,
    },
};
use p2pfs_swarm::{
    fuzzing::mesh::{
        Apply, Config, Heard, ISOLATED_DIALS, MAX_CHAIN, Mesh, presence_period, verify_presence,
    },
    identity::SecretKey,
};

const FIRST_BACKOFF: u64 = 1000;
const MAX_BACKOFF: u64 = 60_000;

fn keys() -> &'static [SecretKey] {
    static K: OnceLock<Vec<SecretKey>> = OnceLock::new();
    K.get_or_init(|| {
        (1..=5u8)
            .map(|i| SecretKey::from_seed([i; 32]).unwrap())
            .collect()
    })
}

/// Members: the four signing replicas, then ids that only dial and talk.
fn member(i: u8) -> NodeId {
    match i % 64 {
        n @ 0..4 => keys()[usize::from(n)].public(),
        n => NodeId::from_bytes([n; 32]),
    }
}

#[derive(Debug, Clone)]
struct Origin {
    run: u64,
    seq: u64,
    heard: u64,
    timeout: u64,
    phase: PresencePhase,
    /// The presences since the last reset, with their `seq`.
    chain: Vec<(u64, Vec<u8>)>,
    gap: bool,
}

/// The rules as documented, kept alongside the mesh.
#[derive(Debug)]
struct Model {
    me: NodeId,
    cfg: Config,
    known: BTreeSet<NodeId>,
    sessions: BTreeSet<NodeId>,
    dialing: BTreeSet<NodeId>,
    backoff: HashMap<NodeId, (u64, u64)>,
    origins: HashMap<NodeId, Origin>,
    own: Vec<(u64, Vec<u8>)>,
    /// Members whose dial failed or whose connection was lost: out of the
    /// ring until then.
    unreachable: HashMap<NodeId, u64>,
}

impl Model {
    fn failing(&self, p: &NodeId, now: u64) -> bool {
        !self.sessions.contains(p) && self.unreachable.get(p).is_some_and(|t| *t > now)
    }

    /// A new session's digest: this node's head, then each origin's with
    /// presences kept, by id.
    fn digest(&self) -> Vec<PresenceHead> {
        let mut out: Vec<PresenceHead> = self
            .own
            .last()
            .map(|(seq, _)| PresenceHead {
                origin: self.me,
                run: 1,
                seq: *seq,
            })
            .into_iter()
            .collect();
        let mut others: Vec<PresenceHead> = self
            .origins
            .iter()
            .filter(|(_, o)| !o.chain.is_empty())
            .map(|(id, o)| PresenceHead {
                origin: *id,
                run: o.run,
                seq: o.seq,
            })
            .collect();
        others.sort_by_key(|h| h.origin);
        out.extend(others);
        out
    }

    /// What a peer lacks given its digest: of this node (first) and each
    /// origin but the peer (by id), the presences newer than its head.
    fn missing(&self, peer: NodeId, heads: &[PresenceHead]) -> Vec<Vec<u8>> {
        let head = |id: &NodeId| {
            heads
                .iter()
                .rev()
                .find(|h| h.origin == *id)
                .map(|h| (h.run, h.seq))
        };
        let newer = |id: &NodeId, run: u64, chain: &[(u64, Vec<u8>)]| {
            let h = head(id);
            chain
                .iter()
                .filter(|(seq, _)| h.is_none_or(|h| (run, *seq) > h))
                .map(|(_, b)| b.clone())
                .collect::<Vec<_>>()
        };
        let mut out = newer(&self.me, 1, &self.own);
        let mut origins: Vec<(&NodeId, &Origin)> =
            self.origins.iter().filter(|(id, _)| **id != peer).collect();
        origins.sort_by_key(|(id, _)| **id);
        for (id, o) in origins {
            out.extend(newer(id, o.run, &o.chain));
        }
        out
    }

    fn ring(&self, now: u64) -> Vec<NodeId> {
        let mut r: Vec<NodeId> = self
            .known
            .iter()
            .filter(|p| !self.failing(p, now))
            .copied()
            .collect();
        r.push(self.me);
        r.sort();
        r
    }

    fn fingers(&self, of: NodeId, ring: &[NodeId]) -> BTreeSet<NodeId> {
        let n = ring.len();
        let Some(i) = ring.iter().position(|p| *p == of) else {
            return BTreeSet::new();
        };
        if n <= self.cfg.full_mesh + 1 {
            return ring.iter().copied().filter(|p| *p != of).collect();
        }
        let mut out = BTreeSet::from([ring[(i + n - 1) % n]]);
        let mut step = 1;
        while step < n {
            out.insert(ring[(i + step) % n]);
            step *= 2;
        }
        out
    }

    fn view(&self, now: u64) -> BTreeSet<NodeId> {
        self.fingers(self.me, &self.ring(now))
    }

    fn online(&self, now: u64) -> BTreeSet<NodeId> {
        let mut out = self.sessions.clone();
        for (id, o) in &self.origins {
            if o.phase != PresencePhase::Gone && now.saturating_sub(o.heard) < o.timeout {
                out.insert(*id);
            }
        }
        out
    }

    fn push_targets(&self, from: Option<NodeId>) -> Vec<NodeId> {
        self.sessions
            .iter()
            .filter(|p| Some(**p) != from)
            .copied()
            .collect()
    }
}

fn bodies(ps: &[Arc<Presence>]) -> Vec<Vec<u8>> {
    ps.iter().map(|p| p.body.clone()).collect()
}

fn log2_ceil(n: usize) -> usize {
    (usize::BITS - n.saturating_sub(1).leading_zeros()) as usize
}

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.iter().copied();
    let mut next = || bytes.next();
    let secret = RoomSecret([7; 32]);
    let other = RoomSecret([8; 32]);
    let room = secret.id();
    let me = NodeId::from_bytes([200; 32]);
    let cfg = Config::default();
    let mut mesh = Mesh::new(me, cfg.clone());
    let mut m = Model {
        me,
        cfg: cfg.clone(),
        known: BTreeSet::new(),
        sessions: BTreeSet::new(),
        dialing: BTreeSet::new(),
        backoff: HashMap::new(),
        origins: HashMap::new(),
        own: Vec::new(),
        unreachable: HashMap::new(),
    };
    let mut clock = 0u64;
    // Presences already made, to replay.
    let mut made: Vec<(Arc<Presence>, PresenceBody)> = Vec::new();
    let mut own_seq = 0u64;
    for _ in 0..400 {
        let Some(op) = next() else { break };
        let arg = next().unwrap_or(0);
        // Most events now; some stamped in the past.
        let now = if op & 0x80 != 0 {
            clock.saturating_sub(u64::from(arg) * 1000)
        } else {
            clock
        };
        match op % 16 {
            // Learn a member, or a run of them, or itself.
            0 => assert_eq!(mesh.learn(member(arg)), m.known.insert(member(arg))),
            1 => {
                for i in 0..arg % 48 {
                    let p = member(i.wrapping_add(op >> 4));
                    assert_eq!(mesh.learn(p), m.known.insert(p));
                }
            }
            2 => assert!(!mesh.learn(me), "a node learns itself"),
            // A session starts: it sends a digest of the presences this
            // node holds, and answers the peer's with what it lacks.
            3 => {
                let p = member(arg);
                mesh.up(p);
                m.sessions.insert(p);
                m.dialing.remove(&p);
                m.backoff.remove(&p);
                m.unreachable.remove(&p);
                let digest = mesh.digest();
                assert_eq!(digest, m.digest(), "the digest");
                // A peer that knows all this node does lacks nothing; one
                // that knows nothing lacks every chain, this node's first.
                assert!(mesh.missing(p, &digest).is_empty(), "nothing lacking");
                assert_eq!(bodies(&mesh.missing(p, &[])), m.missing(p, &[]));
                // A digest of the peer's, made from the input: heads left
                // out, behind, of another run, or of strangers.
                let mut theirs = Vec::new();
                for (i, h) in digest.iter().enumerate() {
                    match (op >> 4).wrapping_add(i as u8) % 5 {
                        0 => {}
                        1 => theirs.push(PresenceHead {
                            seq: h.seq.saturating_sub(u64::from(arg % 4)),
                            ..*h
                        }),
                        2 => theirs.push(PresenceHead {
                            run: h.run + u64::from(arg % 2),
                            ..*h
                        }),
                        3 => theirs.push(PresenceHead {
                            run: h.run.saturating_sub(1),
                            ..*h
                        }),
                        _ => theirs.push(PresenceHead {
                            origin: member(arg.wrapping_add(i as u8)),
                            ..*h
                        }),
                    }
                }
                assert_eq!(
                    bodies(&mesh.missing(p, &theirs)),
                    m.missing(p, &theirs),
                    "what a peer lacks"
                );
            }
            // A session ends: on purpose (keeps its place in the ring) or
            // with the connection lost (out of the ring for a while).
            4 => {
                let p = member(arg);
                let failed = op & 0x10 != 0;
                mesh.down(p, now, failed);
                if m.sessions.remove(&p) {
                    m.backoff.insert(p, (now + FIRST_BACKOFF, FIRST_BACKOFF));
                    if failed {
                        m.unreachable.insert(p, now + FIRST_BACKOFF);
                    }
                }
            }
            // A dial ends without a session (of a peer dialed or not).
            5 => {
                let p = member(arg);
                let failed = op & 0x10 != 0;
                mesh.dial_ended(p, failed, now);
                m.dialing.remove(&p);
                if failed {
                    let wait = m
                        .backoff
                        .get(&p)
                        .map_or(FIRST_BACKOFF, |(_, w)| (w * 2).min(MAX_BACKOFF));
                    m.backoff.insert(p, (now + wait, wait));
                    m.unreachable.insert(p, now + wait);
                }
            }
            // Dial what the view asks.
            // Dials: of the view, or, with no session at all, of everyone
            // known (view first, then around the ring), more at once.
            6 => {
                let got = mesh.dials(now);
                let mut want = Vec::new();
                let mut candidates: Vec<NodeId> = m.view(now).into_iter().collect();
                let limit = if m.sessions.is_empty() {
                    let ring = m.ring(now);
                    let i = ring.iter().position(|p| *p == me).unwrap_or(0);
                    candidates.extend(ring[i..].iter().chain(&ring[..i]).filter(|p| **p != me));
                    ISOLATED_DIALS
                } else {
                    cfg.max_dials
                };
                for p in candidates {
                    if m.dialing.len() >= limit {
                        break;
                    }
                    if m.sessions.contains(&p)
                        || m.dialing.contains(&p)
                        || m.backoff.get(&p).is_some_and(|(t, _)| *t > now)
                    {
                        continue;
                    }
                    m.dialing.insert(p);
                    want.push(p);
                }
                assert_eq!(got, want, "dials");
                assert!(got.iter().all(|p| m.known.contains(p) && *p != me));
                assert!(m.dialing.len() <= cfg.max_dials.max(ISOLATED_DIALS));
            }
            // A presence: new, a replay, or a forgery.
            7..=10 => {
                let forged = op % 16 == 10;
                let replay = op % 16 == 9 && !made.is_empty();
                let (p, body) = if replay {
                    made[usize::from(arg) % made.len()].clone()
                } else {
                    let origin = usize::from(arg % 4);
                    let seq = u64::from(next().unwrap_or(0) % 24);
                    let run = u64::from(next().unwrap_or(0) % 4);
                    let flags = next().unwrap_or(0);
                    let body = PresenceBody {
                        origin: keys()[origin].public(),
                        member: secret.member_tag(&keys()[origin].public()),
                        run,
                        seq,
                        phase: match flags % 4 {
                            0 => PresencePhase::Leaving,
                            1 => PresencePhase::Gone,
                            _ => PresencePhase::Running,
                        },
                        status: Status {
                            full: flags & 4 != 0,
                            reset: flags & 8 != 0,
                            heartbeat_ms: u32::from(flags >> 4) * 40_000,
                            add: (0..flags % 3).map(|i| Hash::of(&[i])).collect(),
                            remove: Vec::new(),
                        },
                    };
                    let mut bytes = codec::encode(&body).unwrap();
                    let mut signer = &keys()[origin];
                    if forged {
                        match flags % 3 {
                            0 => signer = &keys()[4],
                            1 => {
                                let mut b = body.clone();
                                b.member = other.member_tag(&b.origin);
                                bytes = codec::encode(&b).unwrap();
                            }
                            _ => {}
                        }
                    }
                    let sig = Signature(signer.sign(&presence_message(&room, &bytes)));
                    if forged && flags % 3 == 2 {
                        let i = usize::from(next().unwrap_or(0)) % bytes.len();
                        bytes[i] ^= 1 << (flags % 8);
                    }
                    (Arc::new(Presence { body: bytes, sig }), body)
                };
                let checked = verify_presence(&secret, &room, &p);
                if forged {
                    assert!(checked.is_none(), "a forged presence passed the check");
                    continue;
                }
                assert_eq!(checked.as_ref(), Some(&body), "an honest presence");
                if !replay {
                    made.push((p.clone(), body.clone()));
                }
                let from = (op & 0x10 != 0).then(|| member(next().unwrap_or(0)));
                let heard = mesh.presence(from, p.clone(), &body, now);
                // The model's answer.
                let timeout = cfg
                    .offline_after_ms
                    .max(u64::from(body.status.heartbeat_ms) * 3);
                let known = m.origins.get(&body.origin);
                let old = body.origin == me
                    || known.is_some_and(|o| {
                        !o.chain.is_empty() && (body.run, body.seq) <= (o.run, o.seq)
                    });
                if old {
                    assert_eq!(heard, Heard::Old, "a presence known already taken as new");
                } else {
                    let o = m.origins.entry(body.origin).or_insert(Origin {
                        run: 0,
                        seq: 0,
                        heard: now,
                        timeout,
                        phase: body.phase,
                        chain: Vec::new(),
                        gap: true,
                    });
                    let in_order =
                        !o.chain.is_empty() && body.run == o.run && body.seq == o.seq + 1;
                    let apply = if body.status.reset {
                        o.chain.clear();
                        o.gap = false;
                        Apply::Status(body.status.clone(), body.phase)
                    } else if in_order && !o.gap {
                        Apply::Status(body.status.clone(), body.phase)
                    } else {
                        o.chain.clear();
                        o.gap = true;
                        Apply::Alive(body.phase)
                    };
                    if o.chain.len() >= MAX_CHAIN {
                        o.chain.clear();
                        o.gap = true;
                    }
                    o.chain.push((body.seq, p.body.clone()));
                    (o.run, o.seq, o.heard, o.timeout, o.phase) =
                        (body.run, body.seq, now, timeout, body.phase);
                    let want = Heard::New {
                        forward: m.push_targets(from),
                        apply,
                    };
                    assert_eq!(heard, want, "a new presence");
                    // The same presence again is old.
                    assert_eq!(
                        mesh.presence(None, p, &body, now),
                        Heard::Old,
                        "taken twice"
                    );
                }
            }
            // This node's own presence.
            11 => {
                let reset = op & 0x10 != 0;
                let body = PresenceBody {
                    origin: me,
                    member: secret.member_tag(&me),
                    run: 1,
                    seq: own_seq,
                    phase: PresencePhase::Running,
                    status: Status::default(),
                };
                own_seq += 1;
                let p = Arc::new(Presence {
                    body: codec::encode(&body).unwrap(),
                    sig: Signature([0; 64]),
                });
                assert_eq!(
                    mesh.own(p.clone(), 1, body.seq, reset),
                    m.push_targets(None)
                );
                if reset {
                    m.own.clear();
                }
                if m.own.len() >= MAX_CHAIN {
                    m.own.remove(0);
                }
                m.own.push((body.seq, p.body.clone()));
                // Its own presence, come back, is old.
                assert_eq!(mesh.presence(None, p, &body, now), Heard::Old);
            }
            // Expiry.
            12 => {
                mesh.expire(now);
                m.origins
                    .retain(|_, o| now.saturating_sub(o.heard) < 2 * o.timeout);
            }
            // A sample of the members for a `Peers` message.
            13 => {
                let to = member(arg);
                let n = usize::from(op >> 4);
                let s = mesh.sample(to, n, u64::from(arg));
                let pool: BTreeSet<NodeId> =
                    m.known.iter().filter(|p| **p != to).copied().collect();
                assert_eq!(s.len(), n.min(pool.len()));
                let set: BTreeSet<NodeId> = s.iter().copied().collect();
                assert_eq!(set.len(), s.len(), "a member sampled twice");
                assert!(set.is_subset(&pool));
            }
            // Time passes, a little or a lot.
            _ => {
                clock += if op & 0x10 != 0 {
                    u64::from(arg) * 5000
                } else {
                    u64::from(arg) * 20
                };
            }
        }
        // The mesh agrees with the model.
        let ring = m.ring(now);
        let view = mesh.view(now);
        assert_eq!(view, m.view(now), "the view");
        assert!(!view.contains(&me) && view.is_subset(&m.known));
        let n = ring.len();
        let bound = if n <= cfg.full_mesh + 1 {
            cfg.full_mesh
        } else {
            1 + log2_ceil(n)
        };
        assert!(
            view.len() <= bound,
            "{} sessions wanted in a ring of {n}",
            view.len()
        );
        assert_eq!(mesh.known(), m.known.iter().copied().collect::<Vec<_>>());
        assert_eq!(
            mesh.sessions(),
            m.sessions.iter().copied().collect::<Vec<_>>()
        );
        assert_eq!(mesh.online(now), m.online(now), "who is online");
        for i in 0..4 {
            let id = member(i);
            assert_eq!(mesh.is_online(&id, now), m.online(now).contains(&id));
            let chain = bodies(&mesh.chain(&id));
            assert!(chain.len() <= MAX_CHAIN);
            assert_eq!(
                chain,
                m.origins
                    .get(&id)
                    .map(|o| o.chain.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>())
                    .unwrap_or_default()
            );
        }
        let surplus = mesh.surplus(now);
        let limit = 2 * view.len().max(cfg.full_mesh);
        if m.sessions.len() <= limit {
            assert!(surplus.is_empty(), "sessions ended within the bound");
        } else {
            assert!(
                m.sessions.len() - surplus.len() >= limit,
                "too many sessions ended"
            );
        }
        for p in &surplus {
            assert!(
                m.sessions.contains(p) && !view.contains(p),
                "a needed session ended"
            );
            assert!(
                !m.fingers(*p, &ring).contains(&me),
                "a session the other side needs ended"
            );
        }
        assert_eq!(mesh.push_targets(None), m.push_targets(None));
    }
    // Presence periods grow with the room, never below the heartbeat.
    let hb = u64::from(data.first().copied().unwrap_or(1)) * 100;
    let mut last = 0;
    for members in [1, 32, 33, 64, 65, 1000] {
        let p = presence_period(hb, members);
        assert!(p >= hb && p >= last);
        last = p;
    }
});
