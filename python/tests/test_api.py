"""The public API: create/attach round trips, files on disk, stock pyarrow interop, replace
snapshots, lifetimes, list and gc."""

from __future__ import annotations

import gc as pygc
import os
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import shmarrow

# ---------------------------------------------------------------- round trips


def test_round_trip_rich_table(seg_name, shm_dir, rich_table, strip_meta):
    created = shmarrow.create(seg_name, rich_table, dir=shm_dir)
    table = shmarrow.attach(seg_name, dir=shm_dir)

    assert table.num_rows == rich_table.num_rows == 21
    assert strip_meta(table).schema.equals(rich_table.schema, check_metadata=True)
    assert strip_meta(table).equals(rich_table)
    # the batch structure is kept: one chunk per published batch
    for name in rich_table.column_names:
        assert [len(c) for c in table.column(name).chunks] == [7, 5, 9], name
    # spot checks that would catch a table that merely compares equal by accident
    assert table.column("s")[1].as_py() == "row-1-é✓"
    assert table.column("s")[2].as_py() is None
    assert table.column("nested")[8].as_py() == {"a": 10, "b": "b1", "c": [1.5]}
    assert table.column("ts").type == pa.timestamp("us", tz="America/New_York")
    assert table.column("cat").type == pa.dictionary(pa.int32(), pa.string())
    assert table.column("void").null_count == 21
    assert created.nbytes == os.stat(created.path).st_size


def test_created_handle_attributes(seg_name, shm_dir):
    t = pa.table({"x": pa.array(range(1000), pa.int64())})
    created = shmarrow.create(seg_name, t, dir=shm_dir)
    assert isinstance(created, shmarrow.Created)
    assert created.name == seg_name
    assert created.path == os.path.join(shm_dir, seg_name)
    assert created.path == shmarrow.path(seg_name, dir=shm_dir)
    assert created.lifetime == "persistent"
    st = os.stat(created.path)
    assert stat.S_ISREG(st.st_mode)
    assert created.nbytes == st.st_size
    assert created.nbytes >= 8000  # holds the 1000 int64 values
    with open(created.path, "rb") as f:
        data = f.read()
    assert data[:6] == b"ARROW1" and data[-6:] == b"ARROW1"
    assert seg_name in repr(created)


def test_zero_row_table(seg_name, shm_dir, strip_meta):
    schema = pa.schema([("x", pa.int64()), ("s", pa.string()), ("l", pa.list_(pa.float32()))])
    empty = schema.empty_table()
    created = shmarrow.create(seg_name, empty, dir=shm_dir)
    assert created.nbytes == os.path.getsize(created.path) > 0
    table = shmarrow.attach(seg_name, dir=shm_dir)
    assert table.num_rows == 0
    assert strip_meta(table).schema.equals(schema)
    assert strip_meta(table).equals(empty)


@pytest.mark.parametrize("offset,length", [(1, 3), (3, 10), (7, 13)])
def test_round_trip_sliced_input(seg_name, shm_dir, rich_table, strip_meta, offset, length):
    """Sliced arrays (non-zero offsets in bitmaps, offsets and children) are written as their
    logical values."""
    sliced = rich_table.slice(offset, length)
    shmarrow.create(seg_name, sliced, dir=shm_dir)
    table = shmarrow.attach(seg_name, dir=shm_dir)
    assert strip_meta(table).equals(sliced)
    assert table.to_pylist() == sliced.to_pylist()


def test_create_from_record_batch(seg_name, shm_dir, strip_meta):
    batch = pa.record_batch({"a": [1, 2, 3], "b": ["x", None, "z"]})
    shmarrow.create(seg_name, batch, dir=shm_dir)
    table = shmarrow.attach(seg_name, dir=shm_dir)
    assert strip_meta(table).equals(pa.Table.from_batches([batch]))
    assert table.column("b").to_pylist() == ["x", None, "z"]


def test_create_from_list_of_batches(seg_name, shm_dir, strip_meta):
    batches = pa.table({"a": list(range(10)), "f": [i / 3 for i in range(10)]}).to_batches(max_chunksize=4)
    assert len(batches) == 3
    shmarrow.create(seg_name, batches, dir=shm_dir)
    table = shmarrow.attach(seg_name, dir=shm_dir)
    assert strip_meta(table).equals(pa.Table.from_batches(batches))
    assert [len(c) for c in table.column("a").chunks] == [4, 4, 2]


def test_create_from_generator_of_batches(seg_name, shm_dir):
    source = pa.table({"a": list(range(6))})
    shmarrow.create(seg_name, (b for b in source.to_batches(max_chunksize=2)), dir=shm_dir)
    assert shmarrow.attach(seg_name, dir=shm_dir).column("a").to_pylist() == list(range(6))


def test_create_from_record_batch_reader(seg_name, shm_dir, strip_meta):
    source = pa.table({"a": list(range(9)), "s": [str(i) for i in range(9)]})
    reader = pa.RecordBatchReader.from_batches(source.schema, source.to_batches(max_chunksize=3))
    shmarrow.create(seg_name, reader, dir=shm_dir)
    table = shmarrow.attach(seg_name, dir=shm_dir)
    assert strip_meta(table).equals(source)
    assert [len(c) for c in table.column("a").chunks] == [3, 3, 3]


def test_user_schema_and_field_metadata_kept(seg_name, shm_dir):
    schema = pa.schema(
        [pa.field("x", pa.int64(), metadata={"unit": "m"})], metadata={"origin": "pytest"}
    )
    shmarrow.create(seg_name, pa.table({"x": [1]}, schema=schema), dir=shm_dir)
    table = shmarrow.attach(seg_name, dir=shm_dir)
    assert table.schema.metadata[b"origin"] == b"pytest"
    assert table.schema.field("x").metadata == {b"unit": b"m"}


def test_attach_from_another_process(seg_name, shm_dir):
    shmarrow.create(seg_name, pa.table({"x": pa.array(range(1, 101), pa.int64())}), dir=shm_dir)
    code = textwrap.dedent(
        f"""
        import shmarrow, pyarrow.compute as pc
        t = shmarrow.attach({seg_name!r}, dir={shm_dir!r})
        print(pc.sum(t.column("x")).as_py(), t.num_rows)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["5050", "100"]


# ---------------------------------------------------------------- files on disk


def test_default_mode_is_owner_only(seg_name, shm_dir):
    created = shmarrow.create(seg_name, pa.table({"x": [1]}), dir=shm_dir)
    assert stat.S_IMODE(os.stat(created.path).st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o640, 0o644, 0o666, 0o400])
def test_mode_applied_exactly_regardless_of_umask(seg_name, shm_dir, mode):
    old = os.umask(0o077)  # would strip every group/other bit if it were applied
    try:
        created = shmarrow.create(seg_name, pa.table({"x": [1]}), dir=shm_dir, mode=mode)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(created.path).st_mode) == mode


def test_path_joins_dir_and_name(seg_name, shm_dir, iso_dir):
    assert shmarrow.path(seg_name, dir=shm_dir) == os.path.join(shm_dir, seg_name)
    assert isinstance(shmarrow.path(seg_name, dir=shm_dir), str)
    assert shmarrow.path(seg_name, dir=Path(iso_dir)) == os.path.join(iso_dir, seg_name)
    assert not os.path.lexists(os.path.join(shm_dir, seg_name)), "path() must not create anything"


def test_shmarrow_dir_env_is_the_default(seg_name, iso_dir, monkeypatch):
    monkeypatch.setenv("SHMARROW_DIR", iso_dir)
    created = shmarrow.create(seg_name, pa.table({"x": [7]}))
    assert created.path == os.path.join(iso_dir, seg_name)
    assert os.path.isfile(os.path.join(iso_dir, seg_name))
    assert not os.path.lexists(os.path.join("/dev/shm", seg_name))
    assert shmarrow.attach(seg_name).column("x").to_pylist() == [7]
    assert shmarrow.path(seg_name) == os.path.join(iso_dir, seg_name)
    assert [s["name"] for s in shmarrow.list()] == [seg_name]
    assert shmarrow.remove(seg_name) is True
    assert os.listdir(iso_dir) == []


def test_no_temp_files_left_after_create(seg_name, shm_dir):
    shmarrow.create(seg_name, pa.table({"x": [1, 2]}), dir=shm_dir)
    leftovers = [f for f in os.listdir(shm_dir) if f.startswith(f".{seg_name}.")]
    assert leftovers == []


# ---------------------------------------------------------------- stock pyarrow


def test_stock_pyarrow_reads_segment(seg_name, shm_dir, rich_table, strip_meta):
    created = shmarrow.create(seg_name, rich_table, dir=shm_dir)
    with pa.memory_map(created.path) as source:
        reader = pa.ipc.open_file(source)
        assert reader.num_record_batches == 3
        stock = reader.read_all()
        assert strip_meta(stock).equals(rich_table)
        md = stock.schema.metadata
        assert md[b"shmarrow.version"] == b"1"
        assert int(md[b"shmarrow.creator_pid"]) == os.getpid()
        assert md[b"shmarrow.lifetime"] == b"persistent"
        del stock, reader


def test_stock_metadata_records_owner_lifetime(seg_name, shm_dir):
    with shmarrow.create(seg_name, pa.table({"x": [1]}), dir=shm_dir, lifetime="owner") as created:
        with pa.memory_map(created.path) as source:
            md = pa.ipc.open_file(source).schema.metadata
        assert md[b"shmarrow.lifetime"] == b"owner"
        assert int(md[b"shmarrow.creator_pid"]) == os.getpid()


def test_stock_pyarrow_reads_zero_row_segment(seg_name, shm_dir):
    created = shmarrow.create(seg_name, pa.schema([("x", pa.int64())]).empty_table(), dir=shm_dir)
    with pa.memory_map(created.path) as source:
        t = pa.ipc.open_file(source).read_all()
        assert t.num_rows == 0 and t.schema.field("x").type == pa.int64()
        del t


# ---------------------------------------------------------------- replace: snapshots


def test_replace_keeps_old_snapshot(seg_name, shm_dir, maps, within):
    v1 = pa.table({"x": pa.array([1, 2, 3], pa.int64()), "s": ["a", "b", "c"]})
    v2 = pa.table({"x": pa.array([10, 20, 30, 40], pa.int64()), "s": ["w", "x", "y", "z"]})
    shmarrow.create(seg_name, v1, dir=shm_dir)
    old = shmarrow.attach(seg_name, dir=shm_dir)
    ino_before = os.stat(os.path.join(shm_dir, seg_name)).st_ino

    shmarrow.create(seg_name, v2, dir=shm_dir)  # replace=True is the default

    assert os.stat(os.path.join(shm_dir, seg_name)).st_ino != ino_before, "must be a new file"
    assert old.column("x").to_pylist() == [1, 2, 3]
    assert old.column("s").to_pylist() == ["a", "b", "c"]
    # the old table still lives in the mapping of the old (now unlinked) inode
    path = os.path.join(shm_dir, seg_name)
    deleted = maps(path + " (deleted)")
    assert deleted, "old snapshot mapping should show as deleted"
    buf = old.column("x").chunk(0).buffers()[1]
    assert within(buf.address, buf.size, deleted)

    new = shmarrow.attach(seg_name, dir=shm_dir)
    assert new.column("x").to_pylist() == [10, 20, 30, 40]
    assert new.column("s").to_pylist() == ["w", "x", "y", "z"]


def test_concurrent_replace_never_tears(seg_name, shm_dir):
    """A writer thread keeps replacing the segment (create releases the GIL) while this
    thread attaches: every attach sees one complete version, never a mix or a partial file."""
    n = 20_000
    versions = 30
    shmarrow.create(seg_name, pa.table({"v": pa.array([0] * n, pa.int64())}), dir=shm_dir)
    errors = []

    def writer():
        try:
            for k in range(1, versions + 1):
                shmarrow.create(seg_name, pa.table({"v": pa.array([k] * n, pa.int64())}), dir=shm_dir)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    seen = set()
    while thread.is_alive() or not seen:
        t = shmarrow.attach(seg_name, dir=shm_dir)
        values = t.column("v")
        assert t.num_rows == n
        lo, hi = values[0].as_py(), values[n - 1].as_py()
        assert lo == hi
        assert pc.min_max(values).as_py() == {"min": lo, "max": lo}
        seen.add(lo)
    thread.join()
    assert errors == []
    assert shmarrow.attach(seg_name, dir=shm_dir).column("v")[0].as_py() == versions
    assert [f for f in os.listdir(shm_dir) if f.startswith(f".{seg_name}.")] == []


def test_replace_false_on_existing_raises_and_keeps_v1(seg_name, shm_dir):
    v1 = pa.table({"x": [1, 2, 3]})
    created = shmarrow.create(seg_name, v1, dir=shm_dir)
    with open(created.path, "rb") as f:
        before = f.read()
    with pytest.raises(shmarrow.SegmentExists, match=seg_name):
        shmarrow.create(seg_name, pa.table({"x": [9, 9]}), dir=shm_dir, replace=False)
    with open(created.path, "rb") as f:
        assert f.read() == before
    assert shmarrow.attach(seg_name, dir=shm_dir).column("x").to_pylist() == [1, 2, 3]
    leftovers = [f for f in os.listdir(shm_dir) if f.startswith(f".{seg_name}.")]
    assert leftovers == [], "a refused publish must remove its temp file"


def test_replace_false_on_new_name_creates(seg_name, shm_dir):
    shmarrow.create(seg_name, pa.table({"x": [5]}), dir=shm_dir, replace=False)
    assert shmarrow.attach(seg_name, dir=shm_dir).column("x").to_pylist() == [5]


def test_remove_keeps_attached_view(seg_name, shm_dir):
    shmarrow.create(seg_name, pa.table({"x": [4, 5, 6]}), dir=shm_dir)
    t = shmarrow.attach(seg_name, dir=shm_dir)
    assert shmarrow.remove(seg_name, dir=shm_dir) is True
    assert not os.path.lexists(os.path.join(shm_dir, seg_name))
    assert t.column("x").to_pylist() == [4, 5, 6]
    assert shmarrow.remove(seg_name, dir=shm_dir) is False
    with pytest.raises(shmarrow.SegmentNotFound):
        shmarrow.attach(seg_name, dir=shm_dir)


# ---------------------------------------------------------------- lifetimes


def test_owner_lifetime_with_block(seg_name, shm_dir):
    path = os.path.join(shm_dir, seg_name)
    with shmarrow.create(seg_name, pa.table({"x": [1]}), dir=shm_dir, lifetime="owner") as h:
        assert isinstance(h, shmarrow.Created)
        assert h.lifetime == "owner"
        assert os.path.isfile(path)
        assert shmarrow.attach(seg_name, dir=shm_dir).column("x").to_pylist() == [1]
    assert not os.path.lexists(path)


def test_owner_lifetime_with_block_exception_still_removes(seg_name, shm_dir):
    path = os.path.join(shm_dir, seg_name)
    with pytest.raises(KeyError, match="boom"):
        with shmarrow.create(seg_name, pa.table({"x": [1]}), dir=shm_dir, lifetime="owner"):
            assert os.path.isfile(path)
            raise KeyError("boom")
    assert not os.path.lexists(path)


def test_owner_close_removes(seg_name, shm_dir):
    h = shmarrow.create(seg_name, pa.table({"x": [1]}), dir=shm_dir, lifetime="owner")
    assert os.path.isfile(h.path)
    h.close()
    assert not os.path.lexists(h.path)
    h.close()  # idempotent
    assert "open=false" in repr(h)


def test_owner_garbage_collection_removes(seg_name, shm_dir):
    path = os.path.join(shm_dir, seg_name)
    h = shmarrow.create(seg_name, pa.table({"x": [1]}), dir=shm_dir, lifetime="owner")
    assert os.path.isfile(path)
    del h
    pygc.collect()
    assert not os.path.lexists(path)


def test_owner_removed_when_creator_exits_normally(seg_name, shm_dir):
    code = textwrap.dedent(
        f"""
        import os, shmarrow, pyarrow as pa
        handle = shmarrow.create({seg_name!r}, pa.table({{"x": [1]}}), dir={shm_dir!r}, lifetime="owner")
        assert os.path.isfile(handle.path)
        print("created")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "created"
    assert not os.path.lexists(os.path.join(shm_dir, seg_name))


def test_owner_disown_keeps(seg_name, shm_dir):
    h = shmarrow.create(seg_name, pa.table({"x": [3]}), dir=shm_dir, lifetime="owner")
    h.disown()
    h.close()
    del h
    pygc.collect()
    path = os.path.join(shm_dir, seg_name)
    assert os.path.isfile(path)
    assert shmarrow.attach(seg_name, dir=shm_dir).column("x").to_pylist() == [3]
    assert shmarrow.remove(seg_name, dir=shm_dir) is True
    assert not os.path.lexists(path)


def test_owner_removal_does_not_disturb_attached_reader(seg_name, shm_dir):
    with shmarrow.create(seg_name, pa.table({"x": [8, 9]}), dir=shm_dir, lifetime="owner"):
        t = shmarrow.attach(seg_name, dir=shm_dir)
    assert not os.path.lexists(os.path.join(shm_dir, seg_name))
    assert t.column("x").to_pylist() == [8, 9]


def test_persistent_close_and_with_keep(seg_name, shm_dir):
    path = os.path.join(shm_dir, seg_name)
    h = shmarrow.create(seg_name, pa.table({"x": [1]}), dir=shm_dir)
    h.close()
    assert os.path.isfile(path)
    with shmarrow.create(seg_name, pa.table({"x": [2]}), dir=shm_dir, lifetime="persistent"):
        pass
    del h
    pygc.collect()
    assert os.path.isfile(path)
    assert shmarrow.attach(seg_name, dir=shm_dir).column("x").to_pylist() == [2]


# ---------------------------------------------------------------- list


def test_list_shows_segments_only(iso_dir):
    small = pa.table({"x": [1]})
    big = pa.table({"x": pa.array(range(5000), pa.int64())})
    a = shmarrow.create("alpha", big, dir=iso_dir)
    b = shmarrow.create("beta.arrow", small, dir=iso_dir)
    with open(a.path, "rb") as f:
        arrow_bytes = f.read()
    # not segments: a non-Arrow file, a dot file (even with Arrow bytes), a publish temp,
    # a directory, a symlink to a segment
    with open(os.path.join(iso_dir, "notarrow"), "wb") as f:
        f.write(b"PAR1" + os.urandom(100))
    with open(os.path.join(iso_dir, ".hidden"), "wb") as f:
        f.write(arrow_bytes)
    with open(os.path.join(iso_dir, ".gamma.1.2.3.tmp"), "wb") as f:
        f.write(arrow_bytes)
    os.mkdir(os.path.join(iso_dir, "subdir"))
    os.symlink(a.path, os.path.join(iso_dir, "link"))

    listing = shmarrow.list(dir=iso_dir)
    assert sorted(listing, key=lambda s: s["name"]) == [
        {"name": "alpha", "bytes": os.path.getsize(a.path), "kind": "table"},
        {"name": "beta.arrow", "bytes": os.path.getsize(b.path), "kind": "table"},
    ]
    assert listing[0]["bytes"] == a.nbytes and listing[0]["bytes"] > 40000


def test_list_default_dir_includes_our_segment(seg_name, shm_dir):
    created = shmarrow.create(seg_name, pa.table({"x": [1, 2]}), dir=shm_dir)
    entries = {s["name"]: s["bytes"] for s in shmarrow.list(dir=shm_dir)}
    assert entries[seg_name] == created.nbytes
    shmarrow.remove(seg_name, dir=shm_dir)
    assert seg_name not in {s["name"] for s in shmarrow.list(dir=shm_dir)}


def test_list_empty_dir(iso_dir):
    assert shmarrow.list(dir=iso_dir) == []


# ---------------------------------------------------------------- gc


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def _touch(path, data=b"partial"):
    with open(path, "wb") as f:
        f.write(data)


def test_gc_removes_dead_writer_temp_keeps_live(iso_dir, start_time_of):
    me = os.getpid()
    my_start = start_time_of("self")
    assert my_start == start_time_of(me)
    dead = f".seg-a.{_dead_pid()}.12345.1f2e.tmp"
    reused = f".seg-b.{me}.{my_start + 1}.abc.tmp"  # our pid, another start time: pid reuse
    live = f".seg-c.{me}.{my_start}.abc.tmp"
    unrelated = ".not-a-temp"
    for f in (dead, reused, live, unrelated):
        _touch(os.path.join(iso_dir, f))

    assert sorted(shmarrow.gc(dir=iso_dir, dry_run=True)) == sorted([dead, reused])
    assert sorted(os.listdir(iso_dir)) == sorted([dead, reused, live, unrelated]), "dry run removed files"

    assert sorted(shmarrow.gc(dir=iso_dir)) == sorted([dead, reused])
    assert sorted(os.listdir(iso_dir)) == sorted([live, unrelated])
    assert shmarrow.gc(dir=iso_dir) == []


def test_gc_owner_segment_of_dead_creator(iso_dir):
    t = pa.table({"x": [1, 2, 3]})
    code = textwrap.dedent(
        f"""
        import os, shmarrow, pyarrow as pa
        t = pa.table({{"x": [1, 2, 3]}})
        h = shmarrow.create("owned", t, dir={iso_dir!r}, lifetime="owner")
        h.disown()
        shmarrow.create("kept", t, dir={iso_dir!r})
        print(os.getpid())
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    child_pid = int(out.stdout)
    assert {s["name"] for s in shmarrow.list(dir=iso_dir)} == {"owned", "kept"}, "disown must keep it"
    with pa.memory_map(os.path.join(iso_dir, "owned")) as src:
        md = pa.ipc.open_file(src).schema.metadata
    assert int(md[b"shmarrow.creator_pid"]) == child_pid
    assert md[b"shmarrow.lifetime"] == b"owner"

    # a creator that crashes (no handle cleanup at all) leaves its owner segment to gc
    crash = textwrap.dedent(
        f"""
        import os, shmarrow, pyarrow as pa
        h = shmarrow.create("crashed", pa.table({{"x": [1]}}), dir={iso_dir!r}, lifetime="owner")
        os._exit(0)
        """
    )
    out = subprocess.run([sys.executable, "-c", crash], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert os.path.isfile(os.path.join(iso_dir, "crashed"))

    # an owner segment of a live creator (us) is kept
    mine = shmarrow.create("mine", t, dir=iso_dir, lifetime="owner")
    try:
        assert sorted(shmarrow.gc(dir=iso_dir, dry_run=True)) == ["crashed", "owned"]
        assert os.path.isfile(os.path.join(iso_dir, "owned"))
        assert os.path.isfile(os.path.join(iso_dir, "crashed"))
        assert sorted(shmarrow.gc(dir=iso_dir)) == ["crashed", "owned"]
        assert sorted(os.listdir(iso_dir)) == ["kept", "mine"]
    finally:
        mine.close()
    assert os.listdir(iso_dir) == ["kept"]
    assert shmarrow.attach("kept", dir=iso_dir).column("x").to_pylist() == [1, 2, 3]
