"""Each rank's share of a step's work, sized so that every rank makes the same number of passes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from .runtime import DistContext

__all__ = ["rank_share"]

T = TypeVar("T")


def rank_share(items: Sequence[T], ctx: DistContext) -> tuple[list[T], int]:
    """(this rank's items, padding): items rank, rank + world, ... (round robin, so shares differ by
    at most one), and how many zero-weight passes this rank adds to match the largest share.

    Under FSDP every forward and backward is a collective, so a rank with fewer rows than another
    still has to run as many passes (with weight 0): otherwise the ranks wait on each other forever.
    """
    mine = list(items[ctx.rank :: ctx.world_size])
    largest = -(-len(items) // ctx.world_size)
    return mine, largest - len(mine)
