"""Attach a table of nested records (examples/structured_producer.rs or .py) by name and
compute per-field statistics through zero-copy NumPy views of every fixed-width leaf.

    .venv/bin/python examples/structured_consumer.py frames
"""

import json
import sys

from typing import Dict, Optional

import numpy as np

import shmarrow

name = sys.argv[1] if len(sys.argv) > 1 else "frames"
table = shmarrow.attach(name)
stats: Dict[str, Dict[str, float]] = {}
for batch in table.to_batches():
    for path, view in shmarrow.field_views(batch).items():
        if path.endswith(".mask") or view.dtype.kind not in "iuf":
            continue
        mask = shmarrow.field_views(batch).get(path + ".mask")
        values = view[~mask] if mask is not None else view
        s = stats.setdefault(path, {"count": 0, "sum": 0.0, "min": np.inf, "max": -np.inf})
        if values.size:
            s["count"] += int(values.size)
            s["sum"] += float(values.sum())
            s["min"] = min(s["min"], float(values.min()))
            s["max"] = max(s["max"], float(values.max()))
fields: Dict[str, Dict[str, Optional[float]]] = {
    path: {**s, "mean": s["sum"] / s["count"] if s["count"] else None} for path, s in stats.items()
}
print(json.dumps({"name": name, "rows": table.num_rows, "fields": fields}, indent=1))
