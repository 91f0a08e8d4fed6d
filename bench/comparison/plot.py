"""bench/results.png."""

from __future__ import annotations

import numpy as np

from benchlib import human

from .harness import HANDOFF_BYTES, MB, TARGET_INPLACE_MS, TARGET_STREAM_RATE, elements
from .report import fmt

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
        if keys:
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

    # A panel whose case was not run (`--only`) has no bar to draw: a log axis over no data
    # cannot be laid out, so it says so instead.
    for ax in axes.flat:
        if not any(p.get_width() > 0 and p.get_height() > 0 for p in ax.patches):
            title = ax.get_title()
            ax.cla()
            ax.set_axis_off()
            ax.set_title(title, fontsize=11)
            ax.text(0.5, 0.5, "not run in this invocation", ha="center", va="center",
                    transform=ax.transAxes, color="#777777")

    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=80)
    plt.close(fig)
