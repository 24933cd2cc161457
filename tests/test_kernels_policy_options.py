"""The peer-semantics options of linear_policy_loss against the fp64 full-logits reference and hand
computations: the caller's loss normaliser (TRL's token count of the whole generation batch, verl's
global counts), TRL's delta, bias-corrected KL and importance ratios, verl's dual clip, and the
LM-head variants (bias, logit scale, softcap), values and gradients of hidden, weight and bias."""

import pytest
import torch
from kernels_helpers import TINY_BLOCK_V, TINY_CHUNK_ROWS, leaves, make_problem, max_abs, rel_l2

from fastcomt.kernels import linear_policy_loss, lm_head_config, reference_linear_policy_loss


@pytest.fixture(autouse=True)
def tiny_chunks():
    with lm_head_config(chunk_rows=TINY_CHUNK_ROWS, block_v=TINY_BLOCK_V):
        yield


def _run(fn, p, dtype, **kwargs):
    h, w = leaves(p.hidden, p.weight, dtype=dtype)
    cast = lambda t: t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t  # noqa: E731
    loss, _ = fn(
        h, w, p.targets, p.mask, cast(p.advantages), cast(p.old_logprobs), **{k: cast(v) for k, v in kwargs.items()}
    )
    loss.backward()
    return loss.detach(), h.grad, w.grad


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo"])
def test_loss_normalizer_matches_reference(loss_type):
    p = make_problem(seed=30)
    got = _run(linear_policy_loss, p, torch.float32, loss_type=loss_type, loss_normalizer=torch.tensor(2.5))
    want = _run(reference_linear_policy_loss, p, torch.float64, loss_type=loss_type, loss_normalizer=2.5)
    assert max_abs(got[0], want[0]) <= 1e-6
    assert rel_l2(got[1], want[1]) <= 1e-5 and rel_l2(got[2], want[2]) <= 1e-5
    # grpo: the per-sequence means summed, over the normaliser instead of B.
    plain, _, _ = _run(linear_policy_loss, p, torch.float32, loss_type=loss_type)
    if loss_type == "grpo":
        assert abs(got[0].item() - plain.item() * p.mask.shape[0] / 2.5) <= 1e-6


@pytest.mark.parametrize("normalizer", [37.0, torch.tensor(52.5)], ids=["number", "tensor"])
def test_loss_normalizer_replaces_the_local_token_count(normalizer):
    p = make_problem(seed=31)
    got = _run(linear_policy_loss, p, torch.float32, loss_normalizer=normalizer)
    want = _run(reference_linear_policy_loss, p, torch.float64, loss_normalizer=normalizer)
    assert max_abs(got[0], want[0]) <= 1e-6
    assert rel_l2(got[1], want[1]) <= 1e-5 and rel_l2(got[2], want[2]) <= 1e-5
    # Same token sum as the local-mean dapo loss, divided by the caller's count instead.
    local, _, _ = _run(linear_policy_loss, p, torch.float32)
    count = float(p.mask.sum())
    assert abs(got[0].item() - local.item() * count / float(normalizer)) <= 1e-6


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"loss_normalizer": 0.0}, "loss_normalizer: expected a positive number"),
        ({"loss_normalizer": torch.ones(2)}, "loss_normalizer: expected a 0-dim real tensor"),
    ],
)
def test_bad_loss_normalizer_names_it(kwargs, message):
    p = make_problem(seed=32, batch=1, seq_len=2)
    with pytest.raises(ValueError, match=message):
        linear_policy_loss(p.hidden, p.weight, p.targets, p.mask, p.advantages, p.old_logprobs, **kwargs)


def _variants(p):
    gen = torch.Generator().manual_seed(40)
    weights = torch.exp(0.4 * torch.randn(p.mask.shape, generator=gen))
    weights[1, 0] = 0.0  # a token masked out by the importance-sampling bounds
    seq_weights = torch.tensor([1.3, 0.0, 0.8, 2.0])
    kl = {"ref_logprobs": p.ref_logprobs, "beta": 0.1}
    return {
        "delta": {"delta": 1.25},
        "dual_clip": {"clip_ratio_c": 1.1},
        "is_token": {"is_weights": weights},
        "is_sequence": {"is_weights": seq_weights},
        "bias_corrected_kl": {**kl, "bias_corrected_kl": True},
        "bias": {"bias": True},
        "scale": {"logit_scale": 0.7},
        "softcap": {"softcap": 2.0},
        "everything": {
            **kl,
            "bias_corrected_kl": True,
            "delta": 1.4,
            "clip_ratio_c": 2.0,
            "is_weights": weights,
            "behaviour_logprobs": p.behaviour_logprobs,
            "tis_cap": 1.5,
            "bias": True,
            "logit_scale": 1.3,
            "softcap": 3.0,
            "temperature": 0.8,
            "entropy_coef": 0.01,
        },
    }


def _run_variant(fn, p, dtype, loss_type, options):
    options = dict(options)
    bias = None
    if options.pop("bias", False):
        bias = torch.randn(p.weight.shape[0], generator=torch.Generator().manual_seed(41)).to(dtype).requires_grad_()
    h, w = leaves(p.hidden, p.weight, dtype=dtype)
    cast = lambda t: t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t  # noqa: E731
    loss, _ = fn(
        h,
        w,
        p.targets,
        p.mask,
        cast(p.token_advantages),
        cast(p.old_logprobs),
        loss_type=loss_type,
        bias=bias,
        **{k: cast(v) for k, v in options.items()},
    )
    loss.backward()
    return loss.detach(), h.grad, w.grad, None if bias is None else bias.grad


@pytest.mark.parametrize(
    "variant, loss_type",
    [
        (v, "dapo")
        for v in ("delta", "dual_clip", "is_token", "is_sequence", "bias_corrected_kl", "bias", "scale", "softcap")
    ]
    + [("everything", "grpo"), ("everything", "dapo")],
)
def test_peer_options_and_head_variants_match_reference(variant, loss_type):
    p = make_problem(seed=42)
    options = _variants(p)[variant]
    got = _run_variant(linear_policy_loss, p, torch.float32, loss_type, options)
    want = _run_variant(reference_linear_policy_loss, p, torch.float64, loss_type, options)
    assert max_abs(got[0], want[0]) <= 1e-5
    for name, a, b in zip(("dh", "dW", "dbias"), got[1:], want[1:]):
        if b is None:
            assert a is None, name
        else:
            assert rel_l2(a, b) <= 1e-5, name


def test_options_change_the_loss():
    # Each option is live on this problem (checked on the cheap reference): the loss differs without it.
    p = make_problem(seed=42)
    loss = lambda options: _run_variant(reference_linear_policy_loss, p, torch.float64, "dapo", options)[0]  # noqa: E731
    plain = loss({})
    for name, options in _variants(p).items():
        base = loss({**options, "bias_corrected_kl": False}) if name == "bias_corrected_kl" else plain
        assert abs(loss(options) - base) > 1e-6, name


def test_neutral_options_leave_every_value_bit_identical():
    # The row kernel takes these options at run time (delta and the dual clip off at +inf, the IS
    # weight read only when given): switched on with neutral values, nothing may change, not even
    # the last bit of the loss or of a gradient.
    p = make_problem(seed=44)
    base = {"ref_logprobs": p.ref_logprobs, "beta": 0.1, "behaviour_logprobs": p.behaviour_logprobs, "tis_cap": 1.5}
    plain = _run_variant(linear_policy_loss, p, torch.float32, "dapo", base)
    neutral = {**base, "delta": 1e30, "clip_ratio_c": 1e30, "is_weights": torch.ones(p.mask.shape)}
    got = _run_variant(linear_policy_loss, p, torch.float32, "dapo", neutral)
    for name, a, b in zip(("loss", "dh", "dW"), got[:3], plain[:3]):
        assert torch.equal(a, b), name


def test_dual_clip_hand_case():
    # One token, A = -1, ratio e^1.0 = 2.718 > c = 2: loss = -A * c = 2 and no gradient.
    h = torch.tensor([[1.0, 0.0]], requires_grad=True)
    w = torch.tensor([[2.0, 0.0], [0.0, 0.0]], requires_grad=True)
    target = torch.tensor([0])
    logp = torch.log_softmax(torch.tensor([2.0, 0.0]), 0)[0]
    old = (logp - 1.0).reshape(1)
    loss, _ = linear_policy_loss(
        h, w, target, torch.ones(1), torch.tensor([-1.0]), old, eps_low=0.2, eps_high=0.2, clip_ratio_c=2.0
    )
    loss.backward()
    assert abs(loss.item() - 2.0) < 1e-6
    assert h.grad.abs().max() == 0 and w.grad.abs().max() == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"delta": 1.0}, "delta: expected None or a finite number > 1"),
        ({"clip_ratio_c": 0.5}, "clip_ratio_c: expected None or a finite number > 1"),
        ({"is_weights": torch.ones(3)}, "is_weights"),
        ({"softcap": 0.0}, "softcap: expected None or a positive finite number"),
    ],
)
def test_bad_peer_options_name_them(kwargs, message):
    p = make_problem(seed=43, batch=2, seq_len=2)
    with pytest.raises((ValueError, TypeError), match=message):
        linear_policy_loss(p.hidden, p.weight, p.targets, p.mask, p.advantages, p.old_logprobs, **kwargs)
