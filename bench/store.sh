#!/usr/bin/env bash
# Issue 2 benchmark: the store against cp + b3sum and cat, side by side in one run.
#   bench/store.sh [ROUNDS]        (work files under ${BENCH_DIR:-/tmp/p2pfs-bench}, ~6 GiB free needed)
set -euo pipefail
# Benchmarks and tests stay off the internet's Mainline DHT.
export P2PFS_MAINLINE=off
export P2PFS_HTTP=off
cd "$(dirname "$0")/.."
command -v b3sum >/dev/null || cargo install --locked b3sum
command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl; }
cargo build --release -q -p p2pfs
cargo build --release -q -p p2pfs-store --example redb_blobs
WORK=${BENCH_DIR:-/tmp/p2pfs-bench}
mkdir -p "$WORK"
python3 bench/store_bench.py "$PWD/target/release/p2pfs" "$WORK" "${1:-5}"
echo "== why blob data is not in redb (1 GiB written as redb values vs the store's split)"
for v in 16384 262144; do ./target/release/examples/redb_blobs "$WORK/src-1g.bin" "$WORK/values.redb" "$v"; done
rm -f "$WORK/values.redb"
