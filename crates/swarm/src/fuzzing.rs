//! Entry points for the fuzz targets (`fuzz/`), feature `fuzzing`: thin
//! public wrappers of internals that have no public API, so that a fuzz
//! target drives the very code a node runs. Not in what users install;
//! nothing but `fuzz/` may use it, and it promises no stability.
//!
//! - [`mesh`]: a room's mesh (`room::mesh`) and the check of a presence
//!   received (`room::sync`).
//! - [`session`]: one room session's protocol rules (`room::session`).
//! - [`room`]: signing, verifying and taking in room entries
//!   (`room::entry`, `room::log`), the moderation state they make
//!   (`room::moderation`), key wraps (`room::wrap`), reading a room's
//!   export (`room::bundle`).
//! - [`replica`]: the statuses heard (`replica::peers`) and the plan made
//!   from them (`replica::plan`).
//! - [`transfer`]: what a provider sends for a request, and what a
//!   requester accepts (`transfer::provider`, `transfer::request`).
//! - [`relay`]: the addresses a relay passes on in a hole punch
//!   (`relay::serve`).

/// One room session's protocol rules; see `room::session`.
pub mod session {
    use p2pfs_proto::room::SyncMsg;

    use crate::room::session as s;

    /// Entries and presences that may fail verification before the session
    /// ends.
    pub const MAX_INVALID: usize = s::MAX_INVALID;
    /// The least time between two `Have`s sent for entries waiting for
    /// parents.
    pub const RESYNC_EVERY_MS: u64 = s::RESYNC_EVERY_MS;

    /// What the session asks the driver, by kind.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Act {
        SendHave,
        SendPeers,
        SendDigest,
        /// Answer a `Have` of this many authors.
        Answer(usize),
        /// Take in this many entries.
        TakeIn(usize),
        Synced,
        Learn,
        Status,
        Leaving,
        Goodbye,
        Presence,
        AnswerDigest,
        Close,
    }

    fn acts(actions: Vec<s::Action>) -> Vec<Act> {
        actions
            .into_iter()
            .map(|a| match a {
                s::Action::SendHave => Act::SendHave,
                s::Action::SendPeers => Act::SendPeers,
                s::Action::SendDigest => Act::SendDigest,
                s::Action::Answer(h) => Act::Answer(h.len()),
                s::Action::TakeIn(l) => Act::TakeIn(l.len()),
                s::Action::Synced => Act::Synced,
                s::Action::Learn(_) => Act::Learn,
                s::Action::Status(_) => Act::Status,
                s::Action::Leaving => Act::Leaving,
                s::Action::Goodbye => Act::Goodbye,
                s::Action::Presence(_) => Act::Presence,
                s::Action::AnswerDigest(_) => Act::AnswerDigest,
                s::Action::Close(_) => Act::Close,
            })
            .collect()
    }

    /// A session.
    #[derive(Debug)]
    pub struct Session(s::Session);

    impl Session {
        /// A session starting at `now_ms`, and its first actions.
        pub fn start(now_ms: u64) -> (Self, Vec<Act>) {
            let (session, first) = s::Session::start(now_ms);
            (Self(session), acts(first))
        }

        /// The peer sent `msg`.
        pub fn received(&mut self, msg: SyncMsg, now_ms: u64) -> Vec<Act> {
            acts(self.0.on(s::Event::Received(msg), now_ms))
        }

        /// Entries were taken in.
        pub fn taken_in(&mut self, bad: usize, waiting: bool, now_ms: u64) -> Vec<Act> {
            acts(self.0.on(s::Event::TakenIn { bad, waiting }, now_ms))
        }

        /// A presence was checked.
        pub fn presence_checked(&mut self, valid: bool, now_ms: u64) -> Vec<Act> {
            acts(self.0.on(s::Event::PresenceChecked { valid }, now_ms))
        }
    }
}

/// A room's mesh; see `room::mesh`.
pub mod mesh {
    use std::{collections::BTreeSet, sync::Arc};

    use p2pfs_proto::{
        NodeId, RoomId, RoomSecret,
        room::{Presence, PresenceBody, PresenceHead, PresencePhase, Status},
    };

    use crate::room::mesh as m;

    /// A replica starts a new chain of presences at least this often.
    pub const RESET_EVERY: u64 = m::RESET_EVERY;
    /// Most presences kept in one replica's chain.
    pub const MAX_CHAIN: usize = m::MAX_CHAIN;
    /// Most replicas whose presences are remembered.
    pub const MAX_ORIGINS: usize = m::MAX_ORIGINS;
    /// Dials in flight at most for a node with no session.
    pub const ISOLATED_DIALS: usize = m::ISOLATED_DIALS;

    /// How a node meshes (`room::mesh::Config`).
    #[derive(Debug, Clone)]
    pub struct Config {
        /// Up to this many other members, keep a session with each.
        pub full_mesh: usize,
        /// Dials in progress at once.
        pub max_dials: usize,
        /// A replica not heard from for this long is offline.
        pub offline_after_ms: u64,
    }

    impl Default for Config {
        fn default() -> Self {
            let c = m::Config::default();
            Self {
                full_mesh: c.full_mesh,
                max_dials: c.max_dials,
                offline_after_ms: c.offline_after_ms,
            }
        }
    }

    /// A received presence, taken in.
    #[derive(Debug, PartialEq)]
    pub enum Heard {
        /// Known already (or this node's own).
        Old,
        /// New: forward it to `forward`, and apply it.
        New {
            /// The sessions to forward it to.
            forward: Vec<NodeId>,
            /// What it tells of the replica.
            apply: Apply,
        },
    }

    /// What a new presence tells of its replica.
    #[derive(Debug, PartialEq)]
    pub enum Apply {
        /// Its status, in order after what was known (or a reset).
        Status(Status, PresencePhase),
        /// That it lives, and its phase (a presence was missed).
        Alive(PresencePhase),
    }

    /// A room's mesh.
    #[derive(Debug)]
    pub struct Mesh(m::Mesh);

    impl Mesh {
        /// The mesh of node `me`.
        pub fn new(me: NodeId, config: Config) -> Self {
            Self(m::Mesh::new(
                me,
                m::Config {
                    full_mesh: config.full_mesh,
                    max_dials: config.max_dials,
                    offline_after_ms: config.offline_after_ms,
                },
            ))
        }

        /// A member with a known address; true if it is new.
        pub fn learn(&mut self, peer: NodeId) -> bool {
            self.0.learn(peer)
        }

        /// The members with a known address.
        pub fn known(&self) -> Vec<NodeId> {
            self.0.known().copied().collect()
        }

        /// The members with a session.
        pub fn sessions(&self) -> Vec<NodeId> {
            self.0.sessions().copied().collect()
        }

        /// A session with `peer` started.
        pub fn up(&mut self, peer: NodeId) {
            self.0.up(peer)
        }

        /// The newest presence held of each replica, for a new session.
        pub fn digest(&self) -> Vec<PresenceHead> {
            self.0.digest()
        }

        /// The presences `peer` lacks, from its digest.
        pub fn missing(&self, peer: NodeId, heads: &[PresenceHead]) -> Vec<Arc<Presence>> {
            self.0.missing(peer, heads)
        }

        /// The session with `peer` ended (`failed`: the connection was
        /// lost).
        pub fn down(&mut self, peer: NodeId, now: u64, failed: bool) {
            self.0.down(peer, now, failed)
        }

        /// A dial of `peer` ended without a session.
        pub fn dial_ended(&mut self, peer: NodeId, failed: bool, now: u64) {
            self.0.dial_ended(peer, failed, now)
        }

        /// The members this node keeps sessions with.
        pub fn view(&self, now: u64) -> BTreeSet<NodeId> {
            self.0.view(now)
        }

        /// The members to dial now.
        pub fn dials(&mut self, now: u64) -> Vec<NodeId> {
            self.0.dials(now)
        }

        /// Sessions to end.
        pub fn surplus(&self, now: u64) -> Vec<NodeId> {
            self.0.surplus(now)
        }

        /// Where to push what came from `from`.
        pub fn push_targets(&self, from: Option<NodeId>) -> Vec<NodeId> {
            self.0.push_targets(from)
        }

        /// This node's own presence (`run`, `seq`), made; where to send it.
        pub fn own(&mut self, p: Arc<Presence>, run: u64, seq: u64, reset: bool) -> Vec<NodeId> {
            self.0.own(p, run, seq, reset)
        }

        /// Takes in a verified presence from the session of `from`.
        pub fn presence(
            &mut self,
            from: Option<NodeId>,
            p: Arc<Presence>,
            body: &PresenceBody,
            now: u64,
        ) -> Heard {
            match self.0.presence(from, p, body, now) {
                m::Heard::Old => Heard::Old,
                m::Heard::New { forward, apply } => Heard::New {
                    forward,
                    apply: match apply {
                        m::Apply::Status(s, ph) => Apply::Status(s, ph),
                        m::Apply::Alive(ph) => Apply::Alive(ph),
                    },
                },
            }
        }

        /// The presences of `origin` known, in order.
        pub fn chain(&self, origin: &NodeId) -> Vec<Arc<Presence>> {
            self.0.chain(origin)
        }

        /// The members online.
        pub fn online(&self, now: u64) -> BTreeSet<NodeId> {
            self.0.online(now)
        }

        /// Whether `peer` is online.
        pub fn is_online(&self, peer: &NodeId, now: u64) -> bool {
            self.0.is_online(peer, now)
        }

        /// Forgets replicas silent for twice their timeout.
        pub fn expire(&mut self, now: u64) {
            self.0.expire(now)
        }

        /// Up to `n` known members other than `to`.
        pub fn sample(&self, to: NodeId, n: usize, seed: u64) -> Vec<NodeId> {
            self.0.sample(to, n, seed)
        }
    }

    /// How often a replica in a room of `members` sends its presence.
    pub fn presence_period(heartbeat_ms: u64, members: usize) -> u64 {
        m::presence_period(heartbeat_ms, members)
    }

    /// The body of a presence received in the room of `secret`, if it
    /// verifies (what a session does before the mesh sees it).
    pub fn verify_presence(
        secret: &RoomSecret,
        room: &RoomId,
        p: &Presence,
    ) -> Option<PresenceBody> {
        crate::room::sync::verify_presence(secret, room, p)
    }
}

/// Room entries; see `room::entry` and `room::log`.
pub mod room {
    use p2pfs_proto::{
        Hash, RoomId, RoomSecret,
        room::{EntryBody, EntryError, Op},
    };
    use p2pfs_store::{Store, StoreError};

    use crate::{
        identity::SecretKey,
        room::{entry, log},
    };

    /// An entry whose bounds, membership tag and signature were checked.
    #[derive(Debug, Clone)]
    pub struct Verified(entry::Verified);

    impl Verified {
        /// Its hash in the room.
        pub fn hash(&self) -> Hash {
            self.0.hash
        }

        /// What it says.
        pub fn body(&self) -> &EntryBody {
            &self.0.body
        }

        /// Its encoding, as stored and sent.
        pub fn bytes(&self) -> &[u8] {
            &self.0.bytes
        }
    }

    /// Writes and signs an entry by `key`.
    pub fn sign(
        key: &SecretKey,
        secret: &RoomSecret,
        seq: u64,
        parents: Vec<Hash>,
        time: u64,
        op: Op,
    ) -> Result<Verified, EntryError> {
        entry::sign(key, secret, seq, parents, time, op).map(Verified)
    }

    /// Checks an encoded entry received for the room of `secret`.
    pub fn verify(secret: &RoomSecret, bytes: Vec<u8>) -> Result<Verified, EntryError> {
        entry::verify(secret, &secret.id(), bytes).map(Verified)
    }

    /// What became of a batch of entries.
    #[derive(Debug, Default)]
    pub struct Accepted {
        /// Entries new to the log, in the order they were added.
        pub new: Vec<Verified>,
        /// Entries waiting for their parents.
        pub pending: Vec<Verified>,
        /// Entries refused, and why.
        pub rejected: Vec<(Hash, String)>,
    }

    /// The moderation state of `room`'s views (roles, epochs, removals).
    pub fn moderation(
        store: &Store,
        room: &RoomId,
    ) -> Result<crate::room::moderation::Moderation, StoreError> {
        match store.room_view_get(room, crate::room::view::MODERATION)? {
            Some(b) => p2pfs_proto::codec::decode(&b)
                .map_err(|e| StoreError::Corrupt(format!("moderation view: {e}"))),
            None => Ok(Default::default()),
        }
    }

    /// Seals an epoch key for `member` (the key wrap of an epoch entry).
    pub fn seal(
        room: &RoomId,
        member: &p2pfs_proto::NodeId,
        key: &[u8; 32],
    ) -> Option<p2pfs_proto::moderation::Wrap> {
        crate::room::wrap::seal(room, member, key).ok()
    }

    /// Reads a room export from `bytes` into `store` as `room import`
    /// does before it merges (every entry and blob verified); the number
    /// of entries it holds. A refused export leaves nothing in the store.
    pub fn read_room_export(store: &Store, bytes: &[u8]) -> Result<usize, String> {
        crate::room::bundle::read(store, bytes, &[], None)
            .map(|p| p.entries.len())
            .map_err(|e| e.to_string())
    }

    /// Adds checked entries to `room`'s log, each once its parents are in.
    pub fn accept(
        store: &Store,
        room: &RoomId,
        entries: Vec<Verified>,
    ) -> Result<Accepted, StoreError> {
        let a = log::accept(store, room, entries.into_iter().map(|v| v.0).collect())?;
        if a.cut_applied {
            // (As the room's log task does.)
            log::rebuild_after_cut(store, room)?;
        }
        Ok(Accepted {
            new: a.new.into_iter().map(Verified).collect(),
            pending: a.pending.into_iter().map(Verified).collect(),
            rejected: a.rejected,
        })
    }
}

/// Replication; see `replica::peers` and `replica::plan`.
pub mod replica {
    use std::{
        collections::{HashMap, HashSet},
        time::{Duration, Instant},
    };

    use p2pfs_proto::{
        Hash, NodeId,
        room::{Copies, Status},
    };

    use crate::replica::{peers, plan as p};

    /// A blob the room's tree shows.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct File {
        /// Its hash.
        pub hash: Hash,
        /// Its size.
        pub size: u64,
        /// Who put it.
        pub author: NodeId,
    }

    /// What this member has of a blob.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct Held {
        /// Every byte is here.
        pub complete: bool,
        /// Bytes present.
        pub present: u64,
        /// Pinned for the room.
        pub room_pin: bool,
        /// Pinned at the user's request.
        pub keep_pin: bool,
    }

    /// A replica as a plan sees it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct PeerView {
        /// Its id.
        pub id: NodeId,
        /// At its storage cap.
        pub full: bool,
        /// Said it is leaving.
        pub leaving: bool,
        /// What it said it holds.
        pub holds: HashSet<Hash>,
        /// A candidate for placement.
        pub candidate: bool,
    }

    /// A blob to fetch.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Fetch {
        /// The blob.
        pub file: File,
        /// Bytes still missing.
        pub missing: u64,
        /// Online replicas that hold it.
        pub holders: Vec<NodeId>,
        /// Kept at the user's request.
        pub kept: bool,
    }

    /// What to do.
    #[derive(Debug, Default, PartialEq, Eq)]
    pub struct Plan {
        /// Pin for the room.
        pub pin: Vec<Hash>,
        /// Fetch.
        pub fetch: Vec<Fetch>,
        /// Unpin for the room.
        pub release: Vec<Hash>,
    }

    /// Everything a plan depends on besides the replicas heard.
    #[derive(Debug, Clone, Copy)]
    pub struct Inputs<'a> {
        /// This member.
        pub me: NodeId,
        /// This member is at its storage cap.
        pub me_full: bool,
        /// The room's policy.
        pub policy: Copies,
        /// The room's files.
        pub files: &'a [File],
        /// What this member has of them.
        pub local: &'a HashMap<Hash, Held>,
        /// The candidates have not changed for a while.
        pub stable: bool,
        /// Blobs whose first copies are made at once.
        pub urgent: &'a HashSet<Hash>,
    }

    /// The replicas of a room, as statuses told of them.
    #[derive(Debug, Default)]
    pub struct Peers(peers::Peers);

    impl Peers {
        /// A status from `peer` heard at `now`; whether placement changed.
        pub fn heard(
            &mut self,
            peer: NodeId,
            s: Status,
            now: Instant,
            offline_after: Duration,
        ) -> bool {
            self.0.heard(peer, s, now, offline_after)
        }

        /// `peer` said it is leaving.
        pub fn leaving(&mut self, peer: NodeId) -> bool {
            self.0.leaving(peer)
        }

        /// `peer` said goodbye at `now`.
        pub fn goodbye(&mut self, peer: NodeId, now: Instant) -> bool {
            self.0.goodbye(peer, now)
        }

        /// The replicas online at `now`.
        pub fn online(&self, now: Instant) -> Vec<NodeId> {
            self.0.online(now).map(|(id, _)| *id).collect()
        }

        /// The blobs of replicas departing (urgent to copy again).
        pub fn departing_holds(&self, now: Instant, within: Duration) -> HashSet<Hash> {
            self.0
                .all()
                .filter(|(_, p)| p.departing(now, within))
                .flat_map(|(_, p)| p.holds.iter().copied())
                .collect()
        }

        /// The replicas a plan of `me` at `now` takes, as it sees them.
        pub fn for_plan(&self, me: NodeId, now: Instant) -> Vec<PeerView> {
            self.0
                .for_plan(me, now)
                .into_iter()
                .map(|(id, p, candidate)| PeerView {
                    id,
                    full: p.full,
                    leaving: p.leaving,
                    holds: p.holds.clone(),
                    candidate,
                })
                .collect()
        }

        /// The plan of `input` with the replicas online at `now`, taken
        /// in an order shuffled by `seed` (0: as they come).
        pub fn plan(&self, now: Instant, input: &Inputs<'_>, seed: u64) -> Plan {
            let mut list = self.0.for_plan(input.me, now);
            if seed != 0 {
                fastrand::Rng::with_seed(seed).shuffle(&mut list);
            }
            let files: Vec<p::File> = input.files.iter().map(to_file).collect();
            let local: HashMap<Hash, p::Held> =
                input.local.iter().map(|(h, l)| (*h, to_held(l))).collect();
            let plan = p::plan(&p::Inputs {
                me: input.me,
                me_full: input.me_full,
                policy: input.policy,
                files: &files,
                local: &local,
                peers: &list,
                stable: input.stable,
                urgent: input.urgent,
            });
            Plan {
                pin: plan.pin,
                fetch: plan
                    .fetch
                    .into_iter()
                    .map(|f| Fetch {
                        file: File {
                            hash: f.file.hash,
                            size: f.file.size,
                            author: f.file.author,
                        },
                        missing: f.missing,
                        holders: f.holders,
                        kept: f.kept,
                    })
                    .collect(),
                release: plan.release,
            }
        }

        /// The members responsible for `file` in the plan of `input` at
        /// `now`, sorted by id.
        pub fn responsible(&self, now: Instant, input: &Inputs<'_>, file: &File) -> Vec<NodeId> {
            let list = self.0.for_plan(input.me, now);
            let files: Vec<p::File> = input.files.iter().map(to_file).collect();
            let local: HashMap<Hash, p::Held> =
                input.local.iter().map(|(h, l)| (*h, to_held(l))).collect();
            p::responsible_for(
                &p::Inputs {
                    me: input.me,
                    me_full: input.me_full,
                    policy: input.policy,
                    files: &files,
                    local: &local,
                    peers: &list,
                    stable: input.stable,
                    urgent: input.urgent,
                },
                &to_file(file),
            )
        }
    }

    fn to_file(f: &File) -> p::File {
        p::File {
            hash: f.hash,
            size: f.size,
            author: f.author,
        }
    }

    fn to_held(h: &Held) -> p::Held {
        p::Held {
            complete: h.complete,
            present: h.present,
            room_pin: h.room_pin,
            keep_pin: h.keep_pin,
        }
    }
}

/// The blob protocol's ranges; see `transfer`.
pub mod transfer {
    use p2pfs_proto::RangeSpec;
    use p2pfs_store::ChunkRanges;

    /// Wire ranges as the store's.
    pub fn to_chunks(spec: &RangeSpec) -> ChunkRanges {
        crate::transfer::to_chunks(spec)
    }

    /// The store's ranges as wire ranges.
    pub fn to_spec(ranges: &ChunkRanges) -> RangeSpec {
        crate::transfer::to_spec(ranges)
    }

    /// What a provider sends for a request of `ranges` of a blob of
    /// `size` bytes of which it has `have`.
    pub fn sent_ranges(ranges: &RangeSpec, size: u64, have: &ChunkRanges) -> ChunkRanges {
        crate::transfer::provider::sent_ranges(ranges, size, have)
    }

    /// Whether a requester that `asked` takes what a provider announced it
    /// `sent`, for a blob of `size` bytes if known.
    pub fn within_request(sent: &ChunkRanges, asked: &ChunkRanges, size: Option<u64>) -> bool {
        crate::transfer::request::within_request(sent, asked, size)
    }
}

/// The relay's rules; see `relay::serve`.
pub mod relay {
    use std::net::SocketAddr;

    /// The addresses a relay passes on in a punch: `observed` first, then
    /// those `given`, without relayed paths' or unspecified addresses,
    /// deduplicated, at most `MAX_PUNCH_ADDRS`.
    pub fn candidates(observed: SocketAddr, given: Vec<SocketAddr>) -> Vec<SocketAddr> {
        crate::relay::serve_candidates(observed, given)
    }

    /// Whether `addr` is a relayed path's made-up address.
    pub fn is_path_addr(addr: &SocketAddr) -> bool {
        crate::net::paths::is_path_addr(addr)
    }
}
