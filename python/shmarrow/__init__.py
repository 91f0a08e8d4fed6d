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
    path,
    remove,
)

__all__ = [
    "attach", "create", "remove", "list", "path", "gc", "column_view",
    "Created", "ShmarrowError", "SegmentNotFound", "SegmentExists", "NoSpace",
    "AccessDenied", "InvalidName", "NotAFile", "CorruptSegment", "NotZeroCopy", "InvalidTable",
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


builtins_list = __builtins__["list"] if isinstance(__builtins__, dict) else __builtins__.list
