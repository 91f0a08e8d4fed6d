"""Attached segments handed to polars, pandas and DuckDB: which routes stay zero-copy (the
numeric buffers those libraries use lie in the segment's mapping) and which copy."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import shmarrow

ROWS = 1_000_000


@pytest.fixture
def attached(seg_name, iso_dir):
    """(table, path): x float64, i int64, s strings; published and attached."""
    shmarrow.create(
        seg_name,
        pa.table({
            "x": np.arange(ROWS, dtype=np.float64),
            "i": np.arange(ROWS, dtype=np.int64),
            "s": pa.array([f"s{k % 100}" for k in range(ROWS)]),
        }),
        dir=iso_dir,
    )
    return shmarrow.attach(seg_name, dir=iso_dir), shmarrow.path(seg_name, dir=iso_dir)


def _in_mapping(array: np.ndarray, path: str, maps, within) -> bool:
    return within(array.__array_interface__["data"][0], array.nbytes, maps(path))


def _rss_anon() -> int:
    """Private (anonymous) resident memory of this process in bytes; shared-memory pages of a
    segment are counted as RssShmem, not here."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon in /proc/self/status")


def test_polars_from_arrow_keeps_numeric_columns_in_the_mapping(attached, maps, within):
    pl = pytest.importorskip("polars", reason="polars is not installed (make venv installs it)")
    table, path = attached
    df = pl.from_arrow(table)
    assert df.height == ROWS
    for column in ("x", "i"):
        view = df[column].to_numpy(allow_copy=False)
        assert _in_mapping(view, path, maps, within), column
    assert df["s"].head(3).to_list() == ["s0", "s1", "s2"]  # strings: polars' own copy
    assert df["x"].sum() == float(ROWS * (ROWS - 1) // 2)


def test_polars_read_ipc_copies(attached, maps, within):
    """The installed polars reads a segment's path into its own memory: equal values, but
    not in the mapping (pl.from_arrow(shmarrow.attach(name)) is the zero-copy route)."""
    pl = pytest.importorskip("polars", reason="polars is not installed (make venv installs it)")
    table, path = attached
    df = pl.read_ipc(path)
    assert df.height == ROWS and df["i"][ROWS - 1] == ROWS - 1
    assert not _in_mapping(df["x"].to_numpy(allow_copy=False), path, maps, within)


def test_pandas_split_blocks_and_arrow_dtype(attached, maps, within):
    pd = pytest.importorskip("pandas", reason="pandas is not installed (make venv installs it)")
    table, path = attached
    frame = table.to_pandas(split_blocks=True)
    for column in ("x", "i"):
        assert _in_mapping(frame[column].to_numpy(), path, maps, within), column
    arrow_backed = table.to_pandas(types_mapper=pd.ArrowDtype)
    assert str(arrow_backed["s"].dtype) == "string[pyarrow]"
    for column in ("x", "i", "s"):
        arrow = pa.array(arrow_backed[column].array)  # the Arrow data behind the pandas column
        chunks = arrow.chunks if isinstance(arrow, pa.ChunkedArray) else [arrow]
        buffers = [b for chunk in chunks for b in chunk.buffers() if b is not None and b.size]
        assert buffers and all(within(b.address, b.size, maps(path)) for b in buffers), column
    assert arrow_backed["x"].sum() == float(ROWS * (ROWS - 1) // 2)


def test_duckdb_queries_the_attached_table_in_place(seg_name, iso_dir):
    duckdb = pytest.importorskip("duckdb", reason="duckdb is not installed (make venv installs it)")
    rows = 8_000_000  # 64 MB of float64
    shmarrow.create(seg_name, pa.table({"x": np.arange(rows, dtype=np.float64)}), dir=iso_dir)
    segment = shmarrow.attach(seg_name, dir=iso_dir)
    con = duckdb.connect()
    con.register("segment", segment)
    con.execute("SELECT 1").fetchall()  # DuckDB's own start-up allocations first
    before = _rss_anon()
    total, count = con.execute("SELECT sum(x), count(*) FROM segment").fetchone()
    grown = _rss_anon() - before
    assert (total, count) == (float(rows * (rows - 1) // 2), rows)
    # The scan reads the mapping: private memory grows by far less than the 64 MB column.
    assert grown < rows * 8 // 4, grown
    assert con.execute("SELECT count(*) FROM segment WHERE x >= ?", [rows - 10]).fetchone() == (10,)
    con.close()


def test_polars_string_view_is_kept_and_reduced(seg_name, iso_dir, maps, within, shmarrow_bin):
    pl = pytest.importorskip("polars", reason="polars is not installed (make venv installs it)")
    import json
    import subprocess

    frame = pl.DataFrame({"s": ["a", None, "longer than twelve bytes"], "x": [1.0, 2.0, 4.0]})
    shmarrow.create(seg_name, frame, dir=iso_dir)
    table = shmarrow.attach(seg_name, dir=iso_dir)
    assert table.schema.field("s").type == pa.string_view()
    assert table.column("s").to_pylist() == ["a", None, "longer than twelve bytes"]
    path = shmarrow.path(seg_name, dir=iso_dir)
    bufs = [b for b in table.column("s").chunk(0).buffers() if b is not None and b.size]
    assert all(within(b.address, b.size, maps(path)) for b in bufs)
    # reduce skips the string column, and names it when asked for it.
    assert set(shmarrow.reduce(seg_name, dir=iso_dir)) == {"x"}
    with pytest.raises(shmarrow.InvalidColumn, match="Utf8View") as info:
        shmarrow.reduce(seg_name, columns=["s"], dir=iso_dir)
    assert info.value.column == "s"
    out = subprocess.run([shmarrow_bin, "inspect", seg_name, "--dir", iso_dir, "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    columns = {c["name"]: c for c in json.loads(out.stdout)["columns"]}
    assert columns["s"]["type"] == "Utf8View" and columns["s"]["null_count"] == 1
    assert columns["s"]["zero_copy"] is True
