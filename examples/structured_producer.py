"""Publish a NumPy structured array (nested records, subarrays, strings, timestamps, a complex
field and masked values) as a segment through the shmarrow package.

    .venv/bin/python examples/structured_producer.py particles 100000
    cargo run --example structured_consumer -- particles pos.x pos.y mass

Neither multiprocessing.Array (ctypes scalars) nor shared_memory + np.ndarray (one flat dtype,
no strings of varying length, no nulls) can carry this table.
"""

import sys

import numpy as np

import shmarrow

name = sys.argv[1] if len(sys.argv) > 1 else "particles"
rows = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000

dtype = np.dtype([
    ("id", "<u8"),
    ("pos", [("x", "<f8"), ("y", "<f8"), ("z", "<f4")]),   # nested record -> struct
    ("vel", "<f4", (3,)),                                    # subarray -> fixed_size_list
    ("mass", ">f8"),                                          # big-endian survives the trip
    ("kind", "U8"),                                           # -> string
    ("seen", "M8[us]"),                                       # -> timestamp[us]
    ("phase", "<c16"),                                        # -> struct<re, im>
])
i = np.arange(rows)
records = np.zeros(rows, dtype=dtype)
records["id"] = i
records["pos"]["x"] = np.cos(i * 0.001)
records["pos"]["y"] = np.sin(i * 0.001)
records["pos"]["z"] = i % 7
records["vel"] = np.stack([i % 3, i % 5, i % 7], axis=1)
records["mass"] = 1.0 + (i % 10) * 0.5
records["kind"] = np.where(i % 2 == 0, "electron", "muon")
records["seen"] = np.datetime64("2026-11-25T00:00:00", "us") + i
records["phase"] = np.exp(1j * i * 0.01)
masked = np.ma.masked_array(records)
masked["mass"][::100] = np.ma.masked                         # missing values -> nulls

shmarrow.from_numpy(name, masked)
print(f"published {name!r}: {rows} records of {len(dtype.names or ())} fields at {shmarrow.path(name)}")
