#!/usr/bin/env bash
# Issue 22, step 1: where the CPU goes on both ends of a fetch. A provider daemon and `p2pfs
# fetch` of a SIZE_MIB MiB blob on 127.0.0.1 (release build, line tables), each recorded with
# `perf record -g` from the provider's start (so its first upload after a start is in the
# profile); prints each end's top entries and the fetch's time and CPU, and writes
# flamegraphs (inferno) beside the recordings in OUT.
#   bench/profile.sh [SIZE_MIB] [OUT]     (defaults: 1024 /tmp/p2pfs-profile)
set -euo pipefail
# Benchmarks and tests stay off the internet's Mainline DHT.
export P2PFS_MAINLINE=off
export P2PFS_HTTP=off
cd "$(dirname "$0")/.."
command -v perf >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null; }
command -v inferno-flamegraph >/dev/null || cargo install --locked inferno
cargo build --release -q --bin p2pfs
bin="$PWD/target/release/p2pfs"
size_mib="${1:-1024}"
out="${2:-/tmp/p2pfs-profile}"
rm -rf "$out/provider" "$out/fetcher"
mkdir -p "$out"
blob="$out/blob.bin"
[ "$(stat -c %s "$blob" 2>/dev/null || echo 0)" = $((size_mib << 20)) ] ||
  head -c $((size_mib << 20)) /dev/urandom > "$blob"
hash=$("$bin" --data-dir "$out/provider" add "$blob" | awk '{print $1}')
port=47998
perf record -F 499 -g -o "$out/provider.data" -- \
  "$bin" --data-dir "$out/provider" daemon --listen "127.0.0.1:$port" --no-lan \
  > "$out/provider.log" 2>&1 &
recorder=$!
trap 'kill -INT $recorder 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do [ -S "$out/provider/control.sock" ] && break; sleep 0.1; done
id=$(grep -o '[a-z2-7]\{52\}' "$out/provider.log" | head -1)
/usr/bin/time -f "fetch: %e s wall, %U s user, %S s system, %M KiB peak RSS" \
  perf record -F 499 -g -o "$out/fetcher.data" -- \
  "$bin" --data-dir "$out/fetcher" fetch "$hash" --peer "$id@127.0.0.1:$port" -o /dev/null \
  2> >(grep '^fetch:' >&2) > /dev/null
pid=$(pgrep -f "data-dir $out/provider daemon" | head -1)
kill -TERM "$pid"
wait "$recorder" || true
trap - EXIT
for side in fetcher provider; do
  echo "== $side: top entries (self time)"
  perf report -i "$out/$side.data" --no-children --sort dso,sym --stdio 2>/dev/null |
    grep -E '^ +[0-9.]+%' | sed -n 1,15p
  perf script -i "$out/$side.data" 2>/dev/null | inferno-collapse-perf | inferno-flamegraph > "$out/$side.svg"
  echo "   flamegraph: $out/$side.svg"
done
