"""Foreign bytes decoded safely, seen from Python: a big-endian Arrow file attaches equal to its
little-endian twin (converted, and named as a copy), strict mode refuses it, and a file with
a lying buffer offset is a ``CorruptSegment`` (an ``Exception``), never a crash."""

from __future__ import annotations

import shutil

import pyarrow as pa
import pytest

import shmarrow
from conftest import REPO

DATA = REPO / "tests" / "data"


def test_big_endian_file_attaches_equal_to_little_endian_twin(iso_dir):
    shutil.copy(DATA / "bigendian_primitive.arrow_file", f"{iso_dir}/be")
    shutil.copy(DATA / "littleendian_primitive.arrow_file", f"{iso_dir}/le")
    big = shmarrow.attach("be", dir=iso_dir)
    little = shmarrow.attach("le", dir=iso_dir)
    assert big.num_rows == 37
    assert big.equals(little)
    # pyarrow's own reader (it byte-swaps) agrees value for value.
    assert big.equals(pa.ipc.open_file(str(DATA / "bigendian_primitive.arrow_file")).read_all())
    with pytest.raises(shmarrow.NotZeroCopy):
        shmarrow.attach("be", dir=iso_dir, strict=True)


def test_lying_buffer_offset_is_corrupt_not_a_crash(iso_dir):
    table = pa.table({"x": pa.array(range(6), pa.int64())})
    path = f"{iso_dir}/lying"
    with pa.ipc.new_file(path, table.schema) as writer:
        writer.write_table(table)
    data = bytearray(open(path, "rb").read())
    # The values buffer's entry (offset 0, length 48) in the batch message: offset += 4 GiB.
    entry = (0).to_bytes(8, "little") + (48).to_bytes(8, "little")
    at = data.index(entry)
    data[at + 4] |= 1
    open(path, "wb").write(bytes(data))
    with pytest.raises(shmarrow.CorruptSegment, match="outside the"):
        shmarrow.attach("lying", dir=iso_dir)
