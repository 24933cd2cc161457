"""TRL's ``GRPOTrainer`` on fastcomt's fused LM-head kernels: change one import.

    from fastcomt.integrations.trl import GRPOTrainer   # instead of: from trl import GRPOTrainer

Everything else (``GRPOConfig``, datasets, reward functions, generation, logging) stays TRL's. Two
things change, and neither changes the objective:

1. Every per-token log-prob TRL computes (policy, old policy, reference) comes from
   ``linear_logprobs_autograd`` instead of TRL's chunked head: log-probs and entropies with autograd,
   no ``[B, T, V]`` logits. TRL's own ``_compute_loss`` then runs unchanged, so every GRPOConfig
   option it implements (all loss types, sequence-level ratios (GSPO), importance sampling modes,
   ``delta``, bias-corrected KL, entropy bonus and masks, off-policy masks) keeps TRL's semantics.
2. When the settings are a token-level clipped surrogate that the 3-GEMM fused loss computes
   (``linear_policy_loss``: grpo, bnpo, dr_grpo, dapo with TRL's normaliser; k3 KL, bias-corrected
   or not; ``delta``; TRL's vLLM importance-sampling ratio in every mode; LM-head bias, logit scale
   and softcap), the loss skips the log-prob pass altogether: one fused kernel computes the loss and
   its gradient. Sequence-level ratios (GSPO), the other loss types, entropy bonuses and masks, and
   off-policy masks need the log-probs first and take path 1. ``trainer.fastcomt_path`` says which ran.

Supported: trl 1.16.x (checked at import: the adapter overrides ``_compute_loss`` and reads batch
keys and trainer attributes that TRL changes between releases). Settings the adapter cannot honour
raise ``ValueError`` naming the setting (PEFT adapters, DeepSpeed ZeRO-3, vision-language models,
MoE router losses, logit multipliers the kernels do not model).
"""

from __future__ import annotations

import types
from contextlib import nullcontext

import torch

from fastcomt.integrations.versions import check_peer_version

TRL_VERSION = check_peer_version("trl", "1.16.0", "1.17.0")

import trl  # noqa: E402
from trl.trainer.utils import FusedCausalLMOutput  # noqa: E402

from fastcomt.integrations.fused_head import lm_head_of, text_config  # noqa: E402
from fastcomt.kernels import linear_logprobs_autograd, linear_policy_loss  # noqa: E402

__all__ = ["GRPOTrainer", "install_fused_lm_head", "use_fastcomt", "TRL_VERSION"]

PATH_POLICY_LOSS = "fused_policy_loss"  # 3 GEMMs: loss and gradient in one fused pass
PATH_LOGPROBS = "fused_logprobs"  # 4 GEMMs: differentiable log-probs, then TRL's own loss code
FUSED_LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")


def _head_operands(hidden: torch.Tensor, head, cast_lm_head_to_fp32: bool):
    """hidden, weight and bias in one dtype: fp32 when TRL casts the head to fp32, else the autocast
    dtype when autocast is on (what the head's matmul would run in), else the weight's dtype."""
    weight, bias = head.weight, head.bias
    device_type = hidden.device.type
    if cast_lm_head_to_fp32:
        dtype = torch.float32
    elif torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
    else:
        dtype = weight.dtype
    bias = None if bias is None else bias.to(dtype)
    return hidden.to(dtype), weight.to(dtype), bias


def install_fused_lm_head(
    model: torch.nn.Module,
    *,
    temperature: float,
    cast_lm_head_to_fp32: bool = False,
    outputs: tuple[str, ...] = ("log_probs",),
) -> None:
    """Make ``model(..., labels=labels, fused_lm_head=True)`` (TRL's fused-head call) return log-probs and
    entropies from ``linear_logprobs_autograd``; every other call goes to the model's previous forward.

    Same contract as TRL's ``add_fused_lm_head``: a ``FusedCausalLMOutput`` whose per-token fields are 0
    where the label is -100; only ``log_probs`` and ``entropy`` are provided. A call with
    ``fused_policy_loss={...}`` (keyword arguments of ``linear_policy_loss`` plus ``targets``) returns
    ``(loss, metrics)`` of the fused policy loss over the last ``targets.shape[1]`` positions instead.
    Both run inside the model's forward, so DDP/FSDP wrappers see the head's use as they expect."""
    unsupported = set(outputs) - {"log_probs", "entropy"}
    if unsupported:
        raise ValueError(f"outputs: expected a subset of ('log_probs', 'entropy'), got {sorted(unsupported)}")
    previous_forward = model.forward

    def fused_forward(
        self,
        *args,
        fused_lm_head=False,
        fused_policy_loss=None,
        labels=None,
        shift_labels=None,
        num_items_in_batch=None,
        **kwargs,
    ):
        if not fused_lm_head and fused_policy_loss is None:
            extra = {"labels": labels, "shift_labels": shift_labels, "num_items_in_batch": num_items_in_batch}
            return previous_forward(*args, **kwargs, **{k: v for k, v in extra.items() if v is not None})
        if kwargs.get("output_router_logits"):
            raise ValueError(
                "output_router_logits: expected False (fastcomt's fused head returns no MoE router losses), got True"
            )
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state
        head = lm_head_of(self)
        autocast = torch.autocast(hidden.device.type, enabled=False) if cast_lm_head_to_fp32 else nullcontext()
        if fused_policy_loss is not None:
            options = dict(fused_policy_loss)
            targets = options.pop("targets")
            mask = options.pop("mask")
            hidden = hidden[:, -targets.shape[1] - 1 : -1].to(head.weight.device)
            with autocast:
                h, w, b = _head_operands(hidden, head, cast_lm_head_to_fp32)
                return linear_policy_loss(
                    h, w, targets, mask, bias=b, logit_scale=head.logit_scale, softcap=head.softcap, **options
                )
        if shift_labels is None:
            hidden, labels = hidden[:, :-1], labels[:, 1:]
        else:
            labels = shift_labels
        hidden = hidden.to(head.weight.device)
        labels = labels.to(head.weight.device)
        mask = labels != -100
        with autocast:
            h, w, b = _head_operands(hidden, head, cast_lm_head_to_fp32)
            log_probs, entropy = linear_logprobs_autograd(
                h,
                w,
                labels,
                mask=mask,
                bias=b,
                temperature=temperature,
                logit_scale=head.logit_scale,
                softcap=head.softcap,
            )
        count = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        return FusedCausalLMOutput(
            loss=-log_probs.sum() / count,
            log_probs=log_probs,
            entropy=entropy if "entropy" in outputs else None,
            label_mask=mask,
        )

    model.forward = types.MethodType(fused_forward, model)


def _check_supported(trainer: trl.GRPOTrainer) -> None:
    """Raises ValueError naming each setting the fused head would silently change."""
    model = trainer.model
    if hasattr(model, "peft_config"):
        raise ValueError(
            "peft_config: expected None (fastcomt's GRPOTrainer does not support PEFT adapters; use "
            "trl.GRPOTrainer), got a PEFT adapter"
        )
    if getattr(trainer, "is_deepspeed_enabled", False):
        from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

        if is_deepspeed_zero3_enabled():
            raise ValueError(
                "deepspeed: expected ZeRO stage 0-2 or FSDP2 (ZeRO-3 shards the LM head, which the fused "
                "head reads whole), got ZeRO-3"
            )
    config = text_config(model)
    if config is not model.config:
        raise ValueError(f"model: expected a text-only causal LM, got the multimodal {type(model).__name__}")
    if trainer.aux_loss_enabled:
        raise ValueError(
            f"router_aux_loss_coef: expected 0 (MoE load-balancing losses are not supported), got {trainer.router_aux_loss_coef}"
        )
    lm_head_of(model)  # raises on logit multipliers the kernels do not model
    if trainer.ref_model is not None:
        lm_head_of(trainer.ref_model)


def _fused_path_blockers(trainer: trl.GRPOTrainer, inputs: dict) -> list[str]:
    """Why the 3-GEMM fused policy loss cannot compute TRL's objective for this batch (empty: it can)."""
    args = trainer.args
    blockers = {
        f"loss_type={trainer.loss_type!r}": trainer.loss_type not in FUSED_LOSS_TYPES,
        "importance_sampling_level='sequence'": trainer.importance_sampling_level != "token",
        "top_entropy_quantile < 1": trainer.top_entropy_quantile < 1.0,
        "off_policy_mask_threshold": trainer.off_policy_mask_threshold is not None,
        "entropy bonus": trainer._entropy_bonus_enabled,
        "delta <= 1": args.delta is not None and args.delta <= 1.0,
        "multimodal inputs": any(
            inputs.get(k) is not None for k in ("pixel_values", "token_type_ids", "mm_token_type_ids")
        ),
    }
    return [name for name, blocked in blockers.items() if blocked]


class GRPOTrainer(trl.GRPOTrainer):
    """``trl.GRPOTrainer`` with fastcomt's fused LM head (see the module docstring). Same arguments."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _install(self)

    def _compute_loss(self, model, inputs):
        blockers = _fused_path_blockers(self, inputs)
        self.fastcomt_path = PATH_LOGPROBS if blockers else PATH_POLICY_LOSS
        if blockers:
            # TRL's own loss code, on log-probs from the patched (fused, differentiable) head.
            return super()._compute_loss(model, inputs)
        return _fused_policy_loss(self, model, inputs)


def _install(trainer: trl.GRPOTrainer) -> None:
    _check_supported(trainer)
    install_fused_lm_head(
        trainer.model,
        temperature=trainer.temperature,
        cast_lm_head_to_fp32=trainer.args.cast_lm_head_to_fp32,
        outputs=("log_probs", "entropy"),
    )
    if trainer.ref_model is not None:
        install_fused_lm_head(
            trainer.ref_model, temperature=trainer.temperature, cast_lm_head_to_fp32=trainer.args.cast_lm_head_to_fp32
        )
    trainer.fastcomt_path = None


def use_fastcomt(trainer: trl.GRPOTrainer) -> GRPOTrainer:
    """Switch an already built ``trl.GRPOTrainer`` to the fused kernels (in place; returns it)."""
    if type(trainer) is not trl.GRPOTrainer:
        raise TypeError(f"trainer: expected a trl.GRPOTrainer, got {type(trainer).__name__}")
    trainer.__class__ = GRPOTrainer
    _install(trainer)
    return trainer


def _fused_policy_loss(trainer: GRPOTrainer, model, inputs: dict) -> torch.Tensor:
    """TRL's token-level objective (``_compute_loss`` for grpo/bnpo/dr_grpo/dapo) in one fused pass."""
    prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
    completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
    attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
    mask = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]

    mode = "train" if trainer.model.training else "eval"
    accumulation = trainer.current_gradient_accumulation_steps if mode == "train" else 1.0
    loss_type = trainer.loss_type
    normalizer = None
    if loss_type == "dapo":
        # TRL: the generation batch's token count over all processes, rescaled to one accumulation window.
        normalizer = inputs["num_items_in_batch"].clamp(min=1.0) / trainer.accelerator.num_processes
        if mode == "train":
            normalizer = normalizer * trainer.current_gradient_accumulation_steps / trainer.args.steps_per_generation
    is_ratio = None
    if trainer.use_vllm and trainer.vllm_importance_sampling_correction:
        # TRL's truncated/masked rollout ratio: [B, T] (token modes) or [B, 1] (sequence modes).
        is_ratio = inputs["importance_sampling_ratio"]
        is_ratio = is_ratio[:, 0] if is_ratio.dim() == 2 and is_ratio.shape[1] == 1 else is_ratio
    options = dict(
        targets=completion_ids,
        mask=mask,
        advantages=inputs["advantages"],
        old_logprobs=inputs.get("old_per_token_logps"),
        ref_logprobs=inputs["ref_per_token_logps"] if trainer.beta != 0.0 else None,
        loss_type=loss_type,
        eps_low=trainer.epsilon_low,
        eps_high=trainer.epsilon_high,
        beta=trainer.beta,
        bias_corrected_kl=trainer.beta != 0.0 and trainer.args.use_bias_correction_kl,
        delta=trainer.args.delta,
        is_weights=is_ratio,
        temperature=trainer.temperature,
        max_tokens=trainer.max_completion_length if loss_type == "dr_grpo" else None,
        loss_normalizer=normalizer,
    )
    with trainer.accelerator.autocast():
        loss, metrics = model(input_ids=input_ids, attention_mask=attention_mask, fused_policy_loss=options)
    if loss_type != "dapo":
        loss = loss / accumulation
    _log_metrics(trainer, mode, metrics, mask)
    return loss


def _log_metrics(trainer: GRPOTrainer, mode: str, metrics: dict, mask: torch.Tensor) -> None:
    """TRL's token-weighted global means (entropy, KL, clip fractions) from the fused pass's local means.
    The per-sequence extremes TRL also logs (clip_ratio/low_min, high_max) need per-token ratios the
    fused pass does not return, so they are not logged on this path."""
    count = mask.sum().float()

    def global_mean(local_mean: torch.Tensor) -> float:
        totals = trainer.accelerator.reduce(torch.stack([local_mean.float() * count, count]), reduction="sum")
        return (totals[0] / totals[1].clamp(min=1.0)).item()

    store = trainer._metrics[mode]
    if trainer.beta != 0.0:
        store["kl"].append(global_mean(metrics["kl"]))
    store["entropy"].append(global_mean(metrics["entropy"]))
    store["clip_ratio/low_mean"].append(global_mean(metrics["clip_frac_low"]))
    store["clip_ratio/high_mean"].append(global_mean(metrics["clip_frac_high"]))
    store["clip_ratio/region_mean"].append(global_mean(metrics["clip_frac_low"] + metrics["clip_frac_high"]))
