"""shmarrow inside Dask distributed, against Dask's own path, in one run.

Run with the project's venv: ``.venv/bin/python bench/dask.py``. ``SHMARROW_BENCH_QUICK=1``:
fewer repeats, 10 MB hand-offs and a 64 MiB reduction (a smoke run).

One cluster of nanny-managed worker processes, one thread each: workers a1 and a2 on
127.0.0.1 with segment directory A, worker b1 on 127.0.0.2 with directory B (a simulated
second host). ``shmarrow.dask.install`` is active throughout; "Dask's default" is the same
cluster with the segment threshold set above the data size on every worker, so Dask's own
serializers run; shmarrow's path links from 1 MiB (the default) and writes heap data from
1 MiB (``write_threshold``, off by default: this benchmark is what decides that default).

1. Hand-off + sum: a 100 MB float64 object already on a1, then a task on a2 that sums it;
   the time is the client's wall time of that task (submit to result), so both paths carry
   the same scheduling overhead (printed as the "floor": the same with an 8-byte array).
   "sum on a1" is the same task run where the object is (no hand-off; for segment-backed
   objects it includes the first touch of the freshly mapped pages, as the receiver's does).
   Objects: a pyarrow.Table and a NumPy array, each heap-backed (made by a task) and
   segment-backed (attached from a segment by a task). Every repeat uses a fresh object so
   a2 never holds a replica. Target: segment-backed at least 5x faster than Dask's default;
   heap-backed never slower (else writing stays off by default, as it is: the "path" column
   says which path ran).
   Where the time goes, for the segment-backed objects: Dask's ``serialize`` and
   ``deserialize`` of the object, the first sum of what came out (first touch of its pages
   + sum) and a second, warm sum, measured in a task on a2; "rest" is the hand-off minus the
   floor and those (messages, TCP, for Dask the receiver filling fresh buffers). "ceiling"
   is Dask's time / (floor + warm sum): no same-host path can do better than that ratio.
2. Reduction: 1 GiB of float64 (a column ``x`` over one segment per host, 512 MiB each),
   ``shmarrow.dask.reduce`` (mean and std, computed on each host, partials merged on the
   client) against ``dask.dataframe``: ``read_parquet`` of the same data (one Parquet file per
   host, uncompressed, in a temp directory) then ``x.mean()`` and ``x.std(ddof=0)``.

Medians are printed with the machine header and load average (bench/benchlib.py); figures
are printed, never asserted. Every segment and file made here is removed at the end.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time

# This file is named dask.py: the installed package must win over it, and benchlib still be found.
sys.path.append(sys.path.pop(0))

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import shmarrow
import shmarrow.dask as sd
from benchlib import loadavg, machine  # noqa: E402

QUICK = bool(os.environ.get("SHMARROW_BENCH_QUICK"))
HANDOFF_BYTES = 10_000_000 if QUICK else 100_000_000
REDUCE_BYTES = (64 << 20) if QUICK else (1 << 30)
REPEATS = 3 if QUICK else 7
REDUCE_REPEATS = 2 if QUICK else 3
TARGET_LINKED = 5.0
NEVER = 1 << 62


def make_table(nbytes: int) -> pa.Table:
    return pa.table({"x": np.arange(nbytes // 8, dtype="f8")})


def make_array(nbytes: int) -> np.ndarray:
    return np.arange(nbytes // 8, dtype="f8")


def attach_table(name: str) -> pa.Table:
    return shmarrow.attach(name)


def attach_array(name: str) -> np.ndarray:
    return shmarrow.Shared(name).numpy()


def total(obj: object) -> float:
    if isinstance(obj, np.ndarray):
        return float(obj.sum())
    return float(pc.sum(obj["x"]).as_py())  # type: ignore[index]


def steps(make: object, arg: object, ours: bool) -> list:
    """Run in a task on the receiving worker: one hand-off's own steps, in this process (ms).

    The sender's serializer (Dask's ``serialize``, with a recipient of this host for
    shmarrow's path), the receiver's ``deserialize`` of those frames, the first sum of what
    it returned, and a second (warm) sum: first - warm is the first touch of the pages.
    In-process, Dask's frames are views of the original (no TCP, no fresh buffer to fill).
    """
    from distributed.protocol.serialize import deserialize, serialize

    obj = make(arg)  # type: ignore[operator]
    context = {"recipient": {sd.HANDSHAKE_KEY: [sd.host_token(), sd._me()]}} if ours else None
    t0 = time.perf_counter()
    header, frames = serialize(obj, serializers=("dask", "pickle"), on_error="raise", context=context)
    t1 = time.perf_counter()
    back = deserialize(header, frames)
    t2 = time.perf_counter()
    total(back)
    t3 = time.perf_counter()
    total(back)
    t4 = time.perf_counter()
    return [(b - a) * 1e3 for a, b in ((t0, t1), (t1, t2), (t2, t3), (t3, t4))]


def main() -> None:
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # here and in the workers
    from distributed import Client, Nanny, Scheduler, SpecCluster, wait

    print(f"# shmarrow.dask benchmark: {machine()}")
    print(f"# load average at start: {loadavg()}" + ("  (QUICK)" if QUICK else ""))
    dirs = {h: tempfile.mkdtemp(prefix=f"bench-dask-{h}-", dir="/dev/shm") for h in "AB"}
    parquet = tempfile.mkdtemp(prefix="bench-dask-parquet-")
    os.environ["SHMARROW_DIR"] = dirs["A"]

    def worker(ip: str, d: str) -> dict:
        return {"cls": Nanny, "options": {"host": ip, "nthreads": 1, "dashboard_address": ":0",
                                          "env": {"SHMARROW_DIR": d}, "memory_limit": 0}}

    try:
        with SpecCluster(
            scheduler={"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard_address": ":0"}},
            workers={"a1": worker("127.0.0.1", dirs["A"]), "a2": worker("127.0.0.1", dirs["A"]),
                     "b1": worker("127.0.0.2", dirs["B"])},
        ) as cluster, Client(cluster) as client:
            client.wait_for_workers(3)
            names = {i["name"]: a for a, i in client.scheduler_info()["workers"].items()}
            a1, a2, b1 = names["a1"], names["a2"], names["b1"]
            print(f"# dask {__import__('dask').__version__}, distributed "
                  f"{__import__('distributed').__version__}; workers a1, a2 (dir A), b1 (127.0.0.2, dir B)")

            shmarrow.create("bench-table", make_table(HANDOFF_BYTES))
            shmarrow.create("bench-array", make_array(HANDOFF_BYTES))
            cases = [
                ("Table, segment-backed", attach_table, "bench-table"),
                ("Table, heap-backed", make_table, HANDOFF_BYTES),
                ("ndarray, segment-backed", attach_array, "bench-array"),
                ("ndarray, heap-backed", make_array, HANDOFF_BYTES),
            ]

            def handoff(make: object, arg: object) -> float:
                data = client.submit(make, arg, workers=[a1], pure=False)
                wait(data)
                t0 = time.perf_counter()
                client.submit(total, data, workers=[a2], pure=False).result()
                elapsed = time.perf_counter() - t0
                del data
                return elapsed

            # Dask's own task round trip, before shmarrow is installed and after.
            plain_floor = statistics.median(handoff(np.zeros, 1) for _ in range(3 * REPEATS))
            sd.install(client)

            def local(make: object, arg: object) -> float:
                data = client.submit(make, arg, workers=[a1], pure=False)
                wait(data)
                t0 = time.perf_counter()
                client.submit(total, data, workers=[a1], pure=False).result()
                return time.perf_counter() - t0

            print(f"\n## Hand-off of {HANDOFF_BYTES / 1e6:.0f} MB from a task on a1 to a task on a2 + sum "
                  f"(median of {REPEATS}, ms)")
            floor = statistics.median(handoff(np.zeros, 1) for _ in range(3 * REPEATS))
            print(f"(floor: the same two tasks with an 8-byte array, no segment: {floor * 1e3:.1f} ms; "
                  f"{plain_floor * 1e3:.1f} ms before shmarrow.dask.install)")
            print(f"{'object':26} {'sum on a1':>10} {'Dask':>8} {'shmarrow':>9} {'ratio':>7}  path   target")
            times = {}
            for label, make, arg in cases:
                sum_only = statistics.median(local(make, arg) for _ in range(REPEATS))
                dask_times, ours = [], []
                before = client.run(sd.transfer_counts, workers=[a1])[a1]
                for _ in range(REPEATS):  # alternate, so drifting load hits both alike
                    client.run(sd._enable, NEVER, NEVER)
                    dask_times.append(handoff(make, arg))
                    client.run(sd._enable, sd.DEFAULT_THRESHOLD, sd.DEFAULT_THRESHOLD)
                    ours.append(handoff(make, arg))
                after = client.run(sd.transfer_counts, workers=[a1])[a1]
                path = next((k for k in ("linked", "written") if after[k] > before[k]), "dask")
                d, s = statistics.median(dask_times), statistics.median(ours)
                goal = TARGET_LINKED if "segment" in label else 1.0
                verdict = "PASS" if d / s >= goal else "MISS"
                print(f"{label:26} {sum_only * 1e3:10.1f} {d * 1e3:8.1f} {s * 1e3:9.1f} {d / s:6.1f}x  "
                      f"{path:6} >= {goal:.0f}x {verdict}")
                times[label] = (d, s)
            print("\nWhere the time goes (ms, medians; serialize, deserialize and the sums measured in a "
                  "task on a2, in-process;\n'rest' = hand-off - floor - those: messages, TCP and, for "
                  "Dask, the receiver filling fresh buffers)")
            print(f"{'object':26} {'path':8} {'hand-off':>8} {'floor':>6} {'serialize':>9} "
                  f"{'deserial.':>9} {'1st touch':>9} {'sum':>6} {'rest':>6}  ceiling")
            for label, make, arg in cases:
                if "segment" not in label:
                    continue
                for path, ours in (("Dask", False), ("shmarrow", True)):
                    client.run(sd._enable, *((sd.DEFAULT_THRESHOLD,) * 2 if ours else (NEVER, NEVER)))
                    runs = [client.submit(steps, make, arg, ours, workers=[a2], pure=False).result()
                            for _ in range(REPEATS)]
                    ser, de, first, warm = (statistics.median(c) for c in zip(*runs))
                    whole = times[label][ours] * 1e3
                    rest = whole - floor * 1e3 - ser - de - first
                    # No same-host path can beat Dask's time / (floor + the sum itself).
                    ceiling = f"{times[label][0] * 1e3 / (floor * 1e3 + warm):6.1f}x" if ours else ""
                    print(f"{label:26} {path:8} {whole:8.1f} {floor * 1e3:6.1f} {ser:9.2f} {de:9.2f} "
                          f"{first - warm:9.1f} {warm:6.1f} {rest:6.1f}  {ceiling}")
            client.run(sd._enable, sd.DEFAULT_THRESHOLD, sd.DEFAULT_THRESHOLD)
            shmarrow.remove("bench-table")
            shmarrow.remove("bench-array")

            rows = REDUCE_BYTES // 2 // 8
            print(f"\n## Reduction of {REDUCE_BYTES / (1 << 30):.3g} GiB float64 over two hosts "
                  f"(mean, std; median of {REDUCE_REPEATS}, s)")
            for k, host in enumerate("AB"):
                x = np.random.default_rng(k).standard_normal(rows)
                shmarrow.create(f"bench-reduce-{host}", pa.table({"x": x}), dir=dirs[host])
                pq.write_table(pa.table({"x": x}), os.path.join(parquet, f"part-{host}.parquet"),
                               compression="none")
                del x
            import dask
            import dask.dataframe as dd

            def ours_reduce() -> float:
                t0 = time.perf_counter()
                sd.reduce(client, ["bench-reduce-A", "bench-reduce-B"], columns=["x"], ops=["mean", "std"])
                return time.perf_counter() - t0

            def dask_reduce() -> float:
                t0 = time.perf_counter()
                ddf = dd.read_parquet(parquet)
                dask.compute(ddf.x.mean(), ddf.x.std(ddof=0))
                return time.perf_counter() - t0

            ours_t, dask_t = [], []
            for _ in range(REDUCE_REPEATS):
                ours_t.append(ours_reduce())
                dask_t.append(dask_reduce())
            o, d = statistics.median(ours_t), statistics.median(dask_t)
            print(f"shmarrow.dask.reduce {o:8.3f} s")
            print(f"dask.dataframe       {d:8.3f} s   ({d / o:.1f}x shmarrow's time)")
            for host in "AB":
                shmarrow.remove(f"bench-reduce-{host}", dir=dirs[host])
        print(f"\n# load average at end: {loadavg()}")
        left = [n for d in dirs.values() for n in os.listdir(d)]
        print(f"# left in the segment directories after client.close(): {left or 'nothing'}")
    finally:
        for d in [*dirs.values(), parquet]:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
