//! A model test: random sequences of file operations (create, write,
//! append, truncate, rename, unlink, mkdir, rmdir, chmod, symlink, hard
//! link) applied to a room
//! through the mount and to a plain directory; after every step both
//! trees (names, kinds, contents, permission bits, link counts) and both
//! outcomes (success or errno) are the same; after each sequence the
//! other member shows the same tree.
//! Fixed seeds (1 to `P2PFS_MODEL_SEEDS`, 3 by default), a bounded number
//! of steps (`P2PFS_MODEL_STEPS`, 150 by default).
//! `MODEL_TRACE=PATH` prints, after each step, what the mount and the disk
//! hold at PATH (with inode numbers and link counts): how a failure is
//! traced back to the step that caused it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    fs,
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use p2pfs_tests::{Daemon, temp_dir};

/// One name of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Thing {
    /// Its permission bits.
    Dir(u32),
    /// Its size and a digest of its content, permission bits and link
    /// count.
    File(usize, u64, u32, u64),
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
                out.insert(rel, Thing::Dir(meta.permissions().mode() & 0o7777));
                walk(root, &p, out);
            } else {
                let mode = meta.permissions().mode() & 0o7777;
                let content = fs::read(&p).unwrap_or_default();
                // (FNV-1a: enough to tell contents apart in a report.)
                let digest = content.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                    (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
                });
                out.insert(rel, Thing::File(content.len(), digest, mode, meta.nlink()));
            }
        }
    }
    let mut out = Shape::new();
    walk(root, root, &mut out);
    out
}

/// One operation, on paths relative to a root.
#[derive(Clone)]
enum Op {
    Write(String, Vec<u8>),
    Append(String, Vec<u8>),
    Truncate(String, u64),
    Rename(String, String),
    Unlink(String),
    Mkdir(String),
    Rmdir(String),
    /// `chmod` of a file or directory.
    Chmod(String, u32),
    /// A symbolic link at the path to the target.
    Symlink(String, String),
    /// A hard link at the second path to the first.
    Link(String, String),
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Write(p, d) => write!(f, "Write({p}, {} bytes)", d.len()),
            Op::Append(p, d) => write!(f, "Append({p}, {} bytes)", d.len()),
            Op::Truncate(p, n) => write!(f, "Truncate({p}, {n})"),
            Op::Rename(a, b) => write!(f, "Rename({a}, {b})"),
            Op::Unlink(p) => write!(f, "Unlink({p})"),
            Op::Mkdir(p) => write!(f, "Mkdir({p})"),
            Op::Rmdir(p) => write!(f, "Rmdir({p})"),
            Op::Chmod(p, m) => write!(f, "Chmod({p}, {m:o})"),
            Op::Symlink(a, b) => write!(f, "Symlink({a} -> {b})"),
            Op::Link(a, b) => write!(f, "Link({a}, {b})"),
        }
    }
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
        Op::Chmod(f, mode) => fs::set_permissions(p(f), fs::Permissions::from_mode(*mode)),
        Op::Link(a, b) => fs::hard_link(p(a), p(b)),
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
    let modes = [0o600, 0o640, 0o644, 0o700, 0o750, 0o755, 0o1777, 0o2755];
    match rng.u8(0..14) {
        12 | 13 => Op::Link(path(rng), path(rng)),
        11 => Op::Symlink(path(rng), path(rng)),
        10 => Op::Chmod(path(rng), modes[rng.usize(..modes.len())]),
        0 | 1 => Op::Write(path(rng), bytes(rng)),
        2 => Op::Append(path(rng), bytes(rng)),
        3 => Op::Truncate(path(rng), rng.u64(0..4000)),
        4 | 5 => Op::Rename(path(rng), path(rng)),
        6 => Op::Unlink(path(rng)),
        7 | 8 => Op::Mkdir(path(rng)),
        _ => Op::Rmdir(path(rng)),
    }
}

/// The paths where two shapes differ, and how.
fn differences(got: &Shape, want: &Shape) -> String {
    let mut out = String::new();
    for (p, w) in want {
        match got.get(p) {
            Some(g) if g == w => {}
            g => out.push_str(&format!("\n  {p}: mount {g:?}, disk {w:?}")),
        }
    }
    for (p, g) in got {
        if !want.contains_key(p) {
            out.push_str(&format!("\n  {p}: mount {g:?}, disk none"));
        }
    }
    out
}

#[test]
fn random_operations_match_a_local_disk_here_and_on_the_other_member() {
    p2pfs_tests::needs_root!();
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
    let seeds: u64 = std::env::var("P2PFS_MODEL_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    for seed in 1..=seeds {
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
            let (got, want) = (shape(&room), shape(&plain));
            if let Ok(t) = std::env::var("MODEL_TRACE") {
                let ino = |r: &Path| {
                    fs::symlink_metadata(r.join(&t))
                        .map(|m| (m.ino(), m.nlink()))
                        .ok()
                };
                eprintln!(
                    "{step} {op:?}: mount {:?} {:?} disk {:?} {:?}",
                    got.get(&t),
                    ino(&room),
                    want.get(&t),
                    ino(&plain)
                );
            }
            assert!(
                got == want,
                "seed {seed} step {step}: {op:?}: {}\n(after {done:?})",
                differences(&got, &want)
            );
        }
        // (Setuid and setgid of files show only on the member that set
        // them.)
        let want: Shape = shape(&plain)
            .into_iter()
            .map(|(p, t)| {
                let t = match t {
                    Thing::File(len, c, mode, n) => Thing::File(len, c, mode & 0o1777, n),
                    t => t,
                };
                (p, t)
            })
            .collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let got = shape(&other);
            if got == want {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "seed {seed}: the other member shows another tree: {}",
                differences(&got, &want)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
