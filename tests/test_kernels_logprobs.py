"""linear_logprobs against the fp64 full-logits reference, plus layouts, dtypes, masks and bad input."""

import math

import pytest
import torch
from kernels_helpers import TINY_BLOCK_V, TINY_CHUNK_ROWS, make_problem, max_abs

from fastcomt.kernels import linear_logprobs, lm_head_config, reference_linear_logprobs


@pytest.fixture(autouse=True)
def tiny_chunks():
    with lm_head_config(chunk_rows=TINY_CHUNK_ROWS, block_v=TINY_BLOCK_V):
        yield


def _reference(p, mask=None, temperature=1.0):
    return reference_linear_logprobs(
        p.hidden.double(), p.weight.double(), p.targets, mask=mask, temperature=temperature
    )


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_matches_fp64_reference_with_mask(temperature):
    p = make_problem(seed=1)
    out = linear_logprobs(p.hidden, p.weight, p.targets, mask=p.mask, temperature=temperature)
    ref = _reference(p, p.mask, temperature)
    for name, got, want in zip(("logprobs", "entropy", "maxprob"), out, ref):
        assert got.shape == p.targets.shape and got.dtype == torch.float32, name
        assert max_abs(got, want) <= 1e-5, name
        assert torch.all(got[~p.mask] == 0), f"masked {name} must be 0"


def test_flat_layout_and_no_mask():
    p = make_problem(batch=3, seq_len=11, vocab_size=301, seed=2)  # N=33, V=301: neither divides 7 or 128
    h, t = p.hidden.reshape(33, -1), p.targets.reshape(33)
    out = linear_logprobs(h, p.weight, t)
    ref = reference_linear_logprobs(h.double(), p.weight.double(), t)
    for got, want in zip(out, ref):
        assert got.shape == (33,)
        assert max_abs(got, want) <= 1e-5


def test_hand_computed_two_token_vocab():
    # logits (1, 0) -> p = (e/(e+1), 1/(e+1)); entropy = -sum p log p; target 1.
    hidden = torch.tensor([[1.0]])
    weight = torch.tensor([[1.0], [0.0]])
    logp, ent, maxp = linear_logprobs(hidden, weight, torch.tensor([1]))
    p0 = math.e / (math.e + 1)
    assert logp.item() == pytest.approx(-math.log(math.e + 1), abs=1e-6)
    assert ent.item() == pytest.approx(-(p0 * math.log(p0) + (1 - p0) * math.log(1 - p0)), abs=1e-6)
    assert maxp.item() == pytest.approx(p0, abs=1e-6)


def test_large_logits_stay_finite():
    # Logits around +-300 overflow exp() unless the max is subtracted; entropy must not cancel away.
    p = make_problem(batch=2, seq_len=3, seed=3)
    out = linear_logprobs(p.hidden * 60, p.weight, p.targets)
    ref = reference_linear_logprobs((p.hidden * 60).double(), p.weight.double(), p.targets)
    for got, want in zip(out, ref):
        assert torch.isfinite(got).all()
        assert max_abs(got, want) <= 1e-3 * max(1.0, float(want.abs().max()))


def test_all_masked_gives_zeros_and_single_token():
    p = make_problem(batch=2, seq_len=4, seed=4)
    out = linear_logprobs(p.hidden, p.weight, p.targets, mask=torch.zeros_like(p.mask))
    assert all(torch.all(o == 0) for o in out)
    one = torch.zeros_like(p.mask)
    one[1, 2] = True
    out = linear_logprobs(p.hidden, p.weight, p.targets, mask=one)
    ref = _reference(p, one)
    for got, want in zip(out, ref):
        assert max_abs(got, want) <= 1e-5


@pytest.mark.parametrize("dtype, tol", [(torch.bfloat16, 1e-4), (torch.float16, 1e-4)])
def test_low_precision_inputs(dtype, tol):
    p = make_problem(seed=5)
    h, w = p.hidden.to(dtype), p.weight.to(dtype)
    out = linear_logprobs(h, w, p.targets, mask=p.mask)
    # The reference sees the same rounded inputs, so only the computation's error remains.
    ref = reference_linear_logprobs(h.double(), w.double(), p.targets, mask=p.mask)
    for got, want in zip(out, ref):
        assert got.dtype == torch.float32
        assert max_abs(got, want) <= tol


def test_no_autograd_and_inputs_untouched():
    p = make_problem(batch=2, seq_len=3, seed=6)
    h = p.hidden.clone().requires_grad_()
    logp, _, _ = linear_logprobs(h, p.weight, p.targets)
    assert not logp.requires_grad
    assert torch.equal(h.detach(), p.hidden)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda a: a.update(hidden=a["hidden"][0, 0]), "hidden"),
        (lambda a: a.update(hidden=a["hidden"].long()), "hidden"),
        (lambda a: a.update(weight=a["weight"][:, :-1]), "weight"),
        (lambda a: a.update(weight=a["weight"].double()), "weight"),
        (lambda a: a.update(targets=a["targets"][:, :-1]), "targets"),
        (lambda a: a.update(targets=a["targets"].float()), "targets"),
        (lambda a: a["targets"].__setitem__((0, 0), 333), "targets"),
        (lambda a: a["targets"].__setitem__((1, 0), -1), "targets"),
        (lambda a: a.update(mask=a["targets"][:, :-1] > 0), "mask"),
        (lambda a: a.update(temperature=0.0), "temperature"),
    ],
)
def test_bad_input_raises(change, match):
    p = make_problem(batch=2, seq_len=3, seed=7)
    args = {"hidden": p.hidden, "weight": p.weight, "targets": p.targets.clone(), "mask": None, "temperature": 1.0}
    change(args)
    with pytest.raises(ValueError, match=match):
        linear_logprobs(
            args["hidden"], args["weight"], args["targets"], mask=args["mask"], temperature=args["temperature"]
        )
    with pytest.raises(ValueError, match=match):
        reference_linear_logprobs(
            args["hidden"], args["weight"], args["targets"], mask=args["mask"], temperature=args["temperature"]
        )


def test_out_of_range_target_on_masked_token_is_allowed():
    p = make_problem(batch=2, seq_len=3, seed=8)
    targets = p.targets.clone()
    targets[0, 2] = -100  # padding id under a zero mask
    mask = torch.ones_like(p.mask)
    mask[0, 2] = False
    out = linear_logprobs(p.hidden, p.weight, targets, mask=mask)
    ref = reference_linear_logprobs(p.hidden.double(), p.weight.double(), targets, mask=mask)
    assert max_abs(out[0], ref[0]) <= 1e-5
