//! The chat as `p2pfs chat` prints it: the messages of a whole log in the
//! canonical order of [`super::order`], so every member that has the same
//! entries prints the same bytes, then new messages as they arrive.
//!
//! `chat.log` cannot do this: it never rewrites bytes it has shown, so it
//! keeps the order messages arrived in and labels each line with the names
//! known when it arrived ([`super::view`]). Here, the lines of the whole
//! log are rendered at once, knowing every name in it: each message shows
//! its author's name as of that message (the author's latest name earlier
//! in its own chain, as `chat.log` does), qualified with the short id when
//! any other author of the log ever took a name with the same key.

use std::collections::{BTreeSet, HashMap};

use p2pfs_proto::{
    Hash, NodeId,
    room::{EntryBody, Meta, Op},
};

use super::{order, render};

/// The names a transcript knows.
#[derive(Debug, Default)]
pub(crate) struct Transcript {
    /// Each author's latest name so far.
    names: HashMap<NodeId, String>,
    /// The authors that ever took a name, by [`render::name_key`].
    claims: HashMap<String, BTreeSet<NodeId>>,
}

impl Transcript {
    /// The chat of `entries` (in any order), one line per message in
    /// canonical order, and the transcript to [`Transcript::push`] later
    /// entries to.
    pub(crate) fn new(entries: &[(Hash, EntryBody)]) -> (Self, Vec<String>) {
        let mut t = Self::default();
        for (_, body) in entries {
            if let Op::Meta(Meta::MemberName(name)) = &body.op {
                t.claim(&body.author, name);
            }
        }
        let lines = order::canonical(entries)
            .into_iter()
            .filter_map(|i| t.apply(&entries[i].1))
            .collect();
        (t, lines)
    }

    /// A later entry, as it arrives: the line it adds, if a message.
    pub(crate) fn push(&mut self, body: &EntryBody) -> Option<String> {
        if let Op::Meta(Meta::MemberName(name)) = &body.op {
            self.claim(&body.author, name);
        }
        self.apply(body)
    }

    fn claim(&mut self, author: &NodeId, name: &str) {
        self.claims
            .entry(render::name_key(name))
            .or_default()
            .insert(*author);
    }

    fn apply(&mut self, body: &EntryBody) -> Option<String> {
        match &body.op {
            Op::Meta(Meta::MemberName(name)) => {
                self.names.insert(body.author, name.clone());
                None
            }
            Op::Chat { text } => {
                let name = self.names.get(&body.author).map(String::as_str);
                let shared = name.is_some_and(|n| {
                    self.claims
                        .get(&render::name_key(n))
                        .is_some_and(|a| a.iter().any(|a| *a != body.author))
                });
                let label = render::label(name, &body.author, shared);
                Some(render::chat_line(body.time, &label, text))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use p2pfs_proto::RoomSecret;
    use p2pfs_store::Store;

    use super::*;
    use crate::{
        identity::SecretKey,
        room::{entry::Verified, log, query},
    };

    fn chat(text: &str) -> Op {
        Op::Chat { text: text.into() }
    }

    fn name(n: &str) -> Op {
        Op::Meta(Meta::MemberName(n.into()))
    }

    /// Three members, two of them named alike, writing concurrently from
    /// their own stores; then each store given everything in another order.
    #[test]
    fn members_that_got_entries_in_other_orders_print_the_same_chat() {
        let secret = RoomSecret([8; 32]);
        let room = secret.id();
        let keys: Vec<SecretKey> = (0..3).map(|_| SecretKey::generate().unwrap()).collect();
        let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let stores: Vec<Store> = dirs
            .iter()
            .map(|d| Store::open(d.path()).unwrap())
            .collect();
        let mut all: Vec<Verified> = Vec::new();
        let names = ["alice", "bob", "Alice"];
        for (i, k) in keys.iter().enumerate() {
            all.extend(log::author_all(&stores[i], k, &secret, vec![name(names[i])]).unwrap());
        }
        let mut rng = fastrand::Rng::with_seed(3);
        for round in 0..30 {
            let i = rng.usize(..3);
            // Sometimes a member first learns what another wrote.
            if rng.bool() {
                let mut some = all.clone();
                rng.shuffle(&mut some);
                some.truncate(rng.usize(..=some.len()));
                let mut have: Vec<Verified> = all.clone();
                have.retain(|e| some.iter().any(|s| s.hash == e.hash));
                log::accept(&stores[i], &room, have).unwrap();
            }
            let text = format!("message {round} \x1b[2J");
            all.extend(log::author_all(&stores[i], &keys[i], &secret, vec![chat(&text)]).unwrap());
        }
        // Everyone gets everything, each in its own order.
        let mut transcripts = Vec::new();
        let mut logs = Vec::new();
        for s in &stores {
            let mut mine = all.clone();
            rng.shuffle(&mut mine);
            log::accept(s, &room, mine).unwrap();
            let (_, lines) = query::ChatReader::open(s, &room).unwrap();
            transcripts.push(lines);
            logs.push(query::chat(s, &room, 0, usize::MAX).unwrap());
        }
        assert_eq!(transcripts[0].len(), 30);
        assert_eq!(transcripts[0], transcripts[1]);
        assert_eq!(transcripts[0], transcripts[2]);
        // chat.log holds the same lines, in arrival order, which differs.
        for (t, l) in transcripts.iter().zip(&logs) {
            assert_eq!(t.len(), l.len());
        }
        assert!(logs[0] != logs[1] || logs[1] != logs[2]);
        // The two alices are told apart; bob is not qualified.
        let short = |k: &SecretKey| k.public().fmt_short();
        for line in &transcripts[0] {
            let named = line.contains(&format!(" alice ({}): ", short(&keys[0])))
                || line.contains(" bob: ")
                || line.contains(&format!(" Alice ({}): ", short(&keys[2])));
            assert!(named, "{line}");
            assert!(
                line.contains("\\x1b[2J") && !line.contains('\x1b'),
                "{line}"
            );
        }
    }

    #[test]
    fn names_are_the_authors_own_as_of_each_message() {
        let a = NodeId::from_bytes([1; 32]);
        let b = NodeId::from_bytes([2; 32]);
        let e = |n: u8, author: NodeId, seq, time, parents: Vec<Hash>, op| {
            (
                Hash::of(&[n]),
                EntryBody {
                    author,
                    seq,
                    parents,
                    time,
                    member: [0; 32],
                    op,
                },
            )
        };
        let a0 = e(0, a, 0, 1000, vec![], chat("before any name"));
        let a1 = e(1, a, 1, 2000, vec![a0.0], name("ann"));
        let a2 = e(2, a, 2, 3000, vec![a1.0], chat("as ann"));
        // b takes "ann" later, concurrently with a's message.
        let b0 = e(3, b, 0, 2500, vec![a1.0], name("ANN"));
        let b1 = e(4, b, 1, 3500, vec![b0.0], chat("as ANN"));
        let entries = vec![b1.clone(), a2.clone(), b0.clone(), a0.clone(), a1.clone()];
        let (mut t, lines) = Transcript::new(&entries);
        assert_eq!(
            lines,
            vec![
                format!("1970-01-01T00:00:01Z {}: before any name\n", a.fmt_short()),
                format!("1970-01-01T00:00:03Z ann ({}): as ann\n", a.fmt_short()),
                format!("1970-01-01T00:00:03Z ANN ({}): as ANN\n", b.fmt_short()),
            ]
        );
        // A later rename, then a message, as they arrive.
        let a3 = e(5, a, 3, 4000, vec![a2.0], name("ann: b"));
        let a4 = e(6, a, 4, 5000, vec![a3.0], chat("hi"));
        assert_eq!(t.push(&a3.1), None);
        assert_eq!(
            t.push(&a4.1).unwrap(),
            "1970-01-01T00:00:05Z ann\\x3a b: hi\n"
        );
    }
}
