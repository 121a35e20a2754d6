//! Runs the room simulator (see `p2pfs_swarm::room::sim`) and prints its
//! figures; `bench/room_sim.sh` runs it for 10, 100 and 1,000 members.
//!
//!   room_sim MEMBERS SEED [--rtt MS] [--loss F] [--chats N]
//!            [--duration MS] [--steady-from MS] [--partition FROM TO]

// A command-line tool: printing its figures is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use p2pfs_swarm::room::sim::{SimConfig, SimReport, run};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, what: &str| -> Result<f64, String> {
        args.get(i)
            .ok_or(format!("{what}: missing"))?
            .parse()
            .map_err(|e| format!("{what}: {e}"))
    };
    let mut cfg = SimConfig::new(num(0, "MEMBERS")? as usize, num(1, "SEED")? as u64);
    let mut i = 2;
    while i < args.len() {
        match args[i].as_str() {
            "--rtt" => cfg.rtt_ms = num(i + 1, "--rtt")? as u64,
            "--loss" => cfg.loss = num(i + 1, "--loss")?,
            "--chats" => cfg.chats = num(i + 1, "--chats")? as usize,
            "--duration" => cfg.duration_ms = num(i + 1, "--duration")? as u64,
            "--steady-from" => cfg.steady_from_ms = num(i + 1, "--steady-from")? as u64,
            "--partition" => {
                cfg.partition = Some((num(i + 1, "FROM")? as u64, num(i + 2, "TO")? as u64));
                i += 3;
                continue;
            }
            other => return Err(format!("unknown argument {other}")),
        }
        i += 2;
    }
    let t = std::time::Instant::now();
    let r = run(&cfg);
    let secs = cfg.duration_ms as f64 / 1000.0;
    let per_member_kbps: Vec<u64> = r
        .bytes_sent
        .iter()
        .map(|b| (*b as f64 / secs) as u64)
        .collect();
    println!(
        "members {}  seed {}  rtt {} ms  loss {}  chats {}",
        cfg.members, cfg.seed, cfg.rtt_ms, cfg.loss, cfg.chats
    );
    println!(
        "chat latency ms: p50 {}  p99 {}  max {}  missing {}",
        SimReport::quantile(&r.chat_latency_ms, 0.5),
        SimReport::quantile(&r.chat_latency_ms, 0.99),
        SimReport::quantile(&r.chat_latency_ms, 1.0),
        r.chats_missing
    );
    println!(
        "online view wrong on {} members; sessions per member p50 {} max {}",
        r.online_wrong,
        SimReport::quantile(
            &r.sessions.iter().map(|s| *s as u64).collect::<Vec<_>>(),
            0.5
        ),
        r.sessions.iter().max().copied().unwrap_or(0)
    );
    println!(
        "bytes sent per member per second: p50 {}  p99 {}  ({} messages, simulated in {:.1} s)",
        SimReport::quantile(&per_member_kbps, 0.5),
        SimReport::quantile(&per_member_kbps, 0.99),
        r.messages,
        t.elapsed().as_secs_f64()
    );
    let steady_secs = cfg.duration_ms.saturating_sub(cfg.steady_from_ms).max(1) as f64 / 1000.0;
    let steady: Vec<u64> = r
        .bytes_steady
        .iter()
        .map(|b| (*b as f64 / steady_secs) as u64)
        .collect();
    let total: u64 = r.bytes_by_kind.iter().sum::<u64>().max(1);
    let pct = |k: usize| r.bytes_by_kind[k] * 100 / total;
    println!(
        "steady state (from {} ms): bytes sent per member per second p50 {}  p99 {}; \
         all bytes: have {} %, entries {} %, peers {} %, presences {} %, digests {} %",
        cfg.steady_from_ms,
        SimReport::quantile(&steady, 0.5),
        SimReport::quantile(&steady, 0.99),
        pct(0),
        pct(1),
        pct(2),
        pct(3),
        pct(4)
    );
    println!(
        "steady state: {} session ends (surplus), {} session starts",
        r.steady_surplus_ends, r.steady_session_starts
    );
    Ok(())
}
