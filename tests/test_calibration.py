"""Calibration metrics against hand-computed cases and brute-force definitions."""

import itertools
import math
import random

import pytest

from fastcomt.eval.reliability import write_reliability_diagram
from fastcomt.metrics.calibration import (
    auroc,
    brier_score,
    calibration_report,
    expected_calibration_error,
    overconfident_error_rate,
    reliability_bins,
)


def test_ece_width_hand_case():
    conf = [0.9, 0.9, 0.1, 0.6]
    correct = [1, 0, 0, 1]
    # bins: [0.9,1]: acc .5 conf .9 -> .4 * 2/4; [0.1,0.2): .1 * 1/4; [0.6,0.7): .4 * 1/4
    assert expected_calibration_error(conf, correct) == pytest.approx(0.2 + 0.025 + 0.1)
    assert [b.count for b in reliability_bins(conf, correct)] == [1, 1, 2]
    assert expected_calibration_error([1.0], [1]) == 0.0  # confidence 1.0 falls in the last bin


def test_ece_mass_hand_case():
    conf = [0.9, 0.1, 0.8, 0.2]
    correct = [True, False, True, True]
    # two equal-count bins: {0.1, 0.2}: acc .5 conf .15; {0.8, 0.9}: acc 1 conf .85
    assert expected_calibration_error(conf, correct, n_bins=2, strategy="mass") == pytest.approx(
        0.5 * 0.35 + 0.5 * 0.15
    )


def test_brier_and_overconfidence():
    conf = [0.95, 0.9, 0.5, 0.2]
    correct = [0, 1, 1, 0]
    assert brier_score(conf, correct) == pytest.approx((0.95**2 + 0.1**2 + 0.5**2 + 0.2**2) / 4)
    assert overconfident_error_rate(conf, correct, tau=0.9) == pytest.approx(1 / 4)
    assert overconfident_error_rate(conf, correct, tau=0.9, among="errors") == pytest.approx(1 / 2)
    assert overconfident_error_rate(conf, [1, 1, 1, 1], among="errors") == 0.0


def test_auroc_hand_cases_and_brute_force():
    assert auroc([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(0.75)
    assert auroc([0.5, 0.5], [1, 0]) == pytest.approx(0.5)
    assert math.isnan(auroc([0.1, 0.2], [1, 1]))
    rng = random.Random(0)
    conf = [round(rng.random(), 1) for _ in range(60)]  # rounding makes ties
    correct = [int(rng.random() < c) for c in conf]
    pos = [c for c, z in zip(conf, correct) if z]
    neg = [c for c, z in zip(conf, correct) if not z]
    pairs = [(1.0 if p > n else 0.5 if p == n else 0.0) for p, n in itertools.product(pos, neg)]
    assert auroc(conf, correct) == pytest.approx(sum(pairs) / len(pairs))


def test_report_and_diagram(tmp_path):
    rng = random.Random(1)
    conf = [rng.random() for _ in range(200)]
    correct = [int(rng.random() < c) for c in conf]
    report = calibration_report(conf, correct)
    assert report["n"] == 200 and 0 <= report["ece"] < 0.2 and report["auroc"] > 0.6
    out = write_reliability_diagram(tmp_path / "plots" / "rel.png", conf, correct, title="steps")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp file left


def test_bad_inputs():
    with pytest.raises(ValueError, match="same length"):
        brier_score([0.1, 0.2], [1])
    with pytest.raises(ValueError, match="confidence"):
        brier_score([1.2], [1])
    with pytest.raises(ValueError, match="correct"):
        brier_score([0.2], [2])
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error([0.2], [1], n_bins=0)
    with pytest.raises(ValueError, match="strategy"):
        expected_calibration_error([0.2], [1], strategy="quantile")
    with pytest.raises(ValueError, match="at least one"):
        auroc([], [])
