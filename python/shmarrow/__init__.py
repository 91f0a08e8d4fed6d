"""shmarrow: Apache Arrow tables in named shared memory, zero-copy.

A segment is a file in the segment directory (``/dev/shm`` unless ``SHMARROW_DIR`` or
``dir=`` says otherwise) whose bytes are an Arrow IPC file. This package is a binding of the
Rust library: publishing, attaching and validation run in the same Rust code as the
``shmarrow`` command; arrays reach pyarrow through the Arrow C stream interface without a copy.

    >>> import pyarrow as pa, shmarrow
    >>> shmarrow.create("prices", pa.table({"x": [1.0, 2.0]}))          # atomic publish
    >>> table = shmarrow.attach("prices")                                # zero-copy, any process
    >>> shmarrow.column_view(table, "x")[0]                              # NumPy view, no copy
    >>> shmarrow.remove("prices")

Stock pyarrow needs nothing of ours:
``pa.ipc.open_file(pa.memory_map(shmarrow.path("prices"))).read_all()``.

Do not attach segments with ``multiprocessing.shared_memory`` on Python < 3.13: its resource
tracker unlinks segments the process did not create (CPython issue 82300).
"""

from __future__ import annotations

import os
from typing import Iterable, List, Optional, Union

import numpy as np
import pyarrow as pa

from . import _shmarrow
from ._shmarrow import (
    AccessDenied,
    CorruptSegment,
    Created,
    InvalidName,
    InvalidTable,
    NoSpace,
    NotAFile,
    NotZeroCopy,
    SegmentExists,
    SegmentNotFound,
    ShmarrowError,
    gc,
    list,
    ChannelError,
    lock,
    map_inplace,
    producer,
    subscribe,
    path,
    reduce,
    remove,
)
from .structured import field_views, from_numpy, to_numpy_structured

__all__ = [
    "attach", "create", "remove", "list", "path", "gc", "column_view",
    "reduce", "map_inplace", "lock", "allocate", "Allocation", "subscribe", "producer",
    "ChannelError",
    "Created", "ShmarrowError", "SegmentNotFound", "SegmentExists", "NoSpace",
    "AccessDenied", "InvalidName", "NotAFile", "CorruptSegment", "NotZeroCopy", "InvalidTable",
    "from_numpy", "to_numpy_structured", "field_views",
]

PathLike = Union[str, "os.PathLike[str]"]


def attach(name: str, *, dir: Optional[PathLike] = None, strict: bool = False) -> pa.Table:
    """Attach segment ``name`` and return it as a ``pyarrow.Table`` whose buffers point into
    the shared mapping. The mapping stays alive as long as any column, array or buffer of the
    table does. ``strict=True`` refuses segments that would need any copy (foreign files with
    misaligned 16-byte types or compressed bodies); by default only those buffers are copied.
    """
    return _shmarrow.attach(name, dir=dir, strict=strict).read_all()


def create(
    name: str,
    data: Union[pa.Table, pa.RecordBatch, pa.RecordBatchReader, Iterable[pa.RecordBatch]],
    *,
    dir: Optional[PathLike] = None,
    replace: bool = True,
    mode: int = 0o600,
    lifetime: str = "persistent",
) -> Created:
    """Publish ``data`` as segment ``name``, atomically: readers see nothing or all of it.

    ``data`` is a Table, a RecordBatch, a RecordBatchReader, or a non-empty iterable of
    RecordBatches of one schema. ``replace=False`` raises SegmentExists if the name is taken;
    by default a replaced segment stays readable, unchanged, by those who attached it.
    ``mode`` is applied exactly (default owner-only). ``lifetime="owner"`` makes the returned
    handle remove the segment on ``close()``/``with`` exit/garbage collection.
    """
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    elif not hasattr(data, "__arrow_c_stream__"):
        batches = builtins_list(data)
        if not batches:
            raise InvalidTable("no record batches given; pass a (possibly empty) pyarrow.Table")
        data = pa.Table.from_batches(batches)
    return _shmarrow.create(name, data, dir=dir, replace=replace, mode=mode, lifetime=lifetime)


def column_view(table: pa.Table, column: Union[str, int]) -> List[np.ndarray]:
    """Zero-copy, read-only NumPy views of a fixed-width column without nulls: one per chunk.

    Raises NotZeroCopy (naming the column and why) rather than silently copying, e.g. for
    strings, nested types, or chunks with nulls.
    """
    col = table.column(column)
    views = []
    for i, chunk in enumerate(col.chunks):
        try:
            views.append(chunk.to_numpy(zero_copy_only=True))
        except (pa.ArrowInvalid, NotImplementedError) as exc:
            raise NotZeroCopy(
                f"column {column!r} chunk {i} ({chunk.type}, {chunk.null_count} nulls) "
                f"cannot be viewed without a copy: {exc}"
            ) from exc
    return views


class _View:
    """Exposes one column's writable values to NumPy and keeps the mapping alive (it is the
    NumPy array's ``base``)."""

    def __init__(self, owner, address: int, shape: tuple, typestr: str):
        self._owner = owner
        self.__array_interface__ = {
            "version": 3,
            "shape": shape,
            "typestr": typestr,
            "data": (address, False),
        }


def _arrow_type(spec) -> pa.DataType:
    """A NumPy dtype spec (``"f8"``, ``("f4", 3)``, ``("i2", (2, 3))``) as an Arrow type."""
    if isinstance(spec, tuple):
        base, shape = spec
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        t = _arrow_type(base)
        for n in reversed(shape):
            t = pa.list_(pa.field("item", t, nullable=False), n)
        return t
    dtype = np.dtype(spec)
    if dtype.kind not in "iuf" or dtype.itemsize > 8:
        raise TypeError(f"{dtype} is not a fixed-width integer or float type")
    return pa.from_numpy_dtype(dtype.newbyteorder("="))


def _shape(arrow_type: pa.DataType) -> tuple:
    shape = ()
    while pa.types.is_fixed_size_list(arrow_type):
        shape += (arrow_type.list_size,)
        arrow_type = arrow_type.value_type
    return shape, np.dtype(arrow_type.to_pandas_dtype())


class Allocation:
    """A table being filled in place before it is published (see :func:`allocate`).

    ``alloc["x"]`` is a writable NumPy view of column ``x``'s values in shared memory (shape
    ``(rows,) + subarray shape``). :meth:`publish` makes the table visible under its name
    atomically; an allocation closed or garbage-collected unpublished leaves nothing behind.
    """

    def __init__(self, raw, schema: pa.Schema, rows: int):
        self._raw = raw
        self.schema = schema
        self.rows = rows
        self._views = {}

    def __getitem__(self, column: str) -> np.ndarray:
        if column not in self._views:
            owner, address, _elements, _ = self._raw.raw(column)
            shape, dtype = _shape(self.schema.field(column).type)
            self._views[column] = np.asarray(
                _View(owner, address, (self.rows,) + shape, dtype.str)
            )
        return self._views[column]

    def publish(self) -> Created:
        """Make the table visible under its name, atomically."""
        return self._raw.publish()

    def close(self) -> None:
        """Drop without publishing (views stay valid memory but the table is gone)."""
        self._raw.close()

    def __enter__(self) -> "Allocation":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def allocate(
    name: str,
    columns: dict,
    rows: int,
    *,
    dir: Optional[PathLike] = None,
    replace: bool = True,
    mode: int = 0o600,
    lifetime: str = "persistent",
) -> Allocation:
    """Lay out a table of ``rows`` rows in shared memory for filling in place: the lecture's
    "allocate once, workers fill" made safe.

    ``columns`` maps names to NumPy dtype specs: ``{"x": "f8", "pos": ("f4", 3)}`` (subarrays
    become fixed-size lists). Nothing is visible under ``name`` until ``publish()``::

        w = shmarrow.allocate("frame", {"x": "f8", "pos": ("f4", 3)}, 1_000_000)
        w["x"][:] = np.random.random(1_000_000)      # writes straight into shared memory
        w["pos"][:, 0] = 1.0
        w.publish()
    """
    schema = pa.schema([pa.field(n, _arrow_type(s), nullable=False) for n, s in columns.items()])
    raw = _shmarrow.allocate(name, schema, rows, dir=dir, replace=replace, mode=mode, lifetime=lifetime)
    return Allocation(raw, schema, rows)


builtins_list = __builtins__["list"] if isinstance(__builtins__, dict) else __builtins__.list
