//! `p2pfs status`: the node's id, addresses, peers and store.

use std::io::Write;

use crate::control::{Request, Response};

use crate::{cmd, output, session::Session};

pub(crate) async fn run(session: &Session, json: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let mut status = None;
    cmd::each(session, Request::Status, |r| {
        if let Response::Status(s) = r {
            status = Some(s);
        }
        Ok(())
    })
    .await?;
    let Some(s) = status else {
        anyhow::bail!("the node returned no status");
    };
    if json {
        return output::json(out, &s);
    }
    let addrs: Vec<String> = s.addrs.iter().map(|a| a.to_string()).collect();
    output::line(out, &format!("node       {}", s.node))?;
    output::line(
        out,
        &format!(
            "running    {}",
            if s.daemon {
                "yes (daemon)"
            } else {
                "no daemon: this node ran only for this command"
            }
        ),
    )?;
    output::line(out, &format!("listening  {}", addrs.join(", ")))?;
    output::line(out, &format!("reach      {}", reach_line(&s.reach)))?;
    output::line(
        out,
        &format!(
            "store      {} blob{} ({} complete), {}",
            s.blobs,
            if s.blobs == 1 { "" } else { "s" },
            s.complete,
            output::human_bytes(s.bytes)
        ),
    )?;
    let d = &s.dht;
    if d.table == 0 {
        output::line(
            out,
            "dht        no peers: this node knows no other node \
             (join with `p2pfs daemon --peer ADDR`, a ticket, or a node on the LAN)",
        )?;
    } else {
        output::line(
            out,
            &format!(
                "dht        {} node{} in the routing table",
                d.table,
                if d.table == 1 { "" } else { "s" }
            ),
        )?;
    }
    if d.server {
        output::line(
            out,
            &format!(
                "providers  {} record{} held for others, {} blob{} announced",
                d.records,
                if d.records == 1 { "" } else { "s" },
                d.announced,
                if d.announced == 1 { "" } else { "s" }
            ),
        )?;
    }
    if s.peers.is_empty() {
        output::line(out, "peers      none connected")?;
    } else {
        output::line(out, &format!("peers      {}", s.peers.len()))?;
        for p in &s.peers {
            let path = match p.via {
                Some(relay) => format!("relay {}", relay.fmt_short()),
                None => format!("direct {}", p.addr),
            };
            output::line(
                out,
                &format!(
                    "  {}  {}  {}  {}s",
                    p.id,
                    path,
                    if p.outbound { "out" } else { "in" },
                    p.connected_secs
                ),
            )?;
        }
    }
    for b in &s.banned {
        let mins = b.secs_left.div_ceil(60);
        output::line(
            out,
            &format!("banned     {}  {} ({mins} min left)", b.id, b.reason),
        )?;
    }
    Ok(())
}

/// The node's situation in one line: NAT, reflexive address, mapped
/// port, reachability, relaying.
fn reach_line(r: &p2pfs_swarm::Reach) -> String {
    let mut parts = vec![match (r.nat, r.reflexive) {
        (p2pfs_swarm::NatKind::None, _) => "public address, no NAT".to_string(),
        (p2pfs_swarm::NatKind::Behind, Some(a)) => format!("behind a NAT, seen as {a}"),
        _ => "unknown (no peer outside has seen this node yet)".to_string(),
    }];
    if let Some(m) = r.mapped {
        parts.push(format!("port mapped at {m}"));
    }
    parts.push(
        if r.reachable {
            "reachable from outside"
        } else {
            "not reachable unasked (peers punch through or relay)"
        }
        .to_string(),
    );
    parts.push(format!("relays for {}", r.relay));
    if r.relayed_paths > 0 {
        parts.push(format!("{} relayed path(s) open", r.relayed_paths));
    }
    parts.join("; ")
}
