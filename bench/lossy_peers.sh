#!/usr/bin/env bash
# Issue 8 benchmark beside the peers: one download of a SIZE MiB file over a lossy, rate-limited
# link, side by side in one run, alternating rounds:
#   p2pfs fetch <- one p2pfs daemon           (QUIC, BBR)
#   libtorrent  <- one libtorrent seeder      (TCP; ../shared/bench/bt.py)
#   libtorrent  <- one libtorrent seeder      (uTP, BitTorrent's UDP transport)
# All in a network namespace of its own with only loopback, which drops LOSS % of the packets it
# receives (nftables) and carries at most RATE (tbf). No delay: this kernel has no netem, and the
# delay p2pfs emulates (P2PFS_LINK_DELAY) is in its own socket, which libtorrent would not get;
# bench/net.sh measures p2pfs with delay too. Prints medians and the ratios to libtorrent.
#   bench/lossy_peers.sh [LOSS] [RATE] [SIZE_MIB] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
loss=${1:-1} rate=${2:-100mbit} size=${3:-256} rounds=${4:-3}
command -v nft >/dev/null || apt-get install -y nftables
dpkg -s python3-libtorrent >/dev/null 2>&1 || apt-get install -y python3-libtorrent
cargo build --release -q -p p2pfs
bin=$PWD/target/release/p2pfs bt=$PWD/../shared/bench/bt.py
ns=p2pfs-lossy-$$ dir=$(mktemp -d /tmp/p2pfs-lossy.XXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
ip netns add "$ns"
in_ns() { ip netns exec "$ns" "$@"; }
in_ns ip link set lo up
in_ns nft add table inet lossy
in_ns nft "add chain inet lossy in { type filter hook input priority 0; policy accept; }"
in_ns nft "add rule inet lossy in numgen random mod 100 < $loss counter drop"
in_ns tc qdisc replace dev lo root tbf rate "$rate" burst 64kb latency 100ms

head -c $((size << 20)) /dev/urandom > "$dir/file.bin"
csv=$dir/runs.csv
# p2pfs: a daemon providing the file.
in_ns "$bin" --data-dir "$dir/seed" add "$dir/file.bin" > "$dir/hash"
in_ns "$bin" --data-dir "$dir/seed" daemon --listen 127.0.0.1:7400 --no-lan > "$dir/seed.log" 2>&1 &
pids+=($!)
# libtorrent: TCP and uTP seeders of the same file.
/usr/bin/python3 "$bt" mktorrent "$dir/file.bin" "$dir/file.torrent" http://127.0.0.1:1/announce > /dev/null
for kind in tcp utp; do
  port=$([ $kind = tcp ] && echo 7401 || echo 7402)
  flag=$([ $kind = utp ] && echo --utp || true)
  in_ns /usr/bin/python3 "$bt" seed "$dir/file.torrent" "$dir" $port "$dir/ready-$kind" $flag \
    --max-secs 3600 > "$dir/seed-$kind.log" 2>&1 &
  pids+=($!)
done
for _ in $(seq 1 600); do
  [ -s "$dir/ready-tcp" ] && [ -s "$dir/ready-utp" ] && in_ns "$bin" --data-dir "$dir/seed" status >/dev/null 2>&1 && break
  sleep 0.1
done
peer=$(in_ns "$bin" --data-dir "$dir/seed" status --json | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["node"]+"@127.0.0.1:7400")')
hash=$(cut -d' ' -f1 "$dir/hash")
bytes=$((size << 20))
for r in $(seq 1 "$rounds"); do
  rm -rf "$dir/fetch" "$dir/dl-tcp" "$dir/dl-utp"; mkdir -p "$dir/dl-tcp" "$dir/dl-utp"
  in_ns /usr/bin/python3 "$bt" measure "$csv" p2pfs $bytes -- \
    "$bin" --data-dir "$dir/fetch" fetch "$hash" --peer "$peer" -o - --no-pin > /dev/null
  in_ns /usr/bin/python3 "$bt" leech "$dir/file.torrent" "$dir/dl-tcp" 7411 "$csv" \
    --peer 127.0.0.1:7401 --label libtorrent-tcp > /dev/null
  in_ns /usr/bin/python3 "$bt" leech "$dir/file.torrent" "$dir/dl-utp" 7412 "$csv" \
    --peer 127.0.0.1:7402 --utp --label libtorrent-utp > /dev/null
  echo "round $r done" >&2
done
python3 - "$csv" "$loss" "$rate" "$size" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
med = {}
for label in ("p2pfs", "libtorrent-tcp", "libtorrent-utp"):
    secs = [float(r["secs"]) for r in rows if r["label"] == label and r["status"] == "ok"]
    bad = sum(1 for r in rows if r["label"] == label and r["status"] != "ok")
    med[label] = statistics.median(secs) if secs else float("nan")
    print(f"{label:15} median {med[label]:7.2f} s over {len(secs)} rounds"
          + (f" ({bad} failed)" if bad else "") + f"  {int(sys.argv[4]) * 1.048576 / med[label]:.2f} MB/s")
print(f"{sys.argv[4]} MiB over loopback losing {sys.argv[2]} % and limited to {sys.argv[3]}:")
for label in ("libtorrent-tcp", "libtorrent-utp"):
    print(f"  p2pfs is {med[label] / med['p2pfs']:.2f}x as fast as {label}")
PY
