"""Two identical files, two in-place times: why case 281 of bench/compare squares one file.

Creates two /dev/shm files of the same size the same way (ftruncate, then 1.0 written
through a mapping), then times the lecture's 28.1 round on each, alternating: 4 forked
workers, each maps the file, squares its quarter in place with NumPy and unmaps. Repeats
with the creation order swapped. On a VM whose guest-physical memory is not uniformly
backed, the two files' medians differ although the code, the size and the file state are
the same: a comparison of two contenders on two different files measures their pages too.

    .venv/bin/python bench/file_pages.py [--elements N] [--rounds R]
"""
from __future__ import annotations

import argparse
import mmap
import os
import statistics
import time

import numpy as np

from benchlib import loadavg


def make(path: str, n: int) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, n * 8)
        with mmap.mmap(fd, n * 8) as m:
            np.ndarray((n,), np.float64, buffer=m)[:] = 1.0
    finally:
        os.close(fd)


def square_round(path: str, n: int, workers: int = 4) -> float:
    t0 = time.perf_counter()
    pids = []
    for i in range(workers):
        pid = os.fork()
        if pid == 0:  # the lecture's worker: attach by name, square its part, close
            code = 1
            try:
                fd = os.open(path, os.O_RDWR)
                with mmap.mmap(fd, n * 8) as m:
                    os.close(fd)
                    a = np.ndarray((n,), np.float64, buffer=m)
                    s, e = n * i // workers, n * (i + 1) // workers
                    np.square(a[s:e], out=a[s:e])
                    del a
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        if status != 0:
            raise SystemExit(f"worker {pid} failed ({status})")
    return (time.perf_counter() - t0) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--elements", type=int, default=128 << 20)
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    n = args.elements
    print(f"# in-place square of {n:,} float64 by 4 forked workers on two identical files")
    print(f"load average at start: {loadavg()}")
    base = f"/dev/shm/shmarrow-bench-pages-{os.getpid()}"
    for order in ("first", "second"):
        paths = [f"{base}-a", f"{base}-b"]
        try:
            for p in paths if order == "first" else reversed(paths):
                make(p, n)
            times: dict[str, list[float]] = {p: [] for p in paths}
            for _ in range(args.rounds):
                for p in paths:
                    times[p].append(square_round(p, n))
            med = [statistics.median(times[p]) for p in paths]
            print(f"file a created {order}: a {med[0]:.1f} ms, b {med[1]:.1f} ms "
                  f"(medians of {args.rounds}; b/a {med[1] / med[0]:.2f})")
        finally:
            for p in paths:
                if os.path.exists(p):
                    os.unlink(p)
    print(f"load average at end: {loadavg()}")


if __name__ == "__main__":
    main()
