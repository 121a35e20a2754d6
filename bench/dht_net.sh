#!/usr/bin/env bash
# Issue 4 with real processes: NODES daemons on 127.0.0.1 each told of one
# other; fetch by hash alone against fetch with the provider named.
#   bench/dht_net.sh [NODES] [ROUNDS]
set -euo pipefail
# Benchmarks and tests stay off the internet's Mainline DHT.
export P2PFS_MAINLINE=off
export P2PFS_HTTP=off
cd "$(dirname "$0")/.."
cargo build --release -q -p p2pfs
python3 bench/dht_net.py "$PWD/target/release/p2pfs" "${BENCH_DIR:-/tmp/p2pfs-bench}/dht" "${1:-30}" "${2:-10}"
