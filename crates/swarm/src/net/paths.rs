//! Relayed paths on the node's one socket. QUIC sees a relayed peer at a
//! made-up address in 240.0.0.0/8 (reserved, never routed): what quinn
//! sends there goes into the circuit through the relay (see
//! [`crate::relay`]) instead of the UDP socket, and what the circuit
//! brings back arrives as if from that address. So a relayed connection is
//! an ordinary QUIC connection, TLS end to end between the two nodes, on
//! the same endpoint as every direct one.

use std::{
    collections::HashMap,
    fmt, io,
    net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV6},
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};

use p2pfs_proto::NodeId;
use quinn::{
    AsyncUdpSocket, UdpPoller,
    udp::{RecvMeta, Transmit},
};
use tokio::sync::mpsc;

/// The first octet of every path address.
const PREFIX: u8 = 240;

/// Packets waiting to go out on one circuit; more are dropped, as a full
/// link drops them, and QUIC's congestion control backs off.
const OUT_QUEUE: usize = 512;

/// Relayed packets received and not yet read by the endpoint, all paths.
const IN_QUEUE: usize = 2048;

/// Whether `addr` is a relayed path's made-up address (never a real one
/// to learn, store or pass on).
pub(crate) fn is_path_addr(addr: &SocketAddr) -> bool {
    matches!(addr.ip().to_canonical(), IpAddr::V4(v4) if v4.octets()[0] == PREFIX)
}

/// One relayed path.
#[derive(Debug)]
struct Path {
    relay: NodeId,
    peer: NodeId,
    out: mpsc::Sender<Vec<u8>>,
    generation: u64,
}

#[derive(Debug, Default)]
struct Table {
    by_addr: HashMap<SocketAddrV4Key, Path>,
    by_pair: HashMap<(NodeId, NodeId), SocketAddrV4Key>,
    next: u32,
    generation: u64,
}

/// A path address in its canonical (IPv4) form.
type SocketAddrV4Key = std::net::SocketAddrV4;

/// Every relayed path of the node, shared by the socket and the relay
/// code.
pub(crate) struct Paths {
    table: Mutex<Table>,
    /// Whether the endpoint's socket is IPv6 (quinn then sees IPv4
    /// addresses in their mapped form).
    v6: bool,
    inbound: mpsc::Sender<(SocketAddr, Vec<u8>)>,
}

impl fmt::Debug for Paths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Paths")
            .field("open", &crate::lock(&self.table).by_addr.len())
            .finish()
    }
}

/// A path as [`Paths::open`] registered it: the address quinn dials or
/// sees, and the packets quinn sends there.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) addr: SocketAddr,
    pub(crate) outgoing: mpsc::Receiver<Vec<u8>>,
    pub(crate) generation: u64,
}

fn key(addr: &SocketAddr) -> Option<SocketAddrV4Key> {
    match addr.ip().to_canonical() {
        IpAddr::V4(v4) if v4.octets()[0] == PREFIX => {
            Some(std::net::SocketAddrV4::new(v4, addr.port()))
        }
        _ => None,
    }
}

impl Paths {
    fn quinn_addr(&self, k: SocketAddrV4Key) -> SocketAddr {
        if self.v6 {
            SocketAddr::V6(SocketAddrV6::new(k.ip().to_ipv6_mapped(), k.port(), 0, 0))
        } else {
            SocketAddr::V4(k)
        }
    }

    /// Registers the path to `peer` through `relay` (or takes it over: a
    /// new circuit for the same pair keeps the address, so connections on
    /// it carry on).
    pub(crate) fn open(&self, relay: NodeId, peer: NodeId) -> Opened {
        let (tx, rx) = mpsc::channel(OUT_QUEUE);
        let mut t = crate::lock(&self.table);
        t.generation += 1;
        let generation = t.generation;
        let k = match t.by_pair.get(&(relay, peer)) {
            Some(k) => *k,
            None => {
                // The next free address: 2^24 of them, and the relay code
                // keeps at most `relay::MAX_PATHS` open, so the loop ends
                // within that many steps.
                let k = loop {
                    t.next = t.next.wrapping_add(1) & 0x00ff_ffff;
                    let [_, b, c, d] = t.next.max(1).to_be_bytes();
                    let k = std::net::SocketAddrV4::new(Ipv4Addr::new(PREFIX, b, c, d), 1);
                    if !t.by_addr.contains_key(&k) {
                        break k;
                    }
                };
                t.by_pair.insert((relay, peer), k);
                k
            }
        };
        t.by_addr.insert(
            k,
            Path {
                relay,
                peer,
                out: tx,
                generation,
            },
        );
        drop(t);
        Opened {
            addr: self.quinn_addr(k),
            outgoing: rx,
            generation,
        }
    }

    /// Forgets the path at `addr` if it is still the one opened as
    /// `generation` (a newer circuit may have taken it over).
    pub(crate) fn close(&self, addr: &SocketAddr, generation: u64) {
        let Some(k) = key(addr) else { return };
        let mut t = crate::lock(&self.table);
        if t.by_addr
            .get(&k)
            .is_some_and(|p| p.generation == generation)
            && let Some(p) = t.by_addr.remove(&k)
        {
            t.by_pair.remove(&(p.relay, p.peer));
        }
    }

    /// The relay and peer of the path at `addr`.
    pub(crate) fn via(&self, addr: &SocketAddr) -> Option<(NodeId, NodeId)> {
        let k = key(addr)?;
        crate::lock(&self.table)
            .by_addr
            .get(&k)
            .map(|p| (p.relay, p.peer))
    }

    /// An open path to `peer`: its address and relay.
    pub(crate) fn to(&self, peer: &NodeId) -> Option<(SocketAddr, NodeId)> {
        let t = crate::lock(&self.table);
        let (k, p) = t.by_addr.iter().find(|(_, p)| p.peer == *peer)?;
        Some((self.quinn_addr(*k), p.relay))
    }

    /// How many paths are open.
    pub(crate) fn len(&self) -> usize {
        crate::lock(&self.table).by_addr.len()
    }

    /// Hands `packet`, which arrived through the path at `addr`, to the
    /// endpoint. Waits while the endpoint is behind (the circuit then
    /// backs up to the relay and the sender).
    pub(crate) async fn deliver(&self, addr: SocketAddr, packet: Vec<u8>) -> bool {
        self.inbound.send((addr, packet)).await.is_ok()
    }

    /// Sends quinn's transmit into its path's circuit. A GSO batch is cut
    /// into its datagrams. A full or closed circuit drops them, as a link
    /// would.
    fn send(&self, t: &Transmit<'_>) {
        let Some(k) = key(&t.destination) else { return };
        let out = match crate::lock(&self.table).by_addr.get(&k) {
            Some(p) => p.out.clone(),
            None => return,
        };
        let size = t.segment_size.unwrap_or(t.contents.len()).max(1);
        for packet in t.contents.chunks(size) {
            if out.try_send(packet.to_vec()).is_err() {
                return;
            }
        }
    }
}

/// The node's socket: the UDP socket, and the relayed paths beside it.
pub(crate) struct MuxSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    paths: Arc<Paths>,
    inbound: Mutex<mpsc::Receiver<(SocketAddr, Vec<u8>)>>,
    /// Which source is read first on the next poll (so neither starves).
    relay_first: AtomicBool,
}

impl fmt::Debug for MuxSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MuxSocket")
            .field("paths", &self.paths)
            .finish()
    }
}

impl MuxSocket {
    /// Wraps `inner`; returns the socket and the path table it shares
    /// with the relay code.
    pub(crate) fn new(inner: Arc<dyn AsyncUdpSocket>) -> io::Result<(Arc<Self>, Arc<Paths>)> {
        let v6 = inner.local_addr()?.is_ipv6();
        let (tx, rx) = mpsc::channel(IN_QUEUE);
        let paths = Arc::new(Paths {
            table: Mutex::default(),
            v6,
            inbound: tx,
        });
        Ok((
            Arc::new(Self {
                inner,
                paths: paths.clone(),
                inbound: Mutex::new(rx),
                relay_first: AtomicBool::new(false),
            }),
            paths,
        ))
    }

    fn poll_relayed(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [io::IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let (Some(buf), Some(m)) = (bufs.first_mut(), meta.first_mut()) else {
            return Poll::Ready(Ok(0));
        };
        let mut rx = crate::lock(&self.inbound);
        loop {
            match rx.poll_recv(cx) {
                Poll::Ready(Some((addr, packet))) => {
                    // A packet larger than quinn's buffer is dropped.
                    let Some(dst) = buf.get_mut(..packet.len()) else {
                        continue;
                    };
                    dst.copy_from_slice(&packet);
                    *m = RecvMeta {
                        addr,
                        len: packet.len(),
                        stride: packet.len(),
                        ecn: None,
                        dst_ip: None,
                    };
                    return Poll::Ready(Ok(1));
                }
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl AsyncUdpSocket for MuxSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, t: &Transmit<'_>) -> io::Result<()> {
        if key(&t.destination).is_some() {
            self.paths.send(t);
            return Ok(());
        }
        self.inner.try_send(t)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [io::IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let relay_first = !self.relay_first.fetch_xor(true, Ordering::Relaxed);
        if relay_first {
            if let Poll::Ready(r) = self.poll_relayed(cx, bufs, meta) {
                return Poll::Ready(r);
            }
            self.inner.poll_recv(cx, bufs, meta)
        } else {
            if let Poll::Ready(r) = self.inner.poll_recv(cx, bufs, meta) {
                return Poll::Ready(r);
            }
            self.poll_relayed(cx, bufs, meta)
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> NodeId {
        NodeId::from_bytes([b; 32])
    }

    #[tokio::test]
    async fn paths_keep_their_address_and_close_by_generation() {
        let rt = quinn::default_runtime().unwrap();
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (_sock, paths) = MuxSocket::new(rt.wrap_udp_socket(s).unwrap()).unwrap();
        let a = paths.open(id(1), id(2));
        assert!(is_path_addr(&a.addr));
        assert!(a.addr.is_ipv4());
        assert_eq!(paths.via(&a.addr), Some((id(1), id(2))));
        assert_eq!(paths.to(&id(2)), Some((a.addr, id(1))));
        let b = paths.open(id(1), id(3));
        assert_ne!(a.addr, b.addr);
        // A new circuit for the same pair takes the path over.
        let a2 = paths.open(id(1), id(2));
        assert_eq!(a2.addr, a.addr);
        paths.close(&a.addr, a.generation);
        assert_eq!(paths.via(&a.addr), Some((id(1), id(2))), "stale close");
        paths.close(&a2.addr, a2.generation);
        assert_eq!(paths.via(&a.addr), None);
        assert_eq!(paths.len(), 1);
        assert!(!is_path_addr(&"10.0.0.1:5".parse().unwrap()));
        assert!(is_path_addr(&"[::ffff:240.0.0.9]:1".parse().unwrap()));
    }

    #[tokio::test]
    async fn a_gso_batch_goes_out_as_its_datagrams() {
        let rt = quinn::default_runtime().unwrap();
        let s = std::net::UdpSocket::bind("[::1]:0").unwrap();
        let (sock, paths) = MuxSocket::new(rt.wrap_udp_socket(s).unwrap()).unwrap();
        let mut p = paths.open(id(1), id(2));
        assert!(p.addr.is_ipv6(), "an IPv6 socket sees mapped addresses");
        let contents = [1u8; 2500];
        sock.try_send(&Transmit {
            destination: p.addr,
            ecn: None,
            contents: &contents,
            segment_size: Some(1200),
            src_ip: None,
        })
        .unwrap();
        let sizes: Vec<usize> = (0..3)
            .map(|_| p.outgoing.try_recv().unwrap().len())
            .collect();
        assert_eq!(sizes, vec![1200, 1200, 100]);
        assert!(paths.deliver(p.addr, vec![9; 10]).await);
        let mut buf = [0u8; 64];
        let mut bufs = [io::IoSliceMut::new(&mut buf)];
        let mut meta = [RecvMeta::default()];
        let n = std::future::poll_fn(|cx| sock.poll_recv(cx, &mut bufs, &mut meta))
            .await
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(meta[0].addr, p.addr);
        assert_eq!(meta[0].len, 10);
    }
}
