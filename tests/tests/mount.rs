//! The mount, end to end: two `p2pfs mount` processes on 127.0.0.1, plain
//! file tools on both sides. A makes a room with `mkdir`, B joins with the
//! ticket; `cp`, `cp -r`, `rsync -a`, `mv`, `rm`, an editor's save,
//! concurrent writes, `tail -f chat.log`, random reads; then an unmount
//! and a `kill -9` with remounts. Every mount is unmounted on drop.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    fs,
    io::{BufRead, Write},
    os::unix::fs::{FileExt, MetadataExt},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use p2pfs_tests::{Daemon, blake3_file, fails, ok, p2pfs, random_file, temp_dir, wait_for};

const SYNC: Duration = Duration::from_secs(20);

/// Every file under `dir` (relative path → BLAKE3), `chat.log` aside.
fn tree(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if rel == "chat.log" {
                continue;
            }
            if p.is_dir() {
                out.insert(format!("{rel}/"), String::new());
                walk(root, &p, out);
            } else {
                out.insert(rel, blake3_file(&p));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Waits until both sides show the same tree, and returns it.
fn same_tree(a: &Path, b: &Path) -> BTreeMap<String, String> {
    wait_for(SYNC, "both mounts to show the same tree", || {
        let (ta, tb) = (tree(a), tree(b));
        (ta == tb).then_some(ta)
    })
}

fn getfattr(path: &Path, name: &str) -> String {
    let out = Command::new("getfattr")
        .args(["--only-values", "-n", name])
        .arg(path)
        .output()
        .expect("getfattr (package attr) runs");
    assert!(
        out.status.success(),
        "getfattr {name} {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn sh(script: &str) {
    let status = Command::new("sh").args(["-c", script]).status().unwrap();
    assert!(status.success(), "{script}");
}

/// A small tree of files of boundary sizes.
fn make_tree(dir: &Path, seed: u64) {
    for (i, (sub, size)) in [
        ("", 0u64),
        ("", 1),
        ("x", 16 * 1024),
        ("x", 16 * 1024 + 1),
        ("x/y", 100_000),
        ("z", 1 << 20),
    ]
    .iter()
    .enumerate()
    {
        let d = dir.join(sub);
        fs::create_dir_all(&d).unwrap();
        random_file(&d.join(format!("f{i}")), *size, seed + i as u64);
    }
}

#[test]
fn the_whole_story_with_plain_tools() {
    p2pfs_tests::needs_root!();
    let root = temp_dir();
    let work = root.path().join("work");
    fs::create_dir_all(&work).unwrap();
    let mut a = Daemon::mount(
        &root.path().join("a"),
        &root.path().join("mnt-a"),
        &["--name", "alice"],
    );
    let mut b = Daemon::mount(
        &root.path().join("b"),
        &root.path().join("mnt-b"),
        &["--name", "bob"],
    );

    // mkdir makes a room; B joins it with the ticket.
    let ra = a.mountpoint().join("team");
    fs::create_dir(&ra).unwrap();
    assert!(ra.join("chat.log").exists());
    // One copy: B fetches only what it reads (or pins), so that partial
    // reads can be seen.
    ok(&p2pfs(a.data_dir(), &["room", "set", "team", "copies=1"]));
    let rb = b.join_room_of(&a, "team");

    // cp of a file and of a tree: published when cp returns, read on B.
    random_file(&work.join("big.bin"), 3_000_000, 1);
    make_tree(&work.join("tree"), 10);
    sh(&format!("cp {}/big.bin {}/", work.display(), ra.display()));
    sh(&format!("cp -r {}/tree {}/", work.display(), ra.display()));
    assert_eq!(
        getfattr(&ra.join("big.bin"), "user.p2pfs.hash"),
        blake3_file(&work.join("big.bin"))
    );
    let t = same_tree(&ra, &rb);
    assert_eq!(t["big.bin"], blake3_file(&work.join("big.bin")));
    assert_eq!(t["tree/x/y/f4"], blake3_file(&work.join("tree/x/y/f4")));
    assert_eq!(tree(&rb.join("tree")), tree(&work.join("tree")));

    // rsync -a (temp file, then rename): content and mtimes as on a disk,
    // and no temp file left anywhere.
    make_tree(&work.join("rs"), 20);
    sh(&format!(
        "rsync -a {}/rs/ {}/rs/",
        work.display(),
        ra.display()
    ));
    same_tree(&ra, &rb);
    assert_eq!(tree(&rb.join("rs")), tree(&work.join("rs")));
    let (src, dst) = (work.join("rs/x/f2"), rb.join("rs/x/f2"));
    let mtime = |p: &Path| fs::metadata(p).unwrap().mtime();
    assert_eq!(mtime(&dst), mtime(&src), "rsync -a keeps mtimes");

    // What rsync does per file, as fast as a program can: write, close,
    // set the mtime by path at once (while the close is still being
    // published), rename. No mtime is lost (one in ten was, once).
    fs::create_dir(ra.join("times")).unwrap();
    let when = rustix::fs::Timespec {
        tv_sec: 1_000_000_000,
        tv_nsec: 0,
    };
    let times = rustix::fs::Timestamps {
        last_access: when,
        last_modification: when,
    };
    for i in 0..100 {
        let tmp = ra.join(format!("times/.f{i}.tmp"));
        fs::write(&tmp, i.to_string()).unwrap();
        let flags = rustix::fs::AtFlags::empty();
        rustix::fs::utimensat(rustix::fs::CWD, &tmp, &times, flags).unwrap();
        fs::rename(&tmp, ra.join(format!("times/f{i}"))).unwrap();
    }
    let t = same_tree(&ra, &rb);
    let left: Vec<_> = t.keys().filter(|p| p.ends_with(".tmp")).collect();
    assert!(left.is_empty(), "temp files left: {left:?}");
    for i in 0..100 {
        let f = rb.join(format!("times/f{i}"));
        assert_eq!(mtime(&f), 1_000_000_000, "mtime of {}", f.display());
    }

    // mv and rm, of files and directories.
    fs::rename(ra.join("big.bin"), ra.join("renamed.bin")).unwrap();
    fs::rename(ra.join("tree/x"), ra.join("moved")).unwrap();
    fs::remove_file(ra.join("tree/f0")).unwrap();
    fs::create_dir(ra.join("empty")).unwrap();
    let t = same_tree(&ra, &rb);
    assert!(
        t.contains_key("renamed.bin") && !t.contains_key("big.bin"),
        "{t:?}"
    );
    assert!(
        t.contains_key("moved/y/f4") && !t.contains_key("tree/x/"),
        "{t:?}"
    );
    assert!(
        t.contains_key("tree/f1") && !t.contains_key("tree/f0"),
        "{t:?}"
    );
    assert!(
        t.contains_key("empty/"),
        "mkdir keeps an empty directory: {t:?}"
    );
    fs::remove_dir(ra.join("empty")).unwrap();
    assert!(matches!(
        fs::remove_dir(ra.join("moved")).map_err(|e| e.raw_os_error()),
        Err(Some(39)) // ENOTEMPTY
    ));

    // An editor's save, the vim way: swap file, backup by rename, new
    // file written, backup and swap removed.
    fs::write(ra.join("notes.txt"), "line one\n").unwrap();
    {
        let mut swap = fs::File::create(ra.join(".notes.txt.swp")).unwrap();
        swap.write_all(b"swap").unwrap();
        fs::rename(ra.join("notes.txt"), ra.join("notes.txt~")).unwrap();
        fs::write(ra.join("notes.txt"), "line one\nline two\n").unwrap();
        fs::remove_file(ra.join("notes.txt~")).unwrap();
        drop(swap);
        fs::remove_file(ra.join(".notes.txt.swp")).unwrap();
    }
    let t = same_tree(&ra, &rb);
    assert_eq!(
        fs::read_to_string(rb.join("notes.txt")).unwrap(),
        "line one\nline two\n"
    );
    assert!(
        !t.keys().any(|k| k.contains(".swp") || k.ends_with('~')),
        "no temp file lasts: {t:?}"
    );
    if Command::new("vim").arg("--version").output().is_ok() {
        let status = Command::new("vim")
            .args(["-u", "NONE", "-N", "-es", "+%s/two/TWO/", "+w", "+q"])
            .arg(rb.join("notes.txt"))
            .stdin(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        wait_for(SYNC, "vim's save on B to reach A", || {
            (fs::read_to_string(ra.join("notes.txt")).ok()? == "line one\nline TWO\n").then_some(())
        });
        let t = same_tree(&ra, &rb);
        assert!(
            !t.keys().any(|k| k.contains(".swp") || k.ends_with('~')),
            "{t:?}"
        );
    }

    // Concurrent writes of one name on both sides: both versions kept.
    let (wa, wb) = (ra.join("same.txt"), rb.join("same.txt"));
    std::thread::scope(|s| {
        s.spawn(|| fs::write(&wa, "from A\n").unwrap());
        s.spawn(|| fs::write(&wb, "from B\n").unwrap());
    });
    let t = wait_for(SYNC, "both versions on both sides", || {
        let t = same_tree(&ra, &rb);
        (t.keys().filter(|k| k.starts_with("same.txt")).count() == 2).then_some(t)
    });
    let mut versions: Vec<String> = t
        .keys()
        .filter(|k| k.starts_with("same.txt"))
        .map(|k| fs::read_to_string(ra.join(k)).unwrap())
        .collect();
    versions.sort();
    assert_eq!(versions, vec!["from A\n", "from B\n"]);

    // Random reads of a remote file fetch only what they touch.
    random_file(&work.join("large.bin"), 40 << 20, 7);
    sh(&format!(
        "cp {}/large.bin {}/",
        work.display(),
        ra.display()
    ));
    let remote = rb.join("large.bin");
    wait_for(SYNC, "the large file on B", || {
        remote.exists().then_some(())
    });
    assert_eq!(
        fs::metadata(&remote).unwrap().len(),
        40 << 20,
        "stat answers the true size"
    );
    let (fa, fb) = (
        fs::File::open(work.join("large.bin")).unwrap(),
        fs::File::open(&remote).unwrap(),
    );
    let mut rng = fastrand::Rng::with_seed(3);
    for _ in 0..10 {
        let off = rng.u64(0..(40 << 20) - 65536);
        let (mut x, mut y) = (vec![0u8; 65536], vec![0u8; 65536]);
        fa.read_exact_at(&mut x, off).unwrap();
        fb.read_exact_at(&mut y, off).unwrap();
        assert!(x == y, "bytes at {off} differ");
    }
    let local: u64 = getfattr(&remote, "user.p2pfs.local").parse().unwrap();
    assert!(
        local > 0 && local < 40 << 20,
        "only the ranges read were fetched: {local}"
    );
    assert_eq!(blake3_file(&remote), blake3_file(&work.join("large.bin")));

    // user.p2pfs.copies counts the members online holding a file;
    // user.p2pfs.pin keeps one here whatever the placement.
    random_file(&work.join("kept.bin"), 2_000_000, 9);
    sh(&format!("cp {}/kept.bin {}/", work.display(), ra.display()));
    let kept_b = rb.join("kept.bin");
    wait_for(SYNC, "the new file on B", || kept_b.exists().then_some(()));
    assert_eq!(
        getfattr(&ra.join("kept.bin"), "user.p2pfs.copies"),
        "1 (only here)"
    );
    assert_eq!(getfattr(&kept_b, "user.p2pfs.pin"), "0");
    sh(&format!(
        "setfattr -n user.p2pfs.pin -v 1 {}",
        kept_b.display()
    ));
    assert_eq!(getfattr(&kept_b, "user.p2pfs.pin"), "1");
    wait_for(SYNC, "the pinned file fetched and counted", || {
        (getfattr(&kept_b, "user.p2pfs.local") == "2000000"
            && getfattr(&ra.join("kept.bin"), "user.p2pfs.copies") == "2")
            .then_some(())
    });
    sh(&format!("setfattr -x user.p2pfs.pin {}", kept_b.display()));
    assert_eq!(getfattr(&kept_b, "user.p2pfs.pin"), "0");
    let bad = Command::new("setfattr")
        .args(["-n", "user.other", "-v", "1"])
        .arg(&kept_b)
        .output()
        .unwrap();
    assert!(!bad.status.success(), "only user.p2pfs.pin can be set");

    // Unmount and mount again: everything is still there.
    let before = tree(&ra);
    a.terminate();
    drop(a);
    let a = Daemon::mount(
        &root.path().join("a"),
        &root.path().join("mnt-a"),
        &["--name", "alice"],
    );
    assert_eq!(tree(&a.mountpoint().join("team")), before);

    // kill -9 of the mount process: the stale mount is cleaned up by the
    // next mount, and the files read before are local.
    b.kill9();
    let stale = fs::read_dir(b.mountpoint()).map_err(|e| e.raw_os_error());
    assert_eq!(
        stale.err(),
        Some(Some(107)),
        "a dead mount answers ENOTCONN"
    );
    let mnt_b = b.mountpoint().to_path_buf();
    let b2 = Daemon::mount(&root.path().join("b"), &mnt_b, &["--name", "bob"]);
    drop(b);
    let rb = b2.mountpoint().join("team");
    assert_eq!(same_tree(&a.mountpoint().join("team"), &rb), before);
}

#[test]
fn chat_log_is_append_only_and_tail_f_follows_it() {
    p2pfs_tests::needs_root!();
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
    fs::create_dir(a.mountpoint().join("talk")).unwrap();
    let rb = b.join_room_of(&a, "talk");
    let (ca, cb) = (a.mountpoint().join("talk/chat.log"), rb.join("chat.log"));

    let mut tail = Command::new("tail")
        .args(["-F", "-n", "+1", "-s", "0.1"])
        .arg(&cb)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = tail.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    sh(&format!("echo 'hello from alice' >> {}", ca.display()));
    sh(&format!("printf 'two\\nlines\\n' >> {}", ca.display()));
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let line = rx
            .recv_timeout(SYNC)
            .expect("tail -f shows A's messages on B");
        seen.push(line);
    }
    let _ = tail.kill();
    let _ = tail.wait();
    assert!(seen[0].ends_with(" alice: hello from alice"), "{seen:?}");
    assert!(
        seen[1].ends_with(" alice: two") && seen[2].ends_with(" alice: lines"),
        "{seen:?}"
    );

    // B's append arrives at A; the chat only grows.
    let shown = fs::read(&ca).unwrap();
    sh(&format!("echo 'bob here' >> {}", cb.display()));
    wait_for(SYNC, "B's message at A", || {
        fs::read_to_string(&ca)
            .ok()?
            .contains("bob: bob here")
            .then_some(())
    });
    assert!(
        fs::read(&ca).unwrap().starts_with(&shown),
        "bytes shown never change"
    );

    // Writes elsewhere and truncation fail with EPERM; so does deleting.
    let eperm = |r: std::io::Result<()>| assert_eq!(r.unwrap_err().raw_os_error(), Some(1));
    eperm(fs::write(&ca, "rewrite\n"));
    eperm(
        fs::OpenOptions::new()
            .write(true)
            .open(&ca)
            .and_then(|f| f.write_all_at(b"x", 0)),
    );
    eperm(
        fs::OpenOptions::new()
            .write(true)
            .open(&ca)
            .and_then(|f| f.set_len(0)),
    );
    eperm(fs::remove_file(&ca));
    // The chat is what `p2pfs chat` prints.
    assert_eq!(
        fs::read_to_string(&ca).unwrap(),
        ok(&p2pfs(a.data_dir(), &["chat", "talk"]))
    );

    // `p2pfs umount`: refused while a file is open there, then done; the
    // mount's process ends on its own.
    let mut a = a;
    let mnt = a.mountpoint().to_str().unwrap().to_string();
    let open = fs::File::open(&ca).unwrap();
    let busy = fails(&p2pfs(a.data_dir(), &["umount", &mnt]));
    assert!(busy.contains("busy"), "{busy}");
    drop(open);
    ok(&p2pfs(a.data_dir(), &["umount", &mnt]));
    assert!(a.wait_exit(Duration::from_secs(20)).success());
    assert!(!p2pfs_tests::is_mount_point(Path::new(&mnt)));
    let again = fails(&p2pfs(a.data_dir(), &["umount", &mnt]));
    assert!(again.contains("no p2pfs filesystem is mounted"), "{again}");
}

#[test]
fn a_read_no_member_can_serve_fails_with_eio() {
    p2pfs_tests::needs_root!();
    let root = temp_dir();
    let mut a = Daemon::mount(&root.path().join("a"), &root.path().join("mnt-a"), &[]);
    let b = Daemon::mount(&root.path().join("b"), &root.path().join("mnt-b"), &[]);
    fs::create_dir(a.mountpoint().join("r")).unwrap();
    // One copy: B holds nothing of its own.
    ok(&p2pfs(a.data_dir(), &["room", "set", "r", "copies=1"]));
    let rb = b.join_room_of(&a, "r");
    random_file(&a.mountpoint().join("r/only-on-a.bin"), 1 << 20, 5);
    let f = rb.join("only-on-a.bin");
    wait_for(SYNC, "the file listed on B", || f.exists().then_some(()));
    assert_eq!(fs::metadata(&f).unwrap().len(), 1 << 20);
    a.kill9();
    let started = std::time::Instant::now();
    let err = fs::read(&f).expect_err("nobody can serve it");
    assert_eq!(err.raw_os_error(), Some(5), "EIO: {err}");
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "bounded: {:?}",
        started.elapsed()
    );
    // The listing and the rest of the mount still work.
    assert!(rb.join("chat.log").exists());
}
