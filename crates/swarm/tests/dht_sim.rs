//! The DHT's real lookup and routing code in a simulated network of 1,000
//! nodes (50 ms round trips, ±20 % jitter, 1 % loss), against the goals of
//! the DHT issue. `bench/dht.sh` runs the same for 10,000 nodes.
#![allow(clippy::print_stderr)]

use std::time::Duration;

use p2pfs_swarm::dht::sim::{SimConfig, SimReport, percentile, run};

fn sim(f: impl FnOnce(&mut SimConfig)) -> SimReport {
    let mut cfg = SimConfig::new(1000, 42);
    cfg.lookups = 400;
    cfg.announces = 50;
    f(&mut cfg);
    let r = run(&cfg);
    eprintln!("{}", r.summary());
    r
}

fn ms(v: &[Duration], p: f64) -> u128 {
    percentile(v, p).map_or(u128::MAX, |d| d.as_millis())
}

#[test]
fn honest_network() {
    let r = sim(|_| {});
    assert!(r.success_rate() >= 0.999, "success {}", r.success_rate());
    assert!(percentile(&r.hops, 50.0) <= Some(3));
    assert!(percentile(&r.hops, 99.0) <= Some(5));
    assert!(ms(&r.latency, 50.0) <= 150, "p50 {}", ms(&r.latency, 50.0));
    assert!(ms(&r.latency, 95.0) <= 300, "p95 {}", ms(&r.latency, 95.0));
    assert!(ms(&r.announce_latency, 50.0) <= 300);
    assert!(r.provider_success_rate() >= 0.99);
}

#[test]
fn thirty_percent_of_nodes_dead() {
    let r = sim(|c| c.dead = 0.3);
    assert!(r.success_rate() >= 0.999, "success {}", r.success_rate());
    assert!(r.provider_success_rate() >= 0.99);
}

#[test]
fn twenty_percent_of_nodes_lying() {
    let r = sim(|c| c.liars = 0.2);
    assert!(r.success_rate() >= 0.99, "success {}", r.success_rate());
    assert!(r.provider_success_rate() >= 0.99);
}
