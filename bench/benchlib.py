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
