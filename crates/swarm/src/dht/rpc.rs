//! Asking one node one DHT query (docs/protocol.md §7.2).

use std::{net::SocketAddr, time::Instant};

use p2pfs_proto::{
    NodeId,
    dht::{ALPN, DhtRequest, DhtResponse, MAX_DHT_MESSAGE, Query},
};

use crate::{SwarmError, Target, dht::runtime::Dht, frame};

/// An answer and what it tells about the node.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The node that answered (as its handshake proved).
    pub(crate) peer: NodeId,
    /// The address the connection goes to.
    pub(crate) addr: SocketAddr,
    /// Time from sending the query to the answer.
    pub(crate) rtt: std::time::Duration,
    pub(crate) response: DhtResponse,
}

/// Sends `query` to `target` (connecting if needed) and returns its
/// answer, checked against the protocol's bounds and the query's type.
pub(crate) async fn ask(dht: &Dht, target: &Target, query: Query) -> Result<Answer, SwarmError> {
    dht.net
        .with_conn(target, ALPN, |conn| ask_on(dht, conn, query.clone()))
        .await
}

async fn ask_on(
    dht: &Dht,
    conn: crate::net::dial::Conn,
    query: Query,
) -> Result<Answer, SwarmError> {
    let peer = conn.peer;
    let fail = |reason: String| SwarmError::Peer { peer, reason };
    let started = Instant::now();
    let (mut send, mut recv) = conn.conn.open_bi().await.map_err(|e| fail(e.to_string()))?;
    let request = DhtRequest {
        server: dht.config.server,
        query,
    };
    frame::write(&mut send, &request)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let _ = send.finish();
    let response: DhtResponse = frame::read_max(&mut recv, MAX_DHT_MESSAGE)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let protocol = |reason: &str| SwarmError::Protocol {
        peer,
        reason: reason.to_string(),
    };
    response.check().map_err(protocol)?;
    let fits = matches!(
        (&request.query, &response),
        (_, DhtResponse::Refused { .. })
            | (Query::Ping, DhtResponse::Pong { .. })
            | (Query::FindNode { .. }, DhtResponse::Nodes { .. })
            | (Query::GetProviders { .. }, DhtResponse::Providers { .. })
            | (Query::AddProvider { .. }, DhtResponse::Stored { .. })
    );
    if !fits {
        return Err(protocol("the answer does not fit the query"));
    }
    if let DhtResponse::Pong { observed } = &response {
        dht.net.observed(peer, super::service::canonical(*observed));
    }
    Ok(Answer {
        peer,
        addr: conn.addr,
        rtt: started.elapsed(),
        response,
    })
}
