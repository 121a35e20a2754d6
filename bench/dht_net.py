"""Issue 4, with real processes: NODES daemons on 127.0.0.1, each started
knowing only the one before it. Per round, a fresh 1 MiB file is added on a
random node; a random other node fetches it by hash alone (the DHT finds the
provider) and, in the same round, another fetches it with the provider named
(--peer). Reports the medians and their ratio: what finding a provider
through the DHT costs on top of the transfer.

    python3 bench/dht_net.py P2PFS_BIN WORKDIR [NODES] [ROUNDS]
"""

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time

BIN, WORK = sys.argv[1], sys.argv[2]
NODES = int(sys.argv[3]) if len(sys.argv) > 3 else 30
ROUNDS = int(sys.argv[4]) if len(sys.argv) > 4 else 10


def p2pfs(d, *args, check=True):
    return subprocess.run([BIN, "--data-dir", d, *args], capture_output=True, check=check, text=True)


def status(d):
    return json.loads(p2pfs(d, "status", "--json").stdout)


def wait(what, f, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        v = f()
        if v:
            return v
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    procs, dirs, peers = [], [], []
    try:
        for i in range(NODES):
            d = os.path.join(WORK, f"n{i}")
            os.makedirs(d)
            args = [BIN, "--data-dir", d, "daemon", "--listen", "127.0.0.1:0"]
            if peers:
                args += ["--peer", peers[-1]]
            log = open(os.path.join(d, "log"), "w")
            procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log))
            sock = os.path.join(d, "control.sock")
            wait("a daemon", lambda: os.path.exists(sock) and status(d).get("daemon"))
            s = status(d)
            peers.append(f"{s['node']}@{s['addrs'][0]}")
            dirs.append(d)
        wait("routing tables", lambda: all(status(d)["dht"]["table"] >= 5 for d in dirs))
        tables = [status(d)["dht"]["table"] for d in dirs]
        by_hash, by_peer = [], []
        rng = random.Random(1)
        for r in range(ROUNDS):
            src, a, b = rng.sample(range(NODES), 3)
            f = os.path.join(WORK, f"file{r}")
            with open(f, "wb") as fh:
                fh.write(rng.randbytes(1 << 20))
            before = status(dirs[src])["dht"]["announced"]
            h = p2pfs(dirs[src], "add", f).stdout.split()[0]
            wait("the announcement", lambda: status(dirs[src])["dht"]["announced"] > before)
            for fetcher, extra, out in ((a, [], by_hash), (b, ["--peer", peers[src]], by_peer)):
                t = time.perf_counter()
                p2pfs(dirs[fetcher], "fetch", h, "-o", os.path.join(WORK, f"out{r}-{fetcher}"), *extra)
                out.append(time.perf_counter() - t)
        hm, pm = statistics.median(by_hash), statistics.median(by_peer)
        print(f"nodes {NODES}, routing table sizes {min(tables)}..{max(tables)} (median {statistics.median(tables)})")
        print(f"fetch 1 MiB by hash alone (DHT lookup + transfer): median {hm*1000:.0f} ms, max {max(by_hash)*1000:.0f} ms")
        print(f"fetch 1 MiB with --peer naming the provider:       median {pm*1000:.0f} ms, max {max(by_peer)*1000:.0f} ms")
        print(f"ratio by hash / by peer: {hm/pm:.2f}  (DHT cost ~{(hm-pm)*1000:.0f} ms over 127.0.0.1)")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


main()
