//! A local BitTorrent Mainline DHT for tests (never the internet's):
//! `mainline_testnet IP COUNT` starts COUNT DHT nodes bound to IP, prints
//! each node's `IP:PORT` on its own line, then an empty line, and runs
//! until its standard input closes (the test that started it ends).

use std::io::{BufRead, Write};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let ip: std::net::Ipv4Addr = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: mainline_testnet IP COUNT"))?
        .parse()?;
    let count: usize = args.next().unwrap_or_else(|| "10".into()).parse()?;
    let testnet = mainline::Testnet::builder(count).bind_address(ip).build()?;
    let mut out = std::io::stdout().lock();
    for b in &testnet.bootstrap {
        writeln!(out, "{b}")?;
    }
    writeln!(out)?;
    out.flush()?;
    drop(out);
    // Until the test closes our standard input.
    for line in std::io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
    }
    drop(testnet);
    Ok(())
}
