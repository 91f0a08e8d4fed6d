"""Channel benchmark, Python side: shmarrow's channel against multiprocessing.Queue.

Run with the project's venv (``make bench`` does): ``.venv/bin/python bench/channel.py``.
``SHMARROW_BENCH_QUICK=1``: fewer batches and rounds (a smoke run).

The same pyarrow RecordBatches go from this process (the producer) to a consumer process,
two ways, alternating in the same run (order swapped every round, a fresh consumer process and
a fresh queue or channel for every run):

- ``multiprocessing.Queue``: ``q.put(batch)`` (the Queue pickles the RecordBatch in its feeder
  thread and writes it to a pipe; the consumer's ``q.get()`` reads and unpickles it);
- the same Queue carrying each batch as a dict of NumPy arrays (its columns, zero-copy views
  made before timing), the usual cheaper way to pickle columns;
- shmarrow: ``shmarrow.producer(name, schema, slots=..., slot_size=...).send(batch)`` (the Rust
  producer encodes it straight into a slot), the consumer iterating ``shmarrow.subscribe(name)``
  (zero-copy RecordBatches whose buffers lie in the slot).

Cases: small batches (8 rows, 4 columns: seq int64, sent_ns int64, x and y float64; the
consumer checks the ``seq`` value) in batches/s, and 16 MiB batches (2 float64 columns of 1 Mi
rows; the consumer sums column ``a`` with NumPy and checks the sum, so both contenders really
read the data) in GB/s. Timing: ``time.monotonic_ns`` (CLOCK_MONOTONIC, one clock for every
process) from the producer's first timed send to the consumer's receipt (and check) of the last
batch. All batches are built before timing; the producer sends as fast as it can.

Figures are printed, never asserted (there is no target for this comparison); a wrong batch
is an error (non-zero exit). Every channel created here is named
``shmarrow-bench-py-<pid>-chan-...`` and removed in a ``finally`` block (also on
Ctrl-C/SIGTERM/SIGHUP); consumer processes still running are killed and joined.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import signal
import statistics
import sys
import time

import numpy as np
import pyarrow as pa

import shmarrow
from benchlib import loadavg, machine

MIB = 1 << 20
SMALL_ROWS = 8
SMALL_SLOTS, SMALL_SLOT_SIZE = 64, 4096
LARGE_ROWS = MIB  # 2 float64 columns: 16 MiB of values
LARGE_BYTES = 2 * 8 * LARGE_ROWS
LARGE_SLOTS, LARGE_SLOT_SIZE = 4, 17 * MIB
SETTLE_S = 0.02  # pause between warm-up and timed batches (the consumer drains)
PATIENCE_S = 60.0

SMALL_SCHEMA = pa.schema(
    [("seq", pa.int64()), ("sent_ns", pa.int64()), ("x", pa.float64()), ("y", pa.float64())]
)
LARGE_SCHEMA = pa.schema([("a", pa.float64()), ("b", pa.float64())])
CONTENDERS = (
    ("queue", "multiprocessing.Queue, pickled pyarrow RecordBatch"),
    ("queue-numpy", "multiprocessing.Queue, pickled dict of NumPy arrays (same columns)"),
    ("shmarrow", "shmarrow producer / subscribe (pyarrow RecordBatch)"),
)
LARGE_SUM = float(LARGE_ROWS * (LARGE_ROWS - 1) // 2)  # exact: integers below 2^53


def small_batches(n: int) -> list[pa.RecordBatch]:
    x = pa.array(np.arange(SMALL_ROWS, dtype=np.float64))
    y = pa.array(np.arange(SMALL_ROWS, dtype=np.float64) * 0.25)
    now = time.monotonic_ns()
    return [
        pa.record_batch(
            [pa.array(np.full(SMALL_ROWS, i, dtype=np.int64)),
             pa.array(np.full(SMALL_ROWS, now, dtype=np.int64)), x, y],
            schema=SMALL_SCHEMA,
        )
        for i in range(n)
    ]


def large_batch() -> pa.RecordBatch:
    a = np.arange(LARGE_ROWS, dtype=np.float64)
    return pa.record_batch([pa.array(a), pa.array(a * 0.5)], schema=LARGE_SCHEMA)


# ---------------------------------------------------------------------------------------------
# Consumers (child processes). Each reports (received, errors, first error, last_ns).


def as_dict(batch: pa.RecordBatch) -> dict[str, np.ndarray]:
    """The batch as a dict of NumPy arrays (zero-copy views of its columns)."""
    return {f.name: c.to_numpy(zero_copy_only=True) for f, c in zip(batch.schema, batch.columns)}


def check(batch, index: int, large: bool) -> str | None:
    """Check a received RecordBatch or dict of NumPy arrays (large: sum column `a`)."""
    first = batch["a" if large else "seq"] if isinstance(batch, dict) else batch.column(0)
    if large:
        a = first if isinstance(first, np.ndarray) else first.to_numpy(zero_copy_only=True)
        total = float(a.sum())
        return None if total == LARGE_SUM else f"batch {index}: sum {total} != {LARGE_SUM}"
    seq = first[0] if isinstance(first, np.ndarray) else first[0].as_py()
    if len(first) != SMALL_ROWS or int(seq) != index:
        return f"batch {index}: wrong seq"
    return None


def consume_queue(q, total: int, large: bool, conn) -> None:
    received = errors = last_ns = 0
    first = None
    conn.send("ready")
    while True:
        batch = q.get()
        if batch is None:
            break
        err = check(batch, received, large)
        if err:
            errors += 1
            first = first or err
        del batch
        received += 1
        last_ns = time.monotonic_ns()
    conn.send((received, errors, first, last_ns))


def consume_channel(name: str, seg_dir: str, total: int, large: bool, conn) -> None:
    received = errors = last_ns = 0
    first = None
    sub = shmarrow.subscribe(name, dir=seg_dir, timeout=PATIENCE_S)
    conn.send("ready")
    for batch in sub:
        err = check(batch, received, large)
        if err:
            errors += 1
            first = first or err
        del batch  # release the slot
        received += 1
        last_ns = time.monotonic_ns()
    conn.send((received, errors, first, last_ns))


# ---------------------------------------------------------------------------------------------
# Producer side (this process).


class Runner:
    def __init__(self, seg_dir: str):
        self.ctx = mp.get_context("spawn")  # a clean interpreter: no forked Rust state
        self.seg_dir = seg_dir
        self.run_id = 0
        self.created: list[str] = []
        self.children: list = []

    def _start(self, target, args) -> tuple:
        parent, child = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(target=target, args=(*args, child), daemon=True)
        proc.start()
        child.close()
        self.children.append(proc)
        try:
            ready = parent.poll(PATIENCE_S) and parent.recv() == "ready"
        except EOFError:
            ready = False
        if not ready:
            raise RuntimeError(f"consumer did not start (exit code {proc.exitcode})")
        return proc, parent

    def _finish(self, proc, conn, total: int) -> int:
        try:
            if not conn.poll(PATIENCE_S):
                raise RuntimeError(f"consumer did not report within {PATIENCE_S:.0f} s")
            received, errors, first, last_ns = conn.recv()
        except EOFError as exc:
            raise RuntimeError(f"consumer died (exit code {proc.exitcode})") from exc
        proc.join(PATIENCE_S)
        self.children.remove(proc)
        if errors or received != total:
            raise RuntimeError(
                f"consumer received {received} of {total} batches with {errors} wrong ones "
                f"(first: {first}): a correctness error, not a slow run"
            )
        return last_ns

    def queue(self, batches: list, warm: int) -> float:
        """Seconds from the first timed put to the consumer's receipt of the last batch."""
        first = batches[0]
        large = (len(first) if isinstance(first, dict) else first.num_columns) == 2
        q = self.ctx.Queue()
        total = len(batches)
        try:
            proc, conn = self._start(consume_queue, (q, total, large))
            put = q.put
            for b in batches[:warm]:
                put(b)
            time.sleep(SETTLE_S)
            t_first = time.monotonic_ns()
            for b in batches[warm:]:
                put(b)
            put(None)
            last_ns = self._finish(proc, conn, total)
        except BaseException:
            q.cancel_join_thread()  # do not wait at exit for a feeder nobody reads
            raise
        finally:
            q.close()
        q.join_thread()
        return (last_ns - t_first) / 1e9

    def channel(self, batches: list, warm: int) -> float:
        large = batches[0].num_columns == 2
        self.run_id += 1
        name = f"shmarrow-bench-py-{os.getpid()}-chan-{self.run_id}"
        slots, slot_size = (
            (LARGE_SLOTS, LARGE_SLOT_SIZE) if large else (SMALL_SLOTS, SMALL_SLOT_SIZE)
        )
        self.created.append(name)
        producer = shmarrow.producer(
            name, batches[0].schema, dir=self.seg_dir, slots=slots, slot_size=slot_size,
            timeout=PATIENCE_S,
        )
        try:
            total = len(batches)
            proc, conn = self._start(consume_channel, (name, self.seg_dir, total, large))
            deadline = time.monotonic() + PATIENCE_S
            while producer.consumers < 1:
                if time.monotonic() > deadline:
                    raise RuntimeError("the consumer did not subscribe")
                time.sleep(0.001)
            send = producer.send
            for b in batches[:warm]:
                send(b)
            time.sleep(SETTLE_S)
            t_first = time.monotonic_ns()
            for b in batches[warm:]:
                send(b)
            producer.close()
            last_ns = self._finish(proc, conn, total)
        finally:
            producer.close()
            shmarrow.remove(name, dir=self.seg_dir)
            self.created.remove(name)
        return (last_ns - t_first) / 1e9

    def cleanup(self) -> None:
        for proc in self.children:
            if proc.is_alive():
                proc.kill()
            proc.join(5)
        for name in list(self.created):
            try:
                shmarrow.remove(name, dir=self.seg_dir)
            except Exception as exc:  # keep cleaning the others
                print(f"warning: could not remove {name}: {exc}", file=sys.stderr)


def alternate(runner: Runner, batches: list, warm: int, rounds: int) -> dict[str, list[float]]:
    """Seconds per run for each contender, the order swapped every round."""
    if all(b is batches[0] for b in batches):
        dicts = [as_dict(batches[0])] * len(batches)  # one batch sent repeatedly
    else:
        dicts = [as_dict(b) for b in batches]
    cases = {
        "queue": lambda: runner.queue(batches, warm),
        "queue-numpy": lambda: runner.queue(dicts, warm),
        "shmarrow": lambda: runner.channel(batches, warm),
    }
    out: dict[str, list[float]] = {k: [] for k in cases}
    order = list(cases)
    for r in range(rounds):
        for k in range(len(order)):
            key = order[(k + r) % len(order)]  # rotate the order every round
            gc_was = gc.isenabled()
            gc.disable()
            try:
                out[key].append(cases[key]())
            finally:
                if gc_was:
                    gc.enable()
    return out


def main() -> int:
    quick = os.environ.get("SHMARROW_BENCH_QUICK", "") not in ("", "0")
    seg_dir = os.environ.get("SHMARROW_DIR") or "/dev/shm"
    # (rounds, timed batches per run, warm-up batches per run)
    small_rounds, small_n, small_warm = (3, 5_000, 500) if quick else (5, 20_000, 1_000)
    large_rounds, large_n, large_warm = (3, 10, 4) if quick else (5, 50, 8)

    def _raise(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise)

    print("# shmarrow channel benchmark (Python): shmarrow channel vs multiprocessing.Queue")
    print()
    print(f"machine: {machine()}; dir {seg_dir}; mode {'QUICK' if quick else 'full'}; "
          f"pid {os.getpid()}")
    nproc = len(os.sched_getaffinity(0))
    if nproc <= 2:
        print(f"note: only {nproc} core(s): the producer, the consumer and the Queue's feeder "
              "thread share them")
    print(f"load average at start: {loadavg()}")
    print("every run: a fresh consumer process (multiprocessing, spawn) and a fresh queue or "
          "channel; contenders alternate (order swapped every round); batches built before "
          "timing; end to end = producer's first timed send → consumer's receipt of the last "
          "batch (CLOCK_MONOTONIC)")
    print()

    runner = Runner(seg_dir)
    try:
        small = small_batches(small_warm + small_n)
        s = alternate(runner, small, small_warm, small_rounds)
        print(f"## small batches ({SMALL_ROWS} rows × 4 columns; shmarrow: {SMALL_SLOTS} slots of "
              f"{SMALL_SLOT_SIZE} B), {small_rounds} rounds × {small_n} timed batches "
              f"(after {small_warm} warm-up), consumer checks `seq`")
        print()
        print("| contender | batches/s (median) | min | max | rounds |")
        print("|---|---:|---:|---:|---:|")
        rates = {}
        for key, label in CONTENDERS:
            r = [small_n / t for t in s[key]]
            rates[key] = statistics.median(r)
            print(f"| {label} | {rates[key]:.0f} | {min(r):.0f} | {max(r):.0f} | {len(r)} |")
        print()
        print(f"- shmarrow / Queue (batches/s, medians): "
              f"{rates['shmarrow'] / rates['queue']:.2f}× (RecordBatch), "
              f"{rates['shmarrow'] / rates['queue-numpy']:.2f}× (dict of NumPy arrays)")
        print()
        del small

        big = large_batch()
        batches = [big] * (large_warm + large_n)
        g = alternate(runner, batches, large_warm, large_rounds)
        print(f"## 16 MiB batches (2 float64 columns of {LARGE_ROWS} rows; shmarrow: {LARGE_SLOTS} "
              f"slots of {LARGE_SLOT_SIZE // MIB} MiB), {large_rounds} rounds × {large_n} timed "
              f"batches (after {large_warm} warm-up), consumer sums column `a` (NumPy) and "
              "checks it")
        print()
        print("GB/s = 10^9 bytes of values per second")
        print()
        print("| contender | GB/s (median) | min | max | rounds |")
        print("|---|---:|---:|---:|---:|")
        gbps = {}
        for key, label in CONTENDERS:
            r = [large_n * LARGE_BYTES / t / 1e9 for t in g[key]]
            gbps[key] = statistics.median(r)
            print(f"| {label} | {gbps[key]:.2f} | {min(r):.2f} | {max(r):.2f} | {len(r)} |")
        print()
        print(f"- shmarrow / Queue (GB/s, medians): "
              f"{gbps['shmarrow'] / gbps['queue']:.2f}× (RecordBatch), "
              f"{gbps['shmarrow'] / gbps['queue-numpy']:.2f}× (dict of NumPy arrays)")
        print()
    finally:
        runner.cleanup()
    print(f"load average at end: {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
