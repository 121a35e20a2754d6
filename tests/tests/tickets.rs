//! Tickets as people pass them around: a ticket with one character
//! changed, lost, added or two swapped is refused with a clear message
//! and joins or fetches nothing; whitespace around it and its case do not
//! matter.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use p2pfs_tests::*;

/// The edits the issue tried, at a few places in `t`: a character
/// changed, deleted, inserted, and two neighbours swapped.
fn typos(t: &str) -> Vec<String> {
    let b = t.as_bytes();
    let mut out = Vec::new();
    for at in [8, t.len() / 2, t.len() - 2] {
        let mut changed = b.to_vec();
        changed[at] = if b[at] == b'q' { b'r' } else { b'q' };
        out.push(changed);
        let mut deleted = b.to_vec();
        deleted.remove(at);
        out.push(deleted);
        let mut inserted = b.to_vec();
        inserted.insert(at, b'k');
        out.push(inserted);
        let mut swapped = b.to_vec();
        if b[at] != b[at + 1] {
            swapped.swap(at, at + 1);
            out.push(swapped);
        }
    }
    out.into_iter()
        .map(|v| String::from_utf8(v).unwrap())
        .collect()
}

#[test]
fn a_mistyped_room_ticket_joins_nothing() {
    let root = temp_dir();
    let a = Daemon::start(&root.path().join("a"), &["--no-lan"]);
    let b = Daemon::start(&root.path().join("b"), &["--no-lan"]);
    let ticket = ok(&p2pfs(a.data_dir(), &["room", "create", "team"]));
    let ticket = ticket.trim();
    for typo in typos(ticket) {
        let out = p2pfs(b.data_dir(), &["room", "join", &typo]);
        let line = fails(&out);
        assert!(
            matches!(out.status.code(), Some(1 | 2)),
            "{typo}: {:?}",
            out.status
        );
        assert!(
            line.starts_with("error: damaged or mistyped room ticket: "),
            "{typo}: {line}"
        );
    }
    // (A character other than the one there: the ticket is random.)
    let other = if ticket.as_bytes()[20] == b'q' {
        'r'
    } else {
        'q'
    };
    let err = fails(&p2pfs(
        b.data_dir(),
        &[
            "room",
            "join",
            &format!("{}{other}{}", &ticket[..20], &ticket[21..]),
        ],
    ));
    assert_eq!(
        err,
        "error: damaged or mistyped room ticket: its checksum does not match; copy the whole ticket again"
    );
    let rooms = ok(&p2pfs(b.data_dir(), &["room", "list", "--json"]));
    assert_eq!(rooms.trim(), "[]", "no room was joined: {rooms}");

    // Pasted with a newline and in capitals, it is the same ticket.
    let pasted = format!("  {}\n", ticket.to_ascii_uppercase());
    let joined = ok(&p2pfs(b.data_dir(), &["room", "join", &pasted]));
    assert!(joined.contains("team"), "{joined}");
}

#[test]
fn a_mistyped_blob_ticket_fetches_nothing() {
    let root = temp_dir();
    let a = Daemon::start(&root.path().join("a"), &["--no-lan"]);
    let file = root.path().join("photo.jpg");
    random_file(&file, 100_000, 7);
    let ticket = ok(&p2pfs(a.data_dir(), &["share", file.to_str().unwrap()]));
    let ticket = ticket.trim();
    let b_dir = root.path().join("b");
    let out = root.path().join("out");
    for typo in typos(ticket) {
        let line = fails(&p2pfs(
            &b_dir,
            &["fetch", &typo, "-o", out.to_str().unwrap()],
        ));
        assert!(
            line.starts_with("error: damaged or mistyped blob ticket: "),
            "{typo}: {line}"
        );
        assert!(!out.exists());
    }
    assert_eq!(ok(&p2pfs(&b_dir, &["ls"])), "");
    ok(&p2pfs(
        &b_dir,
        &[
            "fetch",
            &ticket.to_ascii_uppercase(),
            "-o",
            out.to_str().unwrap(),
        ],
    ));
    assert_eq!(blake3_file(&out), blake3_file(&file));
}
