"""LM-head variants (bias, logit scale, Gemma softcap, with temperature) in the forward-only and SFT
fused functions, against the fp64 full-logits references: values and the gradients of hidden,
weight and bias. (The policy loss and the differentiable log-prob have their own variant tests.)"""

import pytest
import torch
from kernels_helpers import TINY_BLOCK_V, TINY_CHUNK_ROWS, leaves, make_problem, max_abs, rel_l2

from fastcomt.kernels import (
    linear_cross_entropy,
    linear_logprobs,
    lm_head_config,
    reference_linear_cross_entropy,
    reference_linear_logprobs,
)

HEAD = {"logit_scale": 1.4, "softcap": 2.5, "temperature": 0.8}


@pytest.fixture(autouse=True)
def tiny_chunks():
    with lm_head_config(chunk_rows=TINY_CHUNK_ROWS, block_v=TINY_BLOCK_V):
        yield


def _bias(p, dtype):
    return torch.randn(p.weight.shape[0], generator=torch.Generator().manual_seed(50)).to(dtype)


def test_logprobs_with_bias_scale_softcap():
    p = make_problem(seed=51)
    got = linear_logprobs(p.hidden, p.weight, p.targets, mask=p.mask, bias=_bias(p, torch.float32), **HEAD)
    want = reference_linear_logprobs(
        p.hidden.double(), p.weight.double(), p.targets, mask=p.mask, bias=_bias(p, torch.float64), **HEAD
    )
    for name, a, b in zip(("logp", "entropy", "maxprob"), got, want):
        assert max_abs(a, b) <= 1e-5, name
    # The variant changes the numbers (so the test above would see it ignored).
    plain = linear_logprobs(p.hidden, p.weight, p.targets, mask=p.mask)
    assert max_abs(plain[0], got[0]) > 1e-2


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_cross_entropy_with_bias_scale_softcap(reduction):
    p = make_problem(seed=52)
    targets = torch.where(p.mask, p.targets, -100)
    results = []
    for fn, dtype in ((linear_cross_entropy, torch.float32), (reference_linear_cross_entropy, torch.float64)):
        h, w, b = leaves(p.hidden, p.weight, _bias(p, dtype), dtype=dtype)
        loss = fn(h, w, targets, reduction=reduction, bias=b, **HEAD)
        upstream = torch.linspace(0.5, 1.5, loss.numel(), dtype=torch.float64).reshape(loss.shape)
        (loss.double() * upstream).sum().backward()
        results.append((loss.detach(), h.grad, w.grad, b.grad))
    (loss, gh, gw, gb), (want, wh, ww, wb) = results
    assert max_abs(loss, want) <= 1e-5
    for name, a, b in (("dh", gh, wh), ("dW", gw, ww), ("dbias", gb, wb)):
        assert rel_l2(a, b) <= 1e-5, name
