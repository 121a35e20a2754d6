//! An emulated link delay, for tests and experiments on one machine: the
//! node's UDP socket holds every datagram it sends for a delay (plus or
//! minus a jitter, which reorders them as a real path can) before sending
//! it. Two nodes that each delay by `d` see a round trip of `2d`.
//!
//! This kernel has no `netem`; loss, partitions and bandwidth limits are
//! emulated outside the node (nftables, `tbf`), delay here. A daemon turns
//! it on with `P2PFS_LINK_DELAY=25ms` or `P2PFS_LINK_DELAY=25ms~5ms`, in
//! a build with the `test-hooks` feature (the socket that delays is not in
//! what users install; elsewhere a delay is refused at start).

use std::{str::FromStr, time::Duration};

/// A one-way delay with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkDelay {
    /// The mean delay added to every datagram sent.
    pub delay: Duration,
    /// Each datagram's delay is drawn uniformly within `delay ± jitter`.
    pub jitter: Duration,
}

impl FromStr for LinkDelay {
    type Err = String;

    /// `25ms` or `25ms~5ms` (delay, then jitter; `ms` or `us`).
    fn from_str(s: &str) -> Result<Self, String> {
        let one = |t: &str| -> Result<Duration, String> {
            let t = t.trim();
            let (n, unit) = t
                .find(|c: char| !c.is_ascii_digit())
                .map_or((t, ""), |i| t.split_at(i));
            let n: u64 = n
                .parse()
                .map_err(|_| format!("{s:?}: expected a delay like 25ms or 25ms~5ms"))?;
            match unit {
                "ms" => Ok(Duration::from_millis(n)),
                "us" => Ok(Duration::from_micros(n)),
                _ => Err(format!("{s:?}: use ms or us")),
            }
        };
        let (d, j) = s.split_once('~').unwrap_or((s, "0ms"));
        let (delay, jitter) = (one(d)?, one(j)?);
        if jitter > delay {
            return Err(format!("{s:?}: the jitter cannot exceed the delay"));
        }
        Ok(Self { delay, jitter })
    }
}

/// The delaying socket: test-only code, in builds with the `test-hooks`
/// feature.
#[cfg(feature = "test-hooks")]
mod delayed {
    use std::{
        cmp::Reverse,
        collections::BinaryHeap,
        fmt, io,
        net::{IpAddr, SocketAddr},
        pin::Pin,
        sync::{Arc, Mutex},
        task::{Context, Poll},
        time::Duration,
    };

    use quinn::{
        AsyncUdpSocket, UdpPoller,
        udp::{EcnCodepoint, RecvMeta, Transmit},
    };
    use tokio::{sync::mpsc, time::Instant};

    use super::LinkDelay;

    /// A datagram (or a GSO batch of them) waiting for its time.
    struct Held {
        at: Instant,
        seq: u64,
        destination: SocketAddr,
        ecn: Option<EcnCodepoint>,
        contents: Vec<u8>,
        segment_size: Option<usize>,
        src_ip: Option<IpAddr>,
    }

    impl PartialEq for Held {
        fn eq(&self, o: &Self) -> bool {
            (self.at, self.seq) == (o.at, o.seq)
        }
    }
    impl Eq for Held {}
    impl PartialOrd for Held {
        fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
            Some(self.cmp(o))
        }
    }
    impl Ord for Held {
        fn cmp(&self, o: &Self) -> std::cmp::Ordering {
            (self.at, self.seq).cmp(&(o.at, o.seq))
        }
    }

    /// A socket that delays what it sends.
    pub(crate) struct DelayedSocket {
        inner: Arc<dyn AsyncUdpSocket>,
        link: LinkDelay,
        tx: mpsc::UnboundedSender<Held>,
        state: Mutex<(fastrand::Rng, u64)>,
    }

    impl fmt::Debug for DelayedSocket {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("DelayedSocket")
                .field("link", &self.link)
                .finish()
        }
    }

    impl DelayedSocket {
        /// Wraps `inner`; the sending task runs until the socket is dropped.
        pub(crate) fn new(inner: Arc<dyn AsyncUdpSocket>, link: LinkDelay) -> Arc<Self> {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(send_loop(inner.clone(), rx));
            Arc::new(Self {
                inner,
                link,
                tx,
                state: Mutex::new((fastrand::Rng::new(), 0)),
            })
        }

        fn delay(&self, rng: &mut fastrand::Rng) -> Duration {
            let j = self.link.jitter.as_micros() as i64;
            let off = if j == 0 { 0 } else { rng.i64(-j..=j) };
            let us = (self.link.delay.as_micros() as i64 + off).max(0);
            Duration::from_micros(us as u64)
        }
    }

    /// Sends held datagrams when their time comes.
    async fn send_loop(inner: Arc<dyn AsyncUdpSocket>, mut rx: mpsc::UnboundedReceiver<Held>) {
        let mut heap: BinaryHeap<Reverse<Held>> = BinaryHeap::new();
        let mut poller = inner.clone().create_io_poller();
        loop {
            let next = heap.peek().map(|Reverse(h)| h.at);
            tokio::select! {
                h = rx.recv() => match h {
                    Some(h) => heap.push(Reverse(h)),
                    None if heap.is_empty() => return,
                    None => {}
                },
                _ = async {
                    match next {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {
                    while heap.peek().is_some_and(|Reverse(h)| h.at <= Instant::now()) {
                        let Some(Reverse(h)) = heap.pop() else { break };
                        let t = Transmit {
                            destination: h.destination,
                            ecn: h.ecn,
                            contents: &h.contents,
                            segment_size: h.segment_size,
                            src_ip: h.src_ip,
                        };
                        loop {
                            match inner.try_send(&t) {
                                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                    if std::future::poll_fn(|cx| poller.as_mut().poll_writable(cx))
                                        .await
                                        .is_err()
                                    {
                                        break;
                                    }
                                }
                                // Sent, or lost as a datagram may be.
                                _ => break,
                            }
                        }
                    }
                }
            }
        }
    }

    /// Always writable: datagrams are queued, not sent, at once.
    #[derive(Debug)]
    struct Ready;

    impl UdpPoller for Ready {
        fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncUdpSocket for DelayedSocket {
        fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
            Box::pin(Ready)
        }

        fn try_send(&self, t: &Transmit<'_>) -> io::Result<()> {
            let (at, seq) = {
                let mut st = crate::lock(&self.state);
                st.1 += 1;
                let d = self.delay(&mut st.0);
                (Instant::now() + d, st.1)
            };
            self.tx
                .send(Held {
                    at,
                    seq,
                    destination: t.destination,
                    ecn: t.ecn,
                    contents: t.contents.to_vec(),
                    segment_size: t.segment_size,
                    src_ip: t.src_ip,
                })
                .map_err(|_| io::Error::other("the delaying task stopped"))
        }

        fn poll_recv(
            &self,
            cx: &mut Context<'_>,
            bufs: &mut [io::IoSliceMut<'_>],
            meta: &mut [RecvMeta],
        ) -> Poll<io::Result<usize>> {
            self.inner.poll_recv(cx, bufs, meta)
        }

        fn local_addr(&self) -> io::Result<SocketAddr> {
            self.inner.local_addr()
        }

        /// One datagram per send: each is delayed, and lost by a filter,
        /// on its own (a GSO batch would travel, and be dropped, as one).
        fn max_transmit_segments(&self) -> usize {
            1
        }

        fn max_receive_segments(&self) -> usize {
            self.inner.max_receive_segments()
        }

        fn may_fragment(&self) -> bool {
            self.inner.may_fragment()
        }
    }
}

#[cfg(feature = "test-hooks")]
pub(crate) use delayed::DelayedSocket;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_delays() {
        let ms = Duration::from_millis;
        assert_eq!(
            "25ms".parse(),
            Ok(LinkDelay {
                delay: ms(25),
                jitter: ms(0)
            })
        );
        assert_eq!(
            "25ms~5ms".parse(),
            Ok(LinkDelay {
                delay: ms(25),
                jitter: ms(5)
            })
        );
        for bad in ["", "25", "25s", "5ms~6ms", "x"] {
            assert!(bad.parse::<LinkDelay>().is_err(), "{bad}");
        }
    }

    #[cfg(feature = "test-hooks")]
    #[tokio::test]
    async fn datagrams_arrive_after_the_delay() {
        use quinn::{AsyncUdpSocket, udp::Transmit};
        use tokio::time::Instant;
        let rt = quinn::default_runtime().unwrap();
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = b.local_addr().unwrap();
        let sock = DelayedSocket::new(
            rt.wrap_udp_socket(a).unwrap(),
            LinkDelay {
                delay: Duration::from_millis(40),
                jitter: Duration::ZERO,
            },
        );
        let started = Instant::now();
        for i in 0..3u8 {
            sock.try_send(&Transmit {
                destination: to,
                ecn: None,
                contents: &[i],
                segment_size: None,
                src_ip: None,
            })
            .unwrap();
        }
        let mut buf = [0u8; 8];
        for i in 0..3u8 {
            let (n, _) = b.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], &[i]);
        }
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(40), "{took:?}");
    }
}
