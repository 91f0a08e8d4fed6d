"""Side-by-side suite: shmarrow against the usual ways of moving NumPy data between processes.

Run it through ``bench/compare`` (which builds what it needs first); directly, from the
repository: ``PYTHONPATH=bench .venv/bin/python -m comparison [--quick] [--with-ray]
[--out-dir bench]``.

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

The package: ``harness`` (processes, constants), ``transports`` (the nine contenders' ways of
moving data), ``contenders`` (timing rounds), ``cases``, ``report`` (RESULTS.md), ``plot``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import subprocess
import sys
import time

from benchlib import human, loadavg

from . import harness
from .harness import (
    CLI_EXE, GIB, HANDOFF_BYTES, MIB, Proc, ROOT, START_METHOD, cleanup_files, elements,
    end_all,
)
from .transports import idle_main
from .cases import case_28, case_attach, case_handoff, case_limits, case_stream
from .report import write_report
from .plot import plot

def main() -> int:
    ap = argparse.ArgumentParser(prog="bench/compare", description=__doc__.split("\n\n")[0])
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
    harness.CTX = mp.get_context(START_METHOD)
    harness.CTX.set_forkserver_preload(["numpy", "pyarrow", "shmarrow"])
    harness.RUST_EXE = args.rust_exe or find_rust_exe()
    have_cli = os.access(CLI_EXE, os.X_OK)
    ray_note = None
    with_ray = False
    if args.with_ray:
        try:
            import ray

            ctx = ray.init(num_cpus=os.cpu_count(), object_store_memory=3 * GIB,
                           include_dashboard=False, logging_level="ERROR",
                           log_to_driver=False)
            harness.RAY_ADDRESS = ctx.address_info["gcs_address"]
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
    rust = harness.RUST_EXE is not None
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

if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as exc:
        print(f"interrupted ({exc}); cleaned up", file=sys.stderr)
        end_all()
        cleanup_files()
        sys.exit(130)
