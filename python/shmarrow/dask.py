"""shmarrow inside Dask distributed: compute where the segments are, hand data between the
workers of one host through segments instead of TCP.

Install with ``pip install ./python[dask]``. Everything here uses public Dask hooks:

- :func:`segments`, :func:`reduce`, :func:`to_dataframe`: ``client.run`` and
  ``client.submit(..., workers=[...], allow_other_workers=False)`` (tasks restricted to the
  workers of the host that holds each segment, never moved);
- :func:`install`: a :class:`WorkerPlugin` and a :class:`NannyPlugin` registered with
  ``client.register_plugin``. In each worker (and the client) it overrides the per-type
  serializers of Dask's ``"dask"`` serialization family (``dask_serialize.register`` for
  ``pyarrow.Table``, ``pyarrow.RecordBatch`` and ``numpy.ndarray``; the ones Dask had are kept
  and called for everything else), which receive the ``context`` Dask passes to ``dumps``:
  ``context["recipient"]`` is the peer's handshake. The plugin adds this process's host token
  to the handshakes the worker sends when it connects (``worker.connection_args
  ["handshake_overrides"]``, the mechanism the scheduler itself uses for its own
  overrides). A worker fetching data from another worker is the connecting side, so the
  sender sees the receiver's token and uses a segment only when it equals its own; the
  scheduler, the client and other hosts send no token and always get Dask's own path.

The host token is ``boot id : device and inode of the segment directory : uid``: equal tokens
mean "same kernel, same directory, same user", whatever the IP addresses say.
"""

from __future__ import annotations

import inspect
import mmap
import os
import time
import uuid
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa

from . import _shmarrow
from ._api import _error, _reference_of, _resolve_dir, attach, create
from ._share import Shared
from ._shmarrow import InvalidColumn, SegmentExists, SegmentNotFound, ShmarrowError

try:
    import distributed
    from distributed.comm.addressing import get_address_host
    from distributed.diagnostics.plugin import NannyPlugin, WorkerPlugin
    from distributed.protocol.serialize import dask_deserialize, dask_serialize
except ImportError as exc:  # pragma: no cover - the extra is not installed
    raise ImportError(
        "shmarrow.dask needs Dask distributed: pip install 'shmarrow[dask]' "
        "(or dask[distributed,dataframe])"
    ) from exc

__all__ = [
    "segments", "reduce", "to_dataframe", "publish", "install", "sweep", "host_token",
    "transfer_counts", "AmbiguousSegment", "TRANSFER_PREFIX",
]

#: Segments handed from one worker to another are named ``dask-xfer-<sender>-<receiver>-<id>``
#: (each party as ``<pid>.<start time>``), so a sweeper can tell when either party is dead.
TRANSFER_PREFIX = "dask-xfer-"
#: The handshake key carrying the host token and the receiver's pid and start time.
HANDSHAKE_KEY = "shmarrow-host"
#: Default: data of at least this many bytes that lies in a segment is handed over by a link.
#: Writing other data into a segment is off unless ``install(write_threshold=...)`` asks for
#: it: in bench/dask.py it measured 0.9x to 1.3x Dask's own path, within the noise.
DEFAULT_THRESHOLD = 1 << 20
#: Default: a transfer segment whose two processes are alive is reclaimed after this long.
DEFAULT_TTL = 300.0


class AmbiguousSegment(ShmarrowError, ValueError):
    """Two hosts hold a segment of the same name: say which one with ``workers=``."""


# ---------------------------------------------------------------------------------------------
# Processes and hosts

def _start_time(pid: int) -> Optional[int]:
    """The start time (clock ticks after boot) of process ``pid``, or None if there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields resume after the last ')'.
    return int(stat[stat.rindex(b")") + 2:].split()[19])


def _me() -> str:
    return f"{os.getpid()}.{_start_time(os.getpid())}"


def _alive(party: str) -> bool:
    pid, _, start = party.partition(".")
    return pid.isdigit() and str(_start_time(int(pid))) == start


def host_token(dir: Optional[str] = None) -> str:
    """This process's host token: ``boot id : device and inode of the segment directory : uid``.

    Two processes with the same token can hand each other segments (same kernel, same
    directory, same user).
    """
    with open("/proc/sys/kernel/random/boot_id") as f:
        boot = f.read().strip()
    st = os.stat(_segment_dir(dir))
    return f"{boot}:{st.st_dev}:{st.st_ino}:{os.getuid()}"


def _segment_dir(dir: Optional[str] = None) -> str:
    return _resolve_dir("x", dir)


# ---------------------------------------------------------------------------------------------
# Where segments are, and computing there

def _describe() -> Dict[str, Any]:
    """Run on each worker: its token, directory and segment names."""
    directory = _segment_dir()
    names = sorted(e["name"] for e in _shmarrow.list(dir=directory) if not e["name"].startswith(TRANSFER_PREFIX))
    return {"token": host_token(), "dir": directory, "names": names}


def _hosts(client: Any) -> Dict[str, Dict[str, Any]]:
    """host label -> {"token", "dir", "workers", "names"}: one entry per segment directory
    (asked through one worker of each)."""
    tokens = client.run(host_token)
    by_token: Dict[str, List[str]] = {}
    for worker, token in sorted(tokens.items()):
        by_token.setdefault(token, []).append(worker)
    hosts: Dict[str, Dict[str, Any]] = {}
    ips = [get_address_host(ws[0]) for ws in by_token.values()]
    for token, workers in by_token.items():
        described = client.run(_describe, workers=workers[:1])[workers[0]]
        ip = get_address_host(workers[0])
        label = ip if ips.count(ip) == 1 else f"{ip}:{described['dir']}"
        hosts[label] = {**described, "token": token, "workers": workers}
    return hosts


def segments(client: Any) -> Dict[str, List[str]]:
    """Host -> segment names in that host's directory (``SHMARROW_DIR`` of its workers).

    Parameters
    ----------
    client : distributed.Client

    Returns
    -------
    dict
        Keyed by worker IP (``"IP:DIR"`` when workers of one IP use different directories),
        each directory asked once, through one of its workers.
    """
    return {host: info["names"] for host, info in _hosts(client).items()}


def _holders(hosts: Dict[str, Dict[str, Any]], names: Sequence[str]) -> List[Tuple[str, Dict[str, Any]]]:
    """The (host, info) holding each name; a clear error for names none or several hold."""
    if isinstance(names, str):
        raise TypeError("names must be a list of segment names, not one str")
    out = []
    for name in names:
        found = [(h, info) for h, info in hosts.items() if name in info["names"]]
        if not found:
            raise _error(SegmentNotFound, f"segment {name!r}: no host of this cluster holds it "
                         f"(hosts: {sorted(hosts)})", name)
        if len(found) > 1:
            raise _error(AmbiguousSegment, f"segment {name!r} is held by several hosts: "
                         f"{sorted(h for h, _ in found)}", name)
        out.append(found[0])
    return out


def _restricted(client: Any, info: Dict[str, Any], fn: Callable[..., Any], *args: Any) -> Any:
    return client.submit(fn, *args, workers=info["workers"], allow_other_workers=False, pure=False)


def _partials(name: str, columns: Optional[List[str]]) -> Tuple[str, Any]:
    """Run on the holding host: the chunk partials of ``name``, and where they were computed."""
    return host_token(), _shmarrow.reduce_partials(name, columns)


def reduce(
    client: Any,
    names: Sequence[str],
    columns: Optional[List[str]] = None,
    ops: Optional[List[str]] = None,
    ddof: int = 0,
) -> Dict[str, Dict[str, Any]]:
    """``shmarrow.reduce`` over several segments spread over the cluster's hosts.

    Each segment is reduced by a worker of the host that holds it (a task restricted to that
    host's workers); only its per-chunk partial statistics (about 100 bytes per 32 Ki rows)
    travel, and the client merges them in the order of ``names``.

    Guarantee: the result is bit for bit the result of ``shmarrow.reduce`` of one segment
    holding the batches of ``names``, in that order (chunks never span batches, and the
    partials are merged in the same left fold, by the same Rust code).

    Parameters
    ----------
    client : distributed.Client
    names : list of str
        Segment names; each must be held by exactly one host.
    columns, ops, ddof
        As for :func:`shmarrow.reduce`; default columns: the numeric columns of the first
        segment.

    Returns
    -------
    dict
        ``{column: {op: value}}``, as :func:`shmarrow.reduce`.

    Raises
    ------
    SegmentNotFound
        No host holds a name. AmbiguousSegment: several hosts do (also a ValueError).
    InvalidColumn, ValueError
        As for :func:`shmarrow.reduce` (raised by the worker, re-raised here).
    """
    holders = _holders(_hosts(client), names)
    if not names:
        raise ValueError("reduce needs at least one segment name")
    futures = [_restricted(client, info, _partials, name, columns) for name, (_, info) in zip(names, holders)]
    results = client.gather(futures)
    for name, (_, info), (token, _) in zip(names, holders, results):
        if token != info["token"]:  # the restriction did not hold: never merge such partials
            raise RuntimeError(f"segment {name!r} was reduced away from its host")
    found = [[c for c, _, _ in per_column] for _, per_column in results]
    for name, cols in zip(names, found):
        if cols != found[0]:
            raise _error(InvalidColumn, f"segment {name!r} has numeric columns {cols}, "
                         f"segment {names[0]!r} {found[0]}: name the columns", name, column=None)
    columns = found[0]
    merged: Dict[str, Dict[str, Any]] = {}
    for k, column in enumerate(columns):
        is_int = results[0][1][k][1]
        chunks = [p for _, per_column in results for p in per_column[k][2]]
        merged[column] = _shmarrow.merge_partials(column, is_int, chunks, ops, ddof=ddof)
    return merged


def _attach_frame(name: str) -> Any:
    import pandas as pd

    return attach(name).to_pandas(types_mapper=pd.ArrowDtype)


def to_dataframe(client: Any, names: Sequence[str]) -> Any:
    """A ``dask.dataframe.DataFrame`` with one partition per segment, each attached
    zero-copy by a worker of the host that holds it.

    Columns are Arrow-backed pandas dtypes (``pd.ArrowDtype``), so every column stays Arrow
    data in the shared mapping; each partition has its own ``RangeIndex``.

    Raises
    ------
    SegmentNotFound, AmbiguousSegment
        As for :func:`reduce`.
    """
    import dask.dataframe as dd

    holders = _holders(_hosts(client), names)
    futures = [_restricted(client, info, _attach_frame, name) for name, (_, info) in zip(names, holders)]
    meta = client.submit(_head, futures[0], pure=False).result() if futures else None
    return dd.from_delayed(futures, meta=meta, verify_meta=False)


def _head(frame: Any) -> Any:
    return frame.iloc[:0]


def _publish_part(part: Any, name: str) -> str:
    """Run on a worker: write one partition; returns this host's token (where it now is)."""
    data = part if isinstance(part, np.ndarray) else pa.Table.from_pandas(part, preserve_index=False)
    create(name, data, replace=False)
    return host_token()


def _remove_on(name: str, token: str) -> bool:
    """Run on every worker: remove ``name`` if this worker is on the host of ``token``."""
    return token == host_token() and bool(_shmarrow.remove(name))


def publish(collection: Any, prefix: str) -> List[str]:
    """Write each partition of a dask DataFrame (or block of a dask Array) into a segment on
    the host of the worker that computed it, named ``f"{prefix}-{i}"`` (blocks in row-major
    order). Persistent: remove them with :func:`shmarrow.remove` on their host.

    Uses the default client (``distributed.get_client()``).

    Returns
    -------
    list of str
        The segment names, in partition order.

    Raises
    ------
    TypeError
        ``collection`` is neither a dask DataFrame nor a dask Array.
    SegmentExists
        A host of the cluster already holds one of the names (checked before any work;
        nothing is replaced).
    Exception
        Whatever a partition's computation or write raised: the segments the other
        partitions wrote are removed before it is re-raised.
    """
    import dask.array as da
    import dask.dataframe as dd
    from dask.delayed import delayed

    parts: List[Any]
    blocks: Any = collection  # dask's collections are untyped
    if isinstance(collection, da.Array):
        parts = list(blocks.to_delayed().ravel())
    elif isinstance(collection, dd.DataFrame):
        parts = list(blocks.to_delayed())
    else:
        raise TypeError(f"publish takes a dask DataFrame or Array, not {type(collection).__name__!r}")
    names = [f"{prefix}-{i}" for i in range(len(parts))]
    for name in names:
        _shmarrow.path(name)  # an invalid name fails here, before any work
    client: Any = distributed.get_client()  # Client.compute is untyped
    taken = sorted({n for info in _hosts(client).values() for n in info["names"]} & set(names))
    if taken:
        raise _error(SegmentExists, f"publish: {taken} already held on this cluster "
                     "(publish replaces nothing)", taken[0])
    write: Any = delayed(_publish_part, pure=False)
    futures = client.compute([write(part, name) for part, name in zip(parts, names)])
    errors = [f.exception() for f in futures]  # waits for every partition
    if any(e is not None for e in errors):  # remove what the other partitions wrote, each on its host
        for name, future, error in zip(names, futures, errors):
            if error is None:
                client.run(_remove_on, name, future.result())
        raise next(e for e in errors if e is not None)
    return names


# ---------------------------------------------------------------------------------------------
# Same-host hand-offs

_COUNTS = {"linked": 0, "written": 0, "received": 0, "dask": 0}
_CONFIG: Dict[str, Any] = {"threshold": DEFAULT_THRESHOLD, "write_threshold": None, "token": None, "dir": None}
_ORIGINAL: Dict[type, Tuple[Callable[..., Any], Callable[..., Any]]] = {}


def transfer_counts() -> Dict[str, int]:
    """In this process: hand-offs sent through a link of an existing segment (``linked``),
    written once into a new segment (``written``), received from a segment (``received``),
    and objects of at least ``threshold`` bytes for a same-host receiver left to Dask's own
    path (``dask``: not in a segment and under ``write_threshold``, or the directory full)."""
    return dict(_COUNTS)


def _same_host(context: Optional[Dict[str, Any]]) -> Optional[str]:
    """The receiver (``pid.start``) if it shares this process's segment directory."""
    if not context or _CONFIG["token"] is None:
        return None
    peer = (context.get("recipient") or {}).get(HANDSHAKE_KEY)
    if not isinstance(peer, (list, tuple)) or len(peer) != 2 or peer[0] != _CONFIG["token"]:
        return None
    return str(peer[1])


def _segment_of_array(x: np.ndarray) -> Optional[Tuple[str, int, Tuple[int, int]]]:
    """(segment name, offset, identity) if ``x``'s memory lies in a mapping of a segment file
    of this process's directory, whose current version is the mapped one."""
    if not x.flags.c_contiguous:
        return None
    address = x.__array_interface__["data"][0]
    directory = _CONFIG["dir"]
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            if len(fields) < 6:
                continue
            lo, hi = (int(v, 16) for v in fields[0].split("-"))
            if not (lo <= address and address + x.nbytes <= hi):
                continue
            path = fields[5].rstrip("\n")
            if os.path.dirname(path) != directory:
                return None
            name = os.path.basename(path)
            try:
                st = os.stat(path, follow_symlinks=False)
            except OSError:
                return None
            if st.st_ino != int(fields[4]):
                return None  # replaced since it was mapped
            return name, address - lo + int(fields[2], 16), (st.st_dev, st.st_ino)
    return None


def _link(name: str, identity: Tuple[int, int], receiver: str) -> Optional[str]:
    """Hard-link version ``identity`` of segment ``name`` to a fresh transfer name."""
    xfer = f"{TRANSFER_PREFIX}{_me()}-{receiver}-{uuid.uuid4().hex[:12]}"
    directory = _CONFIG["dir"]
    try:
        os.link(os.path.join(directory, name), os.path.join(directory, xfer), follow_symlinks=False)
    except OSError:
        return None
    st = os.stat(os.path.join(directory, xfer), follow_symlinks=False)
    if (st.st_dev, st.st_ino) != tuple(identity):  # replaced meanwhile: not the data we hold
        _shmarrow.remove(xfer, dir=directory)
        return None
    return xfer


def _write(x: Any, receiver: str) -> Tuple[str, Tuple[int, int]]:
    xfer = f"{TRANSFER_PREFIX}{_me()}-{receiver}-{uuid.uuid4().hex[:12]}"
    created = create(xfer, x, replace=False, dir=_CONFIG["dir"])
    return xfer, tuple(created.identity)  # type: ignore[return-value]


def _linked(x: Any, receiver: str) -> Optional[Tuple[str, Tuple[int, int], Dict[str, Any]]]:
    """Hand over ``x`` by a link if it lies in a segment of this directory: (transfer name,
    identity, header fields)."""
    if isinstance(x, np.ndarray):
        found = _segment_of_array(x)
        if found is None:
            return None
        name, offset, identity = found
        header: Dict[str, Any] = {"dtype": x.dtype.str, "shape": list(x.shape), "offset": offset}
    else:
        reference = _reference_of(x) if isinstance(x, pa.Table) else None
        if reference is None or reference[1] != _CONFIG["dir"] or reference[2] is None:
            return None
        name, identity, header = reference[0], reference[2], {}
    xfer = _link(name, identity, receiver)
    return None if xfer is None else (xfer, identity, header)


def _dumps(kind: type) -> Callable[..., Any]:
    def dumps(x: Any, context: Optional[Dict[str, Any]] = None) -> Tuple[Dict[str, Any], List[Any]]:
        original = _ORIGINAL[kind][0]
        receiver = _same_host(context)
        nbytes = int(x.nbytes)
        if receiver is None or nbytes < _CONFIG["threshold"] or not _eligible(x):
            return _call(original, x, context)
        done = _linked(x, receiver)
        if done is not None:
            _COUNTS["linked"] += 1
        elif _CONFIG["write_threshold"] is not None and nbytes >= _CONFIG["write_threshold"] and _writable(x):
            try:
                done = (*_write(x, receiver), {})
            except (ShmarrowError, OSError):  # a full directory: Dask's path still works
                done = None
            if done is not None:
                _COUNTS["written"] += 1
        if done is None:
            _COUNTS["dask"] += 1
            return _call(original, x, context)
        xfer, identity, header = done
        return {"shmarrow": {**header, "name": xfer, "identity": list(identity)}}, []

    return dumps


def _writable(x: Any) -> bool:
    """Arrays whose segment gives a NumPy view back (integers, float32/64)."""
    if not isinstance(x, np.ndarray):
        return True
    return x.dtype.kind in "iu" or (x.dtype.kind == "f" and x.dtype.itemsize in (4, 8))


def _eligible(x: Any) -> bool:
    """Arrays of one plain fixed-width type (their dtype string names it exactly)."""
    return not isinstance(x, np.ndarray) or (x.dtype.kind in "biufcmM" and x.dtype.names is None)


def _call(fn: Callable[..., Any], x: Any, context: Optional[Dict[str, Any]]) -> Tuple[Dict[str, Any], List[Any]]:
    """Dask's own serializer of ``x`` (as Dask calls it: with the context if it takes one)."""
    takes_context = "context" in inspect.signature(fn).parameters
    frames: Tuple[Dict[str, Any], List[Any]] = fn(x, context=context) if takes_context else fn(x)
    return frames


def _loads(kind: type) -> Callable[..., Any]:
    def loads(header: Dict[str, Any], frames: List[Any]) -> Any:
        info = header.get("shmarrow")
        if info is None:
            return _ORIGINAL[kind][1](header, frames)
        name, identity = info["name"], (int(info["identity"][0]), int(info["identity"][1]))
        directory = _segment_dir()
        try:
            if "offset" in info:
                obj: Any = _map_array(name, directory, identity, info)
            elif kind is np.ndarray:
                obj = Shared(name, directory, identity).numpy()
            else:
                obj = Shared(name, directory, identity).table()
                if kind is pa.RecordBatch:
                    batches = obj.to_batches()
                    obj = batches[0] if len(batches) == 1 else obj.combine_chunks().to_batches()[0]
        finally:
            _shmarrow.remove(name, dir=directory)  # attached (or failed): the name goes now
        _COUNTS["received"] += 1
        return obj

    return loads


def _map_array(name: str, directory: str, identity: Tuple[int, int], info: Dict[str, Any]) -> np.ndarray:
    fd = os.open(os.path.join(directory, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != identity:
            raise _error(SegmentNotFound, f"transfer segment {name!r} is not the one sent", name)
        mapping = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    dtype = np.dtype(info["dtype"])
    shape = tuple(int(n) for n in info["shape"])
    count = int(np.prod(shape))
    offset = int(info["offset"])
    if offset < 0 or offset + count * dtype.itemsize > len(mapping):
        raise _error(SegmentNotFound, f"transfer segment {name!r} is smaller than the array sent", name)
    return np.frombuffer(mapping, dtype, count, offset).reshape(shape)


def _enable(threshold: int, write_threshold: Optional[int]) -> str:
    """Register the segment serializers in this process; returns its host token."""
    _CONFIG["threshold"] = int(threshold)
    _CONFIG["write_threshold"] = write_threshold
    _CONFIG["dir"] = _segment_dir()
    _CONFIG["token"] = host_token()
    serializers: Any = dask_serialize  # dask's Dispatch is untyped
    deserializers: Any = dask_deserialize
    for kind in (pa.Table, pa.RecordBatch, np.ndarray):
        if kind not in _ORIGINAL:
            _ORIGINAL[kind] = (serializers.dispatch(kind), deserializers.dispatch(kind))
            serializers.register(kind)(_dumps(kind))
            deserializers.register(kind)(_loads(kind))
    return str(_CONFIG["token"])


def _announce(connection_args: Dict[str, Any]) -> None:
    """Send this process's token and identity in the handshakes of the comms it opens."""
    connection_args["handshake_overrides"] = {
        **(connection_args.get("handshake_overrides") or {}),
        HANDSHAKE_KEY: [_CONFIG["token"], _me()],
    }


# ---------------------------------------------------------------------------------------------
# Lifecycle

def sweep(dir: Optional[str] = None, ttl: float = DEFAULT_TTL, own: bool = False) -> List[str]:
    """Remove transfer segments of ``dir`` whose sender or receiver is dead (pid and start
    time), older than ``ttl`` seconds, or (``own=True``) sent by or to this process.

    Returns
    -------
    list of str
        The names removed.
    """
    directory = _segment_dir(dir)
    me, now, removed = _me(), time.time(), []
    for entry in os.scandir(directory):
        if not entry.name.startswith(TRANSFER_PREFIX):
            continue
        parties = entry.name[len(TRANSFER_PREFIX):].split("-")[:2]
        try:
            age = now - entry.stat(follow_symlinks=False).st_ctime
        except OSError:
            continue
        if (len(parties) != 2 or not all(_alive(p) for p in parties) or age > ttl
                or (own and me in parties)):
            try:
                if _shmarrow.remove(entry.name, dir=directory):
                    removed.append(entry.name)
            except (ShmarrowError, OSError):  # another user's, or gone meanwhile: not ours to sweep
                continue
    return removed


class ShmarrowWorkerPlugin(WorkerPlugin):
    """Registers the segment serializers, announces the host token, and sweeps transfer
    segments at start, every ``interval`` seconds, and (its own) at close."""

    name = "shmarrow"

    def __init__(self, threshold: int, write_threshold: Optional[int], interval: float, ttl: float):
        self.threshold, self.write_threshold = threshold, write_threshold
        self.interval, self.ttl = interval, ttl
        self._callback: Any = None

    def setup(self, worker: Any) -> None:
        from tornado.ioloop import PeriodicCallback

        _enable(self.threshold, self.write_threshold)
        sweep(ttl=self.ttl)
        _announce(worker.connection_args)
        # Idle pooled connections to other workers were opened with the old handshake (no
        # token): close them, so the next fetch reconnects announcing this host.
        worker.rpc.collect()
        self._callback = PeriodicCallback(self._sweep, self.interval * 1000)
        self._callback.start()

    def _sweep(self) -> None:
        sweep(ttl=self.ttl)

    def teardown(self, worker: Any) -> None:
        if self._callback is not None:
            self._callback.stop()
        sweep(ttl=self.ttl, own=True)


class ShmarrowNannyPlugin(NannyPlugin):
    """Sweeps transfer segments of dead workers when the nanny starts (the restarted
    worker's own plugin sweeps again when it starts)."""

    name = "shmarrow-nanny"

    def __init__(self, ttl: float = DEFAULT_TTL):
        self.ttl = ttl

    def setup(self, nanny: Any) -> None:
        sweep(ttl=self.ttl)

    def teardown(self, nanny: Any) -> None:
        sweep(ttl=self.ttl)


def install(
    client: Any,
    threshold: int = DEFAULT_THRESHOLD,
    write_threshold: Optional[int] = None,
    interval: float = 10.0,
    ttl: float = DEFAULT_TTL,
) -> None:
    """Hand ``pyarrow.Table``, ``RecordBatch`` and NumPy arrays between workers of one host
    through segments: on this client and on every worker, present and future (plugins).

    A table attached from a segment (and a NumPy array lying in a segment's mapping) of at
    least ``threshold`` bytes is handed over with no copy: its file is hard-linked to a
    transfer name. With ``write_threshold``, other tables, record batches and integer or
    float arrays of at least that many bytes are written once into a transfer segment (off by
    default: it measured within the noise of Dask's own path, bench/dask.py). Everything else
    takes Dask's own path. The receiver attaches it zero-copy and removes the transfer name
    at once. Workers sweep transfer segments whose sender or receiver died at start, every
    ``interval`` seconds, and their own at close; ``ttl`` bounds the life of a transfer whose
    two ends live on (a message lost between them).

    Arrays received this way are read-only (tasks that write into their inputs must copy).

    Raises
    ------
    ValueError
        ``threshold`` (or ``write_threshold``, unless None) not a non-negative int, ``interval`` not a finite positive number of
        seconds, or ``ttl`` not a finite non-negative one.
    """
    for what, size in (("threshold", threshold), ("write_threshold", write_threshold)):
        if what == "write_threshold" and size is None:
            continue
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"{what} must be a non-negative int of bytes, not {size!r}")
    for what, value, low in (("interval", interval, 1e-3), ("ttl", ttl, 0.0)):
        if not isinstance(value, (int, float)) or not low <= value < float("inf"):
            raise ValueError(f"{what} must be a finite number of seconds >= {low}, not {value!r}")
    _enable(threshold, write_threshold)
    _announce(client.connection_args)
    client.register_plugin(ShmarrowNannyPlugin(ttl=ttl))
    client.register_plugin(ShmarrowWorkerPlugin(threshold, write_threshold, interval, ttl))
