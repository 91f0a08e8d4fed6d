"""Publish of a table filled in place, Python side (issue 17, item 2): ``Allocation.publish()``
with the writable NumPy view still held (so the writer's mapping is made private first), for
one float64 column of 1 MiB, 100 MiB and 1 GiB, beside ``os.rename`` of a file of the same size
(the commit alone), alternating; medians, with the load average. The Rust side is
``cargo bench --bench core -- alloc-publish``.

Run with the project's venv: ``.venv/bin/python bench/publish.py``; ``SHMARROW_BENCH_QUICK=1``:
fewer repeats, no 1 GiB. Figures are printed, never asserted; every file made here is named
``shmarrow-bench-py-<pid>-...`` and removed in a ``finally`` block.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import shmarrow
from benchlib import GIB, MIB, human, loadavg, machine

TARGET_US = 200.0


def publish_once(name: str, seg_dir: str, nbytes: int) -> int:
    alloc = shmarrow.allocate(name, {"x": "f8"}, nbytes // 8, dir=seg_dir)
    view = alloc["x"]
    view[:] = 1.0  # every page resident
    t0 = time.perf_counter_ns()
    alloc.publish()
    elapsed = time.perf_counter_ns() - t0
    del view
    shmarrow.remove(name, dir=seg_dir)
    return elapsed


def rename_once(src: str, dst: str, nbytes: int) -> int:
    with open(src, "wb") as f:
        f.truncate(nbytes)
    t0 = time.perf_counter_ns()
    os.rename(src, dst)
    elapsed = time.perf_counter_ns() - t0
    os.unlink(dst)
    return elapsed


def main() -> int:
    quick = os.environ.get("SHMARROW_BENCH_QUICK", "") not in ("", "0")
    seg_dir = os.environ.get("SHMARROW_DIR") or "/dev/shm"
    warmups, repeats = (1, 5) if quick else (2, 15)
    sizes = [MIB, 100 * MIB] if quick else [MIB, 100 * MIB, GIB]
    name = f"shmarrow-bench-py-{os.getpid()}-publish"
    other = os.path.join(seg_dir, f"shmarrow-bench-py-{os.getpid()}-rename")
    print(f"# Python publish of a filled allocation\n\nmachine: {machine()}\n")
    print(f"load average before: {loadavg()}; {warmups} warmups, {repeats} repeats, alternating\n")
    print("| data | `publish()`, view held, median µs | baseline `os.rename` median µs | ratio |")
    print("|---|---:|---:|---:|")
    worst = 0.0
    try:
        for nbytes in sizes:
            ours, base = [], []
            for i in range(warmups + repeats):
                a = publish_once(name, seg_dir, nbytes)
                b = rename_once(other, os.path.join(seg_dir, name), nbytes)
                if i >= warmups:
                    ours.append(a / 1e3)
                    base.append(b / 1e3)
            m, r = statistics.median(ours), statistics.median(base)
            worst = max(worst, m)
            print(f"| {human(nbytes)} | {m:.1f} | {r:.1f} | {m / r:.1f}× |", flush=True)
    finally:
        for path in (other, os.path.join(seg_dir, name)):
            if os.path.exists(path):
                os.unlink(path)
    verdict = "PASS" if worst <= TARGET_US else "MISS"
    print(f"\n- slowest publish median: {worst:.1f} µs (target ≤ {TARGET_US:.0f} µs): {verdict}")
    print(f"load average after: {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
