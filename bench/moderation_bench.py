"""Driver of bench/moderation.sh: removal propagation over MEMBERS daemons, then a room's export
and import against cat and b3sum of the same bytes."""
import json, os, shutil, statistics, subprocess, sys, time

sys.path.insert(0, os.path.dirname(__file__))
from benchlib import control_up, make, p2pfs_in, sh, wait  # noqa: E402

BIN, WORK, MEMBERS, TRIALS, GIB = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
PORT0 = 47611
MiB = 1 << 20
started = {}
p2pfs = p2pfs_in(BIN, WORK)


def start(name, i):
    log = open(f"{WORK}/{name}.log", "a")
    started[name] = subprocess.Popen(
        [BIN, "--data-dir", f"{WORK}/{name}", "daemon", "--listen", f"127.0.0.1:{PORT0 + i}",
         "--no-lan", "--name", name], stderr=log, stdout=log)
    wait(f"{name} up", lambda: control_up(f"{WORK}/{name}"))


def members(node):
    return {m["name"]: m for m in json.loads(p2pfs(node, "room", "members", "team", "--json"))}


def node_id(node):
    return json.loads(p2pfs(node, "status", "--json"))["node"]


def refused_by_all(stayers, gone):
    return all(gone not in members(n) for n in stayers)


try:
    for d in os.listdir(WORK) if os.path.isdir(WORK) else []:
        if d not in ("files", "source.bin"):
            shutil.rmtree(f"{WORK}/{d}", ignore_errors=True)
    stayers = [f"m{i}" for i in range(MEMBERS)]
    leavers = [f"x{i}" for i in range(TRIALS)]
    for i, n in enumerate(stayers + leavers):
        start(n, i)
    ticket = p2pfs("m0", "room", "create", "team").strip()
    for n in stayers[1:] + leavers:
        p2pfs(n, "room", "join", ticket)
    wait("everyone a member everywhere",
         lambda: all(len(members(n)) == MEMBERS + TRIALS for n in stayers), timeout=120)
    times = []
    for x in leavers:
        xid = node_id(x)
        t0 = time.time()
        p2pfs("m0", "room", "remove", "team", xid[:16])
        wait(f"{x} refused by all", lambda: refused_by_all(stayers, x), timeout=60, every=0.01)
        times.append(time.time() - t0)
        # The removed node itself learns it (its next write is refused).
        wait(f"{x} told", lambda: subprocess.run(
            [BIN, "--data-dir", f"{WORK}/{x}", "chat", "team", "hello?"],
            capture_output=True).returncode != 0, timeout=60)
    print(f"removal to refused by all {MEMBERS} online members (incl. the CLI call), {TRIALS} removals: "
          f"median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms")

    # Export and import of GIB GiB of files.
    files = f"{WORK}/files"
    os.makedirs(files, exist_ok=True)
    n_files = max(1, int(GIB * 8))
    size = int(GIB * 1024 * MiB / n_files)
    # Distinct contents: slices of one incompressible source.
    make(f"{WORK}/source.bin", size * n_files)
    paths = [f"{files}/f{i}.bin" for i in range(n_files)]
    with open(f"{WORK}/source.bin", "rb") as src:
        for p in paths:
            chunk = src.read(size)
            if not os.path.exists(p) or os.path.getsize(p) != size:
                with open(p, "wb") as out:
                    out.write(chunk)
    for p in paths:
        p2pfs("m0", "room", "put", "team", p)
    total = size * n_files
    sh("sync")
    t0 = time.time(); sh(f"cat {' '.join(paths)} > {WORK}/cat.out && sync {WORK}/cat.out"); t_cat = time.time() - t0
    os.remove(f"{WORK}/cat.out")
    t0 = time.time(); sh(f"b3sum {' '.join(paths)} > /dev/null"); t_b3 = time.time() - t0
    t0 = time.time(); p2pfs("m0", "room", "export", "team", f"{WORK}/team.p2pfs", "--files"); t_exp = time.time() - t0
    start("fresh", MEMBERS + TRIALS)
    t0 = time.time(); p2pfs("fresh", "room", "import", f"{WORK}/team.p2pfs", "--name", "copy"); t_imp = time.time() - t0
    gib = total / (1 << 30)
    print(f"{gib:.2f} GiB in {n_files} files: cat to one file {t_cat:.2f} s ({gib / t_cat:.2f} GiB/s), "
          f"b3sum {t_b3:.2f} s; room export --files {t_exp:.2f} s ({gib / t_exp:.2f} GiB/s, "
          f"{t_exp / t_cat:.2f}x cat), room import {t_imp:.2f} s ({gib / t_imp:.2f} GiB/s, "
          f"{t_imp / t_cat:.2f}x cat, {t_imp / (t_cat + t_b3):.2f}x cat+b3sum)")
finally:
    for p in started.values():
        p.kill()
        p.wait()
