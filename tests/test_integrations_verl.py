"""fastcomt in verl 0.9.x against verl's own functions: the registered policy loss against
compute_policy_loss_vanilla (every loss_agg_mode, empty rows, global counts, dual clip, rollout IS
weights), the fused log-prob against verl's FusedLinearForPPO, the fused policy loss from hidden
states against verl's objective on full-logits log-probs."""

import pytest
import torch

pytest.importorskip("verl", reason="verl 0.9.1 is installed --no-deps by `make install` (see the Makefile)")
from omegaconf import OmegaConf  # noqa: E402
from verl.trainer.ppo import core_algos  # noqa: E402
from verl.utils.experimental.torch_functional import FusedLinearForPPO  # noqa: E402

from fastcomt.integrations import verl as fast_verl  # noqa: E402

AGG_MODES = fast_verl.AGG_MODES


def _config(global_batch_info=None, clip_ratio_c=3.0):
    return OmegaConf.create(
        {
            "clip_ratio": 0.2,
            "clip_ratio_low": 0.15,
            "clip_ratio_high": 0.28,
            "clip_ratio_c": clip_ratio_c,
            "global_batch_info": global_batch_info or {},
        }
    )


def _batch(seed=0, batch=5, length=7):
    gen = torch.Generator().manual_seed(seed)
    log_prob = -torch.rand(batch, length, generator=gen, dtype=torch.float64) * 3
    old = log_prob + 1.2 * torch.randn(batch, length, generator=gen, dtype=torch.float64)
    adv = torch.randn(batch, length, generator=gen, dtype=torch.float64) * 2
    lengths = torch.tensor([length, 3, 0, 1, length - 2])  # row 2 is empty
    mask = (torch.arange(length)[None] < lengths[:, None]).to(torch.float64)
    weights = torch.exp(0.3 * torch.randn(batch, length, generator=gen, dtype=torch.float64))
    return log_prob, old, adv, mask, weights


def _loss_and_grad(fn, log_prob, *args, **kwargs):
    lp = log_prob.clone().requires_grad_()
    loss, metrics = fn(args[0], lp, *args[1:], **kwargs)
    loss.backward()
    return loss.detach(), lp.grad, metrics


@pytest.mark.parametrize("mode", AGG_MODES)
@pytest.mark.parametrize(
    "global_info",
    [None, {"dp_size": 2, "batch_num_tokens": 40, "global_batch_size": 9, "loss_scale_factor": 11}],
    ids=["local", "global"],
)
@pytest.mark.parametrize("is_weights", [False, True], ids=["no_is", "rollout_is"])
def test_registered_loss_matches_verl_vanilla(mode, global_info, is_weights):
    log_prob, old, adv, mask, weights = _batch(seed=3)
    config = _config(global_info)
    w = weights if is_weights else None
    ours = _loss_and_grad(fast_verl.fastcomt_policy_loss, log_prob, old, adv, mask, mode, config, w)
    want = _loss_and_grad(core_algos.compute_policy_loss_vanilla, log_prob, old, adv, mask, mode, config, w)
    assert abs(ours[0].item() - want[0].item()) <= 1e-7 * max(1.0, abs(want[0].item()))
    assert torch.allclose(ours[1], want[1], rtol=1e-7, atol=1e-10)
    assert ours[1][2].abs().sum() == 0  # the empty row gets no gradient
    for key, value in want[2].items():
        assert abs(ours[2][key] - value) <= 1e-7, key
    # The batch exercises the dual clip (negative advantages with large ratios).
    if mode == "token-mean" and global_info is None and not is_weights:
        assert want[2]["actor/pg_clipfrac_lower"] > 0


def test_registered_by_name():
    assert core_algos.get_policy_loss_fn("fastcomt") is fast_verl.fastcomt_policy_loss


def test_bad_settings_name_them():
    log_prob, old, adv, mask, _ = _batch()
    with pytest.raises(ValueError, match="clip_ratio_c: expected > 1"):
        fast_verl.fastcomt_policy_loss(old, log_prob, adv, mask, "token-mean", _config(clip_ratio_c=1.0))
    with pytest.raises(ValueError, match="loss_agg_mode: expected one of"):
        fast_verl.fastcomt_policy_loss(old, log_prob, adv, mask, "seq-sum", _config())
    with pytest.raises(ValueError, match="batch_num_tokens: expected the global token count"):
        fast_verl.fastcomt_policy_loss(old, log_prob, adv, mask, "token-mean", _config({"dp_size": 2}))


def test_fused_log_prob_matches_verl_fused_linear_for_ppo():
    gen = torch.Generator().manual_seed(4)
    hidden = torch.randn(2, 5, 16, generator=gen, dtype=torch.float64)
    weight = torch.randn(150, 16, generator=gen, dtype=torch.float64) / 3
    labels = torch.randint(0, 150, (2, 5), generator=gen)
    g_lp, g_ent = torch.randn(2, 5, generator=gen), torch.randn(2, 5, generator=gen)
    results = []
    for fn, dtype in (
        (fast_verl.verl_linear_cross_entropy, torch.float32),
        (FusedLinearForPPO(chunk_size=3), torch.float64),
    ):
        h, w = hidden.to(dtype).requires_grad_(), weight.to(dtype).requires_grad_()
        log_probs, entropy = fn(h, w, labels, 0.8)
        ((log_probs.double() * g_lp).sum() + (entropy.double() * g_ent).sum()).backward()
        results.append((log_probs.detach().double(), entropy.detach().double(), h.grad.double(), w.grad.double()))
    for ours, want in zip(*results):
        assert torch.allclose(ours, want, rtol=1e-5, atol=1e-5)


def test_use_fastcomt_fused_kernels_replaces_verls_kernel(monkeypatch):
    import verl.utils.kernel.linear_cross_entropy as verl_kernel

    monkeypatch.setattr(verl_kernel, "linear_cross_entropy", verl_kernel.linear_cross_entropy)
    fast_verl.use_fastcomt_fused_kernels()
    assert verl_kernel.linear_cross_entropy is fast_verl.verl_linear_cross_entropy


@pytest.mark.parametrize("mode", AGG_MODES)
def test_fused_policy_loss_matches_verl_objective(mode):
    # Hidden states -> one fused pass (dual clip and rollout weights included), against verl's vanilla
    # loss on full-logits log-probs.
    gen = torch.Generator().manual_seed(5)
    hidden = torch.randn(4, 6, 12, generator=gen)
    weight = torch.randn(90, 12, generator=gen) / 2
    targets = torch.randint(0, 90, (4, 6), generator=gen)
    mask = (torch.arange(6)[None] < torch.tensor([6, 2, 0, 4])[:, None]).float()
    adv = torch.randn(4, 6, generator=gen)
    weights = torch.exp(0.3 * torch.randn(4, 6, generator=gen))
    with torch.no_grad():
        current = torch.log_softmax(hidden.double() @ weight.double().T, -1).gather(-1, targets[..., None])[..., 0]
    # Half the tokens far off-policy (ratio ~e: the clips bite), half near it (gradients flow).
    far = (torch.rand(4, 6, generator=gen) > 0.5).double()
    old = (current - far + 0.1 * torch.randn(4, 6, generator=gen, dtype=torch.float64)).float()
    info = {"dp_size": 2, "batch_num_tokens": 30, "global_batch_size": 7, "loss_scale_factor": 9}

    h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    loss, _ = fast_verl.fused_policy_loss(
        h,
        w,
        targets,
        mask,
        adv,
        old,
        loss_agg_mode=mode,
        clip_ratio_low=0.15,
        clip_ratio_high=0.28,
        clip_ratio_c=1.5,
        rollout_is_weights=weights,
        **info,
    )
    loss.backward()

    h64, w64 = hidden.double().requires_grad_(), weight.double().requires_grad_()
    log_prob = torch.log_softmax(h64 @ w64.T, -1).gather(-1, targets[..., None])[..., 0]
    want, metrics = core_algos.compute_policy_loss_vanilla(
        old.double(), log_prob, adv.double(), mask.double(), mode, _config(info, clip_ratio_c=1.5), weights.double()
    )
    want.backward()
    assert metrics["actor/pg_clipfrac_lower"] > 0  # the dual clip is live
    assert h64.grad.abs().sum() > 0
    assert abs(loss.item() - want.item()) <= 1e-5 * max(1.0, abs(want.item()))
    assert torch.allclose(h.grad.double(), h64.grad, rtol=1e-4, atol=1e-6)
    assert torch.allclose(w.grad.double(), w64.grad, rtol=1e-4, atol=1e-6)


def test_import_verl_registers_fastcomt_through_its_plugin_entry_point():
    # A fresh process (as a Ray worker is): `import verl` alone must register loss_mode=fastcomt.
    import os
    import subprocess
    import sys

    # FASTCOMT_VERL_FUSED_KERNELS=1 also swaps verl's fused-kernel log-prob for ours there.
    code = (
        "import verl\nfrom verl.trainer.ppo import core_algos\nimport verl.utils.kernel.linear_cross_entropy as k\n"
        "print('fastcomt' in core_algos.POLICY_LOSS_REGISTRY, k.linear_cross_entropy.__module__)"
    )
    env = dict(os.environ, TRITON_INTERPRET="1", FASTCOMT_VERL_FUSED_KERNELS="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "True fastcomt.integrations.verl", out.stderr[-2000:]
