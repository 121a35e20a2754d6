#!/usr/bin/env bash
# Issue 7 benchmark: replication among MEMBERS daemons (release build) on 127.0.0.1.
# FILES files of 1 to 64 MiB (log-uniform) are put on member a; the run times until every
# file has 2 complete copies, then kills a member holding copies and times until the count is
# restored, with the bytes moved against the bytes lost; then kills the author. The offline
# timeout is OFFLINE (default 10s; the daemon's default is 3m). Work files under
# ${BENCH_DIR:-/tmp/p2pfs-bench-replication} (about 5 GiB with the defaults).
#   bench/replication.sh [MEMBERS] [FILES] [OFFLINE]
set -euo pipefail
# Benchmarks and tests stay off the internet's Mainline DHT.
export P2PFS_MAINLINE=off
export P2PFS_HTTP=off
cd "$(dirname "$0")/.."
dpkg -s openssl >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq openssl >/dev/null; }
cargo build --release -q -p p2pfs
python3 bench/replication_bench.py "$PWD/target/release/p2pfs" "${BENCH_DIR:-/tmp/p2pfs-bench-replication}" \
  "${1:-5}" "${2:-100}" "${3:-10s}"
