"""Priority inversion probe for the background unmapping after ``Allocation.publish()``.

After a publish, a background thread of the process (idle priority, `SCHED_IDLE`) unmaps the
writer's old pages. When it did so with `munmap` in 2 MiB steps, each step held the process's
address-space lock, and preempted inside one on a saturated machine it made another thread of
the process that maps or unmaps wait over a second (this probe); it now drops the pages with
`MADV_DONTNEED` (that mapping's lock only) and then unmaps the emptied range. This probe saturates every core with busy loops (other
processes at normal priority), then times a loop of ``mmap`` + first write + ``munmap`` of
64 KiB in a thread of this process, first with nothing else going on (the baseline, same
duration), then right after publishing a filled 1 GiB allocation (while its pages are
unmapped in the background); alternating, a few rounds. It prints the median and worst
latency of each, their ratio, whether the background unmapping finished while the cores
were busy, and how long it took (until the process's resident memory is back; the busy loops
are stopped after the probe), with the load average.

Run with the project's venv under ``/work/bin/quiet`` (it loads every core itself):
``.venv/bin/python bench/unmap_inversion.py``; ``SHMARROW_BENCH_QUICK=1``: 2 rounds of
100 MiB. Figures are printed, never asserted; the segment made here is named
``shmarrow-bench-py-<pid>-inversion`` and removed, the busy loops killed by pid, in
``finally`` blocks.
"""

from __future__ import annotations

import mmap
import os
import statistics
import subprocess
import sys
import threading
import time

import shmarrow
from benchlib import GIB, MIB, human, loadavg, machine


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def stop_loops(loops: list[subprocess.Popen]) -> None:
    for p in loops:
        if p.poll() is None:
            p.kill()
        p.wait()
    loops.clear()


def probe(stop: threading.Event, out: list[int]) -> None:
    """mmap + first write + munmap of 64 KiB until `stop`, each timed (ns) into `out`."""
    while not stop.is_set():
        t0 = time.perf_counter_ns()
        m = mmap.mmap(-1, 64 << 10)
        m[0] = 1
        m.close()
        out.append(time.perf_counter_ns() - t0)


def timed(seconds: float, action=None) -> list[int]:
    """Run the probe for `seconds`, with `action` (if any) called at its start."""
    stop, out = threading.Event(), []
    thread = threading.Thread(target=probe, args=(stop, out))
    thread.start()
    if action is not None:
        action()
    time.sleep(seconds)
    stop.set()
    thread.join()
    return out


def main() -> int:
    quick = os.environ.get("SHMARROW_BENCH_QUICK", "") not in ("", "0")
    seg_dir = os.environ.get("SHMARROW_DIR") or "/dev/shm"
    rounds, nbytes, seconds = (2, 100 * MIB, 1.0) if quick else (3, GIB, 2.0)
    name = f"shmarrow-bench-py-{os.getpid()}-inversion"
    print(f"# Background unmapping vs. this process's mmap/munmap, every core busy\n")
    print(f"machine: {machine()}\n")
    print(f"load average before: {loadavg()}; {rounds} rounds of {seconds} s, alternating\n")
    cores = len(os.sched_getaffinity(0))
    rows = []
    loops: list[subprocess.Popen] = []
    try:
        for _ in range(rounds):
            # Busy loops on every core for the baseline and the probe after publish; stopped
            # before waiting for the unmapping to finish, so each round starts from nothing.
            loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
            time.sleep(0.3)
            base = timed(seconds)
            alloc = shmarrow.allocate(name, {"x": "f8"}, nbytes // 8, dir=seg_dir)
            view = alloc["x"]
            view[:] = 1.0
            resident = rss_bytes()
            done = {}

            def publish():
                alloc.publish()
                done["t0"] = time.perf_counter()

            after = timed(seconds, publish)
            del view
            finished_busy = rss_bytes() <= resident - nbytes // 2
            stop_loops(loops)
            # The background thread is done once the pages are gone from this process.
            while rss_bytes() > resident - nbytes // 2:
                time.sleep(0.001)
            unmapped = time.perf_counter() - done["t0"]
            shmarrow.remove(name, dir=seg_dir)
            rows.append((base, after, unmapped, finished_busy))
    finally:
        stop_loops(loops)
        try:
            shmarrow.remove(name, dir=seg_dir)
        except shmarrow.SegmentNotFound:
            pass
    print(f"| round | baseline median / worst µs | after publish of {human(nbytes)} median / worst µs "
          f"| worst ratio | unmapping done within the busy {seconds} s | unmapping took s |")
    print("|---|---:|---:|---:|---|---:|")
    for i, (base, after, unmapped, finished_busy) in enumerate(rows):
        bm, bw = statistics.median(base) / 1e3, max(base) / 1e3
        am, aw = statistics.median(after) / 1e3, max(after) / 1e3
        print(f"| {i} | {bm:.1f} / {bw:.0f} | {am:.1f} / {aw:.0f} | {aw / bw:.2f} | "
              f"{'yes' if finished_busy else 'no'} | {unmapped:.2f} |")
    print(f"\nload average after: {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
