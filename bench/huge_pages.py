"""Huge pages benchmark: the same shmarrow operations in /dev/shm and in a tmpfs mounted with
``-o huge=within_size``, side by side in one run.

Run as root with the project's venv: ``.venv/bin/python bench/huge_pages.py`` (it mounts the
huge-page tmpfs under a temporary directory and unmounts it at the end; without root it says
so and exits). ``--dir DIR`` uses an existing huge-page directory instead of mounting one.
``SHMARROW_BENCH_QUICK=1``: 256 MiB instead of 1 GiB.

One float64 column of SIZE bytes; per round, in each directory (directories alternate, order
rotated every round), timed with ``time.perf_counter_ns``:

- publish: ``shmarrow.create(name, table)`` of a resident table (reserve + one write pass);
- allocate + fill + publish: ``shmarrow.allocate``, ``w["x"][:] = 1.0`` through the writable
  view (first touch of every page through a mapping), ``publish()``;
- reduce: ``shmarrow.reduce(name, ["x"], ops=["sum"])``: attach (a fresh mapping) + sum;
- map: ``shmarrow.map_inplace(name, "x", "square", threads=4)``: a fresh writable mapping.

Memory: round 1 takes pages the machine has not handed to tmpfs since the benchmark started
("fresh": on a VM that returns freed memory to its host, possibly slow); later rounds reuse the
pages the previous round's segments freed just before ("recycled": each round removes its
segments). Both are printed: round 1 alone, and the median of the later rounds. The share of
each directory's segment mapped by huge pages is read from ``/proc/self/smaps``.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa

import shmarrow
from benchlib import GIB, MIB, human, loadavg, machine


def huge_mapped(path: str) -> int:
    """Bytes of ``path`` mapped by 2 MiB page-table entries in this process."""
    total, ours = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split(" ", 1)[0]
            if "-" in head and not head.endswith(":"):
                ours = line.rstrip("\n").endswith(path)
            elif ours and line.startswith(("ShmemPmdMapped:", "FilePmdMapped:")):
                total += int(line.split()[1]) * 1024
    return total


def timed(fn) -> float:
    t0 = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - t0) / 1e6


def one_round(d: str, table: pa.Table, rows: int, tag: str) -> dict[str, float]:
    out = {}
    name, alloc = f"hp-{tag}-t", f"hp-{tag}-a"
    out["publish"] = timed(lambda: shmarrow.create(name, table, dir=d))

    def allocate():
        w = shmarrow.allocate(alloc, {"x": "f8"}, rows, dir=d)
        w["x"][:] = 1.0
        w.publish()

    out["allocate + fill + publish"] = timed(allocate)
    out["reduce (attach + sum)"] = timed(
        lambda: shmarrow.reduce(name, columns=["x"], ops=["sum"], dir=d))
    out["map square (fresh mapping, 4 threads)"] = timed(
        lambda: shmarrow.map_inplace(alloc, "x", "square", threads=4, dir=d))
    seg = shmarrow.attach(name, dir=d)
    (view,) = shmarrow.column_view(seg, "x")
    float(view[:: 512].sum())  # touch every page
    out["huge"] = huge_mapped(os.path.join(d, name)) / max(1, view.nbytes)
    del view, seg
    shmarrow.remove(name, dir=d)
    shmarrow.remove(alloc, dir=d)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", help="an existing huge-page directory (default: mount one)")
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    quick = os.environ.get("SHMARROW_BENCH_QUICK", "") not in ("", "0")
    size = 256 * MIB if quick else GIB
    rows = size // 8
    mounted = None
    if args.dir:
        huge = args.dir
    else:
        if os.geteuid() != 0:
            print("skipped: mounting a huge-page tmpfs needs root (or pass --dir DIR)")
            return 0
        mounted = tempfile.mkdtemp(prefix="shmarrow-huge-")
        subprocess.run(["mount", "-t", "tmpfs", "-o",
                        f"huge=within_size,size={3 * size // MIB + 64}m", "shmarrow-bench",
                        mounted], check=True)
        huge = mounted
    base = tempfile.mkdtemp(prefix="shmarrow-bench-hp-", dir="/dev/shm")
    dirs = {"/dev/shm": base, "huge=within_size": huge}
    try:
        print(f"# bench/huge_pages.py: {human(size)} float64, {args.rounds} rounds")
        print(f"# {machine()}")
        print(f"# loadavg at start: {loadavg()}")
        for label, d in dirs.items():
            print(f"# {label}: {d}; `shmarrow df` says huge pages: {policy(d)}")
        table = pa.table({"x": np.ones(rows)})
        results = {label: [] for label in dirs}
        order = list(dirs)
        for r in range(args.rounds):
            for label in order:
                results[label].append(one_round(dirs[label], table, rows, f"{os.getpid()}-{r}"))
            order = order[1:] + order[:1]
        ops = [k for k in results[order[0]][0] if k != "huge"]
        print()
        print(f"| operation ({human(size)}) | " + " | ".join(
            f"{label} round 1 ms | {label} later rounds median ms" for label in dirs)
            + " | /dev/shm ÷ huge (later rounds) |")
        print("|---|" + "---:|" * (2 * len(dirs) + 1))
        for op in ops:
            cells, med = [], {}
            for label in dirs:
                xs = [x[op] for x in results[label]]
                med[label] = statistics.median(xs[1:]) if len(xs) > 1 else xs[0]
                cells += [f"{xs[0]:.1f}", f"{med[label]:.1f}"]
            ratio = med["/dev/shm"] / med["huge=within_size"]
            print(f"| {op} | " + " | ".join(cells) + f" | {ratio:.2f}× |")
        for label in dirs:
            share = statistics.median(x["huge"] for x in results[label])
            print(f"# {label}: share of the published segment mapped by 2 MiB pages "
                  f"(median of rounds): {100 * share:.0f}%")
        print(f"# loadavg at end: {loadavg()}")
    finally:
        for d in dirs.values():
            for f in os.listdir(d):
                if f.startswith("hp-") or f.startswith(".hp-"):
                    os.unlink(os.path.join(d, f))
        os.rmdir(base)
        if mounted:
            subprocess.run(["umount", mounted], check=False)
            os.rmdir(mounted)
    return 0


def policy(d: str) -> str:
    import json

    exe = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "release",
                       "shmarrow")
    if not os.access(exe, os.X_OK):
        return "? (build the release CLI to see it)"
    out = subprocess.run([exe, "--dir", d, "--json", "df"], capture_output=True, text=True)
    return json.loads(out.stdout)["huge_pages"] if out.returncode == 0 else "?"


if __name__ == "__main__":
    sys.exit(main())
