"""The sync-free path of the fused LM head (LMHeadConfig(sync_free=True)): no host sync per call, the
same numbers as the checked path, out-of-range targets reported later by raise_deferred_errors()."""

import pytest
import torch
from kernels_helpers import TINY_BLOCK_V, TINY_CHUNK_ROWS, leaves, make_problem, rel_l2

from fastcomt.kernels import LMHeadConfig, fused_lm_head, linear_cross_entropy, linear_policy_loss
from fastcomt.kernels.deferred_checks import raise_deferred_errors

CHECKED = LMHeadConfig(chunk_rows=TINY_CHUNK_ROWS, block_v=TINY_BLOCK_V)
SYNC_FREE = LMHeadConfig(chunk_rows=TINY_CHUNK_ROWS, block_v=TINY_BLOCK_V, sync_free=True)


def _forbid_host_syncs(monkeypatch):
    """Every way the driver could read a tensor's value on the host now fails."""

    def refuse(*args, **kwargs):
        raise AssertionError("host sync in the sync-free path")

    monkeypatch.setattr(fused_lm_head, "check_targets_in_range", refuse)
    for name in ("__bool__", "item", "nonzero", "tolist", "__int__", "__float__"):
        monkeypatch.setattr(torch.Tensor, name, refuse)


def _policy(p, config, **options):
    h, w = leaves(p.hidden, p.weight, dtype=torch.float32)
    old = torch.where(p.mask, p.old_logprobs, float("-inf"))  # padding log-probs may be -inf
    loss, metrics = linear_policy_loss(
        h,
        w,
        p.targets,
        p.mask,
        p.advantages,
        old,
        ref_logprobs=p.ref_logprobs,
        beta=0.05,
        loss_type="grpo",
        behaviour_logprobs=p.behaviour_logprobs,
        tis_cap=2.0,
        config=config,
        **options,
    )
    loss.backward()
    return loss.detach(), h.grad, w.grad, metrics


def _assert_same(got, want):
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-6)
    assert rel_l2(got[1], want[1]) <= 1e-5 and rel_l2(got[2], want[2]) <= 1e-5
    if len(want) > 3:
        for name in want[3]:
            torch.testing.assert_close(got[3][name], want[3][name], rtol=1e-5, atol=1e-6)


def test_policy_loss_without_host_sync_matches_the_checked_path(monkeypatch):
    p = make_problem(seed=61)
    assert not bool(p.mask.all())  # ragged: the checked path drops rows, the sync-free one masks them
    want = _policy(p, CHECKED)
    with monkeypatch.context() as m:
        _forbid_host_syncs(m)
        got = _policy(p, SYNC_FREE)
    _assert_same(got, want)


def test_caller_importance_weights_on_padding_never_reach_the_loss(monkeypatch):
    # A trainer's importance weights may hold inf/NaN on padding; the sync-free path keeps those rows
    # in the GEMMs with coefficient 0, so their weights are zeroed first (0 * inf would be NaN).
    p = make_problem(seed=64)
    weights = torch.where(p.mask, torch.linspace(0.5, 1.5, p.mask.numel()).reshape(p.mask.shape), float("nan"))
    want = _policy(p, CHECKED, is_weights=weights, delta=1.5, clip_ratio_c=3.0)
    with monkeypatch.context() as m:
        _forbid_host_syncs(m)
        got = _policy(p, SYNC_FREE, is_weights=weights, delta=1.5, clip_ratio_c=3.0)
    assert torch.isfinite(got[0]) and torch.isfinite(got[1]).all() and torch.isfinite(got[2]).all()
    _assert_same(got, want)


def _ce(p, targets, config, reduction="sum"):
    h, w = leaves(p.hidden, p.weight, dtype=torch.float32)
    loss = linear_cross_entropy(h, w, targets, reduction=reduction, config=config)
    loss.backward()
    return loss.detach(), h.grad, w.grad


def test_cross_entropy_without_host_sync_matches_the_checked_path(monkeypatch):
    p = make_problem(seed=62)
    targets = torch.where(p.mask, p.targets, -100)
    want = _ce(p, targets, CHECKED, reduction="mean")
    with monkeypatch.context() as m:
        _forbid_host_syncs(m)
        got = _ce(p, targets, SYNC_FREE, reduction="mean")
    _assert_same(got, want)


def test_out_of_range_target_is_left_out_and_reported_later():
    raise_deferred_errors()  # start from a clean count
    p = make_problem(seed=63)
    bad = p.targets.clone()
    bad[0, 2] = p.weight.shape[0] + 5
    got = _ce(p, bad, SYNC_FREE)  # no error at the call
    ignored = bad.clone()
    ignored[0, 2] = -100
    _assert_same(got, _ce(p, ignored, CHECKED))  # that token contributed nothing
    with pytest.raises(ValueError, match=r"targets: expected values in \[0, V\) on active tokens, got 1 outside"):
        raise_deferred_errors()
    raise_deferred_errors()  # the count was reset
