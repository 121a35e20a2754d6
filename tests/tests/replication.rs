//! Replication with real daemons on 127.0.0.1: five members keep every
//! file on two of them, a member that goes away is replaced (only what it
//! held moves), a flapping member moves nothing, `copies=full` mirrors
//! everything, a member at its storage cap is passed over, and a pin keeps
//! a file whatever the placement. The offline timeout is 3 s here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::Path, time::Duration};

use p2pfs_tests::{Daemon, blake3_file, ok, p2pfs, random_file, temp_dir, wait_for};
use serde_json::Value;

/// The daemons' offline timeout.
const OFFLINE: &str = "3s";
/// Long enough to notice a member gone (3 s), settle and fetch.
const HEAL: Duration = Duration::from_secs(60);

/// A directory for the test, with `work/` for the files to publish.
fn dirs() -> (tempfile::TempDir, std::path::PathBuf) {
    let root = temp_dir();
    let work = root.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    (root, work)
}

/// What `s` says of the member `id`.
fn member<'a>(s: &'a Value, id: &str) -> Option<&'a Value> {
    s["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
}

fn start(root: &Path, name: &str, extra: &[&str]) -> Daemon {
    let mut args = vec!["--no-lan", "--name", name, "--offline-after", OFFLINE];
    args.extend_from_slice(extra);
    Daemon::start(&root.join(name), &args)
}

/// A room created on `members[0]` and joined by the others.
fn room(members: &[&Daemon]) {
    let ticket = ok(&p2pfs(members[0].data_dir(), &["room", "create", "team"]));
    for m in &members[1..] {
        ok(&p2pfs(m.data_dir(), &["room", "join", ticket.trim()]));
    }
}

fn status(d: &Daemon) -> Value {
    let out = ok(&p2pfs(d.data_dir(), &["room", "status", "team", "--json"]));
    serde_json::from_str(&out).expect("room status --json prints JSON")
}

fn files(s: &Value) -> &Vec<Value> {
    s["files"].as_array().unwrap()
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap()
}

/// Waits until `d` sees `count` files, each with `want` copies exactly
/// (and that many targeted), among `online` members online.
fn copies_are(d: &Daemon, count: usize, want: u64, online: usize) -> Value {
    copies(d, count, want, online, true)
}

/// Waits until `d` sees `count` files, each with at least `want` copies
/// (copies let go of are kept until collected) and `want` targeted.
fn copies_at_least(d: &Daemon, count: usize, want: u64, online: usize) -> Value {
    copies(d, count, want, online, false)
}

fn copies(d: &Daemon, count: usize, want: u64, online: usize, exact: bool) -> Value {
    wait_for(HEAL, &format!("every file to have {want} copies"), || {
        let s = status(d);
        let members_online = s["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["online"] == true)
            .count();
        let f = files(&s);
        (members_online == online
            && f.len() == count
            && f.iter().all(|f| {
                let c = n(&f["copies"]);
                (c == want || (!exact && c > want)) && n(&f["target"]) == want
            }))
        .then_some(s)
    })
}

/// Files of sizes from 64 KiB to 1.5 MiB, put on `d`; their total size.
fn publish(d: &Daemon, work: &Path, count: u64) -> u64 {
    let mut total = 0;
    for i in 0..count {
        let size = 65_536 + i * 131_072;
        let f = work.join(format!("f{i}"));
        random_file(&f, size, i);
        ok(&p2pfs(
            d.data_dir(),
            &["room", "put", "team", f.to_str().unwrap(), &format!("f{i}")],
        ));
        total += size;
    }
    total
}

/// Bytes fetched to keep copies, summed over `ds` (since each started).
fn fetched(ds: &[&Daemon]) -> u64 {
    ds.iter().map(|d| n(&status(d)["fetched_bytes"])).sum()
}

#[test]
fn five_members_keep_two_copies_and_restore_them_as_members_die() {
    let (root, work) = dirs();
    let mut a = start(root.path(), "a", &[]);
    let mut b = start(root.path(), "b", &[]);
    let mut c = start(root.path(), "c", &[]);
    let d = start(root.path(), "d", &[]);
    let e = start(root.path(), "e", &[]);
    room(&[&a, &b, &c, &d, &e]);
    const N: usize = 12;
    let total = publish(&a, &work, N as u64);

    // Every file on its author and one other member: one copy each
    // fetched, no more.
    let s = copies_are(&a, N, 2, 5);
    for f in files(&s) {
        assert!(
            f["holders"]
                .as_array()
                .unwrap()
                .contains(&Value::from(a.id.clone()))
        );
    }
    let others = [&b, &c, &d, &e];
    // (A fetch is counted just after its blob is complete.)
    let first = wait_for(Duration::from_secs(10), "the fetches counted", || {
        let f = fetched(&others);
        (f >= total).then_some(f)
    });
    assert!(
        first <= total + total / 50,
        "fetched {first} for {total} bytes of files"
    );
    // The four others share the second copies.
    let spread = others
        .iter()
        .filter(|m| n(&member(&status(m), &m.id).unwrap()["holds"]) > 0)
        .count();
    assert!(spread >= 3, "second copies on {spread} of 4 members");
    // Every member computes the same placement.
    let holders = |s: &Value| -> Vec<Value> {
        files(s)
            .iter()
            .map(|f| {
                let mut h = f["holders"].as_array().unwrap().clone();
                h.sort_by_key(|x| x.as_str().unwrap().to_string());
                Value::from(h)
            })
            .collect()
    };
    let seen_by_a = holders(&s);
    for m in others {
        let sm = copies_are(m, N, 2, 5);
        assert_eq!(holders(&sm), seen_by_a);
    }

    // The author stops: each file lost one copy, and only that moves.
    a.terminate();
    copies_are(&b, N, 2, 4);
    let moved = wait_for(Duration::from_secs(10), "the fetches counted", || {
        let m = fetched(&others) - first;
        (m >= total).then_some(m)
    });
    assert!(
        moved <= total + total / 50,
        "moved {moved} bytes to restore {total} bytes of lost copies"
    );
    // Everything is still readable from the others.
    for (i, m) in others.iter().enumerate() {
        let name = format!("f{}", i * 3);
        let to = work.join(format!("got-{name}"));
        ok(&p2pfs(
            m.data_dir(),
            &["room", "get", "team", &name, "-o", to.to_str().unwrap()],
        ));
        assert_eq!(blake3_file(&to), blake3_file(&work.join(&name)));
    }

    // Kill holders one at a time until two remain: the count comes back
    // each time.
    b.kill9();
    copies_at_least(&c, N, 2, 3);
    c.kill9();
    let s = copies_are(&d, N, 2, 2);
    for f in files(&s) {
        let h = f["holders"].as_array().unwrap();
        assert!(h.contains(&Value::from(d.id.clone())) && h.contains(&Value::from(e.id.clone())));
    }
}

#[test]
fn a_flapping_member_moves_nothing_and_a_long_absence_moves_only_once() {
    let (root, work) = dirs();
    let a = start(root.path(), "a", &[]);
    let b = start(root.path(), "b", &[]);
    let mut c = start(root.path(), "c", &[]);
    room(&[&a, &b, &c]);
    const N: usize = 10;
    publish(&a, &work, N as u64);
    copies_are(&a, N, 2, 3);
    let before = fetched(&[&a, &b]);
    let c_id = c.id.clone();
    let c_holds = |s: &Value| member(s, &c_id).map_or(0, |m| n(&m["holds"]));
    assert!(c_holds(&status(&a)) > 0, "c holds some second copies");

    // Three short outages (shorter than the timeout): nothing moves.
    for _ in 0..3 {
        let held_by_c = c_holds(&status(&a));
        c.kill9();
        drop(c);
        c = start(root.path(), "c", &[]);
        wait_for(HEAL, "c back with its copies", || {
            (c_holds(&status(&a)) >= held_by_c).then_some(())
        });
        assert_eq!(n(&status(&c)["fetched_bytes"]), 0, "c fetched nothing");
    }
    assert_eq!(fetched(&[&a, &b]), before, "nobody fetched anything");

    // A long absence: the others take c's copies, once.
    let held_by_c = c_holds(&status(&a));
    c.kill9();
    copies_are(&a, N, 2, 2);
    let once = wait_for(Duration::from_secs(10), "the fetches counted", || {
        let f = fetched(&[&a, &b]) - before;
        (f > 0).then_some(f)
    });
    c = start(root.path(), "c", &[]);
    wait_for(HEAL, "c back with its copies", || {
        (c_holds(&status(&a)) >= held_by_c).then_some(())
    });
    copies_at_least(&a, N, 2, 3);
    assert_eq!(n(&status(&c)["fetched_bytes"]), 0);
    // Away again: b still has the bytes (let go of, not collected), so
    // nothing moves a second time.
    c.kill9();
    copies_at_least(&a, N, 2, 2);
    assert_eq!(
        fetched(&[&a, &b]) - before,
        once,
        "the second absence moved nothing"
    );
}

#[test]
fn full_policy_mirrors_everything_except_on_a_member_at_its_cap() {
    let (root, work) = dirs();
    let a = start(root.path(), "a", &[]);
    let b = start(root.path(), "b", &[]);
    let c = start(root.path(), "c", &[]);
    let capped = start(root.path(), "d", &["--max-storage", "1M"]);
    room(&[&a, &b, &c, &capped]);
    ok(&p2pfs(
        a.data_dir(),
        &["room", "set", "team", "copies=full"],
    ));
    const N: usize = 8;
    publish(&a, &work, N as u64);
    // Every member but the capped one holds every file; the capped one
    // holds what fits (at most 1 MiB) and says it is at its cap.
    let s = wait_for(HEAL, "the room mirrored", || {
        let s = status(&a);
        let f = files(&s);
        let d = member(&s, &capped.id)?.clone();
        (s["policy"] == "Full"
            && f.len() == N
            && f.iter()
                .all(|f| n(&f["copies"]) >= 3 && n(&f["copies"]) >= n(&f["target"]))
            && d["full"] == true)
            .then_some(s)
    });
    let own = status(&capped);
    assert!(
        n(&own["stored_bytes"]) <= 1 << 20,
        "{}",
        own["stored_bytes"]
    );
    let on_capped = files(&s)
        .iter()
        .filter(|f| {
            f["holders"]
                .as_array()
                .unwrap()
                .contains(&Value::from(capped.id.clone()))
        })
        .count();
    assert!(on_capped < N, "the capped member holds {on_capped} of {N}");
    let text = ok(&p2pfs(capped.data_dir(), &["room", "status", "team"]));
    assert!(text.contains("at its storage cap"), "{text}");
    assert!(text.contains("copies=full"), "{text}");
}

#[test]
fn a_member_at_its_cap_never_fetches_past_it_when_many_files_wait() {
    // The capped member joins once every file is in the room: its first
    // pass plans them all at once, and the fetches it starts together must
    // count each other against the cap (the first four alone are 1 MiB).
    let (root, work) = dirs();
    let a = start(root.path(), "a", &[]);
    let ticket = ok(&p2pfs(a.data_dir(), &["room", "create", "team"]));
    ok(&p2pfs(
        a.data_dir(),
        &["room", "set", "team", "copies=full"],
    ));
    const N: usize = 8;
    publish(&a, &work, N as u64);
    let capped = start(root.path(), "d", &["--max-storage", "1000K"]);
    ok(&p2pfs(capped.data_dir(), &["room", "join", ticket.trim()]));
    wait_for(HEAL, "the capped member at its cap", || {
        let s = status(&a);
        let d = member(&s, &capped.id)?.clone();
        (d["full"] == true).then_some(())
    });
    let own = status(&capped);
    assert!(
        n(&own["stored_bytes"]) <= 1000 << 10,
        "stored {} bytes past a cap of 1000 KiB",
        own["stored_bytes"]
    );
}

#[test]
fn a_pin_keeps_a_file_whatever_the_placement() {
    let (root, work) = dirs();
    let a = start(root.path(), "a", &[]);
    let b = start(root.path(), "b", &[]);
    room(&[&a, &b]);
    ok(&p2pfs(a.data_dir(), &["room", "set", "team", "copies=1"]));
    publish(&a, &work, 3);
    // copies=1: the author's copy only.
    copies_are(&b, 3, 1, 2);
    let out = ok(&p2pfs(b.data_dir(), &["room", "pin", "team", "f2"]));
    assert!(out.starts_with("pinned "), "{out}");
    wait_for(HEAL, "the pinned file fetched", || {
        let s = status(&b);
        let f = files(&s).iter().find(|f| f["path"] == "f2")?.clone();
        (n(&f["copies"]) == 2).then_some(())
    });
    let text = ok(&p2pfs(b.data_dir(), &["room", "status", "team"]));
    assert!(text.contains("2/1"), "{text}");
    ok(&p2pfs(b.data_dir(), &["room", "unpin", "team", "f2"]));
}
