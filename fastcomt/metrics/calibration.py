"""Calibration metrics of confidences against correctness (steps or answers). NumPy only.

- expected_calibration_error: sum over bins of (bin share) * |accuracy - mean confidence|, with
  equal-width bins ("width": bin = min(floor(c * n_bins), n_bins - 1)) or equal-count bins ("mass":
  sorted by confidence, split into n_bins chunks whose sizes differ by at most one);
- brier_score: mean (c - z)^2;
- overconfident_error_rate: share of predictions with c >= tau that are wrong (over all predictions,
  or over the wrong ones);
- auroc: probability that a random correct prediction has a higher confidence than a random wrong
  one (ties count one half): how well confidence separates right from wrong;
- reliability_bins: the per-bin numbers behind the ECE and the reliability diagram.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = [
    "ReliabilityBin",
    "reliability_bins",
    "expected_calibration_error",
    "brier_score",
    "overconfident_error_rate",
    "auroc",
    "calibration_report",
]

ArrayLike = Sequence[float] | np.ndarray


class ReliabilityBin(NamedTuple):
    """lo, hi: the bin's confidence range (for "mass", the min and max confidence inside it)."""

    lo: float
    hi: float
    count: int
    mean_confidence: float
    accuracy: float


def _inputs(confidence: ArrayLike, correct: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(confidence, dtype=np.float64).reshape(-1) if not isinstance(confidence, str) else None
    z = np.asarray(correct).reshape(-1) if not isinstance(correct, str) else None
    if c is None or z is None:
        raise TypeError("confidence and correct: expected sequences of numbers, got str")
    if c.shape != z.shape:
        raise ValueError(f"confidence and correct: expected the same length, got {c.size} and {z.size}")
    if c.size == 0:
        raise ValueError("confidence: expected at least one prediction, got none")
    if not np.all(np.isfinite(c)) or c.min() < 0.0 or c.max() > 1.0:
        raise ValueError("confidence: expected finite values in [0, 1]")
    if z.dtype == bool:
        z = z.astype(np.float64)
    else:
        z = z.astype(np.float64)
        if not np.all((z == 0.0) | (z == 1.0)):
            raise ValueError("correct: expected 0/1 or bool values")
    return c, z


def _check_bins(n_bins: int, strategy: str) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ValueError(f"n_bins: expected a positive int, got {n_bins!r}")
    if strategy not in ("width", "mass"):
        raise ValueError(f"strategy: expected 'width' or 'mass', got {strategy!r}")


def reliability_bins(
    confidence: ArrayLike, correct: ArrayLike, n_bins: int = 10, strategy: str = "width"
) -> list[ReliabilityBin]:
    """Non-empty bins in increasing confidence (see the module docstring for the two strategies)."""
    _check_bins(n_bins, strategy)
    c, z = _inputs(confidence, correct)
    bins: list[ReliabilityBin] = []
    if strategy == "width":
        index = np.minimum(np.floor(c * n_bins).astype(np.int64), n_bins - 1)
        for b in range(n_bins):
            members = index == b
            n = int(members.sum())
            if n:
                bins.append(
                    ReliabilityBin(b / n_bins, (b + 1) / n_bins, n, float(c[members].mean()), float(z[members].mean()))
                )
    else:
        order = np.argsort(c, kind="stable")
        for chunk in np.array_split(order, min(n_bins, c.size)):
            bins.append(
                ReliabilityBin(
                    float(c[chunk].min()),
                    float(c[chunk].max()),
                    int(chunk.size),
                    float(c[chunk].mean()),
                    float(z[chunk].mean()),
                )
            )
    return bins


def expected_calibration_error(
    confidence: ArrayLike, correct: ArrayLike, n_bins: int = 10, strategy: str = "width"
) -> float:
    """ECE = sum_b (n_b / N) * |accuracy_b - mean confidence_b|."""
    bins = reliability_bins(confidence, correct, n_bins, strategy)
    total = sum(b.count for b in bins)
    return float(sum(b.count / total * abs(b.accuracy - b.mean_confidence) for b in bins))


def brier_score(confidence: ArrayLike, correct: ArrayLike) -> float:
    """Mean squared difference between confidence and correctness (0 is perfect)."""
    c, z = _inputs(confidence, correct)
    return float(np.mean((c - z) ** 2))


def overconfident_error_rate(
    confidence: ArrayLike, correct: ArrayLike, tau: float = 0.9, *, among: str = "all"
) -> float:
    """Share of predictions with confidence >= tau that are wrong.

    among="all": divided by all predictions; among="errors": by the wrong ones (0 when none is wrong).
    """
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau: expected a value in [0, 1], got {tau!r}")
    if among not in ("all", "errors"):
        raise ValueError(f"among: expected 'all' or 'errors', got {among!r}")
    c, z = _inputs(confidence, correct)
    overconfident = np.sum((c >= tau) & (z == 0.0))
    denominator = c.size if among == "all" else np.sum(z == 0.0)
    return float(overconfident / denominator) if denominator else 0.0


def auroc(confidence: ArrayLike, correct: ArrayLike) -> float:
    """Area under the ROC curve of confidence as a detector of correct predictions.

    Computed from average ranks (Mann-Whitney U), so ties count one half. NaN when all predictions
    are right or all are wrong (the area is undefined).
    """
    c, z = _inputs(confidence, correct)
    n_pos = int(z.sum())
    n_neg = c.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(c, kind="stable")
    sorted_c = c[order]
    ranks = np.empty(c.size, dtype=np.float64)
    # average rank within each run of equal confidences
    starts = np.flatnonzero(np.r_[True, sorted_c[1:] != sorted_c[:-1]])
    ends = np.r_[starts[1:], c.size]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2.0  # 1-based ranks s+1..e
    u = ranks[z == 1.0].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def calibration_report(
    confidence: ArrayLike, correct: ArrayLike, *, n_bins: int = 10, tau: float = 0.9
) -> dict[str, float]:
    """All metrics at once, as plain floats (for JSON reports)."""
    c, z = _inputs(confidence, correct)
    return {
        "n": float(c.size),
        "accuracy": float(z.mean()),
        "mean_confidence": float(c.mean()),
        "ece": expected_calibration_error(c, z, n_bins, "width"),
        "ece_mass": expected_calibration_error(c, z, n_bins, "mass"),
        "brier": brier_score(c, z),
        "overconfident_error_rate": overconfident_error_rate(c, z, tau),
        "auroc": auroc(c, z),
    }
