//! A room of 30 daemons (real processes on 127.0.0.1): no member needs a
//! session with every other (the mesh is a ring with fingers past 12
//! members), yet every member's `room status` counts all 30 online (from
//! the presences the room forwards), and chat lines posted on any member
//! reach every other. Before the mesh, each member counted only the
//! members it had a session with as online, and a room of 20 did not
//! meet in full within a minute.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use p2pfs_tests::{Daemon, ok, p2pfs, temp_dir, wait_for};
use serde_json::Value;

const MEMBERS: usize = 30;

fn online(d: &Daemon) -> usize {
    let out = p2pfs(d.data_dir(), &["room", "status", "team", "--json"]);
    let Ok(s) = serde_json::from_slice::<Value>(&out.stdout) else {
        return 0;
    };
    s["members"]
        .as_array()
        .map_or(0, |m| m.iter().filter(|m| m["online"] == true).count())
}

fn has_line(d: &Daemon, line: &str) -> bool {
    let out = p2pfs(d.data_dir(), &["chat", "team"]);
    String::from_utf8_lossy(&out.stdout).contains(line)
}

#[test]
fn thirty_daemons_count_each_other_online_and_hear_every_line() {
    let dirs: Vec<_> = (0..MEMBERS).map(|_| temp_dir()).collect();
    let daemons: Vec<Daemon> = dirs
        .iter()
        .map(|d| Daemon::start(d.path(), &["--no-lan"]))
        .collect();
    let ticket = ok(&p2pfs(daemons[0].data_dir(), &["room", "create", "team"]));
    let ticket = ticket.trim();
    for d in &daemons[1..] {
        ok(&p2pfs(d.data_dir(), &["room", "join", ticket]));
    }
    // Every member counts all 30 online, whatever sessions it holds.
    for (i, d) in daemons.iter().enumerate() {
        wait_for(Duration::from_secs(90), "all 30 members online", || {
            (online(d) == MEMBERS).then_some(())
        });
        eprintln!("member {i}: {MEMBERS} online");
    }
    // Lines posted on three members reach all.
    for (n, from) in [MEMBERS - 1, MEMBERS / 2, 0].into_iter().enumerate() {
        let line = format!("line {n} from member {from}");
        let posted = Instant::now();
        ok(&p2pfs(daemons[from].data_dir(), &["chat", "team", &line]));
        for d in &daemons {
            wait_for(Duration::from_secs(20), "the line on every member", || {
                has_line(d, &line).then_some(())
            });
        }
        eprintln!(
            "{line:?} on all {MEMBERS} members (checked one by one) after {:?}",
            posted.elapsed()
        );
    }
}
