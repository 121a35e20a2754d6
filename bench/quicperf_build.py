#!/usr/bin/env python3
"""Builds ../shared/bench/quicperf (a bare quinn bulk transfer) in OUT_DIR, as shipped or,
with --tuned, with p2pfs's transport settings, so the benchmark can also compare p2pfs with
quinn configured the same way: path MTU discovery up to 6000-byte UDP payloads and 8 MiB
socket buffers (see crates/swarm/src/endpoint.rs). The tuned build patches a copy of the
source; if it no longer has the expected shape, this says so and prints nothing.

  quicperf_build.py SHARED_BENCH_DIR OUT_DIR [--tuned]   (prints the binary's path)
"""
import os, shutil, subprocess, sys

SHARED, OUT = sys.argv[1], sys.argv[2]
TUNED = "--tuned" in sys.argv[3:]

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


if __name__ == "__main__":
    main()
