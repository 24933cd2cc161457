"""A Hugging Face causal LM's LM head as fastcomt's fused kernels: what the head computes, and the
hidden states that feed it.

The model's own forward multiplies the final hidden states by the head (plus, on some families, a
bias, a logit scale or Gemma's softcapping) and returns ``[B, T, V]`` logits; the fused path instead
runs only the backbone and hands ``hidden`` and the head's parameters to a kernel. So the variant of
the head must be read from the model config, and a config key that changes the logits in a way the
kernels do not implement must stop the run rather than train a different objective.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Config keys that rescale or transform the logits in a family's forward and that the kernels do not
# model; found on a model, they raise instead of being ignored.
UNSUPPORTED_LOGIT_KEYS = ("output_multiplier", "lm_head_multiplier", "mup_width_multiplier")


@dataclass(frozen=True)
class LMHead:
    """The head of a causal LM as the fused kernels take it."""

    weight: torch.Tensor  # [V, H]
    bias: torch.Tensor | None  # [V]
    logit_scale: float
    softcap: float | None


def text_config(model: torch.nn.Module):
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def logit_variant(config) -> tuple[float, float | None]:
    """``(logit_scale, softcap)`` of a transformers config: Cohere's ``logit_scale`` multiplies the
    logits, Granite's ``logits_scaling`` divides them, Gemma's ``final_logit_softcapping`` caps them."""
    for key in UNSUPPORTED_LOGIT_KEYS:
        if getattr(config, key, None) not in (None, 1, 1.0):
            raise ValueError(
                f"model config {key}: expected unset (fastcomt's fused LM head applies logit_scale, "
                f"logits_scaling and final_logit_softcapping only), got {getattr(config, key)!r}"
            )
    scale = 1.0
    if getattr(config, "logit_scale", None) is not None:
        scale = float(config.logit_scale)
    elif getattr(config, "logits_scaling", None) is not None:
        scale = 1.0 / float(config.logits_scaling)
    softcap = getattr(config, "final_logit_softcapping", None)
    return scale, None if softcap is None else float(softcap)


def lm_head_of(model: torch.nn.Module) -> LMHead:
    """The output embedding of ``model`` (tied or not) and the logit variant of its config."""
    head = model.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear):
        raise TypeError(
            f"model: expected a causal LM whose output embedding is an nn.Linear, got {type(head).__name__}"
        )
    weight, bias = head.weight, head.bias
    if hasattr(weight, "full_tensor"):
        # FSDP2 shards parameters as DTensors; the kernels take the whole head.
        weight = weight.full_tensor()
        bias = None if bias is None else bias.full_tensor()
    scale, softcap = logit_variant(text_config(model))
    return LMHead(weight, bias, scale, softcap)


def backbone_of(model: torch.nn.Module) -> torch.nn.Module:
    """The decoder stack of a causal LM (what runs before the head)."""
    backbone = getattr(model, "base_model", None)
    if backbone is None or backbone is model:
        raise TypeError(
            f"model: expected a transformers causal LM with a base_model backbone, got {type(model).__name__}"
        )
    return backbone


def next_token_hidden(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    logits_to_keep: int,
    **model_kwargs,
) -> torch.Tensor:
    """Final hidden states ``[B, logits_to_keep, H]`` at the positions that predict the last
    ``logits_to_keep`` tokens of ``input_ids`` (position t predicts token t + 1)."""
    outputs = backbone_of(model)(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **model_kwargs)
    hidden = outputs.last_hidden_state
    return hidden[:, -logits_to_keep - 1 : -1]
