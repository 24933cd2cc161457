"""linear_logprobs_autograd against the fp64 full-logits reference: values and the gradients of
hidden, weight and bias through both log-probs and entropies, over layouts, dtypes, masks, the
LM-head variants (bias, logit scale, softcap, temperature) and edge cases; plus bad input."""

import pytest
import torch
from kernels_helpers import TINY_BLOCK_V, TINY_CHUNK_ROWS, make_problem, max_abs, rel_l2

from fastcomt.kernels import linear_logprobs_autograd, lm_head_config, reference_linear_logprobs_autograd

VARIANTS = {
    "plain": {},
    "temperature": {"temperature": 0.7},
    "bias": {"bias": True},
    "scale": {"logit_scale": 0.6},
    "softcap": {"softcap": 3.0},
    "everything": {"bias": True, "logit_scale": 1.7, "softcap": 4.0, "temperature": 1.3},
}


@pytest.fixture(autouse=True)
def tiny_chunks():
    with lm_head_config(chunk_rows=TINY_CHUNK_ROWS, block_v=TINY_BLOCK_V):
        yield


def _run(fn, p, dtype, options, mask, upstream=("logp", "entropy"), flat=False, weight_grad=True):
    gen = torch.Generator().manual_seed(5)
    # bf16-representable, so the bf16 test's fp64 reference sees the same bias.
    bias = torch.randn(p.weight.shape[0], generator=gen).bfloat16().float() if options.get("bias") else None
    kwargs = {k: v for k, v in options.items() if k != "bias"}
    h = p.hidden.detach().to(dtype).requires_grad_()
    w = p.weight.detach().to(dtype).requires_grad_(weight_grad)
    b = None if bias is None else bias.to(dtype).requires_grad_()
    targets = p.targets
    hh, tt, mm = h, targets, mask
    if flat:
        hh, tt = h.reshape(-1, h.shape[-1]), targets.reshape(-1)
        mm = None if mask is None else mask.reshape(-1)
    logp, entropy = fn(hh, w, tt, mask=mm, bias=b, **kwargs)
    # Independent random upstream gradients for the two outputs, so each path is checked on its own.
    g_logp = torch.randn(logp.shape, generator=gen, dtype=torch.float64)
    g_ent = torch.randn(entropy.shape, generator=gen, dtype=torch.float64)
    total = 0.0
    if "logp" in upstream:
        total = total + (logp.double() * g_logp).sum()
    if "entropy" in upstream:
        total = total + (entropy.double() * g_ent).sum()
    total.backward()
    return logp.detach(), entropy.detach(), h.grad, w.grad, None if b is None else b.grad


def _check(got, want, tol=1e-5, value_tol=1e-5):
    for name, a, b in zip(("logp", "entropy"), got[:2], want[:2]):
        assert a.dtype == torch.float32, name
        assert max_abs(a, b) <= value_tol, name
    for name, a, b in zip(("dh", "dW", "dbias"), got[2:], want[2:]):
        if b is None:
            assert a is None, name
        else:
            assert a is not None, name
            assert rel_l2(a, b) <= tol, name


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_matches_fp64_reference(variant):
    p = make_problem(seed=3)
    options = VARIANTS[variant]
    got = _run(linear_logprobs_autograd, p, torch.float32, options, p.mask)
    want = _run(reference_linear_logprobs_autograd, p, torch.float64, options, p.mask)
    _check(got, want)


@pytest.mark.parametrize("upstream", [("logp",), ("entropy",)])
def test_gradient_through_each_output_alone(upstream):
    p = make_problem(seed=4)
    options = VARIANTS["everything"]
    got = _run(linear_logprobs_autograd, p, torch.float32, options, p.mask, upstream=upstream)
    want = _run(reference_linear_logprobs_autograd, p, torch.float64, options, p.mask, upstream=upstream)
    _check(got, want)


def test_flat_layout_no_mask_and_frozen_weight():
    p = make_problem(seed=6, batch=2, seq_len=5)
    options = {"softcap": 2.5, "temperature": 0.9}
    got = _run(linear_logprobs_autograd, p, torch.float32, options, None, flat=True, weight_grad=False)
    want = _run(reference_linear_logprobs_autograd, p, torch.float64, options, None, flat=True, weight_grad=False)
    assert got[3] is None and want[3] is None
    _check(got, want)


def test_bfloat16_inputs():
    p = make_problem(seed=7)
    options = VARIANTS["everything"]
    got = _run(linear_logprobs_autograd, p, torch.bfloat16, options, p.mask)
    # Same bf16-rounded inputs, computed in fp64: what is left is the kernel's fp32 math.
    rounded = make_problem(seed=7)
    rounded.hidden, rounded.weight = p.hidden.bfloat16().double(), p.weight.bfloat16().double()
    want = _run(reference_linear_logprobs_autograd, rounded, torch.float64, options, p.mask)
    assert got[2].dtype == torch.bfloat16 and got[3].dtype == torch.bfloat16 and got[4].dtype == torch.bfloat16
    _check(got, want, tol=1e-2, value_tol=1e-4)


def test_masked_tokens_read_zero_and_get_no_gradient():
    p = make_problem(seed=8)
    logp, entropy, dh, _, _ = _run(linear_logprobs_autograd, p, torch.float32, {"bias": True}, p.mask)
    inactive = ~p.mask
    assert inactive.any()
    assert (logp[inactive] == 0).all() and (entropy[inactive] == 0).all()
    assert (dh[inactive] == 0).all()


def test_empty_mask_gives_zeros_and_zero_gradients():
    p = make_problem(seed=9)
    empty = torch.zeros_like(p.mask)
    logp, entropy, dh, dw, db = _run(linear_logprobs_autograd, p, torch.float32, {"bias": True}, empty)
    assert (logp == 0).all() and (entropy == 0).all()
    assert (dh == 0).all() and (dw == 0).all() and (db == 0).all()


def test_one_token_matches_hand_softmax():
    # One token over a 3-word vocabulary, checked against the closed form.
    h = torch.tensor([[1.0, -2.0]], requires_grad=True)
    w = torch.tensor([[0.5, 0.0], [0.0, 1.0], [1.0, 1.0]], requires_grad=True)
    target = torch.tensor([2])
    logp, entropy = linear_logprobs_autograd(h, w, target)
    z = torch.tensor([0.5, -2.0, -1.0], dtype=torch.float64)
    p = torch.softmax(z, 0)
    assert abs(logp.item() - float(torch.log(p[2]))) < 1e-6
    assert abs(entropy.item() - float(-(p * p.log()).sum())) < 1e-6
    logp.sum().backward()
    # d log p_t / dh = W_t - sum_j p_j W_j
    want_dh = w.detach().double()[2] - p @ w.detach().double()
    assert max_abs(h.grad[0], want_dh) < 1e-6


def test_softcap_bounds_the_logits():
    # With a tiny softcap every logit lies in (-c, c): the entropy is near log V whatever the weights.
    p = make_problem(seed=10)
    logp, entropy = linear_logprobs_autograd(p.hidden * 100, p.weight, p.targets, softcap=1e-3)
    vocab = p.weight.shape[0]
    assert max_abs(entropy, torch.full_like(entropy, torch.log(torch.tensor(float(vocab))))) < 1e-4
    # |z_j| < c for every j, so |logp + log V| < 2c.
    assert max_abs(logp, torch.full_like(logp, -torch.log(torch.tensor(float(vocab))))) < 2e-3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"bias": torch.zeros(5)}, "bias: expected shape [333]"),
        ({"bias": torch.zeros(333, dtype=torch.float64)}, "bias: expected weight's dtype"),
        ({"logit_scale": 0.0}, "logit_scale: expected a positive finite number"),
        ({"softcap": -1.0}, "softcap: expected None or a positive finite number"),
        ({"temperature": 0.0}, "temperature"),
    ],
)
def test_bad_input_names_the_argument(kwargs, message):
    p = make_problem(seed=11, batch=1, seq_len=2)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        linear_logprobs_autograd(p.hidden, p.weight, p.targets, **kwargs)


def test_target_out_of_range_raises():
    p = make_problem(seed=12, batch=1, seq_len=3)
    targets = p.targets.clone()
    targets[0, 1] = 333
    with pytest.raises(ValueError, match="targets"):
        linear_logprobs_autograd(p.hidden, p.weight, targets)


def test_custom_ops_pass_opcheck():
    # Schema, fake (meta) functions and autograd glue of both passes agree with a real call.
    from fastcomt.kernels.linear_logprobs_autograd import linear_logprobs_backward_op, linear_logprobs_forward_op

    g = torch.Generator().manual_seed(13)
    hidden = torch.randn(6, 8, generator=g, requires_grad=True)
    weight = torch.randn(30, 8, generator=g, requires_grad=True)
    bias = torch.randn(30, generator=g, requires_grad=True)
    targets = torch.randint(0, 30, (6,), generator=g)
    active = torch.tensor([1, 1, 0, 1, 1, 1], dtype=torch.bool)
    options = {
        "temperature": 0.8,
        "logit_scale": 1.2,
        "softcap": 3.0,
        "chunk_rows": 4,
        "block_v": 32,
        "num_warps": 1,
        "fp32_logits": True,
    }
    torch.library.opcheck(linear_logprobs_forward_op, (hidden, weight, bias, targets, active), options)
    _, entropy, lse = linear_logprobs_forward_op(hidden, weight, bias, targets, active, **options)
    backward_args = (
        hidden.detach(),
        weight.detach(),
        bias.detach(),
        targets,
        active,
        lse.detach(),
        entropy.detach(),
        torch.randn(6, generator=g),
        None,
    )
    torch.library.opcheck(
        linear_logprobs_backward_op, backward_args, dict(options, need_dh=True, need_dw=True, need_dbias=True)
    )
