#!/usr/bin/env bash
# Issue 19 figures in the NAT lab (network namespaces, nftables NAT routers, tbf on every WAN
# link): connect + first byte and throughput, direct (to a public member) against relayed (to a
# member behind a symmetric NAT, through the public one), in one run. Run as root.
#   bench/nat.sh [RATE] [SIZE_MIB] [ROUNDS]     (defaults: 40mbit 16 3)
set -euo pipefail
# Benchmarks and tests stay off the internet's Mainline DHT.
export P2PFS_MAINLINE=off
export P2PFS_HTTP=off
cd "$(dirname "$0")/.."
command -v nft >/dev/null || { apt-get update -qq && apt-get install -y -qq nftables >/dev/null; }
command -v conntrack >/dev/null || { apt-get update -qq && apt-get install -y -qq conntrack >/dev/null; }
cargo build -q -p p2pfs-tests --bin nat_bench
target/debug/nat_bench "${1:-40mbit}" "${2:-16}" "${3:-3}"
