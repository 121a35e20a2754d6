//! Replication planning (`replica::peers` and `replica::plan`, what each
//! member pins, fetches and lets go of) in a room of up to five members
//! driven by the input: files published, members going offline and coming
//! back, filling up and freeing space, leaving and saying goodbye, losing
//! copies, keeping files at the user's request, the policy changing, time
//! passing, and statuses that lie (any holdings, any heartbeat, resets or
//! not) told to any member. Each member plans from what it heard, as the
//! runtime does (the replicas online, candidates once admitted, stable
//! once the candidates stood still for two seconds, urgent for new files
//! and those of departing members), and carries the plan out.
//!
//! Checked for every plan: the responsible members are the author (when
//! a candidate) and the highest-scoring candidates, exactly N of those
//! eligible (all of them under `copies=full`), never a member at its cap
//! that lacks the file, never one offline, leaving or not yet admitted;
//! a file is pinned exactly when this member is newly responsible;
//! fetched only when not held, only from members that said they hold it
//! (so never from an offline one), only when this member is responsible
//! (and the view stable, or the file urgent and short of copies) or keeps
//! it, never twice; let go of only when stable, not responsible, and every
//! responsible member said it holds it; the same plan whatever the order
//! the replicas are taken in. And once everyone is back, honest and
//! stable, the room converges: every file that still has a copy is held
//! by exactly its responsible members (plus those keeping it), and
//! nothing more is planned.
#![no_main]

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    time::{Duration, Instant},
};

use libfuzzer_sys::fuzz_target;
use p2pfs_proto::{
    Hash, NodeId,
    room::{Copies, Status},
};
use p2pfs_swarm::fuzzing::replica::{File, Held, Inputs, PeerView, Peers, Plan};

const OFFLINE_AFTER: Duration = Duration::from_secs(10);
const HEARTBEAT_MS: u32 = 1000;
/// How long the candidates stand still before the view is stable.
const SETTLE: Duration = Duration::from_secs(2);

fn id(i: usize) -> NodeId {
    NodeId::from_bytes(*Hash::of(&[i as u8]).as_bytes())
}

fn score(id: &NodeId, hash: &Hash) -> [u8; 32] {
    let mut m = [0u8; 64];
    m[..32].copy_from_slice(hash.as_bytes());
    m[32..].copy_from_slice(id.as_bytes());
    *Hash::of(&m).as_bytes()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Leaving,
    Gone,
}

#[derive(Debug)]
struct Member {
    id: NodeId,
    online: bool,
    full: bool,
    phase: Phase,
    local: HashMap<Hash, Held>,
    peers: Peers,
    view: Vec<(NodeId, bool)>,
    view_since: Instant,
}

impl Member {
    /// What it keeps (its status says so).
    fn holds(&self) -> Vec<Hash> {
        let mut v: Vec<Hash> = self
            .local
            .iter()
            .filter(|(_, h)| h.complete && (h.keep_pin || h.room_pin))
            .map(|(k, _)| *k)
            .collect();
        v.sort();
        v
    }

    fn status(&self) -> Status {
        Status {
            full: self.full,
            // A new session starts with a reset; a leaving member's
            // statuses are heartbeats on the same session.
            reset: self.phase == Phase::Running,
            heartbeat_ms: HEARTBEAT_MS,
            add: self.holds(),
            remove: Vec::new(),
        }
    }
}

struct Room {
    members: Vec<Member>,
    files: Vec<File>,
    policy: Copies,
    fresh: HashMap<Hash, Instant>,
    now: Instant,
}

impl Room {
    /// Member `i` tells every other member online its status.
    fn announce(&mut self, i: usize) {
        if !self.members[i].online || self.members[i].phase == Phase::Gone {
            return;
        }
        let (from, status, leaving) = (
            self.members[i].id,
            self.members[i].status(),
            self.members[i].phase == Phase::Leaving,
        );
        let now = self.now;
        for (j, m) in self.members.iter_mut().enumerate() {
            if j != i && m.online {
                m.peers.heard(from, status.clone(), now, OFFLINE_AFTER);
                if leaving {
                    m.peers.leaving(from);
                }
            }
        }
    }

    /// The members responsible for `file` from the true state (everyone
    /// online, running and admitted, what each keeps known).
    fn truly_responsible(&self, file: &File) -> Vec<NodeId> {
        let eligible: Vec<NodeId> = self
            .members
            .iter()
            .filter(|m| !m.full || m.holds().contains(&file.hash))
            .map(|m| m.id)
            .collect();
        expected(&eligible, file, self.policy)
    }

    /// Member `i` plans, the plan is checked, and carried out; whether
    /// its view was stable.
    fn pass(&mut self, i: usize, seed: u64) -> (Plan, bool) {
        let now = self.now;
        let policy = self.policy;
        let files = self.files.clone();
        let m = &mut self.members[i];
        if !m.online {
            return (Plan::default(), false);
        }
        let views = m.peers.for_plan(m.id, now);
        let mut view: Vec<(NodeId, bool)> = views
            .iter()
            .filter(|v| v.candidate)
            .map(|v| (v.id, v.full))
            .chain(std::iter::once((m.id, m.full)))
            .collect();
        view.sort();
        if view != m.view {
            m.view = view;
            m.view_since = now;
        }
        let stable = now.saturating_duration_since(m.view_since) >= SETTLE;
        let mut urgent: HashSet<Hash> = self
            .fresh
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(**t) < OFFLINE_AFTER)
            .map(|(h, _)| *h)
            .collect();
        urgent.extend(m.peers.departing_holds(now, OFFLINE_AFTER));
        let input = Inputs {
            me: m.id,
            me_full: m.full,
            policy,
            files: &files,
            local: &m.local,
            stable,
            urgent: &urgent,
        };
        let plan = m.peers.plan(now, &input, 0);
        check(&m.peers, now, &input, &views, &plan);
        // The same plan whatever the order of the replicas.
        let mut again = m.peers.plan(now, &input, seed | 1);
        for (a, b) in again.fetch.iter_mut().zip(&plan.fetch) {
            a.holders.sort();
            let mut h = b.holders.clone();
            h.sort();
            assert_eq!(a.holders, h, "holders depend on the order");
            a.holders = b.holders.clone();
        }
        assert_eq!(again, plan, "the plan depends on the order of the replicas");
        // Carried out: stopping takes on nothing new and lets nothing go.
        let running = m.phase == Phase::Running;
        for h in &plan.pin {
            m.local.entry(*h).or_default().room_pin = true;
        }
        let fetched: Vec<(Hash, Vec<NodeId>, u64)> = if running {
            plan.fetch
                .iter()
                .map(|f| (f.file.hash, f.holders.clone(), f.file.size))
                .collect()
        } else {
            Vec::new()
        };
        if running {
            for h in &plan.release {
                let l = m.local.entry(*h).or_default();
                l.room_pin = false;
                if !l.keep_pin {
                    // Collected.
                    l.complete = false;
                    l.present = 0;
                }
            }
        }
        // A fetch works if a holder it was given really has the file.
        for (h, holders, size) in fetched {
            let ok = self.members.iter().any(|o| {
                o.online && holders.contains(&o.id) && o.local.get(&h).is_some_and(|l| l.complete)
            });
            if ok {
                let l = self.members[i].local.entry(h).or_default();
                l.complete = true;
                l.present = size;
            }
        }
        self.announce(i);
        (plan, stable)
    }
}

/// The responsible members among `eligible` (by the documented rule).
fn expected(eligible: &[NodeId], file: &File, policy: Copies) -> Vec<NodeId> {
    let mut e: Vec<NodeId> = eligible.to_vec();
    e.sort();
    e.dedup();
    let mut out = match policy {
        Copies::Full => e,
        Copies::Min(n) => {
            let n = usize::from(n);
            let mut out = Vec::new();
            if n > 0 && e.contains(&file.author) {
                out.push(file.author);
            }
            let mut rest: Vec<NodeId> = e.into_iter().filter(|x| *x != file.author).collect();
            rest.sort_by_key(|x| std::cmp::Reverse(score(x, &file.hash)));
            out.extend(rest.into_iter().take(n.saturating_sub(out.len())));
            out
        }
    };
    out.sort();
    out
}

/// One plan against its inputs.
fn check(peers: &Peers, now: Instant, input: &Inputs<'_>, views: &[PeerView], plan: &Plan) {
    let mut fetched = BTreeSet::new();
    for f in &plan.fetch {
        assert!(fetched.insert(f.file.hash), "a file fetched twice");
    }
    for file in input.files {
        let held = input.local.get(&file.hash).copied().unwrap_or_default();
        let resp = peers.responsible(now, input, file);
        // Who may hold it: this member, and the candidates online, unless
        // at their cap without it.
        let mut eligible = Vec::new();
        if !input.me_full || held.complete {
            eligible.push(input.me);
        }
        for v in views.iter().filter(|v| v.candidate) {
            assert!(!v.leaving, "a leaving member is a candidate");
            if !v.full || v.holds.contains(&file.hash) {
                eligible.push(v.id);
            }
        }
        assert_eq!(
            resp,
            expected(&eligible, file, input.policy),
            "who is responsible"
        );
        let mine = resp.contains(&input.me);
        let holders: BTreeSet<NodeId> = views
            .iter()
            .filter(|v| v.holds.contains(&file.hash))
            .map(|v| v.id)
            .collect();
        assert_eq!(
            plan.pin.contains(&file.hash),
            mine && !held.room_pin,
            "pinned {}: mine {mine}, pinned already {}",
            file.hash,
            held.room_pin
        );
        let staying = views
            .iter()
            .filter(|v| !v.leaving && v.holds.contains(&file.hash))
            .count();
        let urgent =
            input.urgent.contains(&file.hash) && staying + usize::from(held.complete) < resp.len();
        let want_fetch = ((mine && (input.stable || urgent)) || held.keep_pin)
            && !held.complete
            && !holders.is_empty();
        match plan.fetch.iter().find(|f| f.file.hash == file.hash) {
            Some(f) => {
                assert!(want_fetch, "fetched {}: not needed", file.hash);
                assert_eq!(f.file, *file);
                let given: BTreeSet<NodeId> = f.holders.iter().copied().collect();
                assert_eq!(given, holders, "fetched from members that do not hold it");
                assert_eq!(f.missing, file.size.saturating_sub(held.present));
                assert_eq!(f.kept, held.keep_pin);
            }
            None => assert!(!want_fetch, "not fetched {}: needed", file.hash),
        }
        let all_hold = !resp.is_empty()
            && resp.iter().all(|r| {
                views
                    .iter()
                    .any(|v| v.id == *r && v.holds.contains(&file.hash))
            });
        assert_eq!(
            plan.release.contains(&file.hash),
            !mine && held.room_pin && input.stable && all_hold,
            "let go of {}",
            file.hash
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.iter().copied();
    let mut next = || bytes.next();
    let start = Instant::now();
    let n = usize::from(next().unwrap_or(3)) % 5 + 1;
    let mut room = Room {
        members: (0..n)
            .map(|i| Member {
                id: id(i),
                online: true,
                full: false,
                phase: Phase::Running,
                local: HashMap::new(),
                peers: Peers::default(),
                view: Vec::new(),
                view_since: start,
            })
            .collect(),
        files: Vec::new(),
        policy: Copies::Min(2),
        fresh: HashMap::new(),
        now: start,
    };
    for i in 0..n {
        room.announce(i);
    }
    let mut published = 0u32;
    for _ in 0..300 {
        let Some(op) = next() else { break };
        let arg = next().unwrap_or(0);
        let i = usize::from(arg) % n;
        match op % 12 {
            // A file published by a member online.
            0 if room.files.len() < 24 && room.members[i].online => {
                published += 1;
                let hash = Hash::of(&published.to_le_bytes());
                let size = u64::from(op) * 1000;
                room.files.push(File {
                    hash,
                    size,
                    author: room.members[i].id,
                });
                room.members[i].local.insert(
                    hash,
                    Held {
                        complete: true,
                        present: size,
                        room_pin: true,
                        keep_pin: false,
                    },
                );
                room.fresh.insert(hash, room.now);
                room.announce(i);
            }
            // Offline, or back (a new session: a reset status).
            1 => {
                let m = &mut room.members[i];
                m.online = !m.online;
                if m.online {
                    m.phase = Phase::Running;
                    room.announce(i);
                }
            }
            // At its storage cap, or not.
            2 => {
                room.members[i].full = op & 0x10 != 0;
                room.announce(i);
            }
            // Leaving, then gone.
            3 => {
                let m = &mut room.members[i];
                m.phase = match m.phase {
                    Phase::Running => Phase::Leaving,
                    _ => Phase::Gone,
                };
                let (from, gone, now) = (m.id, m.phase == Phase::Gone, room.now);
                room.announce(i);
                if gone {
                    for m in room.members.iter_mut().filter(|m| m.online) {
                        m.peers.goodbye(from, now);
                    }
                    room.members[i].online = false;
                }
            }
            // A copy lost.
            4 => {
                if let Some(f) = room
                    .files
                    .get(usize::from(op >> 4) % room.files.len().max(1))
                {
                    let h = f.hash;
                    if let Some(l) = room.members[i].local.get_mut(&h) {
                        l.complete = false;
                        l.present = 0;
                    }
                    room.announce(i);
                }
            }
            // Kept at the user's request, or not.
            5 => {
                if let Some(f) = room
                    .files
                    .get(usize::from(op >> 4) % room.files.len().max(1))
                {
                    let h = f.hash;
                    room.members[i].local.entry(h).or_default().keep_pin = op & 8 != 0;
                }
            }
            // A lying status, told to one member.
            6 => {
                let to = usize::from(op >> 4) % n;
                let mut add = Vec::new();
                for k in 0..next().unwrap_or(0) % 6 {
                    let pick = usize::from(next().unwrap_or(k));
                    add.push(match room.files.get(pick % (room.files.len() + 1)) {
                        Some(f) => f.hash,
                        None => Hash::of(&[k]),
                    });
                }
                let flags = next().unwrap_or(0);
                let status = Status {
                    full: flags & 1 != 0,
                    reset: flags & 2 != 0,
                    heartbeat_ms: u32::from(flags >> 2) * 500,
                    remove: add.split_off(add.len() / 2),
                    add,
                };
                if to != i {
                    let (from, now) = (room.members[i].id, room.now);
                    room.members[to]
                        .peers
                        .heard(from, status, now, OFFLINE_AFTER);
                }
            }
            // The policy changes.
            7 => {
                room.policy = match arg % 6 {
                    0 => Copies::Full,
                    k => Copies::Min(k),
                };
            }
            // Time passes; heartbeats.
            8 => room.now += Duration::from_millis(u64::from(arg) * 50),
            9 => {
                for j in 0..n {
                    room.announce(j);
                }
            }
            // Plans.
            _ => {
                room.pass(i, u64::from(op));
            }
        }
    }
    // Everyone back, running, honest; time for every member to be
    // admitted, then passes until every view is stable and nothing moves.
    let had_copy: Vec<File> = room
        .files
        .iter()
        .filter(|f| room.members.iter().any(|m| m.holds().contains(&f.hash)))
        .copied()
        .collect();
    for m in &mut room.members {
        m.online = true;
        m.phase = Phase::Running;
    }
    // (A member back after being offline is a candidate once its timeout
    // passed again: up to three of the slowest heartbeat a lie can set.)
    for _ in 0..20 {
        room.now += Duration::from_secs(6);
        for j in 0..n {
            room.announce(j);
        }
    }
    let mut quiet = false;
    for round in 0..12 {
        room.now += Duration::from_secs(3);
        for j in 0..n {
            room.announce(j);
        }
        let mut moved = false;
        for j in 0..n {
            let (p, stable) = room.pass(j, round);
            moved |= !stable || !(p.pin.is_empty() && p.fetch.is_empty() && p.release.is_empty());
        }
        if !moved {
            quiet = true;
            break;
        }
    }
    assert!(quiet, "the plans never settle");
    for f in &had_copy {
        let resp = room.truly_responsible(f);
        for m in &room.members {
            let l = m.local.get(&f.hash).copied().unwrap_or_default();
            let keeps = l.complete && (l.room_pin || l.keep_pin);
            if resp.contains(&m.id) {
                assert!(keeps, "a responsible member lacks {}", f.hash);
            } else {
                assert!(
                    !l.room_pin,
                    "a copy of {} kept for the room needlessly",
                    f.hash
                );
            }
        }
    }
});
