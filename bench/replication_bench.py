"""Driver of bench/replication.sh: MEMBERS daemons, FILES files on member a, then the time to
two copies of everything, and the time and bytes to restore the count after a holder, then the
author, is killed. Every figure comes from the members' own `room status --json`."""
import json, math, os, random, shutil, subprocess, sys, time

sys.path.insert(0, os.path.dirname(__file__))
from benchlib import control_up, make, p2pfs_in, wait  # noqa: E402

BIN, WORK, MEMBERS, FILES, OFFLINE = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
NAMES = [chr(ord("a") + i) for i in range(MEMBERS)]
PORT0 = 47411
MiB = 1 << 20
started = {}  # name -> process (stopped by PID at the end)


p2pfs = p2pfs_in(BIN, WORK)


def start(name, i):
    log = open(f"{WORK}/{name}.log", "a")
    p = subprocess.Popen([BIN, "--data-dir", f"{WORK}/{name}", "daemon", "--listen",
                          f"127.0.0.1:{PORT0 + i}", "--no-lan", "--name", name,
                          "--offline-after", OFFLINE], stderr=log, stdout=log)
    started[name] = p
    wait(f"{name} up", lambda: control_up(f"{WORK}/{name}"))


def status(node):
    return json.loads(p2pfs(node, "room", "status", "team", "--json"))


def all_at(node, want, online):
    s = status(node)
    on = sum(1 for m in s["members"] if m["online"])
    files = s["files"]
    ok = on == online and len(files) == FILES and all(
        f["copies"] >= want and f["copies"] >= f["target"] for f in files)
    return s if ok else None


def fetched(names):
    return sum(status(n)["fetched_bytes"] for n in names)


def kill(name):
    p = started.pop(name)
    p.kill()
    p.wait()


try:
    if os.path.isdir(WORK):
        for name in NAMES:
            shutil.rmtree(f"{WORK}/{name}", ignore_errors=True)
    os.makedirs(f"{WORK}/files", exist_ok=True)
    rng = random.Random(7)
    sizes = [int(MiB * math.exp(rng.uniform(0, math.log(64)))) for _ in range(FILES)]
    total = sum(sizes)
    make(f"{WORK}/source.bin", 64 * MiB + FILES * 4096)
    src = open(f"{WORK}/source.bin", "rb")
    for i, size in enumerate(sizes):
        path = f"{WORK}/files/f{i:03}"
        if not os.path.exists(path) or os.path.getsize(path) != size:
            src.seek(i * 4096)
            with open(path, "wb") as out:
                out.write(src.read(size))
    for i, name in enumerate(NAMES):
        start(name, i)
    ticket = p2pfs("a", "room", "create", "team").strip()
    for name in NAMES[1:]:
        p2pfs(name, "room", "join", ticket)
    wait("every member online", lambda: sum(m["online"] for m in status("a")["members"]) == MEMBERS)
    # The transfer baseline of this run: `p2pfs fetch` of a public 256 MiB blob from a to b.
    make(f"{WORK}/baseline.bin", 256 * MiB)
    h = p2pfs("a", "add", f"{WORK}/baseline.bin").split()[0]
    a_id = json.loads(p2pfs("a", "status", "--json"))["node"]
    t = time.perf_counter()
    subprocess.run([BIN, "--data-dir", f"{WORK}/b", "fetch", h, "--peer", f"{a_id}@127.0.0.1:{PORT0}",
                    "-o", "-", "--no-pin"], check=True, stdout=subprocess.DEVNULL)
    rate = 256 * MiB / (time.perf_counter() - t)
    time.sleep(2)  # the replicas' views settle

    t0 = time.perf_counter()
    for i in range(FILES):
        p2pfs("a", "room", "put", "team", f"{WORK}/files/f{i:03}", f"f{i:03}")
    t_put = time.perf_counter() - t0
    wait("two copies of every file", lambda: all_at("a", 2, MEMBERS), every=0.05)
    t_two = time.perf_counter() - t0
    others = NAMES[1:]
    first = wait("the fetches counted", lambda: (lambda f: f if f >= total else None)(fetched(others)), 30)
    print(f"members {MEMBERS}, files {FILES} ({total / MiB:.0f} MiB, 1 to 64 MiB), offline timeout {OFFLINE}")
    print(f"baseline: p2pfs fetch of 256 MiB from a to b at {rate / MiB:.0f} MiB/s")
    print(f"publish (room put of every file on a): {t_put:.2f} s")
    print(f"every file with 2 copies: {t_two:.2f} s after the first put, {t_two - t_put:.2f} s after the last")
    print(f"bytes fetched for the second copies: {first / MiB:.1f} MiB for {total / MiB:.1f} MiB of files "
          f"({first / total:.3f}x)")

    def restore(victim, label):
        survivors = [n for n in NAMES if n in started and n != victim]
        s = status(survivors[0])
        vid = next(m["id"] for m in s["members"] if m["name"] == victim)
        lost = sum(f["size"] for f in s["files"] if vid in f["holders"])
        kept_enough = [f["hash"] for f in s["files"] if vid not in f["holders"]]
        before = {n: fetched([n]) for n in survivors}
        online = len(survivors)
        t = time.perf_counter()
        kill(victim)
        wait("the copies restored", lambda: all_at(survivors[0], 2, online), every=0.05)
        took = time.perf_counter() - t
        moved = wait("the fetches counted", lambda: (lambda m: m if m >= lost else None)(
            sum(fetched([n]) - before[n] for n in survivors)), 30)
        offline_s = status(survivors[0])["offline_after_secs"]
        transfer = lost / rate
        print(f"{label}: killed {victim} holding {lost / MiB:.1f} MiB of copies "
              f"({FILES - len(kept_enough)} files): restored in {took:.2f} s "
              f"(goal: under 2 x ({offline_s} s timeout + {transfer:.2f} s transfer) = "
              f"{2 * (offline_s + transfer):.1f} s; ratio {took / (offline_s + transfer):.2f}), "
              f"moved {moved / MiB:.1f} MiB ({moved / max(lost, 1):.3f}x the bytes lost); "
              f"{len(kept_enough)} files that kept 2 copies moved nothing")

    s = status("a")
    # The member holding the most second copies.
    victim = max((m for m in s["members"] if not m["me"]), key=lambda m: m["holds"])["name"]
    restore(victim, "holder")
    restore("a", "author")
finally:
    for p in started.values():
        p.kill()
        p.wait()
