#!/usr/bin/env bash
# Issue 21 figures (release build, daemons on 127.0.0.1): the size of a removal entry for 10,
# 100 and 1,000 members; the time from `room remove` until every online member refuses the
# removed node (MEMBERS daemons, TRIALS removals); and a room's export with --files and its
# import for GIB GiB of files, beside `cat` of the same files to one file and `b3sum` of them
# (the disk and the hash a verified import cannot beat), as ratios.
#   bench/moderation.sh [MEMBERS] [TRIALS] [GIB]     (defaults: 6 5 1)
set -euo pipefail
# Benchmarks and tests stay off the internet's Mainline DHT.
export P2PFS_MAINLINE=off
export P2PFS_HTTP=off
cd "$(dirname "$0")/.."
command -v b3sum >/dev/null || cargo install --locked b3sum
cargo test -q -p p2pfs-swarm --release --lib removal_entry_sizes -- --nocapture 2>/dev/null | grep 'removal entry'
cargo build --release -q --bin p2pfs
work="${WORK:-/tmp/p2pfs-bench-moderation}"
mkdir -p "$work"
python3 bench/moderation_bench.py target/release/p2pfs "$work" "${1:-6}" "${2:-5}" "${3:-1}"
