"""Attach a segment by name and use its columns as NumPy arrays, without copying.

    .venv/bin/python examples/attach.py prices
"""

import sys
import time

import shmarrow

name = sys.argv[1] if len(sys.argv) > 1 else "prices"
t0 = time.perf_counter()
table = shmarrow.attach(name)
print(f"attached {name!r} in {(time.perf_counter() - t0) * 1e3:.3f} ms: {table.num_rows} rows")
for field in table.schema:
    if field.type in ("double", "int64"):
        views = shmarrow.column_view(table, field.name)  # read-only views of shared memory
        print(f"sum({field.name}) = {sum(v.sum() for v in views)}")
