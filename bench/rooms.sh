#!/usr/bin/env bash
# Room figures (issue 5), real nodes on 127.0.0.1 in one process
# (crates/swarm/examples/room_bench.rs): message propagation across
# MEMBERS members, catch-up of a member offline while OFFLINE messages were
# posted (time and bytes received against the entries' size), and entry
# verification per second on one core.
#   bench/rooms.sh [MEMBERS] [MESSAGES] [OFFLINE]
set -euo pipefail
# Benchmarks and tests stay off the internet's Mainline DHT.
export P2PFS_MAINLINE=off
export P2PFS_HTTP=off
cd "$(dirname "$0")/.."
cargo build --release -q -p p2pfs-swarm --example room_bench
target/release/examples/room_bench "${1:-10}" "${2:-200}" "${3:-10000}"
