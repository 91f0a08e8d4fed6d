"""Every public name of shmarrow used as typed code: `make test` runs `mypy --strict` on this
file and examples/*.py (configuration in python/pyproject.toml), and pytest runs it. Also: the
namespace holds only the public API, and every public function and class documents itself
(numpydoc sections)."""

from __future__ import annotations

import inspect
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pyarrow as pa
import shmarrow

REPO = Path(__file__).resolve().parents[2]


def test_every_public_function(iso_dir: str) -> None:
    table = pa.table({"x": np.arange(4, dtype=np.float64), "n": np.arange(4, dtype=np.int64)})
    created: shmarrow.Created = shmarrow.create("t", table, dir=iso_dir, replace=True, mode=0o600)
    assert created.nbytes == os.path.getsize(shmarrow.path("t", dir=iso_dir))
    attached = shmarrow.attach("t", dir=iso_dir, strict=True)
    views = shmarrow.column_view(attached, "x")
    assert float(views[0].sum()) == 6.0
    by_name: List[np.ndarray] = shmarrow.column_view("t", 1, dir=Path(iso_dir), validate="full")
    assert by_name[0].tolist() == [0, 1, 2, 3]
    stats: Dict[str, Dict[str, Optional[float]]] = {
        column: dict(values) for column, values in shmarrow.reduce("t", ["x"], ["sum"], 1, dir=iso_dir).items()
    }
    assert stats == {"x": {"sum": 6.0}}
    shmarrow.map_inplace("t", "x", "scale", 2.0, threads=1, dir=iso_dir)
    with shmarrow.lock("t", shared=True, dir=iso_dir):
        assert shmarrow.column_view(attached, "x")[0].tolist() == [0.0, 2.0, 4.0, 6.0]

    alloc: shmarrow.Allocation = shmarrow.allocate("a", {"x": "f8", "pos": ("f4", 3)}, 2, dir=iso_dir)
    alloc["x"][:] = 1.5
    alloc["pos"][:, 2] = 3.0
    with alloc.publish():
        assert shmarrow.attach("a", dir=iso_dir).column("x").to_pylist() == [1.5, 1.5]

    handle: shmarrow.Shared = shmarrow.share({"v": np.arange(3, dtype=np.int32)}, dir=iso_dir)
    with handle:
        assert handle.numpy().tolist() == [0, 1, 2] and handle.owner
        again: shmarrow.Shared = pickle.loads(pickle.dumps(handle))
        assert again.table().num_rows == 3
    reference = shmarrow.ref(attached)
    assert reference.identity == created.identity

    records = np.zeros(2, dtype=[("id", "<i8"), ("pos", "<f4", (2,))])
    shmarrow.from_numpy("r", records, dir=iso_dir)
    assert shmarrow.to_numpy_structured(shmarrow.attach("r", dir=iso_dir)).dtype == records.dtype
    assert set(shmarrow.field_views(shmarrow.attach("r", dir=iso_dir))) == {"id", "pos"}

    schema = pa.schema([("seq", pa.int64())])
    with shmarrow.producer("ch", schema, dir=iso_dir, timeout=None) as producer:
        subscription = shmarrow.subscribe("ch", dir=iso_dir, timeout=None)
        producer.send(pa.record_batch([pa.array([7], pa.int64())], schema=schema))
    received: List[pa.RecordBatch] = list(subscription)
    assert [b.column(0).to_pylist() for b in received] == [[7]]

    kinds = {entry["name"]: entry["kind"] for entry in shmarrow.list(dir=iso_dir)}
    assert kinds == {"a": "table", "r": "table", "t": "table", "ch": "channel"}
    assert shmarrow.gc(dir=iso_dir, dry_run=True) == []
    for name in kinds:
        assert shmarrow.remove(name, dir=iso_dir)
    assert os.listdir(iso_dir) == []


def test_every_error_class_is_catchable_with_its_attributes(iso_dir: str) -> None:
    try:
        shmarrow.attach("missing", dir=iso_dir)
    except FileNotFoundError as exc:
        assert isinstance(exc, shmarrow.SegmentNotFound) and exc.name == "missing"
    shmarrow.create("x", pa.table({"x": [1]}), dir=iso_dir)
    try:
        shmarrow.create("x", pa.table({"x": [1]}), dir=iso_dir, replace=False)
    except shmarrow.SegmentExists as exists:
        assert isinstance(exists, FileExistsError) and exists.name == "x"
    try:
        shmarrow.reduce("x", ["y"], dir=iso_dir)
    except shmarrow.InvalidColumn as bad:
        assert bad.column == "y"
    errors: List[type] = [
        shmarrow.ShmarrowError, shmarrow.SegmentNotFound, shmarrow.SegmentExists, shmarrow.NoSpace,
        shmarrow.AccessDenied, shmarrow.InvalidName, shmarrow.InvalidColumn, shmarrow.NotAFile,
        shmarrow.CorruptSegment, shmarrow.NotZeroCopy, shmarrow.InvalidTable, shmarrow.ChannelError,
        shmarrow.ChannelTimeout,
    ]
    assert all(issubclass(e, shmarrow.ShmarrowError) for e in errors)
    shmarrow.remove("x", dir=iso_dir)


def test_namespace_is_the_public_api() -> None:
    public = {name for name in dir(shmarrow) if not name.startswith("_")}
    # The documented submodules: structured, and shmarrow.dask once something imported it.
    assert public - set(shmarrow.__all__) - {"dask"} == {"structured"}
    assert set(shmarrow.__all__) <= public
    for leaked in ("np", "os", "pa", "List", "Optional", "Union", "annotations", "builtins_list"):
        assert leaked not in public


def _numpydoc_sections(obj: object) -> List[str]:
    doc = inspect.getdoc(obj) or ""
    lines = doc.splitlines()
    return [lines[i] for i in range(len(lines) - 1) if lines[i + 1].strip() and set(lines[i + 1].strip()) == {"-"}]


def test_every_public_function_has_numpydoc() -> None:
    for name in shmarrow.__all__:
        obj = getattr(shmarrow, name)
        if inspect.isclass(obj):
            assert inspect.getdoc(obj), name
            continue
        sections = _numpydoc_sections(obj)
        assert "Parameters" in sections and "Returns" in sections, (name, sections)
        assert "Raises" in sections, (name, sections)
    for method in ("table", "numpy"):
        assert {"Returns", "Raises"} <= set(_numpydoc_sections(getattr(shmarrow.Shared, method)))


def test_pool_example_runs(iso_dir: str) -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "examples" / "pool.py"), "200000", "2", "spawn"],
        capture_output=True, text=True, env={**os.environ, "SHMARROW_DIR": iso_dir},
    )
    assert out.returncode == 0, out.stderr
    assert "statistics match NumPy in the parent" in out.stdout
    assert os.listdir(iso_dir) == []  # the owner handle removed the segment
