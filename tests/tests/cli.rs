//! The `p2pfs` command line against a real store: `add`, `cat`, `ls`, `pin`,
//! `unpin`, `gc`, `verify`, and the errors a user can run into.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use p2pfs_tests::*;

/// Sizes named by the issue, plus a few MiB.
const SIZES: &[u64] = &[
    0,
    1,
    1024,
    16 * 1024 - 1,
    16 * 1024,
    16 * 1024 + 1,
    (5 << 20) + 7,
];

#[test]
fn add_prints_what_b3sum_prints_and_cat_returns_the_bytes() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let mut paths = Vec::new();
    for (i, &size) in SIZES.iter().enumerate() {
        let p = dir.path().join(format!("file-{size}"));
        random_file(&p, size, i as u64);
        paths.push(p);
    }
    let args: Vec<&str> = std::iter::once("add")
        .chain(paths.iter().map(|p| p.to_str().unwrap()))
        .collect();
    let printed = ok(&p2pfs(&data, &args));
    // Exactly b3sum's output for the same arguments.
    let b3sum = Command::new("b3sum")
        .args(&paths)
        .output()
        .expect("b3sum must be installed (cargo install b3sum)");
    assert_eq!(printed, String::from_utf8(b3sum.stdout).unwrap());
    for (line, path) in printed.lines().zip(&paths) {
        let hash = line.split_whitespace().next().unwrap();
        assert_eq!(hash, blake3_file(path));
        let out = p2pfs(&data, &["cat", hash]);
        assert!(out.status.success());
        assert_eq!(
            out.stdout,
            std::fs::read(path).unwrap(),
            "{}",
            path.display()
        );
    }
    let listed = ok(&p2pfs(&data, &["ls"]));
    assert_eq!(listed.lines().count(), SIZES.len());
    assert!(
        listed
            .lines()
            .all(|l| l.contains("complete") && l.ends_with("user"))
    );
    let verified = ok(&p2pfs(&data, &["verify"]));
    assert_eq!(
        verified.lines().filter(|l| l.ends_with("  OK")).count(),
        SIZES.len()
    );
}

#[test]
fn stdin_recursion_and_duplicates() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let out = ok(&p2pfs_with_input(&data, &["add", "-"], Some(b"from stdin")));
    assert_eq!(
        out,
        format!("{}  -\n", blake3::hash(b"from stdin").to_hex())
    );
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("a/b")).unwrap();
    std::fs::write(tree.join("a/one"), b"one").unwrap();
    std::fs::write(tree.join("a/b/two"), b"two").unwrap();
    std::fs::write(tree.join("same"), b"one").unwrap();
    let err = fails(&p2pfs(&data, &["add", tree.to_str().unwrap()]));
    assert!(err.contains("is a directory"), "{err}");
    let out = ok(&p2pfs(&data, &["add", "-r", tree.to_str().unwrap()]));
    let names: Vec<&str> = out.lines().map(|l| l.split("  ").nth(1).unwrap()).collect();
    let t = tree.to_str().unwrap();
    assert_eq!(
        names,
        [
            format!("{t}/a/b/two"),
            format!("{t}/a/one"),
            format!("{t}/same")
        ]
    );
    // "one" twice is one blob: stdin blob + two + one.
    assert_eq!(ok(&p2pfs(&data, &["ls"])).lines().count(), 3);
}

#[test]
fn gc_removes_only_unpinned_blobs() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    random_file(&a, 100_000, 1);
    random_file(&b, 100_000, 2);
    let ha = ok(&p2pfs(&data, &["add", a.to_str().unwrap()]))[..64].to_string();
    let hb = ok(&p2pfs(&data, &["add", "--no-pin", b.to_str().unwrap()]))[..64].to_string();
    let out = ok(&p2pfs(&data, &["gc"]));
    assert!(out.starts_with("removed 1 blob"), "{out}");
    fails(&p2pfs(&data, &["cat", &hb]));
    assert!(p2pfs(&data, &["cat", &ha]).status.success());
    assert_eq!(
        ok(&p2pfs(&data, &["unpin", &ha])),
        format!("{ha}  unpinned\n")
    );
    assert!(ok(&p2pfs(&data, &["pin", &hb])).contains("not in the local store yet"));
    ok(&p2pfs(&data, &["gc"]));
    assert_eq!(ok(&p2pfs(&data, &["ls"])), "");
    // The pin set before the blob keeps it once it is added again.
    ok(&p2pfs(&data, &["add", "--no-pin", b.to_str().unwrap()]));
    ok(&p2pfs(&data, &["gc"]));
    assert!(p2pfs(&data, &["cat", &hb]).status.success());
}

#[test]
fn user_errors_are_one_clear_line() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let missing = dir.path().join("missing.txt");
    let err = fails(&p2pfs(&data, &["add", missing.to_str().unwrap()]));
    assert!(
        err.contains("missing.txt") && err.contains("No such file"),
        "{err}"
    );
    let unknown = "0".repeat(64);
    let err = fails(&p2pfs(&data, &["cat", &unknown]));
    assert!(err.contains("not in the local store"), "{err}");
    let err = fails(&p2pfs(&data, &["cat", "not-a-hash"]));
    assert!(err.contains("expected 64 characters"), "{err}");
    let err = fails(&p2pfs(&data, &["cat", &"g".repeat(64)]));
    assert!(err.contains("hexadecimal"), "{err}");
    assert_eq!(p2pfs(&data, &["cat", "x"]).status.code(), Some(2));
}

#[test]
fn a_read_only_data_dir_is_a_clear_error() {
    p2pfs_tests::needs_root!();
    let ro = Tmpfs::mount("ro,size=1m");
    let err = fails(&p2pfs(&ro.path().join("p2pfs"), &["ls"]));
    assert!(err.contains("Read-only file system"), "{err}");
}

#[test]
fn a_full_disk_is_a_clear_error_and_loses_nothing() {
    p2pfs_tests::needs_root!();
    let fs = Tmpfs::mount("size=3m");
    let data = fs.path().join("p2pfs");
    let dir = temp_dir();
    let small = dir.path().join("small");
    let big = dir.path().join("big");
    random_file(&small, 200_000, 3);
    random_file(&big, 8 << 20, 4);
    let hs = ok(&p2pfs(&data, &["add", small.to_str().unwrap()]))[..64].to_string();
    let err = fails(&p2pfs(&data, &["add", big.to_str().unwrap()]));
    assert!(err.contains("no space left on device"), "{err}");
    // The store still opens, holds what it held, and has no leftovers.
    let listed = ok(&p2pfs(&data, &["ls"]));
    assert_eq!(listed.lines().count(), 1);
    assert!(listed.starts_with(&hs));
    ok(&p2pfs(&data, &["verify"]));
    assert_eq!(
        std::fs::read_dir(data.join("store/tmp")).unwrap().count(),
        0
    );
    // And it keeps working once space is available.
    let out = p2pfs_with_input(&data, &["add", "-"], Some(b"still works"));
    ok(&out);
}

#[test]
fn a_multi_gib_file_round_trips() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let path = dir.path().join("big.bin");
    // 3 GiB: sparse zeros with random blocks at the start, the middle, the
    // 2^31 boundary and the end.
    let size: u64 = 3 << 30;
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(size).unwrap();
    let mut block = vec![0u8; 1 << 20];
    fastrand::fill(&mut block);
    for off in [0, size / 2 - 7, (1 << 31) - 100, size - block.len() as u64] {
        std::os::unix::fs::FileExt::write_all_at(&f, &block, off).unwrap();
    }
    drop(f);
    let expected = blake3_file(&path);
    let out = ok(&p2pfs(&data, &["add", path.to_str().unwrap()]));
    assert_eq!(&out[..64], expected);
    std::fs::remove_file(&path).unwrap();
    // Stream it back out through a pipe and hash what arrives.
    let mut child = p2pfs_tests::p2pfs_command()
        .arg("--data-dir")
        .arg(&data)
        .args(["cat", &expected])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut h = blake3::Hasher::new();
    let n = std::io::copy(child.stdout.as_mut().unwrap(), &mut h).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(n, size);
    assert_eq!(h.finalize().to_hex().to_string(), expected);
}

/// A blob carried with no network: `export` writes a bundle, `import` on
/// another data directory takes it in verified; a damaged bundle is
/// refused and leaves nothing in the store.
#[test]
fn a_blob_travels_in_a_bundle_and_a_damaged_one_is_refused() {
    let root = temp_dir();
    let file = root.path().join("photo.jpg");
    random_file(&file, 3_000_000, 9);
    let (a, b, c) = (
        root.path().join("a"),
        root.path().join("b"),
        root.path().join("c"),
    );
    let hash = ok(&p2pfs(&a, &["add", file.to_str().unwrap()]))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let bundle = root.path().join("photo.bundle");
    let line = ok(&p2pfs(&a, &["export", &hash, bundle.to_str().unwrap()]));
    assert!(line.starts_with(&hash), "{line}");
    let line = ok(&p2pfs(&b, &["import", bundle.to_str().unwrap()]));
    assert!(line.starts_with(&hash), "{line}");
    let out = p2pfs(&b, &["cat", &hash]);
    assert_eq!(blake3::hash(&out.stdout).to_hex().to_string(), hash);
    // One flipped bit in the data: refused, nothing kept.
    let mut bytes = std::fs::read(&bundle).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    let bad = root.path().join("bad.bundle");
    std::fs::write(&bad, &bytes).unwrap();
    let err = fails(&p2pfs(&c, &["import", bad.to_str().unwrap()]));
    assert!(err.contains("failed verification"), "{err}");
    assert_eq!(ok(&p2pfs(&c, &["ls"])), "");
    // Not a bundle at all.
    let err = fails(&p2pfs(&c, &["import", file.to_str().unwrap()]));
    assert!(err.contains("not a p2pfs bundle"), "{err}");
}
