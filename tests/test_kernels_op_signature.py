"""The fused LM-head custom ops are called by keyword; their schema, fake (meta) function and autograd
glue must agree with the Python signature they are inferred from. torch.library.opcheck checks
exactly that (schema, fake tensors, autograd registration, AOT dispatch) on a real call."""

import inspect

import pytest
import torch

from fastcomt.kernels.config import Launch
from fastcomt.kernels.fused_lm_head import (
    ce_token_losses,
    fused_lm_head_op,
    linear_ce_tokens_op,
    run_lm_head_chunks,
)
from fastcomt.kernels.lm_head_rows import EPILOGUE_POLICY, STAT_LOGP

LAUNCH = {"chunk_rows": 4, "block_v": 32, "num_warps": 1, "fp32_logits": True}


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(6, 8, generator=g, requires_grad=True)
    weight = torch.randn(30, 8, generator=g, requires_grad=True)
    targets = torch.randint(0, 30, (6,), generator=g)
    active = torch.tensor([1, 1, 0, 1, 1, 1], dtype=torch.bool)
    return hidden, weight, targets, active


def test_policy_op_passes_opcheck_when_called_by_keyword():
    hidden, weight, targets, active = _inputs()
    options = dict(
        LAUNCH,
        epilogue=EPILOGUE_POLICY,
        need_dh=True,
        need_dw=True,
        advantages=torch.randn(6),
        old_logprobs=torch.randn(6) - 3,
        eps_low=0.2,
        eps_high=0.3,
    )
    torch.library.opcheck(fused_lm_head_op, (hidden, weight, targets, active), options)


def test_token_losses_op_passes_opcheck_when_called_by_keyword():
    hidden, weight, targets, active = _inputs(1)
    torch.library.opcheck(
        linear_ce_tokens_op, (hidden, weight, targets, active), dict(LAUNCH, need_dh=True, need_dw=True)
    )


def test_defaults_of_the_signature_are_the_score_epilogue():
    # Called with only the tensors and the launch settings, the op scores: log-probs of the targets
    # (against torch's log_softmax), no loss, no gradients.
    hidden, weight, targets, active = _inputs(2)
    loss_sum, stats, dh, dw = fused_lm_head_op(hidden=hidden, weight=weight, targets=targets, active=active, **LAUNCH)
    want = torch.log_softmax(hidden.detach() @ weight.detach().T, dim=-1).gather(1, targets[:, None])[:, 0]
    want = torch.where(active, want, 0.0)
    torch.testing.assert_close(stats[STAT_LOGP], want, atol=1e-5, rtol=1e-5)
    assert float(loss_sum.detach()) == 0.0 and dh.numel() == 0 and dw.numel() == 0


@pytest.mark.parametrize("fn", [run_lm_head_chunks, ce_token_losses])
def test_only_tensors_and_launch_settings_are_required(fn):
    required = [n for n, p in inspect.signature(fn).parameters.items() if p.default is inspect.Parameter.empty]
    assert required == ["hidden", "weight", "targets", "active", "chunk_rows", "block_v", "num_warps", "fp32_logits"]
    # Every launch setting is an argument of both ops, so **launch._asdict() fits them.
    assert set(Launch._fields) <= set(inspect.signature(fn).parameters)
