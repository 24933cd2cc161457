"""Causal LMs for training: a tiny Qwen2/Llama built from a config (CPU tests, demos), or a real
checkpoint loaded from a local path (GPU runs). No downloads: `path` must be a local directory.

The trainers never call the model's LM head: they take hidden states from the base model
(`base_model(model)`) and hand them, with `lm_head_weight(model)`, to the fused loss kernels.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from fastcomt.config import config_from_dict

from .config import ModelConfig

__all__ = [
    "ModelConfig",
    "build_model",
    "build_tiny_model",
    "load_pretrained_model",
    "base_model",
    "hidden_states",
    "lm_head_weight",
    "default_attn_implementation",
    "build_device",
    "build_config",
]

_FAMILIES = {"qwen2": (Qwen2Config, Qwen2ForCausalLM), "llama": (LlamaConfig, LlamaForCausalLM)}


def default_attn_implementation(device: torch.device | str) -> str:
    """Varlen flash-attention when it is installed and we are on a GPU; SDPA otherwise.

    Both handle packed rows: flash-attention reads sequence boundaries from position_ids (varlen),
    and for SDPA transformers builds a block-diagonal causal mask from restarting position_ids.
    """
    if torch.device(device).type == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def build_tiny_model(
    config: ModelConfig | dict[str, Any],
    vocab_size: int,
    *,
    pad_token_id: int | None = None,
    eos_token_id: int | None = None,
    device: torch.device | str = "cpu",
) -> PreTrainedModel:
    """A freshly initialised causal LM (seeded by `init_seed`) in float32."""
    cfg = config if isinstance(config, ModelConfig) else config_from_dict(ModelConfig, config, "model")
    if cfg.family not in _FAMILIES:
        raise ValueError(f"model.family: expected one of {sorted(_FAMILIES)}, got {cfg.family!r}")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 2:
        raise ValueError(f"vocab_size: expected an int >= 2, got {vocab_size!r}")
    if cfg.hidden_size % cfg.num_heads or cfg.num_heads % cfg.num_kv_heads:
        raise ValueError(
            f"model: hidden_size ({cfg.hidden_size}) must divide by num_heads ({cfg.num_heads}), "
            f"and num_heads by num_kv_heads ({cfg.num_kv_heads})"
        )
    config_cls, model_cls = _FAMILIES[cfg.family]
    hf_config = config_cls(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        rope_theta=cfg.rope_theta,
        tie_word_embeddings=cfg.tie_word_embeddings,
        pad_token_id=pad_token_id,
        eos_token_id=eos_token_id,
        bos_token_id=None,
        use_cache=False,
    )
    hf_config._attn_implementation = cfg.attn_implementation or default_attn_implementation(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.init_seed)
        model = model_cls(hf_config)
    model = model.to(device)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model


def load_pretrained_model(
    path: str,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    attn_implementation: str | None = None,
    gradient_checkpointing: bool = False,
) -> PreTrainedModel:
    """A local Hugging Face checkpoint directory (weights kept in `dtype`; autocast does bf16 compute)."""
    from fastcomt.model_dir import model_dir_problem

    problem = model_dir_problem(path, "model.path")  # says what is missing and where the model probably is
    if problem is not None:
        raise FileNotFoundError(problem)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype, attn_implementation=attn_implementation or default_attn_implementation(device)
    )
    model = model.to(device)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model


def build_model(
    config: ModelConfig,
    vocab_size: int,
    *,
    pad_token_id: int | None,
    eos_token_id: int | None,
    device: torch.device | str,
) -> PreTrainedModel:
    """A checkpoint when `config.path` is set, else a tiny model for `vocab_size` tokens."""
    if config.path:
        return load_pretrained_model(
            config.path,
            device=device,
            attn_implementation=config.attn_implementation,
            gradient_checkpointing=config.gradient_checkpointing,
        )
    return build_tiny_model(config, vocab_size, pad_token_id=pad_token_id, eos_token_id=eos_token_id, device=device)


def build_device(ctx: Any, device: torch.device) -> torch.device:
    """Where to build the model: `device` on one process; the CPU under torchrun, so that no GPU ever
    holds the whole fp32 model: FSDP2 moves one module at a time to the GPU as it shards it."""
    return torch.device("cpu") if ctx.enabled else device


def build_config(config: ModelConfig, ctx: Any, device: torch.device) -> ModelConfig:
    """`config` with the attention kernel chosen for the training `device` (the model may be built on
    the CPU first, see `build_device`)."""
    if not ctx.enabled or config.attn_implementation:
        return config
    return dataclasses.replace(config, attn_implementation=default_attn_implementation(device))


def base_model(model: PreTrainedModel) -> torch.nn.Module:
    """The transformer without its LM head (returns hidden states)."""
    base = getattr(model, model.base_model_prefix, None)
    if base is None or base is model:
        raise TypeError(f"{type(model).__name__} has no separate base model under {model.base_model_prefix!r}")
    return base


def hidden_states(model: PreTrainedModel, **kwargs: Any) -> torch.Tensor:
    """The base model's last hidden states (the LM head is not run).

    Under FSDP2 the model carries a registered forward method for this (distributed/fsdp.py), so the
    root's parameters, the LM head among them, are gathered for the loss that follows; otherwise this
    is `base_model(model)(**kwargs).last_hidden_state`.
    """
    from fastcomt.distributed.fsdp import HIDDEN_STATES_METHOD

    method = getattr(model, HIDDEN_STATES_METHOD, None)
    if method is not None:
        return method(**kwargs)
    return base_model(model)(**kwargs).last_hidden_state


def lm_head_weight(model: PreTrainedModel) -> torch.Tensor:
    """The [vocab, hidden] output projection (tied or not) that the fused loss multiplies by."""
    head = model.get_output_embeddings()
    if head is None or getattr(head, "bias", None) is not None:
        raise TypeError(f"{type(model).__name__}: expected a bias-free linear LM head")
    return head.weight
