//! Rooms carried with no network: `room export` on one node, `room import`
//! on another that has no network at all (a network namespace of its own,
//! with only its loopback), the union of two exports made apart, and
//! damaged exports refused with nothing kept.

use std::{path::Path, process::Output, time::Duration};

use p2pfs_tests::*;

/// A network namespace with only a loopback; deleted on drop.
struct Isolated(String);

impl Isolated {
    fn new(tag: &str) -> Self {
        require_root();
        let name = format!("p2pfs-off-{}-{tag}", std::process::id());
        let ip = |args: &[&str]| {
            let out = std::process::Command::new("ip")
                .args(args)
                .output()
                .expect("running ip");
            assert!(out.status.success(), "ip {args:?}: {out:?}");
        };
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        Self(name)
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .output();
    }
}

/// `p2pfs --data-dir DATA ARGS...` in a new network namespace: no
/// interface is up, so nothing can be reached.
fn offline(data_dir: &Path, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new("unshare");
    cmd.arg("--net")
        .arg("--")
        .arg(p2pfs_bin())
        .env("P2PFS_MAINLINE", "off")
        .env("P2PFS_HTTP", "off")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args);
    run(cmd, None, Duration::from_secs(120))
}

fn ls_json(out: &str) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(out).expect("ls --json");
    let mut files: Vec<(String, String)> = v
        .as_array()
        .expect("an array")
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap_or_default().to_string(),
                f["hash"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    files.sort();
    files
}

fn file_of(root: &Path, name: &str, size: u64, seed: u64) -> String {
    let p = root.join(name);
    random_file(&p, size, seed);
    p.to_str().expect("utf-8").to_string()
}

#[test]
fn rooms_travel_in_files_and_two_exports_merge_to_the_union() {
    let root = temp_dir();
    let r = root.path();
    let (a, b, c, d) = (r.join("a"), r.join("b"), r.join("c"), r.join("d"));
    // A and B run daemons, each alone in a namespace (commands reach them
    // through their control sockets); C and D run one command at a time
    // in a namespace with no interface up at all.
    let (net_a, net_b) = (Isolated::new("a"), Isolated::new("b"));
    let _da = Daemon::start_in(Some(&net_a.0), &a, "127.0.0.1:0", &[]);
    ok(&offline(&a, &["room", "create", "trip"]));
    let one = file_of(r, "one.bin", 300_000, 1);
    ok(&offline(&a, &["room", "put", "trip", &one]));
    ok(&offline(&a, &["chat", "trip", "hello from a"]));
    let export_a = r.join("a1.p2pfs");
    let line = ok(&offline(
        &a,
        &[
            "room",
            "export",
            "trip",
            export_a.to_str().unwrap(),
            "--files",
        ],
    ));
    assert!(line.contains("1 files"), "{line}");

    // B has no network and never had the ticket: the file is enough.
    let _db = Daemon::start_in(Some(&net_b.0), &b, "127.0.0.1:0", &[]);
    let line = ok(&offline(
        &b,
        &["room", "import", export_a.to_str().unwrap()],
    ));
    assert!(line.starts_with("joined room trip"), "{line}");
    let got = offline(&b, &["room", "get", "trip", "one.bin"]);
    assert_eq!(got.stdout, std::fs::read(&one).unwrap());
    assert!(ok(&offline(&b, &["chat", "trip"])).contains("hello from a"));

    // Apart, each side writes; each exports what it has.
    let two = file_of(r, "two.bin", 70_000, 2);
    let three = file_of(r, "three.bin", 40_000, 3);
    ok(&offline(&a, &["room", "put", "trip", &two]));
    ok(&offline(&a, &["chat", "trip", "a again"]));
    ok(&offline(&b, &["room", "put", "trip", &three]));
    ok(&offline(&b, &["room", "rm", "trip", "one.bin"]));
    ok(&offline(&b, &["chat", "trip", "b here"]));
    let (xa, xb) = (r.join("a2.p2pfs"), r.join("b2.p2pfs"));
    ok(&offline(
        &a,
        &["room", "export", "trip", xa.to_str().unwrap(), "--files"],
    ));
    ok(&offline(
        &b,
        &["room", "export", "trip", xb.to_str().unwrap(), "--files"],
    ));

    // C takes both in; A and B each take the other's: the same listing
    // and chat everywhere, as if they had synced.
    ok(&offline(&c, &["room", "import", xa.to_str().unwrap()]));
    let line = ok(&offline(&c, &["room", "import", xb.to_str().unwrap()]));
    assert!(line.starts_with("merged into room trip"), "{line}");
    ok(&offline(&a, &["room", "import", xb.to_str().unwrap()]));
    ok(&offline(&b, &["room", "import", xa.to_str().unwrap()]));
    let lists: Vec<_> = [&a, &b, &c]
        .iter()
        .map(|n| ls_json(&ok(&offline(n, &["room", "ls", "trip", "--json"]))))
        .collect();
    let names: Vec<&str> = lists[0].iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(names, ["three.bin", "two.bin"], "{lists:?}");
    assert_eq!(lists[0], lists[1]);
    assert_eq!(lists[0], lists[2]);
    let chat: Vec<String> = [&a, &b, &c]
        .iter()
        .map(|n| {
            // Lines without the names (each member's own name differs
            // in wording only where they chose so).
            ok(&offline(n, &["chat", "trip"]))
                .lines()
                .map(|l| l.split_once(": ").map_or(l, |x| x.1).to_string())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    for text in ["hello from a", "a again", "b here"] {
        assert!(chat[2].contains(text), "{}", chat[2]);
    }
    assert_eq!(chat[0], chat[1]);
    assert_eq!(chat[0], chat[2]);
    let got = offline(&c, &["room", "get", "trip", "two.bin"]);
    assert_eq!(got.stdout, std::fs::read(&two).unwrap());

    // A damaged export: one flipped bit in an entry, then in a blob;
    // each refused, and D is left with no room and no blob.
    let bytes = std::fs::read(&xa).unwrap();
    for at in [200, bytes.len() - 30_000] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x10;
        let path = r.join(format!("bad{at}.p2pfs"));
        std::fs::write(&path, &bad).unwrap();
        fails(&offline(&d, &["room", "import", path.to_str().unwrap()]));
        assert_eq!(ok(&offline(&d, &["room", "list"])), "", "at {at}");
        assert_eq!(ok(&offline(&d, &["ls"])), "", "at {at}");
    }
    // Cut off.
    let cut = r.join("cut.p2pfs");
    std::fs::write(&cut, &bytes[..bytes.len() - 9]).unwrap();
    let err = fails(&offline(&d, &["room", "import", cut.to_str().unwrap()]));
    assert!(err.contains("cut off"), "{err}");
    // A blob bundle is not a room export, and the other way round.
    let err = fails(&offline(&d, &["import", xa.to_str().unwrap()]));
    assert!(err.contains("room import"), "{err}");
    assert_eq!(ok(&offline(&d, &["room", "list"])), "");
}
