#!/usr/bin/env bash
# Issue 20 figures: the web page against the mount, side by side in one run (release build):
# opening a folder of FILES files (and of 70,000) against `ls -l`, a search over NAMES names
# against `find -iname`, an upload of UPLOAD_MIB MiB through the page in headless Chromium
# against `cp` into the mount (with the node's peak memory), and chat page to page against
# chat.log to chat.log. Run as root.
#   bench/web.sh [FILES] [NAMES] [UPLOAD_MIB] [CHATS]     (defaults: 10000 100000 1024 20)
set -euo pipefail
# Benchmarks and tests stay off the internet's Mainline DHT.
export P2PFS_MAINLINE=off
export P2PFS_HTTP=off
cd "$(dirname "$0")/.."
need=()
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v fusermount3 >/dev/null || need+=(fuse3)
command -v curl >/dev/null || need+=(curl)
if ((${#need[@]})); then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; fi
cargo build --release -q -p p2pfs-tests --bin web_bench
target/release/web_bench "${1:-10000}" "${2:-100000}" "${3:-1024}" "${4:-20}"
