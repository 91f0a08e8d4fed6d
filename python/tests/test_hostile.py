"""Every public function of the package with hostile numbers (negative, zero, NaN,
infinities, 2**63, 2**64, 1e300) in every numeric parameter: a number that is invalid there
raises an ``Exception`` subclass (ValueError, OverflowError, TypeError or a ShmarrowError),
never ``PanicException`` (a ``BaseException`` that ``except Exception`` misses), and a valid one
works; nothing hangs (a faulthandler watchdog ends the run, with tracebacks, if one call takes
longer than 120 s: a hang detector, not a speed assertion)."""

from __future__ import annotations

import faulthandler
import math

import numpy as np
import pyarrow as pa
import pytest

import shmarrow

HOSTILE = [-1, 0, float("nan"), float("inf"), float("-inf"), 2**63, 2**64, 1e300, -(2**63)]
ALL = tuple(HOSTILE)


def _key(v) -> str:
    return repr(v)


def _valid(*values) -> set:
    return {_key(v) for v in values}


# (label, call(env, value), values that are valid there: they may succeed)
CASES = [
    ("create mode", lambda e, v: e.created(shmarrow.create(e.new(), e.table, dir=e.dir, mode=v)), _valid(0)),
    ("share mode", lambda e, v: e.closed(shmarrow.share(e.table, e.new(), dir=e.dir, mode=v)), _valid(0)),
    ("from_numpy mode", lambda e, v: e.created(shmarrow.from_numpy(e.new(), np.arange(3.0), dir=e.dir, mode=v)), _valid(0)),
    ("reduce threads", lambda e, v: shmarrow.reduce(e.seg, threads=v, dir=e.dir), _valid()),
    ("reduce ddof", lambda e, v: shmarrow.reduce(e.seg, ddof=v, dir=e.dir), _valid(0)),
    ("map_inplace threads", lambda e, v: shmarrow.map_inplace(e.seg, "x", "square", threads=v, dir=e.dir), _valid()),
    ("map_inplace scale float", lambda e, v: shmarrow.map_inplace(e.seg, "x", "scale", v, dir=e.dir), _valid(*ALL)),
    ("map_inplace add float", lambda e, v: shmarrow.map_inplace(e.seg, "x", "add", v, dir=e.dir), _valid(*ALL)),
    ("map_inplace scale int", lambda e, v: shmarrow.map_inplace(e.seg, "i", "scale", v, dir=e.dir), _valid(-1, 0)),
    ("map_inplace clip int", lambda e, v: shmarrow.map_inplace(e.seg, "i", "clip", v, 5, dir=e.dir), _valid(-1, 0, -(2**63))),
    ("allocate rows", lambda e, v: shmarrow.allocate(e.new(), {"x": "f8"}, v, dir=e.dir).close(), _valid(0)),
    ("allocate mode", lambda e, v: shmarrow.allocate(e.new(), {"x": "f8"}, 4, dir=e.dir, mode=v).close(), _valid(0)),
    ("allocate subarray", lambda e, v: shmarrow.allocate(e.new(), {"x": ("f4", v)}, 4, dir=e.dir).close(), _valid(0)),
    ("producer slots", lambda e, v: e.closed(shmarrow.producer(e.new(), e.schema, dir=e.dir, slots=v)), _valid()),
    ("producer slot_size", lambda e, v: e.closed(shmarrow.producer(e.new(), e.schema, dir=e.dir, slot_size=v)), _valid()),
    ("producer max_consumers", lambda e, v: e.closed(shmarrow.producer(e.new(), e.schema, dir=e.dir, max_consumers=v)), _valid()),
    ("producer timeout", lambda e, v: e.closed(shmarrow.producer(e.new(), e.schema, dir=e.dir, timeout=v)), _valid(0, float("inf"), 2**63, 2**64, 1e300)),
    ("producer mode", lambda e, v: e.closed(shmarrow.producer(e.new(), e.schema, dir=e.dir, mode=v)), _valid(0)),
    ("subscribe timeout", lambda e, v: e.subscribed(v), _valid(0, float("inf"), 2**63, 2**64, 1e300)),
    ("column_view column", lambda e, v: shmarrow.column_view(e.table, v), _valid(-1, 0)),
    ("column_view name column", lambda e, v: shmarrow.column_view(e.seg, v, dir=e.dir), _valid(-1, 0)),
]

class Env:
    """A private directory with a small table segment and a channel; everything made here
    is closed and removed at the end."""

    def __init__(self, directory: str):
        self.dir = directory
        self.table = pa.table({"x": pa.array([1.0, -2.0, 3.5]), "i": pa.array([1, 2, 3], pa.int32())})
        self.schema = self.table.schema
        self._n = 0
        self._open = []
        self.seg = self.new()
        self.created(shmarrow.create(self.seg, self.table, dir=self.dir))
        self.channel = self.new()
        self._open.append(shmarrow.producer(self.channel, self.schema, dir=self.dir))

    def new(self) -> str:
        self._n += 1
        return f"hostile-{self._n}"

    def created(self, handle):
        self._open.append(handle)

    def closed(self, handle):
        handle.close()

    def subscribed(self, timeout):
        sub = shmarrow.subscribe(self.channel, dir=self.dir, timeout=timeout)
        if timeout == 0:
            # Nothing was sent: a zero timeout is an immediate, clean error.
            with pytest.raises(shmarrow.ChannelError):
                next(sub)
        sub.close()

    def close(self):
        for handle in self._open:
            handle.close()


@pytest.fixture
def env(iso_dir):
    e = Env(iso_dir)
    yield e
    e.close()


PARAMS = []
for label, call, valid in CASES:
    for value in HOSTILE:
        PARAMS.append(pytest.param(label, call, valid, value, id=f"{label}={value!r}"))


@pytest.mark.parametrize("label,call,valid,value", PARAMS)
def test_hostile_number_raises_an_exception_never_a_panic(env, label, call, valid, value):
    faulthandler.dump_traceback_later(120, exit=True)
    try:
        outcome = None
        try:
            call(env, value)
        except Exception as exc:  # noqa: BLE001 - the point: an ordinary exception
            outcome = exc
        except BaseException as exc:  # PanicException, and nothing else, lands here
            if type(exc).__name__ != "PanicException":
                raise
            pytest.fail(f"{label}={value!r}: PanicException (a BaseException): {exc}")
    finally:
        faulthandler.cancel_dump_traceback_later()
    if _key(value) not in valid:
        assert outcome is not None, f"{label}={value!r} was accepted"


def test_threads_bounds_are_value_errors(seg_name, shm_dir):
    shmarrow.create(seg_name, pa.table({"x": [1.0, 2.0]}), dir=shm_dir)
    for bad in (0, 257, 100_000):
        with pytest.raises(ValueError, match="threads"):
            shmarrow.reduce(seg_name, threads=bad, dir=shm_dir)
        with pytest.raises(ValueError, match="threads"):
            shmarrow.map_inplace(seg_name, "x", "square", threads=bad, dir=shm_dir)
    with pytest.raises(OverflowError):
        shmarrow.reduce(seg_name, threads=-1, dir=shm_dir)
    assert shmarrow.reduce(seg_name, threads=256, dir=shm_dir)["x"]["sum"] == 3.0
    assert not math.isnan(shmarrow.reduce(seg_name, threads=1, dir=shm_dir)["x"]["mean"])
