"""shmarrow.dask on a real Dask cluster: worker processes (nannies), two simulated hosts.

One cluster for the module: two workers on 127.0.0.1 with segment directory A and one on
127.0.0.2 with directory B (different directories, so different host tokens: an attach on
the wrong host fails and would be seen). The client process uses directory A.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np
import pyarrow as pa
import pytest

distributed = pytest.importorskip("distributed")
dd = pytest.importorskip("dask.dataframe")
da = pytest.importorskip("dask.array")
pd = pytest.importorskip("pandas")

import shmarrow  # noqa: E402
import shmarrow.dask as sd  # noqa: E402
from distributed import Client, Nanny, Scheduler, SpecCluster, get_task_stream  # noqa: E402

MB100 = 100 * 1000 * 1000


@pytest.fixture(scope="module")
def hosts():
    dirs = {"A": tempfile.mkdtemp(prefix="dask-A-", dir="/dev/shm"),
            "B": tempfile.mkdtemp(prefix="dask-B-", dir="/dev/shm")}
    old = os.environ.get("SHMARROW_DIR")
    os.environ["SHMARROW_DIR"] = dirs["A"]

    def worker(ip, d):
        return {"cls": Nanny, "options": {"host": ip, "nthreads": 1, "env": {"SHMARROW_DIR": d},
                                          "dashboard_address": ":0"}}

    cluster = SpecCluster(
        scheduler={"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard_address": ":0"}},
        workers={"a1": worker("127.0.0.1", dirs["A"]), "a2": worker("127.0.0.1", dirs["A"]),
                 "b1": worker("127.0.0.2", dirs["B"])},
    )
    client = Client(cluster)
    client.wait_for_workers(3)
    # Writing heap data into segments is off by default; on here, from 4 MiB (quick tests).
    sd.install(client, write_threshold=4 << 20)
    addrs = sorted(client.scheduler_info()["workers"])
    on = {"A": [a for a in addrs if "127.0.0.1" in a], "B": [a for a in addrs if "127.0.0.2" in a]}
    try:
        yield {"client": client, "dirs": dirs, "on": on}
    finally:
        client.close()
        cluster.close()
        left = {h: os.listdir(d) for h, d in dirs.items()}
        for d in dirs.values():
            shutil.rmtree(d)
        if old is None:
            del os.environ["SHMARROW_DIR"]
        else:
            os.environ["SHMARROW_DIR"] = old
    # client.close() (and the workers' close) leaves nothing: every test removed its own
    # segments, the receivers removed every transfer name.
    assert left == {"A": [], "B": []}


@pytest.fixture
def made(hosts):
    """Segments a test creates, as (name, host); removed afterwards."""
    names = []
    yield names
    for name, host in names:
        shmarrow.remove(name, dir=hosts["dirs"][host])


def _transfers(hosts):
    return sorted(n for d in hosts["dirs"].values() for n in os.listdir(d) if n.startswith(sd.TRANSFER_PREFIX))


def _table(n, seed, offset=0.0):
    rng = np.random.default_rng(seed)
    return pa.table({"x": rng.standard_normal(n) + offset, "k": rng.integers(-1000, 1000, n)})


def _put(hosts, made, host, name, table):
    shmarrow.create(name, table, dir=hosts["dirs"][host])
    made.append((name, host))


def test_segments_lists_each_host_once(hosts, made):
    _put(hosts, made, "A", "seg-a", _table(10, 1))
    _put(hosts, made, "B", "seg-b", _table(10, 2))
    assert sd.segments(hosts["client"]) == {"127.0.0.1": ["seg-a"], "127.0.0.2": ["seg-b"]}


def test_reduce_runs_on_the_holding_host_and_equals_single_host(hosts, made):
    client = hosts["client"]
    # Several batches, sizes not multiples of the 32 Ki chunk, far from zero: any change in
    # merge order would show in the last bits.
    parts = [("A", "r-a1", _table(100_003, 1, 1e9)), ("B", "r-b1", _table(70_001, 2, 1e9)),
             ("A", "r-a2", _table(33_333, 3, 1e9))]
    for host, name, table in parts:
        _put(hosts, made, host, name, table)
    whole = pa.concat_tables([t for _, _, t in parts])
    _put(hosts, made, "A", "r-whole", whole)
    names = [n for _, n, _ in parts]
    with get_task_stream(client) as stream:
        got = sd.reduce(client, names, ops=["count", "sum", "mean", "var", "std", "min", "max"], ddof=1)
    want = shmarrow.reduce("r-whole", columns=["x", "k"],
                           ops=["count", "sum", "mean", "var", "std", "min", "max"], ddof=1)
    assert got == want  # bit for bit, ints exact
    assert got["k"]["sum"] == int(whole["k"].to_numpy().sum())
    # Three reduction tasks, on both hosts (reduce also checks each ran on its holder).
    ran = [t["worker"] for t in stream.data if str(t["key"]).startswith("_partials")]
    assert len(ran) == 3
    assert sum(w in hosts["on"]["B"] for w in ran) == 1


def test_partials_task_on_the_wrong_host_fails(hosts, made):
    """The simulated hosts are real: a segment of B cannot be attached on A."""
    _put(hosts, made, "B", "only-b", _table(10, 1))
    fut = hosts["client"].submit(shmarrow.reduce, "only-b", workers=hosts["on"]["A"], pure=False)
    with pytest.raises(shmarrow.SegmentNotFound):
        fut.result()


def test_missing_and_ambiguous_names_are_clear_errors(hosts, made):
    _put(hosts, made, "A", "twice", _table(10, 1))
    _put(hosts, made, "B", "twice", _table(10, 1))
    with pytest.raises(sd.AmbiguousSegment, match="several hosts"):
        sd.reduce(hosts["client"], ["twice"])
    with pytest.raises(sd.AmbiguousSegment, match="several hosts"):
        sd.to_dataframe(hosts["client"], ["twice"])
    with pytest.raises(FileNotFoundError, match="no host"):
        sd.to_dataframe(hosts["client"], ["nowhere"])
    with pytest.raises(FileNotFoundError, match="no host"):
        sd.reduce(hosts["client"], ["nowhere", "twice"])
    with pytest.raises(TypeError):
        sd.reduce(hosts["client"], "twice")


def test_to_dataframe_partitions_on_their_hosts(hosts, made):
    client = hosts["client"]
    _put(hosts, made, "A", "df-a", _table(50_000, 5))
    _put(hosts, made, "B", "df-b", _table(40_000, 6))
    ddf = sd.to_dataframe(client, ["df-a", "df-b"])
    assert ddf.npartitions == 2
    assert isinstance(ddf.dtypes["x"], pd.ArrowDtype)
    total = ddf.x.sum().compute()
    want = sd.reduce(client, ["df-a", "df-b"], columns=["x"])["x"]["sum"]
    assert total == pytest.approx(want, rel=1e-12)
    assert int(ddf.k.sum().compute()) == sd.reduce(client, ["df-a", "df-b"], columns=["k"])["k"]["sum"]
    # Each partition lives on a worker of its holding host.
    where = client.who_has()
    parts = [k for k in where if "_attach_frame" in str(k)]
    assert {w for k in parts for w in where[k]} & set(hosts["on"]["B"])


def test_publish_round_trips(hosts, made):
    client = hosts["client"]
    frame = pd.DataFrame({"x": np.arange(1000, dtype="f8"), "k": np.arange(1000, dtype="i8")})
    names = sd.publish(dd.from_pandas(frame, npartitions=3), "pub-df")
    located = sd.segments(client)
    for name in names:
        host = "A" if name in located.get("127.0.0.1", []) else "B"
        made.append((name, host))
    assert names == ["pub-df-0", "pub-df-1", "pub-df-2"]
    back = sd.to_dataframe(client, names).compute()
    assert back["x"].to_numpy().tolist() == frame["x"].tolist()
    assert back["k"].to_numpy().tolist() == frame["k"].tolist()
    arr = da.arange(12, chunks=5, dtype="f8")
    anames = sd.publish(arr, "pub-arr")
    located = sd.segments(client)
    for name in anames:
        made.append((name, "A" if name in located.get("127.0.0.1", []) else "B"))
    assert sd.reduce(client, anames, columns=["values"])["values"]["sum"] == 66.0
    with pytest.raises(TypeError):
        sd.publish([1, 2], "pub-bad")


def _fail_on_negative(part):
    if (part["x"] < 0).any():
        raise ValueError("a negative partition")
    return part


def test_publish_refuses_taken_names_and_cleans_up_a_failed_partition(hosts, made):
    client = hosts["client"]
    before = sd.segments(client)
    # A name one host already holds: refused before any work, on whichever host.
    _put(hosts, made, "B", "taken-1", _table(10, 1))
    frame = pd.DataFrame({"x": np.arange(30, dtype="f8")})
    with pytest.raises(shmarrow.SegmentExists, match="taken-1"):
        sd.publish(dd.from_pandas(frame, npartitions=3), "taken")
    assert sd.segments(client) == {**before, "127.0.0.2": ["taken-1"]}
    # One partition fails: the others' segments are removed, the error is the partition's.
    frame["x"] = [-1.0 if i == 15 else float(i) for i in range(30)]
    with pytest.raises(ValueError, match="a negative partition"):
        sd.publish(dd.from_pandas(frame, npartitions=3).map_partitions(_fail_on_negative), "half")
    assert sd.segments(client) == {**before, "127.0.0.2": ["taken-1"]}


# --- hand-offs ------------------------------------------------------------------------------

def _make_table(nbytes):
    return pa.table({"x": np.arange(nbytes // 8, dtype="f8")})


def _attach_it(name):
    return shmarrow.attach(name)


def _sum_and_where(obj):
    """Run on the receiver: the sum, and whether every buffer lies in a mapping of a file of
    this worker's segment directory (the transfer name is removed by then: '(deleted)')."""
    directory = os.environ["SHMARROW_DIR"]
    maps = []
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].startswith(directory + "/"):
                lo, hi = (int(v, 16) for v in fields[0].split("-"))
                maps.append((lo, hi))
    if isinstance(obj, np.ndarray):
        spans = [(obj.__array_interface__["data"][0], obj.nbytes)]
        total = float(obj.sum())
    else:
        spans = [(b.address, b.size) for c in obj.columns for ch in c.chunks for b in ch.buffers() if b]
        total = float(pa.compute.sum(obj["x"]).as_py())
    shared = all(any(lo <= a and a + n <= hi for lo, hi in maps) for a, n in spans)
    return total, shared


def _counts(client, workers):
    return client.run(sd.transfer_counts, workers=workers)


def _hand_off(client, src, dst, make, arg):
    """An object made by ``make(arg)`` on ``src``, summed on ``dst``: the sum, whether ``dst``
    read it in a shared mapping, and how the transfer counters of both moved."""
    before = _counts(client, [src, dst])
    data = client.submit(make, arg, workers=[src], pure=False)
    total, shared = client.submit(_sum_and_where, data, workers=[dst], pure=False).result()
    after = _counts(client, [src, dst])
    moved = {k: {w: after[w][k] - before[w][k] for w in after} for k in ("linked", "written", "received")}
    return total, shared, moved, data


def _arange_sum(nbytes):
    n = nbytes // 8
    return float(n * (n - 1) // 2)


def test_handoff_same_host_goes_through_a_segment(hosts):
    a1, a2 = hosts["on"]["A"]
    total, shared, moved, _ = _hand_off(hosts["client"], a1, a2, _make_table, MB100)
    assert total == _arange_sum(MB100)
    assert shared  # the receiver reads the sender's pages
    assert moved == {"linked": {a1: 0, a2: 0}, "written": {a1: 1, a2: 0}, "received": {a1: 0, a2: 1}}
    assert _transfers(hosts) == []  # the receiver removed the transfer name
    # A heap table under write_threshold (4 MiB here) takes Dask's path.
    total, shared, moved, _ = _hand_off(hosts["client"], a1, a2, _make_table, 2 << 20)
    assert (total, shared) == (_arange_sum(2 << 20), False)
    assert moved == {k: {a1: 0, a2: 0} for k in ("linked", "written", "received")}


def test_handoff_of_a_segment_backed_table_is_a_link(hosts, made):
    a1, a2 = hosts["on"]["A"]
    _put(hosts, made, "A", "linked", _make_table(4 << 20))
    total, shared, moved, _ = _hand_off(hosts["client"], a1, a2, _attach_it, "linked")
    assert (total, shared) == (_arange_sum(4 << 20), True)
    assert moved == {"linked": {a1: 1, a2: 0}, "written": {a1: 0, a2: 0}, "received": {a1: 0, a2: 1}}
    assert _transfers(hosts) == []


def _array_view(name):
    return shmarrow.Shared(name).numpy()


def _shape_and_flags(x):
    return x.shape, x.flags.writeable


def test_handoff_of_numpy_arrays(hosts, made):
    client = hosts["client"]
    a1, a2 = hosts["on"]["A"]
    # A view of a shared 2-d array goes by link, keeps its shape, and is read-only.
    _put(hosts, made, "A", "arr", np.arange(1 << 20, dtype="f8").reshape(-1, 4))
    total, shared, moved, view = _hand_off(client, a1, a2, _array_view, "arr")
    assert (total, shared) == (_arange_sum(8 << 20), True)
    assert moved == {"linked": {a1: 1, a2: 0}, "written": {a1: 0, a2: 0}, "received": {a1: 0, a2: 1}}
    shaped = client.submit(_shape_and_flags, view, workers=[a2], pure=False)
    assert shaped.result() == ((1 << 18, 4), False)
    # A heap array from write_threshold (4 MiB here) is written once; under it, Dask's path.
    total, shared, moved, _ = _hand_off(client, a1, a2, np.ones, 1 << 20)
    assert (total, shared) == (float(1 << 20), True)
    assert moved == {"linked": {a1: 0, a2: 0}, "written": {a1: 1, a2: 0}, "received": {a1: 0, a2: 1}}
    dask_before = _counts(client, [a1])[a1]["dask"]
    total, shared, moved, _ = _hand_off(client, a1, a2, np.ones, 1 << 18)
    assert (total, shared) == (float(1 << 18), False)
    assert moved == {k: {a1: 0, a2: 0} for k in ("linked", "written", "received")}
    assert _counts(client, [a1])[a1]["dask"] == dask_before + 1
    total, shared, moved, _ = _hand_off(client, a1, a2, np.ones, 10)
    assert moved == {k: {a1: 0, a2: 0} for k in ("linked", "written", "received")}
    assert _transfers(hosts) == []


def test_handoff_between_hosts_takes_dasks_path(hosts):
    client = hosts["client"]
    a1, b1 = hosts["on"]["A"][0], hosts["on"]["B"][0]
    total, shared, moved, table = _hand_off(client, a1, b1, _make_table, 8 << 20)
    assert (total, shared) == (_arange_sum(8 << 20), False)
    assert moved == {k: {a1: 0, b1: 0} for k in ("linked", "written", "received")}
    # Gathering to this client (same host and directory as a1) works and leaves nothing.
    assert client.gather(table).num_rows == (8 << 20) // 8
    assert _transfers(hosts) == []


def _rss_shmem():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("RssShmem:"))


def test_attached_table_counts_in_sizeof_and_in_rss_as_touched(iso_dir):
    """What the README says the memory manager sees: sizeof is the full size, RSS grows by
    the shared pages a process touches and shrinks when the table is dropped."""
    import gc

    from dask.sizeof import sizeof

    shmarrow.create("mem", _make_table(MB100), dir=iso_dir)
    before = _rss_shmem()
    table = shmarrow.attach("mem", dir=iso_dir)
    assert sizeof(table) >= MB100
    assert _rss_shmem() - before < MB100 // 10  # attached, not yet read
    pa.compute.sum(table["x"])
    assert _rss_shmem() - before >= MB100 * 9 // 10
    del table
    gc.collect()
    assert _rss_shmem() - before < MB100 // 10


# --- the partials binding, without a cluster -----------------------------------------------

def test_merged_partials_equal_reduce_of_the_concatenation(iso_dir):
    from shmarrow import _shmarrow

    parts = [_table(40_000, 1, 1e9), _table(1, 2, -3.0), _table(70_001, 3, 1e9)]
    parts[1] = pa.table({"x": [float("nan")], "k": pa.array([None], pa.int64())})
    for i, t in enumerate(parts):
        shmarrow.create(f"p{i}", t, dir=iso_dir)
    shmarrow.create("whole", pa.concat_tables(parts), dir=iso_dir)
    per = [_shmarrow.reduce_partials(f"p{i}", dir=iso_dir) for i in range(3)]
    assert [c for c, _, _ in per[0]] == ["x", "k"]
    assert per[0][1][1] is True and per[0][0][1] is False  # k is an integer column
    assert len(per[0][0][2]) == 2  # 40,000 rows: two chunks of at most 32 Ki rows
    want = shmarrow.reduce("whole", dir=iso_dir, ddof=1)
    for k, column in enumerate(["x", "k"]):
        chunks = [p for one in per for p in one[k][2]]
        got = _shmarrow.merge_partials(column, per[0][k][1], chunks, ddof=1)
        assert repr(got) == repr(want[column])  # NaN included, bit for bit
    # No chunks at all (every segment empty): what reduce gives for an empty column.
    assert _shmarrow.merge_partials("k", True, [], ["count", "sum", "min"]) == {"count": 0, "sum": 0, "min": None}


@pytest.mark.parametrize("bad", [[("x",)], [None], [(1, 2, "s", 0.0, 0.0, 0.0, 0.0, None, None, False)],
                                 [(-1, 0, 0, 0.0, 0.0, 0.0, 0.0, None, None, False)], "abc"])
def test_merge_partials_refuses_malformed_input(bad):
    """Wrong shapes and types, a negative count: a Python exception, never a panic."""
    from shmarrow import _shmarrow

    with pytest.raises((TypeError, ValueError, OverflowError)):
        _shmarrow.merge_partials("x", False, bad)


def test_merge_partials_refuses_unknown_ops():
    from shmarrow import _shmarrow

    with pytest.raises(ValueError, match="unknown op"):
        _shmarrow.merge_partials("x", False, [], ["median"])


@pytest.mark.parametrize("kwargs", [{"threshold": -1}, {"threshold": float("nan")}, {"threshold": True},
                                    {"write_threshold": -1}, {"write_threshold": 1.5},
                                    {"interval": 0}, {"interval": float("inf")}, {"ttl": float("nan")},
                                    {"ttl": -1.0}, {"interval": "10"}])
def test_install_refuses_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        sd.install(None, **kwargs)  # refused before the client is used
