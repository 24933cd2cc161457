"""Learning-rate schedule: linear warm-up, then cosine decay to a floor.

A pure function of the step, wrapped in a LambdaLR, so the scheduler's state is just its step count
and a resumed run continues the same curve.
"""

from __future__ import annotations

import math

import torch

__all__ = ["cosine_with_warmup", "cosine_scheduler"]


def cosine_with_warmup(step: int, *, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.1) -> float:
    """Multiplier of the peak learning rate at `step` (0-based; step k is the k-th optimizer update).

    Warm-up rises linearly from 1/(warmup_steps+1) to 1 over `warmup_steps` steps; the cosine then
    falls from 1 to `min_lr_ratio` at `total_steps` and stays there.
    """
    if warmup_steps < 0 or total_steps < 1:
        raise ValueError(f"warmup_steps >= 0 and total_steps >= 1 expected, got {warmup_steps}, {total_steps}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio: expected a float in [0, 1], got {min_lr_ratio}")
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def cosine_scheduler(
    optimizer: torch.optim.Optimizer, *, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.1
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR following `cosine_with_warmup` (validated once here, not at every step)."""
    cosine_with_warmup(0, warmup_steps=warmup_steps, total_steps=total_steps, min_lr_ratio=min_lr_ratio)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: cosine_with_warmup(
            step, warmup_steps=warmup_steps, total_steps=total_steps, min_lr_ratio=min_lr_ratio
        ),
    )
