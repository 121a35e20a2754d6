//! POSIX attributes in a room, seen from both members: permission bits
//! (setuid and setgid only where they were set), times to the nanosecond
//! (`utimensat` with `UTIME_OMIT`), directory times, owners kept on this
//! machine, and hard links (one inode, `nlink`, a write through one name
//! seen through the other, on both members).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::Path,
    process::Command,
    time::Duration,
};

use p2pfs_tests::{sh, two_mounts, wait_for};

/// `stat` fields of `p`, as `stat -c` prints them.
fn stat(p: &Path, format: &str) -> String {
    let out = Command::new("stat")
        .arg("-c")
        .arg(format)
        .arg(p)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Waits until `p` on the other member shows `want` for `format`.
fn wait_stat(p: &Path, format: &str, want: &str) {
    wait_for(
        Duration::from_secs(20),
        &format!("{} to show {want}", p.display()),
        || (stat(p, format) == want).then_some(()),
    );
}

#[test]
fn modes_and_times_are_kept_and_shown_on_the_other_member() {
    p2pfs_tests::needs_root!();
    let t = two_mounts();
    sh(
        &t.ra,
        "umask 027 && echo hi > f && mkdir d && chmod 0640 f && \
         touch -m -d '2001-02-03 04:05:06.123456789Z' f && \
         touch -a -d '2002-01-01 00:00:00.5Z' f && \
         echo x > setuid && chmod 4755 setuid && \
         mkdir -m 0700 private && touch -d '1999-12-31 23:59:59Z' private",
    );
    // Here: as set, to the nanosecond.
    assert_eq!(
        stat(&t.ra.join("f"), "%a %y"),
        "640 2001-02-03 04:05:06.123456789 +0000"
    );
    assert_eq!(
        stat(&t.ra.join("f"), "%x"),
        "2002-01-01 00:00:00.500000000 +0000"
    );
    assert_eq!(stat(&t.ra.join("d"), "%a"), "750");
    assert_eq!(stat(&t.ra.join("setuid"), "%a"), "4755");
    assert_eq!(
        stat(&t.ra.join("private"), "%a %y"),
        "700 1999-12-31 23:59:59.000000000 +0000"
    );
    // There: the same, but setuid is never applied on another member.
    wait_stat(
        &t.rb.join("f"),
        "%a %y",
        "640 2001-02-03 04:05:06.123456789 +0000",
    );
    assert_eq!(
        stat(&t.rb.join("f"), "%x"),
        "2002-01-01 00:00:00.500000000 +0000"
    );
    wait_stat(&t.rb.join("setuid"), "%a", "755");
    wait_stat(
        &t.rb.join("private"),
        "%a %y",
        "700 1999-12-31 23:59:59.000000000 +0000",
    );
    wait_stat(&t.rb.join("d"), "%a", "750");
    // UTIME_OMIT: touching the access time leaves the modification time.
    sh(&t.ra, "touch -a f");
    assert_eq!(
        stat(&t.ra.join("f"), "%y"),
        "2001-02-03 04:05:06.123456789 +0000"
    );
    // The x bit works as a program's.
    sh(
        &t.ra,
        "printf '#!/bin/sh\\necho ran\\n' > run && chmod 755 run",
    );
    wait_stat(&t.rb.join("run"), "%a", "755");
    assert_eq!(sh(&t.rb, "./run"), "ran\n");
    assert_eq!(
        fs::metadata(t.rb.join("f")).unwrap().permissions().mode() & 0o7777,
        0o640
    );
}

#[test]
fn directory_times_follow_their_content_and_ctime_follows_changes() {
    p2pfs_tests::needs_root!();
    let t = two_mounts();
    sh(&t.ra, "mkdir d && touch -d '2000-01-01Z' d");
    let old = fs::metadata(t.ra.join("d")).unwrap();
    assert_eq!(old.mtime(), 946_684_800);
    // A new name in it, then a removed one: its time moves on each.
    sh(&t.ra, "echo 1 > d/a");
    let m1 = fs::metadata(t.ra.join("d")).unwrap();
    assert!(
        m1.mtime() > old.mtime(),
        "{} then {}",
        old.mtime(),
        m1.mtime()
    );
    wait_for(Duration::from_secs(20), "B to see d/a", || {
        t.rb.join("d/a").exists().then_some(())
    });
    let b_time = fs::metadata(t.rb.join("d")).unwrap().mtime();
    assert!(
        b_time >= m1.mtime() - 1,
        "B shows {b_time}, A {}",
        m1.mtime()
    );
    // A directory's own time is not moved by a change in a subdirectory.
    sh(&t.ra, "mkdir d/sub && touch -d '2000-01-01Z' d");
    sh(&t.ra, "echo 2 > d/sub/x");
    assert_eq!(fs::metadata(t.ra.join("d")).unwrap().mtime(), 946_684_800);
    // chmod changes ctime, not mtime.
    let before = fs::metadata(t.ra.join("d/a")).unwrap();
    sh(&t.ra, "sleep 0.01; chmod 600 d/a");
    let after = fs::metadata(t.ra.join("d/a")).unwrap();
    assert_eq!(
        (after.mtime(), after.mtime_nsec()),
        (before.mtime(), before.mtime_nsec())
    );
    assert!(
        (after.ctime(), after.ctime_nsec()) > (before.ctime(), before.ctime_nsec()),
        "ctime did not move"
    );
}

#[test]
fn owners_are_kept_on_this_member() {
    p2pfs_tests::needs_root!();
    let t = two_mounts();
    sh(
        &t.ra,
        "echo x > f && chown 1234:5678 f && mkdir g && chown 99 g",
    );
    assert_eq!(stat(&t.ra.join("f"), "%u %g"), "1234 5678");
    assert_eq!(stat(&t.ra.join("g"), "%u"), "99");
    // Another member shows its own mount's user.
    wait_for(Duration::from_secs(20), "B to see f", || {
        t.rb.join("f").exists().then_some(())
    });
    assert_eq!(stat(&t.rb.join("f"), "%u %g"), "0 0");
}

#[test]
fn hard_links_are_one_file_on_both_members() {
    p2pfs_tests::needs_root!();
    let t = two_mounts();
    sh(&t.ra, "echo one > a && ln a b && mkdir d && ln a d/c");
    let (ia, ib) = (
        fs::metadata(t.ra.join("a")).unwrap(),
        fs::metadata(t.ra.join("b")).unwrap(),
    );
    assert_eq!(ia.ino(), ib.ino());
    assert_eq!(ia.nlink(), 3);
    wait_for(Duration::from_secs(20), "B to see the links", || {
        t.rb.join("d/c").exists().then_some(())
    });
    let (ja, jb) = (
        fs::metadata(t.rb.join("a")).unwrap(),
        fs::metadata(t.rb.join("d/c")).unwrap(),
    );
    assert_eq!(ja.ino(), jb.ino(), "one inode on B too");
    assert_eq!(ja.nlink(), 3);
    // A write through one name shows through the others, here and there.
    sh(&t.ra, "echo two > b");
    assert_eq!(fs::read_to_string(t.ra.join("a")).unwrap(), "two\n");
    assert_eq!(fs::read_to_string(t.ra.join("d/c")).unwrap(), "two\n");
    wait_for(
        Duration::from_secs(20),
        "B to read the new version through every name",
        || {
            ["a", "b", "d/c"]
                .iter()
                .all(|n| fs::read_to_string(t.rb.join(n)).is_ok_and(|s| s == "two\n"))
                .then_some(())
        },
    );
    // chmod through one name: every name.
    sh(&t.ra, "chmod 600 d/c");
    assert_eq!(stat(&t.ra.join("a"), "%a"), "600");
    wait_stat(&t.rb.join("b"), "%a", "600");
    // Unlinking one name leaves the others, one link fewer.
    sh(&t.ra, "rm a");
    assert_eq!(fs::metadata(t.ra.join("b")).unwrap().nlink(), 2);
    assert_eq!(fs::read_to_string(t.ra.join("b")).unwrap(), "two\n");
    wait_for(Duration::from_secs(20), "B to see a gone", || {
        (!t.rb.join("a").exists()).then_some(())
    });
    assert_eq!(fs::metadata(t.rb.join("b")).unwrap().nlink(), 2);
    // Links across rooms: EXDEV; to a directory: EPERM.
    let err = fs::hard_link(t.ra.join("d"), t.ra.join("e")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc_eperm()));
}

fn libc_eperm() -> i32 {
    1
}

#[test]
fn fallocate_sparse_files_and_rename_exchange() {
    p2pfs_tests::needs_root!();
    let t = two_mounts();
    // fallocate(1) calls fallocate(2) with mode 0: the file grows.
    sh(&t.ra, "fallocate -l 3M big && printf end >> big");
    assert_eq!(
        fs::metadata(t.ra.join("big")).unwrap().len(),
        3 * 1024 * 1024 + 3
    );
    // Punching holes is not offered.
    let out = Command::new("fallocate")
        .args(["-p", "-o", "0", "-l", "4096"])
        .arg(t.ra.join("big"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    // A sparse file: holes read as zeros, here and there.
    sh(
        &t.ra,
        "dd if=/dev/urandom of=sparse bs=4096 count=1 seek=2000 status=none && \
         truncate -s 20M sparse",
    );
    let sum = |dir: &Path| sh(dir, "sha256sum big sparse");
    let here = sum(&t.ra);
    let zeros = sh(&t.ra, "head -c 8192000 sparse | tr -d '\\0' | wc -c");
    assert_eq!(zeros.trim(), "0", "the hole reads as zeros");
    wait_for(Duration::from_secs(30), "B to read the same bytes", || {
        (t.rb.join("sparse").exists() && sum(&t.rb) == here).then_some(())
    });
    // RENAME_EXCHANGE: two files, then a file and a directory, trade
    // places, on both members.
    sh(
        &t.ra,
        "echo one > x && mkdir -p y/sub && echo two > y/sub/f && echo three > z",
    );
    let exchange = |a: &str, b: &str| {
        sh(
            &t.ra,
            &format!(
                "python3 -c 'import ctypes,sys; l=ctypes.CDLL(None, use_errno=True); \
                 r=l.renameat2(-100, b\"{a}\", -100, b\"{b}\", 2); \
                 sys.exit(ctypes.get_errno() if r else 0)'"
            ),
        )
    };
    exchange("x", "z");
    assert_eq!(fs::read_to_string(t.ra.join("x")).unwrap(), "three\n");
    assert_eq!(fs::read_to_string(t.ra.join("z")).unwrap(), "one\n");
    exchange("x", "y");
    assert_eq!(fs::read_to_string(t.ra.join("x/sub/f")).unwrap(), "two\n");
    assert_eq!(fs::read_to_string(t.ra.join("y")).unwrap(), "three\n");
    wait_for(Duration::from_secs(20), "B to see the exchanges", || {
        (fs::read_to_string(t.rb.join("x/sub/f")).is_ok_and(|s| s == "two\n")
            && fs::read_to_string(t.rb.join("y")).is_ok_and(|s| s == "three\n")
            && fs::read_to_string(t.rb.join("z")).is_ok_and(|s| s == "one\n"))
        .then_some(())
    });
}
