"""Processes and constants of the side-by-side suite: the multiprocessing context, child
processes (Python and the Rust helper), their cleanup, and sizes."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import time
import traceback
from multiprocessing import shared_memory

import numpy as np


START_METHOD = "forkserver"
KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
MB = 10**6
HANDOFF_BYTES = 100 * MB  # "one 100 MB float64 array"
MODULUS = 1_000_003
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

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
