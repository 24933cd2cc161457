"""Argument checks that need the data, deferred so the fused path never waits for the device.

The checked path (the default) validates targets with one host sync per call and drops inactive rows
before the GEMMs (two more syncs: ``active.all()`` and ``nonzero()``). Those syncs block CUDA graphs
and the overlap of the next launch with the host. With ``LMHeadConfig(sync_free=True)`` the driver
instead keeps every row, gives inactive rows and out-of-range targets a zero coefficient and zero
statistics, and counts the out-of-range targets on the device; ``raise_deferred_errors()`` reads that
count (one sync) and raises, e.g. once per optimizer step.
"""

from __future__ import annotations

import torch

# device -> int64 count of active tokens whose target was outside [0, V) since the last check
_BAD_TARGETS: dict[torch.device, torch.Tensor] = {}


def mask_rows_on_device(
    targets: torch.Tensor, active: torch.Tensor, coef: torch.Tensor | None, vocab_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (rows to count, fp32 row coefficients with 0 on the others), without a host sync."""
    in_range = (targets >= 0) & (targets < vocab_size)
    counter = _BAD_TARGETS.get(targets.device)
    if counter is None:
        counter = _BAD_TARGETS[targets.device] = torch.zeros((), dtype=torch.int64, device=targets.device)
    counter.add_((active & ~in_range).sum())
    active = active & in_range
    weights = active.to(torch.float32)
    return active, weights if coef is None else coef.to(torch.float32) * weights


def raise_deferred_errors() -> None:
    """Raises ValueError if any sync-free call since the last check saw an out-of-range target (the
    affected tokens were left out of the loss and the gradients); resets the counts."""
    found = {device: int(counter) for device, counter in _BAD_TARGETS.items()}
    for counter in _BAD_TARGETS.values():
        counter.zero_()
    bad = {device: n for device, n in found.items() if n}
    if bad:
        raise ValueError(
            f"targets: expected values in [0, V) on active tokens, got {sum(bad.values())} outside it since the "
            f"last check (per device: { {str(d): n for d, n in bad.items()} }); those tokens were left out"
        )
