"""Sharing by reference: share()/Shared/ref(), pickled sizes, Pool/ProcessPoolExecutor/joblib
workers on fork, spawn and forkserver (their buffers checked to lie in the segment's mapping),
lifetimes (close, garbage collection, exit, a killed creator and gc), and replaces."""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.reduction import ForkingPickler

import numpy as np
import pyarrow as pa
import pytest

import share_workers
import shmarrow

ROWS = 1_000_000
START_METHODS = ["fork", "spawn", "forkserver"]
# A reference is a class path, a name, a directory and two integers.
REFERENCE_BYTES = 300


@pytest.fixture(scope="module")
def big_table() -> pa.Table:
    return pa.table({"x": np.arange(ROWS, dtype=np.float64)})


def _expected_sum(rows: int = ROWS) -> float:
    return float(rows * (rows - 1) // 2)


def _check(report, rows: int = ROWS) -> None:
    assert report["pid"] != os.getpid()
    assert report["rows"] == rows
    assert report["sum"] == _expected_sum(rows)
    assert report["in_mapping"], "the worker's buffers are not in its mapping of the segment"


# ---------------------------------------------------------------- pickled sizes


def test_handle_pickles_as_a_reference(big_table, iso_dir):
    with shmarrow.share(big_table, dir=iso_dir) as h:
        by_value = len(ForkingPickler.dumps(big_table))
        sent = len(ForkingPickler.dumps(h))
        plain = len(pickle.dumps(h))
        print(f"\npickled: Shared {sent} B (pickle {plain} B); the table by value {by_value} B")
        assert sent < REFERENCE_BYTES and plain < REFERENCE_BYTES
        assert by_value > 8 * ROWS
        back = pickle.loads(pickle.dumps(h))
        assert isinstance(back, shmarrow.Shared)
        assert (back.name, back.dir, back.identity) == (h.name, h.dir, h.identity)
        assert back.path == h.path == os.path.join(iso_dir, h.name)
        assert h.owner and not back.owner


def test_attached_table_and_created_pickle_as_references(big_table, seg_name, iso_dir):
    created = shmarrow.create(seg_name, big_table, dir=iso_dir)
    table = shmarrow.attach(seg_name, dir=iso_dir)
    sizes = {
        "attached table": len(ForkingPickler.dumps(table)),
        "ref(table)": len(pickle.dumps(shmarrow.ref(table))),
        "Created": len(pickle.dumps(created)),
    }
    print(f"\npickled: {sizes}")
    assert all(size < REFERENCE_BYTES for size in sizes.values()), sizes
    from_created = pickle.loads(pickle.dumps(created))
    assert isinstance(from_created, shmarrow.Shared)
    assert from_created.identity == created.identity == shmarrow.ref(table).identity
    assert from_created.table().equals(table)
    # Only multiprocessing's pickler sends an attached table by reference: plain pickle (and
    # copy.deepcopy) keep pyarrow's by-value behaviour.
    assert len(pickle.dumps(table)) > 8 * ROWS


# ---------------------------------------------------------------- workers


@pytest.mark.parametrize("method", START_METHODS)
def test_pool_workers_attach_shared_zero_copy(method, big_table, iso_dir):
    with shmarrow.share(big_table, dir=iso_dir) as h:
        with mp.get_context(method).Pool(2) as pool:
            reports = pool.map(share_workers.table_report, [h] * 4)
        assert len(reports) == 4
        for report in reports:
            _check(report)
        assert os.path.isfile(h.path), "a worker removed the segment"
    assert not os.path.lexists(h.path)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_pool_workers_get_numpy_views(method, iso_dir):
    grid = np.arange(600_000, dtype=np.float64).reshape(1000, 600)
    with shmarrow.share(grid, dir=iso_dir) as h:
        with mp.get_context(method).Pool(1) as pool:
            report = pool.apply(share_workers.numpy_report, (h,))
    assert report["shape"] == (1000, 600)
    assert report["sum"] == float(grid.sum())
    assert report["in_mapping"] and not report["writeable"]


@pytest.mark.parametrize("method", START_METHODS)
def test_attached_table_sent_to_pool_by_reference(method, big_table, seg_name, iso_dir):
    shmarrow.create(seg_name, big_table, dir=iso_dir)
    table = shmarrow.attach(seg_name, dir=iso_dir)
    path = os.path.join(iso_dir, seg_name)
    with mp.get_context(method).Pool(1) as pool:
        report = pool.apply(share_workers.attached_table_report, (table, path))
        _check(report)
        # A derived table is a new table: it travels by value, and the worker's copy is not
        # in the segment.
        derived = table.slice(0, 1000)
        report = pool.apply(share_workers.attached_table_report, (derived, path))
    assert report["rows"] == 1000 and report["sum"] == _expected_sum(1000)
    assert not report["in_mapping"]


def test_process_pool_executor_spawn(big_table, iso_dir):
    with shmarrow.share(big_table, dir=iso_dir) as h:
        with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as ex:
            reports = list(ex.map(share_workers.table_report, [h] * 3))
        for report in reports:
            _check(report)
        assert os.path.isfile(h.path)


def test_joblib_loky(big_table, seg_name, iso_dir):
    joblib = pytest.importorskip("joblib", reason="joblib is not installed (make venv installs it)")
    from joblib.externals.loky import get_reusable_executor

    shmarrow.create(seg_name, big_table, dir=iso_dir)
    table = shmarrow.attach(seg_name, dir=iso_dir)
    try:
        with shmarrow.share({"x": np.arange(ROWS, dtype=np.float64)}, dir=iso_dir) as h:
            reports = joblib.Parallel(n_jobs=2, backend="loky")(
                joblib.delayed(share_workers.table_report)(handle)
                for handle in [h, h, shmarrow.ref(table)]
            )
            for report in reports:
                _check(report)
            assert os.path.isfile(h.path)
    finally:
        get_reusable_executor().shutdown(wait=True)


def test_worker_exception_arrives_with_its_class_and_name(iso_dir):
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
        future = ex.submit(share_workers.attach_missing, "nowhere", iso_dir)
        with pytest.raises(shmarrow.SegmentNotFound) as info:
            future.result()
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.name == "nowhere"


def test_example_28_2_pool(iso_dir):
    """examples/pool.py's pattern: workers attach by name and return only statistics."""
    data = np.random.default_rng(7).standard_normal(2_000_000)
    with shmarrow.share(data, dir=iso_dir) as h:
        bounds = [(h, i * 500_000, (i + 1) * 500_000) for i in range(4)]
        with mp.get_context("spawn").Pool(4) as pool:
            stats = pool.starmap(share_workers.chunk_stats, bounds)
    for (_, start, stop), s in zip(bounds, stats):
        chunk = data[start:stop]
        assert s == {"mean": float(chunk.mean()), "std": float(chunk.std()), "max": float(chunk.max())}
    assert max(len(pickle.dumps(s)) for s in stats) < 200


# ---------------------------------------------------------------- inputs


def _polars_frame():
    pl = pytest.importorskip("polars", reason="polars is not installed (make venv installs it)")
    return pl.DataFrame({"x": [1.0, 2.0, 3.0], "s": ["a", None, "a string longer than twelve"]})


def _pandas_frame():
    pd = pytest.importorskip("pandas", reason="pandas is not installed (make venv installs it)")
    return pd.DataFrame({"x": [1.0, 2.0, 3.0], "s": ["a", "b", None]})


def test_share_numpy_inputs(iso_dir, maps, within):
    cases = {
        "1-d": np.arange(10, dtype=np.int32),
        "2-d": np.arange(30, dtype=np.float32).reshape(10, 3),
        "3-d": np.arange(60, dtype=np.int64).reshape(5, 3, 4),
        "big-endian": np.arange(8, dtype=">f8"),
        "strided": np.arange(20.0)[::2],
    }
    for label, array in cases.items():
        with shmarrow.share(array, dir=iso_dir) as h:
            view = h.numpy()
            assert view.shape == array.shape, label
            assert np.array_equal(view, array), label
            assert within(view.__array_interface__["data"][0], view.nbytes, maps(h.path)), label
            assert h.table().column_names == [shmarrow.structured.PLAIN_COLUMN]


def test_share_masked_and_structured(iso_dir, maps, within):
    masked = np.ma.MaskedArray([1.5, 2.5, 3.5, 4.5], mask=[False, True, False, True])
    with shmarrow.share(masked, dir=iso_dir) as h:
        view = h.numpy()
        assert isinstance(view, np.ma.MaskedArray)
        assert view.mask.tolist() == [False, True, False, True]
        assert view.compressed().tolist() == [1.5, 3.5]
        assert h.table().column(0).to_pylist() == [1.5, None, 3.5, None]
        data = np.ma.getdata(view)
        assert within(data.__array_interface__["data"][0], data.nbytes, maps(h.path))
    records = np.zeros(4, dtype=[("id", "i8"), ("pos", "f4", (3,)), ("name", "U5")])
    records["id"] = [1, 2, 3, 4]
    records["pos"][:, 1] = 2.0
    records["name"] = ["a", "b", "c", "d"]
    with shmarrow.share(records, dir=iso_dir) as h:
        assert h.numpy("id").tolist() == [1, 2, 3, 4]
        assert h.numpy("pos").shape == (4, 3) and h.numpy("pos")[:, 1].tolist() == [2.0] * 4
        with pytest.raises(shmarrow.NotZeroCopy, match="'name'"):
            h.numpy("name")
        with pytest.raises(shmarrow.InvalidColumn, match="3 columns") as info:
            h.numpy()
        assert isinstance(info.value, ValueError)
        with pytest.raises(shmarrow.InvalidColumn, match="nope"):
            h.numpy("nope")
        with pytest.raises(TypeError, match="column must be a str"):
            h.numpy(0)  # type: ignore[arg-type]
        assert (shmarrow.to_numpy_structured(h.table()) == records).all()


def test_share_dict_of_arrays(iso_dir):
    data = {
        "x": np.arange(5, dtype=np.float64),
        "pos": np.ones((5, 2), dtype=np.int16),
        "m": np.ma.MaskedArray(np.arange(5), mask=[0, 0, 1, 0, 0]),
    }
    with shmarrow.share(data, dir=iso_dir) as h:
        t = h.table()
        assert t.column_names == ["x", "pos", "m"]
        assert h.numpy("x").tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert h.numpy("pos").shape == (5, 2)
        assert t.column("m").to_pylist() == [0, 1, None, 3, 4]


def test_share_arrow_inputs(iso_dir, rich_table, strip_meta):
    batch = rich_table.to_batches()[0]
    reader = pa.RecordBatchReader.from_batches(rich_table.schema, rich_table.to_batches())
    for data, expected in [
        (rich_table, rich_table),
        (batch, pa.Table.from_batches([batch])),
        (reader, rich_table),
        (rich_table.to_batches(), rich_table),
        ((b for b in rich_table.to_batches()), rich_table),
    ]:
        with shmarrow.share(data, dir=iso_dir) as h:
            assert strip_meta(h.table()).equals(expected)


def test_share_dataframes(iso_dir):
    frame = _polars_frame()
    with shmarrow.share(frame, dir=iso_dir) as h:
        t = h.table()
        assert t.schema.field("s").type == pa.string_view()  # kept as polars sent it
        assert t.column("s").to_pylist() == ["a", None, "a string longer than twelve"]
        assert shmarrow.reduce(h.name, dir=iso_dir)["x"]["sum"] == 6.0
    pdf = _pandas_frame()
    with shmarrow.share(pdf, dir=iso_dir) as h:
        assert h.table().to_pandas().equals(pdf)
        assert h.numpy("x").tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    "data, match",
    [
        ("text", "cannot publish 'str'"),
        (b"bytes", "cannot publish 'bytes'"),
        (42, "cannot publish 'int'"),
        (None, "cannot publish 'NoneType'"),
        (object(), "cannot publish 'object'"),
        ([1, 2, 3], "item 0 of the iterable is 'int'"),
        ({1: np.arange(3)}, "column names must be str"),
        (np.array([object(), 1]), "object dtype"),
        (pa.chunked_array([[1, 2]]), "ChunkedArray is one column"),
        (pa.array([1.0]), "DoubleArray is one column"),
        (pa.schema([("x", pa.int64())]), "cannot publish 'Schema'"),
    ],
    ids=repr,
)
def test_create_and_share_refuse_other_inputs(data, match, seg_name, iso_dir):
    with pytest.raises(TypeError, match=match):
        shmarrow.create(seg_name, data, dir=iso_dir)
    with pytest.raises(TypeError, match=match):
        shmarrow.share(data, dir=iso_dir)
    assert os.listdir(iso_dir) == []


def test_generator_exception_is_chained(seg_name, iso_dir):
    batch = pa.record_batch({"x": [1, 2]})

    def batches():
        yield batch
        raise KeyError("boom")

    for data in (batches(), pa.RecordBatchReader.from_batches(batch.schema, batches())):
        with pytest.raises(shmarrow.InvalidTable, match="after 1 batch") as info:
            shmarrow.create(seg_name, data, dir=iso_dir)
        assert isinstance(info.value.__cause__, KeyError)
        assert info.value.__cause__.args == ("boom",)
        assert info.value.name == seg_name
        assert os.listdir(iso_dir) == []


# ---------------------------------------------------------------- lifetimes


def test_owner_handle_removes_on_close_and_gc(iso_dir):
    h = shmarrow.share(np.arange(3.0), dir=iso_dir)
    path = h.path
    assert os.path.isfile(path) and h.owner
    h.close()
    assert not os.path.lexists(path) and not h.owner
    h.close()  # twice is fine

    h = shmarrow.share(np.arange(3.0), dir=iso_dir)
    path = h.path
    del h
    gc.collect()
    assert not os.path.lexists(path)


def test_persistent_share_stays(iso_dir):
    h = shmarrow.share(np.arange(3.0), "kept", dir=iso_dir, lifetime="persistent")
    assert not h.owner
    h.close()
    assert shmarrow.attach("kept", dir=iso_dir).num_rows == 3
    with pytest.raises(shmarrow.SegmentExists) as info:
        shmarrow.share(np.arange(3.0), "kept", dir=iso_dir)
    assert isinstance(info.value, FileExistsError) and info.value.name == "kept"


def test_copies_never_remove(iso_dir):
    with shmarrow.share(np.arange(3.0), dir=iso_dir) as h:
        copy = pickle.loads(pickle.dumps(h))
        copy.close()
        del copy
        with mp.get_context("spawn").Pool(1) as pool:
            assert pool.apply(share_workers.drop_handle, (h,))
        gc.collect()
        assert os.path.isfile(h.path)


def test_forked_child_does_not_remove(iso_dir):
    created = shmarrow.create("c", pa.table({"x": [1]}), dir=iso_dir, lifetime="owner")
    h = shmarrow.share(np.arange(3.0), dir=iso_dir)
    pid = os.fork()
    if pid == 0:  # the child drops its copies of both handles, then exits as sys.exit would
        try:
            created.close()
            h.close()
            del h, created
            gc.collect()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert os.path.isfile(h.path) and os.path.isfile(created.path)
    h.close()
    created.close()
    assert os.listdir(iso_dir) == []


CREATOR = textwrap.dedent(
    """
    import sys, time, numpy as np, shmarrow
    h = shmarrow.share(np.arange(5.0), dir=sys.argv[1])
    print(h.name, flush=True)
    if sys.argv[2] == "wait":
        sys.stdin.read()  # until killed
    """
)


def test_exit_removes_owner_segments(iso_dir):
    out = subprocess.run([sys.executable, "-c", CREATOR, iso_dir, "exit"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith("share-")
    assert os.listdir(iso_dir) == []


def test_killed_creator_leaves_segment_for_gc(iso_dir):
    proc = subprocess.Popen(
        [sys.executable, "-c", CREATOR, iso_dir, "wait"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        name = proc.stdout.readline().strip()
        assert name.startswith("share-")
        assert shmarrow.gc(dir=iso_dir) == []  # its creator is alive
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()
    assert os.listdir(iso_dir) == [name]
    assert shmarrow.gc(dir=iso_dir) == [name]
    assert os.listdir(iso_dir) == []


# ---------------------------------------------------------------- references and replaces


def test_ref_of_attached_table(seg_name, iso_dir):
    shmarrow.create(seg_name, pa.table({"x": [1.0, 2.0]}), dir=iso_dir)
    table = shmarrow.attach(seg_name, dir=iso_dir)
    r = shmarrow.ref(table)
    assert (r.name, r.dir) == (seg_name, iso_dir) and not r.owner
    assert pickle.loads(pickle.dumps(r)).table().equals(table)
    assert shmarrow.ref(r.table()).identity == r.identity
    with pytest.raises(ValueError, match="did not come from shmarrow.attach"):
        shmarrow.ref(table.slice(1))
    with pytest.raises(ValueError, match="did not come from shmarrow.attach"):
        shmarrow.ref(pa.table({"x": [1]}))
    with pytest.raises(TypeError, match="not 'int'"):
        shmarrow.ref(42)


def test_replace_after_reference(seg_name, iso_dir):
    """A reference names one version: after a replace it raises SegmentNotFound rather than
    attach the new data; an attached table keeps its version and, sent through
    multiprocessing, travels by value; Shared(name) without identity follows the name."""
    old = pa.table({"x": [1.0, 2.0]})
    new = pa.table({"x": [3.0]})
    shmarrow.create(seg_name, old, dir=iso_dir)
    table = shmarrow.attach(seg_name, dir=iso_dir)
    sent = pickle.dumps(shmarrow.ref(table))
    sent_table = ForkingPickler.dumps(table)
    assert len(sent_table) < REFERENCE_BYTES
    shmarrow.create(seg_name, new, dir=iso_dir)

    with pytest.raises(shmarrow.SegmentNotFound, match="replaced") as info:
        pickle.loads(sent).table()
    assert isinstance(info.value, FileNotFoundError) and info.value.name == seg_name
    with pytest.raises(shmarrow.SegmentNotFound, match="replaced"):
        pickle.loads(sent_table)  # pickled while current, unpickled after the replace
    with pytest.raises(shmarrow.SegmentNotFound, match="removed or replaced"):
        shmarrow.ref(table)
    assert table.column("x").to_pylist() == [1.0, 2.0]
    by_value = ForkingPickler.dumps(table)
    assert pickle.loads(by_value).column("x").to_pylist() == [1.0, 2.0]
    assert shmarrow.Shared(seg_name, iso_dir).table().column("x").to_pylist() == [3.0]

    shmarrow.remove(seg_name, dir=iso_dir)
    with pytest.raises(shmarrow.SegmentNotFound):
        shmarrow.Shared(seg_name, iso_dir).table()


def test_owner_handle_after_replace_keeps_the_replacement(iso_dir):
    h = shmarrow.share(np.arange(3.0), "v", dir=iso_dir)
    shmarrow.create("v", pa.table({"x": [9]}), dir=iso_dir)
    with pytest.raises(shmarrow.SegmentNotFound, match="replaced"):
        h.table()
    h.close()  # removes only the version it created
    assert shmarrow.attach("v", dir=iso_dir).column("x").to_pylist() == [9]


def test_shared_constructor_checks_the_name(iso_dir):
    with pytest.raises(shmarrow.InvalidName) as info:
        shmarrow.Shared("../etc", iso_dir)
    assert isinstance(info.value, ValueError)
