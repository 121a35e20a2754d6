#!/usr/bin/env python3
"""Side-by-side benchmark of the p2pfs store against plain tools (issue 2).

Runs each pair of commands alternately, ROUNDS times, in one run, and reports
medians and the median of the per-round ratios: the machine is shared and
noisy, so only ratios taken in the same run mean anything.

  store_bench.py P2PFS_BINARY WORKDIR [ROUNDS]
"""
import json, os, shutil, statistics as S, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import make, sh  # noqa: E402

P2PFS, WORK = sys.argv[1], sys.argv[2]
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 5
GIB = 1 << 30
SRC = os.path.join(WORK, "src-1g.bin")
BIG = os.path.join(WORK, "src-4g.bin")
STORE = os.path.join(WORK, "data")
COPY = os.path.join(WORK, "copy.bin")


def timed(cmd):
    t = time.perf_counter()
    sh(cmd)
    return time.perf_counter() - t


def fresh_store():
    shutil.rmtree(STORE, ignore_errors=True)
    if os.path.exists(COPY):
        os.remove(COPY)
    sh("sync")


def pair(name, a_cmd, b_cmd, prepare=None, nbytes=GIB):
    """a = the reference, b = p2pfs. Returns the summary dict."""
    ta, tb = [], []
    for _ in range(ROUNDS):
        for which, cmd, out in (("a", a_cmd, ta), ("b", b_cmd, tb)):
            if prepare:
                prepare()
            out.append(timed(cmd))
    ratios = [a / b for a, b in zip(ta, tb)]
    res = {
        "name": name,
        "reference": a_cmd, "p2pfs": b_cmd,
        "reference_s_median": S.median(ta), "p2pfs_s_median": S.median(tb),
        "reference_MBps": nbytes / S.median(ta) / 1e6, "p2pfs_MBps": nbytes / S.median(tb) / 1e6,
        "throughput_ratio_median": S.median(ratios),
        "throughput_ratio_min_max": [min(ratios), max(ratios)],
    }
    print(f"{name}: p2pfs {res['p2pfs_MBps']:.0f} MB/s vs reference {res['reference_MBps']:.0f} MB/s"
          f" -> ratio {res['throughput_ratio_median']:.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})"
          f" over {ROUNDS} rounds", flush=True)
    return res


def peak_rss_kib(cmd):
    out = subprocess.run(f"/usr/bin/time -f '%M' sh -c '{cmd}' 2>&1 >/dev/null | tail -1",
                         shell=True, check=True, capture_output=True, text=True).stdout
    return int(out.strip().splitlines()[-1])


def main():
    os.makedirs(WORK, exist_ok=True)
    make(SRC, GIB)
    sh(f"cat {SRC} > /dev/null")
    results = {}
    p = f"{P2PFS} --data-dir {STORE}"
    results["import"] = pair(
        "import 1 GiB (p2pfs add vs cp + b3sum)",
        f"cp {SRC} {COPY} && b3sum {SRC} > /dev/null",
        f"{p} add {SRC} > /dev/null",
        prepare=fresh_store)
    # Keep one imported copy for the read benchmarks and the size report.
    fresh_store()
    h = subprocess.run(f"{p} add {SRC}", shell=True, check=True, capture_output=True,
                       text=True).stdout.split()[0]
    data_bytes = sum(os.path.getsize(os.path.join(STORE, "store", "data", f))
                     for f in os.listdir(os.path.join(STORE, "store", "data")))
    meta_bytes = os.path.getsize(os.path.join(STORE, "store", "meta.redb"))
    results["disk"] = {"data_bytes": data_bytes, "redb_bytes": meta_bytes,
                       "overhead_pct": 100.0 * (data_bytes + meta_bytes - GIB) / GIB}
    print(f"store on disk after importing 1 GiB: data {data_bytes} B + redb {meta_bytes} B"
          f" = {results['disk']['overhead_pct']:.2f} % over the data", flush=True)
    sh(f"cat {SRC} > /dev/null; {p} cat {h} > /dev/null")
    results["cat_devnull"] = pair(
        "cat 1 GiB to /dev/null (p2pfs cat vs cat)",
        f"cat {SRC} > /dev/null", f"{p} cat {h} > /dev/null")
    results["cat_pipe"] = pair(
        "cat 1 GiB through a pipe (p2pfs cat | cat vs cat | cat)",
        f"cat {SRC} | cat > /dev/null", f"{p} cat {h} | cat > /dev/null")
    # Memory: 4 GiB in and out.
    make(BIG, 4 * GIB)
    fresh_store()
    rss_add = peak_rss_kib(f"{p} add {BIG}")
    h4 = subprocess.run(f"b3sum --no-names {BIG}", shell=True, check=True, capture_output=True,
                        text=True).stdout.strip()
    rss_cat = peak_rss_kib(f"{p} cat {h4}")
    rss_verify = peak_rss_kib(f"{p} verify {h4}")
    results["rss_kib"] = {"add_4g": rss_add, "cat_4g": rss_cat, "verify_4g": rss_verify}
    print(f"peak RSS, 4 GiB: add {rss_add/1024:.1f} MiB, cat {rss_cat/1024:.1f} MiB,"
          f" verify {rss_verify/1024:.1f} MiB (limit 200 MiB)", flush=True)
    fresh_store()
    os.remove(BIG)
    out = os.path.join(WORK, "store_bench.json")
    with open(out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"results in {out}")


if __name__ == "__main__":
    main()
