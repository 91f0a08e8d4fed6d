"""Compute benchmark, Python side: ``shmarrow.reduce`` vs NumPy on zero-copy views.

Run with the project's venv (``make bench`` does): ``.venv/bin/python bench/compute.py``.
``SHMARROW_BENCH_QUICK=1``: 128 MiB instead of 1 GiB and fewer repeats (a smoke run; the
target is not judged).

The data: ONE float64 column ``x`` (non-null) holding 1 GiB of values (128 Mi rows), built with
NumPy (``x[i] = 1 + (i mod 1_000_003) / 1000``, as in ``bench/compute.rs``) and published with
``shmarrow.create`` as a single-chunk table (one record batch). Then, in this process and
alternating (order rotated every repeat, cyclic GC off), timed with ``time.perf_counter_ns``:

- shmarrow: ``shmarrow.reduce(name, columns=["x"], ops=[count, sum, mean, std, min, max])``
  (attach + fused Rust reduce with the GIL released; default threads = one per core), and the
  same with ``threads=1`` for reference;
- NumPy: ``sum``, ``mean``, ``std``, ``min``, ``max`` over ``shmarrow.column_view(table, "x")``
  (zero-copy read-only views of the mapping, attached once and touched before timing; one call
  per statistic per chunk, chunks combined without concatenating).

Figures are printed, never asserted. The segment is named ``shmarrow-bench-py-<pid>-compute``
and removed in a ``finally`` block (also on Ctrl-C/SIGTERM/SIGHUP).
"""

from __future__ import annotations

import gc
import math
import os
import signal
import statistics
import sys
import time

import numpy as np
import pyarrow as pa

import shmarrow
from benchlib import chan_merge, human, loadavg, machine

MIB = 1 << 20
GIB = 1 << 30
MODULUS = 1_000_003
OPS = ["count", "sum", "mean", "std", "min", "max"]
TARGET_SPEEDUP = 5.0  # shmarrow.reduce at least 5x faster than NumPy (medians)
TOLERANCE = 1e-9  # relative agreement of the results


def make_column(rows: int) -> np.ndarray:
    """``x[i] = 1 + (i mod MODULUS) / 1000``, built in slices (no 1 GiB integer temporary)."""
    x = np.empty(rows, dtype=np.float64)
    step = 1 << 24
    for start in range(0, rows, step):
        i = np.arange(start, min(rows, start + step), dtype=np.int64)
        x[start : start + len(i)] = 1.0 + (i % MODULUS) * 1e-3
    return x


def numpy_stats(views: list[np.ndarray]) -> dict:
    """count, sum, mean, std (ddof 0), min, max with NumPy, chunk by chunk; chunks combined
    with Chan et al.'s update (with one chunk these are just the plain NumPy calls)."""
    total, lo, hi, parts = 0.0, math.inf, -math.inf, []
    for v in views:
        if v.size == 0:
            continue
        total += float(v.sum())
        lo = min(lo, float(v.min()))
        hi = max(hi, float(v.max()))
        parts.append((v.size, float(v.mean()), float(v.std())))
    count, _, std = chan_merge(parts)
    return {
        "count": count,
        "sum": total,
        "mean": total / count if count else math.nan,
        "std": std,
        "min": lo,
        "max": hi,
    }


def rel_diff(a: float, b: float) -> float:
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b))


def main() -> int:
    quick = os.environ.get("SHMARROW_BENCH_QUICK", "") not in ("", "0")
    seg_dir = os.environ.get("SHMARROW_DIR") or "/dev/shm"
    nbytes, warmups, repeats = (128 * MIB, 1, 3) if quick else (GIB, 1, 7)
    rows = nbytes // 8

    # SIGTERM/SIGHUP unwind like Ctrl-C, so the finally block below removes the segment.
    def _raise(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise)

    print("# shmarrow compute benchmark (Python)")
    print()
    print(
        f"machine: {machine()}; dir {seg_dir}; mode "
        f"{'QUICK (128 MiB, target not judged)' if quick else 'full'}; pid {os.getpid()}"
    )
    print(
        f"data: ONE float64 column `x` (non-null), {human(nbytes)} of values = {rows} rows, "
        f"single-chunk table (1 record batch); x[i] = 1 + (i mod {MODULUS}) / 1000"
    )
    print(
        f"medians over {repeats} repeats after {warmups} warm-up round(s), cases alternating "
        "(order rotated every repeat); GB/s = 10^9 bytes of values per second"
    )
    print(f"load average at start: {loadavg()}")
    print()

    name = f"shmarrow-bench-py-{os.getpid()}-compute"
    created = False
    try:
        x = make_column(rows)
        table = pa.table({"x": x})  # zero-copy from NumPy, one chunk
        assert table.column("x").num_chunks == 1
        t0 = time.perf_counter_ns()
        handle = shmarrow.create(name, table, dir=seg_dir, replace=False)
        created = True
        print(
            f"published {name}: {handle.nbytes} bytes in "
            f"{(time.perf_counter_ns() - t0) / 1e6:.0f} ms"
        )
        del handle, table, x

        # NumPy's input: zero-copy views of the mapping, attached once.
        attached = shmarrow.attach(name, dir=seg_dir)
        views = shmarrow.column_view(attached, "x")
        maps_path = str(shmarrow.path(name, dir=seg_dir))
        addr = views[0].__array_interface__["data"][0]
        inside = False
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(maxsplit=5)
                if len(parts) == 6 and parts[5].strip().removesuffix(" (deleted)") == maps_path:
                    lo, hi = (int(p, 16) for p in parts[0].split("-"))
                    inside |= lo <= addr and addr + views[0].nbytes <= hi
        print(
            f"NumPy input: {len(views)} view(s), {sum(v.nbytes for v in views)} bytes, "
            f"read-only {not views[0].flags.writeable}, base address {addr:#x} inside the "
            f"segment's mapping: {'yes' if inside else 'NO'}"
        )
        t0 = time.perf_counter_ns()
        for v in views:
            float(v.sum())  # touch every page of this mapping once
        touch_ms = (time.perf_counter_ns() - t0) / 1e6
        print(f"first pass over the views (touch, untimed): {touch_ms:.1f} ms")
        print()

        cases = {
            "shmarrow": lambda: shmarrow.reduce(name, columns=["x"], ops=OPS, dir=seg_dir)["x"],
            "shmarrow threads=1": lambda: shmarrow.reduce(
                name, columns=["x"], ops=OPS, threads=1, dir=seg_dir
            )["x"],
            "numpy": lambda: numpy_stats(views),
        }
        keys = list(cases)
        samples: dict[str, list[int]] = {k: [] for k in keys}
        results: dict[str, dict] = {}
        gc_was = gc.isenabled()
        gc.disable()  # no cyclic-GC pauses inside the timed loop
        try:
            for i in range(warmups + repeats):
                for k in range(len(keys)):
                    key = keys[(k + i) % len(keys)]
                    t0 = time.perf_counter_ns()
                    results[key] = cases[key]()
                    elapsed = time.perf_counter_ns() - t0
                    if i >= warmups:
                        samples[key].append(elapsed)
        finally:
            if gc_was:
                gc.enable()
        del views, attached
    finally:
        if created:
            try:
                shmarrow.remove(name, dir=seg_dir)
            except Exception as exc:
                print(f"warning: could not remove {name}: {exc}", file=sys.stderr)

    labels = {
        "shmarrow": '`shmarrow.reduce(name, columns=["x"], ops=[count, sum, mean, std, min, max])` '
        "(attach + reduce, default threads)",
        "shmarrow threads=1": "the same with `threads=1`",
        "numpy": "NumPy `sum`, `mean`, `std`, `min`, `max` on `column_view` (attached once)",
    }
    print(f"## fused reduce vs NumPy, {human(nbytes)}")
    print()
    print("| case | median ms | min ms | max ms | GB/s (median) | n |")
    print("|---|---:|---:|---:|---:|---:|")
    med = {}
    for key in keys:
        ms = [s / 1e6 for s in samples[key]]
        med[key] = statistics.median(ms)
        print(
            f"| {labels[key]} | {med[key]:.1f} | {min(ms):.1f} | {max(ms):.1f} | "
            f"{nbytes / (med[key] * 1e6):.2f} | {len(ms)} |"
        )
    print()
    ratio = med["numpy"] / med["shmarrow"]
    if quick:
        judged = "quick mode, not judged"
    else:
        judged = "PASS" if ratio >= TARGET_SPEEDUP else "MISS"
    print(
        f"- numpy / shmarrow (medians) = {ratio:.2f}× (target ≥ {TARGET_SPEEDUP:.0f}×): {judged}"
    )
    ratio1 = med["numpy"] / med["shmarrow threads=1"]
    print(f"- numpy / shmarrow threads=1 (medians) = {ratio1:.2f}× (for reference, not judged)")
    print()
    print("results (last run of each):")
    for key in keys:
        r = results[key]
        print(f"- {key}: " + ", ".join(f"{op} {r[op]!r}" for op in OPS))
    worst = max(
        rel_diff(float(results["numpy"][op]), float(results[key][op]))
        for key in ("shmarrow", "shmarrow threads=1")
        for op in OPS
    )
    print(
        f"- agreement: largest relative difference shmarrow vs NumPy {worst:.1e} "
        f"(tolerance {TOLERANCE:.0e}): {'ok' if worst <= TOLERANCE else 'DISAGREE'}"
    )
    print()
    print(f"load average at end: {loadavg()}")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
