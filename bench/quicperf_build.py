#!/usr/bin/env python3
"""Builds ../shared/bench/quicperf (a bare quinn bulk transfer) in OUT_DIR, as shipped or,
with --tuned, with p2pfs's transport settings, so the benchmark can also compare p2pfs with
quinn configured the same way: path MTU discovery up to 6000-byte UDP payloads and 8 MiB
socket buffers (see crates/swarm/src/net/endpoint.rs). The tuned build patches a copy of the
source; if it no longer has the expected shape, this says so and prints nothing.

--floor is the tuned build doing the least work any verified file transfer must do on top of
its transport, to tell the transport's cost from the work's: the server reads what it sends
from the file QP_SRC (into reused 1 MiB buffers), and the client hashes every byte it
receives with BLAKE3 (SIMD) and writes it to QP_SINK.N (N: the stream) through aligned
buffers with O_DIRECT, then syncs it, as p2pfs stores downloads; hashing and writing run on
two threads of their own, so they overlap with receiving.
Without QP_SRC and QP_SINK it behaves as --tuned.

  quicperf_build.py SHARED_BENCH_DIR OUT_DIR [--tuned | --floor]   (prints the binary's path)
"""
import os, shutil, subprocess, sys

SHARED, OUT = sys.argv[1], sys.argv[2]
FLOOR = "--floor" in sys.argv[3:]
TUNED = FLOOR or "--tuned" in sys.argv[3:]

PATCHES = [
    ("    t.send_window(64 << 20);\n",
     "    t.send_window(64 << 20);\n"
     "    let mut mtu = quinn::MtuDiscoveryConfig::default();\n"
     "    mtu.upper_bound(6000);\n"
     "    t.mtu_discovery_config(Some(mtu));\n"),
    ("    let ep = Endpoint::server(sc, addr)?;",
     "    let ep = tuned_endpoint(Some(sc), addr)?;"),
    ('    let mut ep = Endpoint::client("127.0.0.1:0".parse()?)?;',
     '    let mut ep = tuned_endpoint(None, "127.0.0.1:0".parse()?)?;'),
    ("fn bytes_buf()",
     "fn tuned_endpoint(sc: Option<ServerConfig>, addr: SocketAddr) -> Result<Endpoint> {\n"
     "    let mut c = quinn::EndpointConfig::default();\n"
     "    c.max_udp_payload_size(6000)?;\n"
     "    let s = std::net::UdpSocket::bind(addr)?;\n"
     "    let r = socket2::SockRef::from(&s);\n"
     "    r.set_recv_buffer_size(8 << 20)?;\n"
     "    r.set_send_buffer_size(8 << 20)?;\n"
     "    Ok(Endpoint::new(c, sc, s, Arc::new(quinn::TokioRuntime))?)\n"
     "}\n\n"
     "fn bytes_buf()"),
]

FLOOR_PATCHES = [
    ("                    let buf = bytes_buf();\n",
     "                    let buf = bytes_buf();\n"
     "                    let mut src = floor::Source::open();\n"),
    ("                        if send.write_chunk(buf.slice(..n)).await.is_err() { return; }",
     "                        let Some(chunk) = src.next(&buf, n) else { return };\n"
     "                        if send.write_chunk(chunk).await.is_err() { return; }"),
    ("            let mut got = 0u64;\n"
     "            while let Some(c) = recv.read_chunk(CHUNK, true).await? {\n"
     "                got += c.bytes.len() as u64;\n"
     "            }\n",
     "            let mut got = 0u64;\n"
     "            let mut sink = floor::Sink::open(i)?;\n"
     "            while let Some(c) = recv.read_chunk(CHUNK, true).await? {\n"
     "                got += c.bytes.len() as u64;\n"
     "                sink.take(c.bytes).await?;\n"
     "            }\n"
     "            sink.finish()?;\n"),
]

FLOOR_MODULE = r'''

/// The least work of a verified file transfer (bench/quicperf_build.py --floor).
mod floor {
    use std::{
        fs::{File, OpenOptions},
        io::Read,
        os::unix::fs::{FileExt, OpenOptionsExt},
        sync::mpsc,
        thread,
    };

    use anyhow::anyhow;
    use bytes::{Bytes, BytesMut};

    use super::CHUNK;

    const O_DIRECT: i32 = 0o40000;
    const ALIGN: usize = 4096;
    /// Aligned buffers between the hashing and the writing thread.
    const BUFS: usize = 8;

    /// What a server stream sends: QP_SRC's bytes, read into buffers quinn has released.
    pub struct Source { file: Option<File>, pool: Vec<Bytes> }

    impl Source {
        pub fn open() -> Self {
            let file = std::env::var_os("QP_SRC").map(|p| File::open(p).expect("QP_SRC"));
            Self { file, pool: Vec::new() }
        }

        pub fn next(&mut self, fallback: &Bytes, n: usize) -> Option<Bytes> {
            let Some(file) = self.file.as_mut() else { return Some(fallback.slice(..n)) };
            let reused = self.pool.iter().position(|b| b.is_unique())
                .and_then(|i| self.pool.swap_remove(i).try_into_mut().ok());
            let mut buf = reused.unwrap_or_else(|| BytesMut::zeroed(CHUNK));
            buf.resize(n, 0);
            file.read_exact(&mut buf).ok()?;
            let out = buf.freeze();
            if self.pool.len() < 64 { self.pool.push(out.clone()); }
            Some(out)
        }
    }

    /// CHUNK bytes at an aligned address, as O_DIRECT needs.
    struct Aligned { mem: Vec<u8>, at: usize, len: usize }

    impl Aligned {
        fn new() -> Self {
            let mem = vec![0u8; CHUNK + ALIGN];
            let at = mem.as_ptr().align_offset(ALIGN);
            Self { mem, at, len: 0 }
        }
        fn room(&self) -> usize { CHUNK - self.len }
        fn put(&mut self, b: &[u8]) {
            let start = self.at + self.len;
            self.mem[start..start + b.len()].copy_from_slice(b);
            self.len += b.len();
        }
        fn data(&self) -> &[u8] { &self.mem[self.at..self.at + self.len] }
    }

    /// What a client stream does with what it receives, off the stream's task: one thread
    /// hashes it and copies it into aligned buffers, another writes them (so receiving,
    /// hashing and the disk overlap, as in p2pfs).
    pub struct Sink { tx: Option<tokio::sync::mpsc::Sender<Bytes>>, hasher: Option<thread::JoinHandle<anyhow::Result<()>>> }

    impl Sink {
        pub fn open(stream: usize) -> anyhow::Result<Self> {
            let Some(path) = std::env::var_os("QP_SINK") else { return Ok(Self { tx: None, hasher: None }) };
            let mut path = path.into_string().map_err(|_| anyhow!("QP_SINK"))?;
            path.push_str(&format!(".{stream}"));
            let file = OpenOptions::new().write(true).create(true).truncate(true)
                .custom_flags(O_DIRECT).open(path)?;
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(64);
            let (full_tx, full_rx) = mpsc::sync_channel::<Aligned>(BUFS);
            let (free_tx, free_rx) = mpsc::channel::<Aligned>();
            for _ in 0..BUFS { free_tx.send(Aligned::new())?; }
            let writer = thread::spawn(move || -> anyhow::Result<()> {
                let mut off = 0u64;
                for mut buf in full_rx {
                    write_direct(&file, buf.data(), off)?;
                    off += buf.len as u64;
                    buf.len = 0;
                    let _ = free_tx.send(buf);
                }
                file.sync_all()?;
                Ok(())
            });
            let hasher = thread::spawn(move || -> anyhow::Result<()> {
                let mut h = blake3::Hasher::new();
                let mut buf = free_rx.recv()?;
                while let Some(mut b) = rx.blocking_recv() {
                    h.update(&b);
                    while !b.is_empty() {
                        let n = buf.room().min(b.len());
                        buf.put(&b[..n]);
                        b = b.slice(n..);
                        if buf.room() == 0 {
                            full_tx.send(buf)?;
                            buf = free_rx.recv()?;
                        }
                    }
                }
                if buf.len > 0 { full_tx.send(buf)?; }
                drop(full_tx);
                writer.join().map_err(|_| anyhow!("writer panicked"))??;
                eprintln!("blake3 {}", h.finalize());
                Ok(())
            });
            Ok(Self { tx: Some(tx), hasher: Some(hasher) })
        }

        pub async fn take(&mut self, bytes: Bytes) -> anyhow::Result<()> {
            if let Some(tx) = &self.tx { tx.send(bytes).await.map_err(|_| anyhow!("hasher gone"))?; }
            Ok(())
        }

        pub fn finish(mut self) -> anyhow::Result<()> {
            drop(self.tx.take());
            if let Some(h) = self.hasher.take() { h.join().map_err(|_| anyhow!("hasher panicked"))??; }
            Ok(())
        }
    }

    fn write_direct(f: &File, data: &[u8], off: u64) -> anyhow::Result<()> {
        if data.len() % 512 == 0 {
            f.write_all_at(data, off)?;
        } else {
            // A last partial block: padded for O_DIRECT, then cut back.
            let mut padded = data.to_vec();
            padded.resize(data.len().next_multiple_of(512), 0);
            f.write_all_at(&padded, off)?;
            f.set_len(off + data.len() as u64)?;
        }
        Ok(())
    }
}
'''


def main():
    binary = os.path.join(OUT, "target", "release", "quicperf")
    if os.path.exists(binary):
        print(binary)
        return
    shutil.rmtree(OUT, ignore_errors=True)
    shutil.copytree(os.path.join(SHARED, "quicperf"), OUT)
    subprocess.run(f"chmod -R u+w {OUT}", shell=True, check=True)
    if TUNED and not tune():
        return
    if FLOOR and not floor():
        return
    subprocess.run(f"cd {OUT} && CARGO_TARGET_DIR={OUT}/target cargo build --release -q",
                   shell=True, check=True)
    print(binary)


def patch(patches, what, extra_source="", dependency="", tokio_feature=""):
    """Applies `patches` to the copy in OUT (appending `extra_source`) and adds `dependency` to
    its [dependencies] (the table before [profile.release]) and `tokio_feature` to tokio's;
    false if the source is not as expected."""
    src = os.path.join(OUT, "src", "main.rs")
    text = open(src).read()
    for old, new in patches:
        if text.count(old) != 1:
            print(f"quicperf source changed ({old.strip()[:40]!r} not found once): "
                  f"{what} baseline skipped", file=sys.stderr)
            return False
        text = text.replace(old, new)
    open(src, "w").write(text + extra_source)
    toml_path = os.path.join(OUT, "Cargo.toml")
    head, sep, tail = open(toml_path).read().partition("[profile.release]")
    if tokio_feature:
        head = head.replace('"io-util", "time"]', f'"io-util", "time", "{tokio_feature}"]')
    open(toml_path, "w").write(head.rstrip("\n") + f"\n{dependency}\n\n" + sep + tail)
    return True


def tune():
    return patch(PATCHES, "tuned", dependency='socket2 = "0.6"')


def floor():
    return patch(FLOOR_PATCHES, "floor", FLOOR_MODULE, 'blake3 = "1"', "sync")


if __name__ == "__main__":
    main()
