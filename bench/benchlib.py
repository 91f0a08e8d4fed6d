"""Helpers the Python benchmarks share: the machine header, load average, byte sizes.

The benchmarks run as `python bench/NAME.py`, so this directory is on `sys.path`.
"""

import os
import platform

import numpy as np
import pyarrow as pa

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
    return f"{nbytes} B"
