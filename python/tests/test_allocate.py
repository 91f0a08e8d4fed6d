"""Tables filled in place before they are published (``shmarrow.allocate``, DESIGN.md section 6):
writable NumPy views straight into the segment's (not yet visible) file, atomic publish, and
nothing left behind when an allocation is dropped."""

from __future__ import annotations

import gc
import glob
import os
import stat
import time

import numpy as np
import pyarrow as pa
import pytest

import shmarrow

SPEC = {"x": "f8", "pos": ("f4", 3), "m": ("i2", (2, 2)), "n": "u8", "h": "f2", "b": "i1"}
SHAPES = {"x": (), "pos": (3,), "m": (2, 2), "n": (), "h": (), "b": ()}
DTYPES = {"x": np.float64, "pos": np.float32, "m": np.int16, "n": np.uint64, "h": np.float16, "b": np.int8}


def files_for(name, d):
    """Everything in ``d`` belonging to segment ``name``: the file and any publish temporaries."""
    found = glob.glob(os.path.join(glob.escape(d), glob.escape(name)))
    found += glob.glob(os.path.join(glob.escape(d), f".{glob.escape(name)}.*.tmp"))
    return sorted(found)


def temp_file(name, d):
    (tmp,) = glob.glob(os.path.join(glob.escape(d), f".{glob.escape(name)}.*.tmp"))
    return tmp


def fill(w, rows, seed=0):
    rng = np.random.default_rng(seed)
    want = {
        "x": rng.normal(size=rows),
        "pos": rng.normal(size=(rows, 3)).astype(np.float32),
        "m": rng.integers(-(2**15), 2**15, (rows, 2, 2)).astype(np.int16),
        "n": rng.integers(0, 2**64 - 1, rows, dtype=np.uint64, endpoint=True),
        "h": rng.normal(size=rows).astype(np.float16),
        "b": rng.integers(-128, 128, rows).astype(np.int8),
    }
    for k, v in want.items():
        w[k][...] = v
    return want


def as_numpy(column: pa.ChunkedArray, shape) -> np.ndarray:
    arr = column.combine_chunks()
    for _ in shape:
        arr = arr.flatten()
    return arr.to_numpy(zero_copy_only=False).reshape((len(column),) + shape)


def test_views_are_writable_numpy_arrays_in_the_temp_file(seg_name, shm_dir, maps, within):
    rows = 1000
    w = shmarrow.allocate(seg_name, SPEC, rows, dir=shm_dir)
    try:
        tmp = temp_file(seg_name, shm_dir)
        assert os.path.basename(tmp).startswith(f".{seg_name}.") and tmp.endswith(".tmp")
        ranges = maps(tmp)
        assert ranges, "the temp file is not mapped"
        for col, spec in SPEC.items():
            v = w[col]
            assert isinstance(v, np.ndarray)
            assert v.dtype == np.dtype(DTYPES[col]) and v.dtype.isnative
            assert v.shape == (rows,) + SHAPES[col]
            assert v.flags.writeable and v.flags.c_contiguous
            assert v.ctypes.data % v.dtype.itemsize == 0
            assert within(v.ctypes.data, v.nbytes, ranges), col
            assert not v.any(), "a fresh allocation reads as zeros"
            assert w[col] is v  # one view per column
        # the views are disjoint
        spans = sorted((w[c].ctypes.data, w[c].ctypes.data + w[c].nbytes) for c in SPEC)
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))
    finally:
        w.close()


def test_nothing_is_visible_before_publish_then_values_are_exact(seg_name, shm_dir):
    rows = 40_000  # more than one reduce chunk
    w = shmarrow.allocate(seg_name, SPEC, rows, dir=shm_dir)
    path = shmarrow.path(seg_name, dir=shm_dir)
    want = fill(w, rows)
    assert not os.path.lexists(path)
    with pytest.raises(shmarrow.SegmentNotFound):
        shmarrow.attach(seg_name, dir=shm_dir)
    assert seg_name not in [s["name"] for s in shmarrow.list(dir=shm_dir)]
    assert len(files_for(seg_name, shm_dir)) == 1  # only the temp file

    created = w.publish()
    assert created.name == seg_name and created.path == path
    assert files_for(seg_name, shm_dir) == [path]  # the temp file became the segment
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert created.nbytes == os.stat(path).st_size

    ours = shmarrow.attach(seg_name, dir=shm_dir, strict=True)
    stock = pa.ipc.open_file(pa.memory_map(path)).read_all()
    for table in (ours, stock):
        assert table.num_rows == rows and table.column_names == list(SPEC)
        for col in SPEC:
            got = as_numpy(table.column(col), SHAPES[col])
            assert got.dtype == np.dtype(DTYPES[col])
            assert np.array_equal(got, want[col]), col
            assert table.column(col).null_count == 0
    assert ours.schema.field("pos").type == pa.list_(pa.field("item", pa.float32(), nullable=False), 3)
    assert ours.schema.field("m").type.value_type == pa.list_(pa.field("item", pa.int16(), nullable=False), 2)

    # the published table reduces like the NumPy arrays it was filled from
    stats = shmarrow.reduce(seg_name, ["x", "n", "b", "h"], dir=shm_dir)
    assert stats["n"]["sum"] == sum(int(v) for v in want["n"])
    assert stats["b"]["sum"] == int(want["b"].astype(np.int64).sum())
    assert stats["x"]["min"] == want["x"].min() and stats["x"]["max"] == want["x"].max()
    assert abs(stats["x"]["mean"] - want["x"].mean()) <= 1e-12 * abs(want["x"].mean())
    assert stats["h"]["max"] == float(want["h"].max())


def test_publish_twice_raises_and_views_outlive_publish(seg_name, shm_dir):
    w = shmarrow.allocate(seg_name, {"x": "i4"}, 3, dir=shm_dir)
    view = w["x"]
    view[:] = [1, 2, 3]
    w.publish()
    with pytest.raises(shmarrow.ShmarrowError, match="already published"):
        w.publish()
    with pytest.raises(shmarrow.ShmarrowError, match="already published"):
        w["other"]
    assert view.tolist() == [1, 2, 3]  # still valid memory
    w.close()  # harmless after publish
    assert shmarrow.attach(seg_name, dir=shm_dir).column("x").to_pylist() == [1, 2, 3]


@pytest.mark.parametrize("how", ["close", "with", "garbage-collected"])
def test_unpublished_allocation_leaves_nothing(how, seg_name, shm_dir):
    if how == "close":
        w = shmarrow.allocate(seg_name, {"x": "f8"}, 100, dir=shm_dir)
        w["x"][:] = 1.0
        assert len(files_for(seg_name, shm_dir)) == 1
        w.close()
        with pytest.raises(shmarrow.ShmarrowError, match="closed"):
            w.publish()
    elif how == "with":
        with shmarrow.allocate(seg_name, {"x": "f8"}, 100, dir=shm_dir) as w:
            w["x"][:] = 1.0
            assert len(files_for(seg_name, shm_dir)) == 1
    else:
        w = shmarrow.allocate(seg_name, {"x": "f8"}, 100, dir=shm_dir)
        assert len(files_for(seg_name, shm_dir)) == 1
        del w
        gc.collect()
    assert files_for(seg_name, shm_dir) == []
    with pytest.raises(shmarrow.SegmentNotFound):
        shmarrow.attach(seg_name, dir=shm_dir)


@pytest.mark.parametrize("dtype", ["U4", "O", "c16", "c8", "?", "M8[s]", "V8", ("U2", 3)])
def test_unsupported_dtypes_raise_type_error(dtype, seg_name, shm_dir):
    with pytest.raises(TypeError):
        shmarrow.allocate(seg_name, {"ok": "f8", "bad": dtype}, 10, dir=shm_dir)
    assert files_for(seg_name, shm_dir) == []


def test_zero_row_allocation_publishes_a_valid_empty_table(seg_name, shm_dir):
    w = shmarrow.allocate(seg_name, {"x": "f8", "pos": ("f4", 3)}, 0, dir=shm_dir)
    assert w["x"].shape == (0,) and w["pos"].shape == (0, 3)
    w.publish()
    path = shmarrow.path(seg_name, dir=shm_dir)
    for table in (shmarrow.attach(seg_name, dir=shm_dir),
                  pa.ipc.open_file(pa.memory_map(path)).read_all()):
        assert table.num_rows == 0
        assert table.column_names == ["x", "pos"]
        assert table.schema.field("x").type == pa.float64()
        assert table.schema.field("pos").type.list_size == 3
    s = shmarrow.reduce(seg_name, ["x"], dir=shm_dir)["x"]
    assert s["count"] == 0 and s["min"] is None


def test_replace_false_and_mode(new_name, shm_dir):
    taken, fresh = new_name(), new_name()
    shmarrow.create(taken, pa.table({"x": [7]}), dir=shm_dir)
    w = shmarrow.allocate(taken, {"x": "i8"}, 2, dir=shm_dir, replace=False)
    w["x"][:] = 1
    with pytest.raises(shmarrow.SegmentExists):
        w.publish()
    w.close()
    assert shmarrow.attach(taken, dir=shm_dir).column("x").to_pylist() == [7]
    assert files_for(taken, shm_dir) == [shmarrow.path(taken, dir=shm_dir)]

    w = shmarrow.allocate(fresh, {"x": "i8"}, 2, dir=shm_dir, mode=0o640)
    w.publish()
    assert stat.S_IMODE(os.stat(shmarrow.path(fresh, dir=shm_dir)).st_mode) == 0o640


def test_replacing_publish_keeps_earlier_readers_unchanged(seg_name, shm_dir):
    w = shmarrow.allocate(seg_name, {"x": "f8"}, 3, dir=shm_dir)
    w["x"][:] = [1, 2, 3]
    w.publish()
    old = shmarrow.attach(seg_name, dir=shm_dir)
    w2 = shmarrow.allocate(seg_name, {"x": "f8"}, 2, dir=shm_dir)
    w2["x"][:] = [9, 9]
    assert shmarrow.attach(seg_name, dir=shm_dir).column("x").to_pylist() == [1.0, 2.0, 3.0]
    w2.publish()
    assert shmarrow.attach(seg_name, dir=shm_dir).column("x").to_pylist() == [9.0, 9.0]
    assert old.column("x").to_pylist() == [1.0, 2.0, 3.0]


def test_invalid_allocations(seg_name, shm_dir):
    with pytest.raises(shmarrow.InvalidName):
        shmarrow.allocate("bad/name", {"x": "f8"}, 1, dir=shm_dir)
    with pytest.raises(ValueError):
        shmarrow.allocate(seg_name, {"x": "f8"}, 1, dir=shm_dir, lifetime="forever")
    with pytest.raises(OverflowError):
        shmarrow.allocate(seg_name, {"x": "f8"}, -1, dir=shm_dir)
    w = shmarrow.allocate(seg_name, {"x": "f8"}, 1, dir=shm_dir)
    with pytest.raises(shmarrow.ShmarrowError, match='column "nope": no such column'):
        w["nope"]
    w.close()
    assert files_for(seg_name, shm_dir) == []


def test_views_cannot_write_into_the_published_segment(seg_name, shm_dir):
    w = shmarrow.allocate(seg_name, {"x": "i4", "pos": ("f4", 2)}, 4, dir=shm_dir, lifetime="owner")
    x, pos = w["x"], w["pos"]
    derived = x[1:]  # a view NumPy made of ours: it has its own ``writeable`` flag
    x[:] = [1, 2, 3, 4]
    pos[:] = 1.5
    created = w.publish()
    path = shmarrow.path(seg_name, dir=shm_dir)
    readers = [shmarrow.attach(seg_name, dir=shm_dir), pa.ipc.open_file(pa.memory_map(path)).read_all()]
    # The views handed out are read-only now: writing raises, nothing crashes.
    with pytest.raises(ValueError, match="read-only"):
        x[0] = 99
    with pytest.raises(ValueError, match="read-only"):
        pos[:, 0] = 5.0
    assert not x.flags.writeable and not pos.flags.writeable
    # A derived view is still writable to NumPy, but its writes land in this process's private
    # copy: never in the published segment.
    assert derived.flags.writeable
    derived[:] = -7
    assert derived.tolist() == [-7, -7, -7]
    readers += [shmarrow.attach(seg_name, dir=shm_dir), pa.ipc.open_file(pa.memory_map(path)).read_all()]
    for table in readers:
        assert table.column("x").to_pylist() == [1, 2, 3, 4]
        assert table.column("pos").to_pylist() == [[1.5, 1.5]] * 4
    assert shmarrow.reduce(seg_name, ["x"], dir=shm_dir)["x"]["sum"] == 10
    # After the segment is removed too, the views stay valid memory.
    created.close()
    assert not os.path.exists(path)
    derived[0] = 5
    assert x.tolist() == [1, 5, -7, -7]


def test_views_are_read_only_after_close(seg_name, shm_dir):
    w = shmarrow.allocate(seg_name, {"x": "f8"}, 3, dir=shm_dir)
    x = w["x"]
    derived = x.reshape(3, 1)
    w.close()
    with pytest.raises(ValueError, match="read-only"):
        x[:] = 1.0
    derived[:] = 2.0  # private memory of this process: harmless, no crash
    assert files_for(seg_name, shm_dir) == []


@pytest.mark.parametrize("rows", [2**62, 2**63 - 1, 2**40])
def test_huge_allocations_fail_with_no_space_before_anything_is_made(rows, seg_name, shm_dir):
    with pytest.raises(shmarrow.NoSpace, match="bytes needed"):
        shmarrow.allocate(seg_name, {"x": "f8"}, rows, dir=shm_dir)
    assert files_for(seg_name, shm_dir) == []


@pytest.mark.parametrize("spec, rows", [
    ({"x": "f8"}, 2**64),
    ({"x": "f8"}, -1),
    ({"x": "f8"}, -(2**63)),
    ({"x": "f8"}, 1.5),
    ({"x": "f8"}, "10"),
    ({"x": ("f4", -1)}, 10),
    ({"x": ("f4", 2**31)}, 10),
    ({"x": ("f4", 2**31 - 1)}, 2**40),
    ({"x": ("f8", (2**30, 2**30))}, 2**20),
    ({"x": ("i8", (2**31 - 1, 2**31 - 1, 2**31 - 1))}, 2**62),
    ({"x": ("f4", 1.5)}, 10),
    ({"x": "f8", "y": "nope"}, 10),
])
def test_hostile_allocate_arguments_raise_ordinary_exceptions(spec, rows, seg_name, shm_dir):
    # PanicException is a BaseException: it would escape this `raises` and fail the test.
    with pytest.raises((ValueError, OverflowError, TypeError, shmarrow.NoSpace)):
        shmarrow.allocate(seg_name, spec, rows, dir=shm_dir)
    assert files_for(seg_name, shm_dir) == []


def _mapping_modes(path):
    """The permissions (``rw-s`` shared, ``rw-p`` private) of this process's mappings of ``path``."""
    with open("/proc/self/maps") as f:
        return [line.split()[1] for line in f if line.rstrip("\n").endswith(str(path))]


def test_publish_leaves_only_the_views_private_mapping(seg_name, shm_dir):
    # The writer's shared mapping is unmapped after publish returns (on a background thread):
    # wait for it; no speed limit.
    w = shmarrow.allocate(seg_name, {"x": "f8"}, 300_000, dir=shm_dir)
    x = w["x"]
    x[:] = 2.0
    w.publish()
    path = shmarrow.path(seg_name, dir=shm_dir)
    while _mapping_modes(path) != ["rw-p"]:  # the view's private copy-on-write mapping alone
        time.sleep(0.002)
    assert shmarrow.attach(seg_name, dir=shm_dir).column("x").to_numpy().sum() == 600_000.0
    del x, w
    gc.collect()
    assert _mapping_modes(path) == []
    shmarrow.remove(seg_name, dir=shm_dir)
