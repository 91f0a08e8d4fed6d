"""Side-by-side suite: shmarrow against the usual ways of moving NumPy data between processes.

Run it through ``bench/compare`` (which builds what it needs first); directly:
``.venv/bin/python bench/compare.py [--quick] [--with-ray] [--out-dir bench]``.

Every figure is measured by this run and written to ``bench/RESULTS.md`` and
``bench/results.png``; nothing is hard-coded. What each case and contender measures is
described in ``bench/README.md`` ("bench/compare") and repeated in the report.

Processes: ``multiprocessing`` with the **forkserver** start method everywhere (numpy, pyarrow
and shmarrow preloaded in the fork server, so a worker starts in milliseconds); every worker and
producer/consumer process is started before timing and lives for the whole case, so no timing
includes Python process start-up (the CLI contender's figures do include starting its processes:
that is how the CLI is used). Timestamps crossing processes are ``CLOCK_MONOTONIC``
(``time.monotonic_ns`` here, ``clock_gettime`` in the Rust helper).

Every file and shared-memory block this program creates is named ``shmarrow-bench-py-<pid>-…``
(``<pid>`` of the main process) and removed at the end, on error, on Ctrl-C and on SIGTERM.
"""

from __future__ import annotations

import argparse
import gc
import glob
import importlib.metadata
import json
import math
import multiprocessing as mp
import multiprocessing.connection
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import traceback
from multiprocessing import shared_memory

import numpy as np
import pyarrow as pa

import shmarrow

START_METHOD = "forkserver"
KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
MB = 10**6
HANDOFF_BYTES = 100 * MB  # "one 100 MB float64 array"
MODULUS = 1_000_003
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Targets of the issue (ratios from one run); printed beside the measurements as PASS/MISS.
TARGET_FLOOR_RATIO = 1.1  # hand-off held: shmarrow time <= 1.1 x (memcpy + NumPy sum)
TARGET_RAY_RATIO = 1.0  # hand-off held: shmarrow time / Ray time <= 1
TARGET_INPLACE_MS = 1.0  # built in place: publish + attach < 1 ms at every size
TARGET_STREAM_RATE = 30.0  # arrays/s of 100 MB to 2 consumers

CTX = None  # the multiprocessing context, set in main()
PREFIX = f"shmarrow-bench-py-{os.getpid()}-cmp"  # children get it as an argument
SEG_DIR = os.environ.get("SHMARROW_DIR") or "/dev/shm"
RUST_EXE = None
CLI_EXE = os.path.join(ROOT, "target", "release", "shmarrow")
ALL_PROCS: list = []
RAY_ADDRESS = None


def now() -> int:
    return time.monotonic_ns()


def vmhwm() -> int:
    """Peak resident set size of this process in bytes (``VmHWM``; shared pages it touched
    count too)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def fill_column(view: np.ndarray) -> None:
    """``x[i] = 1 + (i mod MODULUS) / 1000``, in slices (no big integer temporary)."""
    step = 1 << 22
    for start in range(0, view.size, step):
        i = np.arange(start, min(view.size, start + step), dtype=np.int64)
        view[start : start + len(i)] = 1.0 + (i % MODULUS) * 1e-3


def human(nbytes: int) -> str:
    if nbytes >= GIB and nbytes % GIB == 0:
        return f"{nbytes // GIB} GiB"
    if nbytes >= MIB and nbytes % MIB == 0:
        return f"{nbytes // MIB} MiB"
    if nbytes % MB == 0:
        return f"{nbytes // MB} MB"
    return f"{nbytes} B"


def elements(n: int) -> str:
    return f"{n // MIB}M" if n % MIB == 0 else str(n)


# =============================================================================================
# Processes

def _entry(conn, fn, args):
    try:
        fn(conn, *args)
    except BaseException:  # report, then die
        try:
            conn.send(("error", traceback.format_exc()))
        except Exception:
            pass
        raise SystemExit(1)


class Proc:
    """A multiprocessing process running ``fn(conn, *args)``; main talks to it over ``conn``."""

    def __init__(self, fn, *args, name="worker"):
        self.conn, child = CTX.Pipe()
        self.name = name
        self.p = CTX.Process(target=_entry, args=(child, fn, args), name=name)
        self.p.start()
        child.close()
        ALL_PROCS.append(self)

    def recv(self, timeout=600.0):
        try:
            if not self.conn.poll(timeout):
                raise TimeoutError(f"{self.name}: no answer in {timeout:.0f} s")
            m = self.conn.recv()
        except EOFError:
            raise RuntimeError(f"{self.name} died (exit code {self.p.exitcode})") from None
        if isinstance(m, tuple) and m and m[0] == "error":
            raise RuntimeError(f"{self.name} failed:\n{m[1]}")
        return m

    def call(self, msg, timeout=600.0):
        self.conn.send(msg)
        return self.recv(timeout)

    def end(self):
        self.p.join(10)
        if self.p.is_alive():
            self.p.terminate()
            self.p.join(5)


class RustProc:
    """The Rust helper (bench/compare_rust.rs) as a round server: JSON lines both ways."""

    def __init__(self, *args):
        if RUST_EXE is None:
            raise RuntimeError("the Rust helper was not built")
        self.args = [str(a) for a in args]
        self.p = subprocess.Popen(
            [RUST_EXE, *self.args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        ALL_PROCS.append(self)

    def line(self) -> dict:
        s = self.p.stdout.readline()
        if not s:
            self.p.wait()
            raise RuntimeError(f"compare_rust {self.args[0]} exited ({self.p.returncode})")
        return json.loads(s)

    def round(self) -> dict:
        self.p.stdin.write("round\n")
        self.p.stdin.flush()
        return self.line()

    def stop(self, answer=True):
        self.p.stdin.write("stop\n")
        self.p.stdin.close()
        last = self.line() if answer else None
        self.p.wait(60)
        return last

    def end(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()


def end_all():
    while ALL_PROCS:
        p = ALL_PROCS.pop()
        try:
            p.end()
        except Exception:
            pass


def cleanup_files():
    patterns = [f"/dev/shm/{PREFIX}*", f"/dev/shm/.{PREFIX}*", f"{SEG_DIR}/{PREFIX}*",
                f"{SEG_DIR}/.{PREFIX}*", f"/dev/shm/*{PREFIX}*"]
    for pat in patterns:
        for path in glob.glob(pat):
            try:
                os.unlink(path)
            except OSError:
                pass


def shm_attach(name: str) -> shared_memory.SharedMemory:
    """Attach a block by name. All our processes share main's resource tracker (forkserver),
    whose registry is a set: the attach re-registers a name the creator registered, and the
    creator's unlink unregisters it; nothing is unlinked behind anyone's back."""
    return shared_memory.SharedMemory(name=name)


# =============================================================================================
# Transports for the hand-off and the stream. One producer process, N consumer processes; a
# duplex "link" pipe per consumer carries small notices (producer -> consumer) and done reports
# (consumer -> producer: sequence number, slot, receive time, sum time, sum).

SCHEMA = pa.schema([("x", pa.float64())])


class Transport:
    inplace = False  # can the producer build the array in place?

    def __init__(self, cfg, nbytes, index=None):
        self.cfg, self.nbytes, self.n, self.index = cfg, nbytes, nbytes // 8, index
        self.links = cfg["links"]

    # producer side
    def p_open(self):
        pass

    def p_send(self, arr, seq, slot):
        raise NotImplementedError

    def p_alloc(self, seq, slot):
        raise NotImplementedError

    def p_publish(self, seq, slot):
        raise NotImplementedError

    def p_done(self, seq):
        pass

    def p_close(self):
        for a, _ in self.links:
            a.send(None)

    def p_wait(self, block):
        """Done reports available now: a list of (consumer index, message)."""
        ends = [a for a, _ in self.links]
        ready = mp.connection.wait(ends, timeout=None if block else 0)
        out = []
        for c in ready:
            i = ends.index(c)
            while c.poll():
                out.append((i, c.recv()))
        return out

    def notify(self, *payload):
        for a, _ in self.links:
            a.send(payload)

    # consumer side
    def c_open(self):
        pass

    def c_recv(self):
        raise NotImplementedError

    def c_release(self):
        pass

    def c_close(self):
        pass

    def c_report(self, msg):
        self.links[self.index][1].send(msg)


class QueueT(Transport):
    """multiprocessing.Queue: the array is pickled (into a pipe, by the queue's feeder thread)
    and unpickled by the consumer; one queue per consumer (maxsize 2)."""

    def p_send(self, arr, seq, slot):
        for q in self.cfg["qs"]:
            q.put(arr)

    def p_close(self):
        for q in self.cfg["qs"]:
            q.put(None)

    def c_recv(self):
        a = self.cfg["qs"][self.index].get()
        return None if a is None else ([a], None)


class PipeT(Transport):
    """multiprocessing.Pipe: ``send_bytes(array)`` (no pickle), ``recv_bytes_into`` a buffer the
    consumer allocated once (so only the pipe's copies remain)."""

    def p_send(self, arr, seq, slot):
        for _, w in self.cfg["pipes"]:
            w.send_bytes(arr)

    def p_close(self):
        for _, w in self.cfg["pipes"]:
            w.send_bytes(b"")

    def c_open(self):
        self.buf = bytearray(self.nbytes)
        self.view = np.frombuffer(self.buf, dtype=np.float64)

    def c_recv(self):
        r, _ = self.cfg["pipes"][self.index]
        got = r.recv_bytes_into(self.buf)
        return None if got == 0 else ([self.view], None)


class RingT(Transport):
    """A ring of ``slots`` recycled buffers, created once; consumers attach once. The producer
    copies the array into a free slot (or fills it in place) and sends the slot number."""

    inplace = True

    def p_send(self, arr, seq, slot):
        np.copyto(self.views[slot], arr)
        self.notify("data", slot)

    def p_alloc(self, seq, slot):
        return self.views[slot]

    def p_publish(self, seq, slot):
        t = now()
        self.notify("data", slot)
        return t

    def c_recv(self):
        m = self.links[self.index][1].recv()
        if m is None:
            return None
        return [self.views[m[1]]], m[1]


class ShmRingT(RingT):
    """multiprocessing.shared_memory blocks (the lecture's approach), recycled."""

    def p_open(self):
        self.blocks = [shared_memory.SharedMemory(name=nm, create=True, size=self.nbytes)
                       for nm in self.cfg["names"]]
        self.views = [np.ndarray((self.n,), np.float64, buffer=b.buf) for b in self.blocks]

    def p_close(self):
        super().p_close()
        self.views = None
        for b in self.blocks:
            b.close()
            b.unlink()

    def c_open(self):
        self.blocks = [shm_attach(nm) for nm in self.cfg["names"]]
        self.views = [np.ndarray((self.n,), np.float64, buffer=b.buf) for b in self.blocks]

    def c_close(self):
        self.views = None
        for b in self.blocks:
            b.close()


class ArrayT(RingT):
    """multiprocessing.Array('d', n) (inherited by the processes at start) + np.frombuffer."""

    def p_open(self):
        self.views = [np.frombuffer(a.get_obj(), dtype=np.float64) for a in self.cfg["arrays"]]

    c_open = p_open


class ShmFreshT(Transport):
    """multiprocessing.shared_memory, the literal lecture pattern: a NEW block per array
    (create, copy or fill, send its name; the consumer attaches by name, sums, closes; the
    producer unlinks it once every consumer is done)."""

    inplace = True

    def p_open(self):
        self.live = {}

    def _new(self, seq):
        b = shared_memory.SharedMemory(name=f"{self.cfg['prefix']}-{seq}", create=True,
                                       size=self.nbytes)
        self.live[seq] = b
        return np.ndarray((self.n,), np.float64, buffer=b.buf)

    def p_send(self, arr, seq, slot):
        v = self._new(seq)
        np.copyto(v, arr)
        del v
        self.notify("data", self.live[seq].name)

    def p_alloc(self, seq, slot):
        return self._new(seq)

    def p_publish(self, seq, slot):
        t = now()
        self.notify("data", self.live[seq].name)
        return t

    def p_done(self, seq):
        b = self.live.pop(seq)
        b.close()
        b.unlink()

    def c_recv(self):
        m = self.links[self.index][1].recv()
        if m is None:
            return None
        b = shm_attach(m[1])
        self.cur = b
        return [np.ndarray((self.n,), np.float64, buffer=b.buf)], None

    def c_release(self):
        self.cur.close()
        self.cur = None


class IpcFileT(Transport):
    """pyarrow alone: the producer writes an Arrow IPC file on /dev/shm (``pa.ipc.new_file`` on
    a fresh ``pa.OSFile``, a ring of paths); the consumer maps it (``pa.memory_map`` +
    ``open_file().read_all()``, zero-copy) and sums the column's NumPy view."""

    def p_open(self):
        self.batch = None

    def p_send(self, arr, seq, slot):
        if self.batch is None or self.batch_src is not arr:
            self.batch = pa.record_batch([pa.array(arr)], schema=SCHEMA)  # zero-copy wrap
            self.batch_src = arr
        with pa.OSFile(self.cfg["paths"][slot], "wb") as f:
            with pa.ipc.new_file(f, SCHEMA) as w:
                w.write_batch(self.batch)
        self.notify("data", slot)

    def p_close(self):
        super().p_close()
        for p in self.cfg["paths"]:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass

    def c_recv(self):
        m = self.links[self.index][1].recv()
        if m is None:
            return None
        self.mm = pa.memory_map(self.cfg["paths"][m[1]])
        table = pa.ipc.open_file(self.mm).read_all()
        return [c.to_numpy(zero_copy_only=True) for c in table.column(0).chunks], m[1]

    def c_release(self):
        self.mm.close()
        self.mm = None


class ShmarrowChanT(Transport):
    """shmarrow (Python package): a channel created once (``shmarrow.producer(name, schema,
    slots=K, slot_size=...)``), the held array wrapped zero-copy as a RecordBatch and
    ``send``-encoded straight into a slot (the one copy); consumers ``subscribe`` once and get
    batches pointing into the slot (``to_numpy(zero_copy_only=True)``)."""

    def p_open(self):
        self.prod = shmarrow.producer(self.cfg["name"], SCHEMA, dir=SEG_DIR,
                                      slots=self.cfg["slots"],
                                      slot_size=self.nbytes + MIB)
        self.batch = None

    def p_send(self, arr, seq, slot):
        if self.batch is None or self.batch_src is not arr:
            self.batch = pa.record_batch([pa.array(arr)], schema=SCHEMA)
            self.batch_src = arr
        self.prod.send(self.batch)

    def p_close(self):
        self.prod.close()
        shmarrow.remove(self.cfg["name"], dir=SEG_DIR)

    def c_open(self):
        self.sub = shmarrow.subscribe(self.cfg["name"], dir=SEG_DIR)

    def c_recv(self):
        b = next(self.sub, None)
        if b is None:
            return None
        self.cur = b
        return [b.column(0).to_numpy(zero_copy_only=True)], None

    def c_release(self):
        self.cur = None  # unpins the slot


class ShmarrowAllocT(Transport):
    """shmarrow (Python package), built in place: ``shmarrow.allocate(name, {"x": "f8"}, n)``,
    the producer fills the writable NumPy view, ``publish()`` renames it into place, the name
    goes to the consumer, which ``shmarrow.attach``es it and sums ``column_view``."""

    inplace = True

    def p_alloc(self, seq, slot):
        self.w = shmarrow.allocate(self.cfg["name"], {"x": "f8"}, self.n, dir=SEG_DIR)
        return self.w["x"]

    def p_publish(self, seq, slot):
        self.w.publish()
        t = now()
        self.notify("data", self.cfg["name"])
        return t

    def p_done(self, seq):
        shmarrow.remove(self.cfg["name"], dir=SEG_DIR)
        self.w = None

    def c_recv(self):
        m = self.links[self.index][1].recv()
        if m is None:
            return None
        self.cur = shmarrow.attach(m[1], dir=SEG_DIR)
        return shmarrow.column_view(self.cur, "x"), None

    def c_release(self):
        self.cur = None


def _ray_consumer_class():
    class RayConsumer:
        def __init__(self):
            self.k = 0

        def consume(self, arr):
            import time as _t

            t_recv = _t.monotonic_ns()
            s = float(arr.sum())
            t_sum = _t.monotonic_ns()
            k = self.k
            self.k += 1
            return ("done", k, None, t_recv, t_sum, s)

        def rss(self):
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
            return 0

    return RayConsumer


class RayT(Transport):
    """Ray's object store: ``ray.put(array)`` in the producer (the one copy, into the shared
    object store), the ObjectRef passed to each consumer actor (a Ray worker process) as a task
    argument, which Ray resolves with a zero-copy ``get``; the actor sums and returns."""

    def p_open(self):
        import ray

        self.ray = ray
        ray.init(address=self.cfg["ray_address"], logging_level="ERROR",
                 log_to_driver=False)
        actor = ray.remote(num_cpus=0)(_ray_consumer_class())
        self.actors = [actor.remote() for _ in range(self.cfg["consumers"])]
        ray.get([a.rss.remote() for a in self.actors])  # started
        self.pending = {}  # future -> consumer index

    def p_send(self, arr, seq, slot):
        ref = self.ray.put(arr)
        for i, a in enumerate(self.actors):
            self.pending[a.consume.remote(ref)] = i
        del ref  # the tasks hold it until done

    def p_wait(self, block):
        if not self.pending:
            return []
        ready, _ = self.ray.wait(list(self.pending), num_returns=1,
                                 timeout=None if block else 0)
        if ready:
            more, _ = self.ray.wait(list(self.pending), num_returns=len(self.pending),
                                    timeout=0)
            ready = list(dict.fromkeys(ready + more))
        return [(self.pending.pop(f), self.ray.get(f)) for f in ready]

    def p_close(self):
        self.rss = self.ray.get([a.rss.remote() for a in self.actors])
        for a in self.actors:
            self.ray.kill(a)


TRANSPORTS = {
    "queue": QueueT, "pipe": PipeT, "shm": ShmRingT, "shmfresh": ShmFreshT,
    "array": ArrayT, "ipcfile": IpcFileT, "shmarrow": ShmarrowChanT,
    "shmarrow-alloc": ShmarrowAllocT, "ray": RayT,
}


class Book:
    """The producer's bookkeeping: done reports per consumer, a window of at most ``window``
    arrays in flight (slot = seq mod window), and cleanup of arrays every consumer finished."""

    def __init__(self, t: Transport, consumers: int, window: int):
        self.t, self.window = t, window
        self.done = [dict() for _ in range(consumers)]
        self.cleaned = 0

    def fully_done(self) -> int:
        return min(len(d) for d in self.done)  # in-order, lossless consumers

    def pump(self, block: bool):
        for i, msg in self.t.p_wait(block):
            _, k, _slot, t_recv, t_sum, s = msg
            self.done[i][k] = (t_recv, t_sum, s)
        while self.cleaned < self.fully_done():
            self.t.p_done(self.cleaned)
            self.cleaned += 1

    def acquire(self, seq: int) -> int:
        while self.fully_done() <= seq - self.window:
            self.pump(True)
        return seq % self.window

    def wait_for(self, seq: int):
        while self.fully_done() <= seq:
            self.pump(True)


def producer_main(conn, kind, cfg, mode, nbytes, consumers, window):
    t = TRANSPORTS[kind](cfg, nbytes)
    t.p_open()
    arr = np.ones(nbytes // 8) if mode == "held" else None  # resident (np.ones writes it)
    conn.send(("ready",))
    book = Book(t, consumers, window)
    seq = 0
    while True:
        cmd = conn.recv()
        if cmd[0] == "round":
            slot = book.acquire(seq)
            if mode == "held":
                t0 = now()
                t.p_send(arr, seq, slot)
                t_pub = t0
            else:
                view = t.p_alloc(seq, slot)
                view[:] = 1.0  # built in place (untimed)
                t0 = now()
                t_pub = t.p_publish(seq, slot)
                del view
            book.wait_for(seq)
            reports = [d[seq] for d in book.done]
            seq += 1
            conn.send({"t0": t0, "t_pub": t_pub, "t_recv": max(r[0] for r in reports),
                       "t_sum": max(r[1] for r in reports), "sum": reports[0][2]})
        elif cmd[0] == "stream":
            seconds, warm = cmd[1], cmd[2]
            first = seq
            t_start = now()
            t_measure = t_start + int(warm * 1e9)
            t_end = t_measure + int(seconds * 1e9)
            while now() < t_end:
                slot = book.acquire(seq)
                t.p_send(arr, seq, slot)
                seq += 1
                book.pump(False)
            if seq > first:
                book.wait_for(seq - 1)
            conn.send({"sent": seq - first, "t_measure": t_measure, "t_end": t_end,
                       "done": [[d[s][1] for s in range(first, seq)] for d in book.done]})
        elif cmd[0] == "stop":
            t.p_close()
            conn.send({"rss": vmhwm(), "consumer_rss": getattr(t, "rss", None)})
            return


def consumer_main(conn, kind, cfg, index, nbytes):
    t = TRANSPORTS[kind](cfg, nbytes, index)
    t.c_open()
    conn.send(("ready",))
    k = 0
    while True:
        got = t.c_recv()
        if got is None:
            break
        t_recv = now()
        s = 0.0
        for v in got[0]:
            s += float(v.sum())
        t_sum = now()
        slot = got[1]
        del got, v
        t.c_release()
        t.c_report(("done", k, slot, t_recv, t_sum, s))
        k += 1
    t.c_close()
    conn.send({"rss": vmhwm()})


def idle_main(conn):
    conn.send({"rss": vmhwm()})


def make_cfg(kind, nbytes, consumers, window, tag):
    cfg = {"links": [CTX.Pipe() for _ in range(consumers)], "consumers": consumers}
    base = f"{PREFIX}-{tag}-{kind}"
    if kind == "queue":
        cfg["qs"] = [CTX.Queue(maxsize=2) for _ in range(consumers)]
    elif kind == "pipe":
        cfg["pipes"] = [CTX.Pipe(duplex=False) for _ in range(consumers)]
    elif kind == "shm":
        cfg["names"] = [f"{base}-{j}" for j in range(window)]
    elif kind == "shmfresh":
        cfg["prefix"] = base
    elif kind == "array":
        cfg["arrays"] = [CTX.Array("d", nbytes // 8) for _ in range(window)]
    elif kind == "ipcfile":
        cfg["paths"] = [os.path.join(SEG_DIR, f"{base}-{j}.arrow") for j in range(window)]
    elif kind in ("shmarrow", "shmarrow-alloc"):
        cfg["name"] = base
        cfg["slots"] = window
    elif kind == "ray":
        cfg["ray_address"] = RAY_ADDRESS
    return cfg


# =============================================================================================
# Contenders: objects with start(), round() -> sample dict, stop() -> extra dict.

class Contender:
    def __init__(self, key, label, includes, family):
        self.key, self.label, self.includes, self.family = key, label, includes, family
        self.samples: list = []
        self.extra: dict = {}
        self.error = None

    def start(self):
        pass

    def round(self) -> dict:
        raise NotImplementedError

    def stop(self) -> dict:
        return {}


class PairContender(Contender):
    """A producer process and its consumer processes over one transport."""

    def __init__(self, key, label, includes, family, kind, mode, nbytes, consumers, window,
                 tag):
        super().__init__(key, label, includes, family)
        self.kind, self.mode, self.nbytes = kind, mode, nbytes
        self.consumers, self.window, self.tag = consumers, window, tag
        self.cons = []

    def start(self):
        cfg = make_cfg(self.kind, self.nbytes, self.consumers, self.window, self.tag)
        self.prod = Proc(producer_main, self.kind, cfg, self.mode, self.nbytes,
                         self.consumers, self.window, name=f"{self.key} producer")
        self.prod.recv(300)
        if self.kind != "ray":
            self.cons = [Proc(consumer_main, self.kind, cfg, i, self.nbytes,
                              name=f"{self.key} consumer {i}") for i in range(self.consumers)]
            for c in self.cons:
                c.recv(300)

    def round(self):
        return self.prod.call(("round",))

    def stream(self, seconds, warm):
        return self.prod.call(("stream", seconds, warm), timeout=seconds + warm + 300)

    def stop(self):
        r = self.prod.call(("stop",))
        rss = r["consumer_rss"] or [c.recv()["rss"] for c in self.cons]
        for p in [self.prod, *self.cons]:
            p.end()
        return {"producer_rss": r["rss"], "consumer_rss": rss}


class RustPair(Contender):
    def __init__(self, key, label, includes, mode, nbytes, tag):
        super().__init__(key, label, includes, "rust")
        self.mode, self.nbytes, self.tag = mode, nbytes, tag

    def start(self):
        name = f"{PREFIX}-{self.tag}-rust"
        self.p = RustProc(f"handoff-{self.mode}", SEG_DIR, name, self.nbytes)
        self.p.line()

    def round(self):
        return self.p.round()

    def stop(self):
        r = self.p.stop()
        return {"producer_rss": r["producer_rss"], "consumer_rss": r["consumer_rss"]}


def run_rounds(contenders, warmups, repeats, what):
    """Start every contender, then rounds with the contenders alternating (order rotated every
    round), then stop them. A contender that fails is reported, not fatal."""
    live = []
    for c in contenders:
        try:
            c.start()
            live.append(c)
        except Exception as exc:
            c.error = f"could not start: {str(exc).strip().splitlines()[-1]}"
            print(f"  ! {what}: {c.label}: {c.error}", file=sys.stderr)
            try:
                c.stop()
            except Exception:
                pass
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for i in range(warmups + repeats):
            k = len(live)
            for j in range(k):
                c = live[(j + i) % k]
                if c.error:
                    continue
                try:
                    s = c.round()
                except Exception as exc:
                    c.error = f"failed: {str(exc).strip().splitlines()[-1]}"
                    print(f"  ! {what}: {c.label}: {c.error}", file=sys.stderr)
                    continue
                if i >= warmups:
                    c.samples.append(s)
    finally:
        if gc_was:
            gc.enable()
        for c in live:
            try:
                c.extra.update(c.stop() or {})
            except Exception as exc:
                print(f"  ! {what}: {c.label}: stop: {exc}", file=sys.stderr)
    return contenders


def stats_of(xs):
    xs = list(xs)
    if not xs:
        return None
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


# =============================================================================================
# Case: hand-off

HELD_INCLUDES = {
    "queue": "`q.put(arr)` (pickled by the feeder thread, written to a pipe) → `q.get()` "
             "(unpickled into a new array) → sum",
    "pipe": "`conn.send_bytes(arr)` → `recv_bytes_into(buffer allocated once)` → "
            "`np.frombuffer` → sum",
    "shm": "`np.copyto` into a block created and attached once (recycled) → slot number over "
           "a pipe → sum of the view",
    "shmfresh": "new `SharedMemory(create=True)` + copy → name over a pipe → consumer "
                "attaches by name, sums, closes (producer unlinks after)",
    "array": "`np.copyto` into `np.frombuffer(mp.Array('d', n).get_obj())` (inherited at "
             "start) → slot number over a pipe → sum",
    "ipcfile": "`pa.ipc.new_file` writes a new file on /dev/shm → path over a pipe → "
               "`pa.memory_map` + `open_file().read_all()` (zero-copy) → sum",
    "ray": "`ray.put(arr)` → ObjectRef as an actor task argument (zero-copy get from the "
           "object store) → sum in the actor",
    "shmarrow": "`producer.send(batch)` into a channel slot faulted by the warm-up "
                "(created once, 1 slot) → `next(subscription)` → zero-copy NumPy view → sum",
    "rust": "Rust API: `Producer::send` into the warm slot → child process `Consumer::recv` "
            "→ sum (plain loop, 8 accumulators)",
}

INPLACE_INCLUDES = {
    "shm": "fill (untimed) the recycled block → **timed from here**: slot number over a pipe "
           "(no publish step) → sum",
    "shmfresh": "new `SharedMemory` block, fill (untimed) → **timed**: name over a pipe → "
                "consumer attaches by name → sum",
    "array": "fill (untimed) the inherited mp.Array → **timed**: slot number over a pipe → sum",
    "shmarrow-alloc": "`shmarrow.allocate` + fill the writable view (untimed) → **timed**: "
                      "`publish()` (rename) → name over a pipe → `shmarrow.attach` + "
                      "`column_view` → sum",
    "rust": "Rust API: `allocate` + fill (untimed) → **timed**: `Allocation::publish` "
            "(unmaps the writer's mapping, renames) → name over a pipe → `attach` → sum",
}

LABELS = {
    "queue": "multiprocessing.Queue (pickle)",
    "pipe": "multiprocessing.Pipe send_bytes",
    "shm": "shared_memory + NumPy (recycled block)",
    "shmfresh": "shared_memory + NumPy (new block each time)",
    "array": "multiprocessing.Array + frombuffer",
    "ipcfile": "pyarrow IPC file on /dev/shm",
    "ray": "Ray object store (put + get)",
    "shmarrow": "shmarrow (Python)",
    "shmarrow-alloc": "shmarrow (Python)",
    "rust": "shmarrow (Rust API)",
    "cli": "shmarrow (CLI)",
}


def family(kind):
    return "shmarrow" if kind.startswith("shmarrow") else "other"


def case_handoff(mode, nbytes, kinds, rust, warmups, repeats, tag):
    includes = HELD_INCLUDES if mode == "held" else INPLACE_INCLUDES
    cs = []
    for kind in kinds:
        cs.append(PairContender(kind, LABELS[kind], includes[kind], family(kind), kind, mode,
                                nbytes, 1, 1, tag))
    if rust:
        cs.append(RustPair("rust", LABELS["rust"], includes["rust"],
                           "held" if mode == "held" else "inplace", nbytes, tag))
    run_rounds(cs, warmups, repeats, f"hand-off {mode} {human(nbytes)}")
    expected = float(nbytes // 8)
    out = []
    for c in cs:
        row = {"key": c.key, "label": c.label, "includes": c.includes, "family": c.family,
               "error": c.error, **c.extra}
        if c.samples:
            row["total_ms"] = stats_of((s["t_sum"] - s["t0"]) / 1e6 for s in c.samples)
            row["ready_ms"] = stats_of((s["t_recv"] - s["t0"]) / 1e6 for s in c.samples)
            if mode == "inplace":
                row["publish_ms"] = stats_of((s["t_pub"] - s["t0"]) / 1e6 for s in c.samples)
            row["sum_ok"] = all(abs(s["sum"] - expected) <= 1e-9 * expected for s in c.samples)
        out.append(row)
    return out


# =============================================================================================
# Case: stream

def case_stream(kinds, rust, nbytes, seconds, warm, tag):
    rows = []
    for kind in kinds:
        c = PairContender(kind, LABELS[kind], HELD_INCLUDES[kind], family(kind), kind, "held",
                          nbytes, 2, 4, tag)
        row = {"key": kind, "label": LABELS[kind], "family": family(kind)}
        try:
            c.start()
            r = c.stream(seconds, warm)
            row.update(stream_rate(r, seconds))
            row.update(c.stop())
        except Exception as exc:
            row["error"] = f"failed: {str(exc).strip().splitlines()[-1]}"
            print(f"  ! stream: {c.label}: {row['error']}", file=sys.stderr)
            try:
                for p in [getattr(c, "prod", None), *c.cons]:
                    if p:
                        p.end()
            except Exception:
                pass
        rows.append(row)
        print(f"  stream {LABELS[kind]}: {row.get('rate', float('nan')):.1f} arrays/s")
    if rust:
        row = {"key": "rust", "label": LABELS["rust"], "family": "rust"}
        try:
            p = RustProc("stream", SEG_DIR, f"{PREFIX}-{tag}-rust", nbytes, seconds, warm, 2)
            r = p.line()
            p.p.wait(60)
            row.update(stream_rate(r, seconds))
            row["producer_rss"] = r["producer_rss"]
            row["consumer_rss"] = r["consumer_rss"]
        except Exception as exc:
            row["error"] = f"failed: {exc}"
        rows.append(row)
        print(f"  stream {LABELS['rust']}: {row.get('rate', float('nan')):.1f} arrays/s")
    return rows


def stream_rate(r, seconds):
    """Arrays finished by every consumer inside the measured window, per second."""
    done = r["done"]
    both = [max(ts) for ts in zip(*done)] if done and all(done) else []
    inside = sum(1 for t in both if r["t_measure"] <= t <= r["t_end"])
    return {"rate": inside / seconds, "sent": r["sent"], "delivered": len(both)}


# =============================================================================================
# Cases 28.1 and 28.2: 4 workers, in place / per-worker statistics

def task_worker(conn, kind, cfg, index):
    n = cfg["n"]
    if kind == "array":
        view = np.frombuffer(cfg["array"].get_obj(), dtype=np.float64)
    conn.send(("ready",))
    buf = None
    while True:
        m = conn.recv()
        if m[0] == "stop":
            conn.send({"rss": vmhwm()})
            return
        _, op, s, e = m
        if kind == "shm":
            b = shm_attach(cfg["name"])
            a = np.ndarray((n,), np.float64, buffer=b.buf)
            r = work(op, a[s:e])
            del a
            b.close()
            conn.send(r)
        elif kind == "array":
            conn.send(work(op, view[s:e]))
        elif kind == "queue":
            chunk = cfg["inq"][index].get()
            r = work(op, chunk)
            cfg["outq"].put((index, chunk if op == "square" else r))
        elif kind == "pipe":
            d = cfg["dpipes"][index][1]
            size = (e - s) * 8
            if buf is None or len(buf) != size:
                buf = bytearray(size)
            d.recv_bytes_into(buf)
            part = np.frombuffer(buf, dtype=np.float64)
            r = work(op, part)
            if op == "square":
                d.send_bytes(buf)
            else:
                d.send(r)
            del part
        elif kind == "ipcfile":
            mm = pa.memory_map(cfg["path"])
            table = pa.ipc.open_file(mm).read_all()
            v = table.column(0).chunk(0).to_numpy(zero_copy_only=True)
            conn.send(work(op, v[s:e]))
            del v, table
            mm.close()
        elif kind == "shmarrow-workers":
            table = shmarrow.attach(cfg["name"], dir=SEG_DIR)
            (v,) = shmarrow.column_view(table, "x")
            conn.send(work(op, v[s:e]))
            del v, table


def work(op, part):
    if op == "square":
        np.square(part, out=part)
        return None
    return (part.size, float(part.mean()), float(part.std()), float(part.max()))


def merge_stats(parts):
    """(count, mean, std, max) per worker -> merged (mean, std, max) (Chan et al.)."""
    count, mean, m2, hi = 0, 0.0, 0.0, -math.inf
    for c, m, sd, mx in parts:
        if count == 0:
            mean, m2 = m, sd * sd * c
        else:
            delta = m - mean
            mean += delta * c / (count + c)
            m2 += sd * sd * c + delta * delta * count * c / (count + c)
        count += c
        hi = max(hi, mx)
    return {"mean": mean, "std": math.sqrt(m2 / count), "max": hi}


class WorkersContender(Contender):
    """main is the coordinator; ``workers`` persistent worker processes of one kind."""

    def __init__(self, key, label, includes, family, kind, op, cfg, workers, source=None):
        super().__init__(key, label, includes, family)
        self.kind, self.op, self.cfg, self.workers, self.source = kind, op, cfg, workers, source
        n = cfg["n"]
        self.ranges = [(n * i // workers, n * (i + 1) // workers) for i in range(workers)]

    def start(self):
        self.procs = [Proc(task_worker, self.kind, self.cfg, i, name=f"{self.key} worker {i}")
                      for i in range(self.workers)]
        for p in self.procs:
            p.recv(300)

    def round(self):
        t0 = now()
        for p, (s, e) in zip(self.procs, self.ranges):
            p.conn.send(("task", self.op, s, e))
            if self.kind == "queue":
                self.cfg["inq"][self.procs.index(p)].put(self.source[s:e])
            elif self.kind == "pipe":
                self.cfg["dpipes"][self.procs.index(p)][0].send_bytes(self.source[s:e])
        results = [None] * self.workers
        if self.kind == "queue":
            for _ in range(self.workers):
                i, r = self.cfg["outq"].get()
                if self.op == "square":
                    s, e = self.ranges[i]
                    self.source[s:e] = r
                    r = None
                results[i] = r
        elif self.kind == "pipe":
            for i, (s, e) in enumerate(self.ranges):
                d = self.cfg["dpipes"][i][0]
                if self.op == "square":
                    d.recv_bytes_into(memoryview(self.source[s:e]).cast("B"))
                else:
                    results[i] = d.recv()
        else:
            results = [p.recv() for p in self.procs]
        ns = now() - t0
        out = {"ns": ns}
        if self.op == "stats":
            out["per_worker"] = [r[1:] for r in results]
            out.update(merge_stats(results))
        return out

    def stop(self):
        for p in self.procs:
            p.conn.send(("stop",))
        for p in self.procs:
            try:
                p.recv(30)
            except Exception:
                pass
            p.end()
        return {}


class CallContender(Contender):
    def __init__(self, key, label, includes, family, fn):
        super().__init__(key, label, includes, family)
        self.fn = fn

    def round(self):
        t0 = now()
        r = self.fn()
        out = {"ns": now() - t0}
        if isinstance(r, dict):
            out.update(r)
        return out


class RustServer(Contender):
    def __init__(self, key, label, includes, *args):
        super().__init__(key, label, includes, "rust")
        self.args = args

    def start(self):
        self.p = RustProc(*self.args)
        self.p.line()

    def round(self):
        return self.p.round()

    def stop(self):
        r = self.p.stop()
        return {"rss": r.get("rss")} if r else {}


def cli_reduce(name):
    out = subprocess.run([CLI_EXE, "--dir", SEG_DIR, "reduce", name, "-c", "x", "--ops",
                          "mean,std,max", "--processes", "4", "--json"],
                         check=True, capture_output=True, text=True).stdout
    r = json.loads(out)[0]
    return {"mean": r["mean"], "std": r["std"], "max": r["max"]}


def cli_map(name):
    subprocess.run([CLI_EXE, "--dir", SEG_DIR, "map", name, "-c", "x", "--op", "square",
                    "--processes", "4"], check=True, capture_output=True)


def case_28(op, n, warmups, repeats, tag, with_ray):
    """28.1 (op "square") or 28.2 (op "stats") on n float64 by 4 workers."""
    workers = 4
    nbytes = n * 8
    base = f"{PREFIX}-{tag}"
    made = []  # cleanup
    # The data, once per contender family (untimed).
    shmarrow_name = f"{base}-seg"
    w = shmarrow.allocate(shmarrow_name, {"x": "f8"}, n, dir=SEG_DIR)
    if op == "square":
        w["x"][:] = 1.0  # squaring keeps 1.0: the same work every round, no overflow
    else:
        fill_column(w["x"])
    w.publish()
    del w
    made.append(("shmarrow", shmarrow_name))
    table = shmarrow.attach(shmarrow_name, dir=SEG_DIR)
    (seg_view,) = shmarrow.column_view(table, "x")  # one batch: one view
    expected = None
    if op == "stats":
        expected = {"mean": float(seg_view.mean()), "max": float(seg_view.max())}
    shm = shared_memory.SharedMemory(name=f"{base}-shm", create=True, size=nbytes)
    shm_view = np.ndarray((n,), np.float64, buffer=shm.buf)
    np.copyto(shm_view, seg_view)
    arr_obj = CTX.Array("d", n)
    np.copyto(np.frombuffer(arr_obj.get_obj(), dtype=np.float64), seg_view)
    if op == "square":
        source = np.array(seg_view)  # the Queue/Pipe coordinator's own (writable) array
    else:
        source = seg_view  # read-only: what the coordinator sends is pickled/copied anyway
    ipc_path = None
    if op == "stats":
        ipc_path = os.path.join(SEG_DIR, f"{base}-file.arrow")
        with pa.OSFile(ipc_path, "wb") as f, pa.ipc.new_file(f, SCHEMA) as wr:
            wr.write_batch(pa.record_batch([pa.array(seg_view)], schema=SCHEMA))

    what = "28.1 square" if op == "square" else "28.2 mean/std/max"
    cs = []
    attach_note = "each task attaches by name (a new mapping) and closes after"
    cs.append(WorkersContender(
        "shm", "shared_memory + NumPy (lecture)",
        f"4 persistent worker processes; {attach_note}; "
        + ("`np.square(part, out=part)`" if op == "square" else "NumPy mean/std/max of its part"),
        "other", "shm", op, {"n": n, "name": shm.name}, workers))
    cs.append(WorkersContender(
        "array", LABELS["array"],
        "4 persistent workers holding `np.frombuffer` of the inherited mp.Array (mapped and "
        "faulted once); " + ("in-place `np.square`" if op == "square" else "NumPy mean/std/max"),
        "other", "array", op, {"n": n, "array": arr_obj}, workers))
    cs.append(WorkersContender(
        "queue", LABELS["queue"],
        "coordinator `put`s each worker its part (pickled), worker "
        + ("squares and `put`s it back, coordinator copies it into its array"
           if op == "square" else "returns mean/std/max"),
        "other", "queue", op,
        {"n": n, "inq": [CTX.Queue() for _ in range(workers)], "outq": CTX.Queue()},
        workers, source))
    cs.append(WorkersContender(
        "pipe", LABELS["pipe"],
        "coordinator `send_bytes` each part, worker `recv_bytes_into` its buffer, "
        + ("squares, `send_bytes` back straight into the coordinator's array"
           if op == "square" else "returns mean/std/max"),
        "other", "pipe", op,
        {"n": n, "dpipes": [CTX.Pipe() for _ in range(workers)]}, workers, source))
    if op == "stats":
        cs.append(WorkersContender(
            "ipcfile", LABELS["ipcfile"],
            "file written once (untimed); each task: `pa.memory_map` + `open_file().read_all()` "
            "(zero-copy) + NumPy mean/std/max of its part",
            "other", "ipcfile", op, {"n": n, "path": ipc_path}, workers))
        cs.append(WorkersContender(
            "shmarrow-workers", "shmarrow (Python: 4 workers, attach + NumPy)",
            "4 persistent workers; each task: `shmarrow.attach(name)` + `column_view` + NumPy "
            "mean/std/max of its part",
            "shmarrow", "shmarrow-workers", op, {"n": n, "name": shmarrow_name}, workers))
        cs.append(CallContender(
            "shmarrow", "shmarrow (Python: reduce, 4 threads)",
            "`shmarrow.reduce(name, ['x'], ops=[mean, std, max], threads=4)` in the "
            "coordinator: attach + fused Rust pass (GIL released); merged result only",
            "shmarrow",
            lambda: dict(shmarrow.reduce(shmarrow_name, columns=["x"],
                                         ops=["mean", "std", "max"], threads=4,
                                         dir=SEG_DIR)["x"])))
        cs.append(CallContender(
            "cli", "shmarrow (CLI: reduce --processes 4)",
            "`shmarrow reduce NAME -c x --ops mean,std,max --processes 4 --json` as a "
            "subprocess: its start, a results segment, 4 worker processes (start, attach, "
            "reduce their chunks, write their row), merge, JSON",
            "cli", lambda: cli_reduce(shmarrow_name)))
        cs.append(RustServer(
            "rust", "shmarrow (Rust API: 4 threads)",
            "4 threads in one process, each `dir.attach(name)` + `chunk_partials` of its chunks "
            "(1 thread each), partials merged",
            "stats", SEG_DIR, shmarrow_name, workers))
    else:
        cs.append(CallContender(
            "shmarrow", "shmarrow (Python: map_inplace, 4 threads)",
            "`shmarrow.map_inplace(name, 'x', 'square', threads=4)` in the coordinator: open "
            "writable + exclusive lock + 4 Rust threads (GIL released)",
            "shmarrow",
            lambda: shmarrow.map_inplace(shmarrow_name, "x", "square", threads=4,
                                         dir=SEG_DIR)))
        cs.append(CallContender(
            "cli", "shmarrow (CLI: map --processes 4)",
            "`shmarrow map NAME -c x --op square --processes 4` as a subprocess: its start, "
            "lock, 4 worker processes (start, open writable by name, square their rows)",
            "cli", lambda: cli_map(shmarrow_name)))
        cs.append(RustServer(
            "rust", "shmarrow (Rust API: 4 threads)",
            "4 threads in one process, each `dir.open_writable(name)` + `map(square)` of its "
            "rows (1 thread each)",
            "square", SEG_DIR, shmarrow_name, workers))
    ray_ref = None
    if with_ray and op == "stats":
        import ray

        ray_ref = ray.put(seg_view)

        @ray.remote
        def ray_stats(a, s, e):
            p = a[s:e]
            return (p.size, float(p.mean()), float(p.std()), float(p.max()))

        ranges = [(n * i // workers, n * (i + 1) // workers) for i in range(workers)]

        def ray_round():
            parts = ray.get([ray_stats.remote(ray_ref, s, e) for s, e in ranges])
            return merge_stats(parts)

        cs.append(CallContender(
            "ray", "Ray (4 tasks on the object store)",
            "array `ray.put` once (untimed); 4 tasks, each resolving the ObjectRef (zero-copy) "
            "and computing mean/std/max of its part in a Ray worker",
            "other", ray_round))
    try:
        run_rounds(cs, warmups, repeats, f"{what} {elements(n)}")
    finally:
        del table, seg_view, shm_view
        shm.close()
        shm.unlink()
        shmarrow.remove(shmarrow_name, dir=SEG_DIR)
        if ipc_path:
            os.unlink(ipc_path)
        del arr_obj, source, ray_ref
        gc.collect()
    rows = []
    for c in cs:
        row = {"key": c.key, "label": c.label, "includes": c.includes, "family": c.family,
               "error": c.error}
        if c.samples:
            row["ms"] = stats_of(s["ns"] / 1e6 for s in c.samples)
            if op == "stats":
                last = c.samples[-1]
                row["result"] = {k: last.get(k) for k in ("mean", "std", "max")}
                row["agrees"] = (abs(last["mean"] - expected["mean"]) <= 1e-9 * expected["mean"]
                                 and last["max"] == expected["max"])
        rows.append(row)
    return rows


# =============================================================================================
# Case: attach time

def case_attach(sizes, warmups, repeats, with_ray):
    made = []
    groups = {}
    try:
        for size in sizes:
            n = size // 8
            name = f"{PREFIX}-att-{size}"
            w = shmarrow.allocate(name, {"x": "f8"}, n, dir=SEG_DIR)
            w["x"][:] = 1.0
            w.publish()
            del w
            made.append(("seg", name))
            path = os.path.join(SEG_DIR, f"{PREFIX}-att-{size}.arrow")
            src = np.ones(n)
            with pa.OSFile(path, "wb") as f, pa.ipc.new_file(f, SCHEMA) as wr:
                wr.write_batch(pa.record_batch([pa.array(src)], schema=SCHEMA))
            made.append(("file", path))
            shm = shared_memory.SharedMemory(name=f"{PREFIX}-att-{size}-shm", create=True,
                                             size=size)
            np.ndarray((n,), np.float64, buffer=shm.buf)[:] = 1.0
            made.append(("shm", shm))
            ref = None
            if with_ray:
                import ray

                ref = ray.put(src)
            del src
            groups[size] = (name, path, shm.name, ref, n)

        def py_attach(name):
            def f():
                t = shmarrow.attach(name, dir=SEG_DIR)
                del t
            return f

        def pa_attach(path):
            def f():
                t = pa.ipc.open_file(pa.memory_map(path)).read_all()
                del t
            return f

        def shm_att(nm, n):
            def f():
                b = shm_attach(nm)
                a = np.ndarray((n,), np.float64, buffer=b.buf)
                del a
                b.close()
            return f

        def ray_get(ref):
            import ray

            def f():
                a = ray.get(ref)
                del a
            return f

        rows = {}
        for size, (name, path, shm_name, ref, n) in groups.items():
            cs = [
                CallContender("shmarrow", "shmarrow (Python)",
                              "`shmarrow.attach(name)` → pyarrow.Table, then `del`", "shmarrow",
                              py_attach(name)),
                RustServer("rust", "shmarrow (Rust API)", "`dir.attach(name)` + drop",
                           "attach", SEG_DIR, name),
                CallContender("ipcfile", LABELS["ipcfile"],
                              "`pa.ipc.open_file(pa.memory_map(path)).read_all()`, then `del`",
                              "other", pa_attach(path)),
                CallContender("shm", "shared_memory + NumPy",
                              "`SharedMemory(name)` + `np.ndarray(buffer=shm.buf)` + `close()`",
                              "other", shm_att(shm_name, n)),
            ]
            if ref is not None:
                cs.append(CallContender("ray", "Ray (get)",
                                        "`ray.get(ref)` of an array in the object store "
                                        "(zero-copy view), then `del`", "other", ray_get(ref)))
            run_rounds(cs, warmups, repeats, f"attach {human(size)}")
            rs = []
            for c in cs:
                row = {"key": c.key, "label": c.label, "includes": c.includes,
                       "family": c.family, "error": c.error}
                if c.samples:
                    vals = [s["ns"][0] if isinstance(s["ns"], list) else s["ns"]
                            for s in c.samples]
                    row["us"] = stats_of(v / 1e3 for v in vals)
                rs.append(row)
            rows[size] = rs
        return rows
    finally:
        for kind, obj in made:
            try:
                if kind == "seg":
                    shmarrow.remove(obj, dir=SEG_DIR)
                elif kind == "file":
                    os.unlink(obj)
                else:
                    obj.close()
                    obj.unlink()
            except Exception:
                pass


# =============================================================================================
# Physical limits

def case_limits(read_bytes, copy_bytes, repeats):
    out = {}
    if RUST_EXE:
        p = RustProc("limits", SEG_DIR, read_bytes, copy_bytes, repeats)
        out = p.line()
        p.p.wait(60)
    # NumPy's own floor for the Python consumers: np.sum (1 thread) and np.copyto.
    a = np.ones(read_bytes // 8)
    src = np.ones(copy_bytes // 8)
    dst = np.zeros(copy_bytes // 8)
    sums, copies = [], []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        a.sum()
        t1 = time.perf_counter()
        np.copyto(dst, src)
        t2 = time.perf_counter()
        if i:
            sums.append(t1 - t0)
            copies.append(t2 - t1)
    for key, xs, b in (("numpy_sum", sums, read_bytes), ("numpy_copyto", copies, copy_bytes)):
        out[key] = {"bytes": b, "median_s": statistics.median(xs), "min_s": min(xs),
                    "max_s": max(xs), "n": len(xs)}
    return out


# =============================================================================================
# Report

def machine():
    info = {}
    with open("/proc/cpuinfo") as f:
        info["cpu"] = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")),
                           "?")
    with open("/proc/meminfo") as f:
        info["mem"] = next((l.split(":", 1)[1].strip() for l in f if l.startswith("MemTotal:")),
                           "?")
    info["nproc"] = len(os.sched_getaffinity(0))
    info["kernel"] = platform.release()
    try:
        with open("/proc/mounts") as f:
            m = [l.split() for l in f]
        best = max((x for x in m if SEG_DIR.startswith(x[1])), key=lambda x: len(x[1]))
        info["shm"] = f"{SEG_DIR}: {best[2]} ({best[3]})"
    except Exception:
        info["shm"] = SEG_DIR
    return info


def versions(with_ray):
    v = {"Python": platform.python_version(), "numpy": np.__version__,
         "pyarrow": pa.__version__}
    for pkg in ("shmarrow", "matplotlib"):
        try:
            v[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            v[pkg] = "?"
    if with_ray:
        try:
            v["ray"] = importlib.metadata.version("ray")
        except importlib.metadata.PackageNotFoundError:
            v["ray"] = "not installed"
    for cmd, key in (([CLI_EXE, "--version"], "shmarrow CLI"), (["rustc", "--version"], "rustc")):
        try:
            v[key] = subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
        except OSError:
            v[key] = "?"
    return v


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def fmt(x, digits=None):
    if x is None:
        return "–"
    if digits is None:
        digits = 3 if abs(x) < 1 else 2 if abs(x) < 10 else 1 if abs(x) < 1000 else 0
    return f"{x:,.{digits}f}"


def verdict(ok):
    return "PASS" if ok else "MISS"


def mb(b):
    return f"{b / MB:,.0f}" if b else "–"


class Report:
    def __init__(self):
        self.lines = []

    def __call__(self, s=""):
        self.lines.append(s)
        print(s)

    def table(self, header, rows, align=None):
        self("| " + " | ".join(header) + " |")
        self("|" + "|".join(align or (["---"] + ["---:"] * (len(header) - 1))) + "|")
        for r in rows:
            self("| " + " | ".join(r) + " |")
        self()


def time_table(rep, rows, metric, ref_key, unit="ms"):
    """median/min/max of ``metric`` per contender and ratio to the reference contender."""
    ref = next((r for r in rows if r["key"] == ref_key and r.get(metric)), None)
    out = []
    for r in rows:
        m = r.get(metric)
        if not m:
            out.append([r["label"], "–", "–", "–", "–", "–",
                        (r.get("error") or "n/a")])
            continue
        ratio = m["median"] / ref[metric]["median"] if ref else None
        out.append([r["label"], fmt(m["median"]), fmt(m["min"]), fmt(m["max"]), str(m["n"]),
                    (fmt(ratio, 2) + "×") if ratio else "–", r["includes"]])
    rep.table([r"contender", f"median {unit}", f"min {unit}", f"max {unit}", "n",
               "ratio to shmarrow", "what the time includes"], out,
              ["---", "---:", "---:", "---:", "---:", "---:", "---"])
    winner(rep, rows, metric)


def winner(rep, rows, metric, higher_better=False):
    ok = [r for r in rows if r.get(metric)]
    if not ok:
        return None
    key = (lambda r: -r[metric]["median"]) if higher_better else (lambda r: r[metric]["median"])
    best = min(ok, key=key)
    if best["family"] in ("shmarrow", "rust", "cli"):
        rep(f"Fastest: **{best['label']}**.")
    else:
        rep(f"Fastest: **{best['label']}** — a contender other than shmarrow wins this case.")
    rep()
    return best


def median_of(rows, key, metric):
    r = next((r for r in rows if r["key"] == key and r.get(metric)), None)
    return r[metric]["median"] if r else None


# =============================================================================================

def main() -> int:
    global CTX, RUST_EXE, RAY_ADDRESS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, shorter stream")
    ap.add_argument("--with-ray", action="store_true", help="add Ray's object store")
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "bench"))
    ap.add_argument("--rust-exe", default=None, help="the compare_rust bench binary")
    ap.add_argument("--replot", default=None, metavar="RESULTS_JSON",
                    help="only redraw results.png from a results.json of an earlier run")
    ap.add_argument("--only", default="", help="comma-separated subset of the cases, for "
                    "development: limits,held,inplace,281,282,attach,stream")
    args = ap.parse_args()
    quick = args.quick or os.environ.get("SHMARROW_BENCH_QUICK", "") not in ("", "0")

    def _raise(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise)

    if args.replot:
        with open(args.replot) as f:
            saved = json.load(f)
        res = saved["res"]
        for case in ("inplace", "281", "282", "attach"):
            res[case] = {int(k): v for k, v in res[case].items()}
        plot(res, saved["P"], os.path.join(args.out_dir, "results.png"), saved["quick"],
             saved["with_ray"])
        return 0
    CTX = mp.get_context(START_METHOD)
    CTX.set_forkserver_preload(["numpy", "pyarrow", "shmarrow"])
    RUST_EXE = args.rust_exe or find_rust_exe()
    have_cli = os.access(CLI_EXE, os.X_OK)
    ray_note = None
    with_ray = False
    if args.with_ray:
        try:
            import ray

            ctx = ray.init(num_cpus=os.cpu_count(), object_store_memory=3 * GIB,
                           include_dashboard=False, logging_level="ERROR",
                           log_to_driver=False)
            RAY_ADDRESS = ctx.address_info["gcs_address"]
            with_ray = True
        except Exception as exc:
            ray_note = f"Ray requested but not usable here: {exc}"
            print(ray_note, file=sys.stderr)

    if quick:
        P = dict(warm=2, reps=5, inplace_sizes=[MIB, HANDOFF_BYTES], inplace_big=[],
                 sizes_281=[MIB, 16 * MIB], sizes_282=[2 * MIB, 16 * MIB],
                 w28=1, r28=5, attach=[MIB, 100 * MIB], aw=3, ar=11,
                 stream=3.0, stream_warm=0.5, lim_read=256 * MIB, lim_rep=5)
    else:
        P = dict(warm=2, reps=11, inplace_sizes=[MIB, HANDOFF_BYTES], inplace_big=[GIB],
                 sizes_281=[MIB, 128 * MIB], sizes_282=[2 * MIB, 128 * MIB],
                 w28=1, r28=5, attach=[MIB, 100 * MIB, GIB], aw=3, ar=21,
                 stream=10.0, stream_warm=1.0, lim_read=GIB, lim_rep=7)
    big_n = max(P["sizes_281"])

    t_start = time.time()
    load0 = loadavg()
    res = {"limits": {}, "idle_rss": 0, "held": [], "inplace": {}, "281": {}, "282": {},
           "attach": {}, "stream": []}
    only = set(filter(None, args.only.split(",")))

    def want(case):
        return not only or case in only

    held_kinds = ["queue", "pipe", "shm", "shmfresh", "array", "ipcfile", "shmarrow"]
    if with_ray:
        held_kinds.insert(6, "ray")
    inplace_kinds = ["shm", "shmfresh", "array", "shmarrow-alloc"]
    rust = RUST_EXE is not None
    try:
        print(f"# bench/compare ({'quick' if quick else 'full'}), pid {os.getpid()}")
        if want("limits"):
            print("physical limits ...")
            res["limits"] = case_limits(P["lim_read"], HANDOFF_BYTES, P["lim_rep"])
        print("idle process baseline ...")
        idle = Proc(idle_main, name="idle")
        res["idle_rss"] = idle.recv()["rss"]
        idle.end()
        if want("held"):
            print("hand-off, already held ...")
            res["held"] = case_handoff("held", HANDOFF_BYTES, held_kinds, rust, P["warm"],
                                       P["reps"], "held")
        if want("inplace"):
            for size in P["inplace_sizes"]:
                print(f"hand-off, built in place, {human(size)} ...")
                res["inplace"][size] = case_handoff("inplace", size, inplace_kinds, rust,
                                                    P["warm"], P["reps"], f"ip{size}")
            for size in P["inplace_big"]:
                print(f"hand-off, built in place, {human(size)} (shmarrow only) ...")
                res["inplace"][size] = case_handoff("inplace", size, ["shmarrow-alloc"], rust,
                                                    P["warm"], P["reps"], f"ip{size}")
        if want("281"):
            for n in P["sizes_281"]:
                print(f"28.1 square in place, {elements(n)} float64 ...")
                res["281"][n] = case_28("square", n, P["w28"], P["r28"], f"sq{n}", with_ray)
        if want("282"):
            for n in P["sizes_282"]:
                print(f"28.2 mean/std/max per worker, {elements(n)} float64 ...")
                res["282"][n] = case_28("stats", n, P["w28"], P["r28"], f"st{n}", with_ray)
        if want("attach"):
            print("attach ...")
            res["attach"] = case_attach(P["attach"], P["aw"], P["ar"], with_ray)
        if want("stream"):
            print(f"stream: 100 MB arrays to 2 consumers for {P['stream']:.0f} s each ...")
            res["stream"] = case_stream(held_kinds, rust, HANDOFF_BYTES, P["stream"],
                                        P["stream_warm"], "stream")
    finally:
        end_all()
        if with_ray:
            try:
                import ray

                ray.shutdown()
            except Exception:
                pass
        cleanup_files()
    elapsed = time.time() - t_start
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "results.json"), "w") as f:
        json.dump({"res": res, "P": P, "quick": quick, "with_ray": with_ray}, f)
    rep = write_report(res, P, quick, with_ray, ray_note, rust, have_cli, load0, elapsed,
                       big_n)
    os.makedirs(args.out_dir, exist_ok=True)
    md = os.path.join(args.out_dir, "RESULTS.md")
    with open(md, "w") as f:
        f.write("\n".join(rep.lines) + "\n")
    png = os.path.join(args.out_dir, "results.png")
    plot(res, P, png, quick, with_ray)
    print(f"\nwrote {md} and {png} ({elapsed:.0f} s)")
    return 0


def find_rust_exe():
    try:
        out = subprocess.run(
            ["cargo", "bench", "--bench", "compare_rust", "--no-run", "--message-format=json"],
            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"warning: no Rust helper ({exc}); the Rust-API contender is skipped",
              file=sys.stderr)
        return None
    for line in out.splitlines():
        try:
            m = json.loads(line)
        except ValueError:
            continue
        if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == \
                "compare_rust" and m.get("executable"):
            return m["executable"]
    return None


# =============================================================================================

def write_report(res, P, quick, with_ray, ray_note, rust, have_cli, load0, elapsed, big_n):
    rep = Report()
    m = machine()
    v = versions(with_ray)
    rep("# shmarrow side by side")
    rep()
    rep(f"Written by `bench/compare{' --quick' if quick else ''}"
        f"{' --with-ray' if with_ray else ''}` on {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; "
        f"the run took {elapsed:.0f} s. Every figure below was measured by that run; rerun it "
        "to replace them.")
    rep()
    rep(f"- **Machine**: {m['cpu']}, {m['nproc']} cores, {m['mem']} memory, kernel "
        f"{m['kernel']}; {m['shm']}")
    rep("- **Versions**: " + ", ".join(f"{k} {val}" for k, val in v.items()))
    rep(f"- **Load average**: {load0} at start, {loadavg()} at end (other jobs on the machine "
        "slow every contender of a round alike: contenders alternate, order rotated every "
        "round).")
    rep(f"- **Processes**: `multiprocessing` start method `{START_METHOD}` (numpy, pyarrow, "
        "shmarrow preloaded in the fork server). All worker/producer/consumer processes are "
        "started before timing and reused for every round of a case; only the CLI's figures "
        "include starting processes. Cross-process times use `CLOCK_MONOTONIC`.")
    rep(f"- **Repeats**: hand-off {P['warm']} warm-up + {P['reps']} timed rounds; 28.1/28.2 "
        f"{P['w28']} + {P['r28']}; attach {P['aw']} + {P['ar']}. Figures are median, min, max "
        "over the timed rounds; *ratio to shmarrow* = contender's median / the shmarrow "
        "(Python package) median (above 1: shmarrow is faster).")
    if quick:
        rep("- **Quick mode**: 28.1/28.2 at 16M instead of 128M elements, no 1 GiB sizes, a "
            f"{P['stream']:.0f} s stream: the 128M targets are not judged.")
    if not with_ray:
        rep("- **Ray**: " + (ray_note or "not run (pass `--with-ray`)."))
    if not rust:
        rep("- **Rust API**: the helper could not be built; its rows are missing.")
    rep()

    # Targets first.
    rep("## Targets")
    rep()
    targets = []
    held = res["held"]
    q = median_of(held, "queue", "total_ms")
    s = median_of(held, "shmarrow", "total_ms")
    r = median_of(held, "ray", "total_ms")
    sr = median_of(held, "rust", "total_ms")
    lim = res["limits"]
    # The physical floor of a hand-off of an array the producer already holds: one copy into
    # shared memory plus the consumer's sum (memcpy + NumPy sum of 100 MB, measured this run).
    floor = None
    if "memcpy" in lim and "numpy_sum" in lim:
        floor = (lim["memcpy"]["median_s"] + lim["numpy_sum"]["median_s"] * HANDOFF_BYTES
                 / lim["numpy_sum"]["bytes"]) * 1e3
    for key, label, ms in (("shmarrow", "Python package", s), ("rust", "Rust API", sr)):
        if ms and floor:
            info = f" (Queue {fmt(q)} ms / {fmt(ms)} ms = {q / ms:.1f}×, for information)" if q else ""
            targets.append((f"Hand-off of 100 MB already held: within 10% of the one-copy floor "
                            f"(memcpy + NumPy sum) ({label})",
                            f"{fmt(ms)} ms / floor {fmt(floor)} ms = {ms / floor:.2f}{info}",
                            verdict(ms <= TARGET_FLOOR_RATIO * floor)))
    if s and r:
        targets.append(("Hand-off of 100 MB already held: no slower than Ray put + get",
                        f"shmarrow {fmt(s)} ms / Ray {fmt(r)} ms = {s / r:.2f}",
                        verdict(s / r <= TARGET_RAY_RATIO)))
    elif s:
        targets.append(("Hand-off of 100 MB already held: no slower than Ray put + get",
                        "Ray not run", "not judged"))
    for key, label in (("shmarrow-alloc", "Python package"), ("rust", "Rust API")):
        per = []
        for size, rows in sorted(res["inplace"].items()):
            row = next((x for x in rows if x["key"] == key and x.get("ready_ms")), None)
            if row:
                per.append((size, row["ready_ms"]["median"]))
        if per:
            ok = all(ms < TARGET_INPLACE_MS for _, ms in per)
            spread = max(ms for _, ms in per) / min(ms for _, ms in per)
            targets.append((f"Built in place: publish + attach < 1 ms, independent of size "
                            f"({label})", ", ".join(f"{human(sz)} {fmt(ms)} ms" for sz, ms in per)
                            + f" (largest/smallest {spread:.1f}×)", verdict(ok)))
    for case, title in (("281", "28.1 square in place"), ("282", "28.2 mean/std/max")):
        rows = res[case].get(big_n)
        if not rows:
            continue
        lec = median_of(rows, "shm", "ms")
        for r_ in rows:
            if r_["family"] in ("shmarrow", "rust", "cli") and r_.get("ms") and lec:
                ratio = lec / r_["ms"]["median"]
                targets.append((f"{title} at {elements(big_n)}: {r_['label']} faster than the "
                                "lecture's shared_memory + NumPy",
                                f"lecture {fmt(lec)} ms / {fmt(r_['ms']['median'])} ms = "
                                f"{ratio:.2f}×",
                                "not judged (quick)" if quick else verdict(ratio > 1.0)))
    for key in ("shmarrow", "rust"):
        row = next((x for x in res["stream"] if x["key"] == key and "rate" in x), None)
        if row:
            targets.append((f"Stream: ≥ 30 arrays/s of 100 MB to 2 consumers ({row['label']})",
                            f"{row['rate']:.1f} arrays/s", verdict(row["rate"] >= TARGET_STREAM_RATE)))
    rep.table(["target", "measured", "verdict"], [list(t) for t in targets],
              ["---", "---", "---"])
    if q and s and floor:
        qr = median_of(held, "queue", "ready_ms")
        sr_ = median_of(held, "shmarrow", "ready_ms")
        rep(f"On the floor target: a hand-off of an array the producer already holds copies it "
            f"once at least, and the consumer then reads it; this run measured memcpy + NumPy "
            f"sum of 100 MB at {floor:.1f} ms, so against this run's Queue ({q:.0f} ms) no "
            f"single-copy hand-off can exceed {q / floor:.1f}×. Until the consumer holds the "
            f"data (before its sum): Queue {fmt(qr)} ms / shmarrow {fmt(sr_)} ms = "
            f"{qr / sr_:.1f}×.")
        rep()

    # Physical limits.
    rep("## Physical limits (this run)")
    rep()
    lim = res["limits"]
    rows = []
    names = {
        "read_1thread": "read bandwidth, 1 thread (Rust, sum with 8 accumulators)",
        "read_all_threads": f"read bandwidth, all {lim.get('threads', '?')} threads (Rust)",
        "numpy_sum": "NumPy `a.sum()`, 1 thread (what the Python consumers use)",
        "memcpy": "memcpy, resident → resident (Rust `copy_from_slice`)",
        "numpy_copyto": "NumPy `np.copyto`, resident → resident",
        "write_faulted": "write (fill) memory already faulted in (Rust)",
        "first_touch_ftruncate": "first touch of fresh shared memory: new /dev/shm file "
                                 "(`ftruncate`), map, write every byte, unmap",
        "first_touch_fallocate": "the same with `posix_fallocate` first (as shmarrow reserves "
                                 "segments and channels)",
    }
    for key, label in names.items():
        x = lim.get(key)
        if not x:
            continue
        rows.append([label, human(x["bytes"]), fmt(x["median_s"] * 1e3), fmt(x["min_s"] * 1e3),
                     fmt(x["max_s"] * 1e3), fmt(x["bytes"] / x["median_s"] / 1e9, 2)])
    rep.table(["what", "bytes", "median ms", "min ms", "max ms", "GB/s (median)"], rows)
    if "first_touch_ftruncate" in lim and "write_faulted" in lim:
        ft = lim["first_touch_ftruncate"]["median_s"]
        wf = lim["write_faulted"]["median_s"]
        rep(f"First-touching 100 MB of fresh shared memory costs {ft * 1e3:.1f} ms against "
            f"{wf * 1e3:.1f} ms for writing the same bytes into memory already faulted in "
            f"({ft / wf:.1f}×): a hand-off that allocates fresh pages every time pays this.")
        rep()
    # Lower bound of a copying hand-off.
    if "memcpy" in lim and "numpy_sum" in lim:
        lb = (lim["memcpy"]["median_s"] + lim["numpy_sum"]["median_s"] *
              HANDOFF_BYTES / lim["numpy_sum"]["bytes"]) * 1e3
        rep(f"Floor of a hand-off that copies 100 MB once and sums it with NumPy: memcpy + "
            f"NumPy sum ≈ {lb:.1f} ms on this machine.")
        rep()

    rep("## Hand-off of one 100 MB float64 array, already held by the producer")
    rep()
    rep("A producer process holds a resident 100 MB array (`np.ones`); a consumer process sums "
        "it. Timed: from just before the producer starts sending to the consumer's end of "
        "`sum` (consumer's clock, same `CLOCK_MONOTONIC`), one array at a time (the next round "
        "starts after the consumer reported), warm steady state: everything that can be "
        "created once (queues, pipes, blocks, channel) is created before the warm-up rounds. "
        "*ready* = until the consumer holds the data, before summing.")
    rep()
    time_table(rep, held, "total_ms", "shmarrow")
    rows = [[r["label"], fmt(r["ready_ms"]["median"]), fmt(r["total_ms"]["median"]),
             "yes" if r.get("sum_ok") else "NO"] for r in held if r.get("total_ms")]
    rep.table(["contender", "ready ms (median)", "ready + sum ms (median)", "sum correct"], rows)

    rep("## Hand-off of an array built in place in shared memory")
    rep()
    rep("The producer allocates, fills the array in place (untimed: that is producing the "
        "data, not handing it off), then hands it off. Timed: from just before publishing (or "
        "notifying, for contenders without a publish step) to the consumer holding the data "
        "(*publish + attach*), and to the end of its sum. Queue, Pipe, pyarrow IPC and Ray "
        "cannot build an array in place in memory another process reads, so they are absent. "
        "For the Python package, `publish()` renames the file; the producer's writable view "
        "(and with it the mapping) is dropped after the round, untimed. The Rust "
        "`Allocation::publish` unmaps the writer's mapping inside the call, so its publish "
        "figure includes that `munmap`.")
    rep()
    for size, rows in sorted(res["inplace"].items()):
        rep(f"### {human(size)}")
        rep()
        time_table(rep, rows, "ready_ms", "shmarrow-alloc")
        tr = [[r["label"], fmt(r["publish_ms"]["median"]) if r.get("publish_ms") else "–",
               fmt(r["ready_ms"]["median"]), fmt(r["total_ms"]["median"]),
               "yes" if r.get("sum_ok") else "NO"] for r in rows if r.get("total_ms")]
        rep.table(["contender", "publish ms (median)", "publish + attach ms (median)",
                   "… + sum ms (median)", "sum correct"], tr)
    pubs = {}
    for size, rows in sorted(res["inplace"].items()):
        for r in rows:
            if r["key"] in ("rust", "shmarrow-alloc") and r.get("publish_ms"):
                pubs.setdefault(r["label"], []).append(f"{human(size)} "
                                                       f"{fmt(r['publish_ms']['median'])} ms")
    if pubs:
        rep("Publish step alone (median), by size: " + "; ".join(
            f"{label}: {', '.join(v)}" for label, v in pubs.items()) + ".")
        rep()

    for case, title, what in (
        ("281", "Example 28.1: in-place squaring by 4 workers",
         "One float64 array in shared memory (1.0 everywhere, so squaring does the same work "
         "every round); 4 workers square disjoint quarters in place; timed from the "
         "coordinator sending the tasks to all 4 done. pyarrow IPC files and Ray objects are "
         "immutable, so they cannot do this; the shmarrow Python package has no per-worker "
         "writable attach (see the library notes), so it runs as one call with 4 threads."),
        ("282", "Example 28.2: mean/std/max per worker, 4 workers attaching by name",
         "x[i] = 1 + (i mod 1 000 003)/1000; each of 4 workers computes mean, std, max of its "
         "quarter; the coordinator collects the 4 rows and merges them. Timed from sending the "
         "tasks to having the merged result."),
    ):
        rep(f"## {title}")
        rep()
        rep(what)
        rep()
        for n, rows in sorted(res[case].items()):
            rep(f"### {elements(n)} float64 ({human(n * 8)})")
            rep()
            time_table(rep, rows, "ms", "shmarrow")
            if case == "282":
                bad = [r["label"] for r in rows if r.get("ms") and not r.get("agrees")]
                rep("Merged results agree with NumPy on the whole array (mean to 1e-9, max "
                    "exactly): " + ("all contenders." if not bad else "NOT for " + ", ".join(bad)))
                rep()

    rep("## Attach time")
    rep()
    rep("One float64 column of the given size, created once; timed in one process: attaching "
        "by name or path and dropping the result (so unmapping is counted), alternating "
        "contenders, cyclic GC off. Queue, Pipe and mp.Array have no attach (data is sent, or "
        "inherited at process start); the CLI has no attach on its own.")
    rep()
    for size, rows in sorted(res["attach"].items()):
        rep(f"### {human(size)}")
        rep()
        time_table(rep, rows, "us", "shmarrow", unit="µs")

    rep("## Stream: a producer emitting 100 MB arrays to 2 consumers")
    rep()
    rep(f"The producer sends the same resident 100 MB array over and over for "
        f"{P['stream_warm']:.1f} s of warm-up + {P['stream']:.0f} s measured, at most 4 arrays "
        "in flight (4 slots/blocks/files, or queues of 2 per consumer); both consumers receive "
        "every array and sum it. Rate = arrays finished by **both** consumers inside the "
        "measured window, per second. Peak RSS (`VmHWM`) counts shared pages a process "
        f"touched; an idle process with numpy, pyarrow and shmarrow imported: "
        f"{mb(res['idle_rss'])} MB.")
    rep()
    srows = res["stream"]
    ref = next((x for x in srows if x["key"] == "shmarrow" and "rate" in x), None)
    out = []
    for x in srows:
        if "rate" not in x:
            out.append([x["label"], "–", "–", "–", "–", "–", x.get("error", "")])
            continue
        ratio = ref["rate"] / x["rate"] if ref and x["rate"] else None
        out.append([x["label"], fmt(x["rate"], 1), "yes" if x["rate"] >= TARGET_STREAM_RATE
                    else "no", (fmt(ratio, 2) + "×") if ratio else "–",
                    mb(x.get("producer_rss")),
                    ", ".join(mb(c) for c in (x.get("consumer_rss") or [])), ""])
    rep.table(["contender", "arrays/s", "≥ 30/s", "shmarrow rate / this rate",
               "producer peak RSS MB", "consumers' peak RSS MB", "note"], out,
              ["---", "---:", "---", "---:", "---:", "---:", "---"])
    best = max((x for x in srows if "rate" in x), key=lambda x: x["rate"], default=None)
    if best:
        rep(f"Highest rate: **{best['label']}**"
            + ("." if best["family"] in ("shmarrow", "rust") else
               " — a contender other than shmarrow wins this case."))
        rep()

    rep("## Peak memory (RSS) of the hand-off")
    rep()
    rep(f"`VmHWM` of each process over the whole case (warm-up included), MB; it counts "
        f"shared pages the process touched, so a shared segment shows up in both. Baseline, an "
        f"idle process with numpy, pyarrow and shmarrow imported: {mb(res['idle_rss'])} MB. The "
        f"producer of the held case holds its 100 MB array.")
    rep()
    out = []
    for label, rows in (("already held", held),
                        ("built in place, 100 MB", res["inplace"].get(HANDOFF_BYTES, []))):
        for x in rows:
            if x.get("producer_rss"):
                out.append([label, x["label"], mb(x["producer_rss"]),
                            ", ".join(mb(c) for c in x.get("consumer_rss") or [])])
    rep.table(["case", "contender", "producer MB", "consumer MB"], out,
              ["---", "---", "---:", "---:"])

    rep("## Contenders")
    rep()
    rep("- **multiprocessing.Queue**: pickle; the array goes through the queue's pipe.")
    rep("- **multiprocessing.Pipe**: `send_bytes` of the array's buffer, `recv_bytes_into` a "
        "buffer the consumer allocated once.")
    rep("- **shared_memory + NumPy** (the lecture's approach): `multiprocessing.shared_memory` "
        "blocks viewed as NumPy arrays; in the hand-off both the literal pattern (a new block "
        "each time) and a recycled block are run.")
    rep("- **multiprocessing.Array + frombuffer**: `mp.Array('d', n)`, inherited by the "
        "processes at start, viewed with `np.frombuffer(a.get_obj())`.")
    rep("- **pyarrow IPC file on /dev/shm**: `pa.ipc.new_file` to write, `pa.memory_map` + "
        "`open_file().read_all()` to read (zero-copy), no shmarrow involved.")
    rep("- **Ray**: the object store (`ray.put`, ObjectRefs resolved zero-copy in actors or "
        "tasks); only with `--with-ray`.")
    rep("- **shmarrow (Python)**: the package in `.venv` (the Rust library through PyO3).")
    rep("- **shmarrow (Rust API)**: `bench/compare_rust.rs`, driven round by round by "
        "`bench/compare.py` (threads for 28.1/28.2, a child process as consumer in the "
        "hand-off and stream).")
    rep("- **shmarrow (CLI)**: `target/release/shmarrow map|reduce --processes 4` as a "
        "subprocess (28.1, 28.2).")
    rep()
    return rep


# =============================================================================================

def plot(res, P, path, quick, with_ray):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    COLORS = {"shmarrow": "#1f77b4", "rust": "#0b3d91", "cli": "#6baed6", "other": "#bbbbbb"}

    def color(row):
        return COLORS.get(row["family"], "#bbbbbb")

    import matplotlib.ticker  # noqa: F401  (used through matplotlib.ticker)

    fig, axes = plt.subplots(4, 2, figsize=(17, 24))
    fig.suptitle(f"shmarrow side by side ({'quick' if quick else 'full'} run; medians, "
                 "whiskers = min..max; dark/blue = shmarrow)", fontsize=15)

    def barh(ax, rows, metric, title, unit, log=True, target=None, target_label=None,
             scale=1.0):
        rows = [r for r in rows if r.get(metric)]
        labels = [r["label"] for r in rows]
        med = [r[metric]["median"] * scale for r in rows]
        lo = [r[metric]["min"] * scale for r in rows]
        hi = [r[metric]["max"] * scale for r in rows]
        y = np.arange(len(rows))
        ax.barh(y, med, color=[color(r) for r in rows],
                xerr=[np.subtract(med, lo), np.subtract(hi, med)], capsize=3,
                error_kw={"elinewidth": 0.8, "ecolor": "#444444"})
        ax.set_yticks(y)
        ax.set_yticklabels(labels, fontsize=9)
        ax.invert_yaxis()
        if log:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(unit)
        ax.set_title(title, fontsize=11)
        for yi, m in zip(y, med):
            ax.text(m, yi, f" {fmt(m)}", va="center", fontsize=8)
        if target:
            ax.axvline(target, color="#d62728", ls="--", lw=1)
            if target_label:
                ax.text(target, len(rows) - 0.45, f" {target_label}", color="#d62728",
                        fontsize=8, ha="left", va="bottom")
        ax.grid(axis="x", which="both", alpha=0.25)

    barh(axes[0, 0], res["held"], "total_ms",
         "Hand-off of 100 MB already held (send → consumer's sum done)", "ms (log)")
    ip = res["inplace"].get(HANDOFF_BYTES, [])
    barh(axes[0, 1], ip, "ready_ms",
         "Hand-off of 100 MB built in place: publish + attach (fill untimed)", "ms (log)",
         target=TARGET_INPLACE_MS, target_label="1 ms target")

    def grouped(ax, groups, metric, title, unit, group_label):
        """groups: {label: rows}; one bar per contender per group."""
        keys = []
        for rows in groups.values():
            for r in rows:
                if r.get(metric) and r["label"] not in [k[0] for k in keys]:
                    keys.append((r["label"], r))
        gl = list(groups)
        width = 0.8 / max(1, len(keys))
        for i, (label, r0) in enumerate(keys):
            vals = []
            for g in gl:
                r = next((x for x in groups[g] if x["label"] == label and x.get(metric)), None)
                vals.append(r[metric]["median"] if r else np.nan)
            x = np.arange(len(gl)) + (i - (len(keys) - 1) / 2) * width
            c = color(r0)
            hatch = None
            if r0["family"] == "other":
                c = plt.cm.Greys(0.25 + 0.6 * i / max(1, len(keys)))
            ax.bar(x, vals, width, color=c, label=label, edgecolor="white", hatch=hatch)
        ax.set_xticks(np.arange(len(gl)))
        ax.set_xticklabels([f"{group_label} {g}" for g in gl])
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_ylabel(unit)
        ax.set_title(title, fontsize=11)
        ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.07), ncol=2,
                  frameon=False)
        ax.grid(axis="y", which="both", alpha=0.25)

    grouped(axes[1, 0], {elements(n): rows for n, rows in sorted(res["281"].items())}, "ms",
            "Example 28.1: square in place, 4 workers", "ms (log)", "n =")
    grouped(axes[1, 1], {elements(n): rows for n, rows in sorted(res["282"].items())}, "ms",
            "Example 28.2: mean/std/max per worker, 4 workers", "ms (log)", "n =")
    grouped(axes[2, 0], {human(s): rows for s, rows in sorted(res["attach"].items())}, "us",
            "Attach time (attach + drop)", "µs (log)", "")

    ax = axes[2, 1]
    srows = [x for x in res["stream"] if "rate" in x]
    y = np.arange(len(srows))
    ax.barh(y, [x["rate"] for x in srows], color=[color(x) for x in srows])
    ax.set_yticks(y)
    ax.set_yticklabels([x["label"] for x in srows], fontsize=9)
    ax.invert_yaxis()
    ax.axvline(TARGET_STREAM_RATE, color="#d62728", ls="--", lw=1)
    ax.text(TARGET_STREAM_RATE, len(srows) - 0.45, " 30/s target", color="#d62728",
            fontsize=8, va="bottom")
    for yi, x in zip(y, srows):
        ax.text(x["rate"], yi, f" {x['rate']:.1f}", va="center", fontsize=8)
    ax.set_xlabel("arrays per second finished by both consumers (higher is better)")
    ax.set_title(f"Stream: 100 MB arrays to 2 consumers for {P['stream']:.0f} s", fontsize=11)
    ax.grid(axis="x", alpha=0.25)

    ax = axes[3, 0]
    rows = [x for x in res["held"] if x.get("producer_rss")]
    srow = {x["label"]: x for x in res["stream"] if x.get("producer_rss")}
    labels = [x["label"] for x in rows]
    y = np.arange(len(labels))
    h = 0.2
    series = [
        ("hand-off: producer", [x["producer_rss"] / MB for x in rows], "#9ecae1"),
        ("hand-off: consumer", [max(x["consumer_rss"] or [0]) / MB for x in rows], "#3182bd"),
        ("stream: producer", [srow[l]["producer_rss"] / MB if l in srow else np.nan
                              for l in labels], "#fdae6b"),
        ("stream: largest consumer", [max(srow[l]["consumer_rss"] or [0]) / MB if l in srow
                                      else np.nan for l in labels], "#e6550d"),
    ]
    for i, (name, vals, c) in enumerate(series):
        ax.barh(y + (i - 1.5) * h, vals, h, color=c, label=name)
    ax.axvline(res["idle_rss"] / MB, color="#555555", ls=":", lw=1)
    ax.text(res["idle_rss"] / MB, -0.6, " idle process", fontsize=8)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=9)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("peak RSS, MB (log; VmHWM, shared pages included)")
    ax.set_title("Peak memory of producer and consumers (100 MB arrays)", fontsize=11)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2,
              frameon=False)
    ax.grid(axis="x", alpha=0.25)

    ax = axes[3, 1]
    lim = res["limits"]
    names = [("read_1thread", "read, 1 thread"), ("read_all_threads", "read, all threads"),
             ("numpy_sum", "NumPy sum"), ("memcpy", "memcpy"), ("numpy_copyto", "np.copyto"),
             ("write_faulted", "write, faulted"),
             ("first_touch_ftruncate", "first touch (fresh shm)"),
             ("first_touch_fallocate", "first touch (fallocate'd)")]
    names = [(k, l) for k, l in names if k in lim]
    vals = [lim[k]["bytes"] / lim[k]["median_s"] / 1e9 for k, _ in names]
    y = np.arange(len(names))
    ax.barh(y, vals, color=["#31a354" if "first" not in k else "#d62728" for k, _ in names])
    ax.set_yticks(y)
    ax.set_yticklabels([l for _, l in names], fontsize=9)
    ax.invert_yaxis()
    for yi, v_ in zip(y, vals):
        ax.text(v_, yi, f" {v_:.1f}", va="center", fontsize=8)
    ax.set_xlabel("GB/s (median)")
    ax.set_title("Physical limits measured in the same run", fontsize=11)
    ax.grid(axis="x", alpha=0.25)

    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as exc:
        print(f"interrupted ({exc}); cleaned up", file=sys.stderr)
        end_all()
        cleanup_files()
        sys.exit(130)
