"""Worker functions for test_share.py: importable by name, so spawn and forkserver children
(and joblib's loky workers) can unpickle them. Each reports what the worker saw: the values,
and whether every buffer it used lies in its own mapping of the segment's file."""

from __future__ import annotations

import os
from typing import Any, Dict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import shmarrow
from conftest import all_buffers, in_ranges, mapping_ranges


def _buffers_in_mapping(table: pa.Table, path: str) -> bool:
    ranges = mapping_ranges(path)
    bufs = [b for col in table.columns for chunk in col.chunks for b in all_buffers(chunk)]
    return bool(ranges) and bool(bufs) and all(in_ranges(b.address, b.size, ranges) for b in bufs)


def _array_in_mapping(array: np.ndarray, path: str) -> bool:
    data = np.ma.getdata(array)
    return in_ranges(data.__array_interface__["data"][0], data.nbytes, mapping_ranges(path))


def table_report(handle: shmarrow.Shared) -> Dict[str, Any]:
    """Attach through a Shared handle: the sum of column x and where the buffers live."""
    table = handle.table()
    return {
        "pid": os.getpid(),
        "rows": table.num_rows,
        "sum": float(pc.sum(table.column("x")).as_py()),
        "in_mapping": _buffers_in_mapping(table, handle.path),
    }


def numpy_report(handle: shmarrow.Shared, column: Any = None) -> Dict[str, Any]:
    view = handle.numpy(column)
    return {
        "pid": os.getpid(),
        "shape": view.shape,
        "sum": float(view.sum()),
        "masked": int(np.ma.count_masked(view)),
        "in_mapping": _array_in_mapping(view, handle.path),
        "writeable": bool(np.ma.getdata(view).flags.writeable),
    }


def attached_table_report(table: pa.Table, path: str) -> Dict[str, Any]:
    """A table that arrived as an argument (sent by reference or by value)."""
    return {
        "pid": os.getpid(),
        "rows": table.num_rows,
        "sum": float(pc.sum(table.column("x")).as_py()),
        "in_mapping": _buffers_in_mapping(table, path),
    }


def drop_handle(handle: shmarrow.Shared) -> bool:
    """Close and drop a received handle; the segment must survive it."""
    handle.close()
    del handle
    import gc

    gc.collect()
    return True


def chunk_stats(handle: shmarrow.Shared, start: int, stop: int) -> Dict[str, float]:
    """The lecture's Example 28.2 worker: statistics of one chunk, a few bytes back."""
    chunk = handle.numpy()[start:stop]
    return {"mean": float(chunk.mean()), "std": float(chunk.std()), "max": float(chunk.max())}


def attach_missing(name: str, directory: str) -> None:
    shmarrow.attach(name, dir=directory)
