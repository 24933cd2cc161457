"""Full weights out of a sharded trainer, a bucket at a time, for the rollout engines.

A rollout engine (Transformers on each rank, an in-process SGLang engine, SGLang servers) needs full
tensors. Under FSDP2 each parameter is a DTensor shard; `gathered_buckets` all-gathers parameters one
by one and hands them out in buckets of about `bucket_bytes`, so no rank ever holds more than its
shards plus one bucket of full tensors (never the whole model at once). Every rank must iterate
(each `full_tensor` is a collective); who installs a bucket is the caller's choice: every rank into its
own engine, or rank 0 into servers shared by all ranks, streamed over HTTP (`SGLangFleetEngine.
update_weights_in_buckets`) or, for servers on other machines, written bucket by bucket to a shared
folder they load from (`write_buckets`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["DEFAULT_BUCKET_BYTES", "gathered_buckets", "write_buckets"]

DEFAULT_BUCKET_BYTES = 512 << 20


@torch.no_grad()
def gathered_buckets(
    model: nn.Module, *, bucket_bytes: int = DEFAULT_BUCKET_BYTES
) -> Iterator[list[tuple[str, torch.Tensor]]]:
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


def write_buckets(
    buckets: Iterable[list[tuple[str, torch.Tensor]]],
    folder: str | os.PathLike[str],
    *,
    config: Any = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write each bucket as its own `.safetensors` file into `folder` (and `config`, a Hugging Face
    config, as config.json), for servers that load new weights from a shared file system
    (`/update_weights_from_disk`). Written beside the folder and renamed into place, so a server
    never reads half an update; a bucket is on disk before the next one is gathered.

    dtype: cast floating tensors first (bf16 halves what the servers read). Returns the folder.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    tmp = folder.with_name(f".tmp-{folder.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for i, bucket in enumerate(buckets):
            tensors = {
                name: (t.to(dtype) if dtype is not None and t.is_floating_point() else t).detach().cpu().contiguous()
                for name, t in bucket
            }
            save_file(tensors, str(tmp / f"model-bucket-{i:05d}.safetensors"))
        if config is not None:
            config.to_json_file(str(tmp / "config.json"))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
