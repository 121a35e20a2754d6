"""Issue 22 benchmark: the data path beyond `bench/transfer.sh`, side by side in one run, on
127.0.0.1, release build.

  python3 data_path.py P2PFS_BIN WORK_DIR ROUNDS [FILES]

1. restart: the first fetch of 1 GiB from a provider that has just started against the next one
   from the same provider (each round restarts it); fresh fetcher each time.
2. remote read: `cat` of a 1 GiB room file through the mount of a member B that lacks it (its
   copy dropped with `p2pfs gc` before each round) against `p2pfs fetch` of the same bytes by a
   fresh node from the provider of 1 (room files are for members only), alternating.
3. small files: FILES (10,000) files of 4 KiB published by A, read for the first time by B
   (`cat` of all of them through the mount), against `cat` of one file of the same bytes.
"""
import json, os, shutil, statistics, subprocess, sys, time

from benchlib import make, sh, timed, wait

BIN, WORK, ROUNDS = sys.argv[1], sys.argv[2], int(sys.argv[3])
FILES = int(sys.argv[4]) if len(sys.argv) > 4 else 10_000
SIZE = 1 << 30
PORT_A, PORT_B, PORT_P = 47411, 47412, 47413
os.makedirs(WORK, exist_ok=True)
DATA = f"{WORK}/data.bin"
make(DATA, SIZE)
started = []  # processes this script started: stopped by PID at the end
results = {}


def record(name, secs):
    results.setdefault(name, []).append(secs)


def p2pfs(node, *args):
    return subprocess.run([BIN, "--data-dir", f"{WORK}/{node}", *args], check=True,
                          capture_output=True, text=True).stdout


def mounted(path):
    return subprocess.run(["mountpoint", "-q", path]).returncode == 0


def daemon(node, port, *mnt):
    log = open(f"{WORK}/{node}.log", "w")
    cmd = [BIN, "--data-dir", f"{WORK}/{node}"]
    cmd += ["mount", *mnt] if mnt else ["daemon"]
    p = subprocess.Popen(cmd + ["--listen", f"127.0.0.1:{port}", "--no-lan"], stderr=log,
                         stdout=log)
    started.append(p)
    wait(f"{node} up", lambda: os.path.exists(f"{WORK}/{node}/control.sock")
         and (not mnt or mounted(mnt[0])))
    return p


def mount(node, port):
    mnt = f"{WORK}/mnt-{node}"
    if mounted(mnt):
        sh(f"umount -l {mnt}")
    os.makedirs(mnt, exist_ok=True)
    daemon(node, port, mnt)
    return mnt


def stop(p):
    p.terminate()
    p.wait(timeout=60)
    started.remove(p)


def fetch(h, peer):
    shutil.rmtree(f"{WORK}/f", ignore_errors=True)
    return timed(f"{BIN} --data-dir {WORK}/f fetch {h} --peer {peer} -o /dev/null")


try:
    for d in ("a", "b", "p", "f"):
        if mounted(f"{WORK}/mnt-{d}"):
            sh(f"umount -l {WORK}/mnt-{d}")
        shutil.rmtree(f"{WORK}/{d}", ignore_errors=True)
    h = p2pfs("p", "add", DATA).split()[0]

    # 1. restart
    for r in range(ROUNDS):
        prov = daemon("p", PORT_P)
        peer = f"{json.loads(p2pfs('p', 'status', '--json'))['node']}@127.0.0.1:{PORT_P}"
        record("first fetch after a start", fetch(h, peer))
        record("next fetch", fetch(h, peer))
        stop(prov)
        print(f"restart round {r + 1}/{ROUNDS} done", flush=True)

    # 2. remote read
    A, B = mount("a", PORT_A), mount("b", PORT_B)
    os.mkdir(f"{A}/bench")
    # One copy: reads on B fetch on demand, not from a background mirror.
    p2pfs("a", "room", "set", "bench", "copies=1")
    p2pfs("b", "room", "join", p2pfs("a", "room", "ticket", "bench").strip())
    wait("B in the room", lambda: os.path.exists(f"{B}/bench/chat.log"))
    sh(f"cp {DATA} {A}/bench/cp.bin")
    wait("the file on B", lambda: os.path.exists(f"{B}/bench/cp.bin"), timeout=300)
    # Room files are for members: the fetch takes the same bytes from the provider of 1.
    prov = daemon("p", PORT_P)
    # B's copy and the kernel's cache of the file dropped before each read.
    gc = f"{BIN} --data-dir {WORK}/b gc > /dev/null; sync; echo 3 > /proc/sys/vm/drop_caches"
    for r in range(ROUNDS):
        record("remote cat (mount)", timed(f"cat {B}/bench/cp.bin > /dev/null", gc))
        record("p2pfs fetch", fetch(h, peer))
        print(f"remote read round {r + 1}/{ROUNDS} done", flush=True)

    # 3. small files
    src = f"{WORK}/small-src"
    shutil.rmtree(src, ignore_errors=True)
    os.makedirs(src)
    make(f"{WORK}/small.bin", FILES * 4096)
    with open(f"{WORK}/small.bin", "rb") as f:
        for i in range(FILES):
            with open(f"{src}/f{i:05}", "wb") as o:
                o.write(f.read(4096))
    os.mkdir(f"{A}/small")
    p2pfs("a", "room", "set", "small", "copies=1")
    sh(f"cp {src}/* {A}/small/ 2>/dev/null || (cd {src} && find . -type f -print0 | xargs -0 cp -t {A}/small)")
    sh(f"cp {WORK}/small.bin {A}/small/one.bin")
    p2pfs("b", "room", "join", p2pfs("a", "room", "ticket", "small").strip())
    wait(f"{FILES} files on B", lambda: len(os.listdir(f"{B}/small")) >= FILES + 2, timeout=600)
    for r in range(ROUNDS):
        record("small files, first read", timed(
            f"find {B}/small -name 'f*' -print0 | xargs -0 cat > /dev/null", gc))
        record("one file of the same bytes", timed(f"cat {B}/small/one.bin > /dev/null", gc))
        print(f"small files round {r + 1}/{ROUNDS} done", flush=True)

    med = {k: statistics.median(v) for k, v in results.items()}
    print("\n== medians (s), all runs in brackets")
    for k, v in results.items():
        print(f"{k:34s} {med[k]:8.3f}   [{', '.join(f'{x:.3f}' for x in v)}]")
    mbs = lambda k: SIZE / med[k] / 1e6
    print(f"\n== first fetch after a provider starts {mbs('first fetch after a start'):.0f} MB/s vs"
          f" the next {mbs('next fetch'):.0f} MB/s -> the first takes"
          f" {med['first fetch after a start'] / med['next fetch']:.2f}x as long (goal <= 1.10)")
    print(f"== 1 GiB remote: cat through the mount {mbs('remote cat (mount)'):.0f} MB/s vs p2pfs"
          f" fetch {mbs('p2pfs fetch'):.0f} MB/s -> ratio"
          f" {med['p2pfs fetch'] / med['remote cat (mount)']:.2f}x (goal >= 0.9)")
    s, o = med["small files, first read"], med["one file of the same bytes"]
    print(f"== {FILES} files of 4 KiB read for the first time through the mount: {FILES / s:.0f}"
          f" files/s ({FILES * 4096 / s / 1e6:.1f} MB/s); one file of the same bytes"
          f" {FILES * 4096 / o / 1e6:.1f} MB/s -> ratio {o / s:.3f}x")
    with open(f"{WORK}/data_path.json", "w") as f:
        json.dump({"results": results, "medians": med}, f, indent=1)
finally:
    for p in reversed(started):
        p.terminate()
    for p in started:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
    for d in ("a", "b"):
        if mounted(f"{WORK}/mnt-{d}"):
            sh(f"umount -l {WORK}/mnt-{d}")
