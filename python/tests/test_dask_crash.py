"""shmarrow.dask lifecycle: a worker SIGKILLed in the middle of a hand-off; install on a
cluster whose workers have already talked.

A hand-off through a segment has two halves: the sender's serializer creates the transfer
segment (named after sender and receiver, each as pid and start time), the receiver attaches
it and removes the name. Here the first half runs for real (Dask's ``serialize`` with the
context of a same-host receiver), then one end is SIGKILLed before the second half. The
periodic sweep is set to an hour, so only the sweep at the (re)start of a worker or nanny can
remove the orphan: after the nanny restarts the killed worker, nothing may be left; after
``client.close()`` and the cluster's close, the directory must be empty.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time

import numpy as np
import pyarrow as pa
import pytest

distributed = pytest.importorskip("distributed")

import shmarrow  # noqa: E402
import shmarrow.dask as sd  # noqa: E402
from distributed import Client, Nanny, Scheduler, SpecCluster  # noqa: E402


def _half_handoff(receiver):
    """Run on the sender: what its serializer does when a same-host worker fetches a table,
    without the receiver's half."""
    from distributed.protocol.serialize import serialize

    table = pa.table({"x": np.arange(1 << 18, dtype="f8")})
    context = {"recipient": {sd.HANDSHAKE_KEY: [sd.host_token(), receiver]}}
    header, frames = serialize(table, serializers=("dask",), context=context)
    return header["sub-header"]["shmarrow"]["name"]


def _wait(condition, what):
    # A guard against hanging forever, not a timing assertion: a restart takes seconds.
    deadline = time.monotonic() + 120
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


@contextlib.contextmanager
def _two_workers(directory):
    """A cluster of two nanny-managed workers sharing segment directory ``directory``."""
    spec = {"cls": Nanny, "options": {"host": "127.0.0.1", "nthreads": 1, "dashboard_address": ":0",
                                      "env": {"SHMARROW_DIR": directory}}}
    with SpecCluster(scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}},
                     workers={"w1": spec, "w2": spec}) as cluster, Client(cluster) as client:
        client.wait_for_workers(2)
        yield client


def _make_table(nbytes):
    return pa.table({"x": np.arange(nbytes // 8, dtype="f8")})


def _sum_and_counts(table):
    return pa.compute.sum(table["x"]).as_py(), sd.transfer_counts()


def test_install_after_workers_have_talked_takes_the_segment_path():
    """Workers that fetched from each other before install hold pooled connections opened
    without the host token: install closes them, so the next hand-off is through a segment."""
    directory = tempfile.mkdtemp(prefix="dask-late-", dir="/dev/shm")
    n = 4 << 20
    want = float((n // 8) * (n // 8 - 1) // 2)
    try:
        with _two_workers(directory) as client:
            w1, w2 = sorted(client.scheduler_info()["workers"])
            before = client.submit(_make_table, n, workers=[w1], pure=False)
            assert client.submit(_sum_and_counts, before, workers=[w2], pure=False).result()[0] == want
            sd.install(client, write_threshold=1 << 20)
            after = client.submit(_make_table, n, workers=[w1], pure=False)
            total, counts = client.submit(_sum_and_counts, after, workers=[w2], pure=False).result()
            assert (total, counts["received"]) == (want, 1)
            assert client.run(sd.transfer_counts, workers=[w1])[w1]["written"] == 1
            del before, after
        assert os.listdir(directory) == []
    finally:
        shutil.rmtree(directory)


@pytest.mark.parametrize("killed", ["sender", "receiver"])
def test_sigkill_during_handoff_leaves_nothing(killed):
    directory = tempfile.mkdtemp(prefix="dask-crash-", dir="/dev/shm")
    old = os.environ.get("SHMARROW_DIR")
    os.environ["SHMARROW_DIR"] = directory
    try:
        with _two_workers(directory) as client:
            sd.install(client, write_threshold=1 << 20, interval=3600)
            by_name = {info["name"]: addr for addr, info in client.scheduler_info()["workers"].items()}
            sender, receiver = by_name["w1"], by_name["w2"]
            ident = client.run(sd._me, workers=[receiver])[receiver]
            xfer = client.run(_half_handoff, ident, workers=[sender])[sender]
            assert os.listdir(directory) == [xfer]  # the orphan-to-be exists

            victim = sender if killed == "sender" else receiver
            name = "w1" if killed == "sender" else "w2"
            pid = client.run(os.getpid, workers=[victim])[victim]
            os.kill(pid, signal.SIGKILL)

            def restarted():
                workers = client.scheduler_info()["workers"]
                return any(i["name"] == name and a != victim for a, i in workers.items())

            _wait(restarted, "the nanny to restart the killed worker")
            _wait(lambda: os.listdir(directory) == [], "the sweep at the new worker's start")
            # The cluster still hands data over through segments, and leaves nothing.
            by_name = {info["name"]: a for a, info in client.scheduler_info()["workers"].items()}
            _wait(lambda: all(client.run(lambda dask_worker: "shmarrow" in dask_worker.plugins).values()),
                  "the plugin on the restarted worker")
            table = client.submit(pa.table, {"x": np.ones(1 << 18)}, workers=[by_name["w1"]], pure=False)
            total = client.submit(lambda t: pa.compute.sum(t["x"]).as_py(), table,
                                  workers=[by_name["w2"]], pure=False)
            assert total.result() == float(1 << 18)
            counts = client.run(sd.transfer_counts, workers=[by_name["w2"]])[by_name["w2"]]
            assert counts["received"] == 1
            assert os.listdir(directory) == []
            shmarrow.create("kept-until-rm", table.result(), dir=directory)
            shmarrow.remove("kept-until-rm", dir=directory)
        assert os.listdir(directory) == []  # client.close() and the cluster's close leave nothing
    finally:
        shutil.rmtree(directory)
        if old is None:
            del os.environ["SHMARROW_DIR"]
        else:
            os.environ["SHMARROW_DIR"] = old
