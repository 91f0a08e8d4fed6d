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

Hand data to worker processes by reference: ``handle = shmarrow.share(obj)`` publishes ``obj``
(a pyarrow Table, NumPy arrays, a pandas or polars DataFrame) and pickles as its name, so a
``multiprocessing`` Pool, ``ProcessPoolExecutor`` or joblib sends a hundred bytes; workers call
``handle.table()`` or ``handle.numpy(column)``, zero-copy.

Stock pyarrow needs nothing of ours:
``pa.ipc.open_file(pa.memory_map(shmarrow.path("prices"))).read_all()``.

Do not attach segments with ``multiprocessing.shared_memory`` on Python < 3.13: its resource
tracker unlinks segments the process did not create (CPython issue 82300).
"""

from . import _shmarrow, structured
from ._api import Allocation, allocate, attach, column_view, create
from ._share import Shared, ref, share
from ._shmarrow import (
    AccessDenied,
    ChannelError,
    ChannelTimeout,
    CorruptSegment,
    Created,
    InvalidColumn,
    InvalidName,
    InvalidTable,
    MapOverflow,
    NoSpace,
    NotAFile,
    NotZeroCopy,
    SegmentExists,
    SegmentNotFound,
    ShmarrowError,
    gc,
    list,
    lock,
    map_inplace,
    path,
    producer,
    reduce,
    remove,
    subscribe,
)
from .structured import field_views, from_numpy, to_numpy_structured

__all__ = [
    "attach", "create", "remove", "list", "path", "gc", "column_view",
    "share", "Shared", "ref",
    "reduce", "map_inplace", "lock", "allocate", "Allocation", "subscribe", "producer",
    "Created", "ShmarrowError", "SegmentNotFound", "SegmentExists", "NoSpace",
    "AccessDenied", "InvalidName", "InvalidColumn", "NotAFile", "CorruptSegment",
    "NotZeroCopy", "InvalidTable", "ChannelError", "ChannelTimeout", "MapOverflow",
    "from_numpy", "to_numpy_structured", "field_views",
]
