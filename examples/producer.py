"""Stream record batches through a channel from Python (the Rust producer does the work):
batch i holds ROWS rows whose `seq` is i and whose `x` is i + row / ROWS.

    .venv/bin/python examples/producer.py ticks 10000 16 1     # NAME BATCHES ROWS CONSUMERS
"""

import sys
import time

import numpy as np
import pyarrow as pa

import shmarrow

name = sys.argv[1] if len(sys.argv) > 1 else "ticks"
batches = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
rows = int(sys.argv[3]) if len(sys.argv) > 3 else 16
consumers = int(sys.argv[4]) if len(sys.argv) > 4 else 1

schema = pa.schema([("seq", pa.int64()), ("x", pa.float64())])
# lifetime="owner": the channel goes when the producer closes (and `shmarrow gc` removes it
# if this process is killed first).
with shmarrow.producer(name, schema, slots=64, slot_size=1 << 16, lifetime="owner") as producer:
    while producer.consumers < consumers:
        time.sleep(0.001)
    t0 = time.perf_counter()
    for i in range(batches):
        producer.send(pa.record_batch([np.full(rows, i, dtype=np.int64), i + np.arange(rows) / rows], schema=schema))
    secs = time.perf_counter() - t0
print(f"sent {batches} batches of {rows} rows in {secs:.3f} s ({batches / secs:.0f} batches/s)")
