"""Issue 6 benchmark: the mount against a passthrough FUSE filesystem (bindfs -o big_writes) and
against `p2pfs fetch`, side by side in one run, each contender once per round, in turn.

  python3 fuse_bench.py P2PFS_BIN WORK_DIR ROUNDS [FILES]

1. write: `cp` of a 1 GiB file into a room (published when cp returns) vs into bindfs, same disk.
2. local read: `cat` of that file through the mount vs through bindfs (backing file in the page
   cache, the FUSE inode's cache dropped), plus a second read through the mount (kernel cache kept).
3. remote: `cat` on a second member B vs `p2pfs fetch` of the same blob on B (B's copy removed
   with `p2pfs gc` before each); and the first byte of a 1 MiB read at offset 900 MiB (and 4 KiB).
4. metadata: `ls -l` of a room with FILES (10,000) files, on the member that wrote them and on B.
"""
import glob, json, os, statistics, subprocess, sys, time

from benchlib import make, sh, timed

BIN, WORK, ROUNDS = sys.argv[1], sys.argv[2], int(sys.argv[3])
FILES = int(sys.argv[4]) if len(sys.argv) > 4 else 10_000
SIZE = 1 << 30
PORT_A, PORT_B = 47311, 47312
os.makedirs(WORK, exist_ok=True)
DATA = f"{WORK}/data.bin"
make(DATA, SIZE)
started = []  # processes this script started: stopped by PID at the end


def p2pfs(node, *args, **kw):
    return subprocess.run([BIN, "--data-dir", f"{WORK}/{node}", *args], check=True,
                          capture_output=True, text=True, **kw).stdout


def wait(what, f, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if f():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def mounted(path):
    return subprocess.run(["mountpoint", "-q", path]).returncode == 0


def mount(node, port):
    mnt = f"{WORK}/mnt-{node}"
    if mounted(mnt):
        sh(f"umount -l {mnt}")
    os.makedirs(mnt, exist_ok=True)
    log = open(f"{WORK}/{node}.log", "w")
    p = subprocess.Popen([BIN, "--data-dir", f"{WORK}/{node}", "mount", mnt,
                          "--listen", f"127.0.0.1:{port}", "--no-lan"], stderr=log, stdout=log)
    started.append(p)
    wait(f"{mnt} mounted", lambda: mounted(mnt) and os.path.exists(f"{WORK}/{node}/control.sock"))
    return mnt


def drop_caches():
    sh("sync; echo 3 > /proc/sys/vm/drop_caches")


results = {}


def record(name, secs):
    results.setdefault(name, []).append(secs)


try:
    for d in ("a", "b", "bindfs-src", "bindfs-mnt"):
        path = f"{WORK}/{d}"
        if mounted(path):
            sh(f"umount -l {path}")
        sh(f"rm -rf {path}")
    os.makedirs(f"{WORK}/bindfs-src")
    os.makedirs(f"{WORK}/bindfs-mnt")
    bind = subprocess.Popen(["bindfs", "-f", "-o", "big_writes", f"{WORK}/bindfs-src",
                             f"{WORK}/bindfs-mnt"], stderr=subprocess.DEVNULL)
    started.append(bind)
    wait("bindfs", lambda: mounted(f"{WORK}/bindfs-mnt"))
    BF = f"{WORK}/bindfs-mnt"
    A, B = mount("a", PORT_A), mount("b", PORT_B)
    os.mkdir(f"{A}/bench")
    # One copy: reads on B measure fetching on demand, not a background mirror.
    p2pfs("a", "room", "set", "bench", "copies=1")
    ticket = p2pfs("a", "room", "ticket", "bench").strip()
    p2pfs("b", "room", "join", ticket)
    wait("B in the room", lambda: os.path.exists(f"{B}/bench/chat.log"))
    a_id = json.loads(p2pfs("a", "status", "--json"))["node"]
    versions = subprocess.run(["bindfs", "--version"], capture_output=True, text=True).stdout
    print(f"== {versions.strip()}; kernel {os.uname().release}; rounds {ROUNDS}; 1 GiB file")

    for r in range(ROUNDS):
        # 1. write
        record("write bindfs", timed(f"cp {DATA} {BF}/cp.bin", f"rm -f {BF}/cp.bin; sync"))
        w = timed(f"cp {DATA} {A}/bench/cp.bin", f"rm -f {A}/bench/cp.bin; sync")
        record("write p2pfs", w)
        # cp returns once the file is handed to the room's publisher; the
        # reads below want it published (its blob in the store).
        t = time.perf_counter()
        wait("cp.bin published", lambda: subprocess.run(
            ["getfattr", "--only-values", "-n", "user.p2pfs.hash", f"{A}/bench/cp.bin"],
            capture_output=True).returncode == 0, timeout=300)
        record("write p2pfs, published", w + time.perf_counter() - t)
        blob = glob.glob(f"{WORK}/a/store/data/*.data")
        # 2. local read, backing file warm, FUSE cache cold
        record("read bindfs", timed(f"cat {BF}/cp.bin > /dev/null",
                                    f"sync; echo 3 > /proc/sys/vm/drop_caches; cat {BF}/../bindfs-src/cp.bin > /dev/null"))
        record("read p2pfs", timed(f"cat {A}/bench/cp.bin > /dev/null",
                                   f"sync; echo 3 > /proc/sys/vm/drop_caches; cat {' '.join(blob)} > /dev/null"))
        record("read p2pfs again", timed(f"cat {A}/bench/cp.bin > /dev/null"))
        # 3. remote
        hsh = subprocess.run(["getfattr", "--only-values", "-n", "user.p2pfs.hash",
                              f"{A}/bench/cp.bin"], capture_output=True, text=True).stdout
        wait("the file on B", lambda: os.path.exists(f"{B}/bench/cp.bin"))
        gc = f"{BIN} --data-dir {WORK}/b gc > /dev/null"
        record("remote cat (mount)", timed(f"cat {B}/bench/cp.bin > /dev/null", gc))
        record("remote p2pfs fetch", timed(
            f"{BIN} --data-dir {WORK}/b fetch {hsh} --peer {a_id}@127.0.0.1:{PORT_A} --no-pin -o /dev/null", gc))
        record("first byte, 1 MiB at 900 MiB", timed(
            f"dd if={B}/bench/cp.bin of=/dev/null bs=1M skip=900 count=1 status=none", gc))
        record("first byte, 4 KiB at 900 MiB", timed(
            f"dd if={B}/bench/cp.bin of=/dev/null bs=4k skip={900 * 256} count=1 status=none", gc))
        print(f"round {r + 1}/{ROUNDS} done", flush=True)

    # 4. metadata
    os.mkdir(f"{A}/many")
    wait("the room on A", lambda: os.path.exists(f"{A}/many/chat.log"))
    p2pfs("a", "room", "set", "many", "copies=1")
    t = time.perf_counter()
    sh(f"cd {A}/many && for i in $(seq {FILES}); do echo $i > f$i; done")
    publish = time.perf_counter() - t
    p2pfs("b", "room", "join", p2pfs("a", "room", "ticket", "many").strip())
    wait(f"{FILES} files on B", lambda: len(os.listdir(f"{B}/many")) >= FILES + 1, timeout=300)
    for r in range(ROUNDS):
        record("ls -l 10k files, writer", timed(f"ls -l {A}/many > /dev/null", "echo 2 > /proc/sys/vm/drop_caches"))
        record("ls -l 10k files, other member", timed(f"ls -l {B}/many > /dev/null", "echo 2 > /proc/sys/vm/drop_caches"))

    med = {k: statistics.median(v) for k, v in results.items()}
    mbs = lambda k: SIZE / med[k] / 1e6
    print("\n== medians (s), all runs in brackets")
    for k, v in results.items():
        print(f"{k:34s} {med[k]:8.3f}   [{', '.join(f'{x:.3f}' for x in v)}]")
    print(f"\n== 1 GiB write: p2pfs {mbs('write p2pfs'):.0f} MB/s vs bindfs {mbs('write bindfs'):.0f} MB/s"
          f" -> ratio {med['write bindfs'] / med['write p2pfs']:.2f}x (goal >= 1.0)")
    print(f"== 1 GiB write until published (blob in the store, entry in the log): p2pfs"
          f" {mbs('write p2pfs, published'):.0f} MB/s -> ratio"
          f" {med['write bindfs'] / med['write p2pfs, published']:.2f}x")
    print(f"== 1 GiB local read: p2pfs {mbs('read p2pfs'):.0f} MB/s vs bindfs {mbs('read bindfs'):.0f} MB/s"
          f" -> ratio {med['read bindfs'] / med['read p2pfs']:.2f}x (goal >= 0.6);"
          f" again (kernel cache kept) {mbs('read p2pfs again'):.0f} MB/s")
    print(f"== 1 GiB remote: cat through the mount {mbs('remote cat (mount)'):.0f} MB/s vs p2pfs fetch"
          f" {mbs('remote p2pfs fetch'):.0f} MB/s -> ratio"
          f" {med['remote p2pfs fetch'] / med['remote cat (mount)']:.2f}x (goal >= 0.7)")
    print(f"== first byte of 1 MiB at 900 MiB: {med['first byte, 1 MiB at 900 MiB'] * 1000:.1f} ms"
          f" (goal < 50 ms); 4 KiB: {med['first byte, 4 KiB at 900 MiB'] * 1000:.1f} ms")
    print(f"== {FILES} files published through the mount in {publish:.1f} s ({FILES / publish:.0f}/s);"
          f" ls -l: {med['ls -l 10k files, writer'] * 1000:.0f} ms on the writer,"
          f" {med['ls -l 10k files, other member'] * 1000:.0f} ms on the other member (goal < 1 s)")
finally:
    for p in reversed(started):
        p.terminate()
    for p in reversed(started):
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
    for d in ("mnt-a", "mnt-b", "bindfs-mnt"):
        if mounted(f"{WORK}/{d}"):
            sh(f"umount -l {WORK}/{d}")
