"""FSDP2 sharding of a Hugging Face causal LM: `fully_shard` on every decoder layer, on an untied input
embedding, then the root (the final norm and the LM head, and a tied embedding).

Why the root holds the LM head: the trainers never call the model's own
forward (that would compute [tokens, vocab] logits); they take hidden states from the base model and
hand the LM head weight to the fused loss. `register_fsdp_forward_method` makes that hidden-states
call a forward in FSDP's eyes, so the root's pre-forward all-gathers the root parameters (LM head
included) once per call, and, the root never resharding after forward, `model.lm_head.weight` is the
full (unsharded) parameter when the loss reads it: the head is gathered once per loss call, not
once per chunk, and its gradient is reduce-scattered by FSDP with every other root gradient.

Gradients are *summed* over ranks (divide factor 1): the trainers divide each rank's loss by the
global token (or sequence) count, so the sum of the ranks' gradients is the one-process gradient.
"""

from __future__ import annotations

from types import MethodType
from typing import Any

import torch
from torch import nn

from .runtime import DistContext

__all__ = [
    "HIDDEN_STATES_METHOD",
    "shard_model",
    "hidden_states_method",
    "decoder_layers",
    "unwrap_grad_norm",
    "is_sharded",
]

HIDDEN_STATES_METHOD = "fastcomt_hidden_states"


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks of a Hugging Face causal LM (`model.<base>.layers`)."""
    base = getattr(model, getattr(model, "base_model_prefix", "model"), None)
    layers = getattr(base, "layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise TypeError(
            f"model: expected a causal LM with `{getattr(model, 'base_model_prefix', 'model')}.layers`, "
            f"got {type(model).__name__}"
        )
    return list(layers)


def hidden_states_method(self: nn.Module, **kwargs: Any) -> torch.Tensor:
    """Last hidden states from the base model (no LM head); bound to the model as a forward method."""
    base = getattr(self, self.base_model_prefix)
    return base(**kwargs).last_hidden_state


def shard_model(model: nn.Module, ctx: DistContext, *, mixed_precision: bool) -> nn.Module:
    """Shard `model` in place over all ranks (FSDP2) and return it; unchanged on one process.

    mixed_precision: bf16 parameters for compute with fp32 gradient reduction (GPU runs); the
    sharded master copy and the optimizer stay fp32. CPU runs pass False (fp32 throughout).
    """
    if not ctx.enabled:
        return model
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

    mesh = init_device_mesh(ctx.comm_device.type, (ctx.world_size,))
    mp = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if mixed_precision
        else MixedPrecisionPolicy()
    )
    modules = []
    for layer in decoder_layers(model):
        modules.append(fully_shard(layer, mesh=mesh, mp_policy=mp))
    embedding = model.get_input_embeddings()
    if embedding.weight is not model.get_output_embeddings().weight:
        # an untied input embedding is its own unit: gathered for its lookup only (a tied one is the
        # LM head too, and stays with the root)
        modules.append(fully_shard(embedding, mesh=mesh, mp_policy=mp))
    modules.append(fully_shard(model, mesh=mesh, mp_policy=mp))
    for module in modules:
        module.set_gradient_divide_factor(1.0)  # sum, not mean: see the module docstring
        force_sum = getattr(module, "set_force_sum_reduction_for_comms", None)  # torch >= 2.8
        if force_sum is not None:
            force_sum(True)  # plain SUM then a divide by 1 (gloo has no PREMUL_SUM; NCCL has both)
    setattr(model, HIDDEN_STATES_METHOD, MethodType(hidden_states_method, model))
    register_fsdp_forward_method(model, HIDDEN_STATES_METHOD)
    return model


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def unwrap_grad_norm(norm: torch.Tensor) -> float:
    """The global gradient norm as a float (a DTensor norm from sharded gradients is reduced first)."""
    full = getattr(norm, "full_tensor", None)
    return float(full() if full is not None else norm)


def clip_grad_norm(model: nn.Module, max_norm: float) -> torch.Tensor:
    """`torch.nn.utils.clip_grad_norm_` that also works on FSDP2's sharded gradients: the norm over
    all ranks' shards is reduced to one number before the clip coefficient is applied."""
    params = [p for p in model.parameters() if p.grad is not None]
    grads = [p.grad for p in params]
    total = torch.nn.utils.get_total_norm(grads, norm_type=2.0, error_if_nonfinite=False, foreach=None)
    full = getattr(total, "full_tensor", None)
    if full is not None:
        total = full()
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, total, foreach=None)
    return total
