"""Zero copy: attached tables and column views point into the segment's shared mapping, and
the mapping lives exactly as long as something of the table does."""

from __future__ import annotations

import decimal
import gc
import os

import numpy as np
import pyarrow as pa
import pytest

import shmarrow


def _fresh_segment(name, directory, table):
    created = shmarrow.create(name, table, dir=directory)
    path = created.path
    assert path == os.path.join(directory, name)
    return path


def test_every_buffer_lies_in_the_mapping(seg_name, shm_dir, rich_table, maps, within, buffers_of):
    path = _fresh_segment(seg_name, shm_dir, rich_table)
    assert maps(path) == [], "nothing maps the segment before attach"
    table = shmarrow.attach(seg_name, dir=shm_dir)
    ranges = maps(path)
    assert ranges, f"{path} is not mapped after attach"
    assert sum(end - start for start, end in ranges) >= os.path.getsize(path)

    checked = 0
    for name in table.column_names:
        col = table.column(name)
        assert col.num_chunks == 3
        for i, chunk in enumerate(col.chunks):
            bufs = buffers_of(chunk)
            if name != "void":
                assert bufs, f"{name} chunk {i} has no buffers to check"
            for buf in bufs:
                assert within(buf.address, buf.size, ranges), (
                    f"column {name} chunk {i}: buffer {buf.address:#x}+{buf.size} is not in "
                    f"the mapping {[(hex(s), hex(e)) for s, e in ranges]}"
                )
                checked += 1
    # 11 non-null columns x 3 batches, most with several buffers (children included)
    assert checked >= 70


def test_column_view_is_a_readonly_view_into_the_mapping(seg_name, shm_dir, rich_table, maps, within):
    path = _fresh_segment(seg_name, shm_dir, rich_table)
    table = shmarrow.attach(seg_name, dir=shm_dir)
    ranges = maps(path)
    for column, dtype in [("i64", np.int64), ("u8", np.uint8), ("f64", np.float64)]:
        views = shmarrow.column_view(table, column)
        assert len(views) == 3
        expected = [c.to_numpy() for c in rich_table.column(column).chunks]
        for view, exp in zip(views, expected):
            assert isinstance(view, np.ndarray)
            assert view.dtype == dtype
            address = view.__array_interface__["data"][0]
            assert within(address, view.nbytes, ranges), column
            assert view.flags.writeable is False
            with pytest.raises(ValueError):
                view[0] = 0
            np.testing.assert_array_equal(view, exp)
        assert np.concatenate(views).tolist() == rich_table.column(column).to_pylist()


def test_column_view_by_index_and_single_chunk(seg_name, shm_dir, maps, within):
    values = np.arange(10_000, dtype=np.float64) * 1.5
    path = _fresh_segment(seg_name, shm_dir, pa.table({"a": pa.array(["x"] * 10_000), "v": values}))
    table = shmarrow.attach(seg_name, dir=shm_dir)
    (view,) = shmarrow.column_view(table, 1)
    assert view.__array_interface__["data"][0] % 64 == 0, "our writer aligns buffers to 64 bytes"
    assert within(view.__array_interface__["data"][0], view.nbytes, maps(path))
    np.testing.assert_array_equal(view, values)


def test_column_view_timestamp_without_nulls(seg_name, shm_dir, maps, within):
    ts = pa.array([0, 1, 2, 3, 4], pa.timestamp("ms", tz="UTC"))
    path = _fresh_segment(seg_name, shm_dir, pa.table({"t": ts}))
    table = shmarrow.attach(seg_name, dir=shm_dir)
    (view,) = shmarrow.column_view(table, "t")
    assert view.dtype == np.dtype("datetime64[ms]")
    assert within(view.__array_interface__["data"][0], view.nbytes, maps(path))
    assert view.astype(np.int64).tolist() == [0, 1, 2, 3, 4]


def test_column_view_refuses_strings(seg_name, shm_dir):
    _fresh_segment(seg_name, shm_dir, pa.table({"s": ["a", "b", "c"]}))  # no nulls: the type is why
    table = shmarrow.attach(seg_name, dir=shm_dir)
    with pytest.raises(shmarrow.NotZeroCopy, match="'s'"):
        shmarrow.column_view(table, "s")


def test_column_view_refuses_a_dictionary_column_pyarrow_would_decode(seg_name, shm_dir):
    # pyarrow's to_numpy(zero_copy_only=True) returns the decoded values of a dictionary of
    # numbers (a new array): column_view must not pass that off as a view.
    d = pa.DictionaryArray.from_arrays(pa.array([0, 1, 0], pa.int8()), pa.array([10.5, 20.5]))
    _fresh_segment(seg_name, shm_dir, pa.table({"d": d, "f": [1.0, 2.0, 3.0]}))
    table = shmarrow.attach(seg_name, dir=shm_dir)
    with pytest.raises(shmarrow.NotZeroCopy, match="'d' chunk 0"):
        shmarrow.column_view(table, "d")
    (f,) = shmarrow.column_view(table, "f")  # the plain column next to it is still a view
    assert f.tolist() == [1.0, 2.0, 3.0] and not f.flags.owndata


def test_column_view_refuses_nulls(seg_name, shm_dir):
    _fresh_segment(seg_name, shm_dir, pa.table({"f": pa.array([1.0, None, 3.0], pa.float64())}))
    table = shmarrow.attach(seg_name, dir=shm_dir)
    with pytest.raises(shmarrow.NotZeroCopy, match="'f'") as info:
        shmarrow.column_view(table, "f")
    assert isinstance(info.value, shmarrow.ShmarrowError)


def test_column_view_refuses_nulls_in_a_later_chunk(seg_name, shm_dir):
    t = pa.Table.from_batches(
        [pa.record_batch({"f": pa.array([1.0, 2.0])}), pa.record_batch({"f": pa.array([None, 4.0])})]
    )
    _fresh_segment(seg_name, shm_dir, t)
    table = shmarrow.attach(seg_name, dir=shm_dir)
    with pytest.raises(shmarrow.NotZeroCopy, match="chunk 1"):
        shmarrow.column_view(table, "f")


def test_own_segment_16_byte_types_are_strict_zero_copy(seg_name, shm_dir, maps, within, buffers_of):
    """Our writer aligns to 64 bytes, so even decimal128/256 and month-day-nano intervals are
    used in place (strict=True succeeds)."""
    t = pa.table(
        {
            "pad": pa.array([1, 2, 3], pa.int8()),
            "d128": pa.array([decimal.Decimal("1.25"), None, decimal.Decimal("-3.5")], pa.decimal128(10, 2)),
            "d256": pa.array([decimal.Decimal("7.5"), decimal.Decimal("0"), None], pa.decimal256(40, 2)),
            "mdn": pa.array([pa.MonthDayNano([1, 2, 3]), None, pa.MonthDayNano([4, 5, 6])], pa.month_day_nano_interval()),
        }
    )
    path = _fresh_segment(seg_name, shm_dir, t)
    table = shmarrow.attach(seg_name, dir=shm_dir, strict=True)
    assert table.to_pylist() == t.to_pylist()
    ranges = maps(path)
    for name in t.column_names:
        bufs = buffers_of(table.column(name).chunk(0))
        assert bufs
        for buf in bufs:
            assert within(buf.address, buf.size, ranges), name
            assert buf.address % 64 == 0, name


# ---------------------------------------------------------------- mapping lifetime


def test_mapping_goes_with_the_table(seg_name, shm_dir, maps):
    path = _fresh_segment(seg_name, shm_dir, pa.table({"x": pa.array(range(4096), pa.int64())}))
    table = shmarrow.attach(seg_name, dir=shm_dir)
    assert maps(path)
    del table
    gc.collect()
    assert maps(path) == []


def test_mapping_stays_while_one_column_lives(seg_name, shm_dir, maps, within):
    t = pa.table({"x": pa.array(range(4096), pa.int64()), "y": pa.array(range(4096), pa.float64())})
    path = _fresh_segment(seg_name, shm_dir, t)
    table = shmarrow.attach(seg_name, dir=shm_dir)
    arr = table.column("y").chunk(0)
    del table
    gc.collect()
    ranges = maps(path)
    assert ranges, "a live column must keep the mapping"
    buf = arr.buffers()[1]
    assert within(buf.address, buf.size, ranges)
    assert arr[4095].as_py() == 4095.0
    del arr, buf
    gc.collect()
    assert maps(path) == []


def test_mapping_stays_while_a_numpy_view_lives(seg_name, shm_dir, maps):
    path = _fresh_segment(seg_name, shm_dir, pa.table({"x": pa.array(range(4096), pa.int64())}))
    table = shmarrow.attach(seg_name, dir=shm_dir)
    (view,) = shmarrow.column_view(table, "x")
    del table
    gc.collect()
    assert maps(path)
    assert int(view.sum()) == 4095 * 4096 // 2
    del view
    gc.collect()
    assert maps(path) == []


def _resident_kib(path):
    """Kilobytes of this process's mappings of ``path`` that have pages mapped (smaps Rss)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and len(head) >= 5:  # a mapping's first line
                inside = line.rstrip("\n").removesuffix(" (deleted)").endswith(" " + path)
            elif inside and head[0] == "Rss:":
                total += int(head[1])
    return total


def test_attach_maps_no_page_of_a_one_batch_segment(seg_name, shm_dir, maps):
    """The footer and message headers are read with pread, not through the mapping: attaching
    (and viewing) a one-batch float column faults in none of its pages (each fault would map
    up to 16 pages, and unmapping them is what attach + drop cost). Reading the data does."""
    path = _fresh_segment(seg_name, shm_dir, pa.table({"x": np.arange(1 << 17, dtype=np.float64)}))
    table = shmarrow.attach(seg_name, dir=shm_dir)
    (view,) = shmarrow.column_view(table, "x")
    assert maps(path)
    assert _resident_kib(path) == 0
    assert view[-1] == (1 << 17) - 1
    assert _resident_kib(path) > 0
    del view, table
    gc.collect()
    assert maps(path) == []


def test_each_attach_is_its_own_mapping(seg_name, shm_dir, maps):
    path = _fresh_segment(seg_name, shm_dir, pa.table({"x": pa.array(range(4096), pa.int64())}))
    a = shmarrow.attach(seg_name, dir=shm_dir)
    n1 = len(maps(path))
    b = shmarrow.attach(seg_name, dir=shm_dir)
    assert len(maps(path)) == n1 + 1
    del a
    gc.collect()
    assert len(maps(path)) == n1
    assert b.column("x")[10].as_py() == 10
    del b
    gc.collect()
    assert maps(path) == []


# ---------------------------------------------------------------- foreign (stock pyarrow) files


def _write_stock(path, table):
    with pa.OSFile(path, "wb") as sink:
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)


def test_stock_written_file_fixed_width_is_zero_copy(seg_name, shm_dir, maps, within, buffers_of):
    t = pa.table({"i": pa.array(range(100), pa.int32()), "f": pa.array([0.5] * 100), "s": ["z"] * 100})
    path = os.path.join(shm_dir, seg_name)
    _write_stock(path, t)
    table = shmarrow.attach(seg_name, dir=shm_dir, strict=True)
    assert table.equals(t)
    ranges = maps(path)
    for name in t.column_names:
        for buf in buffers_of(table.column(name).chunk(0)):
            assert within(buf.address, buf.size, ranges), name


def test_stock_written_misaligned_decimal_is_copied_or_refused(seg_name, shm_dir, maps, within):
    """Stock pyarrow aligns buffers to 8 only; a decimal128 buffer at 8 mod 16 cannot be used
    in place: default attach copies just that buffer, strict=True refuses."""
    path = os.path.join(shm_dir, seg_name)
    for n in range(1, 9):
        t = pa.table(
            {
                "i": pa.array(range(n), pa.int8()),
                "d": pa.array([decimal.Decimal(f"{k}.25") for k in range(n)], pa.decimal128(12, 2)),
            }
        )
        _write_stock(path, t)
        with pa.memory_map(path) as src:
            stock = pa.ipc.open_file(src).read_all()
            misaligned = stock.column("d").chunk(0).buffers()[1].address % 16 != 0
            del stock
        if misaligned:
            break
    else:
        pytest.fail("could not make stock pyarrow write a decimal128 buffer at 8 mod 16")

    with pytest.raises(shmarrow.NotZeroCopy, match="d"):
        shmarrow.attach(seg_name, dir=shm_dir, strict=True)

    table = shmarrow.attach(seg_name, dir=shm_dir)
    assert table.equals(t)
    ranges = maps(path)
    dbuf = table.column("d").chunk(0).buffers()[1]
    assert dbuf.address % 16 == 0
    assert not within(dbuf.address, dbuf.size, ranges), "the misaligned buffer must be a copy"
    ibuf = table.column("i").chunk(0).buffers()[1]
    assert within(ibuf.address, ibuf.size, ranges), "other columns stay zero-copy"


@pytest.mark.parametrize("codec", ["lz4", "zstd"])
def test_stock_written_compressed_file_is_decompressed_or_refused(seg_name, shm_dir, codec):
    if not pa.Codec.is_available(codec):
        pytest.skip(f"pyarrow built without {codec}")
    t = pa.table({"x": pa.array(range(1000), pa.int64()), "s": [str(i) for i in range(1000)]})
    path = os.path.join(shm_dir, seg_name)
    with pa.OSFile(path, "wb") as sink:
        with pa.ipc.new_file(sink, t.schema, options=pa.ipc.IpcWriteOptions(compression=codec)) as w:
            w.write_table(t)
    with pytest.raises(shmarrow.NotZeroCopy, match=seg_name):
        shmarrow.attach(seg_name, dir=shm_dir, strict=True)
    assert shmarrow.attach(seg_name, dir=shm_dir).equals(t)


# ---------------------------------------------------------------- column_view of a segment name


def test_column_view_of_a_name_is_a_readonly_view_into_the_mapping(seg_name, shm_dir, rich_table, maps, within):
    path = _fresh_segment(seg_name, shm_dir, rich_table)
    for column, dtype in [("i64", np.int64), ("u8", np.uint8), ("f64", np.float64)]:
        views = shmarrow.column_view(seg_name, column, dir=shm_dir)
        ranges = maps(path)
        assert len(ranges) == 1, "one attach, one mapping"
        assert len(views) == 3
        for view, chunk in zip(views, rich_table.column(column).chunks):
            assert isinstance(view, np.ndarray) and view.dtype == dtype
            assert within(view.__array_interface__["data"][0], view.nbytes, ranges), column
            assert view.flags.writeable is False
            with pytest.raises(ValueError):
                view[0] = 0
            np.testing.assert_array_equal(view, chunk.to_numpy())
        del views, view
        gc.collect()
        assert maps(path) == []


def test_column_view_of_a_name_maps_no_page_and_drops_the_mapping_with_the_view(seg_name, shm_dir, maps):
    path = _fresh_segment(seg_name, shm_dir, pa.table({"x": np.arange(1 << 17, dtype=np.float64)}))
    (view,) = shmarrow.column_view(seg_name, "x", dir=shm_dir)
    assert maps(path)
    assert _resident_kib(path) == 0, "the footer and headers were read with pread"
    assert view[-1] == (1 << 17) - 1
    del view
    gc.collect()
    assert maps(path) == []


def test_column_view_of_a_name_outlives_remove_and_replace(seg_name, shm_dir, maps):
    values = np.arange(4096, dtype=np.int64) * 3
    path = _fresh_segment(seg_name, shm_dir, pa.table({"x": values}))
    (view,) = shmarrow.column_view(seg_name, "x", dir=shm_dir)
    shmarrow.create(seg_name, pa.table({"x": np.zeros(8, dtype=np.int64)}), dir=shm_dir)  # replace
    np.testing.assert_array_equal(view, values)
    assert maps(path + " (deleted)"), "the view keeps the replaced version mapped"
    (new,) = shmarrow.column_view(seg_name, "x", dir=shm_dir)
    assert new.tolist() == [0] * 8
    assert shmarrow.remove(seg_name, dir=shm_dir)
    np.testing.assert_array_equal(view, values)
    assert new.sum() == 0
    del view, new
    gc.collect()
    assert maps(path) == [] and maps(path + " (deleted)") == []


# Every type column_view(table) views, and some it does not: the name's route agrees.
VIEW_TYPES = [
    pa.int8(), pa.int16(), pa.int32(), pa.int64(),
    pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64(),
    pa.float16(), pa.float32(), pa.float64(),
    pa.timestamp("s"), pa.timestamp("ms", tz="UTC"), pa.timestamp("us"), pa.timestamp("ns", tz="Europe/Paris"),
    pa.duration("s"), pa.duration("ns"),
    pa.date32(), pa.date64(), pa.time32("s"), pa.time64("ns"), pa.bool_(), pa.string(),
    pa.large_binary(), pa.decimal128(10, 2), pa.list_(pa.int32(), 2), pa.struct([("a", pa.int32())]),
]


def _column_of(data_type: pa.DataType) -> pa.Array:
    if pa.types.is_floating(data_type):
        return pa.array(np.array([1.5, -2.0, 3.25], dtype=data_type.to_pandas_dtype()))
    if pa.types.is_fixed_size_list(data_type):
        return pa.array([[1, 2], [3, 4], [5, 6]], data_type)
    if pa.types.is_struct(data_type):
        return pa.array([{"a": 1}, {"a": 2}, {"a": 3}], data_type)
    if data_type in (pa.string(), pa.large_binary()):
        return pa.array(["a", "bc", ""], data_type)
    if data_type == pa.bool_():
        return pa.array([True, False, True])
    if pa.types.is_decimal(data_type):
        return pa.array([decimal.Decimal("1.25"), decimal.Decimal("0"), decimal.Decimal("-2")], data_type)
    if data_type in (pa.date32(), pa.time32("s")):
        return pa.array([1, 2, 3], pa.int32()).cast(data_type)
    return pa.array([1, 2, 3], pa.int64()).cast(data_type)


@pytest.mark.parametrize("data_type", VIEW_TYPES, ids=str)
def test_column_view_of_a_name_agrees_with_the_table_route(data_type, seg_name, shm_dir, maps, within):
    col = _column_of(data_type)
    path = _fresh_segment(seg_name, shm_dir, pa.table({"pad": pa.array([1, 2, 3], pa.int8()), "c": col}))
    table = shmarrow.attach(seg_name, dir=shm_dir)
    try:
        expected = shmarrow.column_view(table, "c")
    except shmarrow.NotZeroCopy:
        expected = None
    if expected is None:
        with pytest.raises(shmarrow.NotZeroCopy, match="column .c.") as info:
            shmarrow.column_view(seg_name, "c", dir=shm_dir)
        assert info.value.name == seg_name
        return
    (view,) = shmarrow.column_view(seg_name, "c", dir=shm_dir)
    assert view.dtype == expected[0].dtype
    np.testing.assert_array_equal(view, expected[0])
    assert within(view.__array_interface__["data"][0], view.nbytes, maps(path))


def test_column_view_of_a_name_refuses_nulls_in_a_later_batch(seg_name, shm_dir):
    t = pa.Table.from_batches(
        [pa.record_batch({"f": pa.array([1.0, 2.0])}), pa.record_batch({"f": pa.array([None, 4.0])})]
    )
    _fresh_segment(seg_name, shm_dir, t)
    with pytest.raises(shmarrow.NotZeroCopy, match="batch 1 has 1 nulls") as info:
        shmarrow.column_view(seg_name, "f", dir=shm_dir)
    assert info.value.name == seg_name


def test_column_view_of_a_name_refuses_a_column_the_attach_copied(seg_name, shm_dir):
    """A compressed foreign file decompresses into private memory: the table route would view
    that copy; the name route says so instead of copying silently."""
    path = os.path.join(shm_dir, seg_name)
    t = pa.table({"x": np.arange(1000, dtype=np.float64)})
    with pa.OSFile(path, "wb") as sink:
        with pa.ipc.new_file(sink, t.schema, options=pa.ipc.IpcWriteOptions(compression="lz4")) as w:
            w.write_table(t)
    with pytest.raises(shmarrow.NotZeroCopy, match="copied out of the mapping"):
        shmarrow.column_view(seg_name, "x", dir=shm_dir)
    assert shmarrow.attach(seg_name, dir=shm_dir).equals(t)


def test_column_view_of_a_name_with_validate_and_an_empty_table(seg_name, shm_dir):
    _fresh_segment(seg_name, shm_dir, pa.table({"x": pa.array([], pa.float64())}))
    shapes = [v.shape for v in shmarrow.column_view(shmarrow.attach(seg_name, dir=shm_dir), "x")]
    for validate in ("auto", "full", "structure"):
        views = shmarrow.column_view(seg_name, "x", dir=shm_dir, validate=validate)
        assert [v.shape for v in views] == shapes
        assert all(v.dtype == np.float64 for v in views)
    with pytest.raises(ValueError, match="validation"):
        shmarrow.column_view(seg_name, "x", dir=shm_dir, validate="some")


def test_wide_private_segment_is_read_by_pyarrow_in_place(seg_name, shm_dir, maps, within):
    """A wide segment of primitive columns only this user can write is read by pyarrow from the
    mapping after attach's checks (every buffer a slice of a buffer over the whole file),
    equal to what was published and to the Rust-decoded route (validate="full"), zero-copy, and
    the mapping lives while any buffer does, also after the segment is removed."""
    rng = np.random.default_rng(17)
    columns = {}
    for c in range(40):
        dtype = [np.float64, np.int32, np.uint8, np.int64][c % 4]
        values = pa.array((rng.random(1000) * 100).astype(dtype))
        if c % 5 == 0:
            values = pa.array(values.to_pylist(), mask=rng.random(1000) < 0.1)
        columns[f"c{c}"] = values
    columns["t"] = pa.array(np.arange(1000).astype("datetime64[us]"))
    published = pa.table(columns)
    published = pa.Table.from_batches(published.to_batches(max_chunksize=400))
    path = _fresh_segment(seg_name, shm_dir, published)
    table = shmarrow.attach(seg_name, dir=shm_dir)
    full = shmarrow.attach(seg_name, dir=shm_dir, validate="full")
    assert table.equals(published) and full.equals(published)
    assert table.schema.equals(full.schema, check_metadata=True)
    assert table.schema.metadata and any(k.startswith(b"shmarrow.") for k in table.schema.metadata)
    ranges = maps(path)
    size = os.path.getsize(path)
    for col in table.columns:
        assert col.num_chunks == 3
        for chunk in col.chunks:
            for buf in chunk.buffers():
                if buf is None:
                    continue
                assert within(buf.address, buf.size, ranges)
                root = buf
                while root.parent is not None:
                    root = root.parent
                assert root is not buf and root.size == size
    for chunk in full.column("c0").chunks:
        assert chunk.buffers()[1].parent is None, "validate='full' takes the Rust decoder"
    kept = table.column("c5").chunk(2)
    del table, full, col, chunk, buf, root
    shmarrow.remove(seg_name, dir=shm_dir)
    gc.collect()
    assert maps(path + " (deleted)"), "a live array must keep the mapping"
    assert kept.equals(published.column("c5").chunk(2))
    del kept
    gc.collect()
    assert maps(path + " (deleted)") == []
