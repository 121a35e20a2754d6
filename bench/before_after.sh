#!/usr/bin/env bash
# Before/after benchmark of a refactor (issue 18), side by side in one run:
# builds REV (default: the commit before issue 18's network seam) in a
# worktree under ${BENCH_DIR:-/tmp/p2pfs-bench-ba}, then runs
# bench/before_after.py with both builds: a 1 GiB fetch, the 30-member room
# benchmark, and the mount's small-file and large-file figures.
#   bench/before_after.sh [REV] [ROUNDS] [FILES]
set -euo pipefail
# Benchmarks and tests stay off the internet's Mainline DHT.
export P2PFS_MAINLINE=off
export P2PFS_HTTP=off
cd "$(dirname "$0")/.."
rev="${1:-badd8f7}"
work="${BENCH_DIR:-/tmp/p2pfs-bench-ba}"
mkdir -p "$work"
old="$work/old-src"
if [ ! -d "$old" ]; then git worktree add --detach "$old" "$rev"; fi
git -C "$old" checkout -q --detach "$rev"
(cd "$old" && cargo build --release -q -p p2pfs && cargo build --release -q -p p2pfs-swarm --example room_bench)
cargo build --release -q -p p2pfs
cargo build --release -q -p p2pfs-swarm --example room_bench
python3 bench/before_after.py "$old/target/release/p2pfs" "$PWD/target/release/p2pfs" \
  "$old/target/release/examples/room_bench" "$PWD/target/release/examples/room_bench" \
  "$work/run" "${2:-3}" "${3:-2000}"
