"""The lecture's Example 28.2 with shmarrow: 2,000,000 float64 values published once; Pool
workers attach them by name and send back only the statistics of their chunk.

    .venv/bin/python examples/pool.py [ELEMENTS] [WORKERS] [fork|spawn|forkserver]

Next to shared_memory + np.frombuffer: no size, dtype or name to pass by hand (the handle
pickles as its name, directory and file identity, about 120 bytes), no close()/unlink() to
forget (the owner handle removes the segment when the `with` block ends; `shmarrow gc` does
it if this process is killed), and workers cannot unlink it by accident.
"""

import multiprocessing as mp
import pickle
import sys
from typing import Dict, List, Tuple

import numpy as np

import shmarrow

Task = Tuple[shmarrow.Shared, int, int]


def chunk_stats(task: Task) -> Dict[str, float]:
    """In a worker: attach (zero-copy), reduce one chunk, return a few bytes."""
    handle, start, stop = task
    chunk = handle.numpy()[start:stop]  # a read-only view of the shared pages
    return {"mean": float(chunk.mean()), "std": float(chunk.std()), "max": float(chunk.max())}


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    method = sys.argv[3] if len(sys.argv) > 3 else "spawn"
    data = np.random.default_rng(28).standard_normal(n)

    with shmarrow.share(data) as handle:  # published once; removed when the block ends
        edges = np.linspace(0, n, workers + 1).astype(np.int64)
        tasks: List[Task] = [(handle, int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]
        with mp.get_context(method).Pool(workers) as pool:
            stats = pool.map(chunk_stats, tasks)
        sent = sum(len(pickle.dumps(task)) for task in tasks)
        returned = sum(len(pickle.dumps(s)) for s in stats)
        print(f"segment {handle.name}: {data.nbytes} bytes, shared once")

    ok = True
    for (_, start, stop), s in zip(tasks, stats):
        chunk = data[start:stop]
        ok &= s == {"mean": float(chunk.mean()), "std": float(chunk.std()), "max": float(chunk.max())}
        print(f"rows {start:>9} .. {stop:<9} mean {s['mean']:+.5f}  std {s['std']:.5f}  max {s['max']:.3f}")
    print(f"IPC: {sent} bytes of tasks to {workers} workers, {returned} bytes of results back "
          f"(the data is {data.nbytes} bytes)")
    print("statistics match NumPy in the parent" if ok else "MISMATCH with NumPy in the parent")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
