"""Which LM-head loss a run uses: `auto` picks the fused Triton kernels on a GPU and the chunked
plain-torch head on a CPU.

On a CPU the Triton kernels only run in Triton's interpreter, about 10x slower than plain torch for
the same losses (to 4 decimals); the interpreter is for tests. The heads:
- fused: the Triton kernels (no [tokens, vocab] logits at all);
- chunked: plain torch, the logits of one chunk of tokens at a time (train/torch_head.py: SFT
  recomputes each chunk in the backward; RL caps each micro-batch's logits), so memory stays bounded
  by `torch_head.LOGITS_BUDGET_BYTES` whatever the row length or vocabulary;
- torch: plain torch over a whole packed row (SFT: the model's own head, on the row's trained
  tokens) or micro-batch (RL: the full-logits reference), the reference path (the demo's choice on
  CPU, kept so its numbers stay put).
"""

from __future__ import annotations

from typing import Any

__all__ = ["LOSS_HEADS", "resolve_loss_head", "describe_loss_head"]

LOSS_HEADS = ("auto", "fused", "chunked", "torch")


def resolve_loss_head(name: str, device: Any) -> str:
    """ "fused", "chunked" or "torch" for the configured `name` on `device` (a torch.device or its type string)."""
    if name not in LOSS_HEADS:
        raise ValueError(f"loss head: expected one of {list(LOSS_HEADS)}, got {name!r}")
    if name != "auto":
        return name
    device_type = getattr(device, "type", str(device).split(":")[0])
    return "fused" if device_type == "cuda" else "chunked"


def describe_loss_head(configured: str, resolved: str) -> str:
    """Short text for progress output, e.g. "chunked head (auto)"."""
    return f"{resolved} head" + (" (auto)" if configured == "auto" else "")
