"""Grader -> reward kernel glue: token alignment and an end-to-end reward on synthetic executions."""

import math

import pytest
import torch

from fastcomt.metrics.calibration import brier_score
from fastcomt.rewards import ccrl_batch_rewards, reward_inputs, step_calibration_pairs
from fastcomt.tasks import GradedCompletion, grade_completion, synthetic_problems


def _offsets(text):
    return [(i, i + 1) for i in range(len(text))]


def test_end_to_end_rewards_on_synthetic_executions():
    p = synthetic_problems(1, seed=0)[0]
    right = p.solution
    # same arithmetic, wrong first operand: the first step value and everything after go wrong
    wrong = right.replace(
        f"= {p.steps[0].expression} = {p.steps[0].value}", f"= {p.steps[0].expression} = {p.steps[0].value + 1}", 1
    )
    assert wrong != right
    graded = [grade_completion(t, p, _offsets(t)) for t in (right, wrong)]
    assert graded[0].step_correct == (1,) * len(p.steps) and graded[1].step_correct[0] == 0
    prompt = 5  # rows hold 5 prompt tokens before the completion
    T = prompt + max(len(right), len(wrong))
    logprobs = torch.full((2, T), math.log(0.8))
    out = ccrl_batch_rewards(logprobs, graded, torch.tensor([0, 0]), starts=[prompt, prompt], dense=True)
    # right: answer 1, every step c = 0.8, z = 1 -> r = 1 - 0.04
    assert out.rewards[0].item() == pytest.approx(1 + 0.5 * 0.96, abs=1e-6)
    assert out.advantages[0] > 0 > out.advantages[1]
    inputs = reward_inputs(graded, T, starts=[prompt, prompt])
    first = graded[0].steps[0]
    assert inputs.span_ids[0, prompt + first.start : prompt + first.end].tolist() == [0] * (first.end - first.start)
    assert (inputs.span_ids[0, :prompt] == -1).all()
    conf, correct = step_calibration_pairs(out, graded)
    assert len(conf) == len(graded[0].steps) + len(graded[1].steps)
    assert brier_score(conf, correct) == pytest.approx(sum((c - z) ** 2 for c, z in zip(conf, correct)) / len(conf))


def test_truncation_and_errors():
    p = synthetic_problems(1, seed=1)[0]
    g = grade_completion(p.solution, p, _offsets(p.solution))
    inputs = reward_inputs([g], 10)  # rows shorter than the completion
    assert inputs.span_ids.shape == (1, 10)
    with pytest.raises(ValueError, match="token ids"):
        reward_inputs([grade_completion(p.solution, p)], 10)
    with pytest.raises(ValueError, match="starts"):
        reward_inputs([g], 10, starts=[0, 1])


def test_step_confidences_are_the_kernels_by_hand():
    """The one step-confidence definition evaluation and CCRL share: hand-computed per mode; a step
    whose only token went to an earlier step has none."""
    from fastcomt.rewards import step_confidences

    lps = [math.log(0.5), math.log(0.8), math.log(0.2), 0.0, math.log(0.9)]
    graded = [
        GradedCompletion(
            "1", True, ("s0", "s1", "s2"), (1, 0, 1), ("gold",) * 3, ((0, 3), (3, 4), (3, 4)), (0, 0, 0, 1, -1)
        ),  # step 2 shares step 1's token
        GradedCompletion(None, False, (), (), (), (), ()),
    ]
    rows = [lps, [math.log(0.3)]]
    geomean = step_confidences(rows, graded)
    assert geomean[0][0] == pytest.approx((0.5 * 0.8 * 0.2) ** (1 / 3), rel=1e-6)
    assert geomean[0][1] == pytest.approx(1.0) and geomean[0][2] is None
    assert geomean[1] == []
    assert step_confidences(rows, graded, confidence="min")[0][:2] == pytest.approx([0.2, 1.0], rel=1e-6)
    assert step_confidences(rows, graded, confidence="first")[0][:2] == pytest.approx([0.5, 1.0], rel=1e-6)
    with pytest.raises(ValueError, match="confidence"):
        step_confidences(rows, graded, confidence="mean")


def test_step_confidences_of_a_batch_larger_than_one_kernel_group():
    """An evaluation batch holds more completions than the reward kernel takes in one group (64): each
    completion's confidences are its own, the same as when it is scored alone (the demo evaluates 128
    problems per batch)."""
    from fastcomt.rewards import step_confidences

    n = 130
    graded = [
        GradedCompletion("1", True, ("s0", "s1"), (1, 0), ("gold",) * 2, ((0, 2), (2, 3)), (0, 0, 1)) for _ in range(n)
    ]
    rows = [[math.log(0.5 + 0.003 * b), math.log(0.9), math.log(0.1 + 0.005 * b)] for b in range(n)]
    batch = step_confidences(rows, graded)
    assert len(batch) == n
    for b in (0, 63, 64, 129):
        assert batch[b] == pytest.approx(step_confidences([rows[b]], [graded[b]])[0], rel=1e-6)
        assert batch[b][0] == pytest.approx(math.sqrt((0.5 + 0.003 * b) * 0.9), rel=1e-6)
        assert batch[b][1] == pytest.approx(0.1 + 0.005 * b, rel=1e-6)
