"""Rehearsal for a tiny base model: execution documents written as an SFT data file.

The demo's base model (recipes/pretrain.py) stands in for a pretrained LLM that can execute a worked
plan. A real LLM keeps that skill through a short fine-tune on plans; a 0.4M-parameter stand-in
does not (recipes/DEMO.md has the measurements). Rehearsing documents of the base model's own kind
during SFT keeps the stand-in behaving like the model it stands in for.

A rehearsed document is laid out like a pre-training document: the question of an *unrelated*
problem, then a plan and the marker as context (not trained), then the execution (trained, with
the end of turn). Written as records whose target is `plan + EXECUTION_MARKER + execution`, it is
an SFT `data.extra` file with `loss_on: execution`. So the rehearsal only trains "execute the plan
in front of you"; which plan a question needs is left to the CoMT examples, whose loss covers their
plans.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from fastcomt.atomic_io import write_text_atomic
from fastcomt.comt.offline import offline_meta_thought
from fastcomt.comt.records import ComtRecord
from fastcomt.formats import render_response
from fastcomt.tasks import Problem, synthetic_problems

__all__ = ["replay_problems", "replay_records", "write_replay_data"]


def replay_problems(
    documents: int, *, seed: int, families: Sequence[str] | None = None
) -> tuple[list[Problem], list[Problem]]:
    """(the documents' problems, the problems whose questions they are shown under): two synthetic
    draws, seeds `seed` and `seed + 1`."""
    if isinstance(documents, bool) or not isinstance(documents, int) or documents < 0:
        raise ValueError(f"replay_documents: expected a non-negative int, got {documents!r}")
    families = None if families is None else list(families)
    return (
        synthetic_problems(documents, seed=seed, families=families),
        synthetic_problems(documents, seed=seed + 1, families=families),
    )


def replay_records(documents: int, *, seed: int, families: Sequence[str] | None = None) -> list[ComtRecord]:
    """One record per document: an unrelated question, the document's plan + marker + execution."""
    docs, questions = replay_problems(documents, seed=seed, families=families)
    return [
        ComtRecord(
            id=f"replay-{i}",
            source="synthetic",
            kind="meta_thought",
            question=q.question,
            target=render_response("comt", d.solution or "", offline_meta_thought(d).render()),
            answer=d.answer,
            provenance={"mode": "replay", "document": d.id},
        )
        for i, (d, q) in enumerate(zip(docs, questions))
    ]


def write_replay_data(
    path: str | os.PathLike[str], documents: int, *, seed: int, families: Sequence[str] | None = None
) -> int:
    """Write the rehearsed documents as a JSONL data file (atomically); returns how many."""
    records = replay_records(documents, seed=seed, families=families)
    write_text_atomic(path, "".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in records))
    return len(records)
