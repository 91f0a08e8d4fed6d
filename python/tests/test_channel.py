"""Channels from Python: a stream of record batches from one producer to many subscribers
through a ring of slots in a shared segment (layout and protocol: schemas/CHANNEL.md).

Covered: in-process order/contents/zero copy over 10,000 batches of nested and dictionary
types; a cross-process run with Python and Rust consumers; slot pinning by a live batch;
batches larger than a slot; lossy mode; a SIGKILLed producer; a second producer; wrong
schemas and non-channel segments; and the GIL being released while a subscriber waits.
Every channel gets a unique name from the ``new_name`` fixture, which removes it afterwards.
"""

from __future__ import annotations

import glob
import json
import os
import re
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import shmarrow

REPO = Path(__file__).resolve().parents[2]

SLOT_HEADER = 64


@pytest.fixture(autouse=True)
def _channels_in_dev_shm(monkeypatch, shm_dir):
    """Every channel (ours and the example processes') lives in /dev/shm, where the
    ``new_name`` fixture removes it."""
    monkeypatch.setenv("SHMARROW_DIR", shm_dir)


# ---------------------------------------------------------------------------------------------
# helpers


def _channel_geometry(path):
    """(slot_count, slot_size, slots_offset) from the channel's control header."""
    with open(path, "rb") as f:
        head = f.read(64)
    assert head[:8] == b"SHMARCH1", f"{path} is not a channel segment"
    slot_count = struct.unpack_from("<I", head, 16)[0]
    slot_size, = struct.unpack_from("<Q", head, 24)
    slots_offset, = struct.unpack_from("<Q", head, 56)
    return slot_count, slot_size, slots_offset


def _subscribe_when_created(name, deadline_s=600.0, **kwargs):
    """Subscribe to a channel another process is about to create (the deadline only catches a
    hang, it is no speed limit)."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return shmarrow.subscribe(name, **kwargs)
        except shmarrow.SegmentNotFound:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.002)


def _state(pid):
    """The state letter of process `pid` ('' once gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0]
    except OSError:
        return ""


def _wait_until_asleep(pid):
    """Wait until process `pid` (one thread) sleeps: blocked in a wait, not running towards it."""
    while True:
        state = _state(pid)
        if state == "S":
            return
        assert state not in ("Z", ""), f"pid {pid} exited"
        time.sleep(0.01)


def _reap(proc, timeout=5.0):
    """Kill (if still running) and reap a child process."""
    if proc.poll() is None:
        proc.kill()
    try:
        proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:  # pragma: no cover - defensive
        proc.kill()
        proc.communicate()


SIMPLE = pa.schema([("seq", pa.int64()), ("label", pa.string())])


def _simple(i: int, rows: int = 4) -> pa.RecordBatch:
    return pa.record_batch(
        [
            pa.array(np.full(rows, i, dtype=np.int64)),
            pa.array([None if r == 1 else f"batch-{i}-row-{r}" for r in range(rows)], pa.string()),
        ],
        schema=SIMPLE,
    )


def _rich_batches(n_batches: int, seed: int = 7):
    """``n_batches`` record batches of 1..19 rows (int64, float64, string with nulls,
    list<int32> with nulls, struct with nulls, dictionary<string> with nulls); every row has a
    unique int64 ``i``, so equal contents also prove order."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 20, n_batches)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    rows = int(offsets[-1])
    i = np.arange(rows)
    strings = pa.array([f"s{k}-é✓" for k in range(rows)], pa.string(), mask=(i % 7 == 3))
    lists = pa.ListArray.from_arrays(
        pa.array(np.arange(0, 3 * rows + 1, 3, dtype=np.int32)),
        pa.array(np.arange(3 * rows, dtype=np.int32) * -1),
        mask=pa.array(i % 11 == 5),
    )
    structs = pa.StructArray.from_arrays(
        [pa.array(i.astype(np.int32)), pa.array(np.sqrt(i)), pa.array([f"t{k % 17}" for k in range(rows)])],
        names=["a", "b", "c"],
        mask=pa.array(i % 13 == 0),
    )
    categories = pa.DictionaryArray.from_arrays(
        pa.array((i % 5).astype(np.int32), mask=(i % 9 == 4)),
        pa.array(["red", "green", "blue", "cyan", "magenta"]),
    )
    big = pa.record_batch(
        {
            "i": pa.array(i.astype(np.int64)),
            "f": pa.array(i * 0.5 - 3.25),
            "s": strings,
            "l": lists,
            "st": structs,
            "cat": categories,
        }
    )
    return big.schema, [big.slice(int(offsets[k]), int(sizes[k])) for k in range(n_batches)]


def _buffer_spans(batch: pa.RecordBatch) -> list:
    """(address, size) of every non-empty buffer of ``batch``: children (Array.buffers()
    flattens them) and dictionaries' values included. Returns plain numbers, so no buffer
    object outlives the call (a live buffer pins its slot)."""
    spans = []
    for column in batch.columns:
        arrays = [column, column.dictionary] if pa.types.is_dictionary(column.type) else [column]
        for array in arrays:
            spans += [(b.address, b.size) for b in array.buffers() if b is not None and b.size > 0]
    return spans


def _dictionary_spans(batch: pa.RecordBatch) -> list:
    return [
        (b.address, b.size)
        for column in batch.columns if pa.types.is_dictionary(column.type)
        for b in column.dictionary.buffers() if b is not None and b.size > 0
    ]


# ---------------------------------------------------------------------------------------------
# 1. same process: 10,000 batches, in order, equal, zero-copy, StopIteration after close


def test_same_process_10000_batches_in_order_zero_copy(new_name, maps):
    n_batches = 10_000
    schema, batches = _rich_batches(n_batches)
    name = new_name("chan")
    producer = shmarrow.producer(name, schema, slots=8, slot_size=1 << 16, timeout=20)
    path = shmarrow.path(name)
    slot_count, slot_size, slots_offset = _channel_geometry(path)
    assert (slot_count, slot_size) == (8, 1 << 16)

    before = set(maps(path))
    sub = shmarrow.subscribe(name, timeout=20)
    new_ranges = [r for r in maps(path) if r not in before]
    assert len(new_ranges) == 1, f"subscribing should map the channel once more: {before} -> {maps(path)}"
    m_start, m_end = new_ranges[0]
    assert m_end - m_start >= os.path.getsize(path)
    assert sub.schema.equals(schema)

    errors = []

    def produce():
        try:
            for b in batches:
                producer.send(b)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            producer.close()

    thread = threading.Thread(target=produce, daemon=True)
    # Both threads need the GIL for every batch; hand it over quickly instead of every 5 ms.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    thread.start()
    try:
        received = 0
        checked_buffers = 0
        dictionary_buffers = 0
        for batch in sub:
            k = received
            assert k < n_batches, "more batches than were sent"
            assert batch.schema.equals(schema)
            assert batch.num_rows == batches[k].num_rows
            assert batch.equals(batches[k]), f"batch {k} differs"
            slot_lo = m_start + slots_offset + (k % slot_count) * slot_size + SLOT_HEADER
            slot_hi = m_start + slots_offset + (k % slot_count + 1) * slot_size
            spans = _buffer_spans(batch)
            outside = [(a, n) for a, n in spans if not (slot_lo <= a and a + n <= slot_hi)]
            assert not outside, (
                f"batch {k}: buffers {outside} are not in its slot [{slot_lo:#x}, {slot_hi:#x}) "
                "of the subscriber's mapping"
            )
            checked_buffers += len(spans)
            dictionary_buffers += len(_dictionary_spans(batch))
            received += 1
            del batch
        assert received == n_batches
        assert dictionary_buffers >= 2 * n_batches  # offsets + data of every batch's dictionary
        assert checked_buffers > 10 * n_batches
        # The stream stays ended.
        with pytest.raises(StopIteration):
            next(sub)
        with pytest.raises(StopIteration):
            next(sub)
    finally:
        sub.close()  # on failure, do not leave the producer waiting for this subscriber
        thread.join(timeout=30)
        sys.setswitchinterval(switch_interval)
    assert not thread.is_alive()
    assert not errors, errors
    assert sub.missed == 0


# ---------------------------------------------------------------------------------------------
# 2. cross-process: Python producer, two Python subscribers and the Rust consumer


def _rust_consumer():
    binary = REPO / "target" / "debug" / "examples" / "consumer"
    if not binary.is_file():
        try:
            subprocess.run(["cargo", "build", "--examples"], cwd=REPO, check=True,
                           capture_output=True, timeout=600)
        except (OSError, subprocess.SubprocessError):
            return None
    return str(binary) if binary.is_file() else None


def test_cross_process_python_and_rust_consumers_see_every_batch(new_name, maps):
    name = new_name("xproc")
    n_batches, rows = 5000, 16
    rust = _rust_consumer()
    consumers = 3 if rust else 2
    env = dict(os.environ)
    procs = []
    try:
        producer = subprocess.Popen(
            [sys.executable, str(REPO / "examples" / "producer.py"), name, str(n_batches), str(rows), str(consumers)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        procs.append(producer)
        py_consumer = subprocess.Popen(
            [sys.executable, str(REPO / "examples" / "consumer.py"), name],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        procs.append(py_consumer)
        if rust:
            rust_consumer = subprocess.Popen([rust, name], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                             text=True, env=env)
            procs.append(rust_consumer)

        # The in-process subscriber (this process is the second Python subscriber).
        sub = _subscribe_when_created(name, timeout=30)
        path = shmarrow.path(name)
        seen = 0
        in_order = True
        zero_copy_checked = False
        for batch in sub:
            seq = batch.column(0).to_numpy(zero_copy_only=True)
            x = batch.column(1).to_numpy(zero_copy_only=True)
            in_order &= batch.num_rows == rows and bool((seq == seen).all()) and bool(
                np.array_equal(x, seen + np.arange(rows) / rows))
            if not zero_copy_checked:
                ranges = maps(path)
                for address, size in _buffer_spans(batch):
                    assert any(s <= address and address + size <= e for s, e in ranges)
                zero_copy_checked = True
            seen += 1
            del batch, seq, x
        assert zero_copy_checked
        assert seen == n_batches and in_order
        assert sub.missed == 0

        out, err = producer.communicate(timeout=30)
        assert producer.returncode == 0, err
        assert f"sent {n_batches} batches of {rows} rows" in out

        summaries = []
        for proc in procs[1:]:
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err
            summaries.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            _reap(proc)

    expected_sum = sum(i * rows + (rows - 1) / 2 for i in range(n_batches))
    kinds = [s["consumer"] for s in summaries]
    assert kinds == (["python", "rust"] if rust else ["python"])
    for s in summaries:
        assert s["batches"] == n_batches, s
        assert s["rows"] == n_batches * rows, s
        assert s["in_order_and_correct"] is True, s
        assert s["sum"] == pytest.approx(expected_sum, rel=1e-12), s
    assert summaries[0]["missed"] == 0
    # producer.py removes its channel once done.
    assert not os.path.exists(shmarrow.path(name))


# ---------------------------------------------------------------------------------------------
# 3. a live batch pins its slot


def test_kept_batch_pins_its_slot(new_name):
    name = new_name("pin")
    producer = shmarrow.producer(name, SIMPLE, slots=4, slot_size=4096, timeout=0.3)
    sub = shmarrow.subscribe(name, timeout=2)

    producer.send(_simple(0))
    kept = [next(sub)]
    seq_buf = kept[0].column(0).buffers()[1]
    address, raw = seq_buf.address, seq_buf.to_pybytes()
    del seq_buf
    for i in range(1, 4):  # the rest of the ring: still free
        producer.send(_simple(i))
    for i in range(1, 4):  # read and dropped: only the kept batch holds anything now
        b = next(sub)
        assert b.equals(_simple(i))
        del b

    started = time.monotonic()
    with pytest.raises(shmarrow.ChannelError, match="timed out") as info:
        producer.send(_simple(4))  # would overwrite slot 0, which the kept batch pins
    assert time.monotonic() - started >= 0.25  # the timeout was waited out
    assert name in str(info.value)
    del info

    # The kept batch is intact: same bytes at the same address.
    assert kept[0].equals(_simple(0))
    again = kept[0].column(0).buffers()[1]
    assert again.address == address and again.to_pybytes() == raw
    del again

    del kept[0]
    producer.send(_simple(4))  # the slot is free again
    b = next(sub)
    assert b.equals(_simple(4))
    del b
    producer.close()
    with pytest.raises(StopIteration):
        next(sub)


# ---------------------------------------------------------------------------------------------
# 4. a batch larger than a slot


def test_batch_larger_than_a_slot(new_name):
    schema = pa.schema([("x", pa.int64()), ("cat", pa.dictionary(pa.int32(), pa.string()))])
    big = pa.record_batch(
        [pa.array(np.arange(10_000)), pa.array([f"v{i % 50}" for i in range(10_000)]).dictionary_encode()],
        schema=schema,
    )
    small = pa.record_batch([pa.array([1, 2, 3]), pa.array(["a", None, "b"]).dictionary_encode()], schema=schema)

    name = new_name("big")
    producer = shmarrow.producer(name, schema, slots=2, slot_size=4096, timeout=2)
    sub = shmarrow.subscribe(name, timeout=0.2)
    with pytest.raises(shmarrow.ChannelError) as info:
        producer.send(big)
    m = re.search(r"a batch of (\d+) bytes does not fit in a (\d+) byte slot", str(info.value))
    assert m, str(info.value)
    needed, slot = int(m.group(1)), int(m.group(2))
    assert slot == 4096
    assert needed > big.nbytes > slot

    # Nothing was published for it.
    with pytest.raises(shmarrow.ChannelError, match="timed out"):
        next(sub)
    producer.send(small)
    got = next(sub)
    assert got.equals(small)
    del got
    producer.close()
    with pytest.raises(StopIteration):
        next(sub)

    # The number is exact: a slot of `needed` bytes (rounded up to 64) carries the batch, one
    # 64 bytes smaller does not.
    fits = (needed + 63) // 64 * 64
    for slot_size, ok in [(fits, True), (fits - 64, False)]:
        other = new_name("big-exact")
        p = shmarrow.producer(other, schema, slots=1, slot_size=slot_size)
        s = shmarrow.subscribe(other, timeout=1)
        if ok:
            p.send(big)
            got = next(s)
            assert got.equals(big)
            del got
        else:
            with pytest.raises(shmarrow.ChannelError, match=f"a batch of {needed} bytes"):
                p.send(big)
        p.close()
        del s


# ---------------------------------------------------------------------------------------------
# 5. lossy mode


def test_lossy_channel_skips_to_the_newest_slots(new_name):
    name = new_name("lossy")
    producer = shmarrow.producer(name, SIMPLE, slots=4, slot_size=4096, lossy=True, timeout=1)
    sub = shmarrow.subscribe(name, timeout=1)
    for i in range(10):  # nobody reads: a lossy producer never waits (a wait would time out)
        producer.send(_simple(i))

    first = next(sub)
    assert first.equals(_simple(6)), first.column(0).to_pylist()
    assert sub.missed == 6
    del first
    for i in (7, 8, 9):
        b = next(sub)
        assert b.equals(_simple(i))
        del b
    assert sub.missed == 6
    producer.close()
    with pytest.raises(StopIteration):
        next(sub)
    assert sub.missed == 6


# ---------------------------------------------------------------------------------------------
# 6. a SIGKILLed producer; a second producer


SLOW_PRODUCER = textwrap.dedent(
    """
    import sys, time
    import pyarrow as pa
    import shmarrow

    name = sys.argv[1]
    schema = pa.schema([("seq", pa.int64()), ("label", pa.string())])
    p = shmarrow.producer(name, schema, slots=4, slot_size=4096)
    print("ready", flush=True)
    i = 0
    while True:
        p.send(pa.record_batch([pa.array([i, i], pa.int64()), pa.array([str(i), None])], schema=schema))
        i += 1
        time.sleep(0.02)
    """
)


def test_killed_producer_is_reported_and_second_producer_refused(new_name):
    name = new_name("killed")
    proc = subprocess.Popen([sys.executable, "-c", SLOW_PRODUCER, name],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        sub = shmarrow.subscribe(name, timeout=5)
        values = []
        for _ in range(5):
            b = next(sub)
            values.append(b.column(0).to_pylist())
            assert b.column(1).to_pylist()[1] is None
            del b
        first = values[0][0]
        assert values == [[first + k, first + k] for k in range(5)], values

        # One producer at a time: the live one (another process) is named.
        with pytest.raises(shmarrow.ChannelError, match="another process") as info:
            shmarrow.producer(name)
        assert f"pid {proc.pid}" in str(info.value)
        del info

        os.kill(proc.pid, signal.SIGKILL)
        # Not reaped yet: the producer is a zombie, which must count as dead. A consumer that
        # did not notice would wait out its timeout and say "timed out" instead.
        with pytest.raises(shmarrow.ChannelError, match="died") as info:
            while True:
                b = next(sub)  # batches already in the ring come first
                del b
        assert str(proc.pid) in str(info.value)
        del info
        sub.close()

        # The dead producer's claim is taken over.
        takeover = shmarrow.producer(name)
        takeover.close()
    finally:
        _reap(proc)
    assert proc.returncode == -signal.SIGKILL


FORKING_PRODUCER = textwrap.dedent(
    """
    import os, sys
    import pyarrow as pa
    import shmarrow

    name = sys.argv[1]
    p = shmarrow.producer(name, pa.schema([("x", pa.int64())]), slots=2, slot_size=4096)
    child = os.fork()
    if child == 0:
        # The child's copy of the handle is not the producer: it sends nothing, and closing it
        # closes nothing. It lives until the test closes its stdin.
        try:
            p.send(pa.record_batch([pa.array([1])], names=["x"]))
            print("child sent", flush=True)
        except shmarrow.ChannelError as e:
            print(f"child refused: {e}", flush=True)
        p.close()
        sys.stdin.read()
        os._exit(0)
    print(child, flush=True)
    os._exit(0)  # the producer dies without closing the stream
    """
)


def test_a_forked_child_of_a_dead_producer_neither_keeps_the_claim_nor_sends(new_name):
    name = new_name("forked")
    proc = subprocess.Popen([sys.executable, "-c", FORKING_PRODUCER, name],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        lines = sorted(proc.stdout.readline().strip() for _ in range(2))
        assert lines[1].startswith("child refused: "), lines
        assert f"pid {proc.pid}" in lines[1], lines
        child = int(lines[0])
        assert proc.wait() == 0
        os.kill(child, 0)  # the child lives on, holding its copy of the parent's descriptors
        # The dead producer's claim is taken over, and the stream was not closed by the child.
        takeover = shmarrow.producer(name)
        sub = shmarrow.subscribe(name, timeout=5)
        takeover.send(pa.record_batch([pa.array([7])], names=["x"]))
        b = next(sub)
        assert b.column(0).to_pylist() == [7]
        del b
        sub.close()
        takeover.close()
    finally:
        _reap(proc)
    # The child (reparented away from us) exits once its stdin closed.
    while _state(child) not in ("Z", ""):
        time.sleep(0.01)



def test_second_producer_in_same_process_refused(new_name):
    name = new_name("second")
    first = shmarrow.producer(name, SIMPLE, slots=2, slot_size=4096)
    with pytest.raises(shmarrow.ChannelError, match="another process"):
        shmarrow.producer(name)
    sub = shmarrow.subscribe(name, timeout=1)
    first.send(_simple(1))  # the first producer is unaffected
    b = next(sub)
    assert b.equals(_simple(1))
    del b
    first.close()


def test_second_producer_with_schema_refused(new_name):
    name = new_name("hijack")
    first = shmarrow.producer(name, SIMPLE, slots=2, slot_size=4096)
    path = shmarrow.path(name)
    inode = os.stat(path).st_ino
    sub = shmarrow.subscribe(name, timeout=0.3)
    try:
        with pytest.raises(shmarrow.ChannelError, match="another process"):
            second = shmarrow.producer(name, SIMPLE, slots=2, slot_size=4096)
            second.send(_simple(7))
            second.close()
    finally:
        # However it went, the original channel must still be the one under the name.
        same_file = os.stat(path).st_ino == inode
        first.close()
        del sub
    assert same_file


# ---------------------------------------------------------------------------------------------
# 7. wrong schema, missing name, not a channel


def test_schema_mismatch_missing_and_not_a_channel(new_name):
    name = new_name("schema")
    producer = shmarrow.producer(name, SIMPLE, slots=2, slot_size=4096)
    sub = shmarrow.subscribe(name, timeout=0.2)
    wrong_type = pa.record_batch([pa.array([1.5]), pa.array(["x"])], names=["seq", "label"])
    wrong_name = pa.record_batch([pa.array([1]), pa.array(["x"])], names=["seq", "other"])
    missing_col = pa.record_batch([pa.array([1])], names=["seq"])
    for bad in (wrong_type, wrong_name, missing_col):
        with pytest.raises(shmarrow.ChannelError, match="differ from the channel schema"):
            producer.send(bad)
    with pytest.raises(shmarrow.ChannelError, match="timed out"):
        next(sub)  # nothing was sent
    producer.send(_simple(3))
    b = next(sub)
    assert b.equals(_simple(3))
    del b
    producer.close()

    missing = new_name("missing")
    # subscribe waits for a channel to appear (section 9); timeout=0 looks once.
    with pytest.raises(shmarrow.ChannelError, match="no channel of that name appeared"):
        shmarrow.subscribe(missing, timeout=0)
    with pytest.raises(shmarrow.SegmentNotFound):
        shmarrow.producer(missing)
    assert not os.path.exists(os.path.join("/dev/shm", missing))

    table_name = new_name("table")
    table = pa.table({"x": np.arange(1000), "s": [str(i) for i in range(1000)]})
    shmarrow.create(table_name, table)
    with pytest.raises(shmarrow.ChannelError, match="not a channel"):
        shmarrow.subscribe(table_name)
    with pytest.raises(shmarrow.ChannelError, match="not a channel"):
        shmarrow.producer(table_name)
    # ... and the table is untouched.
    assert shmarrow.attach(table_name).equals(table)


# ---------------------------------------------------------------------------------------------
# 8. waits release the GIL


def test_blocked_next_releases_the_gil(new_name):
    name = new_name("gil")
    producer = shmarrow.producer(name, SIMPLE, slots=2, slot_size=4096)
    sub = shmarrow.subscribe(name, timeout=0.5)

    count = [0]
    stop = threading.Event()

    def counter():
        while not stop.is_set():
            count[0] += 1

    thread = threading.Thread(target=counter, daemon=True)
    thread.start()
    try:
        time.sleep(0.05)
        before = count[0]
        started = time.monotonic()
        with pytest.raises(shmarrow.ChannelError, match="timed out"):
            next(sub)  # this thread waits 0.5 s in Rust
        waited = time.monotonic() - started
        progress = count[0] - before
    finally:
        stop.set()
        thread.join()
    assert waited >= 0.45, waited
    # Holding the GIL for 0.5 s would leave the counter at (almost) zero; a free interpreter
    # counts millions.
    assert progress > 100_000, progress
    producer.close()


def test_subscriber_thread_blocked_while_main_thread_runs(new_name):
    name = new_name("gil2")
    producer = shmarrow.producer(name, SIMPLE, slots=2, slot_size=4096)
    sub = shmarrow.subscribe(name, timeout=10)
    got = []
    entered = threading.Event()

    def receive():
        entered.set()
        got.append(next(sub))

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    entered.wait()
    count = 0
    end = time.monotonic() + 0.5
    while time.monotonic() < end:  # this thread runs while the other one waits for data
        count += 1
    assert count > 10_000, count
    assert thread.is_alive() and not got, "the subscriber returned without data"
    producer.send(_simple(42))
    thread.join()  # ends by itself: with the batch, or with the subscription's timeout error
    assert len(got) == 1 and got[0].equals(_simple(42))
    got.clear()
    producer.close()


# ---------------------------------------------------------------------------------------------
# 9. lifetime, listing and collection (issue 13); waiting for the channel (issue 15 item 5);
#    hostile numbers (issue 12 item 4)


def test_owner_producer_removes_its_channel_on_close(new_name):
    name = new_name("owner")
    path = shmarrow.path(name)
    p = shmarrow.producer(name, SIMPLE, slots=2, slot_size=4096, lifetime="owner")
    sub = shmarrow.subscribe(name, timeout=5)
    p.send(_simple(1))
    assert os.path.exists(path)
    p.close()
    assert not os.path.exists(path), "close() removes an owner channel"
    got = next(sub)  # a subscriber that joined still reads what was sent, then the end
    assert got.equals(_simple(1))
    del got
    with pytest.raises(StopIteration):
        next(sub)

    with shmarrow.producer(name, SIMPLE, slots=2, slot_size=4096, lifetime="owner"):
        assert os.path.exists(path)
    assert not os.path.exists(path), "leaving the with block removes it"

    p = shmarrow.producer(name, SIMPLE, slots=2, slot_size=4096, lifetime="owner")
    del p
    import gc
    gc.collect()
    assert not os.path.exists(path), "garbage collection removes it"

    shmarrow.producer(name, SIMPLE, slots=2, slot_size=4096).close()
    assert os.path.exists(path), "persistent (the default) stays"
    with pytest.raises(ValueError, match="lifetime"):
        shmarrow.producer(name, lifetime="owner")  # joining an existing channel: no lifetime
    with pytest.raises(ValueError, match="lifetime"):
        shmarrow.producer(new_name("bad-lifetime"), SIMPLE, lifetime="forever")


OWNER_PRODUCER = textwrap.dedent(
    """
    import sys, time
    import pyarrow as pa
    import shmarrow

    schema = pa.schema([("seq", pa.int64()), ("label", pa.string())])
    p = shmarrow.producer(sys.argv[1], schema, dir=sys.argv[2], slots=2, slot_size=4096,
                          lifetime="owner")
    print("ready", flush=True)
    time.sleep(3600)
    """
)


def test_channels_are_listed_and_a_killed_owners_channel_is_collected(iso_dir):
    proc = subprocess.Popen([sys.executable, "-c", OWNER_PRODUCER, "ch", iso_dir],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        shmarrow.create("tab", pa.table({"x": [1, 2]}), dir=iso_dir)
        sub = shmarrow.subscribe("ch", dir=iso_dir, timeout=5)
        items = {d["name"]: d for d in shmarrow.list(dir=iso_dir)}
        assert items["tab"]["kind"] == "table"
        ch = items["ch"]
        assert ch["kind"] == "channel"
        assert (ch["slots"], ch["slot_size"], ch["lossy"]) == (2, 4096, False)
        assert (ch["producer_pid"], ch["producer_alive"]) == (proc.pid, True)
        assert (ch["consumers"], ch["lifetime"]) == (1, "owner")
        assert ch["bytes"] == os.path.getsize(os.path.join(iso_dir, "ch"))
        with pytest.raises(shmarrow.ChannelError, match="is a channel"):
            shmarrow.attach("ch", dir=iso_dir)

        proc.kill()
        proc.wait()
        ch = {d["name"]: d for d in shmarrow.list(dir=iso_dir)}["ch"]
        assert (ch["producer_pid"], ch["producer_alive"]) == (proc.pid, False)
        assert shmarrow.gc(dir=iso_dir) == [], "a live subscriber holds it"
        sub.close()
        assert shmarrow.gc(dir=iso_dir) == ["ch"]
        assert [d["name"] for d in shmarrow.list(dir=iso_dir)] == ["tab"]
    finally:
        _reap(proc)


@pytest.mark.parametrize("timeout", [30, None, float("inf")])
def test_subscribe_waits_for_the_channel_to_appear(new_name, timeout):
    name = new_name("late")
    subscribing = threading.Event()
    made = {}

    def create_later():
        subscribing.wait()
        time.sleep(0.1)  # well after subscribe started waiting
        made["producer"] = shmarrow.producer(name, SIMPLE, slots=2, slot_size=4096)

    thread = threading.Thread(target=create_later)
    thread.start()
    try:
        assert not os.path.exists(shmarrow.path(name))
        subscribing.set()
        sub = shmarrow.subscribe(name, timeout=timeout)
    finally:
        thread.join()
    made["producer"].send(_simple(5))
    got = next(sub)
    assert got.equals(_simple(5))
    del got
    made["producer"].close()
    with pytest.raises(StopIteration):
        next(sub)


def test_subscribe_times_out_when_no_channel_appears(new_name):
    name = new_name("never")
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="no channel of that name appeared within 300ms") as info:
        shmarrow.subscribe(name, timeout=0.3)
    assert time.monotonic() - started >= 0.3
    assert isinstance(info.value, shmarrow.ChannelTimeout) and info.value.name == name
    shmarrow.create(name, pa.table({"x": [1]}))
    with pytest.raises(shmarrow.ChannelError, match="it is a table.*use attach"):
        shmarrow.subscribe(name, timeout=None)  # at once: it exists, and is not a channel


@pytest.mark.parametrize("bad", [-1, -1e-9, float("nan"), float("-inf")])
def test_negative_or_nan_timeouts_are_value_errors(new_name, bad):
    name = new_name("bad-timeout")
    with pytest.raises(ValueError, match="timeout"):
        shmarrow.subscribe(name, timeout=bad)
    with pytest.raises(ValueError, match="timeout"):
        shmarrow.producer(name, SIMPLE, slot_size=4096, timeout=bad)
    assert not os.path.exists(shmarrow.path(name))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"slots": 0}, ValueError, "at least 1 slot"),
    ({"max_consumers": 0}, ValueError, "max_consumers"),
    ({"max_consumers": 4097}, ValueError, "max_consumers"),
    ({"slot_size": 0}, ValueError, "at least 128"),
    ({"slot_size": 2**63}, ValueError, "more than a file can hold"),
    ({"slots": 2**32 - 1, "slot_size": 2**40}, ValueError, "more than a file can hold"),
    ({"slots": -1}, OverflowError, None),
    ({"slot_size": 2**64}, OverflowError, None),
    ({"max_consumers": -5}, OverflowError, None),
])
def test_invalid_channel_options_are_python_errors(new_name, kwargs, error, match):
    name = new_name("bad-options")
    options = {"slot_size": 4096, **kwargs}
    with pytest.raises(error, match=match):
        shmarrow.producer(name, SIMPLE, **options)
    assert not os.path.exists(shmarrow.path(name))
    assert not glob.glob(f"/dev/shm/.{name}.*")


INTERRUPTED = textwrap.dedent(
    """
    import signal
    import sys
    import pyarrow as pa
    import shmarrow

    # Python maps Ctrl-C to KeyboardInterrupt only if SIGINT was not ignored when it started;
    # a runner started in the background (no job control) passes SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    name, what = sys.argv[1], sys.argv[2]
    if what == "next":
        p = shmarrow.producer(name, pa.schema([("x", pa.int64())]), slot_size=4096)
        sub = shmarrow.subscribe(name)
    print("waiting", flush=True)
    try:
        if what == "subscribe":
            shmarrow.subscribe(name)          # nobody creates it: waits forever
        else:
            next(sub)                         # nobody sends: waits forever
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    """
)


@pytest.mark.parametrize("what", ["subscribe", "next"])
def test_ctrl_c_interrupts_an_endless_wait(new_name, what):
    name = new_name("ctrl-c")
    proc = subprocess.Popen([sys.executable, "-c", INTERRUPTED, name, what],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "waiting", proc.stderr.read()
        _wait_until_asleep(proc.pid)  # in the wait, not before it
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert out.strip() == "interrupted", err
        assert proc.returncode == 0, err
    finally:
        _reap(proc)
