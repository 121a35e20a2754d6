#!/usr/bin/env bash
# Issue 8 benchmark: crash consistency at scale (release build). Runs the crash loops of
# tests/tests/crash_loop.rs with more rounds than CI does:
#   - the store under SIGKILL at random moments (STORE rounds, default 600);
#   - the store stopped at each of its named crash points (5 occurrences of each);
#   - a `p2pfs daemon` under SIGKILL while commands import files, download from another
#     daemon and write a room through it (NODE rounds, default 400).
# Each loop prints its kills and the acknowledged facts it checked; any loss fails the run.
#   bench/crash.sh [STORE] [NODE]
set -euo pipefail
# Benchmarks and tests stay off the internet's Mainline DHT.
export P2PFS_MAINLINE=off
export P2PFS_HTTP=off
cd "$(dirname "$0")/.."
run() {
  P2PFS_CRASH_ROUNDS=$1 cargo test --release -q -p p2pfs-tests --test crash_loop "$2" \
    -- --nocapture 2>&1 | grep -E "crash (loop|points)|test result|panicked|FAILED"
}
run "${1:-600}" store_survives_kill_9
run 0 store_survives_a_crash_at_every
run "${2:-400}" a_node_killed
