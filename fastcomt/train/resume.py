"""Resume from the newest checkpoint that loads, falling back past damaged ones (and saying so).

A checkpoint is written atomically, so a crash never leaves a half-written one under its final
name; a file can still be cut off later (a full disk, a copy interrupted, a bad sector). Rather than
stop a long run on it, resume from the next older complete checkpoint and print one line that names
the damaged file. When none loads the error lists them all.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from .checkpoint import CheckpointError, complete_checkpoints, latest_checkpoint, load_checkpoint

__all__ = ["resume_newest_loadable"]


def _candidates(root: Path) -> list[Path]:
    """The checkpoint `latest` names first, then every other complete one, newest first."""
    ordered = list(reversed(complete_checkpoints(root)))
    latest = latest_checkpoint(root)
    if latest is not None:
        ordered = [latest] + [p for p in ordered if p != latest]
    return ordered


def resume_newest_loadable(
    root: str | os.PathLike[str],
    *,
    model: Any,
    optimizer: Any = None,
    scheduler: Any = None,
    map_location: Any = "cpu",
    log: Any = None,
    rank: int = 0,
) -> tuple[Path | None, dict[str, Any]]:
    """Load the newest complete checkpoint under `root` that reads back; returns (its path, its
    trainer state), or (None, {}) when there is no checkpoint. A later candidate's load replaces
    everything a failed one may have loaded in place (weights, optimizer, scheduler, RNG).

    log: where the fall-back line goes (default: stderr). rank: this process's rank (its RNG states).
    """
    root = Path(root)
    failures: list[str] = []
    for path in _candidates(root):
        try:
            state = load_checkpoint(
                path, model=model, optimizer=optimizer, scheduler=scheduler, map_location=map_location, rank=rank
            )
        except CheckpointError as exc:
            failures.append(str(exc))
            continue
        if failures:
            print(
                f"resume: {failures[-1]}; resuming from the older checkpoint {path} instead"
                + (f" ({len(failures)} newer ones do not load)" if len(failures) > 1 else ""),
                file=log or sys.stderr,
                flush=True,
            )
        return path, state
    if failures:
        raise CheckpointError(
            f"{root}: no checkpoint loads ({'; '.join(failures)}); delete the damaged ones or set resume: false"
        )
    return None, {}
