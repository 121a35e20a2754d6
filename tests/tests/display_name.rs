//! A display name changed with `--name` or `P2PFS_NAME` reaches the rooms
//! this node joined before, at the daemon's next start; an unchanged one
//! adds nothing to their logs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::Path, time::Duration};

use p2pfs_tests::{Daemon, ok, p2pfs, temp_dir, wait_for};

/// Entries in the log of room `team`, as `data`'s node sees them.
fn entries(data: &Path) -> u64 {
    let out = ok(&p2pfs(data, &["room", "list", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v.as_array().unwrap()[0]["entries"].as_u64().unwrap()
}

/// Waits until `data`'s chat of `team` ends with `line` (after its time).
fn chat_ends_with(data: &Path, line: &str) {
    wait_for(Duration::from_secs(20), line, || {
        let chat = ok(&p2pfs(data, &["chat", "team"]));
        chat.lines()
            .last()
            .is_some_and(|l| l.split_once(' ').is_some_and(|(_, rest)| rest == line))
            .then_some(())
    });
}

#[test]
fn a_new_name_reaches_the_rooms_already_joined() {
    let root = temp_dir();
    let (a_dir, b_dir) = (root.path().join("a"), root.path().join("b"));
    let mut a = Daemon::start(&a_dir, &["--no-lan", "--name", "alice"]);
    let _b = Daemon::start(&b_dir, &["--no-lan", "--name", "bob"]);
    let ticket = ok(&p2pfs(&a_dir, &["room", "create", "team"]));
    ok(&p2pfs(&b_dir, &["room", "join", ticket.trim()]));
    ok(&p2pfs(&a_dir, &["chat", "team", "one"]));
    chat_ends_with(&b_dir, "alice: one");

    // --name, at the next start (on the same address, where B finds it).
    let at = a.addr.to_string();
    assert!(a.terminate().success());
    let mut a = Daemon::start_in(None, &a_dir, &at, &["--no-lan", "--name", "carol"]);
    ok(&p2pfs(&a_dir, &["chat", "team", "two"]));
    chat_ends_with(&b_dir, "carol: two");

    // P2PFS_NAME over the saved name.
    assert!(a.terminate().success());
    let env = [("P2PFS_NAME", "dave")];
    let mut a = Daemon::start_with_env(&a_dir, &at, &["--no-lan"], &env);
    ok(&p2pfs(&a_dir, &["chat", "team", "three"]));
    chat_ends_with(&b_dir, "dave: three");

    // The same name again: nothing new in the log. (`entries` runs a node
    // for one command, without P2PFS_NAME, so with the saved name, carol:
    // such a node leaves the name alone.)
    assert!(a.terminate().success());
    let before = entries(&a_dir);
    let a = Daemon::start_with_env(&a_dir, &at, &["--no-lan"], &env);
    assert_eq!(entries(&a_dir), before);
    drop(a);
}
