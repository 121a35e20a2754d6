"""Driver of bench/net.sh (see there). Namespaces p2pfsb-* and every process it starts are
removed or stopped at the end, by name and PID."""
import json, os, shutil, statistics, subprocess, sys, threading, time

sys.path.insert(0, os.path.dirname(__file__))
from benchlib import control_up, make, wait  # noqa: E402

BIN, WORK, DELAY, LOSS, RATE = sys.argv[1:6]
N = 5
NS = [f"p2pfsb-h{i}" for i in range(N)]
BR = "p2pfsb-br"
MiB = 1 << 20
procs = []


def sh(*args, check=True):
    return subprocess.run(list(args), check=check, capture_output=True, text=True).stdout


def ip_of(i):
    return f"10.250.0.{i + 1}"


def net_up():
    net_down()
    sh("ip", "netns", "add", BR)
    sh("ip", "-n", BR, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", BR, "link", "set", "br0", "up")
    for i, h in enumerate(NS):
        sh("ip", "netns", "add", h)
        sh("ip", "-n", h, "link", "add", f"veth{i}", "type", "veth", "peer", "name", f"port{i}", "netns", BR)
        sh("ip", "-n", BR, "link", "set", f"port{i}", "master", "br0")
        sh("ip", "-n", BR, "link", "set", f"port{i}", "up")
        sh("ip", "-n", h, "addr", "add", f"{ip_of(i)}/24", "dev", f"veth{i}")
        sh("ip", "-n", h, "link", "set", f"veth{i}", "up")
        sh("ip", "-n", h, "link", "set", "lo", "up")
        nft(i, "add table inet p2pfs")
        for chain, hook in (("loss", "input"), ("part", "output")):
            nft(i, f"add chain inet p2pfs {chain} {{ type filter hook {hook} priority 0; policy accept; }}")
        if int(LOSS) > 0:
            nft(i, f"add rule inet p2pfs loss numgen random mod 100 < {LOSS} drop")


def net_down():
    for h in NS + [BR]:
        sh("ip", "netns", "del", h, check=False)


def nft(i, rule):
    sh("ip", "netns", "exec", NS[i], "nft", rule)


def partition(a, b):
    for src, dst in ((a, b), (b, a)):
        for i in src:
            for j in dst:
                nft(i, f"add rule inet p2pfs part ip daddr {ip_of(j)} drop")


def heal():
    for i in range(N):
        nft(i, "flush chain inet p2pfs part")


def limit(i):
    """Limits what host i sends to RATE (tbf)."""
    sh("ip", "netns", "exec", NS[i], "tc", "qdisc", "replace", "dev", f"veth{i}", "root", "tbf",
       "rate", RATE, "burst", "256kb", "latency", "400ms")


def unlimit(i):
    sh("ip", "netns", "exec", NS[i], "tc", "qdisc", "del", "dev", f"veth{i}", "root")


def p2pfs(i, *args):
    return sh(BIN, "--data-dir", f"{WORK}/n{i}", *args)


def start(i):
    log = open(f"{WORK}/n{i}.log", "a")
    env = dict(os.environ, P2PFS_LINK_DELAY=DELAY)
    p = subprocess.Popen(["nsenter", f"--net=/run/netns/{NS[i]}", BIN, "--data-dir", f"{WORK}/n{i}",
                          "daemon", "--listen", f"{ip_of(i)}:7000", "--name", f"n{i}"],
                         stderr=log, stdout=log, env=env)
    procs.append(p)
    wait(f"n{i} up", lambda: control_up(f"{WORK}/n{i}"))
    return p


def ms(d):
    return f"{d * 1000:.0f} ms"


try:
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    net_up()
    for i in range(N):
        start(i)
    print(f"{N} hosts, each sending with {DELAY} delay (round trip 2x) and losing {LOSS} % of what it receives")

    # 1. A 256 MiB fetch from a provider limited to RATE.
    limit(0)
    make(f"{WORK}/blob", 256 * MiB)
    h = p2pfs(0, "add", f"{WORK}/blob").split()[0]
    n0 = json.loads(p2pfs(0, "status", "--json"))["node"]
    t = time.perf_counter()
    sh(BIN, "--data-dir", f"{WORK}/n1", "fetch", h, "--peer", f"{n0}@{ip_of(0)}:7000",
       "-o", f"{WORK}/got", "--no-pin")
    took = time.perf_counter() - t
    unit = {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
    num = "".join(c for c in RATE if c.isdigit())
    limit = int(num) * unit[RATE[len(num):].lower()] / 8
    got = 256 * MiB / took
    print(f"fetch of 256 MiB from a provider limited to {RATE}: {took:.1f} s, {got / 1e6:.2f} MB/s "
          f"= {got / limit:.2f} x the link's limit ({limit / 1e6:.2f} MB/s)")
    unlimit(0)
    os.remove(f"{WORK}/got")

    # 1b. Four providers, each limited to RATE, against one: what more peers buy on a network
    # where each provider's uplink, not the CPU, is the limit (bench/transfer.sh measures 4 -> 1
    # on loopback, where the CPU is). Two parts of one file are two blobs of equal size: one
    # fetched from one provider, the other from four, by n0's daemon.
    # (The first 256 MiB of the file are the blob above, which n0 has.)
    make(f"{WORK}/three", 768 * MiB)
    sh("sh", "-c", f"tail -c {512 * MiB} {WORK}/three | head -c {256 * MiB} > {WORK}/a"
       f" && tail -c {256 * MiB} {WORK}/three > {WORK}/b")
    os.remove(f"{WORK}/three")
    peers = []
    for i in range(1, N):
        ha = p2pfs(i, "add", f"{WORK}/a").split()[0]
        hb = p2pfs(i, "add", f"{WORK}/b").split()[0]
        node = json.loads(p2pfs(i, "status", "--json"))["node"]
        peers += ["--peer", f"{node}@{ip_of(i)}:7000"]
        limit(i)
    took = {}
    for name, blob, via in (("1 -> 1", ha, peers[:2]), ("4 -> 1", hb, peers)):
        t = time.perf_counter()
        p2pfs(0, "fetch", blob, *via, "-o", f"{WORK}/got", "--no-pin")
        took[name] = time.perf_counter() - t
        os.remove(f"{WORK}/got")
    for i in range(1, N):
        unlimit(i)
    print(f"fetch of 256 MiB from providers limited to {RATE} each: from 1 {took['1 -> 1']:.1f} s, "
          f"from 4 {took['4 -> 1']:.1f} s: 4 -> 1 = {took['1 -> 1'] / took['4 -> 1']:.2f} x 1 -> 1")

    # 2. Chat propagation from n0 to 4 members.
    ticket = p2pfs(0, "room", "create", "team").strip()
    for i in range(1, N):
        p2pfs(i, "room", "join", ticket)
    arrivals = {}
    lock = threading.Lock()

    def follow(i):
        p = subprocess.Popen([BIN, "--data-dir", f"{WORK}/n{i}", "chat", "team", "--follow"],
                             stdout=subprocess.PIPE, text=True)
        procs.append(p)
        for line in p.stdout:
            if "msg-" in line:
                k = line.rsplit("msg-", 1)[1].strip()
                with lock:
                    arrivals[(i, k)] = time.perf_counter()

    for i in range(1, N):
        threading.Thread(target=follow, args=(i,), daemon=True).start()
    time.sleep(3)
    sent = {}
    M = 100
    for k in range(M):
        sent[str(k)] = time.perf_counter()
        p2pfs(0, "chat", "team", f"msg-{k}")
        time.sleep(0.05)
    wait("every message everywhere", lambda: len(arrivals) >= M * (N - 1), timeout=120)
    lat = sorted(arrivals[(i, k)] - sent[k] for (i, k) in arrivals)
    p99 = lat[int(len(lat) * 0.99) - 1]
    print(f"chat propagation, {M} messages to {N - 1} members ({len(lat)} deliveries): "
          f"p50 {ms(statistics.median(lat))}, p99 {ms(p99)}, max {ms(lat[-1])} "
          f"(from the start of `p2pfs chat`, a process of its own)")

    # 3. Convergence after a partition.
    def view(i):
        return p2pfs(i, "room", "ls", "team", "--json"), len(p2pfs(i, "chat", "team").splitlines())

    partition([0, 1], [2, 3, 4])
    for i in range(N):
        for k in range(10):
            with open(f"{WORK}/f", "w") as f:
                f.write(f"{i}-{k}\n")
            p2pfs(i, "room", "put", "team", f"{WORK}/f", f"n{i}/f{k}")
            p2pfs(i, "chat", "team", f"side-{i}-{k}")
    t = time.perf_counter()
    heal()
    total_lines = M + N * 10
    wait("convergence", lambda: all(view(i) == view(0) and view(i)[1] == total_lines for i in range(N)),
         timeout=120, every=0.02)
    print(f"convergence after a partition healed (2 | 3 hosts, 20 and 30 entries on each side "
          f"plus 100 before): {ms(time.perf_counter() - t)} (polled through the CLI)")
finally:
    for p in reversed(procs):  # followers first: they would report their daemon gone
        p.kill()
        p.wait()
    net_down()
