"""Model and optimizer state through `torch.distributed.checkpoint` (DCP): sharded writes, any-world-size reads.

Each rank writes its own shards (`dcp.save`), with global shapes and offsets in the metadata, so a
checkpoint written by N ranks loads on M ranks, and on one plain (unsharded) process: DCP reshards
on read. State dicts come from `get_state_dict` / `set_state_dict`, which name optimizer state by
parameter name (not by position), the same whether the model is sharded or not.

`full_model_copy` gathers the full weights (one parameter at a time, offloaded to CPU on rank 0) into
a plain model that `save_pretrained` writes as an ordinary Hugging Face folder.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .runtime import DistContext

__all__ = ["save_sharded_state", "load_sharded_state", "full_state_dict", "full_model_copy", "SHARDED_DIR"]

SHARDED_DIR = "sharded"  # inside a checkpoint folder: DCP's .distcp files and .metadata


def save_sharded_state(
    folder: str | os.PathLike[str], *, model: nn.Module, optimizer: torch.optim.Optimizer | None
) -> None:
    """Every rank writes its shards of the model (and optimizer) state into `folder` (collective)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_sd, optim_sd = get_state_dict(model, optimizer if optimizer is not None else [])
    state = {"model": model_sd}
    if optimizer is not None:
        state["optimizer"] = optim_sd
    dcp.save(state, checkpoint_id=str(folder))


def load_sharded_state(
    folder: str | os.PathLike[str], *, model: nn.Module, optimizer: torch.optim.Optimizer | None
) -> None:
    """Read a DCP checkpoint into `model` (and `optimizer`) in place, resharding to this run's layout.

    Works on one process without a process group (the model is then plain) and on any number of ranks.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    if not (Path(folder) / ".metadata").is_file():
        raise FileNotFoundError(f"{folder}: no .metadata (not a complete sharded checkpoint)")
    model_sd, optim_sd = get_state_dict(model, optimizer if optimizer is not None else [])
    state: dict[str, Any] = {"model": model_sd}
    if optimizer is not None:
        state["optimizer"] = optim_sd
    with warnings.catch_warnings():  # one plain process reading a sharded checkpoint is intended here
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(state, checkpoint_id=str(folder))
    if optimizer is not None:
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
    else:
        set_state_dict(model, [], model_state_dict=state["model"], optim_state_dict={})


def full_state_dict(model: nn.Module, ctx: DistContext) -> dict[str, torch.Tensor]:
    """The full (unsharded) weights, on CPU, on rank 0 (empty elsewhere); collective under FSDP.

    Parameters are gathered one at a time and moved to CPU at once, so no GPU ever holds the whole
    model beyond its own shard plus one parameter.
    """
    if not ctx.enabled:
        return {k: v.detach() for k, v in model.state_dict().items()}
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def full_model_copy(model: nn.Module, ctx: DistContext) -> nn.Module | None:
    """A plain CPU model (same class and config as the sharded one) holding the full weights, on rank 0;
    None on the other ranks. For `save_pretrained` (the final Hugging Face folder)."""
    state = full_state_dict(model, ctx)
    if not ctx.is_main:
        return None
    config = model.config
    plain_cls = next(
        c for c in type(model).__mro__ if not c.__name__.startswith("FSDP")
    )  # FSDP2 subclasses the model class
    with torch.device("meta"):
        plain = plain_cls(config)
    plain.load_state_dict(state, strict=False, assign=True)
    plain.tie_weights()
    missing = [name for name, p in plain.named_parameters() if p.is_meta]
    if missing:
        raise ValueError(f"model: the gathered state dict lacks {missing[:5]}")
    return plain.eval()
