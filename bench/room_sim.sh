#!/usr/bin/env bash
# Room mesh benchmark (issue 18): the real mesh state machine
# (crates/swarm/src/room/mesh.rs) in the room simulator
# (crates/swarm/src/room/sim.rs) for 10, 100 and 300 members (1,000 with
# `bench/room_sim.sh 1000`), 50 ms round trips, ±20 % jitter, 1 % loss,
# 200 chat lines: chat latency, members whose view of who is online is
# wrong, sessions and bytes sent per member (over the whole run, and in the
# steady state from 15 s, with the share of each message and the sessions
# started and ended meanwhile). Deterministic from the seed. 1,000 members
# take minutes.
#   bench/room_sim.sh [MEMBERS...]
set -euo pipefail
# Benchmarks and tests stay off the internet's Mainline DHT.
export P2PFS_MAINLINE=off
export P2PFS_HTTP=off
cd "$(dirname "$0")/.."
cargo build --release -q -p p2pfs-swarm --features sim --example room_sim
SIM=target/release/examples/room_sim
SEED=${SEED:-1}
for n in "${@:-10 100 300}"; do
  # shellcheck disable=SC2086
  for m in $n; do
    $SIM "$m" "$SEED" --duration 40000
    echo
  done
done
