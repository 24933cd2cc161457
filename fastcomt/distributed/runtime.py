"""The process group of a torchrun launch, and the few collectives the trainers need.

torchrun (or any launcher that sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) starts one
process per GPU; `init_distributed` joins them (NCCL on GPUs, gloo on CPUs). Without those variables, or
with WORLD_SIZE=1, nothing is initialised and every helper below returns its input: a plain
`fastcomt sft` is the same program it always was.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "DistContext",
    "init_distributed",
    "shutdown_distributed",
    "all_reduce_sum",
    "all_reduce_max",
    "all_gather_objects",
    "broadcast_object",
    "barrier",
]


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: rank, world size, its local GPU index, and the device collectives use."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    comm_device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        """More than one process: shard, reduce, write on rank 0 only."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, shows progress and writes shared files."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}: expected an int in the environment, got {raw!r}") from None


def init_distributed(device: torch.device) -> tuple[DistContext, torch.device]:
    """(context, this rank's training device). Joins the process group when WORLD_SIZE > 1.

    device: the configured device ("cuda" becomes cuda:LOCAL_RANK under a launcher, so each process
    drives its own GPU; a CPU run uses gloo).
    """
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return DistContext(), device
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, **({"device_id": device} if device.type == "cuda" else {}))
    comm = device if device.type == "cuda" else torch.device("cpu")
    return DistContext(rank=rank, world_size=dist.get_world_size(), local_rank=local_rank, comm_device=comm), device


def shutdown_distributed(ctx: DistContext) -> None:
    """Leave the process group (the end of a run; torchrun warns about a group never destroyed)."""
    if ctx.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(ctx: DistContext, values: list[float]) -> list[float]:
    """Element-wise sum over ranks, in float64 (exact for token counts up to 2**53)."""
    if not ctx.enabled:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=ctx.comm_device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def all_reduce_max(ctx: DistContext, value: int) -> int:
    """The largest `value` over ranks (e.g. micro-batches per rank, so every rank runs as many)."""
    if not ctx.enabled:
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.int64, device=ctx.comm_device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def all_gather_objects(ctx: DistContext, obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (small things: per-rank metrics, graded rollouts)."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(ctx: DistContext, obj: Any) -> Any:
    """Rank 0's `obj` on every rank."""
    if not ctx.enabled:
        return obj
    box = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()
