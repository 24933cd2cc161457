"""Past one process: torchrun set-up, FSDP2 sharding, sharded checkpoints, the LM head on sharded or
vocabulary-parallel weights, and weight sync from a sharded trainer.

Every function here is a no-op (or the plain single-process computation) when the run is one
process, so the trainers call them unconditionally and a one-process run is unchanged.
"""

from .fsdp import clip_grad_norm, hidden_states_method, is_sharded, shard_model, unwrap_grad_norm
from .head import gathered_head_weight
from .runtime import (
    DistContext,
    all_gather_objects,
    all_reduce_max,
    all_reduce_sum,
    barrier,
    broadcast_object,
    init_distributed,
    shutdown_distributed,
)

__all__ = [
    "DistContext",
    "init_distributed",
    "shutdown_distributed",
    "all_reduce_sum",
    "all_reduce_max",
    "all_gather_objects",
    "broadcast_object",
    "barrier",
    "shard_model",
    "is_sharded",
    "clip_grad_norm",
    "hidden_states_method",
    "unwrap_grad_norm",
    "gathered_head_weight",
]
