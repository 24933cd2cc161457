"""The LM head weight when it is a DTensor (FSDP2-sharded, or sharded by hand): gather once per loss call.

Inside the trainers the FSDP root all-gathers the head before the loss (fsdp.py), so the loss sees a
plain tensor. `gathered_head_weight` is for callers that hold the sharded parameter itself (their own
FSDP2 layout, another trainer's adapter): it all-gathers the full [V, H] weight once, before the fused
loss loops over its token chunks, and its backward reduce-scatters (sums) the full-weight gradient of
every rank into the sharded parameter's gradient.
"""

from __future__ import annotations

import torch

__all__ = ["gathered_head_weight"]


def gathered_head_weight(weight: torch.Tensor) -> torch.Tensor:
    """The full weight (differentiable); `weight` itself when it is a plain tensor.

    The gradient each rank computes against the full weight is a partial sum (its own tokens), so the
    all-gather is told its gradient is `Partial`: the backward is a reduce-scatter (sum over ranks) into
    the shard, the gradient of the loss summed over every rank's tokens.
    """
    from torch.distributed.tensor import DTensor, Partial

    if not isinstance(weight, DTensor):
        return weight
    return weight.full_tensor(grad_placements=[Partial()] * weight.device_mesh.ndim)
