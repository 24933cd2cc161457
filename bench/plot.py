"""Time and peak memory against N, one line per (method, head), one row of panels per op."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on the benchmark machines
import matplotlib.pyplot as plt  # noqa: E402

from fastcomt.atomic_io import atomic_path  # noqa: E402

_STYLES = ("-", "--", ":", "-.")


def plot_results(rows: list[dict], path: Path, title: str) -> None:
    """Writes a PNG atomically. Rows without a time (failed, skipped) are left out of the lines;
    the table and JSON carry their status."""
    ops = list(dict.fromkeys(r["op"] for r in rows))
    heads = list(dict.fromkeys((r["h"], r["v"]) for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    colors = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    fig, axes = plt.subplots(len(ops), 2, figsize=(13, 4.2 * len(ops)), squeeze=False)
    for i, op in enumerate(ops):
        ax_t, ax_m = axes[i]
        for j, head in enumerate(heads):
            for method in methods:
                pts = sorted(
                    (r["n"], r.get("median_ms"), r.get("peak_gib"))
                    for r in rows
                    if r["op"] == op and (r["h"], r["v"]) == head and r["method"] == method and r.get("median_ms")
                )
                if not pts:
                    continue
                ns = [p[0] for p in pts]
                style = dict(color=colors[method], linestyle=_STYLES[j % len(_STYLES)], marker="o", markersize=3)
                ax_t.plot(ns, [p[1] for p in pts], label=f"{method} H={head[0]} V={head[1]}", **style)
                mem = [(n, p[2]) for n, p in zip(ns, pts) if p[2] is not None]
                if mem:
                    ax_m.plot([m[0] for m in mem], [m[1] for m in mem], **style)
        ax_t.set(title=f"{op}: median time", xlabel="N tokens", ylabel="ms")
        ax_m.set(title=f"{op}: peak memory above inputs", xlabel="N tokens", ylabel="GiB")
        for ax in (ax_t, ax_m):
            ax.set_xscale("log", base=2)
            ax.grid(True, alpha=0.3)
        ax_t.set_yscale("log")
        if not ax_m.lines:
            ax_m.text(0.5, 0.5, "not measured on this device", ha="center", va="center", transform=ax_m.transAxes)
        ax_t.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
