"""Driver of bench/small_files.sh. Each round runs bindfs then the room, in turn."""
import json, os, random, shutil, statistics, subprocess, sys, tarfile, time

sys.path.insert(0, os.path.dirname(__file__))
from benchlib import control_up, p2pfs_in, sh, wait  # noqa: E402

BIN, WORK, FILES, ROUNDS = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
PORTS = {"a": 47611, "b": 47612}
p2pfs = p2pfs_in(BIN, WORK)
started = []  # processes this script started: stopped by PID at the end


def mounted(path):
    return subprocess.run(["mountpoint", "-q", path]).returncode == 0


def mount(node):
    mnt = f"{WORK}/mnt-{node}"
    os.makedirs(mnt, exist_ok=True)
    log = open(f"{WORK}/{node}.log", "w")
    p = subprocess.Popen([BIN, "--data-dir", f"{WORK}/{node}", "mount", mnt, "--listen",
                          f"127.0.0.1:{PORTS[node]}", "--no-lan"], stderr=log, stdout=log)
    started.append(p)
    wait(f"{mnt} mounted", lambda: mounted(mnt) and control_up(f"{WORK}/{node}"))
    return mnt


def team(node):
    rooms = json.loads(p2pfs(node, "room", "list", "--json"))
    return next((r for r in rooms if r["name"] == "team"), {})


def files_on(node):
    return team(node).get("files", 0)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def closes(dir, n=500):
    """close() of n new 4 KiB files written in `dir` (seconds each)."""
    os.makedirs(dir, exist_ok=True)
    block, out = os.urandom(4096), []
    for i in range(n):
        fd = os.open(f"{dir}/c{i}", os.O_CREAT | os.O_WRONLY, 0o644)
        os.write(fd, block)
        t = time.perf_counter()
        os.close(fd)
        out.append(time.perf_counter() - t)
    return out


def appends(path, n=200):
    """`echo line >> path` as a shell does it (open O_APPEND, write, close)."""
    out = []
    for i in range(n):
        t = time.perf_counter()
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
        os.write(fd, f"line {i}\n".encode())
        os.close(fd)
        out.append(time.perf_counter() - t)
    return out


try:
    for d in ("a", "b", "src", "tarball"):
        shutil.rmtree(f"{WORK}/{d}", ignore_errors=True)
    for m in ("mnt-a", "mnt-b", "bind"):
        if mounted(f"{WORK}/{m}"):
            sh(f"umount -l {WORK}/{m}")
    os.makedirs(f"{WORK}/tarball", exist_ok=True)
    tarpath = f"{WORK}/tarball/small.tar"
    if not os.path.exists(tarpath):
        rng = random.Random(17)
        with tarfile.open(tarpath, "w") as tar:
            for i in range(FILES):
                data = rng.randbytes(rng.randint(1024, 8192))
                info = tarfile.TarInfo(f"proj/d{i // 100:03}/f{i:05}")
                info.size = len(data)
                info.mtime = 1_700_000_000
                import io
                tar.addfile(info, io.BytesIO(data))
    os.makedirs(f"{WORK}/src", exist_ok=True)
    os.makedirs(f"{WORK}/bind", exist_ok=True)
    sh(f"bindfs -o big_writes {WORK}/src {WORK}/bind")
    ma, mb = mount("a"), mount("b")
    os.mkdir(f"{ma}/team")
    ticket = p2pfs("a", "room", "ticket", "team").strip()
    p2pfs("b", "room", "join", ticket)
    wait("the room on b", lambda: os.path.exists(f"{mb}/team/chat.log"))
    rate = {"bindfs": [], "room": []}
    listed_after = []
    log_per_file = []
    expected = 0
    for r in range(ROUNDS):
        for who, root in (("bindfs", f"{WORK}/bind"), ("room", f"{ma}/team")):
            dest = f"{root}/r{r}"
            os.makedirs(dest)
            before = team("b").get("log_bytes", 0) if who == "room" else 0
            t = time.perf_counter()
            sh(f"tar -xf {tarpath} -C {dest}")
            took = time.perf_counter() - t
            rate[who].append(FILES / took)
            if who == "room":
                expected += FILES
                t = time.perf_counter()
                wait("b to list every file", lambda: files_on("b") >= expected, 600, 0.05)
                listed_after.append(time.perf_counter() - t)
                # (The directories' entries are in the count too.)
                log_per_file.append((team("b").get("log_bytes", 0) - before) / FILES)
    close_b = closes(f"{WORK}/bind/closes")
    close_r = closes(f"{ma}/team/closes")
    app_b = appends(f"{WORK}/bind/log.txt")
    app_r = appends(f"{ma}/team/log.txt")
    rb, rr = statistics.median(rate["bindfs"]), statistics.median(rate["room"])
    print(f"untar of {FILES} files of 1-8 KiB, {ROUNDS} rounds (median): bindfs {rb:.0f} files/s, "
          f"room {rr:.0f} files/s: {rr / rb:.2f}x")
    print(f"every file listed on the other member {max(listed_after):.2f} s after tar returned "
          f"(worst of {ROUNDS}); room log received there: {statistics.median(log_per_file):.0f} "
          f"bytes per file published")
    ms = lambda x: f"{x * 1000:.2f} ms"  # noqa: E731
    print(f"close() of a new 4 KiB file: room p50 {ms(pct(close_r, 50))}, p99 {ms(pct(close_r, 99))}; "
          f"bindfs p50 {ms(pct(close_b, 50))}, p99 {ms(pct(close_b, 99))}")
    print(f"echo >> f: room p50 {ms(pct(app_r, 50))}, p99 {ms(pct(app_r, 99))}; "
          f"bindfs p50 {ms(pct(app_b, 50))}, p99 {ms(pct(app_b, 99))}")
finally:
    for p in started:
        p.terminate()
    for p in started:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
    if mounted(f"{WORK}/bind"):
        sh(f"umount -l {WORK}/bind")
