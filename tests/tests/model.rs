//! A model test: random sequences of file operations (create, write,
//! append, truncate, rename, unlink, mkdir, rmdir, chmod of the executable
//! bit, symlink) applied to a room
//! through the mount and to a plain directory; after every step both
//! trees (names, kinds, contents) and both outcomes (success or errno) are
//! the same; after each sequence the other member shows the same tree.
//! Fixed seeds, a bounded number of steps (`P2PFS_MODEL_STEPS`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    fs,
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use p2pfs_tests::{Daemon, temp_dir, wait_for};

/// One name of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Thing {
    Dir,
    /// Its content and whether it is executable.
    File(Vec<u8>, bool),
    /// Its target.
    Link(PathBuf),
}

/// What a tree holds, by path.
type Shape = BTreeMap<String, Thing>;

fn shape(root: &Path) -> Shape {
    fn walk(root: &Path, dir: &Path, out: &mut Shape) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if rel == "chat.log" {
                continue;
            }
            let Ok(meta) = fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.file_type().is_symlink() {
                out.insert(rel, Thing::Link(fs::read_link(&p).unwrap_or_default()));
            } else if meta.is_dir() {
                out.insert(rel, Thing::Dir);
                walk(root, &p, out);
            } else {
                use std::os::unix::fs::PermissionsExt;
                let exec = meta.permissions().mode() & 0o100 != 0;
                out.insert(rel, Thing::File(fs::read(&p).unwrap_or_default(), exec));
            }
        }
    }
    let mut out = Shape::new();
    walk(root, root, &mut out);
    out
}

/// One operation, on paths relative to a root.
#[derive(Debug, Clone)]
enum Op {
    Write(String, Vec<u8>),
    Append(String, Vec<u8>),
    Truncate(String, u64),
    Rename(String, String),
    Unlink(String),
    Mkdir(String),
    Rmdir(String),
    /// `chmod 755` or `chmod 644` of a file (the mount keeps the
    /// executable bit only).
    Chmod(String, bool),
    /// A symbolic link at the path to the target.
    Symlink(String, String),
}

/// Applies `op` under `root`; the errno if it failed.
fn apply(root: &Path, op: &Op) -> Option<i32> {
    let p = |s: &String| root.join(s);
    let r = match op {
        Op::Write(f, data) => fs::write(p(f), data),
        Op::Append(f, data) => fs::OpenOptions::new()
            .append(true)
            .open(p(f))
            .and_then(|mut h| h.write_all(data)),
        Op::Truncate(f, len) => fs::OpenOptions::new()
            .write(true)
            .open(p(f))
            .and_then(|h| h.set_len(*len)),
        Op::Rename(a, b) => fs::rename(p(a), p(b)),
        Op::Unlink(f) => fs::remove_file(p(f)),
        Op::Mkdir(d) => fs::create_dir(p(d)),
        Op::Rmdir(d) => fs::remove_dir(p(d)),
        Op::Symlink(l, target) => std::os::unix::fs::symlink(target, p(l)),
        Op::Chmod(f, exec) => {
            use std::os::unix::fs::PermissionsExt;
            let mode = if *exec { 0o755 } else { 0o644 };
            match fs::metadata(p(f)) {
                Ok(m) if m.is_file() => fs::set_permissions(p(f), fs::Permissions::from_mode(mode)),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            }
        }
    };
    r.err().map(|e| e.raw_os_error().unwrap_or(-1))
}

/// A random path of one to three names from a small alphabet (so that
/// operations meet each other).
fn path(rng: &mut fastrand::Rng) -> String {
    let names = ["a", "b", "c", "d"];
    (0..rng.usize(1..=3))
        .map(|_| names[rng.usize(..names.len())])
        .collect::<Vec<_>>()
        .join("/")
}

fn op(rng: &mut fastrand::Rng) -> Op {
    let bytes = |rng: &mut fastrand::Rng| {
        let n = rng.usize(0..3000);
        (0..n).map(|_| rng.u8(..)).collect::<Vec<u8>>()
    };
    match rng.u8(0..12) {
        11 => Op::Symlink(path(rng), path(rng)),
        10 => Op::Chmod(path(rng), rng.bool()),
        0 | 1 => Op::Write(path(rng), bytes(rng)),
        2 => Op::Append(path(rng), bytes(rng)),
        3 => Op::Truncate(path(rng), rng.u64(0..4000)),
        4 | 5 => Op::Rename(path(rng), path(rng)),
        6 => Op::Unlink(path(rng)),
        7 | 8 => Op::Mkdir(path(rng)),
        _ => Op::Rmdir(path(rng)),
    }
}

#[test]
fn random_operations_match_a_local_disk_here_and_on_the_other_member() {
    let steps: usize = std::env::var("P2PFS_MODEL_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let root = temp_dir();
    let a = Daemon::mount(&root.path().join("a"), &root.path().join("mnt-a"), &[]);
    let b = Daemon::mount(&root.path().join("b"), &root.path().join("mnt-b"), &[]);
    let ra = a.mountpoint().join("team");
    fs::create_dir(&ra).unwrap();
    let rb = b.join_room_of(&a, "team");
    for seed in [1u64, 2, 3] {
        let plain: PathBuf = root.path().join(format!("plain{seed}"));
        let room = ra.join(format!("s{seed}"));
        let other = rb.join(format!("s{seed}"));
        fs::create_dir(&plain).unwrap();
        fs::create_dir(&room).unwrap();
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut done = Vec::new();
        for step in 0..steps {
            let op = op(&mut rng);
            let want = apply(&plain, &op);
            let got = apply(&room, &op);
            done.push(op.clone());
            assert_eq!(
                got, want,
                "seed {seed} step {step}: {op:?} (after {done:?})"
            );
            assert_eq!(
                shape(&room),
                shape(&plain),
                "seed {seed} step {step}: {op:?}"
            );
        }
        let want = shape(&plain);
        wait_for(
            Duration::from_secs(30),
            "the other member to show the same tree",
            || (shape(&other) == want).then_some(()),
        );
    }
}
