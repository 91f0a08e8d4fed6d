"""The type matrix of the cross-language tests, mirrored value by value from
tests/common/mod.rs (`type_matrix`), plus the Python half of those tests.

Run by the Rust tests (tests/cross_language.rs) as `python matrix.py COMMAND ...`:

- ``check-stock PATH``: read a segment written by Rust with stock pyarrow only (no shmarrow
  import), compare with the matrix exactly, and check every buffer lies in the file mapping.
- ``publish NAME DIR``: publish the matrix through the shmarrow package (the Rust writer).
- ``write-stock PATH``: write the matrix with stock pyarrow's IPC writer (8-byte alignment).
- ``write-foreign PATH``: stock pyarrow file with decimal128 and month-day-nano interval columns
  laid out so that a 16-byte buffer is misaligned; prints the misaligned columns as JSON.
- ``attach-foreign NAME DIR``: shmarrow.attach the foreign file and compare with stock pyarrow.
"""

import json
import sys
from decimal import Decimal

import numpy as np
import pyarrow as pa

ROWS = 5


def matrix() -> pa.Table:
    i8, u8 = np.iinfo(np.int8), np.iinfo(np.uint8)
    i16, u16 = np.iinfo(np.int16), np.iinfo(np.uint16)
    i32, u32 = np.iinfo(np.int32), np.iinfo(np.uint32)
    i64, u64 = np.iinfo(np.int64), np.iinfo(np.uint64)
    f16 = pa.array(
        np.array([1.5, -2.0, 0.0, 0.0, 65504.0], dtype=np.float16),
        mask=np.array([False, False, False, True, False]),
    )
    struct_type = pa.struct([("a", pa.int32()), ("b", pa.utf8())])
    struct = pa.StructArray.from_arrays(
        [
            pa.array([1, 2, None, 4, 5], pa.int32()),
            pa.array(["x", None, None, "w", "v"], pa.utf8()),
        ],
        fields=list(struct_type),
        mask=pa.array([False, False, True, False, False]),
    )
    fixed_list = pa.FixedSizeListArray.from_arrays(
        pa.array([1, 2, 3, 4, None, None, 5, 6, 7, 8], pa.float32()),
        2,
        mask=pa.array([False, False, True, False, False]),
    )
    dictionary = pa.DictionaryArray.from_arrays(
        pa.array([0, 1, None, 0, 2], pa.int32()), pa.array(["red", "green", "blue"])
    )
    columns = {
        "i8": pa.array([int(i8.min), 0, int(i8.max), None, 1], pa.int8()),
        "i16": pa.array([int(i16.min), 1, int(i16.max), 2, None], pa.int16()),
        "i32": pa.array([int(i32.min), 0, int(i32.max), None, 7], pa.int32()),
        "i64": pa.array([int(i64.min), 0, int(i64.max), 42, None], pa.int64()),
        "u8": pa.array([0, int(u8.max), None, 1, 2], pa.uint8()),
        "u16": pa.array([0, int(u16.max), 1, None, 3], pa.uint16()),
        "u32": pa.array([0, int(u32.max), 1, 2, None], pa.uint32()),
        "u64": pa.array([0, int(u64.max), None, 3, 4], pa.uint64()),
        "f16": f16,
        "f32": pa.array([1.5, -0.25, float("inf"), None, float(np.finfo(np.float32).tiny)], pa.float32()),
        "f64": pa.array([0.1, -1e300, float("inf"), float("-inf"), None], pa.float64()),
        "bool": pa.array([True, False, None, True, False], pa.bool_()),
        "utf8": pa.array(["a", "", None, "ünïcode", "xxx"], pa.utf8()),
        "large_utf8": pa.array(["big", None, "", "z", "é"], pa.large_utf8()),
        "binary": pa.array([b"\x00\x01", b"", None, b"\xff", b"b"], pa.binary()),
        "large_binary": pa.array([b"L", None, b"", b"\x00", b"q"], pa.large_binary()),
        "fixed_binary": pa.array([b"abc", b"def", None, b"ghi", b"jkl"], pa.binary(3)),
        "date32": pa.array([0, 19000, None, -1, 1], pa.date32()),
        "ts_tz": pa.array([0, 1_700_000_000_000_000, None, -1, 5], pa.timestamp("us", tz="Europe/Paris")),
        "ts_ns": pa.array([1, 2, 3, None, 4], pa.timestamp("ns")),
        "duration_s": pa.array([1, -1, None, 0, 100], pa.duration("s")),
        "decimal": pa.array(
            [Decimal("1.2345"), Decimal("-0.0001"), None, Decimal("0"), Decimal("9999999999999999.9999")],
            pa.decimal128(20, 4),
        ),
        "null": pa.nulls(ROWS),
        "struct": struct,
        "list": pa.array([[1, 2], [], None, [3, None], [4]], pa.list_(pa.int32())),
        "large_list": pa.array([["a"], None, [], ["b", "c"], [None]], pa.large_list(pa.large_utf8())),
        "fixed_list": fixed_list,
        "map": pa.array(
            [[("k", 1)], [], None, [("a", 2), ("b", 3)], [("z", None)]], pa.map_(pa.utf8(), pa.int64())
        ),
        "dict": dictionary,
    }
    return pa.table(columns)


def batches(table: pa.Table):
    """The same split as the Rust side: 3 rows, then 2."""
    return [table.slice(0, 3).combine_chunks().to_batches()[0], table.slice(3, 2).combine_chunks().to_batches()[0]]


def compare(got: pa.Table, want: pa.Table) -> None:
    got = got.replace_schema_metadata(None)
    if got.schema != want.schema:
        sys.exit(f"schema differs:\n{got.schema}\n--- want ---\n{want.schema}")
    for name in want.column_names:
        if not got.column(name).equals(want.column(name)):
            sys.exit(f"column {name} differs:\n{got.column(name)}\n--- want ---\n{want.column(name)}")


def mapping_of(path: str):
    """(start, end) of this process's mapping of `path`, from /proc/self/maps."""
    ranges = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and parts[5] == path:
                start, end = (int(x, 16) for x in parts[0].split("-"))
                ranges.append((start, end))
    if not ranges:
        sys.exit(f"{path} is not mapped")
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


def all_buffers_inside(table: pa.Table, path: str) -> None:
    start, end = mapping_of(path)
    for name in table.column_names:
        for chunk in table.column(name).chunks:
            arrays = [chunk]
            if pa.types.is_dictionary(chunk.type):
                arrays = [chunk.indices, chunk.dictionary]
            for array in arrays:
                for buf in array.buffers():
                    if buf is not None and buf.size and not (start <= buf.address and buf.address + buf.size <= end):
                        sys.exit(f"column {name}: buffer at {buf.address:#x} outside the mapping")


def write_stock(path: str, table: pa.Table) -> None:
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        for batch in batches(table):
            writer.write_batch(batch)


def foreign_table(pad: int) -> pa.Table:
    n = 3
    return pa.table({
        # a string column whose data length shifts every later buffer by 8 * pad bytes
        "label": pa.array(["x" * (pad * 8 + 1)] * n),
        "dec": pa.array([Decimal("1.25"), Decimal("-2.50"), None], pa.decimal128(18, 2)),
        "iv": pa.array([pa.MonthDayNano([1, 2, 3]), None, pa.MonthDayNano([-1, 0, 5])], pa.month_day_nano_interval()),
        "x": pa.array([1.0, 2.0, 3.0]),
    })


def write_foreign(path: str) -> None:
    """Find a layout whose decimal128 buffer lands at 8 mod 16 in the file; print the
    misaligned columns as JSON."""
    for pad in range(8):
        table = foreign_table(pad)
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        mm = pa.memory_map(path)
        base = mm.read_buffer(1).address
        read = pa.ipc.open_file(mm).read_all()
        misaligned = [
            # decimal128 needs 16-byte alignment in arrow-rs (i128); the interval's native
            # type needs only 8, so it is read in place wherever it lands.
            name for name in ("dec",)
            if any(b is not None and b.size and (b.address - base) % 16
                   for b in read.column(name).chunk(0).buffers()[1:])
        ]
        if misaligned:
            print(json.dumps(misaligned))
            return
    sys.exit("no layout misaligned a 16-byte column")


def main() -> None:
    command, *args = sys.argv[1:]
    want = matrix()
    if command == "check-stock":
        (path,) = args
        assert "shmarrow" not in sys.modules
        got = pa.ipc.open_file(pa.memory_map(path)).read_all()
        compare(got, want)
        all_buffers_inside(got, path)
        meta = got.schema.metadata or {}
        if b"shmarrow.version" not in meta:
            sys.exit("no shmarrow.version metadata key")
        print("ok")
    elif command == "publish":
        import shmarrow
        name, directory = args
        shmarrow.create(name, pa.Table.from_batches(batches(want)), dir=directory)
        print("ok")
    elif command == "write-stock":
        (path,) = args
        write_stock(path, want)
        print("ok")
    elif command == "write-foreign":
        (path,) = args
        write_foreign(path)
    elif command == "attach-foreign":
        import shmarrow
        name, directory = args
        got = shmarrow.attach(name, dir=directory)
        stock = pa.ipc.open_file(pa.memory_map(f"{directory}/{name}")).read_all()
        compare(got, stock)
        try:
            shmarrow.attach(name, dir=directory, strict=True)
            sys.exit("strict attach of a misaligned file did not raise")
        except shmarrow.NotZeroCopy as exc:
            print(f"ok: {exc}")
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
