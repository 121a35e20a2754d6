#!/usr/bin/env bash
# Issue 16 benchmark: how soon a published file is safe, on default settings (heartbeat 30 s,
# offline timeout 3 min). MEMBERS members on 127.0.0.1 (a is a mount, the others daemons;
# release build): FILES files of 4 MiB put one at a time on a (`room put`, then `cp` into the
# mount), each timed from the put to 2 complete copies (p50, p99), beside the time to fetch
# 4 MiB from a in the same run; then a holder stopped with SIGTERM (it says goodbye) and the
# time until its copy is restored elsewhere; then `p2pfs umount` of a mount that alone keeps
# fresh files (a room with copies=1), timed, and whether every file is kept by another member
# when it returns. Work files under ${BENCH_DIR:-/tmp/p2pfs-bench-first-copies}.
#   bench/first_copies.sh [MEMBERS] [FILES]
set -euo pipefail
# Benchmarks and tests stay off the internet's Mainline DHT.
export P2PFS_MAINLINE=off
export P2PFS_HTTP=off
cd "$(dirname "$0")/.."
dpkg -s openssl >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq openssl >/dev/null; }
cargo build --release -q -p p2pfs
python3 bench/first_copies_bench.py "$PWD/target/release/p2pfs" \
  "${BENCH_DIR:-/tmp/p2pfs-bench-first-copies}" "${1:-4}" "${2:-20}"
