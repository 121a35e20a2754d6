#!/usr/bin/env bash
# Issue 17 benchmark: many small files through the mount against bindfs (a passthrough FUSE
# filesystem over the same disk), side by side in one run, release build, on 127.0.0.1:
# untar of FILES files of 1-8 KiB (files/s, and how soon the other member lists them all after
# tar returns), close() latency (p50, p99) of 4 KiB files, `echo >> f` latency, and the log
# bytes the other member received per file published. Work files under
# ${BENCH_DIR:-/tmp/p2pfs-bench-small}.
#   bench/small_files.sh [FILES] [ROUNDS]
set -euo pipefail
# Benchmarks and tests stay off the internet's Mainline DHT.
export P2PFS_MAINLINE=off
export P2PFS_HTTP=off
cd "$(dirname "$0")/.."
need=()
for p in bindfs fuse3; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if ((${#need[@]})); then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; fi
cargo build --release -q -p p2pfs
python3 bench/small_files_bench.py "$PWD/target/release/p2pfs" "${BENCH_DIR:-/tmp/p2pfs-bench-small}" \
  "${1:-20000}" "${2:-2}"
