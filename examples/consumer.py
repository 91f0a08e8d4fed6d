"""Receive every batch of a channel (see examples/producer.rs or producer.py) through the
shmarrow package, zero-copy, checking order and contents; print a JSON summary.

    .venv/bin/python examples/consumer.py ticks
"""

import json
import sys

import numpy as np

import shmarrow

name = sys.argv[1] if len(sys.argv) > 1 else "ticks"
# Waits up to 30 s for the producer to create the channel, then up to 30 s for each batch.
sub = shmarrow.subscribe(name, timeout=30)

batches = rows = 0
ok = True
total = 0.0
for batch in sub:  # pyarrow.RecordBatch, buffers in the channel's slot
    n = batch.num_rows
    seq = batch.column(0).to_numpy(zero_copy_only=True)
    x = batch.column(1).to_numpy(zero_copy_only=True)
    ok &= bool((seq == batches).all()) and bool(np.array_equal(x, batches + np.arange(n) / n))
    total += float(x.sum())
    rows += n
    batches += 1
print(json.dumps({"consumer": "python", "batches": batches, "rows": rows,
                  "in_order_and_correct": ok, "missed": sub.missed, "sum": total}))
