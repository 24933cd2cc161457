"""Paired before/after statistics (fastcomt.metrics.paired), against hand-computed values."""

import math

import numpy as np
import pytest

from fastcomt.metrics.calibration import expected_calibration_error
from fastcomt.metrics.paired import paired_accuracy, paired_ece, paired_rows


def _row(pid, correct, steps=()):
    return {"id": pid, "correct": correct, "steps": [{"confidence": c, "correct": z} for c, z in steps]}


def test_paired_accuracy_normal_interval_by_hand():
    before = [_row(i, c) for i, c in enumerate([1, 0, 1, 0])]
    after = [_row(i, c) for i, c in enumerate([1, 1, 1, 0])][::-1]  # order must not matter: paired by id
    out = paired_accuracy(before, after, resamples=4000, seed=1)
    assert out["n"] == 4 and out["before"] == 0.5 and out["after"] == 0.75 and out["diff"] == 0.25
    half = 1.96 * 0.5 / 2  # sd of the differences [0, 1, 0, 0] is 0.5
    assert out["normal_low"] == pytest.approx(0.25 - half) and out["normal_high"] == pytest.approx(0.25 + half)
    # The bootstrap mean of four 0/1 differences takes values k/4; its 2.5% and 97.5% points are 0 and 0.75.
    assert out["ci_low"] == 0.0 and out["ci_high"] == 0.75


def test_paired_ece_matches_direct_computation():
    before = [_row(0, 1, [(0.9, 1), (0.8, 0)]), _row(1, 0, [(0.3, 0)]), _row(2, 1, [])]
    after = [_row(0, 1, [(0.95, 1)]), _row(1, 1, [(0.6, 1), (0.2, 0)]), _row(2, 1, [(0.5, 1)])]
    out = paired_ece(before, after, resamples=200, seed=0)
    ece_b = expected_calibration_error([0.9, 0.8, 0.3], [1, 0, 0])
    ece_a = expected_calibration_error([0.95, 0.6, 0.2, 0.5], [1, 1, 0, 1])
    # by hand, 10 equal-width bins: before |1-.9| + |0-.8| + |0-.3| over 3; after .05 + .4 + .2 + .5 over 4
    assert ece_b == pytest.approx((0.1 + 0.8 + 0.3) / 3) and ece_a == pytest.approx((0.05 + 0.4 + 0.2 + 0.5) / 4)
    assert out["before"] == pytest.approx(ece_b) and out["after"] == pytest.approx(ece_a)
    assert out["diff"] == pytest.approx(ece_a - ece_b)
    assert out["steps_before"] == 3 and out["steps_after"] == 4
    assert out["ci_low"] <= out["ci_high"] and np.isfinite(out["ci_low"])


def test_rows_are_paired_by_id_and_disjoint_sets_are_refused():
    a, b = paired_rows([_row("x", 1), _row("y", 0)], [_row("y", 1), _row("z", 1)])
    assert [r["id"] for r in a] == ["y"] and [r["id"] for r in b] == ["y"]
    with pytest.raises(ValueError, match="common id"):
        paired_rows([_row("x", 1)], [_row("z", 1)])
    with pytest.raises(ValueError, match="resamples"):
        paired_accuracy([_row(0, 1)], [_row(0, 1)], resamples=0)
    assert math.isnan(paired_accuracy([_row(0, 1)], [_row(0, 0)], resamples=10)["normal_low"])
