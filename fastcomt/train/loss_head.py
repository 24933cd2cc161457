"""Which LM-head loss a run uses: `auto` picks the fused Triton kernels on a GPU and plain torch on a CPU.

On a CPU the Triton kernels only run in Triton's interpreter, about 10x slower than plain torch for
the same losses (to 4 decimals); the interpreter is for tests. The plain-torch head materialises the
logits of one packed row (SFT: at most `optim.row_tokens` tokens) or one micro-batch (RL: at most
`loss.micro_batch_tokens` padded tokens) at a time, so its memory is bounded by those settings, not by
the step's size.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LOSS_HEADS", "resolve_loss_head", "describe_loss_head"]

LOSS_HEADS = ("auto", "fused", "torch")


def resolve_loss_head(name: str, device: Any) -> str:
    """"fused" or "torch" for the configured `name` on `device` (a torch.device or its type string)."""
    if name not in LOSS_HEADS:
        raise ValueError(f"loss head: expected one of {list(LOSS_HEADS)}, got {name!r}")
    if name != "auto":
        return name
    device_type = getattr(device, "type", str(device).split(":")[0])
    return "fused" if device_type == "cuda" else "torch"


def describe_loss_head(configured: str, resolved: str) -> str:
    """Short text for progress output, e.g. "torch head (auto)"."""
    return f"{resolved} head" + (" (auto)" if configured == "auto" else "")
