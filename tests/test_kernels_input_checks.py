"""Bad kernel inputs raise a ValueError naming the argument instead of returning NaN or garbage:
non-finite policy-loss inputs (opt-in `check_finite`, one host sync), eps_low >= 1, infinite
temperature, and a CCRL reward batch whose problem ids exceed `num_problems`."""

import math

import pytest
import torch

from fastcomt.kernels import linear_logprobs, linear_policy_loss, reference_linear_policy_loss
from fastcomt.kernels.rewards import ccrl_rewards
from fastcomt.kernels.rewards_reference import ccrl_rewards_reference

B, T, H, V = 2, 4, 8, 16


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, T, H, generator=g)
    weight = 0.3 * torch.randn(V, H, generator=g)
    targets = torch.randint(0, V, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, 3] = False  # one padding token
    advantages = torch.tensor([1.0, -0.5])
    old_logp = torch.full((B, T), -2.0)
    return hidden, weight, targets, mask, advantages, old_logp


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the interpreter warns while it computes the NaN loss
@pytest.mark.parametrize("loss_fn", [linear_policy_loss, reference_linear_policy_loss])
@pytest.mark.parametrize(
    "name, spoil",
    [
        ("hidden", lambda x: x[0].__setitem__((0, 1, 2), math.nan)),
        ("weight", lambda x: x[1].__setitem__((3, 0), math.inf)),
        ("advantages", lambda x: x[4].__setitem__(0, math.nan)),
        ("old_logprobs", lambda x: x[5].__setitem__((0, 2), math.nan)),
    ],
)
def test_non_finite_inputs_raise_with_check_finite(loss_fn, name, spoil):
    inputs = list(_inputs())
    spoil(inputs)
    loss, _ = loss_fn(*inputs, loss_type="dapo")  # default: no check (no host sync) and a NaN loss
    assert not torch.isfinite(loss)
    with pytest.raises(ValueError, match=f"^{name}: expected finite values"):
        loss_fn(*inputs, loss_type="dapo", check_finite=True)


@pytest.mark.parametrize("loss_fn", [linear_policy_loss, reference_linear_policy_loss])
def test_padding_may_hold_non_finite_values(loss_fn):
    hidden, weight, targets, mask, advantages, old = _inputs()
    old[1, 3] = -math.inf  # masked-out token: ignored by the loss and by the check
    if loss_fn is linear_policy_loss:
        hidden[1, 3] = math.nan  # the fused path drops masked rows before its GEMM (the reference does not)
    ref_loss, _ = reference_linear_policy_loss(*_inputs(), loss_type="dapo")
    loss, _ = loss_fn(hidden, weight, targets, mask, advantages, old, loss_type="dapo", check_finite=True)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss_fn", [linear_policy_loss, reference_linear_policy_loss])
@pytest.mark.parametrize(
    "option, value, message",
    [
        ("eps_low", 1.0, r"eps_low: expected a number in \[0, 1\)"),
        ("eps_low", 1.5, r"eps_low: expected a number in \[0, 1\)"),
        ("temperature", math.inf, "temperature: expected a positive finite number, got inf"),
        ("eps_high", math.inf, "eps_high: expected a non-negative finite number, got inf"),
    ],
)
def test_scalar_options(loss_fn, option, value, message):
    with pytest.raises(ValueError, match=message):
        loss_fn(*_inputs(), **{option: value})


def test_logprobs_refuse_infinite_temperature():
    hidden, weight, targets, *_ = _inputs()
    with pytest.raises(ValueError, match="temperature: expected a positive finite number, got inf"):
        linear_logprobs(hidden, weight, targets, temperature=math.inf)


def _reward_batch():
    logprobs = torch.full((4, 6), math.log(0.5))
    span_ids = torch.tensor([[0, 0, -1, 1, -1, -1]] * 4, dtype=torch.int32)
    step_correct = torch.tensor([[1.0, 0.0]] * 4)
    answer_correct = torch.tensor([1.0, 0.0, 1.0, 1.0])
    group_ids = torch.tensor([0, 0, 1, 1])
    problem_ids = torch.tensor([0, 0, 3, 3])
    return logprobs, span_ids, step_correct, answer_correct, group_ids, problem_ids


def test_num_problems_below_the_problem_ids_raises():
    batch = _reward_batch()
    with pytest.raises(ValueError, match="num_problems: expected more than the largest problem_ids value 3, got 2"):
        ccrl_rewards(*batch, num_problems=2, max_problem_size=2)


def test_max_problem_size_below_the_largest_problem_raises():
    batch = _reward_batch()
    with pytest.raises(ValueError, match="max_problem_size: expected at least 2 .*got 1"):
        ccrl_rewards(*batch, num_problems=4, max_problem_size=1)


def test_given_sizes_that_fit_match_the_reference():
    batch = _reward_batch()
    out = ccrl_rewards(*batch, num_problems=4, max_problem_size=2)
    ref = ccrl_rewards_reference(*batch)
    torch.testing.assert_close(out.rewards.double(), ref.rewards, atol=1e-6, rtol=1e-6)
    # By hand: each execution has steps (conf 0.5, right) and (conf 0.5, wrong): Brier 1 - 0.5^2 each.
    step_mean = ((1 - 0.5**2) + (1 - 0.5**2)) / 2
    torch.testing.assert_close(out.rewards, torch.tensor([1.0, 0.0, 1.0, 1.0]) + 0.5 * step_mean)
