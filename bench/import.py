"""Import benchmark: ``shmarrow import`` of a Parquet file vs pyarrow writing an IPC file.

Run with the project's venv (``make bench`` does): ``.venv/bin/python bench/import.py``.
Needs the release CLI (``cargo build --release --bin shmarrow``; built here if missing).
``SHMARROW_BENCH_QUICK=1``: 1/8 of the data and fewer repeats (a smoke run; targets not judged).

The input: a Parquet file generated once per run (seeded NumPy) in a fresh temporary
directory under ``tempfile.gettempdir()`` (``$TMPDIR`` or ``/tmp``; its file system type is
printed, because the input should be on disk, not tmpfs), holding about 1 GiB of decoded Arrow
data: ``id`` int64 (row number), ``qty`` int32, ``price`` float64, ``score`` float32,
``category`` string (50 distinct words), ``text`` string (random, 10 to 20 ASCII characters),
no nulls, row groups of 2^20 rows, pyarrow's defaults otherwise (snappy, dictionary encoding).

Contenders, each a fresh subprocess started through a small launcher (see ``LAUNCHER``: it
fork()s and execs the contender, so the contender's peak RSS from ``wait4`` is its own, not
inherited from this process), timed from fork to exit, alternating (order rotated every
repeat), 1 warm-up round and 7 repeats (quick: 3); every output is removed (untimed) before the
next run, so every run pays for fresh tmpfs pages; the input is in the page cache for all of
them after the warm-up:

- shmarrow: ``target/release/shmarrow --dir DIR import NAME FILE`` (Parquet streamed batch by
  batch, 65536 rows, into the segment's temp file in DIR with ``write(2)``); then, untimed,
  ``shmarrow --dir DIR rm NAME``;
- pyarrow read_table: ``pq.read_table(FILE)`` then ``pa.ipc.new_file(DIR/NAME.arrow)``
  ``write_table``: the whole table in private memory (the issue's baseline);
- pyarrow streaming: ``pq.ParquetFile(FILE).iter_batches(batch_size=65536)`` into
  ``pa.ipc.new_file`` batch by batch (a fairer baseline: one batch in memory, like ours).

Peak RSS (``ru_maxrss``) counts every resident page the child mapped, shared ones included:
for shmarrow it includes the segment pages its final ``info`` read maps (the kernel maps up to
64 KiB around each batch header it touches), so it is an upper bound on private memory. A
``write(2)`` into tmpfs does not count; pyarrow's ``read_table`` holds the table privately.

Figures are printed, never asserted; a wrong result (row count, column sums, first row group)
makes the program exit non-zero. Every file created here is named
``shmarrow-bench-py-<pid>-import...`` (segment, its ``.NAME.*.tmp`` temp files, the pyarrow
outputs, the temporary directory) and removed in a ``finally`` block, also on Ctrl-C, SIGTERM
and SIGHUP (a running child is killed first).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from benchlib import loadavg, machine

MIB = 1 << 20
GIB = 1 << 30
ROW_GROUP = 1 << 20
BATCH_ROWS = 65536  # `shmarrow import --batch-rows` default; the streaming baseline uses it too
TARGET_RATIO = 1.0  # shmarrow time / pyarrow time (medians), at most
TARGET_RSS_FRACTION = 0.25  # "well under the data size": peak RSS at most a quarter of it
CATEGORIES = [
    f"{w}-{i}"
    for i, w in enumerate(
        "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi "
        "rho sigma tau upsilon phi chi psi omega red orange yellow green blue indigo violet "
        "north south east west up down left right spring summer autumn winter iron copper "
        "silver gold tin lead zinc".split()
    )
]
ALPHABET = np.frombuffer(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", np.uint8
)
SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("qty", pa.int32()),
        ("price", pa.float64()),
        ("score", pa.float32()),
        ("category", pa.string()),
        ("text", pa.string()),
    ]
)
# Decoded bytes per row, for sizing: 8 + 4 + 8 + 4 + (4 + ~7.5) + (4 + 15).
EST_ROW_BYTES = 54.5

# The pyarrow contenders, run as `python -c CHILD MODE FILE OUT`; they print their own timings
# (after the interpreter and pyarrow are loaded) as JSON on stdout.
CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import pyarrow as pa, pyarrow.parquet as pq
mode, src, out, batch_rows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
t1 = time.perf_counter()
if mode == "read_table":
    table = pq.read_table(src)
    t2 = time.perf_counter()
    with pa.ipc.new_file(out, table.schema) as w:
        w.write_table(table)
    rows = table.num_rows
else:
    f = pq.ParquetFile(src)
    t2 = time.perf_counter()
    rows = 0
    with pa.ipc.new_file(out, f.schema_arrow) as w:
        for batch in f.iter_batches(batch_size=batch_rows):
            w.write_batch(batch)
            rows += batch.num_rows
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "read_s": t2 - t1, "write_s": t3 - t2,
                  "work_s": t3 - t1, "rows": rows}))
"""

running_group: int | None = None  # process group of the launcher in flight, killed on interruption


def human(nbytes: float) -> str:
    return f"{nbytes / MIB:.1f} MiB"


def fs_type(path: str) -> str:
    """The file system type of the mount holding ``path`` (longest matching mount point)."""
    path = os.path.realpath(path)
    best, kind = "", "?"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    mnt = parts[1]
                    inside = path == mnt or path.startswith(mnt.rstrip("/") + "/")
                    if inside and len(mnt) > len(best):
                        best, kind = mnt, parts[2]
    except OSError:
        pass
    return kind


# ---------------------------------------------------------------------------------------------
# Data.


def make_batch(rng: np.random.Generator, start: int, n: int) -> pa.RecordBatch:
    lengths = rng.integers(10, 21, n, dtype=np.int32)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    chars = ALPHABET[rng.integers(0, len(ALPHABET), int(offsets[-1]), dtype=np.uint8)]
    text = pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(chars))
    category = pa.array(CATEGORIES, pa.string()).take(
        pa.array(rng.integers(0, len(CATEGORIES), n, dtype=np.int32))
    )
    return pa.record_batch(
        [
            pa.array(np.arange(start, start + n, dtype=np.int64)),
            pa.array(rng.integers(0, 1000, n, dtype=np.int32)),
            pa.array(rng.random(n) * 1000.0),
            pa.array(rng.standard_normal(n, dtype=np.float32)),
            category,
            text,
        ],
        schema=SCHEMA,
    )


def generate(path: str, rows: int) -> int:
    """Write the Parquet file; returns the decoded Arrow size (sum of the batches' buffers)."""
    rng = np.random.default_rng(20240611)
    decoded = 0
    with pq.ParquetWriter(path, SCHEMA) as w:  # pyarrow defaults: snappy, dictionary
        for start in range(0, rows, ROW_GROUP):
            batch = make_batch(rng, start, min(ROW_GROUP, rows - start))
            decoded += batch.nbytes
            w.write_table(pa.Table.from_batches([batch]), row_group_size=ROW_GROUP)
    return decoded


def summary(batches) -> dict:
    """Row count and a few exact column aggregates, batch by batch (bounded memory)."""
    rows = id_sum = qty_sum = text_bytes = 0
    price_sum = 0.0
    for b in batches:
        rows += b.num_rows
        id_sum += pc.sum(b.column("id")).as_py() or 0
        qty_sum += pc.sum(b.column("qty")).as_py() or 0
        price_sum += pc.sum(b.column("price")).as_py() or 0.0
        text_bytes += pc.sum(pc.binary_length(b.column("text"))).as_py() or 0
    return {"rows": rows, "sum(id)": id_sum, "sum(qty)": qty_sum, "sum(price)": price_sum,
            "bytes(text)": text_bytes}


def agree(a: dict, b: dict) -> bool:
    for k in a:
        if isinstance(a[k], float):
            if abs(a[k] - b[k]) > 1e-9 * max(abs(a[k]), abs(b[k]), 1.0):
                return False
        elif a[k] != b[k]:
            return False
    return True


# ---------------------------------------------------------------------------------------------
# Running a contender.


# The contenders are started through this small launcher (a fresh Python without site
# packages, ~10 MiB): it fork()s and execs the contender, times it from fork to exit and
# reports the contender's own rusage. Why not spawn them directly: on Linux a child's
# ru_maxrss starts from its parent's memory (fork copies the RSS high-water mark; vfork and
# posix_spawn hand the parent's peak to the child at exec), so a direct child of this
# 500 MiB-peak process would report at least that. The launcher's floor is printed.
LAUNCHER = r"""
import json, os, sys, time
result, argv = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter_ns()
pid = os.fork()
if pid == 0:
    try:
        os.execv(argv[0], argv)
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter_ns() - t0
with open(result, "w") as f:
    json.dump({"wall_ns": wall, "code": os.waitstatus_to_exitcode(status),
               "maxrss": ru.ru_maxrss * 1024, "user": ru.ru_utime, "sys": ru.ru_stime,
               "minflt": ru.ru_minflt}, f)
"""


def spawn(argv: list[str], work: str) -> dict:
    """Run ``argv`` to completion through the launcher, in its own process group; wall time
    (fork to exit), the contender's own rusage, its stdout."""
    global running_group
    out_path, err_path, res_path = (os.path.join(work, f) for f in ("stdout", "stderr", "rusage"))
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, out_path, flags, 0o600),
        (os.POSIX_SPAWN_OPEN, 2, err_path, flags, 0o600),
    ]
    launcher = [sys.executable, "-S", "-I", "-c", LAUNCHER, res_path, *argv]
    pid = os.posix_spawn(launcher[0], launcher, os.environ, file_actions=actions, setpgroup=0)
    running_group = pid
    _, status = os.waitpid(pid, 0)
    running_group = None
    with open(out_path) as f:
        out = f.read()
    with open(err_path) as f:
        err = f.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"launcher for {argv[0]} failed:\n{err}")
    with open(res_path) as f:
        r = json.load(f)
    if r["code"] != 0:
        raise RuntimeError(f"{' '.join(argv[:4])}... exited with {r['code']}:\n{err}{out}")
    r.update(wall=r["wall_ns"] / 1e9, cpu=r["user"] + r["sys"], stdout=out)
    return r


def main() -> int:
    quick = os.environ.get("SHMARROW_BENCH_QUICK", "") not in ("", "0")
    seg_dir = os.environ.get("SHMARROW_DIR") or "/dev/shm"
    target_bytes, warmups, repeats = (GIB // 8, 1, 3) if quick else (GIB, 1, 7)
    rows = int(target_bytes / EST_ROW_BYTES)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cli = os.path.join(root, "target", "release", "shmarrow")

    def _raise(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise)

    if not os.path.exists(cli):
        print("building the release CLI (cargo build --release --bin shmarrow)", file=sys.stderr)
        subprocess.run(["cargo", "build", "--release", "--bin", "shmarrow"], cwd=root, check=True)
    version = subprocess.run([cli, "-V"], capture_output=True, text=True, check=True).stdout.strip()

    pid = os.getpid()
    name = f"shmarrow-bench-py-{pid}-import"
    seg_path = os.path.join(seg_dir, name)
    pa_out = {
        "read_table": os.path.join(seg_dir, f"{name}-read_table.arrow"),
        "stream": os.path.join(seg_dir, f"{name}-stream.arrow"),
    }
    tmp_root = tempfile.gettempdir()

    print("# shmarrow import benchmark (Parquet -> segment vs pyarrow -> IPC file)")
    print()
    print(
        f"machine: {machine()}; {version}; dir {seg_dir} ({fs_type(seg_dir)}); mode "
        f"{'QUICK (1/8 size, targets not judged)' if quick else 'full'}; pid {pid}"
    )
    print(f"load average at start: {loadavg()}")

    work = None
    status = 0
    try:
        work = tempfile.mkdtemp(prefix=f"{name}-", dir=tmp_root)
        src = os.path.join(work, "input.parquet")
        t0 = time.perf_counter()
        decoded = generate(src, rows)
        gen_s = time.perf_counter() - t0
        meta = pq.ParquetFile(src).metadata
        file_bytes = os.path.getsize(src)
        print(
            f"input: {src} on {fs_type(work)}, {meta.num_rows} rows, {meta.num_row_groups} row "
            f"groups of <= {ROW_GROUP} rows, {meta.num_columns} columns (id int64, qty int32, "
            f"price float64, score float32, category string [{len(CATEGORIES)} values], text "
            f"string [random, 10-20 chars]), no nulls, snappy; file {file_bytes} bytes "
            f"({human(file_bytes)}); decoded Arrow data {decoded} bytes ({human(decoded)}); "
            f"generated in {gen_s:.1f} s"
        )
        print(
            f"medians over {repeats} repeats after {warmups} warm-up round(s), contenders "
            "alternating (order rotated every repeat), each a fresh subprocess timed from fork "
            "to exit; outputs removed (untimed) between runs; GB/s = 10^9 bytes of decoded "
            "data per second; peak RSS = the child's ru_maxrss (wait4), shared pages it mapped "
            "included (an upper bound on private memory)"
        )
        print()

        def run_shmarrow() -> dict:
            r = spawn([cli, "--dir", seg_dir, "import", name, src], work)
            r["seg_bytes"] = os.path.getsize(seg_path)
            return r

        def cleanup_shmarrow() -> None:
            spawn([cli, "--dir", seg_dir, "rm", name], work)

        def run_pyarrow(mode: str) -> dict:
            argv = [sys.executable, "-c", CHILD, mode, src, pa_out[mode], str(BATCH_ROWS)]
            r = spawn(argv, work)
            r.update(json.loads(r["stdout"]))
            r["seg_bytes"] = os.path.getsize(pa_out[mode])
            return r

        cases = {
            "shmarrow": (run_shmarrow, cleanup_shmarrow),
            "pyarrow read_table": (lambda: run_pyarrow("read_table"),
                                   lambda: os.remove(pa_out["read_table"])),
            "pyarrow streaming": (lambda: run_pyarrow("stream"),
                                  lambda: os.remove(pa_out["stream"])),
        }
        keys = list(cases)

        # References: the launcher's floor (a contender that does nothing) and a Python child
        # that only loads pyarrow (the floor of the pyarrow contenders).
        floor_true = spawn(["/bin/true"], work)
        floor_py = spawn([sys.executable, "-c", "import pyarrow, pyarrow.parquet, pyarrow.ipc"],
                         work)

        samples: dict[str, list[dict]] = {k: [] for k in keys}
        checked = False
        for i in range(warmups + repeats):
            for k in range(len(keys)):
                key = keys[(k + i) % len(keys)]
                run, clean = cases[key]
                r = run()
                if key == "shmarrow" and not checked:
                    # Correctness, once, outside the timing: the segment against pyarrow's
                    # reading of the Parquet file.
                    seg = pa.ipc.open_file(pa.memory_map(seg_path))
                    got = summary(seg.get_batch(j) for j in range(seg.num_record_batches))
                    pf = pq.ParquetFile(src)
                    want = summary(pf.iter_batches(batch_size=ROW_GROUP))
                    same_schema = seg.schema.remove_metadata().equals(
                        pf.schema_arrow.remove_metadata()
                    )
                    n0 = pf.metadata.row_group(0).num_rows
                    first = pa.Table.from_batches(
                        [seg.get_batch(j) for j in range(seg.num_record_batches)]
                    ).slice(0, n0)
                    same_first = first.equals(pf.read_row_group(0))
                    del seg, first, pf
                    ok = agree(want, got) and same_schema and same_first
                    print(f"correctness (segment vs pyarrow reading the Parquet file): "
                          f"{'ok' if ok else 'MISMATCH'}")
                    print(f"- pyarrow: {want}")
                    print(f"- segment: {got}")
                    print(f"- schema equal: {same_schema}; first row group ({n0} rows) equal: "
                          f"{same_first}; segment {r['seg_bytes']} bytes")
                    print()
                    if not ok:
                        status = 1
                    checked = True
                clean()
                if key != "shmarrow" and r["rows"] != meta.num_rows:
                    print(f"{key}: wrote {r['rows']} rows, expected {meta.num_rows}")
                    status = 1
                if i >= warmups:
                    samples[key].append(r)
    finally:
        if running_group is not None:  # the launcher and the contender it started
            try:
                os.killpg(running_group, signal.SIGKILL)
                os.waitpid(running_group, 0)
            except OSError:
                pass
        temps = glob.glob(os.path.join(seg_dir, f".{name}.*.tmp"))  # an interrupted import's
        leftovers = [seg_path, *pa_out.values(), *temps]
        for path in leftovers:
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                print(f"warning: could not remove {path}: {exc}", file=sys.stderr)
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)

    labels = {
        "shmarrow": f"`shmarrow import` (release CLI, {BATCH_ROWS}-row batches)",
        "pyarrow read_table": "pyarrow `read_table` + `ipc.new_file`",
        "pyarrow streaming": f"pyarrow `iter_batches({BATCH_ROWS})` + `ipc.new_file`",
    }
    print(f"## import of {human(decoded)} of decoded data ({human(file_bytes)} Parquet)")
    print()
    print(
        "| case | median s | min s | max s | GB/s (median) | CPU s user+sys (median) | "
        "peak RSS MiB (median) | max | RSS / data | output MiB | n |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    med, rss = {}, {}
    for key in keys:
        s = samples[key]
        walls = [r["wall"] for r in s]
        med[key] = statistics.median(walls)
        rss[key] = statistics.median(r["maxrss"] for r in s)
        print(
            f"| {labels[key]} | {med[key]:.2f} | {min(walls):.2f} | {max(walls):.2f} | "
            f"{decoded / med[key] / 1e9:.2f} | "
            f"{statistics.median(r['cpu'] for r in s):.2f} | {rss[key] / MIB:.0f} | "
            f"{max(r['maxrss'] for r in s) / MIB:.0f} | {rss[key] / decoded:.3f} | "
            f"{s[-1]['seg_bytes'] / MIB:.0f} | {len(s)} |"
        )
    print()
    def m(key: str, f) -> float:
        return statistics.median(f(r) for r in samples[key])

    print(
        "- pyarrow read_table, inside the child (medians): "
        f"read_table {m('pyarrow read_table', lambda r: r['read_s']):.2f} s, IPC write "
        f"{m('pyarrow read_table', lambda r: r['write_s']):.2f} s, both "
        f"{m('pyarrow read_table', lambda r: r['work_s']):.2f} s; start-up and exit (wall - "
        f"both) {m('pyarrow read_table', lambda r: r['wall'] - r['work_s']):.2f} s"
    )
    print(
        "- pyarrow streaming, inside the child (medians): read + write interleaved "
        f"{m('pyarrow streaming', lambda r: r['work_s']):.2f} s; start-up and exit "
        f"{m('pyarrow streaming', lambda r: r['wall'] - r['work_s']):.2f} s"
    )
    print(
        f"- floors: a Python child that only imports pyarrow {floor_py['wall']:.2f} s, peak RSS "
        f"{floor_py['maxrss'] / MIB:.0f} MiB (included in the pyarrow rows); `/bin/true` through "
        f"the launcher {floor_true['wall'] * 1e3:.1f} ms, peak RSS "
        f"{floor_true['maxrss'] / MIB:.1f} MiB (no row can report less)"
    )
    print(
        "- shmarrow minor page faults (median): "
        f"{m('shmarrow', lambda r: r['minflt']):.0f}; pyarrow read_table "
        f"{m('pyarrow read_table', lambda r: r['minflt']):.0f}; pyarrow streaming "
        f"{m('pyarrow streaming', lambda r: r['minflt']):.0f}"
    )
    print()

    def judge(ok: bool) -> str:
        return "quick mode, not judged" if quick else ("PASS" if ok else "MISS")

    for base in ("pyarrow read_table", "pyarrow streaming"):
        ratio = med["shmarrow"] / med[base]
        work_ratio = med["shmarrow"] / statistics.median(r["work_s"] for r in samples[base])
        extra = " (the issue's baseline)" if base == "pyarrow read_table" else " (second baseline)"
        print(
            f"- shmarrow / {base} (medians, fork to exit) = {ratio:.2f} (target <= "
            f"{TARGET_RATIO:.1f}){extra}: {judge(ratio <= TARGET_RATIO)}; against its in-child "
            f"time (no interpreter start-up) = {work_ratio:.2f}"
        )
    frac = rss["shmarrow"] / decoded
    print(
        f"- shmarrow peak RSS / decoded data = {frac:.3f} ({rss['shmarrow'] / MIB:.0f} MiB of "
        f"{human(decoded)}; target <= {TARGET_RSS_FRACTION:.2f}, \"well under\"): "
        f"{judge(frac <= TARGET_RSS_FRACTION)}; pyarrow read_table "
        f"{rss['pyarrow read_table'] / decoded:.3f}, pyarrow streaming "
        f"{rss['pyarrow streaming'] / decoded:.3f} (for reference)"
    )
    print()
    print(f"load average at end: {loadavg()}")
    return status


if __name__ == "__main__":
    sys.exit(main())
