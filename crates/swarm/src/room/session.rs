//! One room session's protocol (docs/protocol.md §8.6), as a state machine
//! without I/O. The driver (`sync`) feeds it what the peer sent and what
//! became of the work it asked for, with the time; it answers with what
//! to do: messages to send, entries to take in, news for the room.
//!
//! The rules it keeps:
//! - a session starts with our `Have`, our `Peers` and our
//!   `PresenceDigest`;
//! - a `Have` is answered with the entries the peer lacks, then `Synced`
//!   (the driver reads them from the store, in order, before it takes the
//!   next message: so a `Synced` confirms everything sent before);
//! - entries that wait for parents the peer should have make us send a new
//!   `Have`, at most every [`RESYNC_EVERY_MS`];
//! - entries and presences that fail verification count against the peer:
//!   past [`MAX_INVALID`] the session ends as a protocol violation;
//! - a `PresenceDigest` is answered with the presences the peer lacks.

use p2pfs_proto::{
    NodeAddr,
    room::{Presence, PresenceHead, Status, SyncMsg},
};

/// Entries and presences a member may send that fail verification before
/// its session ends.
pub(crate) const MAX_INVALID: usize = 64;
/// The least time between two `Have`s sent because entries wait for
/// parents.
pub(crate) const RESYNC_EVERY_MS: u64 = 3000;

/// What the driver tells the session.
#[derive(Debug)]
pub(crate) enum Event {
    /// The peer sent this (decoded and within the protocol's bounds).
    Received(SyncMsg),
    /// Entries asked for with [`Action::TakeIn`] were taken in: `bad` of
    /// them failed verification, and some wait for their parents.
    TakenIn { bad: usize, waiting: bool },
    /// A presence asked for with [`Action::Presence`] was checked.
    PresenceChecked { valid: bool },
}

/// What the session asks the driver to do.
#[derive(Debug, PartialEq)]
pub(crate) enum Action {
    /// Send our `Have` (the counts are the store's).
    SendHave,
    /// Send the members we know (`Peers`).
    SendPeers,
    /// Send our `PresenceDigest`.
    SendDigest,
    /// Answer the peer's `Have`: the entries it lacks, then `Synced`.
    Answer(Vec<(p2pfs_proto::NodeId, u64)>),
    /// Verify and accept these encoded entries, then report
    /// [`Event::TakenIn`].
    TakeIn(Vec<Vec<u8>>),
    /// The peer took in everything before our oldest unanswered `Have`.
    Synced,
    /// Members and their addresses, to remember.
    Learn(Vec<NodeAddr>),
    /// The peer's status as a replica.
    Status(Status),
    /// The peer is leaving.
    Leaving,
    /// The peer stops now.
    Goodbye,
    /// Verify and take in a presence, then report
    /// [`Event::PresenceChecked`].
    Presence(Presence),
    /// Send the presences the peer lacks, from its digest.
    AnswerDigest(Vec<PresenceHead>),
    /// End the session: the peer broke the protocol.
    Close(String),
}

/// One session's state.
#[derive(Debug)]
pub(crate) struct Session {
    /// Entries and presences that failed verification.
    invalid: usize,
    /// When a `Have` was last sent for entries waiting for parents.
    last_resync_ms: u64,
    /// The session ended (nothing more is done).
    closed: bool,
}

impl Session {
    /// A session starting at `now_ms`, and its first messages.
    pub(crate) fn start(now_ms: u64) -> (Self, Vec<Action>) {
        let s = Self {
            invalid: 0,
            last_resync_ms: now_ms,
            closed: false,
        };
        (
            s,
            vec![Action::SendHave, Action::SendPeers, Action::SendDigest],
        )
    }

    /// Whether the session ended.
    #[cfg(test)]
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// Takes in `event` at `now_ms`.
    pub(crate) fn on(&mut self, event: Event, now_ms: u64) -> Vec<Action> {
        if self.closed {
            return Vec::new();
        }
        match event {
            Event::Received(msg) => vec![match msg {
                SyncMsg::Have(have) => Action::Answer(have.0),
                SyncMsg::Entries(list) => Action::TakeIn(list),
                SyncMsg::Synced => Action::Synced,
                SyncMsg::Peers(list) => Action::Learn(list),
                SyncMsg::Status(s) => Action::Status(s),
                SyncMsg::Leaving => Action::Leaving,
                SyncMsg::Goodbye => Action::Goodbye,
                SyncMsg::Presence(p) => Action::Presence(p),
                SyncMsg::PresenceDigest(heads) => Action::AnswerDigest(heads),
            }],
            Event::TakenIn { bad, waiting } => {
                if let Some(close) = self.count_invalid(bad, "invalid room entries") {
                    return vec![close];
                }
                // Entries waiting for parents this member should have: ask
                // it again (not more than every few seconds).
                if waiting && now_ms.saturating_sub(self.last_resync_ms) > RESYNC_EVERY_MS {
                    self.last_resync_ms = now_ms;
                    return vec![Action::SendHave];
                }
                Vec::new()
            }
            Event::PresenceChecked { valid } => self
                .count_invalid(usize::from(!valid), "invalid presences")
                .into_iter()
                .collect(),
        }
    }

    fn count_invalid(&mut self, bad: usize, what: &str) -> Option<Action> {
        self.invalid = self.invalid.saturating_add(bad);
        (self.invalid > MAX_INVALID).then(|| {
            self.closed = true;
            Action::Close(format!("{} {what}", self.invalid))
        })
    }
}

#[cfg(test)]
mod tests {
    use p2pfs_proto::{NodeId, room::Have};

    use super::*;

    #[test]
    fn starts_with_have_peers_and_digest_and_answers_each_message() {
        let (mut s, first) = Session::start(0);
        assert_eq!(
            first,
            [Action::SendHave, Action::SendPeers, Action::SendDigest]
        );
        let have = vec![(NodeId::from_bytes([1; 32]), 3)];
        assert_eq!(
            s.on(Event::Received(SyncMsg::Have(Have(have.clone()))), 1),
            [Action::Answer(have)]
        );
        assert_eq!(s.on(Event::Received(SyncMsg::Synced), 2), [Action::Synced]);
        assert_eq!(
            s.on(Event::Received(SyncMsg::PresenceDigest(vec![])), 3),
            [Action::AnswerDigest(vec![])]
        );
    }

    #[test]
    fn entries_waiting_for_parents_ask_again_at_most_every_three_seconds() {
        let (mut s, _) = Session::start(1000);
        let waiting = Event::TakenIn {
            bad: 0,
            waiting: true,
        };
        assert!(s.on(waiting, 2000).is_empty());
        let waiting = || Event::TakenIn {
            bad: 0,
            waiting: true,
        };
        assert_eq!(
            s.on(waiting(), 1000 + RESYNC_EVERY_MS + 1),
            [Action::SendHave]
        );
        assert!(s.on(waiting(), 1000 + RESYNC_EVERY_MS + 2).is_empty());
        assert_eq!(
            s.on(waiting(), 1000 + 2 * RESYNC_EVERY_MS + 2),
            [Action::SendHave]
        );
    }

    #[test]
    fn past_the_limit_of_invalid_entries_and_presences_the_session_ends() {
        let (mut s, _) = Session::start(0);
        let out = s.on(
            Event::TakenIn {
                bad: MAX_INVALID - 1,
                waiting: false,
            },
            1,
        );
        assert!(out.is_empty());
        assert!(s.on(Event::PresenceChecked { valid: true }, 2).is_empty());
        assert!(s.on(Event::PresenceChecked { valid: false }, 3).is_empty());
        let out = s.on(Event::PresenceChecked { valid: false }, 4);
        assert!(matches!(&out[..], [Action::Close(_)]));
        assert!(s.is_closed());
        // Nothing more once closed.
        assert!(s.on(Event::Received(SyncMsg::Synced), 5).is_empty());
    }
}
