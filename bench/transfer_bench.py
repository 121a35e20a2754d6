#!/usr/bin/env python3
"""Side-by-side transfer benchmark (issue 3), all on 127.0.0.1, in one run.

For ROUNDS rounds, alternately:
  quinn     ../shared/bench/quicperf: a bare quinn bulk transfer of 1 GiB (1 stream)
  quinn_tuned  the same program with p2pfs's transport settings (bench/quicperf_build.py)
  quinn_floor  quinn_tuned doing the least work of a verified file transfer: the server reads
            the 1 GiB file, the client hashes every byte (BLAKE3) and writes it to disk with
            O_DIRECT (quicperf_build.py --floor): what p2pfs could reach with no cost of its own
  p2pfs     p2pfs fetch of a 1 GiB blob from one provider daemon, verified,
            into a fresh store (committed to disk), written to /dev/null
  libtorrent (if available) 1 seeder -> 1 leecher, 1 GiB, via ../shared/bench/bt.py
Then: p2pfs 4 providers -> 1 fetcher (bytes from each provider), and the
fetcher's peak RSS for a 4 GiB blob. One untimed warm-up fetch from each
provider alone keeps first reads (the page cache, a provider checking data it
has not sent before) out of the comparison (a seeding daemon runs for long).
Reports medians, ratios (of medians and
per round), and CPU seconds per GiB of both ends.

  transfer_bench.py P2PFS SHARED_BENCH_DIR WORKDIR [ROUNDS]
"""
import json, os, re, shutil, signal, statistics as S, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from benchlib import make, sh  # noqa: E402

P2PFS, SHARED, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
ROUNDS = int(sys.argv[4]) if len(sys.argv) > 4 else 5
GIB = 1 << 30
CLK = os.sysconf("SC_CLK_TCK")
SRC = os.path.join(WORK, "src-1g.bin")
BIG = os.path.join(WORK, "src-4g.bin")
PY = "/usr/bin/python3"


def cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / CLK


def timed(cmd, servers):
    """Runs cmd; returns (wall s, its CPU s, servers' CPU s, stderr)."""
    before = [cpu(p) for p in servers]
    r0 = os.times()
    t = time.perf_counter()
    p = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    wall = time.perf_counter() - t
    r1 = os.times()
    if p.returncode != 0:
        raise SystemExit(f"failed: {cmd}\n{p.stderr}")
    client = (r1.children_user - r0.children_user) + (r1.children_system - r0.children_system)
    server = sum(cpu(pid) - b for pid, b in zip(servers, before))
    return wall, client, server, p.stderr


def wait_for(path, secs=30):
    for _ in range(secs * 20):
        if os.path.exists(path) and os.path.getsize(path) > 0:
            return
        time.sleep(0.05)
    raise SystemExit(f"timeout waiting for {path}")


PROCS = []


def start(cmd, log):
    p = subprocess.Popen(cmd, shell=True, stdout=subprocess.DEVNULL, stderr=open(log, "w"),
                         start_new_session=True)
    PROCS.append(p)
    return p


def stop_all():
    for p in PROCS:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for p in PROCS:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
    PROCS.clear()


def provider(i, blob):
    d = os.path.join(WORK, f"prov{i}")
    if not os.path.exists(os.path.join(d, "store")):
        sh(f"{P2PFS} --data-dir {d} add {blob} > /dev/null")
    log = os.path.join(WORK, f"prov{i}.log")
    if os.path.exists(log):
        os.remove(log)
    p = start(f"exec {P2PFS} --data-dir {d} daemon --listen 127.0.0.1:{4900 + i}", log)
    for _ in range(200):
        text = open(log).read()
        m = re.search(r"p2pfs node (\S+)", text)
        if m and "listening" in text:
            return p, f"{m.group(1)}@127.0.0.1:{4900 + i}"
        time.sleep(0.05)
    raise SystemExit(f"provider {i} did not start: {open(log).read()}")


def fresh(d):
    shutil.rmtree(d, ignore_errors=True)
    sh("sync")


def quicperf(out, *flags):
    """Builds ../shared/bench/quicperf (bench/quicperf_build.py); its path, or "" if skipped."""
    return subprocess.run([sys.executable, os.path.join(HERE, "quicperf_build.py"), SHARED, out,
                           *flags], check=True, capture_output=True, text=True).stdout.strip()


def quicperf_server(out, port, name, *flags, env=""):
    """Builds a quicperf (see quicperf) and starts its server on `port`: (binary, server, its
    certificate), or ("", None, "") if the build was skipped."""
    qp = quicperf(out, *flags)
    if not qp:
        return "", None, ""
    cert = os.path.join(WORK, f"{name}.cert")
    if os.path.exists(cert):
        os.remove(cert)
    server = start(f"exec env {env} {qp} server 127.0.0.1:{port} {cert}",
                   os.path.join(WORK, f"{name}.log"))
    wait_for(cert)
    return qp, server, cert


def summary(name, walls, clients, servers, nbytes=GIB):
    w = S.median(walls)
    return {"name": name, "wall_s": w, "MBps": nbytes / w / 1e6,
            "client_cpu_s_per_GiB": S.median(clients) * GIB / nbytes,
            "server_cpu_s_per_GiB": S.median(servers) * GIB / nbytes, "walls": walls}


def main():
    os.makedirs(WORK, exist_ok=True)
    make(SRC, GIB)
    h = subprocess.run(f"b3sum --no-names {SRC}", shell=True, check=True, capture_output=True,
                       text=True).stdout.strip()
    results = {}
    try:
        # quinn baselines: as shipped, and with p2pfs's transport settings
        qp, qserver, cert = quicperf_server("/tmp/quicperf-build", 4433, "qp")
        qt, qtserver, qtcert = quicperf_server("/tmp/quicperf-tuned", 4434, "qpt", "--tuned")
        qf, qfserver, qfcert = quicperf_server("/tmp/quicperf-floor", 4435, "qpf", "--floor",
                                               env=f"QP_SRC={SRC}")
        sink = os.path.join(WORK, "qpf-out")
        prov, addr = provider(0, SRC)
        lt = libtorrent_setup()
        sh(f"cat {SRC} > /dev/null")
        runs = {"quinn": [], "quinn_tuned": [], "quinn_floor": [], "p2pfs": [], "libtorrent": []}
        fetch_dir = os.path.join(WORK, "fetcher")
        fresh(fetch_dir)
        sh(f"{P2PFS} --data-dir {fetch_dir} fetch {h} --peer {addr} -o /dev/null")  # warm-up
        for r in range(ROUNDS):
            runs["quinn"].append(timed(f"{qp} client 127.0.0.1:4433 {cert} {GIB}", [qserver.pid]))
            if qtserver:
                runs["quinn_tuned"].append(timed(f"{qt} client 127.0.0.1:4434 {qtcert} {GIB}",
                                                 [qtserver.pid]))
            if qfserver:
                runs["quinn_floor"].append(timed(
                    f"QP_SINK={sink} {qf} client 127.0.0.1:4435 {qfcert} {GIB}", [qfserver.pid]))
                os.remove(f"{sink}.0")
            fresh(fetch_dir)
            runs["p2pfs"].append(timed(
                f"{P2PFS} --data-dir {fetch_dir} fetch {h} --peer {addr} -o /dev/null",
                [prov.pid]))
            if lt:
                runs["libtorrent"].append(lt())
            line = "  ".join(f"{k} {v[-1][0]:.2f}s" for k, v in runs.items() if v)
            print(f"round {r + 1}: {line}", flush=True)
        for k, v in runs.items():
            if v:
                results[k] = summary(k, [x[0] for x in v], [x[1] for x in v], [x[2] for x in v])
        p = runs["p2pfs"]
        for k in ("quinn", "quinn_tuned", "quinn_floor", "libtorrent"):
            if runs[k]:
                results[f"ratio_vs_{k}"] = {
                    "of_medians": results[k]["wall_s"] / results["p2pfs"]["wall_s"],
                    "per_round": [a[0] / b[0] for a, b in zip(runs[k], p)]}
        if runs["quinn_floor"] and runs["quinn_tuned"]:
            # The share of the transport's speed that any verified file transfer can keep here.
            results["ratio_quinn_floor_vs_quinn_tuned"] = {
                "of_medians": results["quinn_tuned"]["wall_s"] / results["quinn_floor"]["wall_s"],
                "per_round": [a[0] / b[0] for a, b in zip(runs["quinn_tuned"],
                                                           runs["quinn_floor"])]}
        # 4 providers -> 1
        more = [provider(i, SRC) for i in (1, 2, 3)]
        addrs = [addr] + [a for _, a in more]
        provs = [prov.pid] + [p.pid for p, _ in more]
        peers = " ".join(f"--peer {a}" for a in addrs)
        # Warm-up: each new provider sends the whole blob once, so that none checks data
        # against its hash in a timed round (a 4 -> 1 fetch asks each for a different part).
        for a in addrs[1:]:
            fresh(fetch_dir)
            sh(f"{P2PFS} --data-dir {fetch_dir} fetch {h} --peer {a} -o /dev/null")
        # Alternating with 1 -> 1, so the two are compared side by side.
        four, one = [], []
        for r in range(ROUNDS):
            fresh(fetch_dir)
            one.append(timed(f"{P2PFS} --data-dir {fetch_dir} fetch {h} --peer {addr} -o /dev/null",
                             [prov.pid]))
            fresh(fetch_dir)
            four.append(timed(f"{P2PFS} --data-dir {fetch_dir} fetch {h} {peers} -o /dev/null -v",
                              provs))
            print(f"round {r + 1}: p2pfs 1->1 {one[-1][0]:.2f}s  4->1 {four[-1][0]:.2f}s",
                  flush=True)
        contrib = [int(m) for m in re.findall(r"(\d+) bytes", four[-1][3])]
        results["p2pfs_4to1"] = summary("p2pfs_4to1", [x[0] for x in four], [x[1] for x in four],
                                        [x[2] for x in four])
        results["p2pfs_4to1"]["bytes_per_provider_last_round"] = contrib
        results["ratio_4to1_vs_1to1"] = {
            "of_medians": S.median(x[0] for x in one) / results["p2pfs_4to1"]["wall_s"],
            "per_round": [a[0] / b[0] for a, b in zip(one, four)]}
        # Memory: a 4 GiB blob.
        stop_all()
        make(BIG, 4 * GIB)
        big_dir = os.path.join(WORK, "prov9")
        shutil.rmtree(big_dir, ignore_errors=True)
        prov, addr = provider(9, BIG)
        hb = subprocess.run(f"b3sum --no-names {BIG}", shell=True, check=True, capture_output=True,
                            text=True).stdout.strip()
        fresh(fetch_dir)
        out = subprocess.run(f"/usr/bin/time -f '%M %e' {P2PFS} --data-dir {fetch_dir} fetch {hb}"
                             f" --peer {addr} -o /dev/null", shell=True, capture_output=True,
                             text=True)
        rss_kib, wall = out.stderr.strip().splitlines()[-1].split()
        results["fetch_4g"] = {"peak_rss_MiB": int(rss_kib) / 1024, "wall_s": float(wall)}
        shutil.rmtree(big_dir, ignore_errors=True)
        os.remove(BIG)
    finally:
        stop_all()
        shutil.rmtree(os.path.join(WORK, "fetcher"), ignore_errors=True)
    print(json.dumps(results, indent=1))
    with open(os.path.join(WORK, "transfer_bench.json"), "w") as f:
        json.dump(results, f, indent=1)


def libtorrent_setup():
    """Starts a libtorrent seeder (../shared/bench/bt.py); returns a run function."""
    if subprocess.run(f"{PY} -c 'import libtorrent'", shell=True,
                      capture_output=True).returncode != 0:
        print("libtorrent not installed (apt install python3-libtorrent): skipped", flush=True)
        return None
    bt = os.path.join(SHARED, "bt.py")
    btdir = os.path.join(WORK, "bt")
    os.makedirs(btdir, exist_ok=True)
    tor = os.path.join(btdir, "src.torrent")
    if not os.path.exists(tor):
        sh(f"{PY} {bt} mktorrent {SRC} {tor} http://127.0.0.1:6969/announce --piece 1024 > /dev/null")
    ready = os.path.join(btdir, "ready")
    if os.path.exists(ready):
        os.remove(ready)
    seeder = start(f"exec {PY} {bt} seed {tor} {WORK} 6881 {ready} --max-secs 3000",
                   os.path.join(btdir, "seed.log"))
    wait_for(ready, 120)
    dl = os.path.join(btdir, "dl")
    csv = os.path.join(btdir, "runs.csv")

    def run():
        fresh(dl)
        os.makedirs(dl)
        r = timed(f"{PY} {bt} leech {tor} {dl} 6900 {csv} --peer 127.0.0.1:6881"
                  f" --seeder-pids {seeder.pid} --label lt --timeout 300", [seeder.pid])
        return r
    return run


if __name__ == "__main__":
    main()
