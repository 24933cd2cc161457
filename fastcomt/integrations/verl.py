"""fastcomt in verl 0.9.x: the policy loss, the fused log-prob and the CCRL reward, by name.

    import fastcomt.integrations.verl          # registers policy_loss.loss_mode = "fastcomt"
    fastcomt.integrations.verl.use_fastcomt_fused_kernels()   # verl's use_fused_kernels -> ours

(The first line happens by itself: fastcomt declares this module as a ``verl.plugins`` entry point,
which ``import verl`` loads in the driver and in every Ray worker; ``FASTCOMT_VERL_FUSED_KERNELS=1``
in the environment does the second there too.)

and the reward: ``custom_reward_function.path=<site-packages>/fastcomt/integrations/verl.py``,
``custom_reward_function.name=compute_score`` (the CCRL reward, ``fastcomt.integrations.rewards``).

- ``fastcomt_policy_loss`` (registered as "fastcomt") is verl's ``vanilla`` objective computed by
  fastcomt's token loss: clip-higher from ``clip_ratio_low``/``clip_ratio_high``, verl's dual clip
  ``clip_ratio_c`` (on by default, 3.0), its ``rollout_is_weights``, and verl's five
  ``loss_agg_mode`` aggregations with the global token / sequence counts of
  ``config.global_batch_info`` (fully masked rows count as no sequence). verl computes the log-probs
  itself, so this hook receives them; the fused part is the log-prob below.
- ``use_fastcomt_fused_kernels()`` swaps verl's fused linear-cross-entropy (used by actors run with
  ``use_fused_kernels=True``) for ``linear_logprobs_autograd``: log-probs and entropies with
  autograd, no ``[N, V]`` logits.
- ``fused_policy_loss`` is the 3-GEMM path for code that holds hidden states: verl's objective and
  aggregation straight from ``hidden`` and the head weight.

Supported: verl 0.9.x, installed ``--no-deps`` (``make verl``): verl 0.9.1 declares
``transformers<5.11`` and Ray, and only ``verl.trainer.ppo.core_algos`` and its imports are used here.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from fastcomt.integrations.versions import check_peer_version

VERL_VERSION = check_peer_version("verl", "0.9.1", "0.10")

from verl.trainer.ppo.core_algos import register_policy_loss  # noqa: E402

from fastcomt.integrations.rewards import compute_score  # noqa: E402
from fastcomt.kernels import linear_logprobs_autograd, linear_policy_loss  # noqa: E402
from fastcomt.kernels.policy_token_loss import token_policy_loss  # noqa: E402

__all__ = [
    "AGG_MODES",
    "VERL_VERSION",
    "aggregate_token_loss",
    "compute_score",
    "fastcomt_policy_loss",
    "fused_policy_loss",
    "use_fastcomt_fused_kernels",
    "verl_linear_cross_entropy",
]

FUSED_KERNELS_ENV = "FASTCOMT_VERL_FUSED_KERNELS"
AGG_MODES = ("token-mean", "token-sum", "seq-mean-token-sum", "seq-mean-token-sum-norm", "seq-mean-token-mean")
# verl clamps log(ratio) to [-20, 20] before exponentiating.
LOG_RATIO_BOUND = 20.0


def _check_mode(loss_agg_mode: str) -> None:
    if loss_agg_mode not in AGG_MODES:
        raise ValueError(f"loss_agg_mode: expected one of {AGG_MODES}, got {loss_agg_mode!r}")


def _normalizer(
    loss_agg_mode: str, mask: torch.Tensor, dp_size: int, batch_num_tokens, global_batch_size, loss_scale_factor
) -> torch.Tensor:
    """The denominator verl divides the token sum (or, for seq-mean-token-mean, the sum of
    per-sequence means) by, so that summing gradients over data-parallel ranks gives the global mean."""
    mask = mask.to(torch.float32)
    if loss_agg_mode == "token-mean":
        if batch_num_tokens is None:
            if dp_size > 1:
                raise ValueError("batch_num_tokens: expected the global token count when dp_size > 1, got None")
            batch_num_tokens = mask.sum()
        return torch.as_tensor(batch_num_tokens, dtype=torch.float32, device=mask.device) / dp_size
    if loss_agg_mode == "token-sum":
        return torch.tensor(1.0 / dp_size, device=mask.device)
    if global_batch_size is None:
        if dp_size > 1:
            raise ValueError("global_batch_size: expected the global sequence count when dp_size > 1, got None")
        global_batch_size = (mask.sum(-1) > 0).sum()  # fully masked rows are no sequence
    count = torch.as_tensor(global_batch_size, dtype=torch.float32, device=mask.device) / dp_size
    if loss_agg_mode == "seq-mean-token-sum-norm":
        count = count * (mask.shape[-1] if loss_scale_factor is None else loss_scale_factor)
    return count


def aggregate_token_loss(
    loss_mat: torch.Tensor,
    mask: torch.Tensor,
    loss_agg_mode: str,
    *,
    dp_size: int = 1,
    batch_num_tokens=None,
    global_batch_size=None,
    loss_scale_factor=None,
) -> torch.Tensor:
    """verl's ``agg_loss`` semantics: a scalar from a ``[B, T]`` per-token loss and its mask."""
    _check_mode(loss_agg_mode)
    m = mask.to(loss_mat.dtype)
    normalizer = _normalizer(loss_agg_mode, mask, dp_size, batch_num_tokens, global_batch_size, loss_scale_factor)
    if loss_agg_mode == "seq-mean-token-mean":
        per_seq = (loss_mat * m).sum(-1) / m.sum(-1).clamp(min=1)
        return per_seq.sum() / normalizer.to(loss_mat.dtype)
    return (loss_mat * m).sum() / normalizer.to(loss_mat.dtype)


def _clip_settings(config) -> dict[str, float]:
    clip = config.clip_ratio
    low = config.clip_ratio_low if config.clip_ratio_low is not None else clip
    high = config.clip_ratio_high if config.clip_ratio_high is not None else clip
    c = config.get("clip_ratio_c", 3.0)
    if not c > 1.0:
        raise ValueError(f"clip_ratio_c: expected > 1 (verl's dual-clip lower bound), got {c!r}")
    return {"eps_low": float(low), "eps_high": float(high), "clip_ratio_c": float(c)}


@register_policy_loss("fastcomt")
def fastcomt_policy_loss(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config=None,
    rollout_is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """verl's ``vanilla`` PPO/GRPO objective (policy_loss.loss_mode = "fastcomt"); same signature."""
    if config is None:
        raise ValueError("config: expected verl's ActorConfig (clip ratios, global_batch_info), got None")
    clip = _clip_settings(config)
    loss_mat = token_policy_loss(
        log_prob, old_log_prob, advantages, is_weights=rollout_is_weights, log_ratio_bound=LOG_RATIO_BOUND, **clip
    )
    loss = aggregate_token_loss(loss_mat, response_mask, loss_agg_mode, **_batch_info(config))
    with torch.no_grad():
        mask = response_mask.to(torch.float32)
        count = mask.sum().clamp(min=1)
        log_ratio = torch.clamp(log_prob - old_log_prob, -LOG_RATIO_BOUND, LOG_RATIO_BOUND)
        ratio = torch.exp(log_ratio)
        clipped_away = -advantages * torch.clamp(ratio, 1 - clip["eps_low"], 1 + clip["eps_high"]) > -advantages * ratio
        dual = (advantages < 0) & (
            torch.maximum(
                -advantages * ratio, -advantages * torch.clamp(ratio, 1 - clip["eps_low"], 1 + clip["eps_high"])
            )
            > -advantages * clip["clip_ratio_c"]
        )
        metrics = {
            "actor/pg_clipfrac": float((clipped_away.float() * mask).sum() / count),
            "actor/ppo_kl": float((-log_ratio * mask).sum() / count),
            "actor/pg_clipfrac_lower": float((dual.float() * mask).sum() / count),
        }
    return loss, metrics


def _batch_info(config) -> dict[str, Any]:
    info = dict(getattr(config, "global_batch_info", None) or {})
    allowed = {"dp_size", "batch_num_tokens", "global_batch_size", "loss_scale_factor"}
    unknown = set(info) - allowed
    if unknown:
        raise ValueError(f"config.global_batch_info: expected keys among {sorted(allowed)}, got {sorted(unknown)}")
    return info


def fused_policy_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    response_mask: torch.Tensor,
    advantages: torch.Tensor,
    old_log_prob: torch.Tensor,
    *,
    loss_agg_mode: str = "token-mean",
    clip_ratio_low: float = 0.2,
    clip_ratio_high: float = 0.2,
    clip_ratio_c: float = 3.0,
    rollout_is_weights: torch.Tensor | None = None,
    temperature: float = 1.0,
    dp_size: int = 1,
    batch_num_tokens=None,
    global_batch_size=None,
    loss_scale_factor=None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """verl's ``vanilla`` objective and aggregation from hidden states in one fused pass (3 GEMMs):
    ``linear_policy_loss`` with the dual clip, the rollout weights and verl's aggregation as its
    normaliser. verl's clamp of ``log(ratio)`` to +-20 is not applied (it only matters past e^20)."""
    _check_mode(loss_agg_mode)
    if not clip_ratio_c > 1.0:
        raise ValueError(f"clip_ratio_c: expected > 1 (verl's dual-clip lower bound), got {clip_ratio_c!r}")
    normalizer = _normalizer(
        loss_agg_mode, response_mask, dp_size, batch_num_tokens, global_batch_size, loss_scale_factor
    )
    loss_type = "grpo" if loss_agg_mode == "seq-mean-token-mean" else "dapo"
    return linear_policy_loss(
        hidden,
        weight,
        targets,
        response_mask,
        advantages,
        old_log_prob,
        loss_type=loss_type,
        eps_low=clip_ratio_low,
        eps_high=clip_ratio_high,
        clip_ratio_c=clip_ratio_c,
        is_weights=rollout_is_weights,
        temperature=temperature,
        loss_normalizer=normalizer,
    )


def verl_linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 1.0,
    reduction: str = "none",
    dist_process_group=None,
):
    """Drop-in for ``verl.utils.kernel.linear_cross_entropy.linear_cross_entropy``: ``(log_probs, entropy)``."""
    if reduction != "none":
        raise ValueError(f"reduction: expected 'none' (verl's actors take per-token values), got {reduction!r}")
    if dist_process_group is not None:
        raise ValueError("dist_process_group: vocabulary-parallel heads are not supported by fastcomt's kernel")
    return linear_logprobs_autograd(hidden, weight, labels, temperature=float(temperature))


def use_fastcomt_fused_kernels() -> None:
    """Route verl's fused-kernel actors (``use_fused_kernels=True``) through fastcomt's log-prob kernel.
    verl's model forwards import ``linear_cross_entropy`` from its module at call time, so replacing
    the module attribute is enough."""
    import verl.utils.kernel.linear_cross_entropy as verl_kernel

    verl_kernel.linear_cross_entropy = verl_linear_cross_entropy


# Ray workers import this module through the plugin entry point, not through user code: this
# environment switch (inherited by the workers) is how they opt in to the fused log-prob.
if os.environ.get(FUSED_KERNELS_ENV) == "1":
    use_fastcomt_fused_kernels()
