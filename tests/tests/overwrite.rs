//! Overwrites through the mount are atomic for everyone else: a file
//! opened with `O_TRUNC` and written is published at its close, never
//! before; until then the other member and other local readers read the
//! old version. A mount killed mid-overwrite leaves the old version
//! published; truncating needs none of the old bytes; two members that
//! overwrite one file without seeing each other's version both keep theirs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use p2pfs_tests::{Daemon, ok, p2pfs, temp_dir, wait_for};

const SYNC: Duration = Duration::from_secs(20);

/// Waits until `path` holds exactly `want`.
fn holds(path: &Path, want: &[u8], what: &str) {
    wait_for(SYNC, what, || (fs::read(path).ok()? == want).then_some(()));
}

/// `cat PATH` in a process of its own (a second local reader).
fn cat(path: &Path) -> Vec<u8> {
    let out = Command::new("cat").arg(path).output().unwrap();
    assert!(out.status.success(), "cat {}", path.display());
    out.stdout
}

/// The files of a room directory (`chat.log` aside) and their contents.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "chat.log")
        .map(|n| {
            let bytes = fs::read(dir.join(&n)).unwrap_or_default();
            (n, bytes)
        })
        .collect();
    out.sort();
    out
}

struct Pair {
    _root: tempfile::TempDir,
    a: Daemon,
    b: Daemon,
    ra: PathBuf,
    rb: PathBuf,
}

impl Pair {
    /// Posts `line` to the chat on A and waits until B shows it: what A
    /// sent before has reached B by then.
    fn a_to_b(&self, line: &str) {
        fs::OpenOptions::new()
            .append(true)
            .open(self.ra.join("chat.log"))
            .unwrap()
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
        wait_for(SYNC, "the chat line to reach B", || {
            fs::read_to_string(self.rb.join("chat.log"))
                .ok()?
                .contains(line)
                .then_some(())
        });
    }
}

/// Two mounts in one room (`copies=1`, so B holds only what it reads).
fn pair() -> Pair {
    let root = temp_dir();
    let a = Daemon::mount(
        &root.path().join("a"),
        &root.path().join("mnt-a"),
        &["--name", "alice"],
    );
    let b = Daemon::mount(
        &root.path().join("b"),
        &root.path().join("mnt-b"),
        &["--name", "bob"],
    );
    let ra = a.mountpoint().join("team");
    fs::create_dir(&ra).unwrap();
    ok(&p2pfs(a.data_dir(), &["room", "set", "team", "copies=1"]));
    let rb = b.join_room_of(&a, "team");
    Pair {
        _root: root,
        a,
        b,
        ra,
        rb,
    }
}

#[test]
fn a_truncated_file_is_the_old_version_for_everyone_else_until_closed() {
    p2pfs_tests::needs_root!();
    let p = pair();
    let old = vec![b'o'; 100_000];
    let new = vec![b'n'; 150_000];
    fs::write(p.ra.join("f"), &old).unwrap();
    holds(&p.rb.join("f"), &old, "B to read the first version");

    // A writer truncates the file and writes half of the new version.
    let mut w = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(p.ra.join("f"))
        .unwrap();
    w.write_all(&new[..new.len() / 2]).unwrap();
    // Give B the time an empty version would take to arrive: a chat line
    // posted after the truncation must get there first.
    p.a_to_b("after the truncation");
    assert_eq!(fs::read(p.rb.join("f")).unwrap(), old, "B read the draft");
    assert_eq!(cat(&p.ra.join("f")), old, "a local reader read the draft");
    let listed = ok(&p2pfs(p.b.data_dir(), &["room", "ls", "team"]));
    assert!(listed.contains(" 100000 "), "{listed}");

    w.write_all(&new[new.len() / 2..]).unwrap();
    drop(w);
    assert_eq!(cat(&p.ra.join("f")), new);
    holds(&p.rb.join("f"), &new, "B to read the new version");
}

#[test]
fn a_mount_killed_mid_overwrite_leaves_the_old_version() {
    p2pfs_tests::needs_root!();
    let mut p = pair();
    let old = vec![b'o'; 70_000];
    fs::write(p.ra.join("f"), &old).unwrap();
    holds(&p.rb.join("f"), &old, "B to read the first version");

    let mut w = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(p.ra.join("f"))
        .unwrap();
    w.write_all(&[b'n'; 30_000]).unwrap();
    w.flush().unwrap();
    p.a.kill9();
    drop(w);
    let data = p.a.data_dir().to_path_buf();
    let mnt = p.a.mountpoint().to_path_buf();
    p.a = Daemon::mount(&data, &mnt, &["--name", "alice"]);
    holds(
        &p.ra.join("f"),
        &old,
        "A to show the old version after restart",
    );
    // Nothing newer reached B either: its listing is the old version only.
    wait_for(SYNC, "A and B to be connected again", || {
        let s = p2pfs(p.b.data_dir(), &["room", "list", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&s.stdout).ok()?;
        (v[0]["online"].as_u64()? >= 1).then_some(())
    });
    assert_eq!(files(&p.rb), vec![("f".to_string(), old.clone())]);
    assert_eq!(files(&p.ra), vec![("f".to_string(), old)]);
}

#[test]
fn truncating_needs_none_of_the_old_bytes() {
    p2pfs_tests::needs_root!();
    let mut p = pair();
    fs::write(p.rb.join("f"), vec![b'o'; 50_000]).unwrap();
    wait_for(SYNC, "A to list the file", || {
        (fs::metadata(p.ra.join("f")).ok()?.len() == 50_000).then_some(())
    });
    // B, the only holder, goes away; A overwrites the file it never read.
    p.b.terminate();
    fs::write(p.ra.join("f"), b"replaced\n").unwrap();
    assert_eq!(fs::read(p.ra.join("f")).unwrap(), b"replaced\n");
    // Published by the room's publisher right after the close (a close
    // hands the file over; the log has it a moment later).
    wait_for(SYNC, "the new version in the room's log", || {
        let listed = ok(&p2pfs(p.a.data_dir(), &["room", "ls", "team"]));
        listed.starts_with("f  9  ").then_some(())
    });
}

#[test]
fn two_members_overwriting_one_file_both_keep_their_versions() {
    p2pfs_tests::needs_root!();
    let p = pair();
    fs::write(p.ra.join("f"), b"base\n").unwrap();
    holds(&p.rb.join("f"), b"base\n", "B to read the first version");
    for trial in 0..20 {
        let (va, vb) = (format!("a{trial}\n"), format!("b{trial}\n"));
        // Both open the file before either closes: neither has seen the
        // other's version, so neither may replace it.
        let open = |dir: &Path| {
            fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(dir.join("f"))
                .unwrap()
        };
        let (mut wa, mut wb) = (open(&p.ra), open(&p.rb));
        wa.write_all(va.as_bytes()).unwrap();
        wb.write_all(vb.as_bytes()).unwrap();
        drop(wa);
        // B's close comes after A's version reached it, the hardest case.
        let listed = |d: &Daemon| ok(&p2pfs(d.data_dir(), &["room", "ls", "team"]));
        let hash_a = blake3::hash(va.as_bytes()).to_hex().to_string();
        wait_for(SYNC, "A's version to reach B", || {
            listed(&p.b).contains(&hash_a).then_some(())
        });
        drop(wb);
        let want = {
            let mut v = vec![va.into_bytes(), vb.into_bytes()];
            v.sort();
            v
        };
        let both = |dir: &Path| {
            let mut got: Vec<Vec<u8>> = files(dir).into_iter().map(|(_, b)| b).collect();
            got.sort();
            got
        };
        wait_for(SYNC, "both members to keep both versions", || {
            (both(&p.ra) == want && both(&p.rb) == want).then_some(())
        });
        // Resolve the conflict as a user would: remove the copy.
        let copy = files(&p.ra)
            .into_iter()
            .find(|(n, _)| n.starts_with("f.conflict-"))
            .unwrap_or_else(|| panic!("trial {trial}: no conflict copy: {:?}", files(&p.ra)))
            .0;
        fs::remove_file(p.ra.join(copy)).unwrap();
        wait_for(SYNC, "the conflict copy to go on both", || {
            (files(&p.ra).len() == 1 && files(&p.rb).len() == 1).then_some(())
        });
    }
}

#[test]
fn a_reader_closing_a_file_being_written_publishes_nothing() {
    p2pfs_tests::needs_root!();
    let p = pair();
    let mut w = fs::File::create(p.ra.join("new")).unwrap();
    w.write_all(&[b'x'; 40_000]).unwrap();
    // Another process opens it to read, and closes it.
    assert_eq!(cat(&p.ra.join("new")).len(), 40_000);
    p.a_to_b("after the reader");
    assert!(
        files(&p.rb).is_empty(),
        "published early: {:?}",
        files(&p.rb)
    );
    w.write_all(&[b'y'; 10_000]).unwrap();
    drop(w);
    let mut want = vec![b'x'; 40_000];
    want.extend([b'y'; 10_000]);
    holds(&p.rb.join("new"), &want, "B to read the whole file");
}

#[test]
fn a_truncating_open_beside_an_open_writer_empties_the_file() {
    p2pfs_tests::needs_root!();
    let p = pair();
    fs::write(p.ra.join("f"), b"the old content, longer than the new\n").unwrap();
    holds(
        &p.rb.join("f"),
        b"the old content, longer than the new\n",
        "B to read the first version",
    );
    // A process holds the file open to change it; another overwrites it.
    let held = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(p.ra.join("f"))
        .unwrap();
    fs::write(p.ra.join("f"), b"hi\n").unwrap();
    drop(held);
    assert_eq!(cat(&p.ra.join("f")), b"hi\n");
    holds(&p.rb.join("f"), b"hi\n", "B to read the new version");
}

#[test]
fn quick_rewrites_and_appends_publish_the_last_version() {
    p2pfs_tests::needs_root!();
    let p = pair();
    let mut want = String::new();
    for i in 0..50 {
        // Closed, then changed again before its batch may be written.
        fs::write(p.ra.join("f"), format!("v{i}\n")).unwrap();
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(p.ra.join("f"))
            .unwrap();
        f.write_all(format!("+{i}\n").as_bytes()).unwrap();
        drop(f);
        want = format!("v{i}\n+{i}\n");
        assert_eq!(
            fs::read_to_string(p.ra.join("f")).unwrap(),
            want,
            "here, round {i}"
        );
    }
    holds(
        &p.rb.join("f"),
        want.as_bytes(),
        "B to read the last version",
    );
    assert_eq!(
        files(&p.rb).len(),
        1,
        "no conflict copy: {:?}",
        files(&p.rb)
    );
}

#[test]
fn after_a_crash_fsynced_files_are_there_and_others_whole_or_absent() {
    p2pfs_tests::needs_root!();
    let mut p = pair();
    let mut written = Vec::new();
    for i in 0..200 {
        let body = format!("{i}\n").repeat(100 + i);
        fs::write(p.ra.join(format!("c{i}")), &body).unwrap();
        written.push((format!("c{i}"), body));
    }
    let synced = "synced";
    let mut f = fs::File::create(p.ra.join(synced)).unwrap();
    f.write_all(b"durable\n").unwrap();
    f.sync_all().unwrap();
    p.a.kill9();
    drop(f);
    let (data, mnt) = (p.a.data_dir().to_path_buf(), p.a.mountpoint().to_path_buf());
    p.a = Daemon::mount(&data, &mnt, &["--name", "alice"]);
    assert_eq!(fs::read(p.ra.join(synced)).unwrap(), b"durable\n");
    let mut present = 0;
    for (name, body) in &written {
        match fs::read_to_string(p.ra.join(name)) {
            Ok(got) => {
                assert_eq!(&got, body, "{name} is whole");
                present += 1;
            }
            Err(e) => assert_eq!(e.raw_os_error(), Some(2), "{name}: {e}"),
        }
    }
    // Closed before the fsync, so written with or before its batch.
    assert_eq!(present, written.len());
}
