"""The peer-semantics options of linear_policy_loss against the fp64 full-logits reference and hand
computations: the caller's loss normaliser (TRL's token count of the whole generation batch, verl's global counts)."""

import pytest
import torch
from kernels_helpers import TINY_BLOCK_V, TINY_CHUNK_ROWS, leaves, make_problem, max_abs, rel_l2

from fastcomt.kernels import lm_head_config, linear_policy_loss, reference_linear_policy_loss


@pytest.fixture(autouse=True)
def tiny_chunks():
    with lm_head_config(chunk_rows=TINY_CHUNK_ROWS, block_v=TINY_BLOCK_V):
        yield


def _run(fn, p, dtype, **kwargs):
    h, w = leaves(p.hidden, p.weight, dtype=dtype)
    cast = lambda t: t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t  # noqa: E731
    loss, _ = fn(h, w, p.targets, p.mask, cast(p.advantages), cast(p.old_logprobs),
                 **{k: cast(v) for k, v in kwargs.items()})  # fmt: skip
    loss.backward()
    return loss.detach(), h.grad, w.grad


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dapo", "dr_grpo"])
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
