//! Circuits as their two ends see them: asking connected nodes to relay
//! to a peer, and moving packets between an open circuit and the node's
//! socket.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use p2pfs_proto::{
    NodeId,
    relay::{ALPN, PacketReader, RelayAnswer, RelayRequest, frame_packet},
};
use tokio::task::JoinSet;

use super::{ASK_RELAYS, PATH_IDLE};
use crate::{
    error::SwarmError,
    net::{
        Net,
        dial::{Conn, Target},
        paths::Opened,
        reflexive::worth_asking,
    },
};

/// Where to dial `peer` through a relay: an open path to it, or a new
/// circuit through one of the connected nodes that agrees. (Boxed: a
/// dial asks for it, and it dials the relays.)
pub(crate) fn path_to(
    net: &Net,
    peer: NodeId,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Target, SwarmError>> + Send + '_>> {
    Box::pin(open_path(net, peer))
}

async fn open_path(net: &Net, peer: NodeId) -> Result<Target, SwarmError> {
    if let Some((addr, _)) = net.paths().to(&peer) {
        return Ok(Target {
            id: Some(peer),
            addrs: vec![addr],
        });
    }
    if net.paths().len() >= super::MAX_PATHS {
        return Err(SwarmError::NoRelay {
            peer,
            reason: format!("{} relayed paths are open already", super::MAX_PATHS),
        });
    }
    let relays = candidates(net, peer);
    if relays.is_empty() {
        return Err(SwarmError::NoRelay {
            peer,
            reason: "no connected node to ask".into(),
        });
    }
    let mut asks = JoinSet::new();
    for relay in relays {
        let net = net.clone();
        asks.spawn(async move { ask(&net, relay, peer).await });
    }
    let mut last = String::from("no relay answered");
    while let Some(res) = asks.join_next().await {
        match res {
            Ok(Ok((relay, send, recv))) => {
                asks.abort_all();
                let opened = net.paths().open(relay, peer);
                let addr = opened.addr;
                tracing::debug!(%peer, relay = %relay.fmt_short(), %addr, "circuit open");
                let n = net.clone();
                net.spawn(async move { pump(n, opened, send, recv).await });
                return Ok(Target {
                    id: Some(peer),
                    addrs: vec![addr],
                });
            }
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => {}
        }
    }
    Err(SwarmError::NoRelay { peer, reason: last })
}

/// The nodes worth asking to relay to `peer`: those with a direct
/// connection to this node, public addresses first, at most
/// [`ASK_RELAYS`].
fn candidates(net: &Net, peer: NodeId) -> Vec<Target> {
    let mut conns: Vec<Conn> = net
        .connections()
        .into_iter()
        .filter(|c| c.peer != peer && c.via.is_none())
        .collect();
    conns.sort_by_key(|c| (!worth_asking(&c.addr), c.since));
    let mut out: Vec<Target> = Vec::new();
    for c in conns {
        if out.len() >= ASK_RELAYS {
            break;
        }
        if !out.iter().any(|t| t.id == Some(c.peer)) {
            out.push(Target {
                id: Some(c.peer),
                addrs: vec![c.addr],
            });
        }
    }
    out
}

type Circuit = (NodeId, quinn::SendStream, quinn::RecvStream);

/// Asks `relay` for a circuit to `peer`.
async fn ask(net: &Net, relay: Target, peer: NodeId) -> Result<Circuit, SwarmError> {
    let conn = net.connect(&relay, ALPN).await?;
    let lost = |e: &dyn std::fmt::Display| SwarmError::Peer {
        peer: conn.peer,
        reason: format!("relay: {e}"),
    };
    let (send, recv, answer) = super::exchange(&conn, &RelayRequest::Circuit { to: peer })
        .await
        .map_err(|e| lost(&e))?;
    match answer {
        RelayAnswer::Opened { .. } => Ok((conn.peer, send, recv)),
        RelayAnswer::Refused { reason } => Err(lost(&reason)),
        RelayAnswer::Punch { .. } => Err(lost(&"answered a circuit with a punch")),
    }
}

/// Moves packets between the circuit (`send`, `recv`) and the path
/// `opened` until either side ends it, the path idles for [`PATH_IDLE`]
/// or the node stops; then forgets the path.
pub(crate) async fn pump(
    net: Net,
    opened: Opened,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let Opened {
        addr,
        mut outgoing,
        generation,
    } = opened;
    let paths = net.paths().clone();
    let last = Arc::new(Mutex::new(Instant::now()));
    let touch = || *crate::lock(&last) = Instant::now();
    let reading = async {
        let mut reader = PacketReader::default();
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(Some(n)) = recv.read(&mut buf).await {
            touch();
            reader.push(&buf[..n]);
            loop {
                match reader.next_packet() {
                    Ok(Some(p)) => {
                        if !paths.deliver(addr, p.to_vec()).await {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(%addr, "circuit closed: {e}");
                        return;
                    }
                }
            }
        }
    };
    let writing = async {
        let mut buf = Vec::with_capacity(64 * 1024);
        while let Some(p) = outgoing.recv().await {
            buf.clear();
            frame_packet(&p, &mut buf);
            while buf.len() < 60 * 1024 {
                match outgoing.try_recv() {
                    Ok(p) => {
                        frame_packet(&p, &mut buf);
                    }
                    Err(_) => break,
                }
            }
            touch();
            if send.write_all(&buf).await.is_err() {
                return;
            }
        }
    };
    let idle = async {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            if crate::lock(&last).elapsed() > PATH_IDLE {
                return;
            }
        }
    };
    tokio::select! {
        _ = reading => {},
        _ = writing => {},
        _ = idle => {},
        _ = net.cancel().cancelled() => {},
    }
    paths.close(&addr, generation);
    let _ = send.finish();
    tracing::debug!(%addr, "circuit closed");
}
