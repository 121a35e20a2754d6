#!/usr/bin/env bash
# Issue 6 benchmark: the mount against bindfs -o big_writes (the passthrough FUSE filesystem of
# ../shared/bench/02_fuse.sh) and against `p2pfs fetch`, side by side in one run, on 127.0.0.1.
# Installs bindfs, fuse3 and attr if missing. Run as root.
#   bench/fuse.sh [ROUNDS] [FILES]   (work files under ${BENCH_DIR:-/tmp/p2pfs-bench-fuse}, ~4 GiB)
set -euo pipefail
# Benchmarks and tests stay off the internet's Mainline DHT.
export P2PFS_MAINLINE=off
export P2PFS_HTTP=off
cd "$(dirname "$0")/.."
need=()
for p in bindfs fuse3 attr openssl; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if ((${#need[@]})); then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; fi
cargo build --release -q -p p2pfs
python3 bench/fuse_bench.py "$PWD/target/release/p2pfs" "${BENCH_DIR:-/tmp/p2pfs-bench-fuse}" "${1:-3}" "${2:-10000}"
