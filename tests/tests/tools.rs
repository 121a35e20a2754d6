//! Real tools inside a room, as people use a shared folder: a new
//! directory stays the working directory of the process that made it (the
//! mount's own changes, coming back from the log, never invalidate what
//! the kernel holds), `git init` and `sqlite3` in fresh directories.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use p2pfs_tests::{Daemon, temp_dir, wait_for};

struct Two {
    _root: tempfile::TempDir,
    _a: Daemon,
    _b: Daemon,
    ra: PathBuf,
    rb: PathBuf,
}

/// Two mounts in one room.
fn two() -> Two {
    let root = temp_dir();
    let a = Daemon::mount(&root.path().join("a"), &root.path().join("mnt-a"), &[]);
    let b = Daemon::mount(&root.path().join("b"), &root.path().join("mnt-b"), &[]);
    let ra = a.mountpoint().join("team");
    fs::create_dir(&ra).unwrap();
    let rb = b.join_room_of(&a, "team");
    Two {
        _root: root,
        _a: a,
        _b: b,
        ra,
        rb,
    }
}

/// Runs `script` with `sh -c` in `dir`; returns its stdout, or panics with
/// its stderr.
fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_new_directory_stays_the_working_directory() {
    let t = two();
    for i in 0..40 {
        // `pwd -P` asks the kernel (getcwd): "(deleted)" or an error if
        // the directory was invalidated under the process.
        let got = sh(
            &t.ra,
            &format!("mkdir d{i} && cd d{i} && sleep 0.05 && pwd -P && touch f"),
        );
        assert_eq!(
            got.trim(),
            t.ra.join(format!("d{i}")).to_str().unwrap(),
            "round {i}"
        );
    }
    wait_for(Duration::from_secs(20), "B to list the directories", || {
        (1..40)
            .all(|i| t.rb.join(format!("d{i}/f")).exists())
            .then_some(())
    });
}

#[test]
fn git_and_sqlite_work_in_fresh_directories() {
    let t = two();
    for i in 0..8 {
        let repo = format!("repo{i}");
        sh(
            &t.ra,
            &format!(
                "mkdir {repo} && cd {repo} && git init -q && \
                 git -c user.name=a -c user.email=a@x commit -q --allow-empty -m first && \
                 git rev-parse HEAD"
            ),
        );
        let db = format!("db{i}");
        let rows = sh(
            &t.ra,
            &format!(
                "mkdir {db} && cd {db} && sqlite3 new.db \
                 'create table t(x); insert into t values (1),(2); select count(*) from t;'"
            ),
        );
        assert_eq!(rows.trim(), "2", "{db}");
    }
    wait_for(Duration::from_secs(30), "B to see the databases", || {
        t.rb.join("db7/new.db").exists().then_some(())
    });
    let rows = sh(&t.rb.join("db7"), "sqlite3 new.db 'select sum(x) from t;'");
    assert_eq!(rows.trim(), "3");
}

#[test]
fn the_room_keeps_its_shape() {
    let t = two();
    let data = t._a.data_dir();
    let work = t._root.path().join("x.txt");
    fs::write(&work, "x\n").unwrap();
    let put = |name: &str| {
        p2pfs_tests::p2pfs(data, &["room", "put", "team", work.to_str().unwrap(), name])
    };
    for bad in ["chat.log", "chat.log/x", "chat.log/x/y"] {
        let e = p2pfs_tests::fails(&put(bad));
        assert!(e.contains("chat.log is the room's chat"), "{bad}: {e}");
    }
    p2pfs_tests::ok(&put("f1"));
    let e = p2pfs_tests::fails(&put("f1/x"));
    assert!(e.contains("\"f1\" is a file in the room"), "{e}");
    fs::create_dir(t.ra.join("d")).unwrap();
    let e = p2pfs_tests::fails(&put("d"));
    assert!(e.contains("\"d\" is a directory"), "{e}");
    let listed = p2pfs_tests::ok(&p2pfs_tests::p2pfs(data, &["room", "ls", "team"]));
    assert!(
        !listed.contains("conflict") && !listed.contains("chat.log"),
        "{listed}"
    );

    // A chat line over 4096 bytes is refused whole, however it is written.
    use std::io::Write;
    let chat = t.ra.join("chat.log");
    let mut f = fs::OpenOptions::new().append(true).open(&chat).unwrap();
    let long = "y".repeat(5000);
    let e = f.write_all(format!("{long}\n").as_bytes()).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(90), "EMSGSIZE: {e}");
    let mut g = fs::OpenOptions::new().append(true).open(&chat).unwrap();
    g.write_all(&long.as_bytes()[..3000]).unwrap();
    let e = g.write_all(&long.as_bytes()[3000..]).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(90), "EMSGSIZE in pieces: {e}");
    drop(g);
    f.write_all(b"short line\n").unwrap();
    drop(f);
    wait_for(Duration::from_secs(20), "the short line on B", || {
        fs::read_to_string(t.rb.join("chat.log"))
            .ok()?
            .contains("short line")
            .then_some(())
    });
    let shown = fs::read_to_string(t.rb.join("chat.log")).unwrap();
    assert!(!shown.contains("yyy"), "nothing of the long line: {shown}");
}

#[test]
fn copying_tools_copy_between_rooms_without_tripping_on_attributes() {
    let t = two();
    let other = t.ra.parent().unwrap().join("other");
    fs::create_dir(&other).unwrap();
    fs::create_dir_all(t.ra.join("src/sub")).unwrap();
    fs::write(t.ra.join("src/a.txt"), "a\n").unwrap();
    fs::write(t.ra.join("src/sub/b.txt"), "b\n").unwrap();
    // Attributes are answered by name, and not listed.
    let hash = Command::new("getfattr")
        .args(["--only-values", "-n", "user.p2pfs.hash"])
        .arg(t.ra.join("src/a.txt"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&hash.stdout),
        blake3::hash(b"a\n").to_hex().as_str()
    );
    let listed = Command::new("getfattr")
        .args(["-d", "-m", "-"])
        .arg(t.ra.join("src/a.txt"))
        .output()
        .unwrap();
    assert!(
        listed.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&listed.stdout)
    );
    // Setting one to its own value is accepted.
    let same = Command::new("setfattr")
        .args(["-n", "user.p2pfs.hash", "-v"])
        .arg(blake3::hash(b"a\n").to_hex().as_str())
        .arg(t.ra.join("src/a.txt"))
        .status()
        .unwrap();
    assert!(same.success());
    let src = t.ra.join("src");
    sh(
        &t.ra,
        &format!("rsync -aX {}/ {}/rs/", src.display(), other.display()),
    );
    sh(
        &t.ra,
        &format!("cp -a {} {}/cp", src.display(), other.display()),
    );
    sh(
        &t.ra,
        &format!("mv {} {}/mv", src.display(), other.display()),
    );
    for d in ["rs", "cp", "mv"] {
        assert_eq!(
            fs::read_to_string(other.join(d).join("sub/b.txt")).unwrap(),
            "b\n",
            "{d}"
        );
    }
}

#[test]
fn names_up_to_255_bytes_and_enametoolong_past_them() {
    let t = two();
    let ok_name = "n".repeat(255);
    fs::write(t.ra.join(&ok_name), "x").unwrap();
    assert_eq!(fs::read_to_string(t.ra.join(&ok_name)).unwrap(), "x");
    let long = "n".repeat(256);
    for e in [
        fs::write(t.ra.join(&long), "x").unwrap_err(),
        fs::create_dir(t.ra.join(&long)).unwrap_err(),
        fs::metadata(t.ra.join(&long)).unwrap_err(),
    ] {
        assert_eq!(e.raw_os_error(), Some(36), "ENAMETOOLONG: {e}");
    }
    let st = rustix::fs::statvfs(&t.ra).unwrap();
    assert_eq!(st.f_namemax, 255);
    wait_for(Duration::from_secs(20), "B to list the long name", || {
        t.rb.join(&ok_name).exists().then_some(())
    });
}

#[test]
fn fifos_sockets_and_devices_stay_on_this_member() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    let t = two();
    // A FIFO works as on a local disk.
    let out = sh(
        &t.ra,
        "mkfifo -m 640 pipe && (echo through > pipe &) && cat pipe && stat -c %a pipe",
    );
    assert_eq!(out, "through\n640\n");
    let m = fs::metadata(t.ra.join("pipe")).unwrap();
    assert!(m.file_type().is_fifo());
    sh(&t.ra, "chmod 600 pipe && chown 1:1 pipe");
    let m = fs::metadata(t.ra.join("pipe")).unwrap();
    assert_eq!(
        (m.permissions().mode() & 0o777, m.uid(), m.gid()),
        (0o600, 1, 1)
    );
    // A Unix socket binds; a device node is made (the mount opens none).
    let sock = t.ra.join("s.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    assert!(fs::metadata(&sock).unwrap().file_type().is_socket());
    sh(&t.ra, "mknod dev c 1 3 && ln pipe pipe2 && stat -c %h pipe");
    assert!(
        fs::metadata(t.ra.join("dev"))
            .unwrap()
            .file_type()
            .is_char_device()
    );
    assert_eq!(fs::metadata(t.ra.join("pipe2")).unwrap().nlink(), 2);
    // One file under two names: one inode number.
    assert_eq!(
        fs::metadata(t.ra.join("pipe2")).unwrap().ino(),
        fs::metadata(t.ra.join("pipe")).unwrap().ino()
    );
    // A regular file made with mknod is published like any file.
    sh(
        &t.ra,
        "mknod plain p; rm plain; python3 -c \"import os; os.mknod('reg')\"",
    );
    wait_for(Duration::from_secs(20), "the regular file on B", || {
        t.rb.join("reg").exists().then_some(())
    });
    // None of the special files went to the other member.
    for name in ["pipe", "pipe2", "s.sock", "dev"] {
        assert!(!t.rb.join(name).exists(), "{name} on B");
    }
    sh(&t.ra, "rm pipe pipe2 dev s.sock");
    assert_eq!(sh(&t.ra, "ls"), "chat.log\nreg\n");
}

#[test]
fn symbolic_links_are_published_as_written() {
    let t = two();
    sh(
        &t.ra,
        "mkdir -p lib/v1 && echo one > lib/v1/data && ln -s v1 lib/current && \
         ln -s lib/current/data top && ln -s /etc/hostname abs && ln -s nowhere dangling",
    );
    assert_eq!(fs::read_to_string(t.ra.join("top")).unwrap(), "one\n");
    wait_for(Duration::from_secs(20), "the links on B", || {
        t.rb.join("dangling").symlink_metadata().ok().map(|_| ())
    });
    for (link, target) in [
        ("lib/current", "v1"),
        ("top", "lib/current/data"),
        ("abs", "/etc/hostname"),
        ("dangling", "nowhere"),
    ] {
        assert_eq!(
            fs::read_link(t.rb.join(link)).unwrap().to_str().unwrap(),
            target,
            "{link}"
        );
    }
    assert_eq!(fs::read_to_string(t.rb.join("top")).unwrap(), "one\n");
    // Replaced, renamed and removed like files; a directory moves with its
    // links.
    sh(
        &t.ra,
        "ln -sfn v2 lib/current && mv dangling gone && rm abs && mv lib lib2",
    );
    wait_for(Duration::from_secs(20), "the changes on B", || {
        (fs::read_link(t.rb.join("lib2/current")).ok()?.to_str()? == "v2"
            && t.rb.join("gone").symlink_metadata().is_ok()
            && t.rb.join("abs").symlink_metadata().is_err())
        .then_some(())
    });
}

#[test]
fn tarballs_with_links_and_a_python_venv_unpack_in_a_room() {
    let t = two();
    let work = t._root.path().join("src");
    fs::create_dir_all(work.join("pkg/bin")).unwrap();
    fs::write(work.join("pkg/bin/tool"), "#!/bin/sh\necho tool\n").unwrap();
    sh(
        &work,
        "chmod +x pkg/bin/tool && ln -s bin/tool pkg/run && tar -cf ../pkg.tar pkg",
    );
    let tar = t._root.path().join("pkg.tar");
    sh(&t.ra, &format!("tar -xf {}", tar.display()));
    assert_eq!(sh(&t.ra, "./pkg/run"), "tool\n");
    wait_for(Duration::from_secs(20), "the link on B", || {
        t.rb.join("pkg/run").symlink_metadata().ok().map(|_| ())
    });
    assert_eq!(sh(&t.rb, "./pkg/run"), "tool\n");
    sh(
        &t.ra,
        "python3 -m venv --without-pip venv && ./venv/bin/python -c 'print(1)'",
    );
}
