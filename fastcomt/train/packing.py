"""Sequence packing without cross-contamination, and the deterministic per-epoch batch plan.

Several examples share one row of at most `row_tokens` tokens. Nothing leaks between them:
- targets are shifted inside each example, so the last token of one example never predicts the
  first of the next (its target is ignore_index);
- position_ids restart at 0 for every example, and attention never crosses a boundary: transformers
  (5.x) turns restarting position_ids into a block-diagonal causal mask for SDPA/eager when no
  attention_mask is passed and no cache is used, and flash-attention reads them as varlen
  boundaries. `block_causal_mask` builds the same mask explicitly (for checks and custom attention).

The plan of an epoch (shuffle, packing, grouping rows into optimizer steps by token budget) is a pure
function of (examples, seed, epoch), so a resumed run replays exactly the same batches from
(epoch, step) alone.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "IGNORE_INDEX",
    "Example",
    "PackedRow",
    "make_example",
    "pack_rows",
    "collate_row",
    "stack_rows",
    "without_targets",
    "group_by_tokens",
    "epoch_plan",
    "block_causal_mask",
]

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Example:
    """One tokenised conversation: input ids and, per position, the id to predict (or IGNORE_INDEX)."""

    input_ids: tuple[int, ...]
    targets: tuple[int, ...]

    @property
    def num_tokens(self) -> int:
        return len(self.input_ids)

    @property
    def num_loss_tokens(self) -> int:
        return sum(t != IGNORE_INDEX for t in self.targets)


def make_example(input_ids: Sequence[int], train_mask: Sequence[bool]) -> Example:
    """Shift inside the example: position t predicts token t+1 when token t+1 is trained on."""
    if len(input_ids) != len(train_mask):
        raise ValueError(f"train_mask: expected {len(input_ids)} flags (one per token), got {len(train_mask)}")
    if len(input_ids) < 2:
        raise ValueError(f"input_ids: expected at least 2 tokens, got {len(input_ids)}")
    targets = [int(input_ids[t + 1]) if train_mask[t + 1] else IGNORE_INDEX for t in range(len(input_ids) - 1)]
    return Example(tuple(int(i) for i in input_ids), tuple(targets) + (IGNORE_INDEX,))


@dataclass
class PackedRow:
    """A [1, T] packed row ready for the model, or [R, T] rows stacked for one forward (`stack_rows`).

    seq_lens: the lengths of the segments (examples, and a stacked row's padding), row after row.
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    targets: torch.Tensor
    seq_lens: list[int]

    @property
    def num_tokens(self) -> int:
        """Tokens in the row(s), padding added by `stack_rows` included."""
        return int(self.input_ids.numel())

    @property
    def num_loss_tokens(self) -> int:
        return int((self.targets != IGNORE_INDEX).sum())

    def to(self, device: torch.device | str) -> PackedRow:
        return PackedRow(
            self.input_ids.to(device), self.position_ids.to(device), self.targets.to(device), self.seq_lens
        )


def pack_rows(lengths: Sequence[int], order: Sequence[int], row_tokens: int) -> list[list[int]]:
    """Greedy packing in `order`: an example joins the current row when it fits, else opens a new one.

    Order is kept (no sorting by length), so shuffling decides which examples share a row.
    """
    if row_tokens < 1:
        raise ValueError(f"row_tokens: expected a positive int, got {row_tokens}")
    rows: list[list[int]] = []
    used = row_tokens + 1
    for i in order:
        n = lengths[i]
        if n > row_tokens:
            raise ValueError(
                f"example {i} has {n} tokens, more than row_tokens={row_tokens}; drop or truncate it first"
            )
        if used + n > row_tokens:
            rows.append([])
            used = 0
        rows[-1].append(i)
        used += n
    return rows


def collate_row(examples: Sequence[Example]) -> PackedRow:
    """Concatenate examples into one row; positions restart at 0 for each."""
    if not examples:
        raise ValueError("examples: expected at least one example")
    ids = [t for ex in examples for t in ex.input_ids]
    targets = [t for ex in examples for t in ex.targets]
    positions = [p for ex in examples for p in range(ex.num_tokens)]
    as_row = lambda xs: torch.tensor(xs, dtype=torch.long).unsqueeze(0)  # noqa: E731
    return PackedRow(as_row(ids), as_row(positions), as_row(targets), [ex.num_tokens for ex in examples])


def stack_rows(rows: Sequence[PackedRow]) -> PackedRow:
    """[R, T] rows for one forward pass instead of R passes (T: the longest row).

    A shorter row is padded by a segment of its own (token 0, positions restarting at 0, no
    targets), so attention still never crosses an example's boundary and the summed loss equals
    the sum of the rows' losses. One pass is much faster than several for small models, where
    per-layer overhead dominates (recipes/DEMO.md), and costs R rows of activation memory.
    """
    if not rows:
        raise ValueError("rows: expected at least one packed row")
    if len(rows) == 1:
        return rows[0]
    width = max(int(row.input_ids.shape[1]) for row in rows)
    ids, positions, targets, seq_lens = [], [], [], []
    for row in rows:
        if row.input_ids.shape[0] != 1:
            raise ValueError(f"rows: expected [1, T] rows, got shape {tuple(row.input_ids.shape)}")
        pad = width - int(row.input_ids.shape[1])
        ids.append(torch.cat([row.input_ids, row.input_ids.new_zeros(1, pad)], dim=1))
        pad_positions = torch.arange(pad, dtype=row.position_ids.dtype, device=row.position_ids.device)[None]
        positions.append(torch.cat([row.position_ids, pad_positions], dim=1))
        targets.append(torch.cat([row.targets, row.targets.new_full((1, pad), IGNORE_INDEX)], dim=1))
        seq_lens.extend(row.seq_lens + ([pad] if pad else []))
    return PackedRow(torch.cat(ids), torch.cat(positions), torch.cat(targets), seq_lens)


def without_targets(row: PackedRow) -> PackedRow:
    """The same row with nothing to predict: a pass that adds nothing to the loss or the gradient."""
    return PackedRow(row.input_ids, row.position_ids, torch.full_like(row.targets, IGNORE_INDEX), row.seq_lens)


def group_by_tokens(row_sizes: Sequence[int], tokens_per_step: int) -> list[list[int]]:
    """Group consecutive rows into optimizer steps of at most `tokens_per_step` tokens (one row minimum)."""
    if tokens_per_step < 1:
        raise ValueError(f"tokens_per_step: expected a positive int, got {tokens_per_step}")
    steps: list[list[int]] = []
    used = tokens_per_step + 1
    for r, n in enumerate(row_sizes):
        if used + n > tokens_per_step:
            steps.append([])
            used = 0
        steps[-1].append(r)
        used += n
    return steps


def epoch_plan(
    lengths: Sequence[int], *, seed: int, epoch: int, row_tokens: int, tokens_per_step: int, shuffle: bool = True
) -> list[list[list[int]]]:
    """steps -> rows -> example indices for one epoch, a pure function of its arguments."""
    order = list(range(len(lengths)))
    if shuffle:
        random.Random(f"{seed}:{epoch}").shuffle(order)
    rows = pack_rows(lengths, order, row_tokens)
    sizes = [sum(lengths[i] for i in row) for row in rows]
    return [[rows[r] for r in step] for step in group_by_tokens(sizes, tokens_per_step)]


def block_causal_mask(seq_lens: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """[T, T] bool mask, True where query t may attend key s: same example and s <= t."""
    seq_ids = torch.repeat_interleave(torch.arange(len(seq_lens), device=device), torch.tensor(seq_lens, device=device))
    same = seq_ids[:, None] == seq_ids[None, :]
    return same & torch.ones(len(seq_ids), len(seq_ids), dtype=torch.bool, device=device).tril()
