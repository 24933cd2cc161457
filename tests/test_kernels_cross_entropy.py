"""linear_cross_entropy against the fp64 full-logits reference (itself checked against
F.cross_entropy): reductions, ignored tokens, temperature, dtypes, frozen head, dW accumulation."""

import pytest
import torch
import torch.nn.functional as F
from kernels_helpers import TINY_BLOCK_V, TINY_CHUNK_ROWS, leaves, make_problem, max_abs, rel_l2

import fastcomt
from fastcomt.kernels import (
    LMHeadConfig,
    fused_lm_head,
    linear_cross_entropy,
    lm_head_config,
    reference_linear_cross_entropy,
)


@pytest.fixture(autouse=True)
def tiny_chunks():
    with lm_head_config(chunk_rows=TINY_CHUNK_ROWS, block_v=TINY_BLOCK_V):
        yield


def _targets_with_ignored(p, ignore_index=-100):
    targets = p.targets.clone()
    targets[~p.mask] = ignore_index
    return targets


def _run(fn, p, targets, dtype, upstream=None, **kw):
    h, w = leaves(p.hidden, p.weight, dtype=dtype)
    loss = fn(h, w, targets, **kw)
    (loss * upstream if upstream is not None else loss).sum().backward()
    return loss.detach(), h.grad, w.grad


def test_reference_matches_torch_cross_entropy():
    p = make_problem(seed=10)
    targets = _targets_with_ignored(p)
    h, w = p.hidden.double(), p.weight.double()
    logits = (h @ w.T / 0.8).reshape(-1, w.shape[0])
    for reduction in ("mean", "sum", "none"):
        want = F.cross_entropy(logits, targets.reshape(-1), reduction=reduction)
        got = reference_linear_cross_entropy(h, w, targets, reduction=reduction, temperature=0.8)
        assert max_abs(got.reshape(-1) if reduction == "none" else got, want) <= 1e-12


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_matches_fp64_reference(reduction, temperature):
    p = make_problem(seed=11)
    targets = _targets_with_ignored(p)
    upstream = torch.rand(p.targets.shape, dtype=torch.float64) + 0.5 if reduction == "none" else 2.5
    got = _run(linear_cross_entropy, p, targets, torch.float32, upstream, reduction=reduction, temperature=temperature)
    want = _run(
        reference_linear_cross_entropy,
        p,
        targets,
        torch.float64,
        upstream,
        reduction=reduction,
        temperature=temperature,
    )
    assert got[0].shape == want[0].shape
    assert max_abs(got[0], want[0]) <= 1e-5 * max(1.0, float(want[0].abs().max()))
    assert rel_l2(got[1], want[1]) <= 1e-5
    assert rel_l2(got[2], want[2]) <= 1e-5
    if reduction == "none":
        assert torch.all(got[0][~p.mask] == 0)


def test_flat_layout_custom_ignore_index_and_module():
    p = make_problem(batch=3, seq_len=11, vocab_size=301, seed=12)
    targets = _targets_with_ignored(p, ignore_index=-1).reshape(-1)
    flat = make_problem(batch=3, seq_len=11, vocab_size=301, seed=12)
    flat.hidden = flat.hidden.reshape(33, -1)
    module = fastcomt.FusedLinearCrossEntropy(ignore_index=-1)
    got = _run(lambda h, w, t: module(h, w, t), flat, targets, torch.float32)
    want = _run(reference_linear_cross_entropy, flat, targets, torch.float64, ignore_index=-1)
    assert max_abs(got[0], want[0]) <= 1e-5
    assert rel_l2(got[1], want[1]) <= 1e-5 and rel_l2(got[2], want[2]) <= 1e-5


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_all_ignored_gives_zero_loss_and_zero_grads(reduction):
    p = make_problem(batch=2, seq_len=5, seed=13)
    targets = torch.full_like(p.targets, -100)
    loss, gh, gw = _run(linear_cross_entropy, p, targets, torch.float32, reduction=reduction)
    assert torch.all(loss == 0)
    assert torch.all(gh == 0) and torch.all(gw == 0)


def test_backward_twice_with_retained_graph_accumulates():
    p = make_problem(batch=2, seq_len=4, seed=20)
    h, w = leaves(p.hidden, p.weight, dtype=torch.float32)
    loss = linear_cross_entropy(h, w, p.targets)
    loss.backward(retain_graph=True)
    once = h.grad.clone(), w.grad.clone()
    loss.backward()
    assert torch.allclose(h.grad, 2 * once[0]) and torch.allclose(w.grad, 2 * once[1])


def test_single_token():
    p = make_problem(batch=1, seq_len=1, seed=14)
    got = _run(linear_cross_entropy, p, p.targets, torch.float32)
    want = _run(reference_linear_cross_entropy, p, p.targets, torch.float64)
    assert max_abs(got[0], want[0]) <= 1e-5
    assert rel_l2(got[1], want[1]) <= 1e-5 and rel_l2(got[2], want[2]) <= 1e-5


def test_frozen_weight_computes_no_dw(monkeypatch):
    calls = []
    original = fused_lm_head.gemm_into
    p = make_problem(seed=15)

    def spy(out, a, b, *, accumulate):  # records the dW GEMMs (output shaped like the weight)
        if out.shape == p.weight.shape:
            calls.append(accumulate)
        original(out, a, b, accumulate=accumulate)

    monkeypatch.setattr(fused_lm_head, "gemm_into", spy)
    h = p.hidden.clone().requires_grad_()
    w = p.weight.clone()  # frozen head: requires_grad False
    linear_cross_entropy(h, w, p.targets).backward()
    assert w.grad is None and calls == []
    hd = p.hidden.double().requires_grad_()
    reference_linear_cross_entropy(hd, p.weight.double(), p.targets).backward()
    assert rel_l2(h.grad, hd.grad) <= 1e-5
    # The spy does see the weight gradient when the head trains.
    linear_cross_entropy(h, p.weight.clone().requires_grad_(), p.targets).backward()
    assert calls and calls[0] is False and all(calls[1:])  # the first chunk writes dW, the rest add


@pytest.mark.parametrize("dtype, tol", [(torch.bfloat16, 1e-2), (torch.float16, 2e-3)])
def test_low_precision_inputs(dtype, tol):
    p = make_problem(seed=16)
    p.hidden, p.weight = p.hidden.to(dtype), p.weight.to(dtype)
    targets = _targets_with_ignored(p)
    loss, gh, gw = _run(linear_cross_entropy, p, targets, dtype)
    assert gh.dtype == dtype and gw.dtype == dtype
    want = _run(reference_linear_cross_entropy, p, targets, torch.float64)
    assert max_abs(loss, want[0]) <= 1e-4
    assert rel_l2(gh, want[1]) <= tol and rel_l2(gw, want[2]) <= tol


def test_dw_accumulated_in_weight_dtype_error():
    """bf16 accumulator over 10 chunks: one rounding per chunk instead of one at the end."""
    p = make_problem(batch=5, seq_len=8, hidden_size=32, vocab_size=400, seed=17)
    p.hidden, p.weight = p.hidden.to(torch.bfloat16), p.weight.to(torch.bfloat16)
    want = _run(reference_linear_cross_entropy, p, p.targets, torch.float64)[2]
    errors = {}
    for low in (False, True):
        cfg = LMHeadConfig(chunk_rows=4, block_v=256, accumulate_dw_in_weight_dtype=low)
        errors[low] = rel_l2(_run(linear_cross_entropy, p, p.targets, torch.bfloat16, config=cfg)[2], want)
    # fp32 accumulation: only the final cast to bf16 (~2**-9 relative per element).
    assert errors[False] <= 4e-3
    # bf16 accumulation: a few roundings more, still far below a gradient's own noise.
    assert errors[False] < errors[True] <= 2e-2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"reduction": "avg"}, "reduction"),
        ({"temperature": -1.0}, "temperature"),
        ({"ignore_index": 1.5}, "ignore_index"),
    ],
)
def test_bad_options_raise(kwargs, match):
    p = make_problem(batch=1, seq_len=2, seed=18)
    with pytest.raises(ValueError, match=match):
        linear_cross_entropy(p.hidden, p.weight, p.targets, **kwargs)


def test_out_of_range_target_raises():
    p = make_problem(batch=1, seq_len=3, seed=19)
    targets = p.targets.clone()
    targets[0, 1] = 10_000
    with pytest.raises(ValueError, match="targets"):
        linear_cross_entropy(p.hidden, p.weight, targets)
    with pytest.raises(ValueError, match="weight"):
        linear_cross_entropy(p.hidden, p.weight.T, p.targets)
