"""linear_policy_loss against the fp64 full-logits reference and against Liger-Kernel's
LigerFusedLinearGRPOLoss, for every loss type and option, plus edge cases and bad input."""

import math

import pytest
import torch
from kernels_helpers import TINY_BLOCK_V, TINY_CHUNK_ROWS, leaves, make_problem, max_abs, rel_l2

import fastcomt
from fastcomt.kernels import fused_lm_head, linear_policy_loss, lm_head_config, reference_linear_policy_loss

LOSS_TYPES = ["grpo", "bnpo", "dapo", "dr_grpo"]


@pytest.fixture(autouse=True)
def tiny_chunks():
    with lm_head_config(chunk_rows=TINY_CHUNK_ROWS, block_v=TINY_BLOCK_V):
        yield


def _options(p, variant):
    """Keyword arguments (besides loss_type) and the advantages of each tested variant."""
    kl = {"ref_logprobs": p.ref_logprobs, "beta": 0.1}
    tis = {"behaviour_logprobs": p.behaviour_logprobs, "tis_cap": 1.3}
    return {
        "plain": ({}, p.advantages),
        "kl": (kl, p.advantages),
        "tis": (tis, p.advantages),
        "tis_uncapped": ({"behaviour_logprobs": p.behaviour_logprobs}, p.advantages),
        "entropy": ({"entropy_coef": 0.03}, p.advantages),
        "token_advantages": ({}, p.token_advantages),
        "everything": (
            {**kl, **tis, "entropy_coef": 0.02, "temperature": 0.7, "eps_low": 0.1, "eps_high": 0.3},
            p.token_advantages,
        ),
    }[variant]


def _run(fn, p, dtype, advantages, old, mask=None, upstream=1.0, hidden=None, weight=None, **kwargs):
    h, w = leaves(p.hidden if hidden is None else hidden, p.weight if weight is None else weight, dtype=dtype)
    cast = lambda t: t.to(torch.float64) if (t is not None and dtype == torch.float64) else t  # noqa: E731
    kwargs = {k: cast(v) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    loss, metrics = fn(h, w, p.targets, p.mask if mask is None else mask, cast(advantages), cast(old), **kwargs)
    (loss * upstream).backward()
    return loss.detach(), h.grad, w.grad, metrics


def _assert_close(got, want, grad_tol=1e-5):
    loss, gh, gw, metrics = got
    want_loss, want_gh, want_gw, want_metrics = want
    assert math.isfinite(loss.item())
    assert max_abs(loss, want_loss) <= 1e-5
    assert rel_l2(gh, want_gh) <= grad_tol
    assert rel_l2(gw, want_gw) <= grad_tol
    assert set(metrics) == {"clip_frac_low", "clip_frac_high", "kl", "entropy", "ratio"}
    for name in metrics:
        assert not metrics[name].requires_grad
        assert max_abs(metrics[name], want_metrics[name]) <= 1e-5, name


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("variant", ["plain", "kl", "tis", "tis_uncapped", "entropy", "token_advantages", "everything"])
def test_matches_fp64_reference(loss_type, variant):
    p = make_problem(seed=21)
    kwargs, advantages = _options(p, variant)
    got = _run(linear_policy_loss, p, torch.float32, advantages, p.old_logprobs, loss_type=loss_type, **kwargs)
    want = _run(
        reference_linear_policy_loss, p, torch.float64, advantages, p.old_logprobs, loss_type=loss_type, **kwargs
    )
    _assert_close(got, want)
    if variant == "plain":
        # The problem is built so that both sides of the clip are exercised.
        assert want[3]["clip_frac_low"] > 0 and want[3]["clip_frac_high"] > 0


def test_on_policy_old_none_and_upstream_scale():
    p = make_problem(seed=21)
    kwargs = {"loss_type": "grpo", "ref_logprobs": p.ref_logprobs, "beta": 0.05, "upstream": 2.5}
    got = _run(linear_policy_loss, p, torch.float32, p.advantages, None, **kwargs)
    want = _run(reference_linear_policy_loss, p, torch.float64, p.advantages, None, **kwargs)
    _assert_close(got, want)
    assert got[3]["ratio"].item() == pytest.approx(1.0)


def test_dr_grpo_max_tokens_and_flat_layout():
    p = make_problem(batch=1, seq_len=30, vocab_size=301, seed=22)
    flat = make_problem(batch=1, seq_len=30, vocab_size=301, seed=22)
    flat.hidden, flat.targets, flat.mask = p.hidden[0], p.targets[0], p.mask[0]
    adv = p.token_advantages[0]
    got = _run(linear_policy_loss, flat, torch.float32, adv, flat.old_logprobs[0], loss_type="dr_grpo", max_tokens=64)
    want = _run(
        reference_linear_policy_loss, flat, torch.float64, adv, flat.old_logprobs[0], loss_type="dr_grpo", max_tokens=64
    )
    _assert_close(got, want)
    # Same tokens as a [1, T] batch give the same loss.
    batched = _run(linear_policy_loss, p, torch.float32, adv[None], p.old_logprobs, loss_type="dr_grpo", max_tokens=64)
    assert max_abs(batched[0], got[0]) <= 1e-6


def test_hand_computed_single_token():
    # Two-token vocabulary with logits (0, 0): logp(target) = log 1/2, entropy = log 2.
    targets, mask = torch.tensor([[1]]), torch.tensor([[True]])
    old = torch.tensor([[math.log(0.25)]])  # ratio = 0.5 / 0.25 = 2
    ref = torch.tensor([[math.log(0.5)]])  # equal to logp: k3 = 0 and its gradient 1 - exp(0) = 0

    # A = +1, ratio 2 > 1 + 0.28: clipped, loss = -1.28 with no surrogate gradient; the entropy
    # bonus adds -0.1 * log 2, whose gradient -p_j (log p_j + H) vanishes at the uniform distribution.
    h = torch.zeros(1, 1, 3, requires_grad=True)
    weight = torch.randn(2, 3)
    loss, metrics = linear_policy_loss(
        h, weight, targets, mask, torch.tensor([1.0]), old, ref_logprobs=ref, beta=0.5, entropy_coef=0.1
    )
    assert loss.item() == pytest.approx(-1.28 - 0.1 * math.log(2), abs=1e-6)
    assert metrics["clip_frac_high"].item() == 1.0 and metrics["clip_frac_low"].item() == 0.0
    assert metrics["kl"].item() == pytest.approx(0.0, abs=1e-7)
    assert metrics["ratio"].item() == pytest.approx(2.0, abs=1e-6)
    loss.backward()
    assert torch.allclose(h.grad, torch.zeros_like(h.grad), atol=1e-7)

    # A = -1: the min takes the unclipped branch, loss = 2 and dloss/dlogp = -ratio * A = 2, so
    # dloss/dlogits = 2 * (onehot(1) - p) = (-1, 1) and, with h = (1, 0, 0), dW = dlogits^T h.
    w = torch.zeros(2, 3, requires_grad=True)
    loss, _ = linear_policy_loss(torch.tensor([[[1.0, 0.0, 0.0]]]), w, targets, mask, torch.tensor([-1.0]), old)
    assert loss.item() == pytest.approx(2.0, abs=1e-6)
    loss.backward()
    assert torch.allclose(w.grad, torch.tensor([[-1.0, 0, 0], [1.0, 0, 0]]), atol=1e-6)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_empty_mask_gives_zero_loss_and_grads(loss_type):
    p = make_problem(batch=2, seq_len=5, seed=23)
    empty = torch.zeros_like(p.mask)
    kwargs = {"loss_type": loss_type, "ref_logprobs": p.ref_logprobs, "beta": 0.1, "entropy_coef": 0.1}
    loss, gh, gw, metrics = _run(
        linear_policy_loss, p, torch.float32, p.advantages, p.old_logprobs, mask=empty, **kwargs
    )
    assert loss.item() == 0.0
    assert torch.all(gh == 0) and torch.all(gw == 0)
    assert all(torch.isfinite(v) and v.item() == 0.0 for v in metrics.values())


def test_single_token_and_padding_garbage():
    p = make_problem(batch=2, seq_len=6, seed=24)
    one = torch.zeros_like(p.mask)
    one[1, 3] = True
    # Padding positions carry -inf / NaN log-probs and out-of-vocab ids; they must not leak in.
    old = p.old_logprobs.clone()
    old[~one] = float("-inf")
    ref = p.ref_logprobs.clone()
    ref[~one] = float("nan")
    p.targets = torch.where(one, p.targets, -100)
    kwargs = {"loss_type": "grpo", "ref_logprobs": ref, "beta": 0.1, "mask": one}
    got = _run(linear_policy_loss, p, torch.float32, p.advantages, old, **kwargs)
    want = _run(reference_linear_policy_loss, p, torch.float64, p.advantages, old, **kwargs)
    _assert_close(got, want)
    assert torch.all(got[1][~one] == 0)


def test_frozen_weight_computes_no_dw(monkeypatch):
    calls = []
    p = make_problem(seed=25)
    original = fused_lm_head.gemm_into

    def spy(out, a, b, *, accumulate):  # records the dW GEMMs (output shaped like the weight)
        if out.shape == p.weight.shape:
            calls.append(accumulate)
        original(out, a, b, accumulate=accumulate)

    monkeypatch.setattr(fused_lm_head, "gemm_into", spy)
    h = p.hidden.clone().requires_grad_()
    w = p.weight.clone()
    loss, _ = linear_policy_loss(h, w, p.targets, p.mask, p.advantages, p.old_logprobs, loss_type="grpo")
    loss.backward()
    assert w.grad is None and calls == []
    want = _run(reference_linear_policy_loss, p, torch.float64, p.advantages, p.old_logprobs, loss_type="grpo")
    assert rel_l2(h.grad, want[1]) <= 1e-5


@pytest.mark.parametrize("dtype, tol", [(torch.bfloat16, 1e-2), (torch.float16, 2e-3)])
def test_low_precision_inputs(dtype, tol):
    p = make_problem(seed=26)
    hidden, weight = p.hidden.to(dtype), p.weight.to(dtype)
    kwargs = {"loss_type": "dapo", "ref_logprobs": p.ref_logprobs, "beta": 0.1, "entropy_coef": 0.01}
    loss, gh, gw, _ = _run(
        linear_policy_loss, p, dtype, p.advantages, p.old_logprobs, hidden=hidden, weight=weight, **kwargs
    )
    assert gh.dtype == dtype and gw.dtype == dtype
    want = _run(
        reference_linear_policy_loss,
        p,
        torch.float64,
        p.advantages,
        p.old_logprobs,
        hidden=hidden,
        weight=weight,
        **kwargs,
    )
    assert max_abs(loss, want[0]) <= 1e-4
    assert rel_l2(gh, want[1]) <= tol and rel_l2(gw, want[2]) <= tol


def _liger(p, advantages, loss_type, beta, temperature=1.0, vllm_is_ratio=None):
    from liger_kernel.chunked_loss import LigerFusedLinearGRPOLoss

    liger = LigerFusedLinearGRPOLoss(
        beta=beta,
        compiled=False,
        use_ref_model=beta > 0,
        chunk_size=2,
        epsilon_low=0.2,
        epsilon_high=0.28,
        loss_type=loss_type,
        max_completion_length=p.targets.shape[1],
        temperature=temperature,
    )
    h, w = leaves(p.hidden, p.weight, dtype=torch.float32)
    loss, metrics = liger(
        h,
        w,
        p.targets,
        p.mask.long(),
        advantages,
        ref_per_token_logps=p.ref_logprobs if beta > 0 else None,
        old_per_token_logps=p.old_logprobs,
        vllm_is_ratio=vllm_is_ratio,
    )
    loss.backward()
    return loss.detach(), h.grad, w.grad, metrics


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("beta", [0.0, 0.05])
def test_matches_liger_grpo_loss(loss_type, beta):
    p = make_problem(seed=27)
    temperature = 0.8 if beta else 1.0
    kwargs = {"loss_type": loss_type, "beta": beta, "temperature": temperature}
    if beta:
        kwargs["ref_logprobs"] = p.ref_logprobs
    loss, gh, gw, metrics = _run(linear_policy_loss, p, torch.float32, p.advantages, p.old_logprobs, **kwargs)
    l_loss, l_gh, l_gw, l_metrics = _liger(p, p.advantages, loss_type, beta, temperature)
    assert max_abs(loss, l_loss) <= 2e-5
    assert rel_l2(gh, l_gh) <= 2e-5 and rel_l2(gw, l_gw) <= 2e-5
    # Liger reports [kl (when beta > 0), fraction clipped on either side].
    clipped = metrics["clip_frac_low"] + metrics["clip_frac_high"]
    assert max_abs(clipped, l_metrics[-1]) <= 1e-6
    if beta:
        assert max_abs(metrics["kl"], l_metrics[0]) <= 1e-5


def test_matches_liger_truncated_importance_weights():
    p = make_problem(seed=28)
    loss, gh, gw, _ = _run(
        linear_policy_loss,
        p,
        torch.float32,
        p.advantages,
        p.old_logprobs,
        loss_type="dapo",
        behaviour_logprobs=p.behaviour_logprobs,
        tis_cap=1.5,
    )
    # Liger takes the weights precomputed: min(exp(old - behaviour), cap).
    weights = torch.exp(p.old_logprobs - p.behaviour_logprobs).clamp(max=1.5)
    l_loss, l_gh, l_gw, _ = _liger(p, p.advantages, "dapo", 0.0, vllm_is_ratio=weights)
    assert max_abs(loss, l_loss) <= 2e-5
    assert rel_l2(gh, l_gh) <= 2e-5 and rel_l2(gw, l_gw) <= 2e-5


def test_module_wrapper_matches_function():
    p = make_problem(seed=29)
    module = fastcomt.FusedPolicyLoss(loss_type="grpo", beta=0.1, tis_cap=2.0, entropy_coef=0.01)
    h, w = leaves(p.hidden, p.weight, dtype=torch.float32)
    loss, _ = module(h, w, p.targets, p.mask, p.advantages, p.old_logprobs, p.ref_logprobs, p.behaviour_logprobs)
    want, _ = linear_policy_loss(
        p.hidden,
        p.weight,
        p.targets,
        p.mask,
        p.advantages,
        p.old_logprobs,
        ref_logprobs=p.ref_logprobs,
        behaviour_logprobs=p.behaviour_logprobs,
        loss_type="grpo",
        beta=0.1,
        tis_cap=2.0,
        entropy_coef=0.01,
    )
    assert loss.item() == want.item()
    with pytest.raises(ValueError, match="loss_type"):
        fastcomt.FusedPolicyLoss(loss_type="ppo")


def test_torch_compile_matches_eager():
    """aot_eager traces the custom ops' fake and autograd registrations (fullgraph: no graph break);
    inductor also works but costs seconds of CPU compile time."""
    p = make_problem(seed=30)

    def step(h, w):
        loss, metrics = linear_policy_loss(
            h,
            w,
            p.targets,
            p.mask,
            p.advantages,
            p.old_logprobs,
            loss_type="grpo",
            ref_logprobs=p.ref_logprobs,
            beta=0.1,
        )
        ce = fastcomt.kernels.linear_cross_entropy(h, w, p.targets, reduction="none")
        return loss + 0.1 * (ce * p.mask).sum(), metrics["clip_frac_high"]

    torch._dynamo.reset()
    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    results = []
    for fn in (compiled, step):
        h, w = leaves(p.hidden, p.weight, dtype=torch.float32)
        loss, clip = fn(h, w)
        loss.backward()
        results.append((loss.detach(), clip, h.grad, w.grad))
    for got, want in zip(*results):
        assert max_abs(got, want) <= 1e-6


def _bad(p, **changes):
    args = {
        "hidden": p.hidden,
        "weight": p.weight,
        "targets": p.targets,
        "mask": p.mask,
        "advantages": p.advantages,
        "old_logprobs": p.old_logprobs,
    }
    options = {k: v for k, v in changes.items() if k not in args}
    args.update({k: v for k, v in changes.items() if k in args})
    return args, options


@pytest.mark.parametrize(
    "changes, match",
    [
        (lambda p: {"advantages": p.advantages[:-1]}, "advantages"),
        (lambda p: {"advantages": p.advantages.long()}, "advantages"),
        (lambda p: {"old_logprobs": p.old_logprobs[:, :-1]}, "old_logprobs"),
        (lambda p: {"ref_logprobs": p.ref_logprobs.T}, "ref_logprobs"),
        (lambda p: {"behaviour_logprobs": p.behaviour_logprobs[0]}, "behaviour_logprobs"),
        (lambda p: {"mask": None}, "mask"),
        (lambda p: {"mask": p.mask.to("meta")}, "mask"),
        (lambda p: {"beta": 0.1}, "ref_logprobs"),
        (lambda p: {"loss_type": "ppo"}, "loss_type"),
        (lambda p: {"eps_low": -0.1}, "eps_low"),
        (lambda p: {"tis_cap": 0.0}, "tis_cap"),
        (lambda p: {"max_tokens": 0, "loss_type": "dr_grpo"}, "max_tokens"),
        (lambda p: {"hidden": p.hidden.to(torch.bfloat16)}, "weight"),
        (lambda p: {"targets": torch.where(p.mask, p.targets + 1000, p.targets)}, "targets"),
    ],
)
def test_bad_input_raises(changes, match):
    p = make_problem(batch=2, seq_len=3, seed=31)
    args, options = _bad(p, **changes(p))
    for fn in (linear_policy_loss, reference_linear_policy_loss):
        with pytest.raises(ValueError, match=match):
            fn(**args, **options)
