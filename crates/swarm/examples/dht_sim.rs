//! Runs the DHT simulator (see `p2pfs_swarm::dht::sim`) and prints its
//! figures; `bench/dht.sh` runs it for 10,000 nodes.
//!
//!   dht_sim NODES SEED [--dead F] [--liars F] [--loss F] [--lookups N]
//!           [--announces N] [--cold] [--alpha N] [--stall-after N]

// A command-line tool: printing its figures is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use p2pfs_swarm::dht::sim::{SimConfig, run};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, what: &str| -> Result<f64, String> {
        args.get(i)
            .ok_or(format!("{what}: missing"))?
            .parse()
            .map_err(|e| format!("{what}: {e}"))
    };
    let mut cfg = SimConfig::new(num(0, "NODES")? as usize, num(1, "SEED")? as u64);
    let mut i = 2;
    while i < args.len() {
        match args[i].as_str() {
            "--dead" => cfg.dead = num(i + 1, "--dead")?,
            "--liars" => cfg.liars = num(i + 1, "--liars")?,
            "--loss" => cfg.loss = num(i + 1, "--loss")?,
            "--alpha" => cfg.lookup.alpha = num(i + 1, "--alpha")? as usize,
            "--stall-after" => cfg.lookup.stall_after = num(i + 1, "--stall-after")? as usize,
            "--lookups" => cfg.lookups = num(i + 1, "--lookups")? as usize,
            "--announces" => cfg.announces = num(i + 1, "--announces")? as usize,
            "--cold" => {
                cfg.cold = true;
                i += 1;
                continue;
            }
            other => return Err(format!("unknown argument {other}")),
        }
        i += 2;
    }
    let t = std::time::Instant::now();
    let report = run(&cfg);
    println!(
        "nodes {} dead {} liars {} loss {} cold {}",
        cfg.nodes, cfg.dead, cfg.liars, cfg.loss, cfg.cold
    );
    println!("{}", report.summary());
    eprintln!("(simulated in {:.1} s)", t.elapsed().as_secs_f64());
    Ok(())
}
