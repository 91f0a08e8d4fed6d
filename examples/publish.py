"""Publish a NumPy-built table under a name through the shmarrow package, then wait.

    .venv/bin/python examples/publish.py prices 10000000

Read it from another process with `examples/attach.py`, `cargo run --example attach`, or stock
pyarrow: pa.ipc.open_file(pa.memory_map("/dev/shm/prices")).read_all().
"""

import sys

import numpy as np
import pyarrow as pa

import shmarrow

name = sys.argv[1] if len(sys.argv) > 1 else "prices"
rows = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
table = pa.table({
    "id": np.arange(rows, dtype=np.int64),
    "price": 100.0 + (np.arange(rows) % 1000) * 0.01,
})
# lifetime="owner": leaving the `with` block removes the segment.
with shmarrow.create(name, table, lifetime="owner") as segment:
    print(f"published {name!r}: {rows} rows, {segment.nbytes} bytes at {segment.path}")
    input("press Enter to remove it\n")
