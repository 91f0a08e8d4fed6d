"""The nine ways of handing a float64 array to other processes (Queue, Pipe, shared_memory
rings, Array, IPC files, shmarrow channels and allocations, Ray), and the producer/consumer
bodies that drive them."""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection
import os
from multiprocessing import shared_memory

import numpy as np
import pyarrow as pa

import shmarrow

from . import harness
from .harness import MIB, PREFIX, SEG_DIR, now, shm_attach, vmhwm

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
    cfg = {"links": [harness.CTX.Pipe() for _ in range(consumers)], "consumers": consumers}
    base = f"{PREFIX}-{tag}-{kind}"
    if kind == "queue":
        cfg["qs"] = [harness.CTX.Queue(maxsize=2) for _ in range(consumers)]
    elif kind == "pipe":
        cfg["pipes"] = [harness.CTX.Pipe(duplex=False) for _ in range(consumers)]
    elif kind == "shm":
        cfg["names"] = [f"{base}-{j}" for j in range(window)]
    elif kind == "shmfresh":
        cfg["prefix"] = base
    elif kind == "array":
        cfg["arrays"] = [harness.CTX.Array("d", nbytes // 8) for _ in range(window)]
    elif kind == "ipcfile":
        cfg["paths"] = [os.path.join(SEG_DIR, f"{base}-{j}.arrow") for j in range(window)]
    elif kind in ("shmarrow", "shmarrow-alloc"):
        cfg["name"] = base
        cfg["slots"] = window
    elif kind == "ray":
        cfg["ray_address"] = harness.RAY_ADDRESS
    return cfg


# =============================================================================================
# Contenders: objects with start(), round() -> sample dict, stop() -> extra dict.

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
