#!/usr/bin/env bash
# Issue 8 figures on an emulated network: hosts in network namespaces on one bridge, every
# daemon delaying what it sends by DELAY (P2PFS_LINK_DELAY; round trip = 2 x DELAY) and every
# host dropping LOSS % of what it sends (nftables). Measures a 256 MiB fetch against the
# provider's bandwidth limit (tbf RATE), the same from 4 providers limited to RATE each against
# 1 (what more peers buy), chat propagation p50/p99 to 4 members, and the time
# for 4 members to converge after a partition heals. Loss is on what each host receives. Run as root.
#   bench/net.sh [DELAY] [LOSS] [RATE]     (defaults: 25ms 1 100mbit)
set -euo pipefail
# Benchmarks and tests stay off the internet's Mainline DHT.
export P2PFS_MAINLINE=off
export P2PFS_HTTP=off
cd "$(dirname "$0")/.."
command -v nft >/dev/null || { apt-get update -qq && apt-get install -y -qq nftables >/dev/null; }
dpkg -s openssl >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq openssl >/dev/null; }
cargo build --release -q -p p2pfs --features test-hooks
python3 bench/net_bench.py "$PWD/target/release/p2pfs" "${BENCH_DIR:-/tmp/p2pfs-bench-net}" \
  "${1:-25ms}" "${2:-1}" "${3:-100mbit}"
