"""Write the seed corpora of the fuzz targets: valid inputs of every type of the type matrix
(python/tests/matrix.py, mirrored from tests/common/mod.rs), in every format each target
reads, so the fuzzers start from deep inside the decoders rather than from the magic bytes.

    python fuzz/seeds.py fuzz/corpus      # run by `make fuzz` before fuzzing

Writes fuzz/corpus/<target>/<seed> for attach, import_file, import_feather, import_stream,
import_parquet, import_csv and flight_put. Seeds are small (one table of 5 rows per file,
plus one file per column) and deterministic; existing corpus entries are kept.
"""

import io
import struct
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python" / "tests"))
from matrix import batches, matrix  # noqa: E402


def ipc_file(table: pa.Table, **options) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_file(sink, table.schema, options=pa.ipc.IpcWriteOptions(**options)) as w:
        for batch in batches(table) if table.num_rows == 5 else table.to_batches():
            w.write_batch(batch)
    return sink.getvalue()


def ipc_stream(table: pa.Table, **options) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(**options)) as w:
        w.write_table(table)
    return sink.getvalue()


def flight_messages(stream: bytes) -> bytes:
    """The messages of an IPC stream framed as flight_put reads them: u32 header length,
    header, u32 body length, body (what a FlightData carries)."""
    out = bytearray()
    for message in pa.ipc.MessageReader.open_stream(pa.py_buffer(stream)):
        header = message.metadata.to_pybytes()
        body = message.body.to_pybytes() if message.body is not None else b""
        out += struct.pack("<I", len(header)) + header + struct.pack("<I", len(body)) + body
    return bytes(out)


def tables():
    """The whole matrix, then each column on its own (small seeds the fuzzer mutates well)."""
    table = matrix()
    yield "matrix", table
    for name in table.column_names:
        yield name, table.select([name])


def main(root: str) -> None:
    root = Path(root)
    seeds = {t: {} for t in ["attach", "import_file", "import_feather", "import_stream",
                             "import_parquet", "import_csv", "flight_put"]}
    for name, table in tables():
        seeds["attach"][name] = ipc_file(table)
        seeds["import_file"][name] = ipc_file(table)
        for codec in ["lz4", "zstd"]:
            sink = io.BytesIO()
            feather.write_feather(table, sink, compression=codec)
            seeds["import_feather"][f"{name}-{codec}"] = sink.getvalue()
        stream = ipc_stream(table)
        seeds["import_stream"][name] = stream
        seeds["import_stream"][f"{name}-zstd"] = ipc_stream(table, compression="zstd")
        seeds["flight_put"][name] = flight_messages(stream)
        try:
            sink = io.BytesIO()
            pq.write_table(table, sink)
            seeds["import_parquet"][name] = sink.getvalue()
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
            pass  # a type Parquet cannot hold
        try:
            sink = io.BytesIO()
            pacsv.write_csv(table, sink)
            seeds["import_csv"][name] = sink.getvalue()
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
            pass  # a type CSV cannot hold
    for target, files in seeds.items():
        (root / target).mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (root / target / f"seed-{name}").write_bytes(data)
        print(f"{target}: {len(files)} seeds")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "fuzz/corpus")
