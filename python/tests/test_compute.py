"""Reductions, in-place maps and locks (DESIGN.md sections 5-7) through the Python binding and
the CLI, checked against NumPy, exact integer arithmetic and ``fractions.Fraction``."""

from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
import stat
import struct
import subprocess
import sys
import textwrap
import threading
import time
from fractions import Fraction

import numpy as np
import pyarrow as pa
import pytest

import shmarrow

STATS = ("count", "null_count", "sum", "mean", "var", "std", "min", "max")
INT_TYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]


# ---------------------------------------------------------------- helpers


def masked_array(values: np.ndarray, valid: np.ndarray, garbage) -> pa.Array:
    """A primitive Arrow array over ``values`` with validity ``valid``, whose value slots under
    the nulls hold ``garbage`` (so a reduction that does not skip nulls is caught)."""
    values = np.array(values, copy=True)
    values[~valid] = garbage
    typ = pa.from_numpy_dtype(values.dtype)
    validity = pa.py_buffer(np.packbits(valid, bitorder="little").tobytes())
    return pa.Array.from_buffers(typ, len(values), [validity, pa.py_buffer(values.tobytes())],
                                 null_count=int((~valid).sum()))


def rel_close(got, want, rel=1e-12):
    if isinstance(want, float) and math.isnan(want):
        return isinstance(got, float) and math.isnan(got)
    if isinstance(want, float) and math.isinf(want):
        return got == want
    return got == want or abs(got - want) <= rel * abs(want)


def assert_float_stats(got: dict, values: np.ndarray, nulls: int, ddof: int = 0, rel=1e-12):
    """Compare one column's stats with NumPy's nan-functions on the (float64) non-null values."""
    v = np.asarray(values, dtype=np.float64)
    assert got["count"] == len(v)
    assert got["null_count"] == nulls
    for key, want in (
        ("sum", np.nansum(v)),
        ("mean", np.nanmean(v)),
        ("var", np.nanvar(v, ddof=ddof)),
        ("std", np.nanstd(v, ddof=ddof)),
        ("min", np.nanmin(v)),
        ("max", np.nanmax(v)),
    ):
        assert isinstance(got[key], float), (key, got[key])
        assert rel_close(got[key], float(want), rel), (key, got[key], float(want))
    # min and max are values of the column: exact, not just close
    assert got["min"] == float(v.min()) and got["max"] == float(v.max())


def bits(result):
    """A result dict with floats replaced by their bit patterns (NaN-safe bitwise equality)."""
    if isinstance(result, dict):
        return {k: bits(v) for k, v in result.items()}
    if isinstance(result, float):
        return ("f", struct.pack("<d", result))
    return (type(result).__name__, result)


def cli_stats(item):
    """A CLI JSON object as the Python binding would return it: every statistic is a number
    or null, and ``special`` gives those JSON cannot hold (NaN, infinities, integers beyond
    64 bits) as strings."""
    special = item.pop("special", {})
    for op, text in special.items():
        assert item[op] is None, (op, item)
        item[op] = float(text) if text in ("nan", "inf", "-inf") else int(text)
    return item


def run_cli(binary, *args, check=True):
    r = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60)
    if check:
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


def cli_reduce(binary, shm_dir, name, *args):
    out = run_cli(binary, "--dir", shm_dir, "reduce", name, "--json", *args)
    items = json.loads(out.stdout, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    return {item.pop("column"): cli_stats(item) for item in items}


def assert_results_close(a: dict, b: dict, rel=1e-12):
    assert a.keys() == b.keys()
    for column in a:
        assert a[column].keys() == b[column].keys(), column
        for op, x in a[column].items():
            y = b[column][op]
            assert type(x) is type(y), (column, op, x, y)
            if isinstance(x, float):
                assert rel_close(x, y, rel), (column, op, x, y)
            else:
                assert x == y, (column, op, x, y)


# ---------------------------------------------------------------- fixtures

BATCH_SIZES = (40_000, 33_001, 70_123)  # uneven, each more than one 32768-row chunk


@pytest.fixture(scope="module")
def big_data():
    """Three record batches of float64 (nulls hold 1e300 garbage), float32, int32 and uint64
    columns; returns (table, {column: (valid values, null count)})."""
    rng = np.random.default_rng(12345)
    batches, parts = [], {"f64": [], "f32": [], "i32": [], "u64": []}
    nulls = dict.fromkeys(parts, 0)
    for n in BATCH_SIZES:
        valid = rng.random(n) > 0.1
        cols = {
            "f64": rng.normal(5.0, 2.0, n),
            "f32": rng.normal(-3.0, 0.5, n).astype(np.float32),
            "i32": rng.integers(-(2**31), 2**31, n, dtype=np.int64).astype(np.int32),
            "u64": rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True),
        }
        cols["u64"][:3] = 2**64 - 1
        arrays = {}
        for key, values in cols.items():
            garbage = {"f64": 1e300, "f32": np.float32(3e38), "i32": 2**31 - 1, "u64": 2**64 - 1}[key]
            arrays[key] = masked_array(values, valid, garbage)
            parts[key].append(values[valid])
            nulls[key] += int((~valid).sum())
        batches.append(pa.record_batch(arrays))
    table = pa.Table.from_batches(batches)
    assert [b.num_rows for b in table.to_batches()] == list(BATCH_SIZES)
    return table, {k: (np.concatenate(v), nulls[k]) for k, v in parts.items()}


@pytest.fixture
def big_segment(big_data, seg_name, shm_dir):
    table, expected = big_data
    shmarrow.create(seg_name, table, dir=shm_dir)
    return seg_name, expected


def make(name, shm_dir, **columns):
    shmarrow.create(name, pa.table(columns), dir=shm_dir)
    return name


# ---------------------------------------------------------------- 1. reduce vs NumPy


@pytest.mark.parametrize("ddof", [0, 1])
def test_reduce_float64_matches_numpy(big_segment, shm_dir, ddof):
    name, expected = big_segment
    values, nulls = expected["f64"]
    got = shmarrow.reduce(name, ["f64"], ddof=ddof, dir=shm_dir)
    assert list(got) == ["f64"] and tuple(got["f64"]) == STATS
    assert_float_stats(got["f64"], values, nulls, ddof)
    assert got["f64"]["max"] < 1e299  # the garbage under the nulls was skipped


def test_reduce_float32_matches_numpy(big_segment, shm_dir):
    name, expected = big_segment
    values, nulls = expected["f32"]
    for ddof in (0, 1):
        got = shmarrow.reduce(name, ["f32"], ddof=ddof, dir=shm_dir)["f32"]
        assert_float_stats(got, values.astype(np.float64), nulls, ddof)


def test_reduce_float16(seg_name, shm_dir):
    rng = np.random.default_rng(7)
    values = rng.normal(0, 10, 50_000).astype(np.float16)
    valid = rng.random(values.size) > 0.2
    make(seg_name, shm_dir, h=masked_array(values, valid, np.float16(60000)))
    got = shmarrow.reduce(seg_name, dir=shm_dir)["h"]
    assert_float_stats(got, values[valid].astype(np.float64), int((~valid).sum()))


def test_reduce_default_columns_are_the_numeric_top_level_ones(big_segment, shm_dir):
    name, expected = big_segment
    got = shmarrow.reduce(name, dir=shm_dir)
    assert list(got) == ["f64", "f32", "i32", "u64"]
    ints, nulls = expected["i32"]
    assert got["i32"]["sum"] == sum(int(x) for x in ints) and got["i32"]["null_count"] == nulls
    u64, _ = expected["u64"]
    assert got["u64"]["sum"] == sum(int(x) for x in u64)  # far beyond 2**64
    assert got["u64"]["max"] == 2**64 - 1 and type(got["u64"]["max"]) is int


@pytest.mark.parametrize("np_type", INT_TYPES, ids=lambda t: np.dtype(t).name)
def test_reduce_integers_exact(np_type, seg_name, shm_dir):
    info = np.iinfo(np_type)
    rng = np.random.default_rng(info.bits)
    n = 70_000  # three chunks
    values = rng.integers(info.min, info.max, n, dtype=np_type, endpoint=True)
    values[:5] = [info.min, info.max, info.max, info.min, 0]
    values[-1] = info.max
    valid = rng.random(n) > 0.05
    valid[:5] = True
    valid[-1] = True
    make(seg_name, shm_dir, x=masked_array(values, valid, info.max), dummy=pa.array(np.zeros(n)))
    for ddof in (0, 1):
        got = shmarrow.reduce(seg_name, ["x"], ddof=ddof, dir=shm_dir)["x"]
        kept = [int(v) for v in values[valid]]
        exact_sum = sum(kept)
        assert got["count"] == len(kept) and got["null_count"] == n - len(kept)
        assert type(got["sum"]) is int and got["sum"] == exact_sum
        assert type(got["min"]) is int and got["min"] == info.min
        assert type(got["max"]) is int and got["max"] == info.max
        mean = Fraction(exact_sum, len(kept))
        assert rel_close(got["mean"], float(mean))
        s2 = sum(v * v for v in kept)
        var = (Fraction(s2) - Fraction(exact_sum) ** 2 / len(kept)) / (len(kept) - ddof)
        assert rel_close(got["var"], float(var), 1e-9), (got["var"], float(var))
        assert rel_close(got["std"], math.sqrt(var), 1e-9)


def test_reduce_uint64_all_max_does_not_overflow(seg_name, shm_dir):
    n = 100_000
    make(seg_name, shm_dir, u=pa.array(np.full(n, 2**64 - 1, dtype=np.uint64)))
    got = shmarrow.reduce(seg_name, dir=shm_dir, ddof=1)["u"]
    assert got["sum"] == n * (2**64 - 1)
    assert got["min"] == got["max"] == 2**64 - 1
    assert got["mean"] == float(2**64 - 1) and got["var"] == 0.0 and got["std"] == 0.0


def test_reduce_int64_extremes(seg_name, shm_dir):
    lo, hi = -(2**63), 2**63 - 1
    make(seg_name, shm_dir, i=pa.array([hi, hi, lo, None, lo, lo, hi], pa.int64()))
    got = shmarrow.reduce(seg_name, dir=shm_dir)["i"]
    assert got["sum"] == 3 * hi + 3 * lo == -3
    assert (got["min"], got["max"], got["count"], got["null_count"]) == (lo, hi, 6, 1)
    assert got["mean"] == -0.5  # the exact sum -3 over 6 values


# ---------------------------------------------------------------- 2. hard inputs


def test_cancellation_sum_is_exact(seg_name, shm_dir):
    xs = [1e16, 1.0, -1e16]
    make(seg_name, shm_dir, x=pa.array(xs))
    got = shmarrow.reduce(seg_name, dir=shm_dir)["x"]
    assert got["sum"] == math.fsum(xs) == 1.0
    assert sum(xs) != 1.0  # naive summation would fail
    assert got["mean"] == 1.0 / 3


def test_cancellation_across_chunks_and_batches(seg_name, shm_dir):
    # the big terms land in different chunks and batches
    a = np.zeros(40_000)
    a[0], a[35_000] = 1e16, 3.0
    b = np.zeros(33_000)
    b[-1] = -1e16
    table = pa.Table.from_batches([pa.record_batch({"x": a}), pa.record_batch({"x": b})])
    shmarrow.create(seg_name, table, dir=shm_dir)
    for threads in (1, 3):
        assert shmarrow.reduce(seg_name, threads=threads, dir=shm_dir)["x"]["sum"] == 3.0


def test_tiny_variance_on_huge_offset_matches_fractions(seg_name, shm_dir):
    rng = np.random.default_rng(99)
    n = 70_000  # three chunks, merged with Chan's update
    xs = 1e9 + rng.uniform(-1e-3, 1e-3, n)
    parts = np.split(xs, [25_000, 60_000])
    shmarrow.create(seg_name, pa.Table.from_batches([pa.record_batch({"x": p}) for p in parts]), dir=shm_dir)
    # exact mean and variance of the float values: each is a multiple of 2**-23
    fr = [Fraction(float(x)) for x in xs]
    scale = 2**23
    ints = [int(f * scale) for f in fr]
    assert all(Fraction(k, scale) == f for k, f in zip(ints[:100], fr[:100]))
    s1, s2 = sum(ints), sum(k * k for k in ints)
    mean = Fraction(s1, n * scale)
    for ddof in (0, 1):
        var = Fraction(n * s2 - s1 * s1, n * scale * scale) / (n - ddof)
        got = shmarrow.reduce(seg_name, ddof=ddof, dir=shm_dir)["x"]
        assert rel_close(got["mean"], float(mean), 1e-15)
        assert rel_close(got["var"], float(var), 1e-9), (got["var"], float(var))
        assert rel_close(got["std"], math.sqrt(var), 1e-9)
    # the textbook one-pass formula would be useless here
    naive = float(np.mean(xs * xs) - np.mean(xs) ** 2)
    assert not rel_close(naive, float(Fraction(n * s2 - s1 * s1, n * n * scale * scale)), 1e-3)


def test_all_null_columns(seg_name, shm_dir):
    make(seg_name, shm_dir, f=pa.array([None] * 5, pa.float64()), i=pa.array([None] * 5, pa.int16()))
    got = shmarrow.reduce(seg_name, ddof=0, dir=shm_dir)
    for col, zero in (("f", 0.0), ("i", 0)):
        s = got[col]
        assert (s["count"], s["null_count"]) == (0, 5)
        assert s["sum"] == zero and type(s["sum"]) is type(zero)
        assert math.isnan(s["mean"]) and math.isnan(s["var"]) and math.isnan(s["std"])
        assert s["min"] is None and s["max"] is None


def test_empty_table(seg_name, shm_dir):
    make(seg_name, shm_dir, f=pa.array([], pa.float64()), i=pa.array([], pa.uint32()))
    got = shmarrow.reduce(seg_name, dir=shm_dir)
    assert list(got) == ["f", "i"]
    for col in ("f", "i"):
        s = got[col]
        assert (s["count"], s["null_count"], s["sum"]) == (0, 0, 0)
        assert math.isnan(s["mean"]) and math.isnan(s["var"])
        assert s["min"] is None and s["max"] is None
    assert type(got["i"]["sum"]) is int and type(got["f"]["sum"]) is float
    with pytest.raises(shmarrow.ShmarrowError, match="nope"):
        shmarrow.reduce(seg_name, ["nope"], dir=shm_dir)


def test_single_value(seg_name, shm_dir):
    make(seg_name, shm_dir, x=pa.array([2.5, None]))
    s = shmarrow.reduce(seg_name, dir=shm_dir)["x"]
    assert (s["count"], s["sum"], s["mean"], s["var"], s["std"], s["min"], s["max"]) == (1, 2.5, 2.5, 0.0, 0.0, 2.5, 2.5)
    s1 = shmarrow.reduce(seg_name, ddof=1, dir=shm_dir)["x"]
    assert math.isnan(s1["var"]) and math.isnan(s1["std"]) and s1["mean"] == 2.5


def test_nan_propagates_like_numpy(seg_name, shm_dir):
    # the NaN sits in the last of several chunks; NaN under a null must not count
    xs = np.linspace(0, 1, 70_000)
    xs[69_000] = np.nan
    valid = np.ones(xs.size, bool)
    valid[10] = False
    make(seg_name, shm_dir, x=masked_array(xs, valid, np.nan), clean=masked_array(np.ones(xs.size), valid, np.nan))
    got = shmarrow.reduce(seg_name, dir=shm_dir)
    s = got["x"]
    assert s["count"] == xs.size - 1 and s["null_count"] == 1
    for key in ("sum", "mean", "var", "std", "min", "max"):
        assert isinstance(s[key], float) and math.isnan(s[key]), key
    c = got["clean"]
    assert (c["sum"], c["mean"], c["var"], c["min"], c["max"]) == (xs.size - 1, 1.0, 0.0, 1.0, 1.0)


def test_infinities_like_numpy(seg_name, shm_dir):
    make(seg_name, shm_dir,
         a=pa.array([math.inf, 1.0]), b=pa.array([math.inf, -math.inf]), c=pa.array([-math.inf, 5.0]))
    got = shmarrow.reduce(seg_name, dir=shm_dir)
    a, b, c = got["a"], got["b"], got["c"]
    with np.errstate(invalid="ignore"):
        assert a["sum"] == np.sum([math.inf, 1.0]) == math.inf
        assert a["mean"] == math.inf and math.isnan(a["var"]) and math.isnan(a["std"])
        assert (a["min"], a["max"]) == (1.0, math.inf)
        assert math.isnan(b["sum"]) and math.isnan(b["mean"]) and math.isnan(b["var"])
        assert (b["min"], b["max"]) == (-math.inf, math.inf)
        assert c["sum"] == -math.inf and c["mean"] == -math.inf and math.isnan(c["var"])


def test_overflowing_variance_is_inf_like_numpy(seg_name, shm_dir):
    xs = [1e200, -1e200, 1e200]
    make(seg_name, shm_dir, x=pa.array(xs))
    with np.errstate(over="ignore", invalid="ignore"):
        assert np.nanvar(xs) == math.inf
    got = shmarrow.reduce(seg_name, dir=shm_dir)["x"]
    assert got["sum"] == 1e200  # fine
    assert got["var"] == math.inf and got["std"] == math.inf


# ---------------------------------------------------------------- 3. determinism and the CLI


def test_results_bitwise_identical_for_any_thread_count(big_segment, shm_dir):
    name, _ = big_segment
    for ddof in (0, 1):
        runs = [bits(shmarrow.reduce(name, threads=t, ddof=ddof, dir=shm_dir)) for t in (1, 2, 7, None)]
        assert runs[0] == runs[1] == runs[2] == runs[3]


def test_ops_selects_and_orders_nothing_else(big_segment, shm_dir):
    name, _ = big_segment
    full = shmarrow.reduce(name, ["f64", "u64"], dir=shm_dir)
    some = shmarrow.reduce(name, ["u64", "f64"], ops=["mean", "std", "count"], dir=shm_dir)
    assert list(some) == ["u64", "f64"]
    for col in some:
        assert set(some[col]) == {"mean", "std", "count"}
        assert bits(some[col]) == bits({k: full[col][k] for k in some[col]})


def test_cli_processes_agree_with_python(big_segment, shm_dir, shmarrow_bin):
    name, _ = big_segment
    for ddof in (0, 1):
        py = shmarrow.reduce(name, ddof=ddof, dir=shm_dir)
        for procs in ("2", "3"):
            cli = cli_reduce(shmarrow_bin, shm_dir, name, "--processes", procs, "--ddof", str(ddof))
            assert_results_close(cli, py)
        threads = cli_reduce(shmarrow_bin, shm_dir, name, "--threads", "3", "--ddof", str(ddof))
        assert bits(threads) == bits(py)  # same chunking, same in-order merge


def test_cli_processes_more_workers_than_chunks(seg_name, shm_dir, shmarrow_bin):
    make(seg_name, shm_dir,
         i=pa.array([2**63 - 1, 2**63 - 1, None, 5], pa.int64()),
         x=pa.array([1.5, None, float("nan"), 2.0]),
         e=pa.array([None, None, None, None], pa.float32()),
         inf=pa.array([math.inf, 1.0, None, 2.0]))
    py = shmarrow.reduce(seg_name, dir=shm_dir)
    cli = cli_reduce(shmarrow_bin, shm_dir, seg_name, "--processes", "3")
    assert_results_close(cli, py)
    assert cli["i"]["sum"] == 2 * (2**63 - 1) + 5 and type(cli["i"]["sum"]) is int
    assert cli["e"]["min"] is None and math.isnan(cli["e"]["mean"])
    assert cli["inf"]["sum"] == math.inf and math.isnan(cli["inf"]["var"])
    ops = cli_reduce(shmarrow_bin, shm_dir, seg_name, "-c", "x", "--ops", "mean,std", "--processes", "2")
    assert list(ops) == ["x"] and set(ops["x"]) == {"mean", "std"}


def test_python_processes_equal_threads_bit_for_bit_and_leave_nothing(big_data, iso_dir):
    table, _ = big_data
    shmarrow.create("d", table, dir=iso_dir)
    for ddof in (0, 1):
        threads = shmarrow.reduce("d", ddof=ddof, dir=iso_dir)
        for procs in (1, 3):
            got = shmarrow.reduce("d", ddof=ddof, processes=procs, dir=iso_dir)
            assert bits(got) == bits(threads), (ddof, procs)
    some = shmarrow.reduce("d", ["u64", "f64"], ops=["sum", "max"], processes=2, dir=iso_dir)
    assert list(some) == ["u64", "f64"] and set(some["f64"]) == {"sum", "max"}
    assert os.listdir(iso_dir) == ["d"]  # the results segments are gone


@pytest.mark.parametrize("bad", [0, 257, -1, 2**64])
def test_python_processes_out_of_range(bad, big_segment, shm_dir):
    name, _ = big_segment
    with pytest.raises((ValueError, OverflowError)):
        shmarrow.reduce(name, processes=bad, dir=shm_dir)
    with pytest.raises(ValueError, match="not both"):
        shmarrow.reduce(name, threads=2, processes=2, dir=shm_dir)


def test_python_worker_errors_are_clear(big_segment, shm_dir):
    name, _ = big_segment
    usage = subprocess.run([sys.executable, "-m", "shmarrow._worker"], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage" in usage.stderr
    bad = subprocess.run([sys.executable, "-m", "shmarrow._worker", shm_dir, "auto", name,
                          "pytest-no-such-results", "0", "1", "f64"], capture_output=True, text=True)
    assert bad.returncode == 1 and "SegmentNotFound" in bad.stderr.strip().splitlines()[-1]
    assert "Traceback" not in bad.stderr


# ---------------------------------------------------------------- 4. struct children


def test_struct_child_under_null_parent_is_not_counted(seg_name, shm_dir, shmarrow_bin):
    x = pa.array([1.0, 1000.0, 3.0, None, 5.0])  # 1000.0 lies under a null parent
    y = pa.array([10, 20, 30, 40, 50], pa.int32())
    pos = pa.StructArray.from_arrays([x, y], names=["x", "y"], mask=pa.array([False, True, False, False, False]))
    assert pos.field("x")[1].as_py() == 1000.0 and not pos[1].is_valid
    make(seg_name, shm_dir, pos=pos, **{"a.b": pa.array([7, 8], pa.int8()).take([0, 1, 0, 1, 0])})
    got = shmarrow.reduce(seg_name, ["pos.x", "pos.y", "a.b"], dir=shm_dir)
    px, py = got["pos.x"], got["pos.y"]
    assert (px["count"], px["null_count"], px["sum"], px["max"]) == (3, 2, 9.0, 5.0)
    assert_float_stats(px, np.array([1.0, 3.0, 5.0]), 2)
    assert (py["count"], py["null_count"], py["sum"], py["min"], py["max"]) == (4, 1, 130, 10, 50)
    assert got["a.b"]["sum"] == 7 * 3 + 8 * 2  # an exact top-level name containing a dot
    # struct columns are not numeric: not reduced by default
    assert list(shmarrow.reduce(seg_name, dir=shm_dir)) == ["a.b"]
    cli = cli_reduce(shmarrow_bin, shm_dir, seg_name, "-c", "pos.x", "--processes", "2")
    assert_results_close(cli, {"pos.x": px})


# ---------------------------------------------------------------- 5. errors


@pytest.mark.parametrize("column, reason", [
    ("nope", "no such column"),
    ("s", "not a numeric"),
    ("pos.y", "no field"),
    ("pos", "not a numeric"),
    ("s.x", "not a struct"),
])
def test_reduce_invalid_column(column, reason, seg_name, shm_dir, shmarrow_bin):
    make(seg_name, shm_dir, x=pa.array([1.0]), s=pa.array(["a"]),
         pos=pa.array([{"x": 1.0}], pa.struct([("x", pa.float64())])))
    with pytest.raises(shmarrow.ShmarrowError) as info:
        shmarrow.reduce(seg_name, ["x", column], dir=shm_dir)
    assert f'column "{column}"' in str(info.value) and reason in str(info.value)
    assert seg_name in str(info.value)
    r = run_cli(shmarrow_bin, "--dir", shm_dir, "reduce", seg_name, "-c", column, check=False)
    assert r.returncode != 0 and column in r.stderr


def test_reduce_unknown_op_and_missing_segment(seg_name, shm_dir):
    make(seg_name, shm_dir, x=pa.array([1.0]))
    with pytest.raises(ValueError, match="median"):
        shmarrow.reduce(seg_name, ops=["mean", "median"], dir=shm_dir)
    with pytest.raises(shmarrow.SegmentNotFound):
        shmarrow.reduce(seg_name + "-missing", dir=shm_dir)


# ---------------------------------------------------------------- 6. map_inplace


def _attached_both(name, shm_dir):
    """The segment attached twice before any write: by shmarrow and by stock pyarrow."""
    ours = shmarrow.attach(name, dir=shm_dir)
    stock = pa.ipc.open_file(pa.memory_map(shmarrow.path(name, dir=shm_dir))).read_all()
    return ours, stock


def _check(tables, column, expected, valid, length):
    for t in tables:
        col = t.column(column)
        assert len(col) == length and col.null_count == int((~valid).sum())
        got = col.to_numpy(zero_copy_only=False)
        mask = col.is_null().to_numpy(zero_copy_only=False)
        assert np.array_equal(mask, ~valid)
        assert np.array_equal(got[valid], expected[valid])


def test_map_float_ops_visible_to_earlier_readers(seg_name, shm_dir):
    rng = np.random.default_rng(3)
    sizes = (40_000, 1_000, 35_000)
    data = rng.normal(0, 3, sum(sizes))
    valid = rng.random(data.size) > 0.1
    arr = masked_array(data, valid, 0.0)
    batches, start = [], 0
    for n in sizes:
        batches.append(pa.record_batch({"x": arr.slice(start, n), "k": pa.array(np.arange(n))}))
        start += n
    shmarrow.create(seg_name, pa.Table.from_batches(batches), dir=shm_dir)
    tables = _attached_both(seg_name, shm_dir)
    expected = np.where(valid, data, 0.0)
    steps = [
        (("square",), lambda a: a * a),
        (("scale", 0.5), lambda a: a * 0.5),
        (("add", -1.25), lambda a: a + -1.25),
        (("clip", -1.0, 2.0), lambda a: np.clip(a, -1.0, 2.0)),
    ]
    for i, ((op, *args), fn) in enumerate(steps):
        shmarrow.map_inplace(seg_name, "x", op, *args, threads=[1, 2, 7, None][i], dir=shm_dir)
        expected = fn(expected)
        _check(tables, "x", expected, valid, data.size)
    assert tables[0].column("k").to_pylist() == [*range(40_000), *range(1_000), *range(35_000)]
    assert [b.num_rows for b in tables[1].to_batches()] == list(sizes)
    # a fresh attach sees the same, and metadata (null count) is unchanged
    fresh = shmarrow.attach(seg_name, dir=shm_dir)
    _check([fresh], "x", expected, valid, data.size)
    stats = shmarrow.reduce(seg_name, ["x"], dir=shm_dir)["x"]
    assert stats["null_count"] == int((~valid).sum())
    assert stats["min"] >= -1.0 and stats["max"] <= 2.0


def test_map_int32_scale_and_clip_wrap_like_numpy_when_asked(seg_name, shm_dir):
    data = np.array([0, 1, -7, 2**31 - 1, -(2**31), 10**9, 123_456, -5], dtype=np.int32)
    valid = np.array([1, 1, 1, 1, 1, 1, 0, 1], bool)
    make(seg_name, shm_dir, i=masked_array(data, valid, 123_456))
    tables = _attached_both(seg_name, shm_dir)
    with pytest.raises(OverflowError, match="does not fit i32.*nothing was written"):
        shmarrow.map_inplace(seg_name, "i", "scale", 3, dir=shm_dir)
    _check(tables, "i", data, valid, data.size)
    shmarrow.map_inplace(seg_name, "i", "scale", 3, dir=shm_dir, wrap=True)
    expected = data * np.int32(3)  # wraps
    assert expected.dtype == np.int32 and expected[3] == 2**31 - 3
    _check(tables, "i", expected, valid, data.size)
    shmarrow.map_inplace(seg_name, "i", "clip", -1000, 1000, dir=shm_dir)
    expected = np.clip(expected, -1000, 1000)
    _check(tables, "i", expected, valid, data.size)
    with pytest.raises(OverflowError):
        shmarrow.map_inplace(seg_name, "i", "add", -2**31, dir=shm_dir)
    shmarrow.map_inplace(seg_name, "i", "add", -2**31, dir=shm_dir, wrap=True)
    expected = expected + np.int32(-(2**31))
    _check(tables, "i", expected, valid, data.size)
    assert tables[0].column("i").type == pa.int32()


def test_map_square_twice_on_int32_raises_instead_of_wrapping(seg_name, shm_dir):
    # The case: square twice used to give -2146556319 silently.
    make(seg_name, shm_dir, i=pa.array([3, -1000, 46_000], pa.int32()))
    shmarrow.map_inplace(seg_name, "i", "square", dir=shm_dir)
    assert shmarrow.attach(seg_name, dir=shm_dir).column("i").to_pylist() == [9, 1_000_000, 2_116_000_000]
    with pytest.raises(OverflowError, match="2116000000 squared = 4477456000000000000 does not fit i32"):
        shmarrow.map_inplace(seg_name, "i", "square", dir=shm_dir)
    assert shmarrow.attach(seg_name, dir=shm_dir).column("i").to_pylist() == [9, 1_000_000, 2_116_000_000]


@pytest.mark.parametrize("np_type", INT_TYPES, ids=lambda t: np.dtype(t).name)
def test_map_integer_square_and_add_wrap(np_type, seg_name, shm_dir):
    info = np.iinfo(np_type)
    data = np.array([info.min, info.max, 0, 1, info.max // 2 + 1, 3], dtype=np_type)
    valid = np.ones(data.size, bool)
    make(seg_name, shm_dir, v=pa.array(data))
    tables = _attached_both(seg_name, shm_dir)
    for op, args in (("square", ()), ("add", (int(info.max),)), ("scale", (2,))):
        with pytest.raises(OverflowError):
            shmarrow.map_inplace(seg_name, "v", op, *args, dir=shm_dir)
    _check(tables, "v", data, valid, data.size)
    shmarrow.map_inplace(seg_name, "v", "square", dir=shm_dir, wrap=True)
    expected = data * data
    _check(tables, "v", expected, valid, data.size)
    shmarrow.map_inplace(seg_name, "v", "add", int(info.max), dir=shm_dir, wrap=True)
    expected = expected + np.array(info.max, dtype=np_type)
    _check(tables, "v", expected, valid, data.size)
    assert tables[1].column("v").to_pylist() == [int(x) for x in expected]


@pytest.mark.parametrize("args", [("scale", 2.5), ("add", 0.1), ("clip", -1.5, 3), ("add", 128), ("add", -129)])
def test_map_int_column_rejects_constants_that_are_not_fitting_integers(args, seg_name, shm_dir):
    make(seg_name, shm_dir, b=pa.array([1, 2, 3], pa.int8()))
    with pytest.raises(ValueError) as info:
        shmarrow.map_inplace(seg_name, "b", *args, dir=shm_dir)
    assert '"b"' in str(info.value)
    assert shmarrow.attach(seg_name, dir=shm_dir).column("b").to_pylist() == [1, 2, 3]


def test_map_int_column_rejects_float_typed_integral_constant(seg_name, shm_dir):
    make(seg_name, shm_dir, b=pa.array([1, 2, 3], pa.int32()))
    with pytest.raises(ValueError, match="3.0 is not an integer"):
        shmarrow.map_inplace(seg_name, "b", "scale", 3.0, dir=shm_dir)


def test_map_int64_constant_just_out_of_range_is_rejected(seg_name, shm_dir):
    make(seg_name, shm_dir, i=pa.array([0, 1], pa.int64()), u=pa.array([0, 1], pa.uint64()))
    with pytest.raises(ValueError):
        shmarrow.map_inplace(seg_name, "i", "add", 2**63, dir=shm_dir)
    with pytest.raises(ValueError):
        shmarrow.map_inplace(seg_name, "u", "add", 2**64, dir=shm_dir)
    with pytest.raises(OverflowError):  # not even a 128-bit integer
        shmarrow.map_inplace(seg_name, "u", "add", 2**200, dir=shm_dir)


def test_map_int64_large_constant_is_exact(seg_name, shm_dir):
    make(seg_name, shm_dir, i=pa.array([0, 1], pa.int64()))
    shmarrow.map_inplace(seg_name, "i", "add", 2**53 + 1, dir=shm_dir)
    assert shmarrow.attach(seg_name, dir=shm_dir).column("i").to_pylist() == [2**53 + 1, 2**53 + 2]


def test_map_errors(seg_name, shm_dir):
    make(seg_name, shm_dir, s=pa.array(["a", "b"]), x=pa.array([1.0, 2.0]), t=pa.array([True, False]),
         lst=pa.array([[1.0], [2.0, 3.0]]))
    for column, reason in (("s", "Utf8"), ("t", "Boolean"), ("lst", "List"), ("nope", "no such column")):
        with pytest.raises(shmarrow.ShmarrowError) as info:
            shmarrow.map_inplace(seg_name, column, "square", dir=shm_dir)
        assert f'column "{column}"' in str(info.value) and reason in str(info.value)
    with pytest.raises(ValueError, match="cube"):
        shmarrow.map_inplace(seg_name, "x", "cube", dir=shm_dir)
    with pytest.raises(ValueError):
        shmarrow.map_inplace(seg_name, "x", "scale", dir=shm_dir)  # missing constant
    with pytest.raises(ValueError, match="LO <= HI"):
        shmarrow.map_inplace(seg_name, "x", "clip", 2, 1, dir=shm_dir)
    with pytest.raises(shmarrow.SegmentNotFound):
        shmarrow.map_inplace(seg_name + "-missing", "x", "square", dir=shm_dir)
    assert shmarrow.attach(seg_name, dir=shm_dir).column("x").to_pylist() == [1.0, 2.0]


def test_map_struct_child_and_fixed_size_list(seg_name, shm_dir):
    pos = pa.StructArray.from_arrays([pa.array([1.0, 2.0, 3.0])], names=["x"], mask=pa.array([False, True, False]))
    fsl = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(6, dtype=np.float32)), 2)
    make(seg_name, shm_dir, pos=pos, v=fsl)
    (t,) = _attached_both(seg_name, shm_dir)[:1]
    shmarrow.map_inplace(seg_name, "pos.x", "scale", 10, dir=shm_dir)
    shmarrow.map_inplace(seg_name, "v", "add", 0.5, dir=shm_dir)
    assert t.column("pos").to_pylist() == [{"x": 10.0}, None, {"x": 30.0}]
    assert t.column("v").to_pylist() == [[0.5, 1.5], [2.5, 3.5], [4.5, 5.5]]


def test_map_on_zero_row_table(seg_name, shm_dir):
    make(seg_name, shm_dir, x=pa.array([], pa.float64()), i=pa.array([], pa.int32()))
    shmarrow.map_inplace(seg_name, "x", "square", dir=shm_dir)
    shmarrow.map_inplace(seg_name, "i", "add", 1, dir=shm_dir)
    with pytest.raises(ValueError, match="0.5"):
        shmarrow.map_inplace(seg_name, "i", "add", 0.5, dir=shm_dir)
    assert shmarrow.attach(seg_name, dir=shm_dir).num_rows == 0


def test_map_numpy_scalars_are_ints_or_floats_like_python_numbers(seg_name, shm_dir):
    make(seg_name, shm_dir, i=pa.array([1, 2, 3], pa.int32()), u=pa.array([0, 1, 2], pa.uint64()),
         x=pa.array([1.0, 2.0, 4.0]))
    shmarrow.map_inplace(seg_name, "i", "add", np.int64(1), dir=shm_dir)
    shmarrow.map_inplace(seg_name, "i", "scale", np.uint8(2), dir=shm_dir)
    shmarrow.map_inplace(seg_name, "i", "clip", np.int16(5), np.int64(7), dir=shm_dir)
    shmarrow.map_inplace(seg_name, "u", "add", np.uint64(2**63), dir=shm_dir)  # exact, not rounded
    shmarrow.map_inplace(seg_name, "x", "scale", np.float32(0.5), dir=shm_dir)
    shmarrow.map_inplace(seg_name, "x", "add", np.int64(1), dir=shm_dir)
    t = shmarrow.attach(seg_name, dir=shm_dir)
    assert t.column("i").to_pylist() == [5, 6, 7]
    assert t.column("u").to_pylist() == [2**63, 2**63 + 1, 2**63 + 2]
    assert t.column("x").to_pylist() == [1.5, 2.0, 3.0]
    # Refused before anything is opened: bools, strings, None, containers; NaN, inf and
    # float-typed constants for integer columns.
    for bad in (True, np.bool_(False), "1", None, [1], b"1"):
        with pytest.raises(TypeError):
            shmarrow.map_inplace(seg_name, "i", "add", bad, dir=shm_dir)
    for bad in (math.nan, np.float64("nan"), math.inf, np.float32(1.0), 1e30):
        with pytest.raises(ValueError, match='column "i"'):
            shmarrow.map_inplace(seg_name, "i", "add", bad, dir=shm_dir)
    with pytest.raises(ValueError, match="LO <= HI"):
        shmarrow.map_inplace(seg_name, "x", "clip", math.nan, 1.0, dir=shm_dir)
    assert shmarrow.attach(seg_name, dir=shm_dir).column("i").to_pylist() == [5, 6, 7]
    # Float columns keep IEEE behaviour: NaN and inf constants are values like any other.
    shmarrow.map_inplace(seg_name, "x", "add", math.inf, dir=shm_dir)
    assert shmarrow.attach(seg_name, dir=shm_dir).column("x").to_pylist() == [math.inf] * 3
    for threads in (0, -1, 10**6):
        with pytest.raises((ValueError, OverflowError)):
            shmarrow.map_inplace(seg_name, "x", "square", threads=threads, dir=shm_dir)


def _messages(data: bytes):
    """``(start, end)`` of each message's metadata (schema first), and where the footer starts."""
    footer_start = len(data) - 10 - struct.unpack_from("<i", data, len(data) - 10)[0]
    found = []
    for i in range(8, footer_start, 8):
        if data[i:i + 4] == b"\xff" * 4 and struct.unpack_from("<i", data, i + 4)[0] > 0:
            found.append((i, i + 8 + struct.unpack_from("<i", data, i + 4)[0]))
    return found, footer_start


def _buffer_struct(data: bytes, length: int, where) -> int:
    """Position of the one 16-byte ``{offset, length}`` buffer struct with this ``length`` in
    the metadata range ``where``."""
    hits = [i for i in range(where[0], where[1] - 15, 8)
            if struct.unpack_from("<qq", data, i)[1] == length]
    assert len(hits) == 1, (length, hits)
    return hits[0]


def _craft_overlaps(new_name, shm_dir):
    """Readable segments whose writable value ranges overlap: (name, column) pairs."""
    crafted = []

    def craft(name, patch):
        path = shmarrow.path(name, dir=shm_dir)
        data = bytearray(open(path, "rb").read())
        messages, footer_start = _messages(bytes(data))
        patch(data, messages, footer_start)
        open(path, "wb").write(bytes(data))

    # Two columns sharing bytes: b's values (the second 72-byte buffer; buffers start at
    # multiples of 64, so 72 is no offset) start at a's.
    def columns(data, messages, _):
        batch = messages[1]
        hits = [i for i in range(batch[0], batch[1] - 15, 8) if struct.unpack_from("<qq", data, i)[1] == 72]
        assert len(hits) == 2
        data[hits[1]:hits[1] + 8] = data[hits[0]:hits[0] + 8]

    name = new_name()
    make(name, shm_dir, a=pa.array(np.arange(9, dtype=np.int64)), b=pa.array(np.arange(100, 109, dtype=np.int64)))
    craft(name, columns)
    assert shmarrow.attach(name, dir=shm_dir).column("b").to_pylist() == list(range(9))
    crafted.append((name, "b"))

    # A values buffer over an offsets buffer: n's values (16 bytes) start at s's offsets (20).
    def offsets(data, messages, _):
        n = _buffer_struct(bytes(data), 16, messages[1])
        s = _buffer_struct(bytes(data), 20, messages[1])
        data[n:n + 8] = data[s:s + 8]

    name = new_name()
    make(name, shm_dir, s=pa.array(["ab", "c", "", "def"]), n=pa.array([9, 9, 9, 9], pa.int32()))
    craft(name, offsets)
    assert shmarrow.attach(name, dir=shm_dir).column("n").to_pylist() == [0, 2, 3, 3]
    crafted.append((name, "n"))

    # Two batches sharing bytes: the footer's second block is a copy of the first.
    def batches(data, messages, footer_start):
        assert len(messages) == 3  # schema, batch 0, batch 1
        blocks = [i for start, _ in messages[1:] for i in range(footer_start, len(data) - 7, 8)
                  if struct.unpack_from("<q", data, i)[0] == start]
        assert len(blocks) == 2
        data[blocks[1]:blocks[1] + 24] = data[blocks[0]:blocks[0] + 24]

    name = new_name()
    x = lambda start: pa.record_batch({"x": pa.array(np.arange(start, start + 8, dtype=np.int64))})
    shmarrow.create(name, pa.Table.from_batches([x(0), x(100)]), dir=shm_dir)
    craft(name, batches)
    assert shmarrow.attach(name, dir=shm_dir).column("x").to_pylist() == [*range(8), *range(8)]
    crafted.append((name, "x"))
    return crafted


def test_overlapping_value_ranges_are_refused_for_writing(new_name, shm_dir, shmarrow_bin):
    for name, column in _craft_overlaps(new_name, shm_dir):
        before = shmarrow.attach(name, dir=shm_dir)
        with pytest.raises(shmarrow.CorruptSegment, match="cannot be written in place.*overlaps"):
            shmarrow.map_inplace(name, column, "add", 1, dir=shm_dir)
        r = run_cli(shmarrow_bin, "--dir", shm_dir, "map", name, "-c", column, "--op", "add", "1", check=False)
        assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
        assert "cannot be written in place" in r.stderr
        assert shmarrow.attach(name, dir=shm_dir).equals(before)


def test_map_cli_on_zero_row_table(seg_name, shm_dir, shmarrow_bin):
    make(seg_name, shm_dir, x=pa.array([], pa.float64()))
    for extra in ([], ["--processes", "3"]):
        r = run_cli(shmarrow_bin, "--dir", shm_dir, "map", seg_name, "-c", "x", "--op", "square", *extra,
                    check=False)
        assert r.returncode == 0 and "panicked" not in r.stderr, r.stderr


def test_map_cli_processes_matches_numpy(seg_name, shm_dir, shmarrow_bin):
    rng = np.random.default_rng(11)
    sizes = (50_000, 20_001, 40_000)
    batches = []
    for n in sizes:
        valid = rng.random(n) > 0.2
        batches.append(pa.record_batch({
            "x": masked_array(rng.normal(0, 1, n), valid, 0.0),
            "i": pa.array(rng.integers(-100, 100, n, dtype=np.int16)),
        }))
    table = pa.Table.from_batches(batches)
    shmarrow.create(seg_name, table, dir=shm_dir)
    before = shmarrow.attach(seg_name, dir=shm_dir)
    x0 = table.column("x").fill_null(0.0).to_numpy()
    valid = ~table.column("x").is_null().to_numpy(zero_copy_only=False)
    run_cli(shmarrow_bin, "--dir", shm_dir, "map", seg_name, "-c", "x", "--op", "add", "1", "--processes", "3")
    _check([before], "x", x0 + 1, valid, len(x0))
    run_cli(shmarrow_bin, "--dir", shm_dir, "map", seg_name, "-c", "i", "--op", "scale", "-3", "--processes", "3")
    i0 = table.column("i").to_numpy()
    _check([before], "i", i0 * np.int16(-3), np.ones(len(i0), bool), len(i0))
    r = run_cli(shmarrow_bin, "--dir", shm_dir, "map", seg_name, "-c", "i", "--op", "add", "0.5",
                "--processes", "3", check=False)
    assert r.returncode != 0 and "0.5" in r.stderr
    _check([before], "i", i0 * np.int16(-3), np.ones(len(i0), bool), len(i0))


# -------------------------------------------------- permissions (root only; like test_errors.py)

NOBODY = ["--reuid=65534", "--regid=65534", "--clear-groups"]


def _as_nobody(argv):
    env = {"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1", "HOME": "/"}
    return subprocess.run(["setpriv", *NOBODY, *argv], capture_output=True, text=True, timeout=60, cwd="/", env=env)


MAP_AS_NOBODY = textwrap.dedent(
    """
    import os, sys
    import shmarrow                            # imported as root: the venv may be closed to nobody
    os.setgroups([]); os.setgid(65534); os.setuid(65534)
    name, d = sys.argv[1], sys.argv[2]
    t = shmarrow.attach(name, dir=d)          # reading is allowed (mode 0o644)
    try:
        shmarrow.map_inplace(name, "x", "square", dir=d)
    except shmarrow.AccessDenied as e:
        print("AccessDenied", e); sys.exit(3)
    print("mapped", t.column("x").to_pylist())
    """
)


def test_map_without_write_permission_fails(seg_name, shm_dir, shmarrow_bin):
    if os.geteuid() != 0:
        pytest.skip("permission tests need root (to run a process as user nobody)")
    created = shmarrow.create(seg_name, pa.table({"x": [1.0, 2.0, 3.0]}), dir=shm_dir, mode=0o644)
    assert stat.S_IMODE(os.stat(created.path).st_mode) == 0o644
    r = subprocess.run([sys.executable, "-c", MAP_AS_NOBODY, seg_name, shm_dir],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert r.stdout.startswith("AccessDenied") and seg_name in r.stdout
    assert "permission denied" in r.stdout.lower()
    if shutil.which("setpriv") and _as_nobody([shmarrow_bin, "--help"]).returncode == 0:
        r = _as_nobody([shmarrow_bin, "--dir", shm_dir, "map", seg_name, "-c", "x", "--op", "square"])
        assert r.returncode != 0 and "permission denied" in r.stderr.lower(), (r.stdout, r.stderr)
        r = _as_nobody([shmarrow_bin, "--dir", shm_dir, "map", seg_name, "-c", "x", "--op", "square",
                        "--processes", "2"])
        assert r.returncode != 0 and "permission denied" in r.stderr.lower(), (r.stdout, r.stderr)
    assert shmarrow.attach(seg_name, dir=shm_dir).column("x").to_pylist() == [1.0, 2.0, 3.0]


# ---------------------------------------------------------------- 7. locks


def _try_flock(path, how):
    """flock a separate open of ``path`` non-blockingly; True if acquired (then released)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def _in_thread(fn):
    done = threading.Event()
    errors = []

    def run():
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - reported to the test
            errors.append(e)
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    return done, errors


def test_shared_locks_coexist_and_exclude_writers(seg_name, shm_dir):
    make(seg_name, shm_dir, x=pa.array([1.0]))
    path = shmarrow.path(seg_name, dir=shm_dir)
    with shmarrow.lock(seg_name, dir=shm_dir):
        inner = {}
        done, errors = _in_thread(lambda: inner.setdefault("lock", shmarrow.lock(seg_name, shared=True, dir=shm_dir)))
        # 600 s: a hang guard, not a speed limit (a lock that waited would wait forever).
        assert done.wait(600), "a second shared lock must not wait for the first"
        assert not errors
        with pytest.raises(BlockingIOError):
            fd = os.open(path, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            finally:
                os.close(fd)
        assert _try_flock(path, fcntl.LOCK_SH)
        inner["lock"].release()
        assert not _try_flock(path, fcntl.LOCK_EX)  # the outer shared lock still holds
    assert _try_flock(path, fcntl.LOCK_EX)


def test_exclusive_lock_blocks_shared(seg_name, shm_dir):
    make(seg_name, shm_dir, x=pa.array([1.0]))
    path = shmarrow.path(seg_name, dir=shm_dir)
    with shmarrow.lock(seg_name, shared=False, dir=shm_dir) as held:
        assert not _try_flock(path, fcntl.LOCK_SH)
        assert not _try_flock(path, fcntl.LOCK_EX)
    assert _try_flock(path, fcntl.LOCK_SH)
    held.release()  # releasing twice is harmless
    lk = shmarrow.lock(seg_name, shared=False, dir=shm_dir)
    assert not _try_flock(path, fcntl.LOCK_SH)
    lk.release()
    assert _try_flock(path, fcntl.LOCK_EX)


def test_lock_waits_for_a_python_fcntl_holder_without_holding_the_gil(seg_name, shm_dir):
    make(seg_name, shm_dir, x=pa.array([1.0, 2.0]))
    path = shmarrow.path(seg_name, dir=shm_dir)
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        got = {}
        done, errors = _in_thread(lambda: got.setdefault("lock", shmarrow.lock(seg_name, dir=shm_dir)))
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.3:  # the main thread keeps running: the GIL is free
            time.sleep(0.01)
        assert not done.is_set(), "shared lock acquired while an exclusive flock was held"
        fcntl.flock(fd, fcntl.LOCK_UN)
        assert done.wait(600) and not errors  # a hang guard, not a speed limit
        assert not _try_flock(path, fcntl.LOCK_EX)
        got["lock"].release()
        assert _try_flock(path, fcntl.LOCK_EX)
    finally:
        os.close(fd)


def test_map_inplace_waits_for_readers_shared_lock(seg_name, shm_dir):
    make(seg_name, shm_dir, x=pa.array([1.0, 2.0, 3.0]))
    table = shmarrow.attach(seg_name, dir=shm_dir)
    with shmarrow.lock(seg_name, dir=shm_dir):
        done, errors = _in_thread(lambda: shmarrow.map_inplace(seg_name, "x", "scale", 2, dir=shm_dir))
        time.sleep(0.3)
        assert not done.is_set(), "map_inplace wrote while a reader held the shared lock"
        assert table.column("x").to_pylist() == [1.0, 2.0, 3.0]
    assert done.wait(600) and not errors  # a hang guard, not a speed limit
    assert table.column("x").to_pylist() == [2.0, 4.0, 6.0]


def test_lock_missing_segment(seg_name, shm_dir):
    with pytest.raises(shmarrow.SegmentNotFound):
        shmarrow.lock(seg_name, dir=shm_dir)
    with pytest.raises(shmarrow.InvalidName):
        shmarrow.lock("../etc/passwd", dir=shm_dir)


# ---------------------------------------------------------------- 8. row writers (partitioned)


_ROW_WORKER = textwrap.dedent("""
    import sys, shmarrow
    name, d, start, stop, hold = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    if hold == "hold":  # hold the rows' lock until stdin closes
        with shmarrow.lock(name, dir=d, rows=(start, stop)):
            print("held", flush=True)
            sys.stdin.read()
    else:
        print("locking", flush=True)
        shmarrow.map_inplace(name, "x", "square", rows=(start, stop), threads=1, dir=d)
        print("done", flush=True)
""")


def _row_worker(name, shm_dir, start, stop, hold=False):
    return subprocess.Popen([sys.executable, "-c", _ROW_WORKER, name, shm_dir, str(start),
                             str(stop), "hold" if hold else "map"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _finish(p):
    out, err = p.communicate()  # closes stdin: a holder releases and ends
    assert p.returncode == 0, err
    return out


def test_processes_write_disjoint_rows_at_once_and_overlapping_ones_wait(seg_name, shm_dir):
    make(seg_name, shm_dir, x=pa.array(np.arange(100, dtype=np.float64)))
    table = shmarrow.attach(seg_name, dir=shm_dir)
    holder = _row_worker(seg_name, shm_dir, 0, 50, hold=True)
    try:
        assert holder.stdout.readline() == "held\n"
        # Another process writes the other half while the first holds its rows.
        assert _finish(_row_worker(seg_name, shm_dir, 50, 100)) == "locking\ndone\n"
        # Overlapping rows, a reader's shared lock and a whole-segment writer wait.
        overlap = _row_worker(seg_name, shm_dir, 40, 60)
        assert overlap.stdout.readline() == "locking\n"
        reader = {}
        rdone, rerr = _in_thread(lambda: reader.setdefault("l", shmarrow.lock(seg_name, dir=shm_dir)))
        time.sleep(0.3)  # both are waiting by now if they wait at all
        assert overlap.poll() is None, "rows 40..60 written while another process held 0..50"
        assert not rdone.is_set(), "a reader's shared lock granted while rows were held"
    finally:
        _finish(holder)
    # The reader or the overlapping writer goes first; the other waits for it.
    assert rdone.wait(600) and not rerr  # a hang guard, not a speed limit
    reader["l"].release()
    assert _finish(overlap) == "done\n"
    want = np.arange(100, dtype=np.float64)
    want[50:100] **= 2  # the second process
    want[40:60] **= 2  # the overlapping one, after the holder released (it wrote nothing)
    assert table.column("x").to_numpy().tolist() == want.tolist()


@pytest.mark.parametrize("rows", [(5, 3), (0, 11), (-1, 5), (0, -1), (0, 2**64), (2**100, 2**100),
                                  (True, 5), (0.0, 5), ("0", 5), (None, 5)])
def test_row_bounds_outside_the_segment_are_refused(rows, seg_name, shm_dir):
    make(seg_name, shm_dir, x=pa.array(np.arange(10, dtype=np.float64)))
    for call in (lambda: shmarrow.map_inplace(seg_name, "x", "square", rows=rows, dir=shm_dir),
                 lambda: shmarrow.lock(seg_name, dir=shm_dir, rows=rows)):
        with pytest.raises(ValueError, match=r"rows"):
            call()
    assert shmarrow.attach(seg_name, dir=shm_dir).column("x").to_pylist() == list(map(float, range(10)))
    assert _try_flock(shmarrow.path(seg_name, dir=shm_dir), fcntl.LOCK_EX)  # nothing held


def test_map_inplace_rows_writes_those_rows_alone(seg_name, shm_dir):
    make(seg_name, shm_dir, x=pa.array(np.arange(10, dtype=np.int32)))
    shmarrow.map_inplace(seg_name, "x", "add", 100, rows=(np.int64(3), 7), dir=shm_dir)
    shmarrow.map_inplace(seg_name, "x", "add", 100, rows=(10, 10), dir=shm_dir)  # no row
    assert shmarrow.attach(seg_name, dir=shm_dir).column("x").to_pylist() == \
        [0, 1, 2, 103, 104, 105, 106, 7, 8, 9]
