"""Example 28.1 both ways, by the same 4 persistent worker processes, and what the coordinator's
own mapping of the array changes.

    .venv/bin/python bench/square_workers.py [--elements N] [--rounds R]

Each round: every worker squares its quarter of N float64 in place, attaching by name, and
closes; timed from sending the tasks to all 4 done (median of R rounds, first round dropped).
"lecture": `SharedMemory(name)` + `np.square(part, out=part)` + close. "shmarrow":
`shmarrow.map_inplace(name, "x", "square", rows=(start, stop), threads=1)`.
"numpy-on-segment": the lecture's worker on shmarrow's segment file (`shmarrow.lock(name,
rows=...)`, then `SharedMemory(name)` of the segment and `np.square` of its rows' values):
the same file as "shmarrow", the same kernel and mapping as "lecture". Each is run with
the coordinator holding a mapping of every page of the array ("held": it maps the array and
reads every value, as attach + `column_view` or `SharedMemory(name)` + NumPy) and without
("alone"); both creators unmapped the array after filling it. Rounds of the
four variants alternate (which kind goes first rotates); the load average is printed before and after.
"""
from __future__ import annotations

import argparse
import mmap
import multiprocessing as mp
import os
import statistics
import time
from multiprocessing import shared_memory

import numpy as np
import pyarrow as pa

import shmarrow
from benchlib import loadavg, machine


def values_offset(name: str) -> int:
    """Byte offset of column x's values in segment ``name``'s file."""
    mm = pa.memory_map(shmarrow.path(name))
    base = mm.read_buffer(1).address
    batch = pa.ipc.open_file(mm).get_batch(0)
    return batch.column(0).buffers()[1].address - base


def worker(conn, kind, name, n):
    offset = values_offset(name) if kind == "numpy-on-segment" else 0
    while (task := conn.recv()) is not None:
        s, e = task
        if kind in ("lecture", "numpy-on-segment"):
            lock = shmarrow.lock(name, rows=(s, e)) if offset else None
            if offset:  # what SharedMemory(name) does, without its resource tracker
                fd = os.open(shmarrow.path(name), os.O_RDWR)
                b = mmap.mmap(fd, 0)
                os.close(fd)
                buf = memoryview(b)
            else:
                b = shared_memory.SharedMemory(name=name)
                buf = b.buf
            a = np.ndarray((n,), np.float64, buffer=buf, offset=offset)
            np.square(a[s:e], out=a[s:e])
            del a, buf
            b.close()
            if lock:
                lock.release()
        else:
            shmarrow.map_inplace(name, "x", "square", rows=(s, e), threads=1)
        conn.send(None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--elements", type=int, default=128 << 20)
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    n = args.elements
    print(machine())
    print(f"load average at start: {loadavg()}")
    ctx = mp.get_context("fork")
    seg = f"bench-sqw-{os.getpid()}"
    alloc = shmarrow.allocate(seg, {"x": "f8"}, n)
    alloc["x"][:] = 1.0  # squaring keeps 1.0: the same work every round
    alloc.publish()
    del alloc
    shm = shared_memory.SharedMemory(create=True, size=n * 8)
    np.ndarray((n,), np.float64, buffer=shm.buf)[:] = 1.0
    shm.close()  # the creator's mapping goes, as shmarrow's allocation's does at publish
    ranges = [(n * i // 4, n * (i + 1) // 4) for i in range(4)]
    pools = {}
    try:
        for kind, name in (("lecture", shm.name), ("shmarrow", seg), ("numpy-on-segment", seg)):
            pipes = [ctx.Pipe() for _ in range(4)]
            procs = [ctx.Process(target=worker, args=(c, kind, name, n)) for _, c in pipes]
            for p in procs:
                p.start()
            pools[kind] = (pipes, procs)
        times: dict[str, list[int]] = {}
        for r in range(args.rounds + 1):
            for held in (True, False):
                # The coordinator's mapping of every page, or none.
                table = shmarrow.attach(seg) if held else None
                block = shared_memory.SharedMemory(name=shm.name) if held else None
                view = np.ndarray((n,), np.float64, buffer=block.buf) if block else None
                if held:
                    (seg_view,) = shmarrow.column_view(table, "x")
                    assert seg_view.sum() == n and view.sum() == n  # read every page
                    del seg_view
                order = list(pools.items())
                for kind, (pipes, _) in order[r % 3:] + order[:r % 3]:  # rotated every round
                    t0 = time.monotonic_ns()
                    for (c, _), task in zip(pipes, ranges):
                        c.send(task)
                    for c, _ in pipes:
                        c.recv()
                    if r:
                        times.setdefault(f"{kind} {'held' if held else 'alone'}", []).append(
                            time.monotonic_ns() - t0)
                del table, view
                if block:
                    block.close()
        for key, ts in times.items():
            print(f"{key:24s} median {statistics.median(ts) / 1e6:7.1f} ms  "
                  f"(min {min(ts) / 1e6:.1f}, max {max(ts) / 1e6:.1f}, n {len(ts)})")
    finally:
        for pipes, procs in pools.values():
            for c, _ in pipes:
                c.send(None)
            for p in procs:
                p.join()
        shm.unlink()
        shmarrow.remove(seg)
        print(f"load average at end: {loadavg()}")


if __name__ == "__main__":
    main()
