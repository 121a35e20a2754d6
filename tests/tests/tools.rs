//! Real tools inside a room, as people use a shared folder: a new
//! directory stays the working directory of the process that made it (the
//! mount's own changes, coming back from the log, never invalidate what
//! the kernel holds), `git init` and `sqlite3` in fresh directories.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{fs, path::Path, process::Command, time::Duration};

use p2pfs_tests::{Tmux, sh, two_mounts, wait_for};

#[test]
fn a_new_directory_stays_the_working_directory() {
    p2pfs_tests::needs_root!();
    let t = two_mounts();
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
    p2pfs_tests::needs_root!();
    let t = two_mounts();
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
    p2pfs_tests::needs_root!();
    let t = two_mounts();
    let data = t.a.data_dir();
    let work = t.root.path().join("x.txt");
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
    p2pfs_tests::needs_root!();
    let t = two_mounts();
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
    p2pfs_tests::needs_root!();
    let t = two_mounts();
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
    p2pfs_tests::needs_root!();
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    let t = two_mounts();
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
    p2pfs_tests::needs_root!();
    let t = two_mounts();
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
    p2pfs_tests::needs_root!();
    let t = two_mounts();
    let work = t.root.path().join("src");
    fs::create_dir_all(work.join("pkg/bin")).unwrap();
    fs::write(work.join("pkg/bin/tool"), "#!/bin/sh\necho tool\n").unwrap();
    sh(
        &work,
        "chmod +x pkg/bin/tool && ln -s bin/tool pkg/run && ln pkg/bin/tool pkg/tool-again && \
         tar -cf ../pkg.tar pkg",
    );
    let tar = t.root.path().join("pkg.tar");
    sh(&t.ra, &format!("tar -xf {}", tar.display()));
    assert_eq!(sh(&t.ra, "./pkg/run"), "tool\n");
    wait_for(Duration::from_secs(20), "the link on B", || {
        t.rb.join("pkg/run").symlink_metadata().ok().map(|_| ())
    });
    assert_eq!(sh(&t.rb, "./pkg/run"), "tool\n");
    // The hard link in the archive: one file with two names, on both.
    let links = "stat -c '%i %h' pkg/bin/tool pkg/tool-again";
    let a = sh(&t.ra, links);
    let a: Vec<&str> = a.lines().collect();
    assert_eq!(a[0], a[1], "one inode on A");
    assert!(a[0].ends_with(" 2"), "{a:?}");
    wait_for(Duration::from_secs(20), "the hard link on B", || {
        let b = sh(
            &t.rb,
            "stat -c '%i %h' pkg/bin/tool pkg/tool-again 2>/dev/null || true",
        );
        let b: Vec<&str> = b.lines().collect();
        (b.len() == 2 && b[0] == b[1] && b[0].ends_with(" 2")).then_some(())
    });
    assert_eq!(sh(&t.rb, "./pkg/tool-again"), "tool\n");
    sh(
        &t.ra,
        "python3 -m venv --without-pip venv && ./venv/bin/python -c 'print(1)'",
    );
}

/// Like [`sh`], but the failure is returned: stderr (and stdout) of a
/// script that failed.
fn try_sh(dir: &Path, script: &str) -> Result<String, String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("{script}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{script}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Polls `f` (as [`wait_for`] does) until it returns `Ok`; after
/// `timeout`, panics with the last `Err` (what still differed).
fn settle<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if std::time::Instant::now() >= deadline => {
                panic!("timed out waiting for {what}; last seen: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Ok if `got` is `want`, else an error showing both.
fn same(what: &str, want: &str, got: &str) -> Result<(), String> {
    if want == got {
        Ok(())
    } else {
        Err(format!("{what} differs\n--- want\n{want}\n--- got\n{got}"))
    }
}

/// Every entry under `dir` (`%y %p %l`: type, path, link target), sorted,
/// then the sha256 of every regular file: a tree's content in text.
fn manifest(dir: &Path) -> Result<String, String> {
    try_sh(
        dir,
        "find . -printf '%y %p %l\\n' | LC_ALL=C sort && \
         find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum",
    )
}

/// Git, whatever the machine's or user's configuration.
const GIT_ENV: &str = "export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null \
    GIT_AUTHOR_NAME=a GIT_AUTHOR_EMAIL=a@x GIT_COMMITTER_NAME=a GIT_COMMITTER_EMAIL=a@x; ";

#[test]
fn a_git_workflow_on_one_member_is_a_clean_repository_on_the_other() {
    p2pfs_tests::needs_root!();
    let t = two_mounts();
    sh(
        &t.ra,
        &format!(
            "{GIT_ENV} mkdir repo && cd repo && git init -q -b main && \
             mkdir -p src/util docs && echo 'fn main() {{}}' > src/main.rs && \
             echo 'pub fn f() {{}}' > src/util/mod.rs && echo '# readme' > README.md && \
             echo notes > docs/notes.txt && git add -A && git commit -q -m initial && \
             git branch feature && git checkout -q feature && \
             echo 'pub fn g() {{}}' >> src/util/mod.rs && echo new > src/util/new.rs && \
             git rm -q docs/notes.txt && git add -A && git commit -q -m 'on feature' && \
             git checkout -q main && test ! -e src/util/new.rs && test -e docs/notes.txt && \
             echo more >> README.md && git commit -q -am 'on main' && \
             git merge -q --no-edit feature && test -e src/util/new.rs && \
             test ! -e docs/notes.txt && test -z \"$(git status --porcelain)\" && \
             git fsck --full --no-dangling"
        ),
    );
    let repo_a = t.ra.join("repo");
    let head = sh(&repo_a, "git rev-parse HEAD");
    let log = sh(&repo_a, &format!("{GIT_ENV} git log --oneline --graph"));
    // Four commits, the last a merge (two parents).
    assert_eq!(
        sh(
            &repo_a,
            "git rev-list --count HEAD && git rev-list --count --merges HEAD"
        ),
        "4\n1\n"
    );
    wait_for(Duration::from_secs(30), "B to have A's HEAD", || {
        (try_sh(&t.rb, "git -C repo rev-parse HEAD").ok()? == head).then_some(())
    });
    // B only reads: `status` without optional locks does not rewrite the
    // index.
    let repo_b = t.rb.join("repo");
    settle(Duration::from_secs(30), "a clean repository on B", || {
        same(
            "git log",
            &log,
            &try_sh(&repo_b, &format!("{GIT_ENV} git log --oneline --graph"))?,
        )?;
        let status = try_sh(
            &repo_b,
            &format!("{GIT_ENV} git --no-optional-locks status --porcelain"),
        )?;
        same("git status --porcelain", "", &status)?;
        let fsck = try_sh(
            &repo_b,
            &format!("{GIT_ENV} git fsck --full --strict --no-dangling 2>&1"),
        )?;
        same("git fsck", "", &fsck)
    });
    assert_eq!(
        fs::read_to_string(repo_b.join("src/util/mod.rs")).unwrap(),
        "pub fn f() {}\npub fn g() {}\n"
    );
}

/// Writes the zip file `argv[1]`: nested directories, an empty one,
/// text, binary and empty files.
const MAKE_ZIP: &str = r#"
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:
    z.writestr('pkg/README.txt', 'read me\n')
    z.writestr('pkg/empty/', '')
    z.writestr('pkg/src/a/b/c/deep.txt', 'deep\n' * 100)
    z.writestr('pkg/src/a/one.py', 'print(1)\n')
    z.writestr('pkg/src/two.py', 'print(2)\n')
    z.writestr('pkg/data/blob.bin', os.urandom(300000))
    z.writestr('pkg/data/zero', '')
    for i in range(20):
        z.writestr(f'pkg/many/f{i:02}.txt', f'{i}\n' * i)
"#;

/// Runs the Python program `program` with `args` in `dir`.
fn python(dir: &Path, program: &str, args: &[&str]) {
    let out = Command::new("python3")
        .arg("-c")
        .arg(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn unzip_into_a_room_gives_the_same_tree_on_both_members() {
    p2pfs_tests::needs_root!();
    let t = two_mounts();
    let zip = t.root.path().join("pkg.zip");
    python(t.root.path(), MAKE_ZIP, &[zip.to_str().unwrap()]);
    let unpacked = t.root.path().join("unpacked");
    fs::create_dir(&unpacked).unwrap();
    sh(&unpacked, &format!("unzip -q {}", zip.display()));
    sh(&t.ra, &format!("unzip -q {}", zip.display()));
    let want = manifest(&unpacked.join("pkg")).unwrap();
    assert!(want.contains("d ./empty"), "{want}");
    assert_eq!(want.lines().filter(|l| l.contains("  ./")).count(), 26);
    same(
        "the tree on A",
        &want,
        &manifest(&t.ra.join("pkg")).unwrap(),
    )
    .unwrap();
    settle(Duration::from_secs(30), "the same tree on B", || {
        same("the tree on B", &want, &manifest(&t.rb.join("pkg"))?)
    });
}

#[test]
fn vim_saves_are_seen_on_both_members() {
    p2pfs_tests::needs_root!();
    let t = two_mounts();
    fs::write(t.ra.join("notes.txt"), "alpha\nbeta\ngamma\n").unwrap();
    wait_for(Duration::from_secs(20), "the file on B", || {
        t.rb.join("notes.txt").exists().then_some(())
    });
    // Ex mode, as scripts drive vim: the full vim, vim.tiny (Debian's
    // vim-tiny) and vi, each saving in place (`backupcopy=yes`: the file
    // is copied aside, then overwritten) and by rename (`backupcopy=no`:
    // the file is renamed aside and a new one written), with a swap file
    // and a backup beside it while it works.
    let mut added = String::new();
    for vim in ["vim", "vim.tiny", "vi"] {
        for bkc in ["yes", "no"] {
            sh(
                &t.ra,
                &format!(
                    "{vim} -Es -c 'set backupcopy={bkc} writebackup' \
                     -c '%s/^beta.*/beta {vim} {bkc}/' -c 'normal Goby {vim} {bkc}' \
                     -c wq notes.txt"
                ),
            );
            added.push_str(&format!("by {vim} {bkc}\n"));
            let want = format!("alpha\nbeta {vim} {bkc}\ngamma\n{added}");
            assert_eq!(
                fs::read_to_string(t.ra.join("notes.txt")).unwrap(),
                want,
                "{vim} backupcopy={bkc} on A"
            );
            settle(
                Duration::from_secs(20),
                &format!("{vim}'s save (backupcopy={bkc}) on B"),
                || {
                    same(
                        "notes.txt",
                        &want,
                        &fs::read_to_string(t.rb.join("notes.txt")).map_err(|e| e.to_string())?,
                    )
                },
            );
        }
    }
    // No swap or backup file is left on either member.
    assert_eq!(sh(&t.ra, "ls -A"), "chat.log\nnotes.txt\n");
    settle(Duration::from_secs(20), "B's listing to be A's", || {
        same("ls -A", "chat.log\nnotes.txt\n", &try_sh(&t.rb, "ls -A")?)
    });
}

#[test]
fn nano_saves_in_a_terminal_are_seen_on_both_members() {
    p2pfs_tests::needs_root!();
    let t = two_mounts();
    fs::write(t.ra.join("todo.txt"), "first line\nsecond line\n").unwrap();
    let term = Tmux::start(
        t.root.path().join("tmux.sock"),
        80,
        24,
        &t.ra,
        "nano -I todo.txt",
    );
    wait_for(Duration::from_secs(20), "nano to show the file", || {
        term.screen().contains("second line").then_some(())
    });
    // Typed at the top of the file, then ^O (write out), Enter (same
    // name), ^X (exit).
    term.keys(&["-l", "typed in nano"]);
    term.keys(&["Enter"]);
    wait_for(Duration::from_secs(20), "nano to show the typing", || {
        term.screen().contains("typed in nano").then_some(())
    });
    term.keys(&["C-o"]);
    wait_for(Duration::from_secs(20), "nano to ask for the name", || {
        term.screen().contains("File Name to Write").then_some(())
    });
    term.keys(&["Enter"]);
    let want = "typed in nano\nfirst line\nsecond line\n";
    settle(Duration::from_secs(20), "nano's save on A", || {
        same(
            "todo.txt",
            want,
            &fs::read_to_string(t.ra.join("todo.txt")).map_err(|e| e.to_string())?,
        )
    });
    term.keys(&["C-x"]);
    wait_for(Duration::from_secs(20), "nano to exit", || {
        (!term.running()).then_some(())
    });
    settle(Duration::from_secs(20), "nano's save on B", || {
        same(
            "todo.txt",
            want,
            &fs::read_to_string(t.rb.join("todo.txt")).map_err(|e| e.to_string())?,
        )
    });
    assert_eq!(sh(&t.ra, "ls -A"), "chat.log\ntodo.txt\n");
    settle(Duration::from_secs(20), "B's listing to be A's", || {
        same("ls -A", "chat.log\ntodo.txt\n", &try_sh(&t.rb, "ls -A")?)
    });
}

/// Writes `node_modules` as npm lays it out: 150 packages (ten scoped)
/// of 14 files each, and a `.bin` link to each package's command.
const MAKE_NODE_MODULES: &str = r#"
import os, json
pkgs = [f'pkg{i:03}' for i in range(140)] + [f'@scope/sc{i}' for i in range(10)]
os.makedirs('node_modules/.bin')
for p in pkgs:
    d = os.path.join('node_modules', p)
    os.makedirs(d + '/lib/internal')
    os.makedirs(d + '/bin')
    name = p.split('/')[-1]
    files = {
        'package.json': json.dumps({'name': p, 'version': '1.0.0', 'main': 'index.js',
                                    'bin': {name: 'bin/cli.js'}}, indent=2) + '\n',
        'index.js': "module.exports = require('./lib/l0');\n",
        'README.md': f'# {p}\n' + 'words ' * len(p) * 50 + '\n',
        'lib/internal/util.js': 'exports.u = 1;\n',
        'bin/cli.js': f'#!/bin/sh\necho "cli of {p}"\n',
    }
    for j in range(9):
        files[f'lib/l{j}.js'] = f'// {p} {j}\nexports.v = {j};\n' * (j + 1)
    for f, text in files.items():
        with open(os.path.join(d, f), 'w') as out:
            out.write(text)
    os.chmod(d + '/bin/cli.js', 0o755)
    os.symlink(f'../{p}/bin/cli.js', f'node_modules/.bin/{name}')
"#;

#[test]
fn an_npm_style_node_modules_tree_copies_with_its_bin_links() {
    p2pfs_tests::needs_root!();
    let t = two_mounts();
    let work = t.root.path().join("npm");
    fs::create_dir(&work).unwrap();
    python(&work, MAKE_NODE_MODULES, &[]);
    let want = manifest(&work.join("node_modules")).unwrap();
    assert_eq!(want.lines().filter(|l| l.starts_with("f ")).count(), 2100);
    assert_eq!(want.lines().filter(|l| l.starts_with("l ")).count(), 150);
    sh(&t.ra, &format!("cp -a {}/node_modules .", work.display()));
    let nm_a = t.ra.join("node_modules");
    same("the tree on A", &want, &manifest(&nm_a).unwrap()).unwrap();
    let nm_b = t.rb.join("node_modules");
    settle(Duration::from_secs(120), "the same tree on B", || {
        same("the tree on B", &want, &manifest(&nm_b)?)
    });
    // The commands run through their links, on both members.
    for (member, room) in [("A", &t.ra), ("B", &t.rb)] {
        for cmd in ["pkg000", "pkg139", "sc9"] {
            let who = if cmd == "sc9" { "@scope/sc9" } else { cmd };
            assert_eq!(
                sh(room, &format!("./node_modules/.bin/{cmd}")),
                format!("cli of {who}\n"),
                "{cmd} on {member}"
            );
        }
    }
}

#[test]
fn rsync_twice_transfers_nothing_the_second_time() {
    p2pfs_tests::needs_root!();
    let t = two_mounts();
    let src = t.root.path().join("src");
    fs::create_dir(&src).unwrap();
    // Nested directories, files of several sizes, an empty directory and
    // a link, a file that only its owner reads; times with nanoseconds
    // (as files get them when written) and old ones (every directory's,
    // so that a directory whose time is not kept is seen whenever the
    // test runs).
    sh(
        &src,
        "mkdir -p a/b/c/d empty x/y && echo top > top.txt && \
         head -c 200000 /dev/urandom > a/big.bin && echo deep > a/b/c/d/deep.txt && \
         : > a/b/zero && for i in 1 2 3 4 5 6 7 8; do echo $i > x/y/f$i; done && \
         ln -s ../top.txt a/link && chmod 700 a/b/c && chmod 600 x/y/f1 && \
         touch -d '2001-02-03 04:05:06.123456789' x/y/f2 && \
         touch -h -d '2002-03-04 05:06:07' a/link && \
         find . -type d -exec touch -d '2003-04-05 06:07:08.987654321' {} +",
    );
    let dst = t.ra.join("dst");
    let rsync = |flags: &str, to: &Path| {
        sh(
            &t.ra,
            &format!("rsync {flags} {}/ {}/", src.display(), to.display()),
        )
    };
    rsync("-a", &dst);
    // Run again, it finds nothing to do: `-i` itemizes every file it
    // would copy and every time, mode, owner it would set.
    let again_a = rsync("-ai", &dst);
    let want = manifest(&src).unwrap();
    same("the tree on A", &want, &manifest(&dst).unwrap()).unwrap();
    let dst_b = t.rb.join("dst");
    settle(Duration::from_secs(30), "the same tree on B", || {
        same("the tree on B", &want, &manifest(&dst_b)?)
    });
    assert_eq!(again_a, "", "what the second rsync changed on A");
    // From B's side too, once the last entries (the directories' times,
    // which rsync sets last) are there: a dry run, B only looks.
    settle(Duration::from_secs(30), "nothing to change on B", || {
        same("what rsync would change on B", "", &rsync("-ain", &dst_b))
    });
}
