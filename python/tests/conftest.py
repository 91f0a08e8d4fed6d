"""Shared fixtures for the shmarrow pytest suite.

Every test gets unique segment names (``pytest-<pid>-<random>``) and every file a test makes
is removed afterwards: the ``seg_name``/``new_name`` fixtures delete whatever ended up at the
name (file, symlink, FIFO or directory) plus any stray ``.NAME.*.tmp`` publish temporaries;
``iso_dir`` is a fresh subdirectory of /dev/shm, removed with everything in it.
"""

from __future__ import annotations

import datetime as dt
import glob
import os
import shutil
import stat
import tempfile
import uuid
from pathlib import Path

import pyarrow as pa
import pytest

SHM = "/dev/shm"
REPO = Path(__file__).resolve().parents[2]


def unique_name(tag: str = "") -> str:
    suffix = f"-{tag}" if tag else ""
    return f"pytest-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}"


def _remove_any(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path, ignore_errors=True)
    else:
        os.unlink(path)


def _cleanup(name: str, directory: str = SHM) -> None:
    _remove_any(os.path.join(directory, name))
    for tmp in glob.glob(os.path.join(glob.escape(directory), f".{glob.escape(name)}.*.tmp")):
        _remove_any(tmp)


@pytest.fixture
def shm_dir() -> str:
    """The real shared-memory directory; tests pass it explicitly as ``dir=``."""
    assert os.path.isdir(SHM), "these tests need /dev/shm"
    return SHM


@pytest.fixture
def new_name():
    """Factory of unique segment names in /dev/shm, all cleaned up at teardown."""
    made = []

    def make(tag: str = "") -> str:
        name = unique_name(tag)
        made.append(name)
        return name

    yield make
    for name in made:
        _cleanup(name)


@pytest.fixture
def seg_name(new_name) -> str:
    """One unique segment name in /dev/shm, cleaned up at teardown."""
    return new_name()


@pytest.fixture
def iso_dir():
    """A fresh, empty directory on /dev/shm (tmpfs), removed with its contents afterwards."""
    d = tempfile.mkdtemp(prefix=f"pytest-shmarrow-{os.getpid()}-", dir=SHM)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def shmarrow_bin() -> str:
    """The `shmarrow` CLI: $SHMARROW_BIN, else target/debug, else target/release."""
    candidates = [os.environ.get("SHMARROW_BIN")]
    candidates += [str(REPO / "target" / "debug" / "shmarrow"), str(REPO / "target" / "release" / "shmarrow")]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    pytest.skip("shmarrow CLI binary not found (set SHMARROW_BIN or run `cargo build`)")


def mapping_ranges(path) -> list:
    """Address ranges of this process's mappings of exactly ``path``. Lines the kernel shows
    separately are merged only if they are one contiguous piece of the file (adjacent in both
    address and file offset), so two attaches never look like one mapping."""
    path = os.fspath(path)
    found = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.rstrip("\n").split(None, 5)
            if len(parts) == 6 and parts[5] == path:
                start, end = (int(x, 16) for x in parts[0].split("-"))
                found.append((start, end, int(parts[2], 16)))
    found.sort()
    merged = []
    for start, end, offset in found:
        if merged:
            m_start, m_end, m_offset = merged[-1]
            if m_end == start and m_offset + (m_end - m_start) == offset:
                merged[-1] = (m_start, end, m_offset)
                continue
        merged.append((start, end, offset))
    return [(start, end) for start, end, _ in merged]


@pytest.fixture
def maps():
    """``maps(path)`` -> [(start, end)] of this process's mappings of that file."""
    return mapping_ranges


def in_ranges(address: int, size: int, ranges) -> bool:
    return any(start <= address and address + size <= end for start, end in ranges)


@pytest.fixture
def within():
    """``within(address, size, ranges)``: the byte range lies inside one of the mappings."""
    return in_ranges


def all_buffers(array: pa.Array) -> list:
    """Every non-empty buffer of ``array``, children included (and a dictionary's values)."""
    bufs = [b for b in array.buffers() if b is not None and b.size > 0]
    if pa.types.is_dictionary(array.type):
        bufs += [b for b in array.dictionary.buffers() if b is not None and b.size > 0]
    return bufs


@pytest.fixture
def buffers_of():
    return all_buffers


def _batch(offset: int, n: int = 7) -> pa.RecordBatch:
    utc = dt.timezone.utc
    base = dt.datetime(2024, 3, 1, 12, 0, tzinfo=utc)
    return pa.record_batch(
        {
            "i64": pa.array([offset + i for i in range(n)], pa.int64()),
            "u8": pa.array([(offset + i) % 256 for i in range(n)], pa.uint8()),
            "i32_nulls": pa.array([None if i % 3 == 0 else offset * i for i in range(n)], pa.int32()),
            "f64": pa.array([offset + i * 0.25 for i in range(n)], pa.float64()),
            "f32_nulls": pa.array([None if i == 1 else i / 8 for i in range(n)], pa.float32()),
            "flag": pa.array([None if i == 4 else (i + offset) % 2 == 0 for i in range(n)], pa.bool_()),
            "s": pa.array([None if i == 2 else f"row-{offset + i}-é✓" for i in range(n)], pa.string()),
            "nested": pa.array(
                [None if i == 5 else {"a": i * 10, "b": f"b{i}", "c": [1.5] * i} for i in range(n)],
                pa.struct([("a", pa.int32()), ("b", pa.string()), ("c", pa.list_(pa.float64()))]),
            ),
            "lst": pa.array([None if i == 3 else list(range(offset, offset + i)) for i in range(n)], pa.list_(pa.int16())),
            "ts": pa.array(
                [None if i == 6 else base + dt.timedelta(seconds=offset + i, microseconds=i) for i in range(n)],
                pa.timestamp("us", tz="America/New_York"),
            ),
            # one dictionary for all batches (the IPC file format cannot replace dictionaries)
            "cat": pa.DictionaryArray.from_arrays(
                pa.array([None if (offset + i) % 4 == 2 else (offset + i) % 3 for i in range(n)], pa.int32()),
                pa.array(["red", "green", "blue"]),
            ),
            "void": pa.nulls(n),
        }
    )


@pytest.fixture
def rich_table() -> pa.Table:
    """Three batches, many types (ints, floats, bool, strings, struct, list, timestamp with
    time zone, dictionary, null type) and nulls in most columns."""
    return pa.Table.from_batches([_batch(0), _batch(100, n=5), _batch(1000, n=9)])


def strip_shmarrow_meta(table: pa.Table) -> pa.Table:
    """The table with the ``shmarrow.*`` schema metadata keys removed (others kept)."""
    md = table.schema.metadata or {}
    rest = {k: v for k, v in md.items() if not k.startswith(b"shmarrow.")}
    return table.replace_schema_metadata(rest or None)


@pytest.fixture
def strip_meta():
    return strip_shmarrow_meta


def proc_start_time(pid) -> int:
    """Field 22 (starttime) of /proc/PID/stat, parsed after the last ')'."""
    with open(f"/proc/{pid}/stat") as f:
        stat_line = f.read()
    rest = stat_line[stat_line.rindex(")") + 1:].split()
    return int(rest[19])  # rest[0] is field 3


@pytest.fixture
def start_time_of():
    return proc_start_time
