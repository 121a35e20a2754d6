#!/usr/bin/env bash
# pjdfstest (the POSIX filesystem test suite, Rust rewrite 0.2.2) inside a room of a fresh
# p2pfs mount, and in bindfs over the same disk for reference; fails if the room passes fewer
# than FLOOR tests (a ratchet: raise it as the mount keeps more of POSIX; README lists what
# still fails and why). Bounded: every step under `timeout`. Run as root (pjdfstest switches
# users and makes device nodes); needs bindfs.
#   tests/pjdfstest.sh [P2PFS_BINARY]       (FLOOR=N to override; the results stay in $W)
set -uo pipefail
cd "$(dirname "$0")/.."
P2PFS=${1:-target/debug/p2pfs}
FLOOR=${FLOOR:-384}
VERSION=0.2.2
TOOL=${PJDFSTEST_DIR:-$HOME/.cache/p2pfs-pjdfstest}   # pjdfstest itself, built once
W=$(mktemp -d /tmp/p2pfs-pjdfstest.XXXXXX)
SEC=$(mktemp -d /dev/shm/p2pfs-pjdfstest.XXXXXX)      # -s: a second filesystem (tmpfs)
mkdir -p "$W"/{d,mnt,src,bind,res}
# (Other users must reach the test directories: pjdfstest switches users.)
chmod 755 "$W" "$W"/{src,bind} "$SEC"
BIN="$TOOL/bin/pjdfstest"
P2P_PID=""
cleanup() {
    if [ -n "$P2P_PID" ]; then
        kill -TERM "$P2P_PID" 2>/dev/null
        for _ in $(seq 1 80); do kill -0 "$P2P_PID" 2>/dev/null || break; sleep 0.25; done
        kill -KILL "$P2P_PID" 2>/dev/null
    fi
    mountpoint -q "$W/mnt" && umount -l "$W/mnt"
    mountpoint -q "$W/bind" && umount -l "$W/bind"
    rm -rf "$SEC"
}
trap cleanup EXIT

if [ ! -x "$BIN" ]; then
    CARGO_TARGET_DIR="$TOOL/target" timeout 1200 \
        cargo install pjdfstest --version "$VERSION" --locked --root "$TOOL" --quiet || exit 1
fi
# Every feature a Linux filesystem may have; users Debian has.
cat > "$W/pjdfstest.toml" <<'TOML'
[features]
posix_fallocate = {}
utime_now = {}
utimensat = {}
rename_ctime = {}

[settings]
naptime = 0.01
allow_remount = false

[dummy_auth]
entries = [
  ["nobody", "nogroup"],
  ["daemon", "daemon"],
]
TOML

# Runs pjdfstest in $2; prints and returns (in $passed) the count of passes.
run() {
    local name=$1 path=$2 t0=$SECONDS
    timeout 600 "$BIN" -c "$W/pjdfstest.toml" -p "$path" -s "$SEC" >"$W/res/$name.txt" 2>&1
    local rc=$?
    local s
    s=$(sed 's/\x1b\[[0-9;]*m//g' "$W/res/$name.txt" | grep '^Summary:')
    passed=$(sed -nE 's/.* ([0-9]+) passed.*/\1/p' <<<"$s")
    echo "pjdfstest in $name: ${passed:-?} passed ($s; $((SECONDS - t0)) s)"
    [ "$rc" -ne 124 ] || { echo "pjdfstest in $name timed out"; return 1; }
}

bindfs "$W/src" "$W/bind" || exit 1
run bindfs "$W/bind" || exit 1
umount -l "$W/bind"

"$P2PFS" --data-dir "$W/d" mount "$W/mnt" --listen 127.0.0.1:0 --no-lan --leave-timeout 0 --allow-other \
    >"$W/res/mount.log" 2>&1 &
P2P_PID=$!
for _ in $(seq 1 120); do mountpoint -q "$W/mnt" && break; sleep 0.25; done
mountpoint -q "$W/mnt" || { echo "p2pfs did not mount"; cat "$W/res/mount.log"; exit 1; }
mkdir "$W/mnt/room" || exit 1
run "a p2pfs room" "$W/mnt/room" || exit 1
sed 's/\x1b\[[0-9;]*m//g' "$W/res/a p2pfs room.txt" | grep -E ' FAILED$' | awk '{print $1}' \
    >"$W/res/failed.txt"
echo "failed in the room (README, 'The mount', lists why):"
sed 's/^/  /' "$W/res/failed.txt"
if [ "${passed:-0}" -lt "$FLOOR" ]; then
    echo "pjdfstest: ${passed:-0} passes in a p2pfs room, below the floor of $FLOOR (see $W/res)"
    exit 1
fi
cleanup
trap - EXIT
rm -rf "$W"
