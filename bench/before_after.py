#!/usr/bin/env python3
"""Before/after benchmark of a refactor, side by side in one run (issue 18):
the same measurements with two builds of p2pfs, alternating round by round,
so the machine's noise falls on both alike. Reports the medians and the
ratio after/before (above 1: after is slower for times, faster for rates).

  - transfer: `p2pfs fetch` of a 1 GiB blob from one provider daemon,
    verified, into a fresh store (the provider warmed up once per build);
  - rooms: examples/room_bench (30 members in one process): message
    propagation p50/p99 and catch-up of 1,000 messages;
  - mount: bench/fuse_bench.py's figures for one round of FILES small files
    and its large-file reads, once per build (the mount, cold and warm).

  before_after.py OLD_P2PFS NEW_P2PFS OLD_ROOM_BENCH NEW_ROOM_BENCH WORK [ROUNDS] [FILES]
"""
import os, re, shutil, statistics as S, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from benchlib import control_up, make, sh, wait  # noqa: E402

OLD, NEW, OLD_RB, NEW_RB, WORK = sys.argv[1:6]
ROUNDS = int(sys.argv[6]) if len(sys.argv) > 6 else 3
FILES = int(sys.argv[7]) if len(sys.argv) > 7 else 2000
GIB = 1 << 30
SRC = os.path.join(WORK, "src-1g.bin")


def fresh(d):
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)


def provider(bin, name, port):
    d = os.path.join(WORK, name)
    fresh(d)
    h = subprocess.run([bin, "--data-dir", d, "add", SRC], check=True, capture_output=True,
                       text=True).stdout.split()[0]
    log = open(os.path.join(WORK, f"{name}.log"), "w")
    p = subprocess.Popen([bin, "--data-dir", d, "daemon", "--no-lan", "--listen",
                          f"127.0.0.1:{port}"], stdout=log, stderr=log)
    wait(f"{name} up", lambda: control_up(d))
    return p, h, f"127.0.0.1:{port}"


def fetch(bin, h, addr):
    d = os.path.join(WORK, "fetcher")
    fresh(d)
    t = time.perf_counter()
    sh(f"{bin} --data-dir {d} fetch {h} --peer {addr} -o /dev/null")
    return time.perf_counter() - t


def room_bench(bin):
    out = subprocess.run([bin, "30", "200", "1000"], check=True, capture_output=True,
                         text=True).stdout
    nums = {}
    m = re.search(r"p50 ([\d.]+) ms.*?p99 ([\d.]+) ms", out, re.S)
    if m:
        nums["p50_ms"], nums["p99_ms"] = float(m.group(1)), float(m.group(2))
    m = re.search(r"catch-up[^\n]*?([\d.]+) ms", out)
    if m:
        nums["catchup_ms"] = float(m.group(1))
    return nums, out


def ratio(old, new):
    return f"{S.median(new) / S.median(old):.2f}" if old and new and S.median(old) else "-"


def main():
    os.makedirs(WORK, exist_ok=True)
    make(SRC, GIB)
    builds = [("before", OLD, OLD_RB, 4951), ("after", NEW, NEW_RB, 4952)]
    walls = {"before": [], "after": []}
    rooms = {"before": [], "after": []}
    provs = {}
    try:
        for name, bin, _, port in builds:
            p, h, addr = provider(bin, f"prov-{name}", port)
            provs[name] = (p, h, addr)
            fetch(bin, h, addr)  # warm-up: the provider checks the data once
        for r in range(ROUNDS):
            order = builds if r % 2 == 0 else builds[::-1]
            for name, bin, rb, _ in order:
                _, h, addr = provs[name]
                walls[name].append(fetch(bin, h, addr))
                nums, _ = room_bench(rb)
                rooms[name].append(nums)
                print(f"round {r + 1} {name}: fetch {walls[name][-1]:.2f} s, rooms {nums}",
                      flush=True)
    finally:
        for p, _, _ in provs.values():
            p.terminate()
            p.wait()
    print("\ntransfer, 1 GiB from one provider (MiB/s, median):")
    for name in walls:
        print(f"  {name}: {GIB / (1 << 20) / S.median(walls[name]):.0f} MiB/s "
              f"({', '.join(f'{w:.2f}' for w in walls[name])} s)")
    print(f"  time after/before: {ratio(walls['before'], walls['after'])}")
    print("\nrooms, 30 members (ms, median):")
    for key in ("p50_ms", "p99_ms", "catchup_ms"):
        b = [x[key] for x in rooms["before"] if key in x]
        a = [x[key] for x in rooms["after"] if key in x]
        if b and a:
            print(f"  {key}: before {S.median(b):.0f}, after {S.median(a):.0f}, "
                  f"after/before {ratio(b, a)}")
    print(f"\nmount ({FILES} small files, one round each, before then after):", flush=True)
    for name, bin, _, _ in builds:
        out = subprocess.run([sys.executable, os.path.join(HERE, "fuse_bench.py"), bin,
                              os.path.join(WORK, f"fuse-{name}"), "1", str(FILES)],
                             capture_output=True, text=True)
        print(f"--- {name}\n{out.stdout[-3000:]}{out.stderr[-1500:]}", flush=True)


if __name__ == "__main__":
    main()
