#!/usr/bin/env python3
"""Builds ../shared/bench/quicperf (a bare quinn bulk transfer) in OUT_DIR, as shipped or,
with --tuned, with p2pfs's transport settings, so the benchmark can also compare p2pfs with
quinn configured the same way: path MTU discovery up to 6000-byte UDP payloads and 8 MiB
socket buffers (see crates/swarm/src/net/endpoint.rs). The tuned build patches a copy of the
source; if it no longer has the expected shape, this says so and prints nothing.

--floor is the tuned build doing the least work any verified file transfer must do on top of
its transport, to tell the transport's cost from the work's: the server reads what it sends
from the file QP_SRC (into reused 1 MiB buffers), and the client hashes every byte it
receives with BLAKE3 (one hasher per stream, SIMD) and writes it to QP_SINK.N (N: the stream)
through an aligned buffer with O_DIRECT, then syncs it; p2pfs stores downloads the same way.
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
     "                sink.take(&c.bytes)?;\n"
     "            }\n"
     "            sink.finish()?;\n"),
]

FLOOR_MODULE = r'''

/// The least work of a verified file transfer (bench/quicperf_build.py --floor).
mod floor {
    use std::{fs::File, io::Read, os::unix::fs::{FileExt, OpenOptionsExt}};

    use bytes::{Bytes, BytesMut};

    use super::CHUNK;

    const O_DIRECT: i32 = 0o40000;
    const ALIGN: usize = 4096;

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
                .map(|i| self.pool.swap_remove(i).try_into_mut().ok()).flatten();
            let mut buf = reused.unwrap_or_else(|| BytesMut::zeroed(CHUNK));
            buf.resize(n, 0);
            file.read_exact(&mut buf).ok()?;
            let out = buf.freeze();
            if self.pool.len() < 64 { self.pool.push(out.clone()); }
            Some(out)
        }
    }

    /// What a client stream does with what it receives.
    pub struct Sink { hasher: blake3::Hasher, out: Option<(File, u64)>, buf: Vec<u8>, at: usize }

    impl Sink {
        pub fn open(stream: usize) -> anyhow::Result<Self> {
            let out = match std::env::var_os("QP_SINK") {
                Some(p) => {
                    let mut p = p.into_string().map_err(|_| anyhow::anyhow!("QP_SINK"))?;
                    p.push_str(&format!(".{stream}"));
                    let f = std::fs::OpenOptions::new().write(true).create(true).truncate(true)
                        .custom_flags(O_DIRECT).open(p)?;
                    Some((f, 0))
                }
                None => None,
            };
            // An aligned buffer, as O_DIRECT needs.
            let mut buf = vec![0u8; CHUNK + ALIGN];
            let at = buf.as_ptr().align_offset(ALIGN);
            buf.truncate(at + CHUNK);
            Ok(Self { hasher: blake3::Hasher::new(), out, buf, at })
        }

        pub fn take(&mut self, mut bytes: &[u8]) -> anyhow::Result<()> {
            if self.out.is_none() { return Ok(()) }
            self.hasher.update(bytes);
            while !bytes.is_empty() {
                let fill = self.buf.len() - self.at;
                let room = CHUNK - fill;
                let n = room.min(bytes.len());
                self.buf.extend_from_slice(&bytes[..n]);
                bytes = &bytes[n..];
                if n == room { self.flush()?; }
            }
            Ok(())
        }

        fn flush(&mut self) -> anyhow::Result<()> {
            if let Some((f, off)) = self.out.as_mut() {
                let data = &self.buf[self.at..];
                if data.len() % 512 == 0 {
                    f.write_all_at(data, *off)?;
                } else {
                    // A last partial block: padded for O_DIRECT, then cut back.
                    let mut padded = data.to_vec();
                    padded.resize(data.len().next_multiple_of(512), 0);
                    f.write_all_at(&padded, *off)?;
                    f.set_len(*off + data.len() as u64)?;
                }
                *off += data.len() as u64;
            }
            self.buf.truncate(self.at);
            Ok(())
        }

        pub fn finish(mut self) -> anyhow::Result<()> {
            if self.out.is_none() { return Ok(()) }
            self.flush()?;
            if let Some((f, _)) = &self.out { f.sync_all()?; }
            eprintln!("blake3 {}", self.hasher.finalize());
            Ok(())
        }
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


def tune():
    """Patches the copy in OUT; false if the source is not as expected."""
    src = os.path.join(OUT, "src", "main.rs")
    text = open(src).read()
    for old, new in PATCHES:
        if text.count(old) != 1:
            print(f"quicperf source changed ({old.strip()[:40]!r} not found once): "
                  "tuned baseline skipped", file=sys.stderr)
            return False
        text = text.replace(old, new)
    open(src, "w").write(text)
    # socket2 joins [dependencies], the table before [profile.release].
    toml_path = os.path.join(OUT, "Cargo.toml")
    head, sep, tail = open(toml_path).read().partition("[profile.release]")
    open(toml_path, "w").write(head.rstrip("\n") + '\nsocket2 = "0.6"\n\n' + sep + tail)
    return True


def floor():
    """Patches the tuned copy in OUT into the floor build; false if the source is not as expected."""
    src = os.path.join(OUT, "src", "main.rs")
    text = open(src).read()
    for old, new in FLOOR_PATCHES:
        if text.count(old) != 1:
            print(f"quicperf source changed ({old.strip()[:40]!r} not found once): "
                  "floor baseline skipped", file=sys.stderr)
            return False
        text = text.replace(old, new)
    open(src, "w").write(text + FLOOR_MODULE)
    toml_path = os.path.join(OUT, "Cargo.toml")
    head, sep, tail = open(toml_path).read().partition("[profile.release]")
    open(toml_path, "w").write(head.rstrip("\n") + '\nblake3 = "1"\n\n' + sep + tail)
    return True


if __name__ == "__main__":
    main()
