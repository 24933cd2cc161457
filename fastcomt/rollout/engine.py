"""The one interface every rollout backend implements: token-id groups in, sampled groups out.

Backends: ``TransformersEngine`` (in-process Hugging Face model; CPU tests and the demo),
``SGLangEngine`` (in-process ``sglang.Engine``), ``SGLangHTTPEngine`` (one or more SGLang
servers over HTTP). They differ in speed, not in meaning: same seeds semantics, same log-prob
convention (``types`` module docstring), same weight-version bookkeeping.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence

import torch

from fastcomt.rollout.types import GroupRequest, GroupResult

# Weights for update_weights: a name -> tensor mapping, (name, tensor) pairs, or a checkpoint
# path (a safetensors file, a torch file, or a directory holding either).
WeightsSource = Mapping[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]] | str | os.PathLike


class RolloutEngine(ABC):
    """Generation with shared-prefix reuse behind one token-in/token-out interface.

    ``generate`` returns one ``GroupResult`` per request, in request order; every sample carries
    the weight version it was sampled with. ``update_weights`` installs new weights, flushes
    every prefix cache the old weights produced, and bumps the version. Engines are context
    managers; ``close`` releases the model or the connection.
    """

    @property
    @abstractmethod
    def weight_version(self) -> int:
        """Version of the weights the next ``generate`` call samples with."""

    @abstractmethod
    def generate(self, groups: Sequence[GroupRequest]) -> list[GroupResult]:
        """Sample every group; results come back in the order of ``groups``."""

    @abstractmethod
    def update_weights(self, weights: WeightsSource, version: int) -> None:
        """Install new weights (tensors or a checkpoint path), flush prefix caches, set ``version``."""

    @abstractmethod
    def flush_cache(self) -> None:
        """Drop every cached prefix (their KV was computed with older weights or is unwanted)."""

    @abstractmethod
    def close(self) -> None:
        """Release the backend; later calls raise ``RuntimeError``."""

    def __enter__(self) -> RolloutEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def check_groups(groups: Sequence[GroupRequest]) -> list[GroupRequest]:
    """Validate the argument of ``generate`` (shared by every backend)."""
    if isinstance(groups, GroupRequest):
        raise TypeError("groups: expected a sequence of GroupRequest; wrap a single group in a list")
    groups = list(groups)
    seen: set[str] = set()
    for i, g in enumerate(groups):
        if not isinstance(g, GroupRequest):
            raise TypeError(f"groups[{i}]: expected a GroupRequest, got {type(g).__name__}")
        # Request ids name server-side requests; two groups sharing one would mix their samples.
        if g.request_id is not None:
            if g.request_id in seen:
                raise ValueError(f"groups[{i}].request_id {g.request_id!r} is used by another group of this call")
            seen.add(g.request_id)
    return groups


def check_version(version: int) -> int:
    if isinstance(version, bool) or not isinstance(version, int):
        raise TypeError(f"version: expected an int, got {type(version).__name__}")
    if version < 0:
        raise ValueError(f"version: expected >= 0, got {version}")
    return version
