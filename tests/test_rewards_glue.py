"""Grader -> reward kernel glue: token alignment and an end-to-end reward on synthetic executions."""

import math

import pytest
import torch

from fastcomt.metrics.calibration import brier_score
from fastcomt.rewards import ccrl_batch_rewards, resolve_reward_backend, reward_inputs, step_calibration_pairs
from fastcomt.tasks import GradedCompletion, grade_completion, synthetic_problems


def _offsets(text):
    return [(i, i + 1) for i in range(len(text))]


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_end_to_end_rewards_on_synthetic_executions(backend):
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
    out = ccrl_batch_rewards(
        logprobs, graded, torch.tensor([0, 0]), starts=[prompt, prompt], dense=True, backend=backend
    )
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


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_step_confidences_are_the_kernels_by_hand(backend):
    """The one step-confidence definition evaluation and CCRL share: hand-computed per mode, by the
    kernel and by its plain-torch definition; a step whose only token went to an earlier step has none."""
    from fastcomt.rewards import step_confidences

    lps = [math.log(0.5), math.log(0.8), math.log(0.2), 0.0, math.log(0.9)]
    graded = [
        GradedCompletion(
            "1", True, ("s0", "s1", "s2"), (1, 0, 1), ("gold",) * 3, ((0, 3), (3, 4), (3, 4)), (0, 0, 0, 1, -1)
        ),  # step 2 shares step 1's token
        GradedCompletion(None, False, (), (), (), (), ()),
    ]
    rows = [lps, [math.log(0.3)]]
    geomean = step_confidences(rows, graded, backend=backend)
    assert geomean[0][0] == pytest.approx((0.5 * 0.8 * 0.2) ** (1 / 3), rel=1e-6)
    assert geomean[0][1] == pytest.approx(1.0) and geomean[0][2] is None
    assert geomean[1] == []
    for mode, expected in (("min", [0.2, 1.0]), ("first", [0.5, 1.0])):
        assert step_confidences(rows, graded, confidence=mode, backend=backend)[0][:2] == pytest.approx(
            expected, rel=1e-6
        )
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


def _two_level_batch(seed=0):
    """Graded executions of 3 problems x 2 plans x 3 executions, random right/wrong steps and log-probs."""
    gen = torch.Generator().manual_seed(seed)
    graded, rows = [], []
    for b in range(18):
        k = 1 + b % 4
        correct = torch.randint(0, 2, (k,), generator=gen).tolist()
        tokens = [step for step in range(k) for _ in range(1 + (b + step) % 3)] + [-1]
        spans = tuple((tokens.index(s), len(tokens) - 1 - tokens[::-1].index(s)) for s in range(k))
        graded.append(
            GradedCompletion(
                "1", bool(b % 3), tuple(f"s{s}" for s in range(k)), tuple(correct), ("gold",) * k, spans, tuple(tokens)
            )
        )
        rows.append(-torch.rand(len(tokens), generator=gen) * 2)
    logprobs = torch.zeros(18, max(len(r) for r in rows))
    for b, r in enumerate(rows):
        logprobs[b, : len(r)] = r
    groups = torch.arange(18) // 3
    return logprobs, graded, groups, groups // 2


@pytest.mark.parametrize(
    "options",
    [{}, {"confidence": "min", "advantage": "dr_grpo"}, {"confidence": "first", "step_reward": "signed", "lam": 1.0}],
)
def test_backends_give_the_same_rewards(options):
    """The plain-torch definition (the CPU default) and the kernel agree on every output, two-level
    advantages included, and the kernel's launch options are accepted by both."""
    logprobs, graded, groups, problems = _two_level_batch()
    kernel = ccrl_batch_rewards(
        logprobs, graded, groups, problems, dense=True, backend="triton", max_problem_size=8, **options
    )
    torch_ = ccrl_batch_rewards(
        logprobs, graded, groups, problems, dense=True, backend="torch", max_problem_size=8, **options
    )
    auto = ccrl_batch_rewards(logprobs, graded, groups, problems, dense=True, **options)
    for a, b, c in zip(kernel, torch_, auto):
        assert b.dtype == torch.float32 and b.device == logprobs.device
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(c, b, rtol=0, atol=0)  # auto on CPU tensors is the torch backend
    assert kernel.plan_advantages.abs().sum() > 0 and kernel.step_confidence.abs().sum() > 0


def test_backend_choice():
    assert resolve_reward_backend("auto", torch.device("cpu")) == "torch"
    assert resolve_reward_backend("auto", torch.device("cuda")) == "triton"
    assert resolve_reward_backend("triton", torch.device("cpu")) == "triton"
    logprobs, graded, groups, _ = _two_level_batch()
    with pytest.raises(ValueError, match=r"backend: expected one of \('auto', 'triton', 'torch'\), got 'cuda'"):
        ccrl_batch_rewards(logprobs, graded, groups, backend="cuda")
