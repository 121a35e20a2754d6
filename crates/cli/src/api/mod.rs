//! The commands a node carries out for the CLI, whether it runs as a daemon
//! (the control socket calls this) or was started for one command.

mod room;

use std::io::Read;

use bytes::Bytes;
use p2pfs_proto::{BlobTicket, Hash, NodeAddr, PeerAddr};
use p2pfs_store::{BlobState, Store, StoreError, USER_PIN};
use tokio::sync::{mpsc, watch};

use p2pfs_swarm::{Node, SwarmError, Target};

use crate::{
    control::{AddItem, Request, Response, Status},
    error::{AppError, blocking},
    params::{Blobs, VerifyBlobs},
};

/// Bytes per `Data` response.
const DATA_CHUNK: usize = 256 * 1024;
/// Items per response of a list (blobs, a room's files): a frame holds at
/// most 1 MiB (`codec::MAX_MESSAGE_SIZE`), and one item is at most a few
/// hundred bytes (a path is at most 4 KiB: a batch of paths that long
/// would not fit, so batches are also cut by size).
const LIST_BATCH: usize = 1000;
/// Encoded bytes per response of a list, at most (well under a frame).
const LIST_BYTES: usize = 512 * 1024;

/// `items` cut into responses that each fit in a frame (at least one
/// response, empty if there are no items). A list answer is one or more
/// of them, which the client puts together.
pub(crate) fn batches<T: serde::Serialize>(items: Vec<T>) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut bytes = 0;
    for item in items {
        let size = p2pfs_proto::codec::encode(&item).map_or(LIST_BYTES, |b| b.len());
        if !cur.is_empty() && (cur.len() == LIST_BATCH || bytes + size > LIST_BYTES) {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes += size;
        cur.push(item);
    }
    if !cur.is_empty() || out.is_empty() {
        out.push(cur);
    }
    out
}

/// What a command runs against.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    store: Store,
    node: Option<Node>,
    daemon: bool,
}

impl Ctx {
    /// A daemon's node.
    pub(crate) fn daemon(node: Node) -> Self {
        Self {
            store: node.store().clone(),
            node: Some(node),
            daemon: true,
        }
    }

    /// A store opened for one command, with a node if the command needs the
    /// network.
    pub(crate) fn local(store: Store, node: Option<Node>) -> Self {
        Self {
            store,
            node,
            daemon: false,
        }
    }

    pub(crate) fn node(&self) -> Result<&Node, AppError> {
        self.node.as_ref().ok_or(AppError::NeedsNode)
    }
}

/// Whether `request` needs the network (a node) rather than just the
/// store: a fetch of a blob the store has complete does not.
pub(crate) async fn needs_node(request: &Request, store: &Store) -> Result<bool, AppError> {
    Ok(match request {
        Request::Fetch(fetch) => !have_complete(store, fetch.target()?.0).await?,
        Request::Status | Request::Ticket { .. } | Request::Room(_) => true,
        _ => false,
    })
}

/// Whether the store has all of `hash`.
async fn have_complete(store: &Store, hash: Hash) -> Result<bool, AppError> {
    let s = store.clone();
    let info = blocking(move || s.info(&hash)).await?;
    Ok(info.is_some_and(|i| i.state == BlobState::Complete))
}

/// Runs `request`, sending its responses to `out`, ending with `Done` or
/// `Error`. `input` carries the bytes of an add from standard input.
pub(crate) async fn run(
    ctx: Ctx,
    request: Request,
    input: mpsc::Receiver<Bytes>,
    out: mpsc::Sender<Response>,
) {
    let last = match execute(&ctx, request, input, &out).await {
        Ok(()) => Response::Done,
        Err(e) => Response::Error(e.to_string()),
    };
    let _ = out.send(last).await;
}

async fn execute(
    ctx: &Ctx,
    request: Request,
    input: mpsc::Receiver<Bytes>,
    out: &mpsc::Sender<Response>,
) -> Result<(), AppError> {
    let store = ctx.store.clone();
    let send = |r: Response| async { out.send(r).await.map_err(|_| AppError::ClientGone) };
    match request {
        Request::Add { items, pin } => {
            let pin = pin.then_some(USER_PIN);
            let mut input = Some(input);
            for (index, item) in items.into_iter().enumerate() {
                let index = index as u32;
                let store = store.clone();
                let result = match item {
                    AddItem::Path(path) => {
                        blocking(move || store.import_file(&path, pin).map(|r| (r.hash, r.size)))
                            .await
                    }
                    AddItem::Stdin => {
                        let Some(rx) = input.take() else {
                            send(Response::ItemFailed {
                                index,
                                message: AppError::StdinTwice.to_string(),
                            })
                            .await?;
                            continue;
                        };
                        blocking(move || {
                            store
                                .import_reader(InputReader::new(rx), "standard input", pin)
                                .map(|r| (r.hash, r.size))
                        })
                        .await
                    }
                };
                match result {
                    Ok((hash, size)) => {
                        if let Some(node) = &ctx.node {
                            node.provide(hash);
                        }
                        send(Response::Added { index, hash, size }).await?
                    }
                    // A full disk stops the whole command.
                    Err(e @ AppError::Store(StoreError::NoSpace { .. })) => return Err(e),
                    Err(e) => {
                        send(Response::ItemFailed {
                            index,
                            message: e.to_string(),
                        })
                        .await?
                    }
                }
            }
        }
        Request::Cat { hash } => send_blob(store, hash, out).await?,
        Request::Export { hash, path } => {
            let size = blocking(move || export(&store, hash, &path)).await?;
            send(Response::Added {
                index: 0,
                hash,
                size,
            })
            .await?;
        }
        Request::Import { path } => {
            let blobs = blocking(move || {
                let file = std::fs::File::open(&path).map_err(|source| StoreError::Io {
                    context: format!("opening {}", path.display()),
                    source,
                })?;
                store.import_bundle(std::io::BufReader::new(file), Some(USER_PIN))
            })
            .await?;
            for (index, (hash, size)) in blobs.into_iter().enumerate() {
                if let Some(node) = &ctx.node {
                    node.provide(hash);
                }
                send(Response::Added {
                    index: index as u32,
                    hash,
                    size,
                })
                .await?;
            }
        }
        Request::List => {
            let blobs = blocking(move || store.list()).await?;
            for batch in batches(blobs) {
                send(Response::Blobs(batch)).await?;
            }
        }
        Request::Pin(Blobs { hashes }) => {
            for hash in hashes {
                let s = store.clone();
                let present = blocking(move || s.pin(&hash, USER_PIN)).await?;
                send(Response::Pinned { hash, present }).await?;
            }
        }
        Request::Unpin(Blobs { hashes }) => {
            for hash in hashes {
                let s = store.clone();
                let existed = blocking(move || s.unpin(&hash, USER_PIN)).await?;
                send(Response::Unpinned { hash, existed }).await?;
            }
        }
        Request::Gc => send(Response::Gc(blocking(move || store.gc()).await?)).await?,
        Request::Verify(VerifyBlobs { hashes }) => {
            let hashes = if hashes.is_empty() {
                let s = store.clone();
                blocking(move || s.list())
                    .await?
                    .into_iter()
                    .map(|b| b.hash)
                    .collect()
            } else {
                hashes
            };
            for hash in hashes {
                let s = store.clone();
                let error =
                    blocking(move || Ok(s.verify(&hash).err().map(|e| e.to_string()))).await?;
                send(Response::Verified { hash, error }).await?;
            }
        }
        Request::Status => {
            let node = ctx.node()?;
            if !ctx.daemon {
                // A node started for this command: show what it joined.
                node.wait_joined().await;
            }
            let blobs = blocking(move || store.list()).await?;
            send(Response::Status(Status {
                node: node.id(),
                addrs: node.addrs(),
                peers: node.peers(),
                blobs: blobs.len(),
                complete: blobs
                    .iter()
                    .filter(|b| b.state == BlobState::Complete)
                    .count(),
                bytes: blobs.iter().map(|b| b.present).sum(),
                daemon: ctx.daemon,
                dht: node.dht_status(),
                banned: node.banned(),
                reach: node.reach(),
            }))
            .await?;
        }
        Request::Fetch(fetch) => {
            let (hash, ticket) = fetch.target()?;
            let pin = !fetch.no_pin;
            if have_complete(&store, hash).await? {
                // Already here: no one to ask, and nothing to wait for.
                let started = std::time::Instant::now();
                let s = store.clone();
                let size = blocking(move || {
                    if pin {
                        s.pin(&hash, USER_PIN)?;
                    }
                    Ok(s.info(&hash)?.map_or(0, |i| i.size))
                })
                .await?;
                send(Response::Fetched(p2pfs_swarm::FetchStats {
                    size,
                    received: 0,
                    elapsed: started.elapsed(),
                    providers: Vec::new(),
                }))
                .await?;
                return Ok(());
            }
            let node = ctx.node()?;
            let providers = ticket.map(|t| t.providers).unwrap_or_default();
            let mut targets = targets(providers, fetch.peers);
            if targets.is_empty() {
                targets = dht_providers(node, hash).await?;
            } else if ctx.daemon {
                // Whoever we were told of may know the network too.
                let (n, seeds) = (node.clone(), targets.clone());
                tokio::spawn(async move { n.join(seeds).await });
            }
            let (tx, mut rx) = watch::channel(p2pfs_swarm::FetchProgress::default());
            let forward = {
                let out = out.clone();
                tokio::spawn(async move {
                    while rx.changed().await.is_ok() {
                        let p = rx.borrow_and_update().clone();
                        if out.send(Response::Progress(p)).await.is_err() {
                            break;
                        }
                    }
                })
            };
            if pin {
                // Pinned first, so GC spares the download while it runs.
                let s = store.clone();
                blocking(move || s.pin(&hash, USER_PIN)).await?;
            }
            let result = node.fetch(hash, targets, Some(tx)).await;
            forward.abort();
            send(Response::Fetched(result?)).await?;
        }
        Request::Room(r) => room::execute(ctx, r, out).await?,
        Request::Leave => {
            let mut rx = ctx.node()?.leave(None);
            loop {
                let p = rx.borrow_and_update().clone();
                let done = p.done;
                send(Response::Leaving(p)).await?;
                if done || rx.changed().await.is_err() {
                    break;
                }
            }
        }
        Request::Ticket { hash, name } => {
            let node = ctx.node()?;
            let s = store.clone();
            if blocking(move || s.info(&hash)).await?.is_none() {
                return Err(StoreError::NotFound(hash).into());
            }
            let ticket = BlobTicket::new(hash, name, vec![node.node_addr()]);
            send(Response::Ticket(ticket.to_string())).await?;
        }
    }
    Ok(())
}

/// Writes blob `hash` to the bundle file `path` (replaced whole once
/// written: a failed export leaves what was there); its size.
fn export(store: &Store, hash: Hash, path: &std::path::Path) -> Result<u64, StoreError> {
    let size = store.info(&hash)?.map_or(0, |i| i.size);
    let io = |source| StoreError::Io {
        context: format!("writing {}", path.display()),
        source,
    };
    let mut w = p2pfs_store::OutputFile::create(path).map_err(io)?;
    store.export_bundle(&[hash], &mut w)?;
    w.finish(true).map_err(io)?;
    Ok(size)
}

/// Streams a blob's bytes as `Data` responses.
pub(crate) async fn send_blob(
    store: Store,
    hash: Hash,
    out: &mpsc::Sender<Response>,
) -> Result<(), AppError> {
    let out = out.clone();
    p2pfs_swarm::off_thread(move || -> Result<(), AppError> {
        let reader = store.reader(&hash)?;
        let mut offset = 0;
        let mut buf = vec![0u8; DATA_CHUNK];
        loop {
            let n = reader
                .read_at(offset, &mut buf)
                .map_err(|source| AppError::ReadBlob { hash, source })?;
            if n == 0 {
                return Ok(());
            }
            offset += n as u64;
            if out
                .blocking_send(Response::Data(buf[..n].to_vec()))
                .is_err()
            {
                return Ok(());
            }
        }
    })
    .await?
}

/// The providers of `hash` the DHT knows, or why there are none.
async fn dht_providers(node: &Node, hash: Hash) -> Result<Vec<Target>, AppError> {
    let found = node.find_providers(hash).await?;
    if found.is_empty() {
        // The BitTorrent Mainline DHT, where public blobs are announced too.
        let mainline = node.find_mainline_providers(hash).await;
        if !mainline.is_empty() {
            return Ok(mainline);
        }
        let known = node.dht_status().table;
        let reason = if known == 0 {
            "no peers: this node knows no other node (give one with --peer, \
             use a ticket, or start `p2pfs daemon --peer ADDR`)"
                .to_string()
        } else {
            format!(
                "no provider found in the DHT (asked the network through {known} known node{})",
                if known == 1 { "" } else { "s" }
            )
        };
        return Err(SwarmError::Unavailable { hash, reason }.into());
    }
    Ok(found.into_iter().map(Target::from).collect())
}

/// Dial targets from ticket providers and `--peer` addresses.
fn targets(providers: Vec<NodeAddr>, peers: Vec<PeerAddr>) -> Vec<Target> {
    let mut out: Vec<Target> = providers.into_iter().map(Target::from).collect();
    out.extend(peers.into_iter().map(Target::from));
    out
}

/// Reads the bytes of an add from standard input as they arrive.
struct InputReader {
    rx: mpsc::Receiver<Bytes>,
    cur: Bytes,
    done: bool,
}

impl InputReader {
    fn new(rx: mpsc::Receiver<Bytes>) -> Self {
        Self {
            rx,
            cur: Bytes::new(),
            done: false,
        }
    }
}

impl Read for InputReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            if self.done {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(b) if b.is_empty() => self.done = true,
                Some(b) => self.cur = b,
                None => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "standard input was cut off",
                    ));
                }
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_batches_fit_in_a_frame() {
        let n = |v: &Vec<Vec<String>>| v.iter().map(Vec::len).collect::<Vec<_>>();
        assert_eq!(n(&batches(Vec::<String>::new())), vec![0]);
        let small: Vec<String> = (0..2500).map(|i| format!("f{i}")).collect();
        let b = batches(small.clone());
        assert_eq!(n(&b), vec![1000, 1000, 500]);
        assert_eq!(b.concat(), small);
        // Long paths: cut by size, each batch encodes within a frame.
        let long: Vec<String> = (0..1000)
            .map(|i| format!("{i}{}", "x".repeat(4000)))
            .collect();
        let b = batches(long.clone());
        assert!(b.len() > 1);
        for batch in &b {
            assert!(p2pfs_proto::codec::encode(batch).is_ok());
        }
        assert_eq!(b.concat(), long);
    }
}
