//! Issue 19's figures in the NAT lab (run by `bench/nat.sh`, as root):
//! a public member P and members A and B each behind a symmetric NAT (no
//! punch works between them: their connection is relayed through P),
//! every WAN link limited to RATE. Measures, in one run and side by side:
//!
//! - connect and first byte: B fetching a 1 KiB blob from P (direct)
//!   and from A (relayed), through B's daemon, on a new connection;
//! - throughput: B fetching SIZE MiB from P (direct) and from A
//!   (relayed through P).
//!
//! `nat_bench [RATE] [SIZE_MIB] [ROUNDS]` (defaults: 40mbit 16 3).

use std::time::{Duration, Instant};

use p2pfs_tests::{
    Daemon, natlab::Nat, natlab::NatLab, ok, p2pfs, random_file, temp_dir, wait_for,
};

fn online(d: &Daemon) -> usize {
    let out = p2pfs(d.data_dir(), &["room", "status", "team", "--json"]);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|s| {
            s["members"]
                .as_array()
                .map(|m| m.iter().filter(|m| m["online"] == true).count())
        })
        .unwrap_or(0)
}

fn path(from: &Daemon, to: &Daemon) -> Option<String> {
    let s: serde_json::Value =
        serde_json::from_str(&ok(&p2pfs(from.data_dir(), &["status", "--json"]))).ok()?;
    s["peers"]
        .as_array()?
        .iter()
        .find(|p| p["id"] == to.id.as_str())
        .and_then(|p| p["path"].as_str().map(String::from))
}

/// Adds a random public blob of `size` bytes on `d`; its hash.
fn blob(d: &Daemon, dir: &std::path::Path, size: u64, seed: u64) -> String {
    let f = dir.join(format!("blob-{seed}"));
    random_file(&f, size, seed);
    let out = ok(&p2pfs(
        d.data_dir(),
        &["add", f.to_str().unwrap_or_default()],
    ));
    out.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Seconds for `d` to fetch `hash` from `from` (its id and address).
fn fetch(d: &Daemon, from: &Daemon, at: &str, hash: &str, dir: &std::path::Path) -> f64 {
    let out = dir.join(format!("got-{hash}"));
    let started = Instant::now();
    ok(&p2pfs(
        d.data_dir(),
        &[
            "fetch",
            hash,
            "--peer",
            &format!("{}@{at}", from.id),
            "-o",
            out.to_str().unwrap_or_default(),
        ],
    ));
    started.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rate = args.next().unwrap_or_else(|| "40mbit".into());
    let size_mib: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(16);
    let rounds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(3);
    let lab = NatLab::new(70, 1, &[Nat::Hard, Nat::Hard]);
    for ns in [&lab.public[0], &lab.homes[0].router, &lab.homes[1].router] {
        lab.shape(ns, &rate);
    }
    let root = temp_dir();
    let dir = root.path();
    let start = |ns: &str, name: &str, ip: String| {
        Daemon::start_in(
            Some(ns),
            &dir.join(name),
            &format!("{ip}:7000"),
            &["--no-lan", "--name", name],
        )
    };
    let p = start(&lab.public[0], "p", lab.public_ip(0));
    let a = start(&lab.homes[0].host, "a", lab.home_ip(0));
    let b = start(&lab.homes[1].host, "b", lab.home_ip(1));
    let ticket = ok(&p2pfs(p.data_dir(), &["room", "create", "team"]));
    for d in [&a, &b] {
        ok(&p2pfs(d.data_dir(), &["room", "join", ticket.trim()]));
    }
    for d in [&p, &a, &b] {
        wait_for(Duration::from_secs(90), "all online", || {
            (online(d) == 3).then_some(())
        });
    }
    wait_for(
        Duration::from_secs(60),
        "a relayed path between a and b",
        || (path(&b, &a).as_deref() == Some("relay")).then_some(()),
    );
    let (at_p, at_a) = (
        format!("{}:7000", lab.public_ip(0)),
        format!("{}:7000", lab.router_ip(0)),
    );
    let (mut c_direct, mut c_relay, mut t_direct, mut t_relay) = (vec![], vec![], vec![], vec![]);
    for r in 0..rounds {
        // A new blobs connection each round: the previous one is closed
        // by restarting nothing, but the blob protocol's connection is
        // new for each provider the first time; later rounds reuse it.
        let small_p = blob(&p, dir, 1024, 1000 + r);
        let small_a = blob(&a, dir, 1024, 2000 + r);
        c_direct.push(fetch(&b, &p, &at_p, &small_p, dir));
        c_relay.push(fetch(&b, &a, &at_a, &small_a, dir));
        let big_p = blob(&p, dir, size_mib << 20, 3000 + r);
        let big_a = blob(&a, dir, size_mib << 20, 4000 + r);
        t_direct.push(fetch(&b, &p, &at_p, &big_p, dir));
        t_relay.push(fetch(&b, &a, &at_a, &big_a, dir));
    }
    let mib = size_mib as f64;
    let (cd, cr) = (median(c_direct.clone()), median(c_relay.clone()));
    let (td, tr) = (
        mib / median(t_direct.clone()),
        mib / median(t_relay.clone()),
    );
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    let _ = writeln!(
        out,
        "nat_bench rate={rate} size={size_mib}MiB rounds={rounds}"
    );
    let _ = writeln!(
        out,
        "first fetch of 1 KiB (connect + first byte), first round: direct {:.0} ms, relayed {:.0} ms",
        c_direct[0] * 1e3,
        c_relay[0] * 1e3
    );
    let _ = writeln!(
        out,
        "1 KiB fetch, median: direct {:.0} ms, relayed {:.0} ms",
        cd * 1e3,
        cr * 1e3
    );
    let _ = writeln!(
        out,
        "throughput, median: direct {td:.2} MiB/s, relayed {tr:.2} MiB/s, relayed/direct {:.2}",
        tr / td
    );
}
