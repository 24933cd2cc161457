"""Grader -> reward kernel glue: token alignment and an end-to-end reward on synthetic executions."""

import math

import pytest
import torch

from fastcomt.metrics.calibration import brier_score
from fastcomt.tasks import grade_completion, synthetic_problems
from fastcomt.train.rewards import ccrl_batch_rewards, reward_inputs, step_calibration_pairs



def _offsets(text):
    return [(i, i + 1) for i in range(len(text))]


def test_end_to_end_rewards_on_synthetic_executions():
    p = synthetic_problems(1, seed=0)[0]
    right = p.solution
    # same arithmetic, wrong first operand: the first step value and everything after go wrong
    wrong = right.replace(f"= {p.steps[0].expression} = {p.steps[0].value}",
                          f"= {p.steps[0].expression} = {p.steps[0].value + 1}", 1)
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
