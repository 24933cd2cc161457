"""Paired comparisons of two evaluations of the same problems, with 95% intervals.

Both evaluations graded the same problems (rows keyed by problem id), so the comparison resamples
*problems*: each bootstrap replicate draws problem indices with replacement and recomputes the
metric for both models on the same draw. Answer accuracy also gets the normal interval on the
paired per-problem differences (mean ± 1.96·sd/√n). Step ECE is a property of a set of steps, not
of one problem, so it gets the bootstrap only (each drawn problem brings all of its steps).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fastcomt.metrics.calibration import expected_calibration_error

__all__ = ["paired_rows", "paired_accuracy", "paired_ece"]


def paired_rows(
    before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """The rows of the problems both evaluations hold, in the order of `before`."""
    by_id = {r["id"]: r for r in after}
    common = [r for r in before if r["id"] in by_id]
    if not common:
        raise ValueError("before/after: expected evaluations of the same problems, found no common id")
    return common, [by_id[r["id"]] for r in common]


def _draws(n: int, resamples: int, seed: int) -> np.ndarray:
    if resamples < 1:
        raise ValueError(f"resamples: expected >= 1, got {resamples}")
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def paired_accuracy(
    before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]], *, resamples: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Accuracy before and after, their difference, its bootstrap and normal 95% intervals."""
    a_rows, b_rows = paired_rows(before, after)
    a = np.array([1.0 if r["correct"] else 0.0 for r in a_rows])
    b = np.array([1.0 if r["correct"] else 0.0 for r in b_rows])
    d = b - a
    n = d.size
    boot = d[_draws(n, resamples, seed)].mean(axis=1)
    half = 1.96 * d.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")
    return {
        "n": n,
        "before": float(a.mean()),
        "after": float(b.mean()),
        "diff": float(d.mean()),
        "ci_low": float(np.percentile(boot, 2.5)),
        "ci_high": float(np.percentile(boot, 97.5)),
        "normal_low": float(d.mean() - half),
        "normal_high": float(d.mean() + half),
    }


def _steps(rows: Sequence[Mapping[str, Any]]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [
        (
            np.array([s["confidence"] for s in r["steps"]], dtype=np.float64),
            np.array([s["correct"] for s in r["steps"]], dtype=np.float64),
        )
        for r in rows
    ]


def _ece_of(steps: list[tuple[np.ndarray, np.ndarray]], index: np.ndarray, n_bins: int) -> float:
    conf = np.concatenate([steps[i][0] for i in index])
    corr = np.concatenate([steps[i][1] for i in index])
    return expected_calibration_error(conf, corr, n_bins) if conf.size else float("nan")


def paired_ece(
    before: Sequence[Mapping[str, Any]],
    after: Sequence[Mapping[str, Any]],
    *,
    n_bins: int = 10,
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Step ECE before and after (all steps of the common problems), the difference and its
    bootstrap 95% interval. NaN where a side has no steps."""
    a_rows, b_rows = paired_rows(before, after)
    sa, sb = _steps(a_rows), _steps(b_rows)
    n = len(sa)
    everything = np.arange(n)
    ece_a, ece_b = _ece_of(sa, everything, n_bins), _ece_of(sb, everything, n_bins)
    diffs = []
    for index in _draws(n, resamples, seed):
        diffs.append(_ece_of(sb, index, n_bins) - _ece_of(sa, index, n_bins))
    diffs_arr = np.array(diffs)
    diffs_arr = diffs_arr[np.isfinite(diffs_arr)]
    return {
        "n": n,
        "steps_before": int(sum(s[0].size for s in sa)),
        "steps_after": int(sum(s[0].size for s in sb)),
        "before": ece_a,
        "after": ece_b,
        "diff": ece_b - ece_a,
        "ci_low": float(np.percentile(diffs_arr, 2.5)) if diffs_arr.size else float("nan"),
        "ci_high": float(np.percentile(diffs_arr, 97.5)) if diffs_arr.size else float("nan"),
    }
