"""CCRL reward kernel (Triton; interpreter on CPU) against the plain-torch fp64 reference and hand cases."""

import math

import pytest
import torch

from fastcomt.kernels.rewards import ccrl_rewards
from fastcomt.kernels.rewards_reference import ccrl_rewards_reference

LOG_HALF = math.log(0.5)


def _random_batch(seed, B=8, T=20, K=3, empty_rows=(1,)):
    g = torch.Generator().manual_seed(seed)
    logprobs = -torch.rand(B, T, generator=g) * 3
    span_ids = torch.full((B, T), -1, dtype=torch.int32)
    for b in range(B):
        if b in empty_rows:
            continue
        pos = 0
        for k in range(int(torch.randint(1, K + 1, (1,), generator=g))):
            pos += int(torch.randint(0, 3, (1,), generator=g))
            width = int(torch.randint(1, 4, (1,), generator=g))  # digit-split numbers span several tokens
            span_ids[b, pos : pos + width] = k
            pos += width
    step_correct = torch.randint(0, 2, (B, K), generator=g).float()
    answer_correct = torch.randint(0, 2, (B,), generator=g).float()
    return logprobs, span_ids, step_correct, answer_correct


def _assert_close(out, ref, dense=False):
    torch.testing.assert_close(out.rewards.double(), ref.rewards, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.advantages.double(), ref.advantages, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.plan_advantages.double(), ref.plan_advantages, atol=1e-4, rtol=1e-4)
    if dense:
        torch.testing.assert_close(out.step_confidence.double(), ref.step_confidence, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.step_rewards.double(), ref.step_rewards, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "options",
    [
        dict(),
        dict(confidence="min", step_reward="signed", dense=True),
        dict(confidence="first", advantage="dr_grpo", lam=1.0, dense=True),
        dict(lam=0.0),
    ],
)
def test_two_level_matches_reference(options):
    logprobs, span_ids, step_correct, answer_correct = _random_batch(seed=len(options))
    # 2 problems x 2 plans x 2 executions, members of a problem interleaved in the batch
    problem_ids = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    group_ids = torch.tensor([0, 2, 0, 2, 1, 3, 1, 3])
    out = ccrl_rewards(logprobs, span_ids, step_correct, answer_correct, group_ids, problem_ids, **options)
    ref = ccrl_rewards_reference(logprobs, span_ids, step_correct, answer_correct, group_ids, problem_ids, **options)
    _assert_close(out, ref, dense=options.get("dense", False))
    assert out.plan_advantages.abs().sum() > 0


def test_single_level_long_sequences_and_bf16():
    # T spans several token blocks; bf16 log-probs are read as fp32
    logprobs, span_ids, step_correct, answer_correct = _random_batch(seed=3, B=6, T=70, K=4, empty_rows=())
    span_ids[2, 40:43] = 3  # a step far into the sequence, in the second block
    logprobs = logprobs.to(torch.bfloat16)
    group_ids = torch.tensor([0, 0, 0, 1, 1, 2])  # the last group has one member
    out = ccrl_rewards(logprobs, span_ids, step_correct, answer_correct, group_ids, confidence="first", block_t=32)
    ref = ccrl_rewards_reference(
        logprobs.float(), span_ids, step_correct, answer_correct, group_ids, confidence="first"
    )
    _assert_close(out, ref)
    assert out.advantages[5] == 0 and torch.all(out.plan_advantages == 0)


def test_hand_computed_pair():
    # sequence 0: one step over two tokens of probability 0.5 each, correct step, correct answer
    #   c = 0.5, r = 1 - (0.5 - 1)^2 = 0.75, R = 1 + 0.5 * 0.75 = 1.375
    # sequence 1: no step tokens, wrong answer: R = 0
    # GRPO: mean 0.6875, unbiased std 1.375 / sqrt(2): advantages +-1/sqrt(2)
    logprobs = torch.tensor([[LOG_HALF, LOG_HALF, -0.1], [-0.2, -0.3, -0.4]])
    span_ids = torch.tensor([[0, 0, -1], [-1, -1, -1]])
    out = ccrl_rewards(
        logprobs, span_ids, torch.tensor([[1.0], [0.0]]), torch.tensor([1.0, 0.0]), torch.tensor([0, 0]), eps=1e-12
    )
    torch.testing.assert_close(out.rewards, torch.tensor([1.375, 0.0]))
    torch.testing.assert_close(out.advantages, torch.tensor([1, -1]) / math.sqrt(2))
    signed = ccrl_rewards(
        logprobs,
        span_ids,
        torch.tensor([[0], [0]]),
        torch.tensor([True, False]),
        torch.tensor([0, 0]),
        step_reward="signed",
        advantage="dr_grpo",
    )
    # wrong step with confidence 0.5: r = -0.5, R = 1 - 0.25 = 0.75; Dr.GRPO: R - mean = +-0.375
    torch.testing.assert_close(signed.rewards, torch.tensor([0.75, 0.0]))
    torch.testing.assert_close(signed.advantages, torch.tensor([0.375, -0.375]))


def test_hand_computed_plan_advantages():
    # one problem, plan 0 executions rewarded {1, 0}, plan 1 {1, 1} (lam = 0: rewards = answers)
    # plan means 0.5 and 1.0: GRPO over two plans -> -1/sqrt(2), +1/sqrt(2); execution level: plan 1 all equal -> 0
    answers = torch.tensor([1.0, 0.0, 1.0, 1.0])
    out = ccrl_rewards(
        torch.zeros(4, 2),
        torch.full((4, 2), -1),
        torch.zeros(4, 1),
        answers,
        torch.tensor([5, 5, 9, 9]),
        torch.zeros(4, dtype=torch.long),
        lam=0.0,
        eps=1e-12,
    )
    torch.testing.assert_close(out.rewards, answers)
    torch.testing.assert_close(out.advantages, torch.tensor([1, -1, 0, 0]) / math.sqrt(2))
    torch.testing.assert_close(out.plan_advantages, torch.tensor([-1, -1, 1, 1]) / math.sqrt(2))


def test_empty_spans_groups_of_one_and_equal_rewards():
    B, T = 6, 5
    logprobs = torch.full((B, T), -0.7)
    span_ids = torch.full((B, T), -1, dtype=torch.int64)
    span_ids[:4, 1:3] = 0  # four sequences with the same single step, same log-probs
    step_correct = torch.ones(B, 1)
    answers = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 1.0])
    group_ids = torch.tensor([0, 0, 1, 1, 2, 3])
    for advantage in ("grpo", "dr_grpo"):
        out = ccrl_rewards(logprobs, span_ids, step_correct, answers, group_ids, advantage=advantage)
        ref = ccrl_rewards_reference(logprobs, span_ids, step_correct, answers, group_ids, advantage=advantage)
        _assert_close(out, ref)
        assert not torch.isnan(out.advantages).any()
        assert torch.equal(out.advantages, torch.zeros(B))  # equal rewards and singletons: exactly 0
        c = math.exp(-0.7)
        assert out.rewards[0].item() == pytest.approx(1 + 0.5 * (1 - (c - 1) ** 2), abs=1e-6)
        assert out.rewards[4:].tolist() == [0.0, 1.0]  # no steps: the answer term alone


def test_no_steps_at_all_and_empty_batch():
    out = ccrl_rewards(
        torch.zeros(3, 4),
        torch.full((3, 4), -1),
        torch.zeros(3, 0),
        torch.tensor([1, 0, 1]),
        torch.tensor([0, 0, 0]),
        dense=True,
    )
    torch.testing.assert_close(out.rewards, torch.tensor([1.0, 0.0, 1.0]))
    assert out.step_rewards.shape == (3, 0)
    empty = ccrl_rewards(
        torch.zeros(0, 4),
        torch.zeros(0, 4, dtype=torch.long),
        torch.zeros(0, 2),
        torch.zeros(0),
        torch.zeros(0, dtype=torch.long),
    )
    assert empty.rewards.shape == (0,)


def test_bad_inputs():
    lp, sid, z, a = torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 1), torch.zeros(2)
    g = torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="logprobs"):
        ccrl_rewards(lp[0], sid, z, a, g)
    with pytest.raises(ValueError, match="span_ids"):
        ccrl_rewards(lp, sid.float(), z, a, g)
    with pytest.raises(ValueError, match="step_correct"):
        ccrl_rewards(lp, sid, z[:1], a, g)
    with pytest.raises(ValueError, match="group_ids"):
        ccrl_rewards(lp, sid, z, a, g[:1])
    with pytest.raises(ValueError, match="confidence"):
        ccrl_rewards(lp, sid, z, a, g, confidence="max")
    with pytest.raises(ValueError, match="lam"):
        ccrl_rewards(lp, sid, z, a, g, lam=-1)
    with pytest.raises(ValueError, match="group_ids"):
        ccrl_rewards(lp, sid, z, a, g - 1)
    with pytest.raises(TypeError, match="answer_correct"):
        ccrl_rewards(lp, sid, z, [0, 1], g)


@pytest.mark.parametrize("confidence", ["geomean", "min", "first"])
def test_more_steps_than_one_block_match_reference(confidence):
    # K = 40 steps spans three BLOCK_K=16 blocks of the kernel's step loop.
    logprobs, span_ids, step_correct, answer_correct = _random_batch(seed=41, B=4, T=130, K=40, empty_rows=())
    group_ids = torch.tensor([0, 0, 1, 1])
    options = dict(confidence=confidence, dense=True)
    out = ccrl_rewards(logprobs, span_ids, step_correct, answer_correct, group_ids, **options)
    ref = ccrl_rewards_reference(logprobs, span_ids, step_correct, answer_correct, group_ids, **options)
    assert int(span_ids.max()) >= 16
    _assert_close(out, ref, dense=True)


def test_problem_larger_than_the_register_block_is_refused():
    lp, sid, z, a = _random_batch(seed=3, B=65, T=4, K=1, empty_rows=())
    with pytest.raises(ValueError, match="max_problem_size: expected at most 64"):
        ccrl_rewards(lp, sid, z, a, torch.zeros(65, dtype=torch.long))
