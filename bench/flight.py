"""Flight benchmark: ``do_get`` of a 1 GiB segment from ``shmarrow serve`` vs pyarrow's own
Flight server serving the same table from memory, over loopback, in one run.

Run with the project's venv (``make bench`` does): ``.venv/bin/python bench/flight.py``. It
runs ``target/release/shmarrow`` (building it with ``cargo build --release`` if missing).
``SHMARROW_BENCH_QUICK=1``: 128 MiB instead of 1 GiB and fewer repeats (target not judged).

The data: 8 float64 columns without nulls, 1 GiB of values (16 Mi rows), in record batches of
64 Ki rows (256 batches of 4 MiB: the batch size `shmarrow create` and `import` write), built
with NumPy and published with ``shmarrow.create`` into a private directory
``$SHMARROW_DIR/shmarrow-bench-py-<pid>-flight`` (default ``/dev/shm``).

Servers, each its own process on 127.0.0.1 (any free port):

- shmarrow: ``shmarrow --dir DIR serve --listen 127.0.0.1:0`` — attaches the segment per
  request and encodes its batches straight from the shared mapping;
- pyarrow: ``pyarrow.flight.FlightServerBase`` in a child process of this script, serving a
  ``pyarrow.Table`` read from the same file into private memory (``pa.ipc.open_file(
  pa.OSFile(path)).read_all()``: no mapping) through ``flight.RecordBatchStream``.

One client, this process, ``pyarrow.flight``: ``client.do_get(ticket).read_all()`` against
each server, alternating (order swapped every repeat, cyclic GC off), 1 warm-up and 7 repeats
(quick: 3), timed with ``time.perf_counter_ns``; the table read is dropped inside the timing.
A third case runs in the same rotation: ``shmarrow pull`` (the Rust client, a subprocess, from
spawn to exit) into a second directory, publishing a segment there (removed after each run,
untimed). Printed: median/min/max in ms, GB/s (10^9 bytes of values per second), the ratio of
medians shmarrow / pyarrow throughput (target ≥ 0.8: serving from shared memory costs no more
than serving a table already in a Flight server's memory), and a check that every read table
equals the original (rows, and a sum per column).

Every file and process is removed or killed in a ``finally`` block (also on Ctrl-C, SIGTERM,
SIGHUP).
"""

from __future__ import annotations

import gc
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight
from benchlib import human, loadavg, machine

MIB = 1 << 20
GIB = 1 << 30
COLUMNS = 8
BATCH_ROWS = 64 * 1024
TARGET_RATIO = 0.8  # shmarrow serve throughput / pyarrow server throughput (medians)
ROOT = Path(__file__).resolve().parent.parent



class PyarrowServer(flight.FlightServerBase):
    """pyarrow's own Flight server: one table, in private memory, served by do_get."""

    def __init__(self, table: pa.Table):
        super().__init__("grpc://127.0.0.1:0")
        self.table = table

    def do_get(self, context, ticket):
        return flight.RecordBatchStream(self.table)


def serve_pyarrow(path: str) -> None:
    """Child process: read the segment's file into private memory, serve it, print the port."""
    with pa.OSFile(path) as f:
        table = pa.ipc.open_file(f).read_all()
    server = PyarrowServer(table)
    print(server.port, flush=True)
    server.serve()


def shmarrow_binary() -> Path:
    binary = ROOT / "target" / "release" / "shmarrow"
    if not binary.exists():
        subprocess.run(
            ["cargo", "build", "--release", "--quiet", "--bin", "shmarrow"], cwd=ROOT, check=True
        )
    return binary


def make_table(rows: int) -> pa.Table:
    cols = {}
    for c in range(COLUMNS):
        x = np.empty(rows, dtype=np.float64)
        step = 1 << 22
        for start in range(0, rows, step):
            i = np.arange(start, min(rows, start + step), dtype=np.float64)
            x[start : start + len(i)] = i * (c + 1)  # integers: sums are exact in any order
        cols[f"c{c}"] = x
    table = pa.table(cols)
    return pa.Table.from_batches(table.to_batches(max_chunksize=BATCH_ROWS))


def fingerprint(table: pa.Table) -> tuple:
    import pyarrow.compute as pc

    sums = tuple(pc.sum(table.column(i)).as_py() for i in range(table.num_columns))
    return (table.num_rows, sums)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-pyarrow":
        serve_pyarrow(sys.argv[2])
        return 0

    quick = os.environ.get("SHMARROW_BENCH_QUICK", "") not in ("", "0")
    base = Path(os.environ.get("SHMARROW_DIR") or "/dev/shm")
    nbytes, warmups, repeats = (128 * MIB, 1, 3) if quick else (GIB, 1, 7)
    rows = nbytes // (8 * COLUMNS)

    def _raise(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise)

    print("# shmarrow Flight benchmark: do_get over loopback")
    print()
    print(
        f"machine: {machine()}; dir {base}; mode "
        f"{'QUICK (128 MiB, target not judged)' if quick else 'full'}; pid {os.getpid()}"
    )
    print(
        f"data: {COLUMNS} float64 columns (non-null), {human(nbytes)} of values = {rows} rows, "
        f"record batches of {BATCH_ROWS} rows"
    )
    print(
        f"medians over {repeats} repeats after {warmups} warm-up round(s), cases alternating "
        "(order rotated every repeat); GB/s = 10^9 bytes of values per second"
    )
    print(f"load average at start: {loadavg()}")
    print()

    binary = shmarrow_binary()
    import shmarrow  # after the build: the package is the venv's

    served_dir = base / f"shmarrow-bench-py-{os.getpid()}-flight"
    pulled_dir = base / f"shmarrow-bench-py-{os.getpid()}-flight-pulled"
    procs: list[subprocess.Popen] = []
    samples: dict[str, list[int]] = {}
    try:
        served_dir.mkdir()
        pulled_dir.mkdir()
        table = make_table(rows)
        want = fingerprint(table)
        t0 = time.perf_counter_ns()
        created = shmarrow.create("table", table, dir=served_dir, replace=False)
        print(
            f"published `table`: {created.nbytes} bytes, {table.num_rows} rows, "
            f"{len(table.to_batches())} batches in {(time.perf_counter_ns() - t0) / 1e6:.0f} ms"
        )
        del created, table
        segment_path = str(served_dir / "table")

        ours = subprocess.Popen(
            [str(binary), "--dir", str(served_dir), "serve", "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        procs.append(ours)
        line = ours.stdout.readline()
        ours_addr = next(w for w in line.split() if w.startswith("grpc://"))
        theirs = subprocess.Popen(
            [sys.executable, __file__, "--serve-pyarrow", segment_path],
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(theirs)
        theirs_addr = f"grpc://127.0.0.1:{int(theirs.stdout.readline())}"
        print(f"shmarrow serve on {ours_addr}; pyarrow FlightServerBase on {theirs_addr}")
        print()

        ours_client = flight.connect(ours_addr)
        theirs_client = flight.connect(theirs_addr)
        ticket = flight.Ticket(b"table")
        pull_args = [str(binary), "--dir", str(pulled_dir), "pull"]
        pull_args += [ours_addr.removeprefix("grpc://"), "table", "--replace"]
        checks: dict[str, bool] = {}

        def get(client):
            def run():
                t = client.do_get(ticket).read_all()
                ok = fingerprint(t) == want
                del t
                return ok
            return run

        def pull():
            subprocess.run(pull_args, check=True, stdout=subprocess.DEVNULL)
            return True

        def check_pulled():
            t = shmarrow.attach("table", dir=pulled_dir)
            ok = fingerprint(t) == want
            del t
            shmarrow.remove("table", dir=pulled_dir)
            return ok

        cases = {
            "shmarrow": get(ours_client),
            "pyarrow": get(theirs_client),
            "pull": pull,
        }
        keys = list(cases)
        samples = {k: [] for k in keys}
        gc_was = gc.isenabled()
        gc.disable()
        try:
            for i in range(warmups + repeats):
                for k in range(len(keys)):
                    key = keys[(k + i) % len(keys)]
                    t0 = time.perf_counter_ns()
                    ok = cases[key]()
                    elapsed = time.perf_counter_ns() - t0
                    if key == "pull":
                        ok = check_pulled()  # untimed
                    checks[key] = checks.get(key, True) and ok
                    if i >= warmups:
                        samples[key].append(elapsed)
        finally:
            if gc_was:
                gc.enable()
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(served_dir, ignore_errors=True)
        shutil.rmtree(pulled_dir, ignore_errors=True)

    labels = {
        "shmarrow": "`shmarrow serve` (from the shared mapping) → pyarrow client `read_all()`",
        "pyarrow": "pyarrow `FlightServerBase` (table in memory) → pyarrow client `read_all()`",
        "pull": "`shmarrow pull` from `shmarrow serve` into a segment (process, end to end)",
    }
    print(f"## do_get of {human(nbytes)} over loopback")
    print()
    print("| case | median ms | min ms | max ms | GB/s (median) | equal | n |")
    print("|---|---:|---:|---:|---:|:---:|---:|")
    med = {}
    for key in samples:
        ms = [s / 1e6 for s in samples[key]]
        med[key] = statistics.median(ms)
        print(
            f"| {labels[key]} | {med[key]:.0f} | {min(ms):.0f} | {max(ms):.0f} | "
            f"{nbytes / (med[key] * 1e6):.2f} | {'yes' if checks[key] else 'NO'} | {len(ms)} |"
        )
    print()
    ratio = med["pyarrow"] / med["shmarrow"]
    judged = "quick mode, not judged" if quick else ("PASS" if ratio >= TARGET_RATIO else "MISS")
    print(
        f"- shmarrow / pyarrow throughput (medians) = {ratio:.2f}× "
        f"(target ≥ {TARGET_RATIO}): {judged}"
    )
    print(
        f"- pull (Rust client, into a new segment) / pyarrow-client read_all from shmarrow "
        f"(medians) = {med['shmarrow'] / med['pull']:.2f}× the throughput (not judged)"
    )
    print()
    print(f"load average at end: {loadavg()}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
