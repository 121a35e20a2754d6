#!/usr/bin/env bash
# Issue 3 benchmark: p2pfs fetch against bare quinn and libtorrent, side by side in one run,
# on 127.0.0.1. Installs python3-libtorrent and b3sum if missing.
#   bench/transfer.sh [ROUNDS]     (work files under ${BENCH_DIR:-/tmp/p2pfs-bench}, ~8 GiB free needed)
set -euo pipefail
# Benchmarks and tests stay off the internet's Mainline DHT.
export P2PFS_MAINLINE=off
export P2PFS_HTTP=off
cd "$(dirname "$0")/.."
command -v b3sum >/dev/null || cargo install --locked b3sum
dpkg -s python3-libtorrent >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-libtorrent >/dev/null; }
cargo build --release -q -p p2pfs
SHARED=${SHARED_BENCH:-$(cd .. && pwd)/shared/bench}
WORK=${BENCH_DIR:-/tmp/p2pfs-bench}
mkdir -p "$WORK"
python3 bench/transfer_bench.py "$PWD/target/release/p2pfs" "$SHARED" "$WORK" "${1:-5}"
