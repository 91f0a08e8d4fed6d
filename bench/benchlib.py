"""Helpers the Python benchmarks share: the machine header, load average, byte sizes.

The benchmarks run as `python bench/NAME.py` (and `bench/compare` runs the `comparison` package
with this directory on `PYTHONPATH`), so this directory is on `sys.path`.
"""

import math
import os
import platform

import numpy as np
import pyarrow as pa

MB = 10**6
MIB = 1 << 20
GIB = 1 << 30


def machine() -> str:
    mem = cpu = "?"
    try:
        with open("/proc/meminfo") as f:
            mem = next((l.split(":", 1)[1].strip() for l in f if l.startswith("MemTotal:")), "?")
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
        with open("/proc/sys/kernel/osrelease") as f:
            kernel = f.read().strip()
    except OSError:
        kernel = "?"
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{cpu}, nproc {nproc}, MemTotal {mem}, kernel {kernel}; Python "
        f"{platform.python_version()}, pyarrow {pa.__version__}, numpy {np.__version__}"
    )


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def human(nbytes: int) -> str:
    if nbytes >= GIB and nbytes % GIB == 0:
        return f"{nbytes // GIB} GiB"
    if nbytes >= MIB and nbytes % MIB == 0:
        return f"{nbytes // MIB} MiB"
    if nbytes >= MB and nbytes % MB == 0:
        return f"{nbytes // MB} MB"
    return f"{nbytes} B"


def chan_merge(parts) -> tuple[int, float, float]:
    """(count, mean, std with ddof 0) of parts -> (count, mean, std) of them all, by Chan et
    al.'s update (empty parts are skipped; no values: NaN)."""
    count, mean, m2 = 0, 0.0, 0.0
    for n, m, sd in parts:
        if n == 0:
            continue
        if count == 0:
            mean, m2 = m, sd * sd * n
        else:
            delta = m - mean
            mean += delta * n / (count + n)
            m2 += sd * sd * n + delta * delta * count * n / (count + n)
        count += n
    return count, (mean if count else math.nan), (math.sqrt(m2 / count) if count else math.nan)
