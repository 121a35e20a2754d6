//! One room session's protocol rules (`room::session`), fed what a peer
//! and the driver can bring: any message that decodes (or one of each
//! kind), entries taken in with any number failing and some waiting for
//! parents, presences valid or not, at times that go forward in any steps
//! (and back). Checked against a model of the rules: a session starts
//! with our `Have`, `Peers` and digest; every message asks exactly the
//! action of its kind (a `Have` answered with as many authors, entries
//! taken in all); entries waiting for parents ask for a new `Have` only
//! after `RESYNC_EVERY_MS` since the last (or the start); past
//! `MAX_INVALID` failures the session closes once and then does nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2pfs_proto::{
    NodeAddr, NodeId, codec,
    room::{Have, Presence, Signature, Status, SyncMsg},
};
use p2pfs_swarm::fuzzing::session::{Act, MAX_INVALID, RESYNC_EVERY_MS, Session};

/// What a message asks.
fn expected(msg: &SyncMsg) -> Act {
    match msg {
        SyncMsg::Have(h) => Act::Answer(h.0.len()),
        SyncMsg::Entries(l) => Act::TakeIn(l.len()),
        SyncMsg::Synced => Act::Synced,
        SyncMsg::Peers(_) => Act::Learn,
        SyncMsg::Status(_) => Act::Status,
        SyncMsg::Leaving => Act::Leaving,
        SyncMsg::Goodbye => Act::Goodbye,
        SyncMsg::Presence(_) => Act::Presence,
        SyncMsg::PresenceDigest(_) => Act::AnswerDigest,
    }
}

/// A message of kind `k`, sized by `n`.
fn message(k: u8, n: u8) -> SyncMsg {
    match k % 9 {
        0 => SyncMsg::Have(Have(
            (0..n % 8)
                .map(|i| (NodeId::from_bytes([i; 32]), u64::from(i)))
                .collect(),
        )),
        1 => SyncMsg::Entries((0..n % 8).map(|i| vec![i; usize::from(i)]).collect()),
        2 => SyncMsg::Synced,
        3 => SyncMsg::Peers(vec![NodeAddr {
            id: NodeId::from_bytes([n; 32]),
            addrs: vec![],
        }]),
        4 => SyncMsg::Status(Status::default()),
        5 => SyncMsg::Leaving,
        6 => SyncMsg::Goodbye,
        7 => SyncMsg::Presence(Presence {
            body: vec![n],
            sig: Signature([0; 64]),
        }),
        _ => SyncMsg::PresenceDigest(vec![]),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.iter().copied();
    let mut now: u64 = u64::from(bytes.next().unwrap_or(0)) * 1000;
    let start = now;
    let (mut s, first) = Session::start(now);
    assert_eq!(first, [Act::SendHave, Act::SendPeers, Act::SendDigest]);
    // The model.
    let mut invalid = 0usize;
    let mut last_resync = start;
    let mut closed = false;
    while let Some(op) = bytes.next() {
        let arg = bytes.next().unwrap_or(0);
        // Time moves in steps of up to ~4 s, now and then back.
        now = if op & 0x80 != 0 {
            now.saturating_sub(u64::from(arg) * 10)
        } else {
            now.saturating_add(u64::from(arg) * 16)
        };
        let got = match op % 4 {
            // A message: decoded from the input when it decodes, else one
            // of each kind.
            0 | 1 => {
                let len = usize::from(arg % 64);
                let raw: Vec<u8> = bytes.by_ref().take(len).collect();
                let msg = match codec::decode::<SyncMsg>(&raw) {
                    Ok(m) if op % 4 == 0 && m.check().is_ok() => m,
                    _ => message(op >> 2, arg),
                };
                let want = expected(&msg);
                let got = s.received(msg, now);
                if closed {
                    assert!(got.is_empty(), "a closed session acted");
                } else {
                    assert_eq!(got, [want], "a message asks its action");
                }
                got
            }
            // Entries taken in.
            2 => {
                let bad = usize::from(arg % 40);
                let waiting = op & 0x10 != 0;
                let got = s.taken_in(bad, waiting, now);
                if closed {
                    assert!(got.is_empty(), "a closed session acted");
                    continue;
                }
                invalid += bad;
                if invalid > MAX_INVALID {
                    closed = true;
                    assert_eq!(got, [Act::Close], "past the limit: closed");
                } else if waiting && now.saturating_sub(last_resync) > RESYNC_EVERY_MS {
                    last_resync = now;
                    assert_eq!(got, [Act::SendHave], "a resync due");
                } else {
                    assert!(got.is_empty(), "a resync too soon, or none needed");
                }
                got
            }
            // A presence checked.
            _ => {
                let valid = arg & 1 == 0;
                let got = s.presence_checked(valid, now);
                if closed {
                    assert!(got.is_empty(), "a closed session acted");
                    continue;
                }
                invalid += usize::from(!valid);
                if invalid > MAX_INVALID {
                    closed = true;
                    assert_eq!(got, [Act::Close], "past the limit: closed");
                } else {
                    assert!(got.is_empty());
                }
                got
            }
        };
        assert!(got.len() <= 1);
    }
});
