"""Contenders (a producer and its consumers, the Rust helper) and the timing rounds: warm-ups,
repeats, medians."""

from __future__ import annotations

import gc
import statistics
import sys

from .harness import PREFIX, Proc, RustProc, SEG_DIR
from .transports import consumer_main, family, make_cfg, producer_main

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
