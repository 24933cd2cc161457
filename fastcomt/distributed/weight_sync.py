"""Full weights out of a sharded trainer, a bucket at a time, for the rollout engines.

A rollout engine (Transformers on each rank, an in-process SGLang engine, SGLang servers) needs full
tensors. Under FSDP2 each parameter is a DTensor shard; `gathered_buckets` all-gathers parameters one
by one and hands them out in buckets of about `bucket_bytes`, so no rank ever holds more than its
shards plus one bucket of full tensors (never the whole model at once). Every rank must iterate
(each `full_tensor` is a collective); who installs a bucket is the caller's choice: every rank into its
own engine, or rank 0 into servers shared by all ranks.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["DEFAULT_BUCKET_BYTES", "gathered_buckets"]

DEFAULT_BUCKET_BYTES = 512 << 20


@torch.no_grad()
def gathered_buckets(model: nn.Module, *, bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """(name, full tensor) pairs of `model`'s parameters, in buckets of at least one tensor and at most
    about `bucket_bytes` (a single larger tensor gets a bucket of its own). Plain tensors pass as they
    are (a one-process model); names are the model's own (FSDP2 adds no prefix)."""
    if isinstance(bucket_bytes, bool) or not isinstance(bucket_bytes, int) or bucket_bytes < 1:
        raise ValueError(f"bucket_bytes: expected a positive int, got {bucket_bytes!r}")
    bucket: list[tuple[str, torch.Tensor]] = []
    size = 0
    for name, param in model.named_parameters():
        tensor = param.detach()
        nbytes = tensor.numel() * tensor.element_size()  # a DTensor reports its global shape
        if bucket and size + nbytes > bucket_bytes:
            yield bucket
            bucket, size = [], 0
        full = getattr(tensor, "full_tensor", None)
        bucket.append((name, full() if full is not None else tensor))
        size += nbytes
    if bucket:
        yield bucket
