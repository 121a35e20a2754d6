//! A plain mDNS/DNS-SD client, as any standard tool is: `mdns_browse
//! SECONDS` browses `_p2pfs._udp.local.` and prints, one per line, the
//! `id` of every service it resolves (with its addresses and port).

use std::io::Write;

fn main() -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let secs: u64 = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "5".into())
        .parse()?;
    let daemon = mdns_sd::ServiceDaemon::new()?;
    let events = daemon.browse("_p2pfs._udp.local.")?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match events.recv_timeout(left) {
            Ok(mdns_sd::ServiceEvent::ServiceResolved(s)) => {
                let addrs: Vec<String> = s
                    .get_addresses()
                    .iter()
                    .map(|a| a.to_ip_addr().to_string())
                    .collect();
                writeln!(
                    out,
                    "{} {} port {}",
                    s.get_property_val_str("id").unwrap_or("?"),
                    addrs.join(","),
                    s.get_port()
                )?;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = daemon.shutdown();
    Ok(())
}
