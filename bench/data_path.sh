#!/usr/bin/env bash
# Issue 22 benchmark: the first fetch from a just-started provider against the next, remote
# `cat` of 1 GiB through the mount against `p2pfs fetch`, and FILES (10,000) files of 4 KiB read
# for the first time through the mount against one file of the same bytes; side by side in one
# run, release build, 127.0.0.1. Installs fuse3 if missing. Run as root.
# `bench/transfer.sh` has the rest of the issue's figures (against quinn and libtorrent).
#   bench/data_path.sh [ROUNDS] [FILES]   (work files under ${BENCH_DIR:-/tmp/p2pfs-bench-path}, ~3 GiB)
set -euo pipefail
# Benchmarks and tests stay off the internet's Mainline DHT.
export P2PFS_MAINLINE=off
export P2PFS_HTTP=off
cd "$(dirname "$0")/.."
dpkg -s fuse3 >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 >/dev/null; }
cargo build --release -q -p p2pfs
python3 bench/data_path.py "$PWD/target/release/p2pfs" "${BENCH_DIR:-/tmp/p2pfs-bench-path}" \
  "${1:-3}" "${2:-10000}"
