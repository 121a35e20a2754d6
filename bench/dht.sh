#!/usr/bin/env bash
# DHT benchmark (issue 4): the real lookup and routing code in the simulator
# (crates/swarm/src/dht/sim.rs) for 10,000 nodes, 50 ms round trips, ±20 %
# jitter, 1 % loss: honest, 30 % dead, 20 % lying, and with a QUIC handshake
# counted on first contact. Deterministic from the seed.
#   bench/dht.sh [NODES] [SEED]
set -euo pipefail
# Benchmarks and tests stay off the internet's Mainline DHT.
export P2PFS_MAINLINE=off
export P2PFS_HTTP=off
cd "$(dirname "$0")/.."
cargo build --release -q -p p2pfs-swarm --features sim --example dht_sim
SIM=target/release/examples/dht_sim
N=${1:-10000}; SEED=${2:-1}
for args in "" "--dead 0.3" "--liars 0.2" "--cold"; do
  # shellcheck disable=SC2086
  $SIM "$N" "$SEED" --lookups 1000 --announces 200 $args
  echo
done
