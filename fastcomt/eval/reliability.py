"""Reliability diagram (accuracy against confidence per bin) written as a PNG with matplotlib's Agg backend."""

from __future__ import annotations

import os
from pathlib import Path

from fastcomt.atomic_io import atomic_path
from fastcomt.metrics.calibration import ArrayLike, expected_calibration_error, reliability_bins

__all__ = ["write_reliability_diagram"]


def write_reliability_diagram(
    path: str | os.PathLike[str],
    confidence: ArrayLike,
    correct: ArrayLike,
    *,
    n_bins: int = 10,
    strategy: str = "width",
    title: str | None = None,
) -> Path:
    """Bars of per-bin accuracy over the diagonal of perfect calibration, gaps shaded, ECE in the title.

    Written atomically (temp file + os.replace); returns the path.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)  # no display; a caller that chose a backend keeps it
    import matplotlib.pyplot as plt

    bins = reliability_bins(confidence, correct, n_bins, strategy)
    ece = expected_calibration_error(confidence, correct, n_bins, strategy)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    fig, (ax, hist) = plt.subplots(2, 1, figsize=(4.5, 5.5), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    try:
        centers = [(b.lo + b.hi) / 2 for b in bins]
        widths = [max(b.hi - b.lo, 0.01) for b in bins]
        ax.bar(centers, [b.accuracy for b in bins], width=widths, edgecolor="black", color="#4C72B0", label="accuracy")
        ax.bar(
            centers,
            [b.mean_confidence - b.accuracy for b in bins],
            bottom=[b.accuracy for b in bins],
            width=widths,
            color="#DD8452",
            alpha=0.5,
            hatch="//",
            label="gap to confidence",
        )
        ax.plot([0, 1], [0, 1], "k--", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_ylabel("accuracy")
        ax.set_title(f"{title + ': ' if title else ''}ECE {ece:.3f} ({strategy} bins)")
        ax.legend(loc="upper left", fontsize=8)
        hist.bar(centers, [b.count for b in bins], width=widths, color="gray", edgecolor="black")
        hist.set_xlabel("confidence")
        hist.set_ylabel("count")
        fig.tight_layout()
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=120)
    finally:
        plt.close(fig)
    return path
