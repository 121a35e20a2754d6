"""Helpers shared by the benchmark drivers in bench/."""
import os, subprocess


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, **kw)


def make(path, size):
    """A deterministic incompressible file of `size` bytes (AES-CTR keystream), made once."""
    if not os.path.exists(path) or os.path.getsize(path) != size:
        sh(f"openssl enc -aes-128-ctr -nosalt -pass pass:p2pfs -pbkdf2 -in /dev/zero 2>/dev/null"
           f" | head -c {size} > {path} || true")
        assert os.path.getsize(path) == size, path


def p2pfs_in(bin, work):
    """A runner of `BIN --data-dir WORK/NODE ARGS...` returning its stdout (failing loudly)."""
    def run(node, *args):
        return subprocess.run([bin, "--data-dir", f"{work}/{node}", *args], check=True,
                              capture_output=True, text=True).stdout
    return run


def timed(cmd, prepare=None):
    """Runs `prepare` (untimed), then `cmd`; returns how long `cmd` took, in seconds."""
    import time
    if prepare:
        sh(prepare)
    t = time.perf_counter()
    sh(cmd)
    return time.perf_counter() - t


def wait(what, f, timeout=300, every=0.05):
    """Polls `f` until it returns something true (returned), or exits after `timeout` s."""
    import time
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = f()
        if v:
            return v
        time.sleep(every)
    raise SystemExit(f"timed out waiting for {what}")


def control_up(data_dir):
    """Whether the daemon of `data_dir` answers on its control socket. (Asking `p2pfs status`
    before that would open the store itself and race the daemon starting for it.)"""
    import socket
    sock = os.path.join(data_dir, "control.sock")
    if not os.path.exists(sock):
        return False
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(sock)
        return True
    except OSError:
        return False
    finally:
        s.close()
