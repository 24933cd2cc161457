"""Reading new policy weights (named tensors or a checkpoint path) and copying them into a model."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from fastcomt.rollout.engine import WeightsSource

_TORCH_SUFFIXES = (".pt", ".pth", ".bin")


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint: a ``.safetensors`` file, a torch file, or a directory of either
    (every ``*.safetensors`` shard, else ``pytorch_model*.bin``)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("*.safetensors")) or sorted(p.glob("pytorch_model*.bin"))
        if not files:
            raise ValueError(f"checkpoint directory {p} holds no *.safetensors or pytorch_model*.bin file")
    elif p.is_file():
        files = [p]
    else:
        raise ValueError(f"checkpoint path {p} does not exist")
    out: dict[str, torch.Tensor] = {}
    for f in files:
        out.update(_read_file(f))
    return out


def _read_file(f: Path) -> dict[str, torch.Tensor]:
    if f.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(f))
    if f.suffix in _TORCH_SUFFIXES:
        obj = torch.load(str(f), map_location="cpu", weights_only=True)
        if not isinstance(obj, Mapping):
            raise ValueError(f"{f}: expected a name -> tensor mapping, got {type(obj).__name__}")
        return dict(obj)
    raise ValueError(f"unsupported checkpoint file {f}: expected .safetensors, .pt, .pth or .bin")


def named_tensors(weights: WeightsSource) -> list[tuple[str, torch.Tensor]]:
    """Normalise a weights argument to (name, tensor) pairs, reading a checkpoint if given a path."""
    if isinstance(weights, (str, os.PathLike)):
        pairs: Iterable = read_checkpoint(weights).items()
    elif isinstance(weights, Mapping):
        pairs = weights.items()
    elif isinstance(weights, Iterable):
        pairs = weights
    else:
        raise TypeError(
            f"weights must be a name->tensor mapping, (name, tensor) pairs or a checkpoint path, got {type(weights).__name__}"
        )
    out = []
    for item in pairs:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise TypeError(f"weights: expected (name, tensor) pairs, got {item!r:.80}")
        name, tensor = item
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise TypeError(
                f"weights: expected (str, torch.Tensor) pairs, got ({type(name).__name__}, {type(tensor).__name__})"
            )
        out.append((name, tensor))
    if not out:
        raise ValueError("weights holds no tensors")
    return out


@torch.no_grad()
def copy_into_model(model: torch.nn.Module, pairs: Iterable[tuple[str, torch.Tensor]]) -> int:
    """Copy tensors into the model's parameters/buffers of the same name; return how many.

    Partial updates are allowed; an unknown name or a shape mismatch raises ValueError before
    anything is copied, so a bad update never leaves the model half-written.
    """
    # remove_duplicate=False keeps both names of tied weights (lm_head / embed_tokens).
    targets = dict(model.named_parameters(remove_duplicate=False))
    targets.update(model.named_buffers(remove_duplicate=False))
    pairs = list(pairs)
    unknown = [n for n, _ in pairs if n not in targets]
    if unknown:
        raise ValueError(
            f"weights name tensors the model does not have: {unknown[:5]}{' ...' if len(unknown) > 5 else ''}"
        )
    for name, tensor in pairs:
        if tuple(tensor.shape) != tuple(targets[name].shape):
            raise ValueError(
                f"weight {name!r} has shape {tuple(tensor.shape)}, the model expects {tuple(targets[name].shape)}"
            )
    for name, tensor in pairs:
        targets[name].copy_(tensor.to(device=targets[name].device, dtype=targets[name].dtype))
    return len(pairs)
