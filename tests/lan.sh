#!/usr/bin/env bash
# An emulated network of hosts on this machine, for trying p2pfs by hand (the tests build
# the same thing with `Lan` in tests/src/lib.rs). Each host is a network namespace with its
# own address, 10.199.0.N, on one bridge that lives in a namespace of its own: the machine's
# own network is never touched. Run as root.
#
#   tests/lan.sh up N                 N hosts (1..=50): p2pfs-lan-h0 .. p2pfs-lan-h(N-1)
#   tests/lan.sh run I CMD [ARG...]   CMD on host I (with P2PFS_LINK_DELAY if `delay` set it: a
#                                     p2pfs built with `cargo build --features test-hooks`)
#   tests/lan.sh delay SPEC           daemons started by `run` from now on delay each datagram
#                                     they send by SPEC (`25ms`, `25ms~5ms`): 50 ms round trips
#   tests/lan.sh loss I PERCENT       host I drops PERCENT % of the packets it receives
#   tests/lan.sh rate I RATE          host I sends at most RATE (`tc` syntax: `40mbit`)
#   tests/lan.sh partition "0 1" "2"  cuts the first hosts off from the second, both ways
#   tests/lan.sh heal                 ends every partition
#   tests/lan.sh down                 removes every host (stop what `run` started first)
#
# For example:
#   tests/lan.sh up 3 && tests/lan.sh delay 25ms && tests/lan.sh loss 1 1
#   tests/lan.sh run 0 p2pfs --data-dir /tmp/h0 mount /tmp/mnt0 --daemon
#   tests/lan.sh run 1 p2pfs --data-dir /tmp/h1 daemon &
set -euo pipefail
br=p2pfs-lan-br
state=/run/p2pfs-lan
host() { echo "p2pfs-lan-h$1"; }
hosts() { ip netns list | awk '{print $1}' | grep -E '^p2pfs-lan-h[0-9]+$' | sort -V; }
nft_in() { ip netns exec "$(host "$1")" nft "$2"; }
table() {
  nft_in "$1" "add table inet p2pfs"
  nft_in "$1" "add chain inet p2pfs loss { type filter hook input priority 0; policy accept; }"
  nft_in "$1" "add chain inet p2pfs part { type filter hook output priority 0; policy accept; }"
}
case "${1:-}" in
  up)
    n=${2:?how many hosts}
    [ "$n" -ge 1 ] && [ "$n" -le 50 ] || { echo "1 to 50 hosts" >&2; exit 2; }
    command -v nft >/dev/null || apt-get install -y nftables
    mkdir -p "$state"
    ip netns add "$br"
    ip -n "$br" link add br0 type bridge
    ip -n "$br" link set br0 up
    for ((i = 0; i < n; i++)); do
      h=$(host "$i")
      ip netns add "$h"
      ip -n "$h" link add "veth$i" type veth peer name "port$i" netns "$br"
      ip -n "$br" link set "port$i" master br0
      ip -n "$br" link set "port$i" up
      ip -n "$h" addr add "10.199.0.$((i + 1))/24" dev "veth$i"
      ip -n "$h" link set "veth$i" up
      ip -n "$h" link set lo up
      echo "$h  10.199.0.$((i + 1))"
    done
    ;;
  run)
    i=${2:?which host}; shift 2
    delay=$(cat "$state/delay" 2>/dev/null || true)
    # nsenter, not `ip netns exec`: that one also unshares the mount
    # namespace, and a p2pfs mount made there would be seen by nobody else.
    exec nsenter --net="/run/netns/$(host "$i")" env ${delay:+P2PFS_LINK_DELAY=$delay} "$@"
    ;;
  delay) mkdir -p "$state"; echo "${2:?spec, e.g. 25ms}" > "$state/delay" ;;
  loss)
    i=${2:?which host}; pct=${3:?percent}
    table "$i"
    nft_in "$i" "flush chain inet p2pfs loss"
    [ "$pct" -eq 0 ] || nft_in "$i" "add rule inet p2pfs loss numgen random mod 100 < $pct counter drop"
    ;;
  rate)
    i=${2:?which host}
    ip netns exec "$(host "$i")" tc qdisc replace dev "veth$i" root tbf rate "${3:?rate}" burst 64kb latency 100ms
    ;;
  partition)
    for pair in "$2|$3" "$3|$2"; do
      for a in ${pair%|*}; do
        table "$a"
        for b in ${pair#*|}; do nft_in "$a" "add rule inet p2pfs part ip daddr 10.199.0.$((b + 1)) drop"; done
      done
    done
    ;;
  heal) for h in $(hosts); do i=${h#p2pfs-lan-h}; table "$i"; nft_in "$i" "flush chain inet p2pfs part"; done ;;
  down)
    for h in $(hosts); do ip netns del "$h"; done
    ip netns del "$br" 2>/dev/null || true
    rm -rf "$state"
    ;;
  *) sed -n '2,20p' "$0" >&2; exit 2 ;;
esac
